#!/usr/bin/env bash
# A stuck log reader must not stop the gateway: stderr goes into a FIFO that the test holds open and never
# reads (a log collector that hangs), so the 64 KiB pipe fills after a few hundred access lines. 3000
# requests after that must each be answered within 2 s, /healthz and /metrics must answer, and the dropped
# lines must be counted on /metrics. When the reader comes back, the log says how many lines it lacks and
# carries only whole lines; with the reader stuck again, SIGTERM still ends the gateway promptly, status 0.
source "$(dirname "$0")/lib.sh"

REQUESTS=${REQUESTS:-3000}
PER_REQUEST_S=2 # a request slower than this is a stall
BATCH_S=90      # the whole batch, on a loaded machine under ASan
STOP_MS=10000   # SIGTERM to exit with a stuck log (the last flush gives up after 1 s)

GW_PORT=$(free_port)
DEMO_PORT=$GW_PORT # freeport checks TCP and UDP: HTTP on TCP, the demo on UDP
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": { "demo": { "uri": "coap://127.0.0.1:$DEMO_PORT" } },
  "routes": [ { "prefix": "/demo/", "upstream": "demo", "cache": false } ],
  "demo_server": { "enabled": true, "listen": "127.0.0.1:$DEMO_PORT" }
}
JSON

# Read-write on our side: the gateway's open and writes succeed until the pipe is full; nobody reads.
mkfifo "$T/stuck"
exec 3<>"$T/stuck"
"$COAPGW" --config "$T/gw.json" --log-level info >"$T/stdout.log" 2>"$T/stuck" &
GW_PID=$!
gateway_healthy() {
    alive "$GW_PID" || fail "coapgw exited before /healthz answered"
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$(url /healthz)") == 200 ]]
}
wait_until "coapgw /healthz == 200 on port $GW_PORT" gateway_healthy

demo_batch "$REQUESTS"
http GET /healthz
assert_status 200 "/healthz while the log is stuck"
http GET /metrics
assert_status 200 "/metrics while the log is stuck"
assert_contains "$BODY" "# TYPE coapgw_log_lines_dropped_total counter" "/metrics"
dropped=$(awk '$1 == "coapgw_log_lines_dropped_total" { print $2 }' <<<"$BODY")
echo "[$TEST_NAME] coapgw_log_lines_dropped_total $dropped"
if ! [[ $dropped =~ ^[0-9]+$ ]] || ((dropped == 0)); then
    fail "coapgw_log_lines_dropped_total is '$dropped', expected > 0"
fi

# The reader comes back: the log reports the gap.
cat <&3 >"$T/stderr.txt" &
READER=$!
reported() {
    grep -Eq ' level=warn mod=log event=lines_dropped lines=[1-9][0-9]* total=[1-9]' "$T/stderr.txt"
}
wait_until "a lines_dropped line in the log" reported

# Stuck again, then SIGTERM: the last flush gives up instead of hanging the exit.
kill "$READER"
wait "$READER" || true
demo_batch 1000
start=$(now_ms)
stop_gateway
took=$(($(now_ms) - start))
echo "[$TEST_NAME] exit with a stuck log took $took ms"
((took < STOP_MS)) || fail "the exit took $took ms with a stuck log (limit $STOP_MS ms)"

# What got through is whole lines in coapgw's format (cat may have been stopped inside the last one).
bad=$(head -n -1 "$T/stderr.txt" | grep -Ev '^ts=[0-9T:.-]+Z level=(error|warn|info|debug) mod=[a-z]+ ' |
    head -3) || true
[[ -z $bad ]] || fail "lines not in coapgw's format (torn or interleaved): $bad"
pass
