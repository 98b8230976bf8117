#!/usr/bin/env bash
# What the fuzzers of fuzz/ found, replayed against the real gateway and a real CoAP server (one case per
# finding, named after it in fuzz/README.md).
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
start_rawcoap
GW_PORT=$(free_port)
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": { "dev": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 10000 },
                 "raw": { "uri": "coap://127.0.0.1:$RAW_PORT", "timeout_ms": 10000 } },
  "routes": [ { "prefix": "/api/", "upstream": "dev" },
              { "prefix": "/raw/", "upstream": "raw", "cache": false } ]
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

# fuzz_headers, finding 2: a Host whose IP-literal holds bytes no IP-literal may hold ('#', '^', '`', '|')
# passed as valid; RFC 9112 §3.2 asks for 400 (RFC 3986 §3.2.2: hex digits, ':', '.', and for IPvFuture
# and zone ids unreserved, sub-delims and '%' only). The well-formed ones still pass.
for host in '[a#b]' '[::1^]' '[fe80::1|x]:8080' '[`]'; do
    http GET "/api/r/host" -H "Host: $host"
    assert_problem 400 "bad-request"
done
for host in '[::1]' '[::1]:8080' '[v1.x:y]' '[fe80::1%25eth0]:80' "127.0.0.1:$GW_PORT"; do
    http GET "/api/r/host" -H "Host: $host"
    assert_status 200 "Host: $host"
done

# fuzz_translate, finding 3: a request whose options fill the CoAP message lost the zero-length options
# that no longer fit (an empty Uri-Query or Uri-Path, If-None-Match, If-Match *, Content-Format 0): the
# device got another request, with 2.04 to the client, where the options must fit or the answer is 414
# before the device is asked. Around the limit, each POST either reaches the device with both query items
# ("q" and the empty one) or is a 414 the device never sees.
seg=$(printf 'a%.0s' {1..250})
seen_200=0 seen_414=0
for n in $(seq 100 160); do
    last=$(printf 'b%.0s' $(seq 1 "$n"))
    : >"$RAW_LOG"
    http POST "/raw/$seg/$seg/$seg/$seg/$last?q&"
    if [[ $HTTP_STATUS == 414 ]]; then
        seen_414=$((seen_414 + 1))
        assert_eq 0 "$(grep -c '^REQ ' "$RAW_LOG")" "device requests for a 414 (last segment $n bytes)"
    else
        assert_status 200 "POST with a last segment of $n bytes"
        assert_contains "$(grep '^REQ ' "$RAW_LOG")" "queries=2 " "query items at the device (last segment $n bytes)"
        seen_200=$((seen_200 + 1))
    fi
done
((seen_200 > 0 && seen_414 > 0)) || fail "the sizes did not cross the message limit (200: $seen_200, 414: $seen_414)"

stop_gateway
pass
