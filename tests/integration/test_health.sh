#!/usr/bin/env bash
# coapgw --health URL (the container HEALTHCHECK): 0 on a 2xx answer with the status line on stdout, 1 on
# any other status, a refused connection, an unknown host or no answer within its 3 s deadline (a reason on
# stderr), 2 for a URL that is not http://HOST[:PORT][/PATH]. It reads no configuration.
source "$(dirname "$0")/lib.sh"

# probe URL: runs coapgw --health; sets RC, OUT, ERR.
probe() {
    RC=0
    timeout 30 "$COAPGW" --health "$1" >"$T/out" 2>"$T/err" </dev/null || RC=$?
    OUT=$(cat "$T/out")
    ERR=$(cat "$T/err")
}

start_testsrv --blackhole
HOLE_PORT=$TESTSRV_PORT
GW_PORT=$(free_port)
CLOSED_UDP=$(free_port)
# /api/ reaches a device that never answers, so the gateway holds the request for 6 s: past --health's 3 s.
# "gone" is a required upstream on a UDP port nobody listens on: its pings fail at once (ICMP), so /readyz
# turns 503 after three of them.
cat >"$T/gw.json" <<EOF
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "dev": { "uri": "coap://127.0.0.1:$HOLE_PORT", "timeout_ms": 6000 },
    "gone": { "uri": "coap://127.0.0.1:$CLOSED_UDP", "required": true }
  },
  "routes": [
    { "prefix": "/api/", "upstream": "dev", "cache": false },
    { "prefix": "/gone/", "upstream": "gone" }
  ]
}
EOF
start_gateway "$T/gw.json"
readyz_503() { [[ $(curl -s -o /dev/null -w '%{http_code}' "$(url /readyz)") == 503 ]]; }
wait_until "/readyz 503 with the required upstream down" readyz_503

probe "$(url /healthz)"
assert_eq 0 "$RC" "--health /healthz exit status (stderr: $ERR)"
assert_eq "HTTP/1.1 200 OK" "$OUT" "--health prints the status line"
assert_eq "" "$ERR" "--health /healthz stderr"

probe "http://localhost:$GW_PORT/healthz?probe=1#frag"
assert_eq 0 "$RC" "--health by host name, with a query and a fragment (stderr: $ERR)"

# The required upstream is down, so /readyz is 503.
probe "$(url /readyz)"
assert_eq 1 "$RC" "--health /readyz with the upstream not up"
assert_eq "coapgw: --health: HTTP/1.1 503 Service Unavailable" "$ERR" "--health reason for a 503"
assert_eq "" "$OUT" "--health prints nothing on stdout when unhealthy"

probe "$(url /nope)"
assert_eq 1 "$RC" "--health on a 404"
assert_contains "$ERR" "404 Not Found" "--health reason for a 404"

probe "$(url /api/slow)"
assert_eq 1 "$RC" "--health on an answer that does not come within 3 s"
assert_contains "$ERR" "timed out" "--health reason for no answer"

CLOSED=$(free_port)
probe "http://127.0.0.1:$CLOSED/healthz"
assert_eq 1 "$RC" "--health on a closed port"
assert_contains "$ERR" "Connection refused" "--health reason for a closed port"

probe "http://no-such-host.invalid/healthz"
assert_eq 1 "$RC" "--health on an unknown host"
assert_contains "$ERR" "no-such-host.invalid" "--health names the host it could not resolve"

for bad in "https://127.0.0.1:$GW_PORT/healthz" "127.0.0.1:$GW_PORT/healthz" "http://127.0.0.1:0/" \
    "http://127.0.0.1:65536/" "http://127.0.0.1:$GW_PORT/a b" "http:///healthz" "http://[::1/"; do
    probe "$bad"
    assert_eq 2 "$RC" "--health '$bad' exit status"
    assert_eq "coapgw: --health: $bad: not an http://HOST[:PORT][/PATH] URL" "$ERR" "--health '$bad' reason"
done

# A request line cannot be forged through the URL: CR/LF are refused like spaces.
probe "$(url /healthz)"$'\r\n'"X-Evil: 1"
assert_eq 2 "$RC" "--health with CR LF in the URL"

# The gateway was asked for /healthz, /readyz, /nope and /api/slow: each shows in its access log (the
# probes at debug only, so not at the default level info).
stop_gateway
for p in /nope /api/slow; do
    grep -q "path=$p " "$GW_LOG" || fail "no access log line for --health's GET $p"
done
for p in /healthz /readyz; do
    ! grep -q "path=$p " "$GW_LOG" || fail "the probe $p was logged at info"
done
pass
