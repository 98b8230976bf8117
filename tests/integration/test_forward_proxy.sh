#!/usr/bin/env bash
# RFC 8075 §5 forward proxying: off by default; when on, /hc/coap://host:port/path (and the percent-encoded
# form) reaches only forward_proxy.allow targets. Every spelling of a forbidden address, multicast and
# broadcast get 403 and the device sees nothing; Location answers point back through the proxy.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT

echo "check: off by default: /hc/ is no route"
GW_PORT=$(free_port)
write_config "$T/off.json" "coap://127.0.0.1:$SRV"
start_gateway "$T/off.json"
http GET "/hc/coap://127.0.0.1:$SRV/r/x?body=no"
assert_problem 404
assert_eq 0 "$(srv_count "$SRV" "GET /r/x")" "device requests with the forward proxy off"
stop_gateway
pass "closed by default"

GW_PORT=$(free_port)
cat >"$T/on.json" <<JSON
{ "listen": "127.0.0.1:$GW_PORT",
  "forward_proxy": { "enabled": true, "prefix": "/hc/", "allow": ["127.0.0.1:$SRV"], "timeout_ms": 2000 } }
JSON
start_gateway "$T/on.json"

echo "check: an allowed target, plain and percent-encoded forms"
http GET "/hc/coap://127.0.0.1:$SRV/r/plain?body=hello"
assert_status 200 "plain form"
assert_eq hello "$BODY" "plain form body"
http GET "/hc/coap%3A%2F%2F127.0.0.1%3A$SRV%2Fr%2Fenc%3Fbody%3Dthere"
assert_status 200 "percent-encoded form"
assert_eq there "$BODY" "percent-encoded form body"
assert_eq 1 "$(srv_count "$SRV" "GET /r/plain")" "device GETs, plain form"
assert_eq 1 "$(srv_count "$SRV" "GET /r/enc")" "device GETs, encoded form"
http PUT "/hc/coap://127.0.0.1:$SRV/r/put?code=2.04" -H 'Content-Type: text/plain' --data-binary x
assert_status 204 "PUT through the forward proxy"
http GET "/hc/coap://127.0.0.1:$SRV/echo"
assert_not_contains "$BODY" "opt=3 " "an IP-literal target gets no Uri-Host (RFC 7252 §6.4 step 5)"
pass "allowed targets"

echo "check: Location answers point back through the proxy"
http POST "/hc/coap://127.0.0.1:$SRV/r/new?code=2.01&loc_path=made/it" -H 'Content-Type: text/plain' --data-binary x
assert_status 201 "2.01 through the forward proxy"
assert_header Location "/hc/coap://127.0.0.1:$SRV/made/it"
pass "Location"

echo "check: another address or port, multicast and broadcast: 403, the device untouched"
before=$(srv_count "$SRV" "GET /r/no")
for target in "127.0.0.2:$SRV" "127.0.0.1:$((SRV + 1))" "[::1]:$SRV" "224.0.1.187:5683" "255.255.255.255:5683"; do
    http GET "/hc/coap://$target/r/no"
    assert_problem 403
done
http GET "/hc/coap%3A%2F%2F127.0.0.2%3A$SRV%2Fr%2Fno"
assert_problem 403
assert_eq "$before" "$(srv_count "$SRV" "GET /r/no")" "device requests after refused targets"
pass "refused targets"

echo "check: malformed targets and coaps: 400 / 501"
http GET "/hc/http://127.0.0.1:$SRV/r/x"
assert_problem 400
http GET "/hc/coap://user@127.0.0.1:$SRV/r/x"
assert_problem 400
http GET "/hc/coaps://127.0.0.1:$SRV/r/x"
assert_problem 501
pass "malformed targets"
stop_gateway

echo "check: allow only 127.0.0.2: no spelling of 127.0.0.1 slips past (names resolved, every address checked)"
GW_PORT=$(free_port)
cat >"$T/narrow.json" <<JSON
{ "listen": "127.0.0.1:$GW_PORT",
  "forward_proxy": { "enabled": true, "allow": ["127.0.0.2/32"], "timeout_ms": 2000 } }
JSON
start_gateway "$T/narrow.json"
before=$(srv_count "$SRV" "GET /r/sneak")
for host in 127.0.0.1 localhost 127.1 2130706433 0x7f000001 0177.0.0.1 '[::ffff:127.0.0.1]' '[::ffff:7f00:1]'; do
    http GET "/hc/coap://$host:$SRV/r/sneak"
    assert_problem 403
done
assert_eq "$before" "$(srv_count "$SRV" "GET /r/sneak")" "device requests after the disguised targets"
pass "disguised loopback refused"
