#!/usr/bin/env bash
# What the fuzzers of fuzz/ found, replayed against the real gateway and a real CoAP server (one case per
# finding, named after it in fuzz/README.md).
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": { "dev": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 10000 } },
  "routes": [ { "prefix": "/api/", "upstream": "dev" } ]
}
JSON
start_gateway "$T/gw.json"

# fuzz_response, finding 1: a device answering an observation's registration (which carries no ETag) with
# 2.03 Valid. A long-poll got "304 Not Modified" to an unconditional GET, and an SSE client a stream with an
# empty "2.03" event; a plain GET already got 502 (RFC 7252 §5.9.1.3: 2.03 confirms an ETag the request had).
http GET "/api/r/valid?code=2.03"
assert_problem 502 "upstream-error"
assert_contains "$BODY" "2.03 Valid to a request without an ETag" "plain GET"

http GET "/api/r/valid-poll?code=2.03&observe=next"
assert_problem 502 "upstream-error"
assert_contains "$BODY" "2.03 Valid to a request without an ETag" "long-poll"

http GET "/api/r/valid-sse?code=2.03" -N -H 'Accept: text/event-stream'
assert_problem 502 "upstream-error"
assert_contains "$BODY" "2.03 Valid to a request without an ETag" "SSE"

stop_gateway
pass
