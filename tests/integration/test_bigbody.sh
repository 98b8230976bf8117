#!/usr/bin/env bash
# Large bodies both ways (RFC 7959): the demo's 64 KiB /firmware and coap_testsrv bodies up to
# limits.max_body_bytes arrive through the gateway byte for byte as coap-client-gnutls reads them directly;
# random uploads up to the limit reach the demo's /upload intact (SHA-256); a request body over the limit
# gets 413 before the device is asked, a response over it 502 with a clear detail; the device's own 4.13
# (Size1) comes back as 413.
source "$(dirname "$0")/lib.sh"

LIMIT=1048576

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
DEMO_PORT=$GW_PORT # freeport checks TCP and UDP: HTTP on TCP, the demo on UDP, same number

write_gateway() { # FILE MAX_BODY_BYTES
    cat >"$1" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "demo": { "uri": "coap://127.0.0.1:$DEMO_PORT", "timeout_ms": 60000 },
    "dev": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 60000 }
  },
  "routes": [
    { "prefix": "/api/", "upstream": "demo", "cache": false },
    { "prefix": "/t/", "upstream": "dev", "cache": false }
  ],
  "demo_server": { "enabled": true, "listen": "127.0.0.1:$DEMO_PORT" },
  "limits": { "max_body_bytes": $2 }
}
JSON
}
write_gateway "$T/gw.json" "$LIMIT"
start_gateway "$T/gw.json"

size_of() {
    wc -c <"$1" | tr -d ' '
}

# coap-client-gnutls reading a resource directly, block-wise with 1024-byte blocks, into FILE.
coap_fetch() { # PORT PATH FILE
    rm -f "$3"
    "$COAP_CLIENT" -m get -b 1024 -B 60 -o "$3" "coap://127.0.0.1:$1$2" ||
        fail "coap-client could not read coap://127.0.0.1:$1$2"
}

# coap_testsrv's size=N body is "abc...z" repeated.
pattern() { # N
    awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "%c", 97 + i % 26 }'
}

json_field() { # JSON NAME -> the string or number value
    sed -n "s/.*\"$2\":\"\\{0,1\\}\\([^\",}]*\\).*/\\1/p" <<<"$1"
}

# ---- the demo's firmware: through the gateway == coap-client's copy, and its SHA-256 matches ----
# (curl directly: the image is binary, and BODY is a shell string)
HTTP_STATUS=$(curl -sS -o "$T/fw.http" -D "$T/headers" -w '%{http_code}' --max-time 60 "$(url /api/firmware)")
assert_status 200 "GET /api/firmware"
assert_content_type application/octet-stream
coap_fetch "$DEMO_PORT" /firmware "$T/fw.coap"
assert_eq 65536 "$(size_of "$T/fw.http")" "firmware size through the gateway"
cmp -s "$T/fw.http" "$T/fw.coap" || fail "firmware through the gateway differs from coap-client's copy"
fw_sha=$(sha256sum <"$T/fw.http" | cut -d' ' -f1)
http GET /api/firmware/sha256
assert_status 200 "GET /api/firmware/sha256"
assert_eq "$fw_sha" "$BODY" "firmware SHA-256 (published vs computed)"
http GET /api/.well-known/core
assert_contains "$BODY" "sha256=\"$fw_sha\"" "/.well-known/core firmware link"

# ---- responses: 20 000, 200 000 and exactly max_body_bytes from coap_testsrv ----
for n in 20000 200000 "$LIMIT"; do
    http GET "/t/r/get$n?size=$n"
    assert_status 200 "GET of a $n-byte body"
    assert_eq "$n" "$(size_of "$T/body")" "length of the $n-byte body through the gateway"
    coap_fetch "$SRV" "/r/direct$n?size=$n" "$T/direct"
    cmp -s "$T/body" "$T/direct" || fail "the $n-byte body through the gateway differs from coap-client's"
    pattern "$n" | cmp -s - "$T/body" || fail "the $n-byte body arrived altered"
    assert_eq 1 "$(srv_count "$SRV" "GET /r/get$n")" "HTTP requests for the $n-byte body"
done

# ---- requests: random bodies up to max_body_bytes reach the demo's /upload intact ----
for n in 20000 200000 "$LIMIT"; do
    head -c "$n" /dev/urandom >"$T/up"
    up_sha=$(sha256sum <"$T/up" | cut -d' ' -f1)
    http PUT /api/upload -H 'Content-Type: application/octet-stream' --data-binary "@$T/up"
    assert_status 200 "PUT of $n random bytes"
    assert_eq "$n" "$(json_field "$BODY" bytes)" "bytes the device received"
    assert_eq "$up_sha" "$(json_field "$BODY" sha256)" "SHA-256 of what the device received ($n bytes)"
done
http POST /api/upload -H 'Content-Type: application/octet-stream' --data-binary "@$T/up"
assert_status 200 "POST of $LIMIT random bytes"
assert_eq "$up_sha" "$(json_field "$BODY" sha256)" "SHA-256 of the POSTed body"
http GET /api/upload
assert_eq "$LIMIT" "$(json_field "$BODY" bytes)" "upload summary: bytes"
assert_eq "$up_sha" "$(json_field "$BODY" sha256)" "upload summary: SHA-256"
# The same through coap_testsrv, which reports the length it reassembled.
http PUT "/t/r/len?plen=1" -H 'Content-Type: application/octet-stream' --data-binary "@$T/up"
assert_status 200 "PUT of $LIMIT bytes to coap_testsrv"
assert_eq "$LIMIT" "$BODY" "payload length at coap_testsrv"

# ---- over the limit: a request body -> 413 with the device asked nothing ----
head -c $((LIMIT + 1)) /dev/urandom >"$T/over"
before=$(coap_get "$SRV" /stats)
http PUT "/t/r/over?plen=1" -H 'Content-Type: application/octet-stream' --data-binary "@$T/over"
assert_problem 413 content-too-large
http POST /t/echo -H 'Content-Type: application/octet-stream' --data-binary "@$T/over"
assert_problem 413 content-too-large
http PUT "/t/r/over?plen=1" -H 'Content-Type: application/octet-stream' -H 'Transfer-Encoding: chunked' \
    --data-binary "@$T/over"
assert_problem 413 content-too-large
assert_eq "$before" "$(coap_get "$SRV" /stats)" "coap_testsrv /stats after three over-limit bodies"
http PUT /api/upload -H 'Content-Type: application/octet-stream' --data-binary "@$T/over"
assert_problem 413 content-too-large
http GET /api/upload
assert_eq "$up_sha" "$(json_field "$BODY" sha256)" "upload summary after an over-limit PUT (unchanged)"

# ---- over the limit: a response body -> 502 with the reason, and the gateway carries on ----
http GET "/t/r/toobig?size=$((LIMIT + 1))"
assert_problem 502 upstream-error
assert_contains "$BODY" "larger than limits.max_body_bytes" "502 detail"
http GET "/t/r/after?size=20000"
assert_status 200 "GET after an over-limit response"
assert_eq 20000 "$(size_of "$T/body")" "length of the body after an over-limit response"
stop_gateway

# ---- the device's own limit: the demo takes 4 MiB; beyond it answers 4.13 with Size1 -> 413 ----
write_gateway "$T/gw-8m.json" 8388608
start_gateway "$T/gw-8m.json"
head -c $((4 * 1024 * 1024 + 1)) /dev/urandom >"$T/huge"
http PUT /api/upload -H 'Content-Type: application/octet-stream' --data-binary "@$T/huge"
assert_status 413 "PUT of 4 MiB + 1 to the demo (its limit is 4 MiB)"
head -c $((4 * 1024 * 1024)) "$T/huge" >"$T/four"
http PUT /api/upload -H 'Content-Type: application/octet-stream' --data-binary "@$T/four"
assert_status 200 "PUT of exactly 4 MiB to the demo"
assert_eq $((4 * 1024 * 1024)) "$(json_field "$BODY" bytes)" "bytes the device received (4 MiB)"
assert_eq "$(sha256sum <"$T/four" | cut -d' ' -f1)" "$(json_field "$BODY" sha256)" "SHA-256 of 4 MiB"
stop_gateway
pass
