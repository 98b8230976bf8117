#!/usr/bin/env bash
# 1000 HTTP clients that connect and stall (stallhttp: half send nothing, half stop inside their header
# section), with limits that let them in (max_connections 1200, max_connections_per_ip 0): a normal client
# is still served at once, long before header_timeout_s; at header_timeout_s the gateway cuts every stalled
# connection (the ones inside a request get 408), and its descriptors and memory (the live heap, through
# gdb) come back. Twice: a leak of 100 bytes per connection would show.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/faults.sh"

N=${N:-1000}
HEADER_S=$(slow 5)
ulimit -n 8192 2>/dev/null || ulimit -n 4096 2>/dev/null || true
(($(ulimit -n) >= 2 * N + 200)) || { echo "SKIP: open-files limit $(ulimit -n) too low for $N connections"; exit 77; }

start_testsrv
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$TESTSRV_PORT" '"timeout_ms": 2000' '"cache": false' \
    "\"log\": { \"level\": \"warn\", \"access_log\": false }, \"limits\": { \"max_connections\": $((N + 200)),
     \"max_connections_per_ip\": 0, \"header_timeout_s\": $HEADER_S, \"connection_timeout_s\": 600 }"
start_gateway "$T/gw.json"

gw_fds() {
    find "/proc/$GW_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l
}

http GET '/api/r/warm?body=ok'
assert_status 200 "warm-up"
rss_before=$(gw_rss_kb)

# stall_round R: N stalled connections, a normal client served meanwhile, all of them cut at header_timeout_s.
stall_round() {
    local r=$1 rc=0 result closed s408 last_ms code secs fds_before
    fds_before=$(gw_fds) # per round: the gateway's CoAP sessions come and go (a slot, the probe)
    "${STALLHTTP:-$(dirname "$TESTSRV")/stallhttp}" -p "$GW_PORT" -n "$N" -t $(((HEADER_S + $(slow 20)) * 1000)) \
        >"$T/stall.$r.out" 2>"$T/stall.$r.log" &
    STALL_PID=$!
    stall_ready() {
        grep -qs "^ready " "$T/stall.$r.out" && return 0
        alive "$STALL_PID" || fail "stallhttp: $(cat "$T/stall.$r.out" "$T/stall.$r.log")"
        return 1
    }
    wait_until "$N stalled connections" stall_ready
    accepted() { (($(gw_fds) >= fds_before + N - 4)); } # 4: CoAP sockets may close meanwhile
    wait_until "the gateway to hold the $N stalled connections" accepted
    fds_during=$(gw_fds)
    rss_during=$(gw_rss_kb)

    echo "check: round $r: a normal client while $N connections stall"
    read -r code secs < <(curl -sS -o "$T/body" -w '%{http_code} %{time_total}\n' --max-time "$((HEADER_S / 2))" \
        "$(url "/api/r/normal?body=normal&r=$r")")
    echo "served $code in ${secs}s"
    assert_eq 200 "$code" "a normal request during the stall"
    assert_eq normal "$(cat "$T/body")"
    alive "$STALL_PID" || fail "the stalled connections were cut before the normal request was served"
    code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time "$((HEADER_S / 2))" "$(url /healthz)")
    assert_eq 200 "$code" "/healthz during the stall"

    echo "check: round $r: header_timeout_s (${HEADER_S}s) cuts them"
    wait "$STALL_PID" || rc=$?
    result=$(tail -n 1 "$T/stall.$r.out")
    echo "stallhttp: $result"
    assert_eq 0 "$rc" "stallhttp's exit status (every connection closed by the gateway)"
    read -r _ closed _ _ _ _ _ s408 _ _ _ last_ms <<<"$result"
    assert_eq "$N" "$closed" "connections closed"
    assert_eq $((N / 2)) "$s408" "408 answers (the connections inside a request)"
    ((last_ms <= (HEADER_S + $(slow 5)) * 1000)) || fail "the last stalled connection was cut after $last_ms ms"
    back() { (($(gw_fds) <= fds_before + 4)); }
    wait_until "the gateway's descriptors to come back" back
    http GET "/api/r/after?body=after&r=$r"
    assert_status 200 "a request after the stall"
    wait_until "no request in progress (coapgw_http_requests_active 1: the scrape)" requests_idle
    echo "round $r: descriptors before $fds_before, during $fds_during, after $(gw_fds);" \
        "rss before $rss_before KiB, during $rss_during KiB"
}

# Memory returns: once every stalled connection is gone, the live heap is back where it was (the first round
# may keep a few KiB of structures made once); the RSS is only reported, as glibc keeps freed pages.
heap_before=$(gw_heap_bytes)
for ((r = 1; r <= ${ROUNDS:-2}; r++)); do
    stall_round "$r"
    heap_after=$(gw_heap_bytes)
    echo "memory: round $r: rss $(gw_rss_kb) KiB (before the stalls $rss_before KiB);" \
        "live heap ${heap_after:-?} bytes (before ${heap_before:-?})"
    if [[ -z $heap_before || -z $heap_after ]]; then
        echo "memory: the live heap is not checked (gdb missing, or a sanitizer or valgrind: their leak check is)"
        continue
    fi
    ((heap_after - heap_before <= 256 * 1024)) ||
        fail "round $r: the live heap grew by $((heap_after - heap_before)) bytes"
    if ((r == 1)); then
        heap_round1=$heap_after
    else
        ((heap_after - heap_round1 <= 64 * 1024)) ||
            fail "round $r: the live heap grew by $((heap_after - heap_round1)) bytes over round 1's"
    fi
done
stop_gateway
pass
