#!/usr/bin/env bash
# A device that floods the gateway's client sockets with unsolicited messages: faultcoap learns each client
# socket's address from the requests it gets (the gateway has one socket per slot), then sends 200 000
# datagrams at them (20 000 a second): NON and CON notifications for observations nobody made, RSTs and
# ACKs of unknown message ids, pings, ACK responses, requests, random bytes (every 8th from another port,
# which the kernel drops for a connected socket: "any host"). Meanwhile normal requests are served (each
# within its timeout_ms; the device answers them at once), /healthz answers, and afterwards the RSS is
# about what it was before.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/faults.sh"

FLOOD=${FLOOD:-200000}
RATE=${RATE:-20000}
TIMEOUT_MS=$(slow 5000) # a real answer lost in a full socket buffer: one retransmission (2-3 s) fits

start_faultcoap -r "$RATE"
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$FAULT_PORT" "\"timeout_ms\": $TIMEOUT_MS, \"max_inflight\": 4" \
    '"cache": false' '"log": { "level": "warn", "access_log": false }'
start_gateway "$T/gw.json"

# batch N TAG: N requests on one keep-alive connection, 4 at once (so every slot's socket asks); prints the
# count of each status code, e.g. "200 400".
batch() {
    local n=$1 tag=$2 i
    for ((i = 0; i < n; i++)); do
        printf 'url = "%s"\noutput = "/dev/null"\n' "$(url "/api/ok?$tag=$i")"
    done >"$T/urls.$tag"
    curl -sS --parallel --parallel-max 4 --max-time "$(slow 20)" -w '%{http_code}\n' -K "$T/urls.$tag" \
        2>/dev/null | sort | uniq -c | awk '{ printf "%s%s:%s", sep, $2, $1; sep = " " } END { print "" }'
}

faultcoap_stat() { # flood_sent|flood_left|peers
    "$COAP_CLIENT" -B "$(slow 5)" "coap://127.0.0.1:$FAULT_PORT/stats" |
        awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }'
}

echo "check: warm-up"
assert_eq "200:400" "$(batch 400 warm)" "warm-up requests"
rss_before=$(gw_rss_kb)

http GET "/api/flood?n=$FLOOD"
assert_status 200 "the flood's trigger"
peers=$(faultcoap_stat peers)
echo "faultcoap knows $peers client sockets of the gateway (plus coap-client's)"
((peers >= 2)) || fail "faultcoap learnt only $peers client sockets"

echo "check: normal requests during the flood"
rounds=0 served=0
while [[ $(faultcoap_stat flood_left) != 0 ]]; do
    ((rounds < 1000)) || fail "the flood did not end after $rounds rounds"
    got=$(batch 25 "during$rounds")
    assert_eq "200:25" "$got" "requests during the flood (round $rounds)"
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time "$(slow 5)" "$(url /healthz)") || true
    assert_eq 200 "$code" "/healthz during the flood"
    served=$((served + 25))
    rounds=$((rounds + 1))
done
sent=$(faultcoap_stat flood_sent)
echo "flood: $sent datagrams sent; $served normal requests served during it, in $rounds rounds"
((sent >= FLOOD)) || fail "faultcoap sent $sent of $FLOOD flood datagrams"
((rounds >= 2)) || fail "only $rounds rounds of requests ran during the flood: it was not concurrent"

echo "check: after the flood"
assert_eq "200:400" "$(batch 400 after)" "requests after the flood"
rss_after=$(gw_rss_kb)
assert_rss_growth "$rss_before" "$rss_after" 2048 "a flood of $sent unsolicited datagrams"
alive "$GW_PID" || fail "the gateway died"
wait_until "no request in progress (coapgw_http_requests_active 1: the scrape)" requests_idle
stop_gateway
pass
