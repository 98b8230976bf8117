#!/usr/bin/env bash
# A device answer in one datagram larger than libcoap 4.3.1 takes (the session's MTU, 1152 bytes): libcoap
# discards it ("discard malformed PDU"), so the gateway must answer 502 at once instead of 504 at
# timeout_ms. The device is rawcoap's /huge/N script: a piggybacked 2.05 of N + 14 bytes.
source "$(dirname "$0")/lib.sh"

start_rawcoap
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$RAW_PORT" '"timeout_ms": 5000'
start_gateway "$T/gw.json" --log-level debug

# http, and the time it took in ms in ELAPSED_MS.
timed_http() {
    local start=$EPOCHREALTIME
    http "$@"
    ELAPSED_MS=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')
}
prompt_502() { # PATH WHAT
    timed_http GET "/api$1"
    assert_problem 502 upstream-error
    assert_contains "$BODY" "larger than libcoap reads" "problem detail for $2"
    ((ELAPSED_MS < 1000)) || fail "502 for $2 took ${ELAPSED_MS} ms (timeout_ms 5000)"
}

echo "check: a 1514-byte datagram (1500 bytes of payload) is a prompt 502, logged at warn"
prompt_502 /huge "a 1514-byte answer"
warned() { grep 'level=warn mod=client' "$GW_LOG" | grep -F 'path="/huge"' | grep -q 'upstream="dev"'; }
wait_until "a warn line naming the upstream and the path" warned
assert_contains "$(grep 'level=warn mod=client' "$GW_LOG")" "bytes=1514" "the warn line's datagram size"

echo "check: a datagram of exactly 1152 bytes is still taken"
http GET /api/huge/1138
assert_status 200 "a 1152-byte answer"
assert_eq 1138 "${#BODY}" "payload bytes of a 1152-byte answer"

echo "check: one byte more (1153) is a prompt 502"
prompt_502 /huge/1139 "a 1153-byte answer"

echo "check: a datagram larger than the filter's peek buffer (3014 bytes) is a prompt 502 too"
prompt_502 /huge/3000 "a 3014-byte answer"

echo "check: the gateway still serves the device afterwards"
for i in 1 2 3; do
    http GET "/api/ok/$i"
    assert_status 200 "request $i after the large answers"
    assert_eq ok "$BODY" "request $i after the large answers"
done

alive "$RAW_PID" || fail "rawcoap died"
stop_gateway
pass
