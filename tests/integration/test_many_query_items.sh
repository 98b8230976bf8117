#!/usr/bin/env bash
# A request target with hundreds or thousands of query items: with limits.max_uri_bytes raised so the target
# reaches the pipeline, every such GET gets a prompt 414 (more Uri-Query options than a CoAP request may carry)
# and the device is never asked; 2000 of them leave no request state behind (requests_active, RSS) and SIGTERM
# still exits at once. With the default max_uri_bytes the gateway's own size check answers 414.
source "$(dirname "$0")/lib.sh"

# Under the ASan build freed blocks wait in a quarantine (256 MB) that would count as RSS growth; without it
# the RSS check measures what is really kept. Leak detection at exit is unchanged.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$SRV" '"timeout_ms": 10000' '"cache": false' \
    '"limits": { "max_uri_bytes": 65536, "max_header_bytes": 131072 }'
start_gateway "$T/gw.json"

# query N: "a=1&a=1&..." with N items.
query() {
    local q
    printf -v q 'a=1&%.0s' $(seq "$1")
    echo "${q%&}"
}

metric() { # NAME
    local text
    text=$(curl -sS --max-time 10 "$(url /metrics)") || fail "GET /metrics failed"
    awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? "missing" : v) }' <<<"$text"
}

rss_kb() {
    awk '$1 == "VmRSS:" { print $2 }' "/proc/$GW_PID/status"
}

echo "check: 100, 500, 1000 and 5000 query items each get a prompt 414"
for n in 100 500 1000 5000; do
    http GET "/api/echo?$(query "$n")" --max-time 5 || fail "GET with $n query items"
    assert_problem 414 uri-too-long
done
assert_eq 0 "$(srv_count "$SRV" "GET /echo")" "device requests for the 414s"

echo "check: 2000 such requests leave no state behind"
for ((i = 0; i < 500; i++)); do
    for n in 100 500 1000 5000; do
        printf 'url = "%s"\noutput = "/dev/null"\n' "$(url "/api/echo?$(query "$n")")"
    done
done >"$T/urls"
# A first pass warms the allocator (arenas of every MHD thread), so the second measures growth only.
curl -sS -K "$T/urls" -Z --parallel-max 8 --max-time 10 -w '%{http_code}\n' >"$T/codes.warm" 2>"$T/curl.log"
rss_before=$(rss_kb)
curl -sS -K "$T/urls" -Z --parallel-max 8 --max-time 10 -w '%{http_code}\n' >"$T/codes" 2>>"$T/curl.log"
assert_eq 2000 "$(grep -c '^414$' "$T/codes")" "414 answers in the loop"
active_is_one() { [[ $(metric coapgw_http_requests_active) == 1 ]]; }
DEADLINE_S=2 wait_until "coapgw_http_requests_active == 1" active_is_one
rss_after=$(rss_kb)
echo "VmRSS: $rss_before kB before, $rss_after kB after 2000 requests"
((rss_after - rss_before < 10240)) || fail "VmRSS grew by $((rss_after - rss_before)) kB over 2000 requests"
assert_eq 0 "$(srv_count "$SRV" "GET /echo")" "device requests after the loop"

echo "check: SIGTERM exits 0 within 3 s"
start_s=$SECONDS
DEADLINE_S=3 stop_gateway
((SECONDS - start_s <= 3)) || fail "SIGTERM took $((SECONDS - start_s)) s"

echo "check: the default max_uri_bytes (2048): 500 items (2009 bytes) and 600 items (2409 bytes) get 414"
GW_PORT=$(free_port)
write_config "$T/gw2.json" "coap://127.0.0.1:$SRV"
start_gateway "$T/gw2.json"
http GET "/api/echo?$(query 500)" --max-time 5 || fail "GET with 500 query items"
assert_problem 414 uri-too-long
assert_contains "$BODY" "too many" "500 items fit max_uri_bytes: refused for the option count"
for n in 600 5000; do
    http GET "/api/echo?$(query "$n")" --max-time 5 || fail "GET with $n query items"
    assert_problem 414 uri-too-long
    assert_contains "$BODY" max_uri_bytes "the gateway's size check for $n items"
done
assert_eq 0 "$(srv_count "$SRV" "GET /echo")" "device requests"
stop_gateway
pass
