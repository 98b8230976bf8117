#!/usr/bin/env bash
# Against libcoap's own example server (coap-server-gnutls from libcoap3-bin), a CoAP implementation we
# did not write: its banner at /, its clock at /time, its discovery document.
source "$(dirname "$0")/lib.sh"

command -v coap-server-gnutls >/dev/null || fail "coap-server-gnutls not installed (package libcoap3-bin)"
SRV=$(free_port)
coap-server-gnutls -A 127.0.0.1 -p "$SRV" >"$T/coap-server.log" 2>&1 &
SRV_PID=$!
server_up() {
    alive "$SRV_PID" || fail "coap-server-gnutls exited"
    "$COAP_CLIENT" -B 2 "coap://127.0.0.1:$SRV/.well-known/core" >/dev/null 2>&1
}
wait_until "coap-server-gnutls to answer" server_up

GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$SRV" '"timeout_ms": 10000'
start_gateway "$T/gw.json"

http GET /api/
assert_status 200 "GET /api/"
assert_contains "$BODY" "This is a test server made with libcoap" "banner"

http GET /api/time
assert_status 200 "GET /api/time"
assert_header Cache-Control "max-age=1" # its /time sends Max-Age 1 and no Content-Format
assert_match "$BODY" '^[A-Z][a-z]{2} [0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$' "time body"

http GET /api/.well-known/core
assert_status 200 "GET /api/.well-known/core"
assert_content_type "application/link-format"
assert_contains "$BODY" "</time>" "discovery"

http GET /api/no-such-resource
assert_status 404 "GET /api/no-such-resource"

stop_gateway
pass
