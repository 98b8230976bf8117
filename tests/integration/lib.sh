# shellcheck shell=bash
# Shared helpers for the integration tests: source it first thing in a test_*.sh. It creates a private temp
# dir, kills every process the test started when the script exits, and prints the logs when a test fails.
# Synchronisation is always by polling observable state (a port answering, a counter) under a generous
# deadline, never by sleeping a fixed time.
#
# Environment (set by ctest, see CMakeLists.txt): COAPGW, TESTSRV, FREEPORT. For a manual run from the repo:
#   COAPGW=build/coapgw TESTSRV=build/tests/integration/coap_testsrv \
#   FREEPORT=build/tests/integration/freeport bash tests/integration/test_demo.sh

set -eEuo pipefail

: "${COAPGW:?set COAPGW to the coapgw binary}"
: "${TESTSRV:?set TESTSRV to the coap_testsrv binary}"
: "${FREEPORT:?set FREEPORT to the freeport binary}"

COAP_CLIENT=${COAP_CLIENT:-coap-client-gnutls}
DEADLINE_S=${DEADLINE_S:-30} # how long any "wait until" may take before the test fails
TEST_NAME=$(basename "$0" .sh)
T=$(mktemp -d "${TMPDIR:-/tmp}/coapgw-$TEST_NAME.XXXXXX")
GW_PID=
GW_LOG=
GW_PORT=${GW_PORT:-}
TESTSRV_PID=
TESTSRV_PORT=
HTTP_STATUS=
BODY=

# ---- failure and clean-up ----

show_logs() {
    local f
    for f in "$T"/*.log; do
        [[ -s $f ]] || continue
        echo "----- $(basename "$f") (last 60 lines) -----" >&2
        tail -n 60 "$f" >&2
    done
}

fail() {
    echo "FAIL [$TEST_NAME]: $*" >&2
    if [[ -f $T/headers ]]; then
        echo "----- last response headers -----" >&2
        cat "$T/headers" >&2
        echo "----- last response body (first 2000 bytes) -----" >&2
        head -c 2000 "$T/body" >&2 || true
        echo >&2
    fi
    show_logs
    exit 1
}

on_error() {
    echo "FAIL [$TEST_NAME]: command failed (status $1) at line $2: $3" >&2
    show_logs
}
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR

# All descendants of a process, children before grandchildren (read from /proc, no procps needed).
descendants() {
    local parent=$1 stat pid ppid rest kids=()
    for stat in /proc/[0-9]*/stat; do
        read -r rest 2>/dev/null <"$stat" || continue
        pid=${rest%% *}
        rest=${rest##*) }
        ppid=${rest#* }
        ppid=${ppid%% *}
        if [[ $ppid == "$parent" ]]; then
            kids+=("$pid")
        fi
    done
    for pid in "${kids[@]}"; do
        echo "$pid"
        descendants "$pid"
    done
}

# True while pid exists and is not a zombie.
alive() {
    local state
    [[ -r /proc/$1/stat ]] || return 1
    state=$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ $state != Z ]]
}

cleanup() {
    local rc=$? pids pid i
    trap - ERR
    set +e
    mapfile -t pids < <(descendants $$)
    if ((${#pids[@]} > 0)); then
        kill -TERM "${pids[@]}" 2>/dev/null
        for ((i = 0; i < 100; i++)); do
            local any=0
            for pid in "${pids[@]}"; do
                if alive "$pid"; then
                    any=1
                fi
            done
            ((any)) || break
            sleep 0.05
        done
        kill -KILL "${pids[@]}" 2>/dev/null
    fi
    if ((rc != 0)); then
        echo "[$TEST_NAME] failed with status $rc; temp dir kept: $T" >&2
    elif [[ -z ${KEEP_TMP:-} ]]; then
        rm -rf "$T"
    fi
    exit "$rc"
}
trap cleanup EXIT

pass() {
    echo "PASS [$TEST_NAME]"
}

# ---- assertions ----

assert_eq() { # EXPECTED ACTUAL [WHAT]
    [[ $1 == "$2" ]] || fail "${3:-value}: expected '$1', got '$2'"
}

assert_contains() { # HAYSTACK NEEDLE [WHAT]
    [[ $1 == *"$2"* ]] || fail "${3:-text}: expected to contain '$2', got '$1'"
}

assert_not_contains() { # HAYSTACK NEEDLE [WHAT]
    [[ $1 != *"$2"* ]] || fail "${3:-text}: expected not to contain '$2', got '$1'"
}

assert_match() { # TEXT ERE [WHAT]
    [[ $1 =~ $2 ]] || fail "${3:-text}: expected to match /$2/, got '$1'"
}

# ---- HTTP ----

url() {
    echo "http://127.0.0.1:$GW_PORT$1"
}

# http METHOD PATH [curl args...]: one request to the gateway. Sets HTTP_STATUS and BODY; the raw body is in
# $T/body and the response headers in $T/headers. HEAD is sent with curl -I so curl does not wait for a body.
http() {
    local method=$1 path=$2 rc=0
    shift 2
    local args=(-sS -o "$T/body" -D "$T/headers" -w '%{http_code}' --max-time 60)
    if [[ $method == HEAD ]]; then
        args+=(-I)
    else
        args+=(-X "$method")
    fi
    : >"$T/body" # curl writes no -o file for a response without a body (204, 304)
    HTTP_STATUS=$(curl "${args[@]}" "$@" "$(url "$path")") || rc=$?
    if [[ $method == HEAD ]]; then
        : >"$T/body" # curl -I writes the headers there too; a HEAD response has no body to check
    fi
    ((rc == 0)) || fail "curl $method $path failed with exit status $rc"
    BODY=$(cat "$T/body")
}

# Value of response header NAME (case-insensitive) from a curl -D dump; only the last header block counts
# (skips "100 Continue"). Prints nothing and fails when absent.
header() { # NAME [FILE]
    local name file=${2:-$T/headers}
    name=$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')
    awk -v n="$name" '
        { sub(/\r$/, "") }
        /^HTTP\// { found = ""; next }
        {
            i = index($0, ":")
            if (i > 0 && tolower(substr($0, 1, i - 1)) == n) {
                v = substr($0, i + 1); sub(/^[ \t]+/, "", v); sub(/[ \t]+$/, "", v); found = v; seen = 1
            }
        }
        END { if (found != "" || seen) { print found; exit 0 } exit 1 }' "$file"
}

status_line() {
    awk '{ sub(/\r$/, "") } /^HTTP\// { line = $0 } END { print line }' "${1:-$T/headers}"
}

assert_status() { # EXPECTED [WHAT]
    [[ $HTTP_STATUS == "$1" ]] || fail "${2:-response}: expected HTTP status $1, got $HTTP_STATUS"
}

assert_header() { # NAME EXPECTED
    local v
    v=$(header "$1") || fail "header $1 missing (expected '$2')"
    [[ $v == "$2" ]] || fail "header $1: expected '$2', got '$v'"
}

assert_header_matches() { # NAME ERE
    local v
    v=$(header "$1") || fail "header $1 missing (expected /$2/)"
    [[ $v =~ $2 ]] || fail "header $1: expected to match /$2/, got '$v'"
}

assert_no_header() { # NAME
    local v
    if v=$(header "$1"); then
        fail "header $1 present ('$v') but must be absent"
    fi
}

# Media types compare without whitespace and case ("text/plain; charset=utf-8" == "text/plain;charset=UTF-8").
norm_media() {
    printf '%s' "$1" | tr -d ' \t' | tr '[:upper:]' '[:lower:]'
}

assert_content_type() { # EXPECTED
    local v
    v=$(header Content-Type) || fail "Content-Type missing (expected '$1')"
    [[ $(norm_media "$v") == "$(norm_media "$1")" ]] || fail "Content-Type: expected '$1', got '$v'"
}

# An RFC 9457 problem: status, media type, and the members type/title/status (detail is free text).
assert_problem() { # STATUS [SLUG]
    assert_status "$1" "problem"
    assert_content_type "application/problem+json"
    assert_match "$BODY" "\"type\"[[:space:]]*:[[:space:]]*\"urn:coapgw:problem:${2:-[a-z0-9-]+}\"" "problem type"
    assert_match "$BODY" "\"status\"[[:space:]]*:[[:space:]]*$1([^0-9]|$)" "problem status"
    assert_match "$BODY" "\"title\"[[:space:]]*:[[:space:]]*\"[^\"]+\"" "problem title"
}

# ---- processes ----

free_port() {
    "$FREEPORT"
}

# wait_until WHAT CMD...: polls CMD (every 50 ms) until it succeeds, or fails the test after DEADLINE_S.
wait_until() {
    local what=$1 end=$((SECONDS + DEADLINE_S))
    shift
    until "$@"; do
        ((SECONDS < end)) || fail "timed out after ${DEADLINE_S}s waiting for: $what"
        sleep 0.05
    done
}

# Wall-clock milliseconds (no fork).
now_ms() {
    local us=${EPOCHREALTIME/./}
    echo $((us / 1000))
}

# demo_batch N: N GETs of /demo/?n=I by one curl over 4 keep-alive connections, within BATCH_S in all and
# PER_REQUEST_S each (set by the test); --fail-early stops at the first that times out. Fails unless all N
# are answered 200 in time.
demo_batch() {
    local n=$1 i rc=0 start answered slowest
    for ((i = 1; i <= n; i++)); do
        printf 'url = "%s"\noutput = "/dev/null"\n' "$(url "/demo/?n=$i")"
    done >"$T/batch.curl"
    start=$(now_ms)
    timeout "$BATCH_S" curl -sS --no-progress-meter --parallel --parallel-max 4 --fail-early \
        --max-time "$PER_REQUEST_S" -w '%{http_code} %{time_total}\n' -K "$T/batch.curl" \
        >"$T/times.txt" 2>"$T/curl.log" || rc=$?
    answered=$(grep -c '^200 ' "$T/times.txt" || true)
    slowest=$(awk '$1 == 200 && $2 > m { m = $2 } END { printf "%.3f", m }' "$T/times.txt")
    echo "[$TEST_NAME] $answered/$n answered 200 in $(($(now_ms) - start)) ms, slowest ${slowest}s (rc $rc)"
    ((rc == 0)) || fail "the batch failed (status $rc) after $answered answers: $(head -c 300 "$T/curl.log")"
    assert_eq "$n" "$answered" "requests answered 200"
    awk -v lim="$PER_REQUEST_S" '$2 >= lim { bad = 1 } END { exit bad }' "$T/times.txt" ||
        fail "a request took ${slowest}s (limit ${PER_REQUEST_S}s)"
}

# wait_ready NAME PID OUT: waits until the test peer PID has written its "ready PORT" line to OUT, failing if
# it exits first. Sets READY_PORT.
wait_ready() {
    local name=$1 pid=$2 out=$3
    peer_ready() {
        alive "$pid" || fail "$name exited before it was ready"
        grep -q '^ready ' "$out"
    }
    wait_until "$name ready" peer_ready
    READY_PORT=$(awk '/^ready / { print $2; exit }' "$out")
}

# Starts coap_testsrv (extra args e.g. --blackhole). Sets TESTSRV_PORT and TESTSRV_PID; copy them before the
# next call when a test needs several servers.
start_testsrv() {
    local out log srv_desc="coap_testsrv $*"
    out=$(mktemp "$T/testsrv.XXXX.out")
    log=${out%.out}.log
    "$TESTSRV" "$@" >"$out" 2>"$log" &
    TESTSRV_PID=$!
    wait_ready "$srv_desc" "$TESTSRV_PID" "$out"
    TESTSRV_PORT=$READY_PORT
}

# Starts rawcoap (tests/integration/rawcoap.c, a CoAP responder on a raw UDP socket) logging to $T/raw.N.txt
# (extra args e.g. -r). Sets RAW_PORT, RAW_PID and RAW_LOG.
start_rawcoap() {
    local out bin=${RAWCOAP:-$(dirname "$TESTSRV")/rawcoap}
    out=$(mktemp "$T/rawcoap.XXXX.out")
    RAW_LOG=${out%.out}.txt
    : >"$RAW_LOG"
    "$bin" -l "$RAW_LOG" "$@" >"$out" 2>"${out%.out}.log" &
    RAW_PID=$!
    wait_ready "rawcoap $*" "$RAW_PID" "$out"
    RAW_PORT=$READY_PORT
}

# coap GET to a CoAP server directly (bypassing the gateway): coap_get PORT PATH -> payload on stdout.
coap_get() {
    "$COAP_CLIENT" -B 10 "coap://127.0.0.1:$1$2"
}

# Counter kept by coap_testsrv for "METHOD /path" (0 when never asked).
srv_count() { # PORT "GET /r/x"
    local stats
    stats=$(coap_get "$1" /stats) || fail "cannot read /stats from coap_testsrv on port $1"
    awk -v k="$2" '{ n = $NF; sub(/ [0-9]+$/, "") } $0 == k { print n; found = 1 } END { if (!found) print 0 }' \
        <<<"$stats"
}

srv_stat() { # PORT maxconc|outstanding
    coap_get "$1" "/stats/$2"
}

# start_gateway CONFIGFILE [args...]: "-" as CONFIGFILE means no --config. GW_PORT must be the HTTP port the
# gateway will listen on. Waits until GET /healthz answers 200. COAPGW_WRAPPER (words split on spaces, e.g.
# "valgrind --error-exitcode=99"; `make valgrind` sets it) runs the gateway under that command.
start_gateway() {
    local cfg=$1 code wrap=()
    shift
    local args=("$@")
    [[ -z ${COAPGW_WRAPPER:-} ]] || read -r -a wrap <<<"$COAPGW_WRAPPER"
    if [[ $cfg != - ]]; then
        args=(--config "$cfg" "${args[@]}")
    fi
    [[ -n $GW_PORT ]] || fail "start_gateway: GW_PORT is not set"
    GW_LOG=$(mktemp "$T/gateway.XXXX.log")
    "${wrap[@]}" "$COAPGW" "${args[@]}" >"$GW_LOG" 2>&1 &
    GW_PID=$!
    gateway_healthy() {
        alive "$GW_PID" || fail "coapgw ${args[*]} exited before /healthz answered"
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$(url /healthz)") || true
        [[ $code == 200 ]]
    }
    wait_until "coapgw /healthz == 200 on port $GW_PORT" gateway_healthy
}

# SIGTERM, wait for the exit and require status 0 (a leak under the ASan build makes it non-zero).
stop_gateway() {
    local rc=0
    [[ -n $GW_PID ]] || return 0
    kill -TERM "$GW_PID" 2>/dev/null || fail "gateway (pid $GW_PID) was already gone before SIGTERM"
    gateway_gone() { ! alive "$GW_PID"; }
    wait_until "coapgw to exit after SIGTERM" gateway_gone
    wait "$GW_PID" || rc=$?
    GW_PID=
    ((rc == 0)) || fail "coapgw exited with status $rc after SIGTERM (expected 0)"
}

# Hex of a string's bytes, as coap_testsrv prints option values ("ab" -> 6162).
hex() {
    printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n'
}

# Writes a config with one upstream "dev" at URI and one route /api/ -> dev. Optional extra JSON members
# (without the leading comma) for the upstream, the route and the top level. Caching is off unless the
# route extras say otherwise, so every request reaches the device.
write_config() { # FILE URI [UPSTREAM_EXTRA] [ROUTE_EXTRA] [TOP_EXTRA]
    local up=${3:-} route=${4:-\"cache\": false} top=${5:-}
    cat >"$1" <<EOF
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "dev": { "uri": "$2"${up:+, $up} }
  },
  "routes": [
    { "prefix": "/api/", "upstream": "dev"${route:+, $route} }
  ]${top:+, $top}
}
EOF
}
