#!/usr/bin/env bash
# 1000 concurrent HTTP requests to a slow device (1 s each, max_inflight 64): every one gets its 200, the
# gateway holds ~1000 connections at once with a small, fixed number of threads (connections are suspended,
# no thread per request), and the device never sees more than 64 exchanges at once.
source "$(dirname "$0")/lib.sh"

N=1000
CLIENTS=4 # curl allows at most 300 parallel transfers per process
ulimit -n 8192 2>/dev/null || ulimit -n 4096 2>/dev/null || true
(($(ulimit -n) >= 2 * N + 100)) || { echo "SKIP: open-files limit $(ulimit -n) too low for $N connections"; exit 77; }

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$SRV" '"timeout_ms": 100000, "max_inflight": 64, "queue_limit": 2000' \
    '"cache": false' '"log": { "level": "warn", "access_log": false }, "limits": { "max_connections_per_ip": 0 }'
start_gateway "$T/gw.json"

pids=()
for ((c = 0; c < CLIENTS; c++)); do
    for ((i = c; i < N; i += CLIENTS)); do
        printf 'url = "%s"\noutput = "/dev/null"\n' "$(url "/api/r/slow?delay_ms=1000&n=$i&body=ok")"
    done >"$T/urls$c"
    curl -sS --parallel --parallel-immediate --parallel-max $((N / CLIENTS)) --max-time 110 \
        -w '%{http_code}\n' -K "$T/urls$c" >"$T/codes$c" 2>"$T/curl$c.log" &
    pids+=($!)
done

# Sample the gateway while the load runs: threads and open descriptors (one per connection).
max_threads=0 max_fds=0
load_running() {
    local p
    for p in "${pids[@]}"; do
        alive "$p" && return 0
    done
    return 1
}
while load_running; do
    threads=$(awk '/^Threads:/ { print $2 }' "/proc/$GW_PID/status" 2>/dev/null) || break
    fds=$(find "/proc/$GW_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    ((threads > max_threads)) && max_threads=$threads
    ((fds > max_fds)) && max_fds=$fds
    sleep 0.1
done
wait "${pids[@]}" || true
echo "gateway during the load: max threads $max_threads, max open descriptors $max_fds"

ok=$(cat "$T"/codes* | grep -c '^200$' || true)
if ((ok != N)); then
    echo "status codes:" >&2
    cat "$T"/codes* | sort | uniq -c >&2
    head -n 20 "$T"/curl*.log >&2
    fail "$ok of $N concurrent requests answered 200"
fi
((max_fds >= 900)) || fail "the gateway never held more than $max_fds descriptors: the load was not concurrent"
((max_threads <= 16)) || fail "the gateway used $max_threads threads for $N concurrent requests (expected <= 16)"
assert_eq "$N" "$(srv_count "$SRV" "GET /r/slow")" "device requests"
maxconc=$(srv_stat "$SRV" maxconc)
((maxconc <= 64)) || fail "the device saw $maxconc exchanges at once with max_inflight 64"

stop_gateway
pass
