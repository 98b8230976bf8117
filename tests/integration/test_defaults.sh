#!/usr/bin/env bash
# No arguments: HTTP on 127.0.0.1:8080, the embedded demo on 127.0.0.1:5683, /api/ -> demo. Those fixed ports
# may be in use on this machine (a gateway the developer is running), so the test re-runs itself inside a
# private network namespace with its own loopback.
if [[ -z ${COAPGW_IN_NETNS:-} ]]; then
    if [[ $(id -u) != 0 ]] || ! unshare -n true 2>/dev/null; then
        echo "SKIP: test_defaults needs root and unshare -n (a private network namespace) to use ports 8080/5683"
        exit 77
    fi
    exec unshare -n env COAPGW_IN_NETNS=1 bash "$0" "$@"
fi
source "$(dirname "$0")/lib.sh"
ip link set lo up || fail "cannot bring up lo in the private network namespace (iproute2 installed?)"

GW_PORT=8080
start_gateway -

http GET /api/
assert_status 200 "GET /api/"
assert_content_type "text/plain; charset=utf-8"
assert_eq "Hello, CoAP!" "$BODY" "GET /api/"

http GET /api/.well-known/core
assert_status 200 "GET /api/.well-known/core"
assert_contains "$BODY" "</sensors/temperature>" "discovery"

out=$("$COAP_CLIENT" -B 10 coap://127.0.0.1:5683/) || fail "coap-client to the demo on 5683 failed"
assert_eq "Hello, CoAP!" "$out" "demo on 5683"

stop_gateway

# --config without demo_server.enabled runs no demo server: nothing answers on 5683 (ICMP unreachable).
write_config "$T/gw.json" "coap://127.0.0.1:5683" '"timeout_ms": 1000'
start_gateway "$T/gw.json"
http GET /api/
assert_problem 502 upstream-error
stop_gateway
pass
