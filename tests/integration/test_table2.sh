#!/usr/bin/env bash
# RFC 8075 Table 2, every row, end to end: coap_testsrv answers the chosen CoAP code and the gateway must
# give the mapped HTTP status. A diagnostic payload on an error goes in the body, never the reason phrase.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$SRV" '"timeout_ms": 10000'
start_gateway "$T/gw.json"

# row METHOD COAP_CODE HTTP_STATUS [extra query items]
row() {
    local method=$1 code=$2 want=$3 extra=${4:-} args=()
    if [[ $method == PUT || $method == POST ]]; then
        args=(-H 'Content-Type: text/plain; charset=utf-8' --data-binary 'x')
    fi
    http "$method" "/api/r/t${code/./_}?code=$code$extra" "${args[@]}"
    assert_status "$want" "$method CoAP $code$extra"
}

row POST 2.01 201
row DELETE 2.02 204
row DELETE 2.02 200 "&body=gone&ct=0"
assert_eq gone "$BODY" "2.02 payload"
# 2.03 -> 304 only answers the gateway's own revalidation (test_cache); to a request without an ETag it is
# unsolicited and the device is at fault.
row GET 2.03 502 "&etag=0a1b"
row PUT 2.04 204
row PUT 2.04 200 "&body=changed&ct=0"
assert_eq changed "$BODY" "2.04 payload"
row GET 2.05 200 "&body=content&ct=0"
assert_eq content "$BODY" "2.05 payload"
row GET 4.00 400
row GET 4.01 403
row GET 4.02 500
row GET 4.03 403
row GET 4.04 404
row GET 4.05 400 # the allowed methods are unknown, so no 405 (it would need an Allow header)
row GET 4.06 406
row GET 4.12 412
row GET 4.13 413
row GET 4.15 415
row GET 5.00 500
row GET 5.01 501
row GET 5.02 502
row GET 5.03 503 "&max_age=37"
assert_header Retry-After 37
row GET 5.04 504
row GET 5.05 502
row GET 2.31 502 # 2.31 Continue is not a final response: a malformed answer for this exchange

# Diagnostic payloads: in the body, not in the status line.
row GET 4.04 404 "&body=no%20sensor%20here"
assert_eq "no sensor here" "$BODY" "4.04 diagnostic payload"
assert_not_contains "$(status_line)" "sensor" "status line"
assert_match "$(status_line)" "^HTTP/1\.1 404( Not Found)?$" "status line"
row GET 5.00 500 "&body=boom"
assert_eq "boom" "$BODY" "5.00 diagnostic payload"
assert_not_contains "$(status_line)" "boom" "status line"

# Every row reached the device exactly once (each used its own path, query items do not count).
assert_eq 2 "$(srv_count "$SRV" "GET /r/t4_04")" "device requests for /r/t4_04 (two rows)"
assert_eq 1 "$(srv_count "$SRV" "POST /r/t2_01")" "device requests for 2.01"

stop_gateway
pass
