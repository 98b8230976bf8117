#!/usr/bin/env bash
# Upstream health and readiness: /readyz is 200 while serving whatever the devices do, and lists each
# upstream's state with what showed it; only an upstream with "required": true that is down makes it 503,
# naming the upstream and why. Any CoAP answer means up (an ACKed request that then times out is not a
# failure); 3 consecutive requests or pings without any answer mean down, one does not. ping_interval_s 0
# sends no pings: the state then comes from traffic only.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
start_testsrv --blackhole
HOLE=$TESTSRV_PORT
NOBODY=$(free_port) # nothing listens there: ICMP port unreachable

echo "check: devices down or slow do not make the gateway unready"
GW_PORT=$(free_port)
cat >"$T/a.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "dev": { "uri": "coap://127.0.0.1:$SRV" },
    "slow": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 800, "ping_interval_s": 0 },
    "nobody": { "uri": "coap://127.0.0.1:$NOBODY", "timeout_ms": 1500 },
    "hole": { "uri": "coap://127.0.0.1:$HOLE", "timeout_ms": 1500 }
  },
  "routes": [
    { "prefix": "/slow/", "upstream": "slow", "cache": false }
  ]
}
JSON
start_gateway "$T/a.json"
http GET /readyz
assert_contains "$BODY" "slow unknown" "/readyz body: no ping for ping_interval_s 0"
states_known() {
    http GET /readyz
    [[ $BODY == *"dev up"* && $BODY == *"nobody down"* && $BODY == *"hole down"* ]]
}
wait_until "/readyz to list dev up, nobody and hole down (three failed pings each)" states_known
assert_status 200 "/readyz with unreachable upstreams that are not required"
assert_eq serving "$(head -n 1 <<<"$BODY")" "/readyz first line"
assert_contains "$BODY" "hole down: no answer to a CoAP ping" "why hole is down"
assert_contains "$BODY" "nobody down: ICMP unreachable" "why nobody is down"
hole_down_logged() { grep -q 'event=upstream_down .*upstream="hole"' "$GW_LOG"; } # the logger's thread writes it
wait_until "the upstream_down line of hole" hole_down_logged
assert_eq 1 "$(grep -c 'event=upstream_down .*upstream="hole"' "$GW_LOG")" "upstream_down lines for hole"

# coap_testsrv's silent=1 ACKs the request and never answers it: 504 each time, but the device is there.
for i in 1 2 3 4; do
    http GET "/slow/r/s$i?silent=1"
    assert_problem 504
done
http GET /readyz
assert_contains "$BODY" "slow up" "/readyz body after four acknowledged timeouts"
assert_not_contains "$(cat "$GW_LOG")" 'event=upstream_down upstream="slow"' "gateway log"
stop_gateway

echo "check: a required upstream that is down makes /readyz 503, after 3 unanswered requests, not 1"
GW_PORT=$(free_port)
cat >"$T/b.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "dev": { "uri": "coap://127.0.0.1:$SRV", "required": true },
    "hole": { "uri": "coap://127.0.0.1:$HOLE", "timeout_ms": 500, "ping_interval_s": 0, "required": true }
  },
  "routes": [
    { "prefix": "/api/", "upstream": "dev", "cache": false },
    { "prefix": "/hole/", "upstream": "hole", "cache": false }
  ]
}
JSON
start_gateway "$T/b.json"
dev_up() {
    http GET /readyz
    [[ $BODY == *"dev up required"* ]]
}
wait_until "dev up" dev_up
assert_status 200 "/readyz with the required upstreams up or unknown"
for i in 1 2; do
    http GET "/hole/r/h$i"
    assert_problem 504
    http GET /readyz
    assert_status 200 "/readyz after $i unanswered request(s)"
    assert_contains "$BODY" "hole unknown required" "/readyz body after $i unanswered request(s)"
done
http GET /hole/r/h3
assert_problem 504
http GET /readyz
assert_status 503 "/readyz after 3 unanswered requests to a required upstream"
assert_eq "not ready: a required upstream is down" "$(head -n 1 <<<"$BODY")" "/readyz first line"
assert_contains "$BODY" "hole down required: the upstream did not answer within timeout_ms" "/readyz reason"
assert_contains "$BODY" "dev up required" "/readyz lists every upstream"
http GET "/api/r/x?body=ok"
assert_status 200 "a request to another upstream"
http GET /readyz
assert_status 503 "/readyz while hole is still down"
stop_gateway
pass
