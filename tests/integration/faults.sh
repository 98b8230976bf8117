# shellcheck shell=bash
# Helpers of the fault tests (test_fault_*.sh), sourced after lib.sh: the fault peers (faultcoap, lossyrelay),
# the gateway's memory and its /metrics gauges. LOSSYRELAY and FAULTCOAP are set by ctest (CMakeLists.txt).
#
# FAULT_SLOW (default 1; `make valgrind` sets it) multiplies the time a test gives the gateway to answer
# (timeouts, curl --max-time), because a gateway under valgrind is 20 to 50 times slower; the checks stay the
# same.

FAULT_SLOW=${FAULT_SLOW:-1}

# slow N: N times FAULT_SLOW (integers).
slow() {
    echo $(($1 * FAULT_SLOW))
}

# Starts faultcoap (tests/integration/faultcoap.c) with extra args. Sets FAULT_PORT and FAULT_PID.
start_faultcoap() {
    local out bin=${FAULTCOAP:-$(dirname "$TESTSRV")/faultcoap}
    out=$(mktemp "$T/faultcoap.XXXX.out")
    "$bin" "$@" >"$out" 2>"${out%.out}.log" &
    FAULT_PID=$!
    wait_ready "faultcoap $*" "$FAULT_PID" "$out"
    FAULT_PORT=$READY_PORT
}

# start_relay UPSTREAM_PORT LOSS SEED [PORT]: a lossyrelay towards 127.0.0.1:UPSTREAM_PORT dropping LOSS %
# each way, on PORT (default: a free one). Sets RELAY_PORT, RELAY_PID and RELAY_COUNTS (its counters file).
start_relay() {
    local out bin=${LOSSYRELAY:-$(dirname "$TESTSRV")/lossyrelay}
    out=$(mktemp "$T/relay.XXXX.out")
    RELAY_COUNTS=${out%.out}.counts
    RELAY_PORT=${4:-$(free_port)}
    "$bin" -p "$RELAY_PORT" -u "$1" -l "$2" -s "$3" -t 600 -c "$RELAY_COUNTS" >"$out" 2>"${out%.out}.log" &
    RELAY_PID=$!
    wait_ready lossyrelay "$RELAY_PID" "$out"
}

# True when the gateway runs under a sanitizer or valgrind: its RSS then says little about the gateway's own
# memory (ASan keeps freed blocks in a quarantine of up to 256 MiB, valgrind has shadow memory), and leaks
# are found by LeakSanitizer or valgrind at exit instead.
gw_instrumented() {
    [[ -n ${COAPGW_WRAPPER:-} ]] || grep -q 'libasan' "/proc/$GW_PID/maps" 2>/dev/null
}

# The gateway's resident set in KiB. glibc keeps freed heap pages (a thousand connections' worth after a
# burst) for later mallocs; when gdb is there, malloc_trim(0) is called in the gateway first, so what is
# measured is what the gateway holds, not what the allocator kept.
gw_rss_kb() {
    if ! gw_instrumented && command -v gdb >/dev/null; then
        timeout 30 gdb -p "$GW_PID" -batch -ex 'call (int) malloc_trim(0)' >/dev/null 2>&1 || true
    fi
    awk '/^VmRSS:/ { print $2 }' "/proc/$GW_PID/status"
}

# The gateway's live heap in bytes (glibc's malloc_stats, every arena: "in use bytes" of the total, written
# on the gateway's stderr, so read from its log); empty without gdb or under a sanitizer or valgrind. Unlike
# the RSS it does not count the free pages glibc keeps, so it shows a leak of a few bytes per connection.
gw_heap_bytes() {
    if gw_instrumented || ! command -v gdb >/dev/null; then
        return 0
    fi
    timeout 30 gdb -p "$GW_PID" -batch -ex 'call (void) malloc_stats()' >/dev/null 2>&1 || true
    awk '/^Total/ { t = 1 } t && /in use bytes/ { v = $NF; t = 0 } END { print v }' "$GW_LOG"
}

# Value of a /metrics sample (a line "NAME VALUE" or "NAME{labels} VALUE" given whole as its first field).
metric() { # NAME
    curl -sS --max-time "$(slow 5)" "$(url /metrics)" |
        awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print "missing" }'
}

# No HTTP request in progress but the /metrics scrape that asks (the gauge counts it: 1 when idle).
requests_idle() {
    [[ $(metric coapgw_http_requests_active) == 1 ]]
}

# assert_rss_growth BEFORE_KB AFTER_KB LIMIT_KB WHAT: fails when the RSS grew by more than the limit; only
# reported under a sanitizer or valgrind (see gw_instrumented).
assert_rss_growth() {
    echo "rss: $4: before ${1} KiB, after ${2} KiB, growth $(($2 - $1)) KiB (limit $3 KiB)"
    if gw_instrumented; then
        echo "rss: not checked under a sanitizer or valgrind (their leak check at exit is)"
        return 0
    fi
    (($2 - $1 <= $3)) || fail "$4: the gateway's RSS grew by $(($2 - $1)) KiB (limit $3 KiB)"
}
