#!/usr/bin/env bash
# Media types (RFC 8075 §6.3): response Content-Format -> Content-Type, request Content-Type -> Content-Format,
# Accept -> Accept, ETag -> quoted ETag, Max-Age -> Cache-Control, checked against what coap_testsrv saw.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$SRV" '"timeout_ms": 10000'
start_gateway "$T/gw.json"

# Response side.
check_ct() { # CF MEDIA
    http GET "/api/r/ct$1?ct=$1&body=data"
    assert_status 200 "Content-Format $1"
    assert_content_type "$2"
    assert_eq data "$BODY" "body with Content-Format $1"
}
check_ct 0 "text/plain; charset=utf-8"
check_ct 40 "application/link-format"
check_ct 41 "application/xml"
check_ct 42 "application/octet-stream"
check_ct 47 "application/exi"
check_ct 50 "application/json"
check_ct 60 "application/cbor"
check_ct 65000 "application/coap-payload; cf=65000"

http GET "/api/r/etag?etag=0a1b&body=x"
assert_header ETag '"0a1b"'
http GET "/api/r/etag8?etag=0102030405060708&body=x"
assert_header ETag '"0102030405060708"'
http GET "/api/r/maxage?max_age=30&body=x"
assert_header Cache-Control "max-age=30"
http GET "/api/r/maxage0?max_age=0&body=x"
assert_header Cache-Control "max-age=0"

# Request side: what the device receives.
# echo_opt NUMBER: the values of option NUMBER in the last /echo answer, one per line.
echo_opt() {
    awk -v n="opt=$1" '$1 == n { sub(/^val=/, "", $2); print $2 }' <<<"$BODY"
}
check_req_ct() { # CONTENT_TYPE CF_HEX
    http PUT /api/echo -H "Content-Type: $1" --data-binary 'payload'
    assert_status 200 "PUT with Content-Type $1"
    assert_eq "$2" "$(echo_opt 12)" "Content-Format sent for '$1'"
    grep -qx "opt=12 val=$2" <<<"$BODY" || fail "no Content-Format option sent for '$1': $BODY"
    assert_contains "$BODY" "payload_hex=$(hex payload)" "payload sent for '$1'"
}
check_req_ct "text/plain; charset=utf-8" "" # 0 is the empty uint
check_req_ct "application/json" 32
check_req_ct "application/cbor" 3c
check_req_ct "application/octet-stream" 2a
check_req_ct "application/link-format" 28
check_req_ct "application/coap-payload; cf=65000" fde8

before=$(srv_count "$SRV" "PUT /echo")
http PUT /api/echo -H "Content-Type: application/x-no-such-type" --data-binary 'payload'
assert_problem 415 unsupported-media-type
assert_eq "$before" "$(srv_count "$SRV" "PUT /echo")" "device requests after an unmappable Content-Type"

http GET /api/echo -H "Accept: application/json"
assert_status 200 "GET with Accept: application/json"
assert_eq 32 "$(echo_opt 17)" "Accept option for application/json"
http GET /api/echo -H "Accept: application/cbor"
assert_eq 3c "$(echo_opt 17)" "Accept option for application/cbor"
http GET /api/echo -H "Accept: */*"
assert_eq "" "$(echo_opt 17)" "Accept option for */*"
assert_not_contains "$BODY" "opt=17 " "no Accept option for */*"
http GET /api/echo -H "Accept:"
assert_not_contains "$BODY" "opt=17 " "no Accept option without an Accept header"

before=$(srv_count "$SRV" "GET /echo")
http GET /api/echo -H "Accept: application/x-no-such-type"
assert_problem 406 not-acceptable
assert_eq "$before" "$(srv_count "$SRV" "GET /echo")" "device requests after an unmappable Accept"
http GET /api/echo -H "Accept: application/x-no-such-type, application/json;q=0.5"
assert_eq 32 "$(echo_opt 17)" "Accept option when one listed type maps"

stop_gateway
pass
