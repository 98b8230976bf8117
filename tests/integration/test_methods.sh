#!/usr/bin/env bash
# Methods and message options as the device receives them: GET/POST/PUT/DELETE and FETCH/PATCH/iPATCH,
# HEAD -> GET without a body, CON by default and NON when the upstream says "type": "non" (also with a
# separate, delayed answer), If-Match / If-None-Match passed through.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "dev": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 10000 },
    "non": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 10000, "type": "non" }
  },
  "routes": [
    { "prefix": "/api/", "upstream": "dev", "cache": false },
    { "prefix": "/non/", "upstream": "non", "cache": false }
  ]
}
JSON
start_gateway "$T/gw.json"

echo_line() { # KEY: value of "KEY=..." in the last /echo answer
    awk -v k="$1=" 'index($0, k) == 1 { print substr($0, length(k) + 1); exit }' <<<"$BODY"
}

for m in GET DELETE; do
    http "$m" /api/echo
    assert_status 200 "$m /api/echo"
    assert_eq "$m" "$(echo_line method)" "CoAP method for HTTP $m"
    assert_eq CON "$(echo_line type)" "message type for $m"
done
for m in POST PUT FETCH PATCH iPATCH; do
    http "$m" /api/echo -H 'Content-Type: application/json' --data-binary '{"k":1}'
    assert_status 200 "$m /api/echo"
    assert_eq "$m" "$(echo_line method)" "CoAP method for HTTP $m"
    assert_eq 7 "$(echo_line payload_len)" "payload length for $m"
    assert_eq "$(hex '{"k":1}')" "$(echo_line payload_hex)" "payload for $m"
done

before=$(srv_count "$SRV" "GET /echo")
http HEAD /api/echo
assert_status 200 "HEAD /api/echo"
assert_eq $((before + 1)) "$(srv_count "$SRV" "GET /echo")" "HEAD is sent as a CoAP GET"

http GET /non/echo
assert_status 200 "GET through a NON upstream"
assert_eq NON "$(echo_line type)" "message type for a \"non\" upstream"
http GET "/non/r/late?delay_ms=300&body=late"
assert_status 200 "separate answer to a NON request"
assert_eq late "$BODY" "separate answer body to a NON request"
http GET "/api/r/late?delay_ms=300&body=late"
assert_status 200 "separate answer to a CON request"
assert_eq late "$BODY" "separate answer body to a CON request"

http PUT /api/echo -H 'Content-Type: text/plain; charset=utf-8' -H 'If-Match: "0a1b"' --data-binary 'v'
assert_status 200 "PUT with If-Match"
grep -qx 'opt=1 val=0a1b' <<<"$BODY" || fail "If-Match \"0a1b\" did not arrive as If-Match 0a1b: $BODY"
http PUT /api/echo -H 'Content-Type: text/plain; charset=utf-8' -H 'If-None-Match: *' --data-binary 'v'
assert_status 200 "PUT with If-None-Match: *"
grep -qx 'opt=5 val=' <<<"$BODY" || fail "If-None-Match: * did not arrive as an empty If-None-Match: $BODY"

stop_gateway
pass
