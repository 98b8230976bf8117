#!/usr/bin/env bash
# The gateway survives the unhappy paths and recovers: a late answer after a 504, an HTTP client that
# hangs up while its CoAP exchange is on the wire, a device that comes up after a 502, a device restart.
# Each time the in-flight slot (max_inflight 1) must be given back, or the next request would hang.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
SRV_PID=$TESTSRV_PID
LATE=$(free_port) # nothing there yet; a coap_testsrv is started on it later
GW_PORT=$(free_port)
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "dev": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 1500, "max_inflight": 1, "queue_limit": 16 },
    "late": { "uri": "coap://127.0.0.1:$LATE", "timeout_ms": 5000, "max_inflight": 1 },
    "many": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 30000, "max_inflight": 8, "queue_limit": 200 }
  },
  "routes": [
    { "prefix": "/api/", "upstream": "dev", "cache": false },
    { "prefix": "/late/", "upstream": "late", "cache": false },
    { "prefix": "/many/", "upstream": "many", "cache": false }
  ]
}
JSON
start_gateway "$T/gw.json"
settled() { [[ $(srv_stat "$SRV" outstanding) == 0 ]]; }

# 1. The answer comes after timeout_ms: 504, then the late answer is ignored and the slot is free.
http GET "/api/r/late?delay_ms=3000&body=late"
assert_problem 504 upstream-timeout
wait_until "the late answer to be sent" settled
http GET "/api/r/next?body=next"
assert_status 200 "request after a timed-out exchange"
assert_eq next "$BODY" "request after a timed-out exchange"

# 2. The HTTP client hangs up while its exchange is on the wire.
rc=0
curl -sS -o /dev/null --max-time 0.5 "$(url '/api/r/gone?delay_ms=1000')" 2>/dev/null || rc=$?
assert_eq 28 "$rc" "curl exit status for a client that gave up"
wait_until "the abandoned exchange to be answered" settled
http GET "/api/r/after?body=after"
assert_status 200 "request after a client hung up"
assert_eq after "$BODY" "request after a client hung up"
# ...and several at once, some queued behind the one in flight.
pids=()
for i in 1 2 3 4; do
    curl -sS -o /dev/null --max-time 0.5 "$(url "/api/r/gone$i?delay_ms=300")" 2>/dev/null &
    pids+=($!)
done
wait "${pids[@]}" || true
http GET "/api/r/after2?body=after2"
assert_status 200 "request after four clients hung up"
alive "$GW_PID" || fail "the gateway died"

# 3. Nothing listens (502), then the device comes up on that port: the next request reaches it.
http GET /late/echo
assert_problem 502 upstream-error
start_testsrv --port "$LATE"
http GET /late/echo
assert_status 200 "request once the device is up"
assert_contains "$BODY" "method=GET" "answer from the device that came up"

# 4. The device restarts on the same port.
kill -TERM "$SRV_PID"
wait "$SRV_PID" || fail "coap_testsrv did not exit cleanly"
http GET "/api/r/down?body=x"
assert_match "$HTTP_STATUS" '^(502|504)$' "request while the device is down"
start_testsrv --port "$SRV"
http GET "/api/r/back?body=back"
assert_status 200 "request after the device restarted"
assert_eq back "$BODY" "request after the device restarted"

# 5. A crowd of clients giving up at assorted moments, in flight or still queued: the gateway stays up, never
# puts more than max_inflight (8) exchanges on the wire, and serves the next request.
pids=()
for ((i = 0; i < 150; i++)); do
    curl -sS -o /dev/null --max-time "0.$((1 + i % 9))" "$(url "/many/r/crowd$((i % 5))?delay_ms=$((i * 37 % 900))&n=$i")" \
        2>/dev/null &
    pids+=($!)
done
wait "${pids[@]}" || true
wait_until "the crowd's exchanges to be answered" settled
maxconc=$(srv_stat "$SRV" maxconc)
((maxconc <= 8)) || fail "the device saw $maxconc exchanges at once through an upstream with max_inflight 8"
http GET "/many/r/calm?body=calm"
assert_status 200 "request after the crowd left"
assert_eq calm "$BODY" "request after the crowd left"

stop_gateway
pass
