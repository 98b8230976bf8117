#!/usr/bin/env bash
# SIGTERM with a slow request in flight: the gateway stops accepting new connections, still delivers the
# in-flight answer (200), then exits 0. SIGINT on an idle gateway exits 0 too.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$SRV" '"timeout_ms": 30000'
start_gateway "$T/gw.json"

curl -sS -o "$T/slow.body" -w '%{http_code}' --max-time 60 "$(url '/api/r/slow?delay_ms=6000&body=finished')" \
    >"$T/slow.status" 2>"$T/slow.log" &
slow=$!
arrived() { [[ $(srv_count "$SRV" "GET /r/slow") == 1 ]]; }
wait_until "the slow request to reach the device" arrived

kill -TERM "$GW_PID"
# New connections are refused once the signal is handled (curl exit status 7: could not connect).
refused() {
    local rc=0
    curl -sS -o /dev/null --max-time 5 "$(url /healthz)" 2>/dev/null || rc=$?
    ((rc == 7))
}
wait_until "new connections to be refused after SIGTERM" refused
[[ $(srv_stat "$SRV" outstanding) == 1 ]] || fail "the slow request was no longer in flight when connections were refused"
alive "$GW_PID" || fail "the gateway exited before its in-flight request was answered"

wait "$slow" || fail "the in-flight request failed: $(cat "$T/slow.log")"
assert_eq 200 "$(cat "$T/slow.status")" "in-flight request status after SIGTERM"
assert_eq finished "$(cat "$T/slow.body")" "in-flight request body after SIGTERM"

gone() { ! alive "$GW_PID"; }
wait_until "the gateway to exit after its last request" gone
rc=0
wait "$GW_PID" || rc=$?
GW_PID=
assert_eq 0 "$rc" "gateway exit status after SIGTERM"

# SIGINT, idle.
start_gateway "$T/gw.json"
kill -INT "$GW_PID"
wait_until "the gateway to exit after SIGINT" gone
rc=0
wait "$GW_PID" || rc=$?
GW_PID=
assert_eq 0 "$rc" "gateway exit status after SIGINT"

pass
