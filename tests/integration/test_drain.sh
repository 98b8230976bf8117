#!/usr/bin/env bash
# SIGTERM drains within shutdown_grace_s (3 s here):
# 1. An SSE stream and a slow request (1.5 s at the device) in flight: after SIGTERM new connections are
#    refused, the stream gets a last `event: error` saying the gateway is shutting down and ends, the slow
#    request gets its 200, a long-poll gets 503, and the gateway exits 0 within shutdown_grace_s + 1 s.
# 2. A request the device answers only after 20 s: at the end of the grace it gets 503 problem+json and the
#    gateway still exits 0 within shutdown_grace_s + 1 s.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
GRACE=3
write_config "$T/gw.json" "coap://127.0.0.1:$SRV" '"timeout_ms": 30000' '"cache": false' \
    "\"shutdown_grace_s\": $GRACE, \"limits\": { \"longpoll_timeout_s\": 60 }"

refused() {
    local rc=0
    curl -sS -o /dev/null --max-time 5 "$(url /healthz)" 2>/dev/null || rc=$?
    ((rc == 7))
}

# SIGTERM, then the exit within GRACE + 1 s, with status 0. Prints the milliseconds it took.
term_and_wait_exit() {
    local t0 rc=0
    t0=$(now_ms)
    kill -TERM "$GW_PID"
    while alive "$GW_PID"; do
        (($(now_ms) - t0 <= (GRACE + 1) * 1000)) || fail "the gateway still runs $((GRACE + 1)) s after SIGTERM"
        if [[ -n ${CHECK_REFUSED:-} ]] && refused; then
            : >"$T/refused"
        fi
        sleep 0.02
    done
    TOOK=$(($(now_ms) - t0))
    wait "$GW_PID" || rc=$?
    GW_PID=
    assert_eq 0 "$rc" "gateway exit status after SIGTERM"
}

# ---- 1. everything in flight finishes within the grace ----
start_gateway "$T/gw.json"
: >"$T/sse.out"
curl -sS -N --max-time 30 -H 'Accept: text/event-stream' -o "$T/sse.out" "$(url '/api/obs/d?period_ms=500')" \
    2>"$T/sse.log" &
sse=$!
first_event() { grep -q '^event: 2.05$' "$T/sse.out"; }
wait_until "the stream's first event" first_event
curl -sS -o "$T/lp.body" -D "$T/lp.h" -w '%{http_code}' --max-time 30 \
    "$(url '/api/obs/lp?period_ms=60000&observe=next')" >"$T/lp.status" 2>"$T/lp.log" &
lp=$!
lp_observed() { [[ $(coap_get "$SRV" /stats/observers/lp) == 1 ]]; }
wait_until "the long-poll's observation" lp_observed
curl -sS -o "$T/slow.body" -w '%{http_code}' --max-time 30 "$(url '/api/r/slow?delay_ms=1500&body=finished')" \
    >"$T/slow.status" 2>"$T/slow.log" &
slow=$!
arrived() { [[ $(srv_count "$SRV" "GET /r/slow") == 1 ]]; }
wait_until "the slow request to reach the device" arrived

CHECK_REFUSED=1 term_and_wait_exit
[[ -e $T/refused ]] || fail "new connections were not refused while the gateway drained"
echo "[$TEST_NAME] drained an SSE stream, a long-poll and a 1.5 s request: exit 0 after $TOOK ms" >&2

wait "$sse" || fail "the SSE client failed: $(cat "$T/sse.log")"
last=$(awk 'NF { l2 = l1; l1 = $0 } END { print l2 "|" l1 }' "$T/sse.out")
assert_eq "event: error|data: the gateway is shutting down" "$last" "the stream's last event"
wait "$slow" || fail "the in-flight request failed: $(cat "$T/slow.log")"
assert_eq 200 "$(cat "$T/slow.status")" "in-flight request status after SIGTERM"
assert_eq finished "$(cat "$T/slow.body")" "in-flight request body after SIGTERM"
wait "$lp" || fail "the long-poll failed: $(cat "$T/lp.log")"
assert_eq 503 "$(cat "$T/lp.status")" "a long-poll's status when the gateway stops"
assert_contains "$(cat "$T/lp.body")" "shutting down" "the long-poll's problem"

# ---- 2. what is still in flight at the end of the grace gets 503 ----
start_gateway "$T/gw.json"
curl -sS -o "$T/body" -D "$T/headers" -w '%{http_code}' --max-time 30 \
    "$(url '/api/r/late?delay_ms=20000&body=late')" >"$T/late.status" 2>"$T/late.log" &
late=$!
late_arrived() { [[ $(srv_count "$SRV" "GET /r/late") == 1 ]]; }
wait_until "the late request to reach the device" late_arrived
term_and_wait_exit
echo "[$TEST_NAME] a 20 s request at SIGTERM: 503 and exit 0 after $TOOK ms (grace ${GRACE} s)" >&2
wait "$late" || fail "the late request failed (expected a 503): $(cat "$T/late.log")"
HTTP_STATUS=$(cat "$T/late.status")
BODY=$(cat "$T/body")
assert_problem 503
assert_contains "$BODY" "shutting down" "the late request's problem"
assert_header Connection close

pass
