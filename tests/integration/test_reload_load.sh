#!/usr/bin/env bash
# 20 reloads under steady load, and not one failed request: keep-alive curl loops (fast requests, and slow
# ones that are in flight across a reload, finishing on their old generation) run while the file flips
# between two variants and SIGHUP is sent; every answer must be a 200 with the right body. Afterwards no
# generation is left held, and the gateway exits 0 (under ASan: no leak of any generation).
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
RELOADS=20
LOOPS=3 # fast loops; plus one slow loop

write_gw() { # VARIANT (0 or 1): the load's routes are in both; 1 adds one and changes limits and the log
    local extra= limits='"max_body_bytes": 1048576' access=true
    if (($1 == 1)); then
        extra=$',\n    { "prefix": "/b/", "upstream": "dev", "cache": false }'
        limits='"max_body_bytes": 524288, "sse_keepalive_s": 10'
        access=false
    fi
    cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": { "dev": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 10000, "max_inflight": 8,
                          "queue_limit": 256 } },
  "routes": [
    { "prefix": "/api/", "upstream": "dev", "cache": false },
    { "prefix": "/c/", "upstream": "dev" }$extra
  ],
  "limits": { $limits },
  "log": { "access_log": $access }
}
JSON
}

write_gw 0
start_gateway "$T/gw.json"

# One loop: curl sessions of 20 requests each on one keep-alive connection, until $T/stop exists (bounded
# by 2000 sessions). Every answer is written as "code=NNN body=TEXT" to $T/load.N.
load_loop() { # N QUERY
    local n=$1 query=$2 urls i s
    for ((s = 0; s < 2000; s++)); do
        [[ -e $T/stop ]] && return 0
        urls=()
        for ((i = 0; i < 20; i++)); do
            urls+=("$(url "/api/r/l$n?$query&body=ok$n&s=$s")")
        done
        curl -sS --max-time 60 -w ' code=%{http_code}\n' "${urls[@]}" 2>>"$T/load.$n.err" | sed "s/^/body=/" \
            >>"$T/load.$n" || echo "body= code=curl-failed" >>"$T/load.$n"
    done
}
for ((n = 0; n < LOOPS; n++)); do
    load_loop "$n" "n=$n" &
done
load_loop slow "delay_ms=150" & # separate responses: each is on the wire for 150 ms, across reloads

answers() { cat "$T"/load.* 2>/dev/null | grep -c 'code=' || true; }
grew() { (($(answers) >= $1)); }
count() { grep -cE -- "$1" "$GW_LOG" || true; }

slowest_ms=0
for ((r = 1; r <= RELOADS; r++)); do
    wait_until "load before reload $r" grew $(($(answers) + 30))
    write_gw $((r % 2))
    t0=$(date +%s%N)
    kill -HUP "$GW_PID"
    reloaded() { (($(count 'event=reloaded ') >= r)); }
    wait_until "reload $r to be logged" reloaded
    took=$((($(date +%s%N) - t0) / 1000000))
    ((took > slowest_ms)) && slowest_ms=$took
done
wait_until "load after the last reload" grew $(($(answers) + 30))
touch "$T/stop"
wait_loops() {
    local pid
    for pid in $(jobs -p); do
        [[ $pid == "$TESTSRV_PID" || $pid == "$GW_PID" ]] && continue
        wait "$pid" || true
    done
}
wait_loops

total=$(answers)
bad=$(cat "$T"/load.* | grep -cvE '^body=ok(slow|[0-9]+) code=200$' || true)
slow=$(grep -c 'code=200' "$T/load.slow" || true)
echo "figures: $RELOADS reloads, $total requests ($slow slow ones), $bad failed;" \
    "slowest SIGHUP to reload logged, as seen by 50 ms polling under load: $slowest_ms ms"
if ((bad > 0)); then
    cat "$T"/load.* | grep -vE '^body=ok(slow|[0-9]+) code=200$' | sort | uniq -c | head -20 >&2
    fail "$bad of $total requests failed during $RELOADS reloads"
fi
assert_eq "$((RELOADS + 1))" "$(grep 'event=reloaded ' "$GW_LOG" | tail -n 1 | sed 's/.*generation=\([0-9]*\).*/\1/')" \
    "the last generation"
((slow > 0)) || fail "no slow request was answered"
assert_eq 0 "$(count 'event=reload_failed')" "failed reloads"

# The load is over: the next reload finds every older generation destroyed.
released() {
    local before
    before=$(count 'event=reloaded ')
    kill -HUP "$GW_PID"
    logged() { (($(count 'event=reloaded ') > before)); }
    wait_until "a reload after the load" logged
    [[ $(grep 'event=reloaded ' "$GW_LOG" | tail -n 1) == *"older_held=0"* ]]
}
wait_until "every older generation to be destroyed" released

stop_gateway
pass
