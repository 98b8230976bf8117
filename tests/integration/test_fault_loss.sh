#!/usr/bin/env bash
# 30 % packet loss between the gateway and the device, both directions (lossyrelay, seeded; the kernel has no
# netem): every request ends as 200 (libcoap's retransmissions got through) or 504 (they did not within
# timeout_ms), within timeout_ms plus a margin; none hangs, none gets another status. Afterwards no request
# is left in progress (/metrics), the RSS is about what it was after the first round, and once the loss
# ends every request is answered 200 again. Prints the counts.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/faults.sh"

LOSS=${LOSS:-30}
SEED=${SEED:-7}
N=${N:-200}      # requests per round
ROUNDS=${ROUNDS:-2}
PAR=16           # concurrent clients, = max_inflight: queueing never eats into timeout_ms
TIMEOUT_MS=$(slow 2500)
MARGIN_MS=$(slow 1500) # a request's whole time may exceed timeout_ms by this (HTTP, scheduling on 2 cores)

start_testsrv
start_relay "$TESTSRV_PORT" "$LOSS" "$SEED"
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$RELAY_PORT" \
    "\"timeout_ms\": $TIMEOUT_MS, \"max_inflight\": $PAR, \"queue_limit\": 1000" '"cache": false' \
    '"log": { "level": "warn", "access_log": false }'
start_gateway "$T/gw.json"

total=0 ok=0 timeouts=0 hung=0 other=0
# round R: N requests, PAR at a time; a request still unanswered at curl's --max-time is "hung" (000).
round() {
    local r=$1 i code secs ms
    for ((i = 0; i < N; i++)); do
        printf 'url = "%s"\noutput = "/dev/null"\n' "$(url "/api/r/lossy?body=ok&r=$r&n=$i")"
    done >"$T/urls.$r"
    curl -s --parallel --parallel-immediate --parallel-max "$PAR" --max-time "$(slow 15)" \
        -w '%{http_code} %{time_total}\n' -K "$T/urls.$r" >"$T/codes.$r" 2>/dev/null || true
    (($(wc -l <"$T/codes.$r") == N)) || fail "round $r: curl reported $(wc -l <"$T/codes.$r") of $N transfers"
    while read -r code secs; do
        total=$((total + 1))
        ms=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 1000 }')
        case $code in
        200) ok=$((ok + 1)) ;;
        504) timeouts=$((timeouts + 1)) ;;
        000) hung=$((hung + 1)) ;;
        *)
            other=$((other + 1))
            echo "round $r: unexpected status $code after ${secs}s" >&2
            ;;
        esac
        if [[ $code != 000 ]] && ((ms > TIMEOUT_MS + MARGIN_MS)); then
            fail "round $r: a $code took $ms ms (timeout_ms $TIMEOUT_MS + margin $MARGIN_MS)"
        fi
    done <"$T/codes.$r"
}

round 1
wait_until "no request in progress after round 1" requests_idle
rss_first=$(gw_rss_kb)
for ((r = 2; r <= ROUNDS; r++)); do
    round "$r"
done
wait_until "no request in progress (coapgw_http_requests_active 1: the scrape)" requests_idle
rss_last=$(gw_rss_kb)

read -r _ up_in _ up_dropped _ down_in _ down_dropped _ flows <"$RELAY_COUNTS"
echo "relay ($LOSS % loss, seed $SEED): to the device $up_in datagrams, $up_dropped dropped;" \
    "back $down_in, $down_dropped dropped; $flows flows"
echo "counts: sent $total, answered 200 $ok, 504 $timeouts, hung $hung, other $other"
assert_eq 0 "$hung" "requests that hung"
assert_eq 0 "$other" "requests answered neither 200 nor 504"
assert_eq $((N * ROUNDS)) "$total" "requests sent"
((ok > 0 && timeouts > 0)) || fail "with $LOSS % loss both 200 and 504 were expected (200: $ok, 504: $timeouts)"
((up_dropped > 0 && down_dropped > 0)) || fail "the relay dropped nothing in one direction"
assert_rss_growth "$rss_first" "$rss_last" 2048 "$((N * (ROUNDS - 1))) requests after the first round"

# The loss ends (a relay without loss on the same port): the same gateway answers at once, every slot too.
kill -TERM "$RELAY_PID"
wait "$RELAY_PID" || true
start_relay "$TESTSRV_PORT" 0 "$SEED" "$RELAY_PORT"
for ((i = 0; i < 2 * PAR; i++)); do
    printf 'url = "%s"\noutput = "/dev/null"\n' "$(url "/api/r/clean?body=ok&n=$i")"
done >"$T/urls.clean"
got=$(curl -s --parallel --parallel-max "$PAR" --max-time "$(slow 15)" -w '%{http_code}\n' -K "$T/urls.clean" |
    sort | uniq -c | awk '{ print $2 ":" $1 }')
assert_eq "200:$((2 * PAR))" "$got" "requests once the loss ended"
stop_gateway
pass
