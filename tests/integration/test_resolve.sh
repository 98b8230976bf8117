#!/usr/bin/env bash
# Host names of upstreams: a name that does not resolve (RFC 6761 .invalid) is a warning of --check-config
# (exit 0), makes its upstream down with the reason on /readyz and its requests 502 problem+json naming the
# upstream, and does not stop the gateway. A name whose address changes is followed: the gateway runs in a
# private mount namespace (unshare -m) with a bind-mounted /etc/hosts that the test rewrites from 127.0.0.1
# to 127.0.0.2, and the requests reach the device on 127.0.0.2 once the name is resolved again
# (resolve_interval_s 1). Skipped (77) only when unshare or the bind mount is not permitted.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
cat >"$T/ghost.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "dev": { "uri": "coap://127.0.0.1:$SRV" },
    "ghost": { "uri": "coap://no-such-device.invalid:5683", "resolve_interval_s": 1 }
  },
  "routes": [
    { "prefix": "/api/", "upstream": "dev", "cache": false },
    { "prefix": "/ghost/", "upstream": "ghost", "cache": false }
  ]
}
JSON

echo "check: --check-config warns about a name that does not resolve, and exits 0"
rc=0
"$COAPGW" --config "$T/ghost.json" --check-config >"$T/check.out" 2>"$T/check.err" || rc=$?
assert_eq 0 "$rc" "--check-config exit status"
assert_contains "$(cat "$T/check.err")" "$T/ghost.json: upstreams.ghost.uri: warning: no-such-device.invalid does not resolve" \
    "--check-config stderr"
assert_not_contains "$(cat "$T/check.err")" "upstreams.dev" "--check-config stderr"
assert_contains "$(cat "$T/check.out")" "configuration is valid" "--check-config stdout"

echo "check: the gateway starts; the upstream is down and its requests get 502 naming it"
start_gateway "$T/ghost.json"
http GET "/api/r/x?body=fine"
assert_status 200 "a request to the upstream that resolves"
http GET /ghost/r/x
assert_problem 502
assert_contains "$BODY" "upstream ghost: cannot resolve no-such-device.invalid" "502 detail"
http GET /ghost/obs/x -H 'Accept: text/event-stream'
assert_problem 502
http GET /readyz
assert_status 200 "/readyz: ghost is not required"
assert_contains "$BODY" "ghost down: upstream ghost: cannot resolve no-such-device.invalid" "/readyz body"
# Tried again (resolve_interval_s 1, from the resolver thread): still a prompt 502, never a hang.
sleep_until_retried() { [[ $(grep -c 'event=resolve_failed\|event=upstream_down' "$GW_LOG") -ge 1 ]]; }
wait_until "a resolution failure logged" sleep_until_retried
http GET /ghost/r/y
assert_problem 502
stop_gateway

echo "check: a changed address in /etc/hosts is followed (unshare -m)"
if ! unshare -m true 2>/dev/null; then
    echo "SKIP: unshare -m is not permitted here"
    exit 77
fi
printf '127.0.0.1 localhost\n127.0.0.1 dev.test\n' >"$T/hosts"
# shellcheck disable=SC2016 # $1 is expanded by the inner sh
if ! unshare -m sh -c 'mount --bind "$1" /etc/hosts' _ "$T/hosts" 2>/dev/null; then
    echo "SKIP: a bind mount on /etc/hosts is not permitted here"
    exit 77
fi
# The same port on 127.0.0.2: libcoap's own example server, which has no /r resources (4.04).
coap-server-gnutls -A 127.0.0.2 -p "$SRV" >"$T/server2.log" 2>&1 &
SERVER2_PID=$!
server2_ready() {
    alive "$SERVER2_PID" || fail "coap-server-gnutls on 127.0.0.2 exited"
    "$COAP_CLIENT" -B 2 "coap://127.0.0.2:$SRV/" 2>/dev/null | grep -q libcoap
}
wait_until "coap-server-gnutls on 127.0.0.2:$SRV" server2_ready
GW_PORT=$(free_port)
cat >"$T/named.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": { "named": { "uri": "coap://dev.test:$SRV", "resolve_interval_s": 1 } },
  "routes": [ { "prefix": "/n/", "upstream": "named", "cache": false } ],
  "log": { "level": "info" }
}
JSON
GW_LOG="$T/gateway.named.log"
# unshare without --fork execs: the pid is the gateway's, so stop_gateway checks its exit status.
# shellcheck disable=SC2016 # $1..$3 are expanded by the inner sh
unshare -m sh -c 'mount --bind "$1" /etc/hosts && exec "$2" --config "$3"' _ "$T/hosts" "$COAPGW" \
    "$T/named.json" >"$GW_LOG" 2>&1 &
GW_PID=$!
named_healthy() {
    alive "$GW_PID" || fail "coapgw in its mount namespace exited before /healthz answered"
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$(url /healthz)") == 200 ]]
}
wait_until "coapgw (unshare -m) /healthz" named_healthy
http GET "/n/r/x?body=first"
assert_status 200 "a request to dev.test = 127.0.0.1"
assert_eq first "$BODY" "answer of the device on 127.0.0.1"
printf '127.0.0.1 localhost\n127.0.0.2 dev.test\n' >"$T/hosts" # in place: the bind mount keeps the inode
moved() {
    http GET /n/
    [[ $HTTP_STATUS == 200 && $BODY == *libcoap* ]]
}
wait_until "requests to reach the device on 127.0.0.2" moved
http GET "/n/r/x?body=first"
assert_status 404 "/r/x at libcoap's example server"
resolved_logged() { grep -q 'event=resolved addr=127.0.0.2 upstream="named"' "$GW_LOG"; }
wait_until "the resolved line in the gateway log" resolved_logged
stop_gateway
pass
