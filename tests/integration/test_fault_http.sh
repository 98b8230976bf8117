#!/usr/bin/env bash
# Malformed HTTP (rawhttp: exact bytes): broken request lines, header fields, chunked bodies, huge lines,
# binary garbage. Every one gets one 4xx answer (505 for an HTTP version the gateway does not speak), or,
# where no request line arrived, a close without an answer (see the prefixes below); never a crash, never
# a hang: a case the gateway leaves open ends at header_timeout_s or body_timeout_s (2 s here) with 408.
# The device is asked nothing, and the gateway serves afterwards.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/faults.sh"

RAWHTTP_BIN=${RAWHTTP:-$(dirname "$TESTSRV")/rawhttp}
start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$SRV" '"timeout_ms": 2000' '"cache": false' \
    '"limits": { "header_timeout_s": 2, "body_timeout_s": 2, "max_header_bytes": 8192, "max_uri_bytes": 2048 }'
start_gateway "$T/gw.json"

H="Host: 127.0.0.1\r\n"
PUTC="PUT /api/r/x HTTP/1.1\r\n${H}Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
# bytes N SEED: N pseudo-random bytes as rawhttp escapes (\xHH), the same for a seed on every run.
bytes() {
    awk -v n="$1" -v seed="$2" 'BEGIN { srand(seed); for (i = 0; i < n; i++) printf "\\x%02x", int(rand() * 256) }'
}
repeat() { # TEXT N
    local out
    printf -v out '%*s' "$2" ''
    printf '%s' "${out// /$1}"
}

# Each case: NAME, then the request (rawhttp escapes). NAME's prefix says what is expected:
#   (none)  one 4xx answer (505 for an HTTP version the gateway does not speak: *version*, h2-preface);
#   line:   what is not a request line at all: one 4xx, or a close without an answer. RFC 9112 §2.2 says a
#           server SHOULD answer 400; libmicrohttpd 0.9.75 closes at once on a first line without a space
#           (no callback of the gateway runs, so it cannot answer), and waits for a line end that never
#           comes in binary garbage until header_timeout_s (then closed: no request line, no 408);
#   close:  nothing that starts a request (empty lines are skipped, RFC 9112 §2.2): closed at
#           header_timeout_s without an answer;
#   gap:    malformed, but libmicrohttpd 0.9.75 hides it from the gateway: it drops a field line with an empty
#           name, and cuts a field value at a NUL (RFC 9110 §5.5 says reject or replace with SP) without a
#           trace in what its API shows. Served (to /api/r/gap); only "one answer, no crash" is checked.
cases=(
    "line:no-spaces" "GARBAGE\r\n\r\n"
    "line:method-only" "GET\r\n\r\n"
    "http09" "GET /api/r/x\r\n\r\n"
    "extra-token" "GET /api/r/x HTTP/1.1 extra\r\n$H\r\n"
    "version-9.9" "GET /api/r/x HTTP/9.9\r\n$H\r\n"
    "version-2.0" "GET /api/r/x HTTP/2.0\r\n$H\r\n"
    "h2-preface" "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    "bad-protocol" "GET /api/r/x FOO/1.1\r\n$H\r\n"
    "lowercase-http" "GET /api/r/x http/1.1\r\n$H\r\n"
    "line:leading-space" " GET /api/r/x HTTP/1.1\r\n$H\r\n"
    "ctl-in-method" "G\x01T /api/r/x HTTP/1.1\r\n$H\r\n"
    "nul-in-target" "GET /api/r/\x00x HTTP/1.1\r\n$H\r\n"
    "bad-escape" "GET /api/r/%zz HTTP/1.1\r\n$H\r\n"
    "dot-segments" "GET /api/r/../../etc HTTP/1.1\r\n$H\r\n"
    "no-colon" "GET /api/r/x HTTP/1.1\r\n${H}NoColonHere\r\n\r\n"
    "space-before-colon" "GET /api/r/x HTTP/1.1\r\n${H}X-A : b\r\n\r\n"
    "gap:empty-name" "GET /api/r/gap HTTP/1.1\r\n$H: value\r\n\r\n"
    "ctl-in-name" "GET /api/r/x HTTP/1.1\r\n${H}X\x01A: b\r\n\r\n"
    "gap:nul-in-value" "GET /api/r/gap HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n"
    "bare-cr" "GET /api/r/x HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n"
    "no-host" "GET /api/r/x HTTP/1.1\r\n\r\n"
    "two-hosts" "GET /api/r/x HTTP/1.1\r\n${H}${H}\r\n"
    "bad-host" "GET /api/r/x HTTP/1.1\r\nHost: a b\r\n\r\n"
    "cl-negative" "PUT /api/r/x HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n"
    "cl-letters" "PUT /api/r/x HTTP/1.1\r\n${H}Content-Length: abc\r\n\r\n"
    "cl-overflow" "PUT /api/r/x HTTP/1.1\r\n${H}Content-Length: 99999999999999999999999\r\n\r\n"
    "cl-two" "PUT /api/r/x HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    "cl-and-te" "PUT /api/r/x HTTP/1.1\r\n${H}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    "te-gzip" "PUT /api/r/x HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\nabc"
    "cl-short-body" "PUT /api/r/x HTTP/1.1\r\n${H}Content-Type: text/plain\r\nContent-Length: 100\r\n\r\nshort"
    "chunk-size-letters" "${PUTC}zz\r\nab\r\n0\r\n\r\n"
    "chunk-size-overflow" "${PUTC}ffffffffffffffffffffff\r\nab\r\n0\r\n\r\n"
    "chunk-no-crlf" "${PUTC}2\r\nabcdef0\r\n\r\n"
    "chunk-truncated" "${PUTC}10\r\nabc"
    "chunk-negative" "${PUTC}-5\r\nab\r\n0\r\n\r\n"
    "chunk-huge" "${PUTC}7fffffff\r\nab"
    "huge-target" "GET /api/r/$(repeat a 100000) HTTP/1.1\r\n$H\r\n"
    "huge-header" "GET /api/r/x HTTP/1.1\r\n${H}X-Big: $(repeat b 100000)\r\n\r\n"
    "many-headers" "GET /api/r/x HTTP/1.1\r\n$H$(repeat 'X-M: m\r\n' 3000)\r\n"
    "huge-method" "$(repeat G 20000) /api/r/x HTTP/1.1\r\n$H\r\n"
    "line:tls-hello" "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03$(bytes 160 3)"
    "line:garbage-1" "$(bytes 64 1)\r\n\r\n"
    "line:garbage-2" "$(bytes 4096 2)"
    "garbage-after-line" "GET /api/r/x HTTP/1.1\r\n$(bytes 512 4)\r\n\r\n"
    "close:empty-lines" "\r\n\r\n\r\n"
    "close:nothing" ""
)

asked_before=$(srv_count "$SRV" "GET /r/x")
n=0 answered=0 closed=0 gaps=0
for ((i = 0; i < ${#cases[@]}; i += 2)); do
    name=${cases[i]} req=${cases[i + 1]} rc=0
    "$RAWHTTP_BIN" -t "$(slow 8000)" "$GW_PORT" "$req" >"$T/out" 2>"$T/rawhttp.err" || rc=$?
    alive "$GW_PID" || fail "$name: the gateway died"
    first=$(head -n 1 "$T/out" | tr -d '\r')
    lines=$(grep -ac '^HTTP/1\.[01] [0-9][0-9][0-9]' "$T/out" || true)
    echo "case $name: rawhttp exit $rc, $lines status line(s): ${first:-<none>}"
    ((rc != 1)) || fail "$name: rawhttp failed: $(cat "$T/rawhttp.err")"
    ((rc == 0)) || fail "$name: the connection was still open after $(slow 8) s (a hang)"
    n=$((n + 1))
    case $name in
    close:*)
        [[ -z $first ]] || fail "$name: expected a close without an answer, got '$first'"
        closed=$((closed + 1))
        ;;
    line:*)
        [[ -z $first ]] || assert_match "$first" '^HTTP/1\.[01] 4[0-9][0-9] ' "$name: status line"
        if [[ -z $first ]]; then closed=$((closed + 1)); else answered=$((answered + 1)); fi
        ;;
    gap:*)
        assert_match "$first" '^HTTP/1\.[01] [0-9]{3} ' "$name: status line"
        gaps=$((gaps + 1))
        ;;
    *version* | h2-preface)
        assert_match "$first" '^HTTP/1\.[01] (4[0-9][0-9]|505) ' "$name: status line"
        answered=$((answered + 1))
        ;;
    *)
        assert_match "$first" '^HTTP/1\.[01] 4[0-9][0-9] ' "$name: status line"
        answered=$((answered + 1))
        ;;
    esac
    [[ -z $first ]] || assert_eq 1 "$lines" "$name: number of answers"
done
echo "malformed HTTP: $n cases: $answered answered 4xx/505, $closed closed without an answer," \
    "$gaps served (libmicrohttpd hides the fault)"
assert_eq "$asked_before" "$(srv_count "$SRV" "GET /r/x")" "requests that reached the device"

http GET '/api/r/ok?body=ok'
assert_status 200 "a normal request afterwards"
assert_eq ok "$BODY"
wait_until "no request in progress (coapgw_http_requests_active 1: the scrape)" requests_idle
stop_gateway
pass
