#!/usr/bin/env bash
# Gateway-made errors, each with its status and problem+json: no route 404, 405 with Allow, 413 before the
# device is asked, 501 for OPTIONS/TRACE, 502 for an unreachable port (fast), 504 at the timeout for a
# silent device, 503 with Retry-After when the upstream queue is full; and the admin endpoints.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
start_testsrv --blackhole
HOLE=$TESTSRV_PORT
NOBODY=$(free_port) # free on UDP: nothing listens there, so the kernel answers ICMP port unreachable
GW_PORT=$(free_port)
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "dev": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 10000 },
    "ro": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 10000 },
    "nobody": { "uri": "coap://127.0.0.1:$NOBODY", "timeout_ms": 20000 },
    "hole": { "uri": "coap://127.0.0.1:$HOLE", "timeout_ms": 1500 },
    "mute": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 1500 },
    "narrow": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 30000, "max_inflight": 1, "queue_limit": 1 }
  },
  "routes": [
    { "prefix": "/api/", "upstream": "dev", "cache": false },
    { "prefix": "/ro/", "upstream": "ro", "methods": ["GET"], "cache": false },
    { "prefix": "/nobody/", "upstream": "nobody", "cache": false },
    { "prefix": "/hole/", "upstream": "hole", "cache": false },
    { "prefix": "/mute/", "upstream": "mute", "cache": false },
    { "prefix": "/narrow/", "upstream": "narrow", "cache": false }
  ],
  "limits": { "max_body_bytes": 100 }
}
JSON
start_gateway "$T/gw.json"
TXT='Content-Type: text/plain; charset=utf-8'

http GET /healthz
assert_status 200 "/healthz"
assert_eq ok "$(tr -d '\r\n' <<<"$BODY")" "/healthz body"
# /readyz lists every upstream; the gateway pings them at start-up, so the unreachable ones show as down
# (after three failed pings), but none is "required": the gateway stays ready (see test_health).
ready_report_complete() {
    http GET /readyz
    [[ $BODY == *"nobody down"* && $BODY == *"hole down"* && $BODY == *"dev up"* ]]
}
wait_until "/readyz to report nobody and hole down, dev up" ready_report_complete
assert_status 200 "/readyz with unreachable upstreams that are not required"

http GET /nothing/here
assert_problem 404 no-route
http GET /ap
assert_problem 404 no-route

http POST /ro/r/ro -H "$TXT" --data-binary 'x'
assert_problem 405 method-not-allowed
assert_header_matches Allow '(^|, *)GET(,|$)'
assert_eq 0 "$(srv_count "$SRV" "POST /r/ro")" "device asked despite 405"
http GET "/ro/r/ro?body=ok"
assert_status 200 "GET on a GET-only route"

head -c 101 /dev/zero | tr '\0' 'a' >"$T/big"
http POST "/api/r/len?plen=1" -H "$TXT" --data-binary "@$T/big"
assert_problem 413 content-too-large
assert_eq 0 "$(srv_count "$SRV" "POST /r/len")" "device asked despite 413"
head -c 100 /dev/zero | tr '\0' 'a' >"$T/ok"
http POST "/api/r/len?plen=1" -H "$TXT" --data-binary "@$T/ok"
assert_status 200 "POST of exactly max_body_bytes"
assert_eq 100 "$BODY" "payload length at the device"
# Without Content-Length (chunked) the limit holds while the body streams in.
http POST "/api/r/len?plen=1" -H "$TXT" -H 'Transfer-Encoding: chunked' --data-binary "@$T/big"
assert_problem 413 content-too-large
http POST "/api/r/len?plen=1" -H "$TXT" -H 'Transfer-Encoding: chunked' --data-binary "@$T/ok"
assert_status 200 "chunked POST of exactly max_body_bytes"
assert_eq 100 "$BODY" "chunked payload length at the device"
assert_eq 2 "$(srv_count "$SRV" "POST /r/len")" "device requests: only the two bodies within the limit"

for m in OPTIONS TRACE; do
    http "$m" /api/echo
    assert_problem 501 not-implemented
done
http CONNECT /api/echo
assert_match "$HTTP_STATUS" '^(400|501)$' "CONNECT"

# Unreachable: ICMP port unreachable must give 502 long before the 20 s timeout.
start=$SECONDS
http GET /nobody/x
assert_problem 502 upstream-error
((SECONDS - start < 10)) || fail "502 for an unreachable port took $((SECONDS - start)) s (timeout is 20 s)"

# Silent device (no ACK at all): 504 at timeout_ms=1500, not after CoAP's ~93 s of retransmissions.
for path in /hole/x "/mute/r/quiet?silent=1"; do
    t=$(curl -sS -o "$T/body" -D "$T/headers" -w '%{http_code} %{time_total}' --max-time 60 "$(url "$path")")
    HTTP_STATUS=${t% *}
    BODY=$(cat "$T/body")
    assert_problem 504 upstream-timeout
    awk -v t="${t#* }" 'BEGIN { exit !(t >= 1.4 && t < 15) }' ||
        fail "504 for $path after ${t#* } s; expected about 1.5 s (timeout_ms) and well under 15 s"
done

# Queue overflow: max_inflight 1 + queue_limit 1. The first request holds the only slot (the device
# delays it 8 s); of the next two, one waits in the queue and the other is refused at once with 503.
curl -sS -o "$T/b1" -w '%{http_code}' --max-time 60 "$(url '/narrow/r/hold?delay_ms=8000')" >"$T/s1" &
curls=($!)
hold_arrived() { [[ $(srv_count "$SRV" "GET /r/hold") == 1 ]]; }
wait_until "the first request to reach the device" hold_arrived
for i in 2 3; do
    curl -sS -o "$T/b$i" -D "$T/h$i" -w '%{http_code}' --max-time 60 "$(url "/narrow/r/q$i")" >"$T/s$i" &
    curls+=($!)
done
one_done() { [[ -s $T/s2 || -s $T/s3 ]]; }
wait_until "one of the two extra requests to be answered" one_done
assert_eq 1 "$(srv_stat "$SRV" outstanding)" "first request still held by the device when the 503 came"
if [[ -s $T/s2 ]]; then refused=2 queued=3; else refused=3 queued=2; fi
HTTP_STATUS=$(cat "$T/s$refused")
BODY=$(cat "$T/b$refused")
cp "$T/h$refused" "$T/headers"
assert_problem 503 service-unavailable
assert_header_matches Retry-After '^[1-9][0-9]*$'
wait "${curls[@]}"
assert_eq 200 "$(cat "$T/s1")" "the request holding the slot"
assert_eq 200 "$(cat "$T/s$queued")" "the queued request"
assert_eq 0 "$(srv_count "$SRV" "GET /r/q$refused")" "device requests for the refused one"

stop_gateway
pass
