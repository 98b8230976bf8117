#!/usr/bin/env bash
# Bodies larger than one CoAP message travel block-wise (RFC 7959) and arrive whole on both sides.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$SRV" '"timeout_ms": 20000'
start_gateway "$T/gw.json"

# coap_testsrv's size=N body is "abc...z" repeated.
pattern() { # N
    awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "%c", 97 + i % 26 }'
}

for n in 900 1500 5000 40000; do
    http GET "/api/r/big$n?size=$n&ct=42"
    assert_status 200 "GET of a $n-byte body"
    assert_eq "$n" "$(wc -c <"$T/body" | tr -d ' ')" "length of the $n-byte body"
    pattern "$n" | cmp -s - "$T/body" || fail "the $n-byte body arrived altered"
    assert_content_type "application/octet-stream"
done
assert_eq 1 "$(srv_count "$SRV" "GET /r/big40000")" "HTTP requests for the 40000-byte body (block-wise below one exchange)"

pattern 3000 >"$T/up"
http PUT /api/echo -H 'Content-Type: application/octet-stream' --data-binary "@$T/up"
assert_status 200 "PUT of a 3000-byte body"
assert_contains "$BODY" "payload_len=3000" "request body length at the device"
assert_contains "$BODY" "payload_hex=$(head -c 512 "$T/up" | od -An -tx1 -v | tr -d ' \n')" "request body at the device"

stop_gateway
pass
