#!/usr/bin/env bash
# max_inflight is the number of CoAP exchanges really on the wire: with 4 the device holds exactly 4 delayed
# requests at once, with 1 exactly one (NSTART), however many HTTP requests wait.
source "$(dirname "$0")/lib.sh"

start_testsrv
FOUR=$TESTSRV_PORT
start_testsrv
ONE=$TESTSRV_PORT
GW_PORT=$(free_port)
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "four": { "uri": "coap://127.0.0.1:$FOUR", "timeout_ms": 60000, "max_inflight": 4, "queue_limit": 100 },
    "one": { "uri": "coap://127.0.0.1:$ONE", "timeout_ms": 60000, "max_inflight": 1, "queue_limit": 100 }
  },
  "routes": [
    { "prefix": "/four/", "upstream": "four", "cache": false },
    { "prefix": "/one/", "upstream": "one", "cache": false }
  ]
}
JSON
start_gateway "$T/gw.json"

# burst PREFIX SRV_PORT COUNT DELAY_MS LIMIT: COUNT concurrent requests; the device must reach LIMIT
# outstanding exchanges and never more; every request gets its 200.
burst() {
    local prefix=$1 port=$2 count=$3 delay=$4 limit=$5 i pids=()
    for ((i = 0; i < count; i++)); do
        curl -sS -o /dev/null -w '%{http_code}\n' --max-time 100 \
            "$(url "/$prefix/r/slow?delay_ms=$delay&n=$i")" >"$T/$prefix.$i" &
        pids+=($!)
    done
    reached() { (($(srv_stat "$port" outstanding) >= limit)); }
    wait_until "$limit outstanding exchanges at the device behind /$prefix/" reached
    wait "${pids[@]}" || true
    for ((i = 0; i < count; i++)); do
        assert_eq 200 "$(cat "$T/$prefix.$i")" "request $i through /$prefix/"
    done
    assert_eq "$count" "$(srv_count "$port" "GET /r/slow")" "device requests behind /$prefix/"
    assert_eq "$limit" "$(srv_stat "$port" maxconc)" "most exchanges at once behind /$prefix/ (max_inflight $limit)"
}

burst four "$FOUR" 8 4000 4
burst one "$ONE" 3 1500 1

stop_gateway
pass
