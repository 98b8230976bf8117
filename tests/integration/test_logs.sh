#!/usr/bin/env bash
# Logs an operator can trust: a normal session (demo GETs, an SSE client that leaves, a timeout, an
# unreachable upstream, a path that tries to forge log fields) at --log-level debug and at info. Every line
# the gateway writes is in coapgw's format (libcoap's and libmicrohttpd's messages included), the client
# reports timeouts and nacks with upstream= and path=, debug adds one line per CoAP exchange, the RST that
# answers the gateway's own CoAP ping is no alert, and a client leaving an SSE stream is no warning.
source "$(dirname "$0")/lib.sh"

start_testsrv --blackhole
HOLE=$TESTSRV_PORT
NOBODY=$(free_port) # nothing listens on this UDP port: the kernel answers ICMP port unreachable
GW_PORT=$(free_port)
DEMO_PORT=$GW_PORT # freeport checks TCP and UDP: HTTP on TCP, the demo on UDP, same number
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "demo": { "uri": "coap://127.0.0.1:$DEMO_PORT" },
    "hole": { "uri": "coap://127.0.0.1:$HOLE", "timeout_ms": 700 },
    "nobody": { "uri": "coap://127.0.0.1:$NOBODY", "timeout_ms": 10000 }
  },
  "routes": [
    { "prefix": "/demo/", "upstream": "demo", "cache": false },
    { "prefix": "/hole/", "upstream": "hole", "cache": false },
    { "prefix": "/nobody/", "upstream": "nobody", "cache": false }
  ],
  "demo_server": { "enabled": true, "listen": "127.0.0.1:$DEMO_PORT" },
  "limits": { "sse_keepalive_s": 1 }
}
JSON

# A Uri-Path segment with a newline, quotes and a fake line: must not start a line or a field of its own.
FORGE='x%22%20level=error%0Ats=2020-01-01T00:00:00.000Z%20level=error%20mod=forged%20event=x'

session() {
    local i
    for i in 1 2 3; do
        http GET /demo/
        assert_status 200 "demo hello #$i"
    done
    http GET /demo/sensors/temperature
    assert_status 200 "demo sensor"
    # An SSE client that gets a few events and leaves (curl --max-time ends it with status 28).
    curl -sS -N --max-time 2.5 -H 'Accept: text/event-stream' -o "$T/sse.out" \
        "$(url /demo/sensors/temperature)" 2>/dev/null || true
    [[ -s $T/sse.out ]] || fail "the SSE client got nothing"
    http GET /hole/a/b
    assert_status 504 "silent device"
    http GET /nobody/c/d
    assert_status 502 "unreachable upstream"
    http GET "/nobody/$FORGE"
    assert_status 502 "unreachable upstream, forging path"
    # The SSE stream's end is seen by the server thread a little later; /demo/ answers after it.
    http GET /demo/
}

# check_format LOG: every line is ts=... level=... mod=... (nothing raw from the libraries, no forged line).
check_format() {
    local bad
    bad=$(grep -Ev '^ts=[0-9T:.-]+Z level=(error|warn|info|debug) mod=[a-z]+ ' "$1" | head -5) || true
    [[ -z $bad ]] || fail "lines not in coapgw's format in $1: $bad"
    bad=$(grep -E '^ts=2020|^ts=[^ ]+ level=[a-z]+ mod=forged' "$1" | head -3) || true
    [[ -z $bad ]] || fail "a request path forged a log line: $bad"
    ! grep -q 'ALRT' "$1" || fail "an ALRT line: $(grep ALRT "$1" | head -3)"
    bad=$(grep 'Failed to send' "$1" | grep -v ' level=debug ' | head -3) || true
    [[ -z $bad ]] || fail "'Failed to send' above debug: $bad"
}

# check_events LOG: the client's timeout and nack lines with upstream and path; values quoted.
check_events() {
    grep -Eq ' mod=client .*event=timeout .*upstream="hole" path="/a/b" reason="[^"]+"' "$1" ||
        fail "no mod=client timeout line for upstream hole, path /a/b"
    grep -Eq ' level=warn mod=client .*event=nack nack=icmp upstream="nobody" path="/c/d" reason=' "$1" ||
        fail "no mod=client nack line (ICMP unreachable) for upstream nobody, path /c/d"
    grep -Eq ' mod=client .*event=upstream_down .*upstream="nobody"' "$1" ||
        fail "no upstream_down line for nobody"
    grep -Eq ' mod=client .*event=nack .*path="/x\\" level=error\\nts=2020' "$1" ||
        fail "the forging path is not logged escaped: $(grep 'path="/x' "$1" | head -2)"
}

# Run 1: debug.
start_gateway "$T/gw.json" --log-level debug
session
stop_gateway
DEBUG_LOG=$GW_LOG
check_format "$DEBUG_LOG"
check_events "$DEBUG_LOG"
exchange='level=debug mod=client event=exchange method=GET path="/" token=[0-9a-f]+ mid=0x[0-9a-f]{4} type=CON '
exchange+='code=2.05 status=ok .*duration_ms=[0-9]+'
grep -Eq "$exchange" "$DEBUG_LOG" || fail "no debug exchange line for GET / at the demo"
grep -Eq 'level=debug mod=client event=exchange method=GET path="/a/b" .*status=timeout' "$DEBUG_LOG" ||
    fail "no debug exchange line for the timed-out GET /a/b"
grep -q 'level=debug mod=coap ' "$DEBUG_LOG" || fail "no libcoap message at debug"

# Run 2: info. Same checks, and nothing below info (libcoap's and libmicrohttpd's levels follow log.level).
start_gateway "$T/gw.json" --log-level info
session
stop_gateway
check_format "$GW_LOG"
check_events "$GW_LOG"
! grep -q ' level=debug ' "$GW_LOG" || fail "debug lines at --log-level info: $(grep ' level=debug ' "$GW_LOG" | head -3)"

pass
