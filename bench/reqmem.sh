#!/usr/bin/env bash
# bench/reqmem.sh: memory per in-flight request. Parks N (1000) HTTP requests on a slow CoAP device and
# reports how much the gateway's resident memory grew, per request; then does the same with a bare
# libmicrohttpd server that suspends N connections (bench/hello_mhd --suspend), which is MHD's own share.
#
#   bench/reqmem.sh                      uses build/coapgw and build/tests/integration/{coap_testsrv,freeport}
#   COAPGW=/path/to/coapgw bench/reqmem.sh   measure another gateway binary (e.g. an older commit's)
#
# Knobs: N (1000 requests), DELAY_MS (30000: how long the device sits on each request), SETTLE_S (1: pause
# before each RSS reading), COAPGW, TESTSRV, FREEPORT. RSS is VmRSS from /proc/PID/status; "idle" is read
# after one warm-up request, "busy" once the server reports all N requests parked. Everything listens on
# 127.0.0.1; every process started here is stopped on exit.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
N=${N:-1000}
DELAY_MS=${DELAY_MS:-30000}
SETTLE_S=${SETTLE_S:-1}
COAPGW=${COAPGW:-$ROOT/build/coapgw}
TESTSRV=${TESTSRV:-$ROOT/build/tests/integration/coap_testsrv}
FREEPORT=${FREEPORT:-$ROOT/build/tests/integration/freeport}
BUILD=$HERE/build
CLIENTS=4 # curl runs at most 300 parallel transfers per process

die() {
    echo "reqmem: $*" >&2
    exit 1
}

for bin in "$COAPGW" "$TESTSRV" "$FREEPORT"; do
    [[ -x $bin ]] || die "$bin is missing: build first (make build, or cmake --build build)"
done
command -v curl >/dev/null || die "curl is missing"
((N >= CLIENTS && N <= 5000)) || die "N must be between $CLIENTS and 5000"
ulimit -n 8192 2>/dev/null || ulimit -n 4096 2>/dev/null || true
(($(ulimit -n) >= N + 200)) || die "open-files limit $(ulimit -n) is too low for $N connections"

T=$(mktemp -d /tmp/reqmem.XXXXXX)
PIDS=()
CURLS=()

stop() { # stop PID...: SIGTERM, up to 5 s, then SIGKILL
    local p i
    for p in "$@"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "$@"; do
        for ((i = 0; i < 50; i++)); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
cleanup() {
    stop "${CURLS[@]}" "${PIDS[@]}"
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# wait_for WHAT TRIES CMD...: CMD every 0.1 s until it succeeds, at most TRIES times.
wait_for() {
    local what=$1 tries=$2 i
    shift 2
    for ((i = 0; i < tries; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    die "timed out waiting for $what"
}

# park URL_PREFIX: N concurrent GETs URL_PREFIX<i>, in the background (their pids in CURLS).
park() {
    local c i
    for ((c = 0; c < CLIENTS; c++)); do
        for ((i = c; i < N; i += CLIENTS)); do
            printf 'url = "%s%d"\noutput = "/dev/null"\n' "$1" "$i"
        done >"$T/urls$c"
        curl -s --parallel --parallel-immediate --parallel-max $((N / CLIENTS + 1)) \
            --max-time $((DELAY_MS / 1000 + 60)) -K "$T/urls$c" >/dev/null 2>&1 &
        CURLS+=($!)
    done
}

unpark() {
    stop "${CURLS[@]}"
    CURLS=()
}

# ---- building: hello_mhd as bench/run.sh builds it ----

mkdir -p "$BUILD"
read -ra mhd_flags <<<"$(pkg-config --cflags --libs libmicrohttpd)"
gcc -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -o "$BUILD/hello_mhd" "$HERE/hello_mhd.c" "${mhd_flags[@]}"

# ---- the gateway in front of a slow device ----

"$TESTSRV" --port 0 >"$T/testsrv.out" 2>"$T/testsrv.log" &
PIDS+=($!)
SRV_PID=$!
testsrv_ready() { grep -q '^ready ' "$T/testsrv.out"; }
wait_for "coap_testsrv" 100 testsrv_ready
SRV_PORT=$(awk '/^ready / { print $2; exit }' "$T/testsrv.out")

GW_PORT=$("$FREEPORT")
cat >"$T/gw.json" <<EOF
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "dev": { "uri": "coap://127.0.0.1:$SRV_PORT", "timeout_ms": $((DELAY_MS + 60000)), "max_inflight": 1024,
             "queue_limit": $((N > 1000 ? N : 1000)) }
  },
  "routes": [ { "prefix": "/api/", "upstream": "dev", "cache": false } ],
  "limits": { "max_connections": 10000, "max_connections_per_ip": 0, "connection_timeout_s": $((DELAY_MS / 1000 + 60)) },
  "log": { "level": "warn", "access_log": false }
}
EOF
"$COAPGW" --config "$T/gw.json" >"$T/gw.log" 2>&1 &
PIDS+=($!)
GW_PID=$!
GW=http://127.0.0.1:$GW_PORT
gw_healthy() {
    kill -0 "$GW_PID" 2>/dev/null || die "coapgw exited: $(tail -n 5 "$T/gw.log")"
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$GW/healthz") == 200 ]]
}
wait_for "coapgw /healthz" 100 gw_healthy

# Warm-up: one request through the whole path (session, worker, a delayed answer), then the idle reading.
[[ $(curl -s --max-time 10 "$GW/api/r/warm?delay_ms=100&body=ok") == ok ]] || die "warm-up request failed"
sleep "$SETTLE_S"
gw_idle=$(rss_kib "$GW_PID")

park "$GW/api/r/slow?delay_ms=$DELAY_MS&body=ok&n="
# /metrics counts itself among the requests in progress.
gw_active() {
    local a
    a=$(curl -s --max-time 2 "$GW/metrics" | awk '$1 == "coapgw_http_requests_active" { print $2 }')
    [[ -n $a ]] && ((a - 1 >= N))
}
wait_for "$N requests active on the gateway" 600 gw_active
sleep "$SETTLE_S"
gw_busy=$(rss_kib "$GW_PID")
gw_active || die "the requests were answered before the busy reading: raise DELAY_MS"
srv_outstanding=$(curl -s --max-time 2 "$GW/api/stats/outstanding" || true)
unpark
stop "$GW_PID" "$SRV_PID"
PIDS=()

# ---- MHD alone: N suspended connections ----

MHD_PORT=$("$FREEPORT")
"$BUILD/hello_mhd" "$MHD_PORT" --suspend >"$T/mhd.log" 2>&1 &
PIDS+=($!)
MHD_PID=$!
MHD=http://127.0.0.1:$MHD_PORT
mhd_up() { [[ $(curl -s --max-time 2 "$MHD/count") =~ ^[0-9]+$ ]]; }
wait_for "hello_mhd" 100 mhd_up
curl -s --max-time 2 -o /dev/null "$MHD/count" # warm-up
sleep "$SETTLE_S"
mhd_idle=$(rss_kib "$MHD_PID")
park "$MHD/slow?n="
mhd_parked() {
    local c
    c=$(curl -s --max-time 2 "$MHD/count")
    [[ $c =~ ^[0-9]+$ ]] && ((c >= N))
}
wait_for "$N suspended connections on hello_mhd" 600 mhd_parked
sleep "$SETTLE_S"
mhd_busy=$(rss_kib "$MHD_PID")
unpark

# ---- report ----

per() { echo $((($2 - $1) * 1024 / N)); }
gw_per=$(per "$gw_idle" "$gw_busy")
mhd_per=$(per "$mhd_idle" "$mhd_busy")
printf 'coapgw:    %s\n' "$("$COAPGW" --version 2>/dev/null || echo "$COAPGW")"
printf 'device:    coap_testsrv, %d ms per answer; %s exchanges outstanding at the busy reading\n' \
    "$DELAY_MS" "${srv_outstanding:-?}"
printf '%-34s %10s %10s %12s\n' "" "idle KiB" "busy KiB" "bytes/req"
printf '%-34s %10d %10d %12d\n' "coapgw, $N requests in flight" "$gw_idle" "$gw_busy" "$gw_per"
printf '%-34s %10d %10d %12d\n' "hello_mhd, $N suspended" "$mhd_idle" "$mhd_busy" "$mhd_per"
printf '%-34s %10s %10s %12d\n' "coapgw's own share (difference)" "" "" $((gw_per - mhd_per))
