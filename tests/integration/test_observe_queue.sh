#!/usr/bin/env bash
# Observations go through the upstream's max_inflight places and queue (NSTART, RFC 7252 §4.7): with
# max_inflight 1, SSE streams of distinct resources whose device answers registrations late never put more
# than one registration on the wire at once; long-polls that leave while their registration waits in the
# queue cost the device nothing; limits.max_observations_per_upstream (64) refuses the 65th observation with
# 503 problem+json and Retry-After at once, and a place comes back when a subscriber leaves.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "one": { "uri": "coap://127.0.0.1:$SRV", "max_inflight": 1, "timeout_ms": 30000 },
    "wide": { "uri": "coap://127.0.0.1:$SRV", "max_inflight": 8, "timeout_ms": 30000 }
  },
  "routes": [
    { "prefix": "/one/", "upstream": "one", "cache": false },
    { "prefix": "/wide/", "upstream": "wide", "cache": false }
  ],
  "limits": { "longpoll_timeout_s": 1, "sse_keepalive_s": 1 }
}
JSON
start_gateway "$T/gw.json"

sse_start() { # NAME PATH: an SSE client in the background, its stream in $T/NAME.sse; sets SSE_PID
    curl -sS -N --max-time 100 -H 'Accept: text/event-stream' -D "$T/$1.h" -o "$T/$1.sse" "$(url "$2")" \
        2>"$T/$1.err" &
    SSE_PID=$!
}

streams_with_event() { # PREFIX COUNT: true once COUNT streams $T/PREFIX*.sse have their first event
    local n=0 f
    for f in "$T/$1"*.sse; do
        [[ -f $f ]] && grep -q '^event: 2.05$' "$f" && n=$((n + 1))
    done
    ((n >= $2))
}

echo "check: max_inflight 1 and 12 SSE streams of distinct resources: one registration on the wire at a time"
coap_get "$SRV" /stats/reset >/dev/null
N=12
PIDS=()
for ((i = 0; i < N; i++)); do
    sse_start "q$i" "/one/obs/q$i?reg_delay_ms=250&period_ms=600000"
    PIDS+=("$SSE_PID")
done
all_q_started() { streams_with_event q "$N"; }
wait_until "$N streams to get the answer of their registration" all_q_started
echo "maxconc=$(srv_stat "$SRV" maxconc)"; assert_eq 1 "$(srv_stat "$SRV" maxconc)" "registrations outstanding at the device at once"
reg=0
for ((i = 0; i < N; i++)); do
    reg=$((reg + $(srv_count "$SRV" "REGISTER /obs/q$i")))
done
assert_eq "$N" "$reg" "registrations at the device"
kill "${PIDS[@]}" 2>/dev/null || true
for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
done
q_deregistered() {
    local i
    for ((i = 0; i < N; i++)); do
        [[ $(coap_get "$SRV" "/stats/observers/q$i") == 0 ]] || return 1
    done
}
wait_until "every q stream deregistered after its client left" q_deregistered

echo "check: long-polls leaving while their registration waits in the queue cost the device nothing"
# An SSE stream's registration, answered after 5 s, holds the one place (its subscriber stays); the
# long-polls' registrations wait behind it (max_inflight 1). Every long-poll ends after longpoll_timeout_s
# (1 s) with 204 and leaves while queued: its registration is dropped unsent.
coap_get "$SRV" /stats/reset >/dev/null
sse_start hold "/one/obs/hold?reg_delay_ms=5000"
HOLD_PID=$SSE_PID
hold_sent() { [[ $(srv_stat "$SRV" outstanding) == 1 ]]; } # received, its answer held back
wait_until "the holding registration at the device" hold_sent
M=10
LP=()
for ((i = 0; i < M; i++)); do
    curl -sS -o /dev/null -w '%{http_code}\n' --max-time 60 "$(url "/one/obs/lp$i?observe=next&reg_delay_ms=5000")" \
        >"$T/lp$i.code" 2>"$T/lp$i.err" &
    LP+=("$!")
done
for pid in "${LP[@]}"; do
    wait "$pid" || fail "a long-poll client failed"
done
for ((i = 0; i < M; i++)); do
    assert_eq 204 "$(cat "$T/lp$i.code")" "long-poll $i"
done
lp_settled() { [[ $(srv_stat "$SRV" outstanding) == 0 ]]; }
wait_until "the holding registration to be answered" lp_settled
lp_gone() {
    local i
    for ((i = 0; i < M; i++)); do
        [[ $(coap_get "$SRV" "/stats/observers/lp$i") == 0 ]] || return 1
    done
}
wait_until "no observer left at the device" lp_gone
reg=0
for ((i = 0; i < M; i++)); do
    reg=$((reg + $(srv_count "$SRV" "REGISTER /obs/lp$i")))
done
echo "long-poll cycles: $M, registrations at the device: $reg"
((reg == 0)) || fail "$reg registrations for $M long-polls that left while queued (expected none)"
kill "$HOLD_PID" 2>/dev/null || true
wait "$HOLD_PID" 2>/dev/null || true

echo "check: limits.max_observations_per_upstream (64): the 65th observation gets 503 at once"
PIDS=()
for ((i = 0; i < 64; i++)); do
    sse_start "l$i" "/wide/obs/l$i?period_ms=600000"
    PIDS+=("$SSE_PID")
done
all_l_started() { streams_with_event l 64; }
wait_until "64 observations registered" all_l_started
http GET "/wide/obs/l64?period_ms=600000" -H 'Accept: text/event-stream'
assert_problem 503
assert_contains "$BODY" "max_observations_per_upstream" "detail of the 65th observation"
assert_header_matches Retry-After '^[0-9]+$'
assert_eq 0 "$(srv_count "$SRV" "GET /obs/l64")" "device asked for the refused observation"
# Another upstream has places of its own.
http GET "/one/r/x?body=fine"
assert_status 200 "a request to another upstream"
kill "${PIDS[0]}" 2>/dev/null || true
wait "${PIDS[0]}" 2>/dev/null || true
place_back() {
    local code
    code=$(curl -s -o "$T/back.sse" -w '%{http_code}' --max-time 2 -H 'Accept: text/event-stream' \
        "$(url "/wide/obs/l64?period_ms=600000")") || true
    [[ $code == 200 ]]
}
wait_until "a place under the limit once a subscriber left" place_back
kill "${PIDS[@]}" 2>/dev/null || true
for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
done

stop_gateway
pass
