#!/usr/bin/env bash
# log.format json puts the access log on stdout: a stuck stdout reader must not stop the gateway either.
# stdout goes into a FIFO that the test holds open and never reads, so the pipe fills after a few hundred
# access lines. 3000 requests after that must each be answered within 2 s, stderr keeps taking lines, and
# the dropped lines are counted on /metrics. When the reader comes back, stderr says how many stdout lines
# were lost (sink stdout) and stdout carries only whole JSON lines; with the reader stuck again, SIGTERM
# still ends the gateway promptly, status 0.
source "$(dirname "$0")/lib.sh"

command -v jq >/dev/null || fail "jq is missing (scripts/deps.sh installs it)"

REQUESTS=${REQUESTS:-3000}
PER_REQUEST_S=2 # a request slower than this is a stall
BATCH_S=90      # the whole batch, on a loaded machine under ASan
STOP_MS=10000   # SIGTERM to exit with a stuck log (the last flush gives up after 1 s)

GW_PORT=$(free_port)
DEMO_PORT=$GW_PORT # freeport checks TCP and UDP: HTTP on TCP, the demo on UDP
start_testsrv --blackhole
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": { "demo": { "uri": "coap://127.0.0.1:$DEMO_PORT" },
                 "hole": { "uri": "coap://127.0.0.1:$TESTSRV_PORT", "timeout_ms": 300 } },
  "routes": [ { "prefix": "/demo/", "upstream": "demo", "cache": false },
              { "prefix": "/hole/", "upstream": "hole" } ],
  "demo_server": { "enabled": true, "listen": "127.0.0.1:$DEMO_PORT" },
  "log": { "format": "json" }
}
JSON

# Read-write on our side: the gateway's open and writes succeed until the pipe is full; nobody reads.
mkfifo "$T/stuck"
exec 3<>"$T/stuck"
"$COAPGW" --config "$T/gw.json" >"$T/stuck" 2>"$T/stderr.log" &
GW_PID=$!
gateway_healthy() {
    alive "$GW_PID" || fail "coapgw exited before /healthz answered"
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$(url /healthz)") == 200 ]]
}
wait_until "coapgw /healthz == 200 on port $GW_PORT" gateway_healthy

demo_batch "$REQUESTS"
http GET /metrics
assert_status 200 "/metrics while stdout is stuck"
dropped=$(awk '$1 == "coapgw_log_lines_dropped_total" { print $2 }' <<<"$BODY")
echo "[$TEST_NAME] coapgw_log_lines_dropped_total $dropped"
if ! [[ $dropped =~ ^[0-9]+$ ]] || ((dropped == 0)); then
    fail "coapgw_log_lines_dropped_total is '$dropped', expected > 0"
fi
# stderr is not held up by stdout: a warn line (an upstream timeout) arrives while stdout is stuck.
http GET /hole/stuck
assert_problem 504
stderr_moves() {
    [[ -n $(jq -c 'select(.mod == "client" and .event == "timeout" and .path == "/stuck")' "$T/stderr.log") ]]
}
wait_until "the timeout line on stderr while stdout is stuck" stderr_moves

# The reader comes back: stderr reports the gap of stdout.
cat <&3 >"$T/stdout.txt" &
READER=$!
reported() {
    [[ -n $(jq -c 'select(.event == "lines_dropped" and .sink == "stdout" and
        (.lines | tonumber) > 0 and (.total | tonumber) > 0)' "$T/stderr.log") ]]
}
wait_until "a lines_dropped line for stdout on stderr" reported

# Stuck again, then SIGTERM: the last flush gives up instead of hanging the exit.
kill "$READER"
wait "$READER" || true
demo_batch 1000
start=$(now_ms)
stop_gateway
took=$(($(now_ms) - start))
echo "[$TEST_NAME] exit with a stuck stdout took $took ms"
((took < STOP_MS)) || fail "the exit took $took ms with a stuck stdout (limit $STOP_MS ms)"

# What got through is whole JSON lines (cat may have been stopped inside the last one).
head -n -1 "$T/stdout.txt" >"$T/whole.txt"
(($(wc -l <"$T/whole.txt") > 0)) || fail "nothing reached stdout"
bad=$(jq -c 'select((.request_id | type) != "string" or (.status | type) != "number")' "$T/whole.txt") ||
    fail "stdout has torn or interleaved lines: $(head -c 300 "$T/whole.txt")"
[[ -z $bad ]] || fail "stdout lines that are not access lines: $(head -c 300 <<<"$bad")"
pass
