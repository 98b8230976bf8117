#!/usr/bin/env bash
# Closed by default, authenticated, rate-limited: per-route bearer and API-key auth (401/403), admin.auth on
# /metrics only, CORS preflights answered by the gateway, per-address rate limit (429), HTTPS with a
# certificate made here, the request-size limits (414, 431), max_inflight_total (503), and device values
# that must never split a header. Real curl, real sockets, coap_testsrv as the device.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
umask 077
printf '# tokens\ns3cret-token\n' >"$T/tokens.txt"
printf 'key-1\n' >"$T/keys.txt"
printf 'admin-token\n' >"$T/admin.txt"
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": { "dev": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 3000, "max_inflight": 4 } },
  "routes": [
    { "prefix": "/sec/", "upstream": "dev", "cache": false,
      "auth": { "type": "bearer", "tokens_file": "tokens.txt" } },
    { "prefix": "/key/", "upstream": "dev", "cache": false,
      "auth": { "type": "api_key", "header": "X-API-Key", "keys_file": "keys.txt" } },
    { "prefix": "/web/", "upstream": "dev", "cache": false, "methods": ["GET", "PUT"],
      "auth": { "type": "bearer", "tokens_file": "tokens.txt" },
      "cors": { "allow_origins": ["https://app.example"], "allow_headers": ["Content-Type", "Authorization"],
                "max_age_s": 600 } },
    { "prefix": "/api/", "upstream": "dev", "cache": false }
  ],
  "admin": { "auth": { "type": "bearer", "tokens_file": "admin.txt" } },
  "limits": { "max_uri_bytes": 256, "max_header_bytes": 2048 }
}
JSON
start_gateway "$T/gw.json" --log-level debug

echo "check: a bearer route: 401 + WWW-Authenticate without credentials, 403 with wrong ones, the device untouched"
before=$(srv_count "$SRV" "GET /r/sec")
http GET /sec/r/sec
assert_problem 401
assert_header WWW-Authenticate 'Bearer realm="coapgw"'
http GET /sec/r/sec -H 'Authorization: Bearer nope'
assert_problem 403
http GET /sec/r/sec -H 'Authorization: Basic czNjcmV0LXRva2Vu'
assert_problem 403
assert_eq "$before" "$(srv_count "$SRV" "GET /r/sec")" "device requests after refused credentials"
http GET /sec/r/sec -H 'Authorization: Bearer s3cret-token'
assert_status 200 "the right token"
assert_eq $((before + 1)) "$(srv_count "$SRV" "GET /r/sec")" "device requests after the right token"
http PATCH /sec/r/sec
assert_problem 401 # authentication comes before anything else is said about the route
pass "bearer route"

echo "check: an API-key route reads its header"
http GET /key/r/k
assert_problem 401
assert_header WWW-Authenticate 'ApiKey header="X-API-Key"'
http GET /key/r/k -H 'X-API-Key: key-2'
assert_problem 403
http GET /key/r/k -H 'X-API-Key: key-1'
assert_status 200 "the right API key"
pass "API-key route"

echo "check: secrets never reach the log, at debug"
if grep -q -e 's3cret-token' -e 'key-1' -e 'admin-token' "$GW_LOG"; then
    fail "a secret appears in the gateway's log"
fi
pass "no secret in the debug log"

echo "check: admin.auth guards /metrics only; /healthz and /readyz stay open"
http GET /metrics
assert_problem 401
assert_header WWW-Authenticate 'Bearer realm="coapgw"'
http GET /metrics -H 'Authorization: Bearer s3cret-token'
assert_problem 403
http GET /metrics -H 'Authorization: Bearer admin-token'
assert_status 200 "/metrics with the admin token"
assert_contains "$BODY" coapgw_http_requests_active "metrics body"
http GET /healthz
assert_status 200 "/healthz without credentials"
http GET /readyz
[[ $HTTP_STATUS == 200 || $HTTP_STATUS == 503 ]] || fail "/readyz answered $HTTP_STATUS without credentials"
pass "admin auth"

echo "check: CORS: the preflight is the gateway's (before auth, never sent to the device)"
before=$(srv_count "$SRV" "OPTIONS /r/c")
http OPTIONS /web/r/c -H 'Origin: https://app.example' -H 'Access-Control-Request-Method: PUT' \
    -H 'Access-Control-Request-Headers: content-type'
assert_status 204 "preflight from an allowed origin"
assert_header Access-Control-Allow-Origin https://app.example
assert_header Access-Control-Allow-Methods 'GET, HEAD, PUT'
assert_header Access-Control-Allow-Headers 'Content-Type, Authorization'
assert_header Access-Control-Max-Age 600
assert_header_matches Vary 'Origin'
http OPTIONS /web/r/c -H 'Origin: https://evil.example' -H 'Access-Control-Request-Method: PUT'
assert_problem 403
assert_no_header Access-Control-Allow-Origin
assert_eq 0 "$(srv_count "$SRV" "OPTIONS /r/c")" "device OPTIONS requests"
http GET /web/r/c -H 'Origin: https://app.example' -H 'Authorization: Bearer s3cret-token'
assert_status 200 "actual request from the allowed origin"
assert_header Access-Control-Allow-Origin https://app.example
assert_header_matches Vary 'Origin'
http GET /web/r/c -H 'Origin: https://evil.example' -H 'Authorization: Bearer s3cret-token'
assert_status 200 "actual request from another origin (served, but not readable by its page)"
assert_no_header Access-Control-Allow-Origin
http OPTIONS /api/r/c -H 'Origin: https://app.example' -H 'Access-Control-Request-Method: GET'
assert_problem 501 # without cors nothing changes
pass "CORS"

echo "check: device values never split a header (CR/LF in a diagnostic payload and in Location-Path)"
http GET '/api/r/evil?code=4.00&body=a%0d%0aX-Evil:%201'
assert_status 400 "the device's 4.00"
assert_no_header X-Evil
http POST '/api/r/loc?code=2.01&loc_path=a%0d%0aX-Evil:%202' -H 'Content-Type: text/plain' --data-binary x
assert_no_header X-Evil
loc=$(header Location || true)
[[ $loc != *$'\r'* && $loc != *$'\n'* ]] || fail "Location carries a raw CR or LF: $loc"
pass "no header splitting from device values (Location: $loc)"

echo "check: limits.max_uri_bytes -> 414, limits.max_header_bytes -> 431"
long=$(printf 'a%.0s' $(seq 1 300))
http GET "/api/r/x?$long"
assert_status 414 "a request target over max_uri_bytes"
big=$(printf 'b%.0s' $(seq 1 3000))
http GET /api/r/x -H "X-Big: $big"
assert_status 431 "a header section over max_header_bytes"
http GET /api/r/x
assert_status 200 "a normal request afterwards"
pass "request size limits"
stop_gateway

echo "check: rate_limit.per_ip_rps: 429 + Retry-After past the burst, /healthz exempt"
GW_PORT=$(free_port)
write_config "$T/rl.json" "coap://127.0.0.1:$SRV" '' '"cache": false' '"rate_limit": { "per_ip_rps": 1, "burst": 3 }'
start_gateway "$T/rl.json"
before=$(srv_count "$SRV" "GET /r/rl")
codes=""
for i in 1 2 3 4 5; do
    http GET /api/r/rl
    codes="$codes $HTTP_STATUS"
done
assert_eq " 200 200 200 429 429" "$codes" "statuses of 5 quick requests with burst 3"
assert_header_matches Retry-After '^[1-9][0-9]*$'
assert_problem 429
assert_eq $((before + 3)) "$(srv_count "$SRV" "GET /r/rl")" "device requests (the refused ones never sent)"
http GET /healthz
assert_status 200 "/healthz while rate-limited"
pass "rate limit"
stop_gateway

echo "check: limits.max_inflight_total: beyond it 503 at once, over all upstreams"
GW_PORT=$(free_port)
cat >"$T/total.json" <<JSON
{ "listen": "127.0.0.1:$GW_PORT",
  "upstreams": { "a": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 5000, "max_inflight": 4 },
                 "b": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 5000, "max_inflight": 4 } },
  "routes": [ { "prefix": "/a/", "upstream": "a", "cache": false },
              { "prefix": "/b/", "upstream": "b", "cache": false } ],
  "limits": { "max_inflight_total": 1 } }
JSON
start_gateway "$T/total.json"
curl -s -o /dev/null --max-time 10 "$(url '/a/r/slow?delay_ms=1500')" &
slow=$!
sleep 0.5
t0=$(date +%s%N)
http GET /b/r/fast
t1=$(date +%s%N)
assert_problem 503
(((t1 - t0) / 1000000 < 1000)) || fail "the 503 took $(((t1 - t0) / 1000000)) ms, not at once"
wait "$slow" || true
http GET /b/r/fast
assert_status 200 "once the slow exchange is done"
pass "max_inflight_total"
stop_gateway

echo "check: limits.max_connections_per_ip: connections beyond it are closed at once"
GW_PORT=$(free_port)
write_config "$T/perip.json" "coap://127.0.0.1:$SRV" '"timeout_ms": 5000, "max_inflight": 8' '"cache": false' \
    '"limits": { "max_connections_per_ip": 2 }'
start_gateway "$T/perip.json"
held=()
for i in 1 2 3 4; do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 "$(url "/api/r/hold?delay_ms=1500&n=$i")" >"$T/perip.$i" &
    held+=($!)
done
wait "${held[@]}" || true
ok=$(cat "$T"/perip.* | grep -c '^200$' || true)
assert_eq 2 "$ok" "requests served with 4 connections at once and max_connections_per_ip 2"
http GET /api/r/after
assert_status 200 "a request once the connections are gone"
pass "per-address connection cap"
stop_gateway

echo "check: HTTPS with tls.cert and tls.key (a certificate made here)"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext 'subjectAltName=IP:127.0.0.1' \
    -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null || fail "openssl could not make a certificate"
chmod 600 "$T/key.pem"
GW_PORT=$(free_port)
write_config "$T/tls.json" "coap://127.0.0.1:$SRV" '' '"cache": false' '"tls": { "cert": "cert.pem", "key": "key.pem" }'
"$COAPGW" --config "$T/tls.json" >"$T/tls.log" 2>&1 &
GW_PID=$!
tls_up() {
    alive "$GW_PID" || fail "coapgw with tls exited: $(cat "$T/tls.log")"
    [[ $(curl -s -o /dev/null -w '%{http_code}' --cacert "$T/cert.pem" --max-time 2 \
        "https://127.0.0.1:$GW_PORT/healthz") == 200 ]]
}
wait_until "HTTPS /healthz" tls_up
body=$(curl -sS --cacert "$T/cert.pem" --max-time 5 "https://127.0.0.1:$GW_PORT/api/r/tls?body=secure") ||
    fail "HTTPS GET failed"
assert_eq secure "$body" "body over HTTPS"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$GW_PORT/healthz" || true)
[[ $code != 200 ]] || fail "plain HTTP answered 200 on the HTTPS port"
sleep 0.3
# libcoap's process-wide GnuTLS audit hook once took MHD's TLS session for its own here and crashed.
alive "$GW_PID" || fail "the HTTPS gateway died on a plain-HTTP request: $(tail -5 "$T/tls.log")"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$T/cert.pem" --max-time 2 "https://127.0.0.1:$GW_PORT/healthz")
assert_eq 200 "$code" "HTTPS /healthz after a plain-HTTP client"
# A malformed Content-Length over TLS: MHD answers it (the plain-socket answer of gateway/vet.c would break
# the TLS stream), once, and the gateway goes on.
reply=$(printf 'GET /api/r/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n' |
    timeout 5 openssl s_client -quiet -connect "127.0.0.1:$GW_PORT" -CAfile "$T/cert.pem" 2>/dev/null || true)
assert_match "$reply" '^HTTP/1\.1 400' "the answer to a malformed Content-Length over TLS"
alive "$GW_PID" || fail "the HTTPS gateway died on a malformed Content-Length"
pass "HTTPS"
chmod 644 "$T/key.pem"
"$COAPGW" --check-config --config "$T/tls.json" 2>"$T/check.err" && fail "a group-readable tls.key passed --check-config"
assert_contains "$(cat "$T/check.err")" "tls.key: " "the error names the field"
pass "a readable tls.key is a configuration error"
