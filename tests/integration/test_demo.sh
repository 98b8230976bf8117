#!/usr/bin/env bash
# The embedded demo CoAP server behind the gateway (demo_server enabled on a free port), and the demo used
# directly by libcoap's coap-client: hello, link-format discovery, a sensor, the LED actuator and errors.
source "$(dirname "$0")/lib.sh"

GW_PORT=$(free_port)
DEMO_PORT=$GW_PORT # freeport checks TCP and UDP: HTTP on TCP, the demo on UDP, same number
write_config "$T/gw.json" "coap://127.0.0.1:$DEMO_PORT" '"timeout_ms": 10000' '"cache": false' \
    "\"demo_server\": { \"enabled\": true, \"listen\": \"127.0.0.1:$DEMO_PORT\" }"
start_gateway "$T/gw.json"

# The demo answers the start-up ping: /readyz lists it as up (and is 200 whatever the devices do).
demo_ready() {
    http GET /readyz
    [[ $HTTP_STATUS == 200 && $BODY == *"dev up"* ]]
}
wait_until "/readyz 200 with the demo upstream up" demo_ready

http GET /api/
assert_status 200 "GET /api/"
assert_content_type "text/plain; charset=utf-8"
assert_eq "Hello, CoAP!" "$BODY" "GET /api/ body"

http GET /api/.well-known/core
assert_status 200 "GET /api/.well-known/core"
assert_content_type "application/link-format"
for res in "</sensors/temperature>" "</sensors/humidity>" "</actuators/led>"; do
    assert_contains "$BODY" "$res" "link-format listing"
done
assert_contains "$BODY" "rt=" "link-format attributes"
assert_contains "$BODY" "ct=" "link-format attributes"

for s in temperature humidity; do
    http GET "/api/sensors/$s"
    assert_status 200 "GET /api/sensors/$s"
    assert_content_type "application/json"
    assert_header Cache-Control "max-age=5"
    assert_match "$BODY" '^\{.*:.*[0-9].*\}$' "sensor $s JSON body"
done

http GET /api/actuators/led
assert_status 200 "GET /api/actuators/led"
assert_content_type "application/json"
assert_eq '{"on":false}' "$(tr -d ' \n' <<<"$BODY")" "LED initial state"

http PUT /api/actuators/led -H 'Content-Type: application/json' -d '{"on":true}'
assert_match "$HTTP_STATUS" '^(200|204)$' "PUT /api/actuators/led status (2.04)"
http GET /api/actuators/led
assert_status 200 "GET /api/actuators/led after PUT"
assert_eq '{"on":true}' "$(tr -d ' \n' <<<"$BODY")" "LED state after PUT"

# Malformed JSON: the device's 4.00 with its diagnostic payload as the HTTP body, byte for byte what a
# CoAP client sees.
direct=$("$COAP_CLIENT" -B 10 -m put -t 50 -e '{"on":' "coap://127.0.0.1:$DEMO_PORT/actuators/led" 2>&1) || true
http PUT /api/actuators/led -H 'Content-Type: application/json' -d '{"on":'
assert_status 400 "PUT malformed JSON"
[[ -n $BODY ]] || fail "PUT malformed JSON: empty body, expected the device's diagnostic"
assert_contains "$direct" "$BODY" "diagnostic payload (coap-client saw: $direct)"
assert_not_contains "$(status_line)" "$BODY" "status line must not carry the diagnostic"

# Wrong Content-Format: the device answers 4.15 (the gateway maps text/plain to 0 and asks it).
http PUT /api/actuators/led -H 'Content-Type: text/plain; charset=utf-8' -d 'on'
assert_status 415 "PUT text/plain to the LED"

http GET /api/nope
assert_status 404 "GET /api/nope"

http HEAD /api/
assert_status 200 "HEAD /api/"
assert_header Content-Type "text/plain; charset=utf-8"

# The demo is a CoAP server in its own right.
out=$("$COAP_CLIENT" -B 10 "coap://127.0.0.1:$DEMO_PORT/") || fail "coap-client GET / failed"
assert_eq "Hello, CoAP!" "$out" "coap-client GET /"
out=$("$COAP_CLIENT" -B 10 "coap://127.0.0.1:$DEMO_PORT/.well-known/core") || fail "coap-client discovery failed"
assert_contains "$out" "</sensors/temperature>" "coap-client discovery"

# One access line per request: method, path, status, upstream and CoAP code on one line. The access log is
# buffered (flushed every 50 ms), so wait for the line to appear.
humidity_logged() { grep -qF "/api/sensors/humidity" "$GW_LOG"; }
wait_until "the access log line for /api/sensors/humidity" humidity_logged
access=$(grep -F "/api/sensors/humidity" "$GW_LOG" | grep -F GET | grep -F 200 | grep -F 2.05 | grep -F dev) ||
    fail "no access log line with GET /api/sensors/humidity 200 dev 2.05 in the gateway log"
assert_eq 1 "$(wc -l <<<"$access")" "access log lines for one request"

stop_gateway
# After a clean stop the demo's UDP port is free again.
"$FREEPORT" >/dev/null
pass
