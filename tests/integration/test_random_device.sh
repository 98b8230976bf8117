#!/usr/bin/env bash
# A device answering every datagram (requests and the start-up CoAP ping alike) with random bytes, some of
# them shaped like CoAP responses: the gateway must answer every request (502/504), never crash, and exit
# cleanly. Several rounds, each with a fresh gateway, because the start-up ping's session is where a random
# "response" once reached a handler that took the probe for a request slot.
source "$(dirname "$0")/lib.sh"

start_rawcoap -r
ROUNDS=${ROUNDS:-6}
for ((round = 1; round <= ROUNDS; round++)); do
    GW_PORT=$(free_port)
    write_config "$T/gw.json" "coap://127.0.0.1:$RAW_PORT" '"timeout_ms": 1000, "max_inflight": 8'
    start_gateway "$T/gw.json"
    echo "check: round $round: 20 concurrent requests to a random-bytes device"
    pids=()
    for ((i = 0; i < 20; i++)); do
        curl -sS -o /dev/null -w '%{http_code}\n' --max-time 20 "$(url "/api/r$i?n=$round")" \
            >"$T/status.$i" 2>/dev/null &
        pids+=($!)
    done
    wait "${pids[@]}" || true
    alive "$GW_PID" || fail "the gateway died in round $round"
    for ((i = 0; i < 20; i++)); do
        assert_match "$(cat "$T/status.$i")" '^(502|504)$' "round $round request $i"
    done
    http GET /healthz
    assert_status 200 "/healthz after round $round"
    stop_gateway
done
pass
