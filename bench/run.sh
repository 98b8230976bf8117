#!/usr/bin/env bash
# bench/run.sh: builds the benchmark tools and coapgw (into bench/build/), then measures coapgw side by side
# with its baselines in one run and prints rates, ratios and PASS/MISS per target. It measures and reports;
# it never fails on a missed target (exit 0), only on a broken set-up. See bench/README.md.
#
# Environment (all optional):
#   DURATION=5 WARMUP=1 ROUNDS=3        seconds per measurement, seconds of warm-up before each, rounds
#   PRIME=3                             seconds of one unmeasured run per HTTP server before its first round
#   WRK_THREADS=2 WRK_CONNS=64          the wrk settings, the same for every HTTP server
#   COAP_LOAD_ARGS="-n 64 -k 16 -t 1"   coap_load: in flight, sessions, threads (the CoAP ceiling)
#   ONLY="hit pass node"                which comparisons to run
#   COAPGW=path/to/coapgw               use this binary instead of building one into bench/build/gw
#   BENCH_BUILD=bench/build             where tools, the gateway build and the logs go
#   PORT_<NAME>=N                       fix a port instead of picking a free one; NAME is one of MHD,
#                                       GW_HIT, GW_HIT_LOG, DEMO, DEMO_LOG, COAP, GW_PT1, GW_PT16, NODE
#   KEEP=1                              keep the run's directory (configs, logs) in bench/build/run-*
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=${BENCH_BUILD:-$HERE/build}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-64}
COAP_LOAD_ARGS=${COAP_LOAD_ARGS:--n 64 -k 16 -t 1}
ONLY=${ONLY:-hit pass node}
DEADLINE_S=30 # how long a server may take to start answering

mkdir -p "$BUILD"
RUN=$(mktemp -d "$BUILD/run-XXXXXX")
PIDS=()

# ---- processes ----

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ ${KEEP:-0} != 1 ]]; then
        rm -rf "$RUN"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
    echo "bench: $*" >&2
    exit 1
}

# start NAME CMD...: runs CMD in the background with its output in $RUN/NAME.log; the pid lands in LAST_PID.
start() {
    local name=$1
    shift
    "$@" >"$RUN/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

stop() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# ---- ports ----

TAKEN=" "
port_free() {
    local p=$1
    [[ $TAKEN != *" $p "* ]] &&
        [[ -z $(ss -Htan "sport = :$p" 2>/dev/null) ]] &&
        [[ -z $(ss -Huan "sport = :$p" 2>/dev/null) ]]
}

# pick NAME: sets PORT to PORT_NAME when that is set, else to a port free for TCP and UDP below the ephemeral
# range (32768+). Not in a subshell: TAKEN must remember it.
pick() {
    local var="PORT_$1"
    PORT=${!var:-}
    if [[ -z $PORT ]]; then
        for _ in $(seq 1000); do
            PORT=$((20000 + RANDOM % 12000))
            port_free "$PORT" && break
        done
    fi
    TAKEN+="$PORT "
}

# ---- readiness ----

wait_http() {
    local url=$1 pid=$2 name=$3
    for _ in $(seq $((DEADLINE_S * 10))); do
        kill -0 "$pid" 2>/dev/null || { cat "$RUN/$name.log" >&2; die "$name exited at start-up"; }
        if [[ $(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null) == 200 ]]; then
            return 0
        fi
        sleep 0.1
    done
    die "$name does not answer 200 on $url"
}

wait_coap() {
    local port=$1 pid=$2 name=$3
    for _ in $(seq $((DEADLINE_S * 2))); do
        kill -0 "$pid" 2>/dev/null || { cat "$RUN/$name.log" >&2; die "$name exited at start-up"; }
        if "$BUILD/coap_load" -p "$port" -n 1 -k 1 -w 0 -d 0.2 >/dev/null 2>&1; then
            return 0
        fi
    done
    die "$name does not answer CoAP on port $port"
}

# ---- building ----

CFLAGS_BENCH=(-O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra)

build_tools() {
    command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk)"
    command -v pkg-config >/dev/null || die "pkg-config is missing"
    local mhd coap
    read -ra mhd <<<"$(pkg-config --cflags --libs libmicrohttpd)"
    read -ra coap <<<"$(pkg-config --cflags --libs libcoap-3-gnutls)"
    gcc "${CFLAGS_BENCH[@]}" -o "$BUILD/hello_mhd" "$HERE/hello_mhd.c" "${mhd[@]}"
    gcc "${CFLAGS_BENCH[@]}" -o "$BUILD/coap_hello" "$HERE/coap_hello.c" "${coap[@]}"
    gcc "${CFLAGS_BENCH[@]}" -pthread -o "$BUILD/coap_load" "$HERE/coap_load.c" "${coap[@]}"
    if [[ -z ${COAPGW:-} ]]; then
        cmake -S "$ROOT" -B "$BUILD/gw" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
        cmake --build "$BUILD/gw" -j "$(nproc)" --target coapgw >/dev/null
        COAPGW=$BUILD/gw/coapgw
    fi
    [[ -x $COAPGW ]] || die "no coapgw binary at $COAPGW"
}

build_node() {
    local dir=$HERE/node-bridge
    command -v node >/dev/null || die "node is missing"
    if [[ ! -d $dir/node_modules/coap ]]; then
        (cd "$dir" && npm install --no-audit --no-fund >/dev/null) || die "npm install in $dir failed"
    fi
}

# ---- configurations ----

# gw_config FILE HTTP_PORT UPSTREAM_PORT MAX_INFLIGHT CACHE ACCESS_LOG DEMO(true|false)
gw_config() {
    cat >"$1" <<EOF
{
  "listen": "127.0.0.1:$2",
  "upstreams": { "dev": { "uri": "coap://127.0.0.1:$3", "max_inflight": $4, "queue_limit": 100000,
                          "timeout_ms": 10000 } },
  "routes": [ { "prefix": "/api/", "upstream": "dev", "methods": ["GET"], "cache": $5 } ],
  "demo_server": { "enabled": $7, "listen": "127.0.0.1:$3" },
  "log": { "level": "info", "access_log": $6 }
}
EOF
}

# ---- measuring ----

declare -A RATE  # "comparison/name" -> "r1 r2 r3"
declare -A FLAGS # "comparison/name" -> notes about errors seen
declare -A LABEL # name -> what it is

# wrk_rate KEY URL: a warm-up, then the measured run; appends the rate to RATE[KEY].
wrk_rate() {
    local key=$1 url=$2 out rate bad
    wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WARMUP}s" "$url" >/dev/null 2>&1 || true
    out=$(wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${DURATION}s" "$url" 2>&1) || true
    rate=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    [[ -n $rate ]] || { echo "$out" >&2; die "wrk gave no rate for $url"; }
    bad=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
    if [[ -n $bad ]]; then
        FLAGS[$key]+=" non2xx=$bad"
    fi
    bad=$(awk '/Socket errors:/ {sub(/.*Socket errors: /, ""); print}' <<<"$out")
    if [[ -n $bad ]]; then
        FLAGS[$key]+=" sock[$bad]"
    fi
    RATE[$key]+="$rate "
    printf '  %-26s %10.0f req/s\n' "$key" "$rate"
}

coap_rate() {
    local key=$1 port=$2 out rate errors
    # shellcheck disable=SC2086
    out=$("$BUILD/coap_load" -p "$port" $COAP_LOAD_ARGS -w "$WARMUP" -d "$DURATION") || die "coap_load: $out"
    rate=${out##*rate=}
    errors=${out##*errors=}
    errors=${errors%% *}
    if [[ $errors != 0 ]]; then
        FLAGS[$key]+=" coap_errors=$errors"
    fi
    RATE[$key]+="$rate "
    printf '  %-26s %10.0f req/s\n' "$key" "$rate"
}

# measure KEY: dispatches to the right load generator for KEY's server.
declare -A URL
measure() {
    local key=$1 name=${1#*/}
    if [[ $name == coap ]]; then
        coap_rate "$key" "$COAP_PORT"
    else
        wrk_rate "$key" "${URL[$name]}"
    fi
}

# prime NAME...: one unmeasured run per server before the rounds (JIT, caches, pools, first connections).
declare -A PRIMED
prime() {
    local n
    for n in "$@"; do
        if [[ -z ${PRIMED[$n]:-} && $n != coap ]]; then
            wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${PRIME:-3}s" "${URL[$n]}" >/dev/null 2>&1 || true
            PRIMED[$n]=1
        fi
    done
}

# rounds COMPARISON NAME...: ROUNDS rounds, the order reversed every other round so drift hits all alike.
rounds() {
    local cmp=$1 i k n names
    shift
    prime "$@"
    for ((i = 1; i <= ROUNDS; i++)); do
        echo "[$cmp] round $i/$ROUNDS"
        if ((i % 2 == 1)); then
            names=("$@")
        else
            names=()
            for ((k = $#; k >= 1; k--)); do
                names+=("${!k}")
            done
        fi
        for n in "${names[@]}"; do
            measure "$cmp/$n"
        done
    done
}

median() {
    tr ' ' '\n' | awk 'NF' | sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}

nth() { # nth KEY I: the rate of round I (1-based)
    awk -v i="$2" '{print $i}' <<<"${RATE[$1]}"
}

# ratio_median NUM_KEY DEN_EXPR: median over rounds of NUM/DEN, DEN computed per round by den_of_round.
ratio_rounds() {
    local num=$1 den_fn=$2 i ratios=()
    for ((i = 1; i <= ROUNDS; i++)); do
        ratios+=("$(awk -v a="$(nth "$num" "$i")" -v b="$($den_fn "$i")" 'BEGIN {printf "%.4f", a / b}')")
    done
    echo "${ratios[*]}" | median
}

# ---- the run ----

build_tools
[[ $ONLY == *node* ]] && build_node

pick COAP
COAP_PORT=$PORT
start coap_hello "$BUILD/coap_hello" "$COAP_PORT"
wait_coap "$COAP_PORT" "$LAST_PID" coap_hello

pick MHD
MHD_PORT=$PORT
start hello_mhd "$BUILD/hello_mhd" "$MHD_PORT"
URL[mhd]=http://127.0.0.1:$MHD_PORT/
wait_http "${URL[mhd]}" "$LAST_PID" hello_mhd
LABEL[mhd]="bare MHD hello (bench/hello_mhd)"
LABEL[coap]="CoAP server alone (coap_load -> coap_hello)"

if [[ $ONLY == *hit* ]]; then
    # Two gateways, each with its own embedded demo server: cached route to demo "/" (Max-Age 60).
    pick GW_HIT && p=$PORT
    pick DEMO && d=$PORT
    gw_config "$RUN/hit.json" "$p" "$d" 1 true false true
    start gw_hit "$COAPGW" --config "$RUN/hit.json"
    URL[hit]=http://127.0.0.1:$p/api/
    wait_http "${URL[hit]}" "$LAST_PID" gw_hit
    pick GW_HIT_LOG && p=$PORT
    pick DEMO_LOG && d=$PORT
    gw_config "$RUN/hit_log.json" "$p" "$d" 1 true true true
    start gw_hit_log "$COAPGW" --config "$RUN/hit_log.json"
    URL[hit_log]=http://127.0.0.1:$p/api/
    wait_http "${URL[hit_log]}" "$LAST_PID" gw_hit_log
    LABEL[hit]="coapgw cache hit, access_log off"
    LABEL[hit_log]="coapgw cache hit, access_log on (to a file)"
    curl -s -D - -o /dev/null "${URL[hit]}" | grep -qi '^X-Cache: HIT' || die "the cached route does not hit"
    rounds hit mhd hit hit_log
fi

if [[ $ONLY == *pass* || $ONLY == *node* ]]; then
    pick GW_PT1 && p=$PORT
    gw_config "$RUN/pt1.json" "$p" "$COAP_PORT" 1 false false false
    start gw_pt1 "$COAPGW" --config "$RUN/pt1.json"
    URL[pt1]=http://127.0.0.1:$p/api/
    wait_http "${URL[pt1]}" "$LAST_PID" gw_pt1
    pick GW_PT16 && p=$PORT
    gw_config "$RUN/pt16.json" "$p" "$COAP_PORT" 16 false false false
    start gw_pt16 "$COAPGW" --config "$RUN/pt16.json"
    URL[pt16]=http://127.0.0.1:$p/api/
    wait_http "${URL[pt16]}" "$LAST_PID" gw_pt16
    LABEL[pt1]="coapgw pass-through, max_inflight 1"
    LABEL[pt16]="coapgw pass-through, max_inflight 16"
fi

if [[ $ONLY == *pass* ]]; then
    rounds pass mhd coap pt16 pt1
fi

if [[ $ONLY == *node* ]]; then
    pick NODE && p=$PORT
    start node_bridge node "$HERE/node-bridge/bridge.js" "$p" 127.0.0.1 "$COAP_PORT"
    URL[node]=http://127.0.0.1:$p/api/
    wait_http "${URL[node]}" "$LAST_PID" node_bridge
    LABEL[node]="Node.js bridge (node:http + node-coap)"
    rounds node node pt16 pt1
fi

# ---- report ----

den_hit() { nth hit/mhd "$1"; }
den_ceiling() {
    awk -v h="$(nth pass/mhd "$1")" -v c="$(nth pass/coap "$1")" 'BEGIN {printf "%.1f", 1 / (1 / h + 1 / c)}'
}
den_node() { nth node/node "$1"; }

verdict() { # verdict RATIO TARGET
    awk -v r="$1" -v t="$2" 'BEGIN {print (r >= t ? "PASS" : "MISS")}'
}

med() { echo "${RATE[$1]}" | median; }

flags() {
    local f=${FLAGS[$1]:-}
    if [[ -n $f ]]; then
        echo " (!$f)"
    fi
}

{
    echo
    echo "coapgw benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(uname -sr), shared"
    echo "wrk -t$WRK_THREADS -c$WRK_CONNS -d${DURATION}s after a ${WARMUP}s warm-up; coap_load $COAP_LOAD_ARGS;" \
        "$ROUNDS rounds, order reversed every other round; rates are medians, ratios are medians of per-round ratios"
    echo "libmicrohttpd $(pkg-config --modversion libmicrohttpd), libcoap $(pkg-config --modversion libcoap-3-gnutls)," \
        "node $(node --version 2>/dev/null || echo -)," \
        "node-coap $(node -p "require('$HERE/node-bridge/node_modules/coap/package.json').version" 2>/dev/null || echo -)"
    echo
    echo "Rates per round (req/s):"
    for key in $(printf '%s\n' "${!RATE[@]}" | sort); do
        printf '  %-12s %-46s %s -> median %.0f%s\n' "$key" "${LABEL[${key#*/}]}" "${RATE[$key]}" "$(med "$key")" "$(flags "$key")"
    done
    echo
    printf '%-13s %-44s %8s  %-30s %8s %6s %8s  %s\n' comparison subject "req/s" baseline "req/s" ratio target verdict
    if [[ -n ${RATE[hit/mhd]:-} ]]; then
        for n in hit hit_log; do
            r=$(ratio_rounds "hit/$n" den_hit)
            printf '%-13s %-44s %8.0f  %-30s %8.0f %6.2f %8s  %s\n' "cache hit" "${LABEL[$n]}" "$(med "hit/$n")" \
                "bare MHD hello" "$(med hit/mhd)" "$r" ">= 0.90" "$(verdict "$r" 0.9)"
        done
    fi
    if [[ -n ${RATE[pass/mhd]:-} ]]; then
        ceil=()
        for ((i = 1; i <= ROUNDS; i++)); do ceil+=("$(den_ceiling "$i")"); done
        cm=$(echo "${ceil[*]}" | median)
        for n in pt16 pt1; do
            r=$(ratio_rounds "pass/$n" den_ceiling)
            printf '%-13s %-44s %8.0f  %-30s %8.0f %6.2f %8s  %s\n' "pass-through" "${LABEL[$n]}" "$(med "pass/$n")" \
                "HTTP+CoAP ceiling 1/(1/H+1/C)" "$cm" "$r" ">= 0.70" "$(verdict "$r" 0.7)"
        done
    fi
    if [[ -n ${RATE[node/node]:-} ]]; then
        for n in pt16 pt1; do
            r=$(ratio_rounds "node/$n" den_node)
            printf '%-13s %-44s %8.0f  %-30s %8.0f %6.2f %8s  %s\n' "vs Node.js" "${LABEL[$n]}" "$(med "node/$n")" \
                "Node.js bridge" "$(med node/node)" "$r" ">= 5.00" "$(verdict "$r" 5)"
        done
    fi
} | tee "$BUILD/last-run.txt"
