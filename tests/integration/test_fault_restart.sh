#!/usr/bin/env bash
# A device that restarts while SSE streams of it are open: the process is killed (SIGKILL: no goodbye) and a
# new one starts on the same port at once. The new device knows nothing of the observation: the gateway
# hears nothing until Max-Age has passed, re-registers, and the new device's Observe numbers start again
# from the beginning, older than the last one seen (RFC 7641 §3.4), so its notifications are dropped as
# stale and the re-registration counts as unanswered: every subscriber's stream ends with `event: error`
# within Max-Age + timeout_ms and a margin, and the next request (a GET, a new stream) is served by the new
# device. The old device runs long enough that the new one cannot overtake its Observe number within
# timeout_ms (were it to, the stream would go on after a gap: see the README's tests section). Once with
# coap_testsrv (two subscribers sharing the observation), once with libcoap's coap-server-gnutls (/time).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/faults.sh"

TIMEOUT_MS=$(slow 2000)
END_S=$(slow 20) # a stream must end within this of the restart (Max-Age 2 s + timeout_ms + margin)

# sse NAME PATH: an SSE client writing to $T/NAME.sse in the background; sets SSE_PID.
sse() {
    curl -sS -N -H 'Accept: text/event-stream' --max-time 90 "$(url "$2")" >"$T/$1.sse" 2>"$T/$1.curl.log" &
    SSE_PID=$!
}

events() { # NAME: the number of data events so far
    grep -c '^data: ' "$T/$1.sse" || true
}

# ended_with_error NAME PID: the stream's curl exited and its last event is an error.
assert_ended_with_error() {
    local name=$1 pid=$2 rc=0
    stream_over() { ! alive "$pid"; }
    DEADLINE_S=$END_S wait_until "the $name stream to end after the device restarted" stream_over
    wait "$pid" || rc=$?
    ((rc == 0)) || fail "$name: curl exited with status $rc (expected the gateway to end the stream)"
    last=$(grep '^event: ' "$T/$name.sse" | tail -n 1)
    assert_eq "event: error" "$last" "$name: the stream's last event"
    echo "check: $name: ended with: $(tail -n 3 "$T/$name.sse" | tr '\n' ' ')"
}

# --- 1. coap_testsrv, two subscribers of one resource ---
start_testsrv
SRV=$TESTSRV_PORT
SRV_PID=$TESTSRV_PID
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$SRV" "\"timeout_ms\": $TIMEOUT_MS"
start_gateway "$T/gw.json"

sse a "/api/obs/temp?period_ms=100&max_age=2"
A_PID=$SSE_PID
sse b "/api/obs/temp?period_ms=100&max_age=2"
B_PID=$SSE_PID
# 100 ms apart: 40 notifications make an Observe number the new device needs 4 s to reach; timeout_ms is 2.
OLD_EVENTS=$((40 * FAULT_SLOW))
two_events() { (($(events a) >= OLD_EVENTS && $(events b) >= OLD_EVENTS)); }
wait_until "both streams to carry notifications" two_events
assert_eq 1 "$(srv_count "$SRV" "REGISTER /obs/temp")" "registrations for two subscribers"

kill -KILL "$SRV_PID"
wait "$SRV_PID" 2>/dev/null || true
start_testsrv --port "$SRV"
assert_ended_with_error a "$A_PID"
assert_ended_with_error b "$B_PID"

http GET "/api/r/after?body=after"
assert_status 200 "a GET after the restart"
assert_eq after "$BODY"
sse c "/api/obs/temp?period_ms=200&max_age=2"
C_PID=$SSE_PID
c_events() { (($(events c) >= 2)); }
wait_until "a new stream to carry the new device's notifications" c_events
kill -TERM "$C_PID"
wait "$C_PID" 2>/dev/null || true
wait_until "no request in progress (coapgw_http_requests_active 1: the scrape)" requests_idle
stop_gateway

# --- 2. libcoap's coap-server-gnutls ---
command -v coap-server-gnutls >/dev/null || fail "coap-server-gnutls not installed (package libcoap3-bin)"
SRV=$(free_port)
coap-server-gnutls -A 127.0.0.1 -p "$SRV" >"$T/coap-server.1.log" 2>&1 &
CS_PID=$!
cs_up() {
    alive "$CS_PID" || fail "coap-server-gnutls exited"
    coap_get "$SRV" /time >/dev/null 2>&1
}
wait_until "coap-server-gnutls to answer" cs_up
GW_PORT=$(free_port)
write_config "$T/gw2.json" "coap://127.0.0.1:$SRV" "\"timeout_ms\": $TIMEOUT_MS"
start_gateway "$T/gw2.json"
sse t /api/time
T_PID=$SSE_PID
# one a second: the new server needs longer than timeout_ms to overtake this many
t_events() { (($(events t) >= 4 + 2 * FAULT_SLOW)); }
wait_until "the /time stream to carry notifications" t_events
kill -KILL "$CS_PID"
wait "$CS_PID" 2>/dev/null || true
coap-server-gnutls -A 127.0.0.1 -p "$SRV" >"$T/coap-server.2.log" 2>&1 &
CS_PID=$!
assert_ended_with_error t "$T_PID"
wait_until "the new coap-server-gnutls to answer" cs_up
http GET /api/time
assert_status 200 "a GET of /time after the restart"
stop_gateway
pass
