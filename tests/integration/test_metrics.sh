#!/usr/bin/env bash
# GET /metrics: promtool (Debian's prometheus package) accepts the text before and after traffic, and the
# series move as they should: a 200, a device's 404, an unrouted 404 and a 504 each count once under their
# route, method and status class (with their durations and the upstream exchanges'), a cache hit counts a
# hit, an SSE stream is a subscriber while it lasts, the upstreams' gauges and counters are there, and probes
# are counted apart: a /readyz 503 moves no 5xx. A route prefix with a quote and a backslash is escaped.
source "$(dirname "$0")/lib.sh"

command -v promtool >/dev/null || fail "promtool is missing (scripts/deps.sh installs the prometheus package)"

GW_PORT=$(free_port)
DEMO_PORT=$GW_PORT # freeport checks TCP and UDP: HTTP on TCP, the demo on UDP
start_testsrv --blackhole
HOLE=$TESTSRV_PORT
WEIRD='/q\"b\\s/' # JSON for the prefix /q"b\s/
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": { "demo": { "uri": "coap://127.0.0.1:$DEMO_PORT" },
                 "hole": { "uri": "coap://127.0.0.1:$HOLE", "timeout_ms": 300, "required": true } },
  "routes": [ { "prefix": "/api/", "upstream": "demo" },
              { "prefix": "$WEIRD", "upstream": "hole", "cache": false } ],
  "demo_server": { "enabled": true, "listen": "127.0.0.1:$DEMO_PORT" }
}
JSON
start_gateway "$T/gw.json"

# scrape: the metrics text into $T/metrics, checked by promtool.
scrape() {
    curl -sS --max-time 10 -o "$T/metrics" -D "$T/metrics.h" "$(url /metrics)" || fail "GET /metrics failed"
    promtool check metrics <"$T/metrics" >"$T/promtool.log" 2>&1 ||
        fail "promtool check metrics: $(head -c 1000 "$T/promtool.log")"
}

# Value of the sample SERIES (name and labels exactly as written) in the last scrape; 0 when absent. (Passed
# through the environment: awk -v would undo the label's backslash escapes.)
sample() {
    SERIES=$1 awk '$1 == ENVIRON["SERIES"] { v = $2 } END { print (v == "" ? 0 : v) }' "$T/metrics"
}

# Value now (a fresh scrape).
now() {
    scrape
    sample "$1"
}

moved_by() { # SERIES BEFORE EXPECTED_DELTA [WHAT]
    local after
    after=$(sample "$1")
    assert_eq "$(($2 + $3))" "$after" "${4:-$1} (was $2)"
}

R200='coapgw_http_requests_total{route="/api/",method="GET",class="2xx"}'
R404='coapgw_http_requests_total{route="/api/",method="GET",class="4xx"}'
NOROUTE='coapgw_http_requests_total{route="(none)",method="GET",class="4xx"}'
R504='coapgw_http_requests_total{route="/q\"b\\s/",method="GET",class="5xx"}'
HOLE_UP='upstream="hole"'

echo "check: promtool accepts the text of a fresh gateway; the families are there"
scrape
for family in coapgw_build_info coapgw_http_requests_total coapgw_http_request_duration_seconds \
    coapgw_coap_exchange_duration_seconds coapgw_admin_requests_total coapgw_sse_subscribers \
    coapgw_upstream_up coapgw_upstream_inflight coapgw_upstream_queue_depth coapgw_upstream_observations \
    coapgw_upstream_exchanges_total coapgw_upstream_timeouts_total coapgw_upstream_retransmissions_total \
    coapgw_upstream_nacks_total coapgw_cache_hits_total coapgw_cache_misses_total \
    coapgw_cache_revalidated_total coapgw_cache_evictions_total coapgw_cache_bytes coapgw_cache_entries \
    coapgw_log_lines_dropped_total; do
    grep -q "^# TYPE $family " "$T/metrics" || fail "/metrics has no family $family"
done
assert_match "$(grep '^coapgw_build_info' "$T/metrics")" \
    '^coapgw_build_info\{version="[0-9.]+",libcoap="[0-9][^"]*",libmicrohttpd="[0-9][^"]*"\} 1$' "build info"
demo_up() { scrape && [[ $(sample 'coapgw_upstream_up{upstream="demo"}') == 1 ]]; }
wait_until "demo up (pinged at start-up)" demo_up
assert_eq 0 "$(sample "coapgw_upstream_inflight{$HOLE_UP}")" "hole in flight"
assert_match "$(header X-Request-Id "$T/metrics.h")" '^[0-9a-f]{32}$' "X-Request-Id of /metrics"

echo "check: a 200 counts once under /api/ GET 2xx, with its duration and one CoAP exchange"
b200=$(sample "$R200")
bcount=$(sample 'coapgw_http_request_duration_seconds_count{route="/api/"}')
bx=$(sample 'coapgw_coap_exchange_duration_seconds_count{upstream="demo"}')
bmiss=$(sample coapgw_cache_misses_total)
http GET /api/sensors/temperature
assert_status 200
scrape
moved_by "$R200" "$b200" 1
moved_by 'coapgw_http_request_duration_seconds_count{route="/api/"}' "$bcount" 1
moved_by 'coapgw_coap_exchange_duration_seconds_count{upstream="demo"}' "$bx" 1
moved_by coapgw_cache_misses_total "$bmiss" 1
inf=$(sample 'coapgw_http_request_duration_seconds_bucket{route="/api/",le="+Inf"}')
assert_eq "$(sample 'coapgw_http_request_duration_seconds_count{route="/api/"}')" "$inf" "+Inf bucket == count"

echo "check: a cache hit counts a hit and a 200, and no exchange"
bhit=$(sample coapgw_cache_hits_total)
b200=$(sample "$R200")
bx=$(sample 'coapgw_coap_exchange_duration_seconds_count{upstream="demo"}')
http GET /api/sensors/temperature
assert_status 200
assert_header X-Cache HIT
scrape
moved_by coapgw_cache_hits_total "$bhit" 1
moved_by "$R200" "$b200" 1
moved_by 'coapgw_coap_exchange_duration_seconds_count{upstream="demo"}' "$bx" 0

echo "check: the device's 404 and an unrouted 404 count apart"
b404=$(sample "$R404")
bnone=$(sample "$NOROUTE")
http GET /api/nope
assert_status 404
http GET /nowhere
assert_problem 404 no-route
scrape
moved_by "$R404" "$b404" 1
moved_by "$NOROUTE" "$bnone" 1

echo "check: a 504 counts under the quoting route's 5xx (its label escaped), a timeout and an exchange of its upstream"
b504=$(sample "$R504")
bto=$(sample "coapgw_upstream_timeouts_total{$HOLE_UP}")
bx=$(sample "coapgw_coap_exchange_duration_seconds_count{$HOLE_UP}")
http GET '/q"b\s/x'
assert_problem 504
scrape
grep -qF "$R504 " "$T/metrics" || fail "no escaped route label: $(grep '5xx' "$T/metrics" | head -3)"
moved_by "$R504" "$b504" 1
moved_by "coapgw_upstream_timeouts_total{$HOLE_UP}" "$bto" 1
moved_by "coapgw_coap_exchange_duration_seconds_count{$HOLE_UP}" "$bx" 1
# 300 ms of timeout_ms: above the 0.25 s bound, within 1 s.
assert_eq 0 "$(sample "coapgw_coap_exchange_duration_seconds_bucket{$HOLE_UP,le=\"0.25\"}")" "504 under 0.25 s"
assert_eq 1 "$(sample "coapgw_coap_exchange_duration_seconds_bucket{$HOLE_UP,le=\"+Inf\"}")" "504 bucket"

echo "check: probes are counted apart; a /readyz 503 moves no 5xx"
# "hole" is required: /readyz is 503 once 3 pings or requests in a row went unanswered.
hole_down() { [[ $(curl -s -o /dev/null -w '%{http_code}' "$(url /readyz)") == 503 ]]; }
wait_until "the required black-holed upstream down" hole_down
scrape
b5=$(sample 'coapgw_http_responses_total{class="5xx"}')
r504=$(sample "$R504")
bready=$(sample 'coapgw_admin_requests_total{endpoint="readyz",class="5xx"}')
bhealth=$(sample 'coapgw_admin_requests_total{endpoint="healthz",class="2xx"}')
http GET /readyz
assert_status 503 "/readyz with the black-holed upstream down"
http GET /healthz
assert_status 200
scrape
moved_by 'coapgw_admin_requests_total{endpoint="readyz",class="5xx"}' "$bready" 1
moved_by 'coapgw_admin_requests_total{endpoint="healthz",class="2xx"}' "$bhealth" 1
moved_by 'coapgw_http_responses_total{class="5xx"}' "$b5" 0 "5xx responses after probes"
moved_by "$R504" "$r504" 0 "the quoting route's 5xx after probes"
assert_eq 0 "$(sample "coapgw_upstream_up{$HOLE_UP}")" "the black-holed upstream is down"
! grep -q 'route="/readyz"\|route="/healthz"\|route="/metrics"' "$T/metrics" || fail "an admin path as a route"

echo "check: an SSE stream is a subscriber while it lasts"
assert_eq 0 "$(sample coapgw_sse_subscribers)" "subscribers before"
curl -sS -N --max-time 30 -H 'Accept: text/event-stream' -o "$T/sse.out" "$(url /api/sensors/temperature)" \
    2>/dev/null &
SSE_PID=$!
sse_open() { [[ $(now coapgw_sse_subscribers) == 1 ]]; }
wait_until "coapgw_sse_subscribers == 1" sse_open
grep -Eq '^coapgw_upstream_observations\{upstream="demo"\} [0-9]+$' "$T/metrics" ||
    fail "no observations gauge for demo"
kill "$SSE_PID"
wait "$SSE_PID" 2>/dev/null || true
sse_closed() { [[ $(now coapgw_sse_subscribers) == 0 ]]; }
wait_until "coapgw_sse_subscribers == 0 after the client left" sse_closed
grep -q '^event: 2.05$' "$T/sse.out" || fail "the SSE stream carried no event"

echo "check: methods outside the table count as other, never as a series of their own"
http BREW /api/x
scrape
! grep -q 'method="BREW"' "$T/metrics" || fail "a client's method became a label value"
assert_match "$(grep -c 'method="other"' "$T/metrics")" '^[1-9]' "method=other"

stop_gateway
pass
