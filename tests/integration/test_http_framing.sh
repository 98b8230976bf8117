#!/usr/bin/env bash
# HTTP/1.1 message framing and the request line, with exact bytes (rawhttp; curl would normalise them):
# request smuggling (RFC 9112 §6.1/§6.3: Content-Length with Transfer-Encoding, two Content-Lengths, a space
# before the colon, a Transfer-Encoding not ending in chunked), Host (§3.2), absolute-form targets (§3.2.2),
# control bytes in the target, list fields on several lines (RFC 9110 §5.3), a content-coded body (415,
# §8.4). Every refusal is exactly one answer: one status line, Content-Length equal to the body, problem+json,
# and the connection closed (no hang until the idle timeout).
source "$(dirname "$0")/lib.sh"
: "${RAWHTTP:?set RAWHTTP to the rawhttp binary}"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$SRV" '"timeout_ms": 10000' '"cache": true' \
    '"limits": { "connection_timeout_s": 30 }'
start_gateway "$T/gw.json"
H="Host: 127.0.0.1:$GW_PORT"

# raw REQUEST: sends the bytes (escapes as rawhttp takes them) on a new connection and reads until the
# gateway closes it, or 3 s. Sets RAW_RC (0 closed, 2 still open: hung or keep-alive); the answer is in
# $T/raw, and, when it is one response, its header section in $T/headers and its body in $T/body (so lib.sh's
# header/assert_* helpers work), HTTP_STATUS and BODY.
raw() {
    RAW_RC=0
    "$RAWHTTP" -t 3000 "$GW_PORT" "$1" >"$T/raw" || RAW_RC=$?
    ((RAW_RC == 0 || RAW_RC == 2)) || fail "rawhttp failed (status $RAW_RC) for: $1"
    local all
    all=$(cat "$T/raw" && printf x)
    all=${all%x}
    : >"$T/headers"
    : >"$T/body"
    HTTP_STATUS=
    BODY=
    [[ $all == *$'\r\n\r\n'* ]] || return 0
    printf '%s\r\n' "${all%%$'\r\n\r\n'*}" >"$T/headers"
    printf '%s' "${all#*$'\r\n\r\n'}" >"$T/body"
    BODY=$(cat "$T/body")
    HTTP_STATUS=$(awk 'NR == 1 { print $2 }' "$T/headers")
}

# one_answer WHAT: $T/raw is exactly one well-formed response: a header section, a single status line in
# the whole answer, each header once, a Content-Length equal to the body's length in bytes.
one_answer() {
    local n cl len dup
    [[ -s $T/headers ]] || fail "$1: no complete response (rawhttp status $RAW_RC): '$(head -c 300 "$T/raw")'"
    n=$(grep -ac '^HTTP/1\.[01] [0-9][0-9][0-9]' "$T/raw") || true
    [[ $n == 1 ]] || fail "$1: $n status lines in the answer: '$(head -c 600 "$T/raw")'"
    dup=$(awk -F: 'NR > 1 { print tolower($1) }' "$T/headers" | sort | uniq -d | head -1)
    [[ -z $dup ]] || fail "$1: header '$dup' sent twice"
    cl=$(header Content-Length) || fail "$1: no Content-Length"
    len=$(LC_ALL=C wc -c <"$T/body")
    assert_eq "$cl" "$len" "$1: Content-Length vs body bytes"
}

# refused STATUS SLUG WHAT REQUEST: a gateway refusal, answered at once, and the connection closed.
refused() {
    raw "$4"
    one_answer "$3"
    assert_problem "$1" "$2"
    assert_eq 0 "$RAW_RC" "$3: connection closed after the answer (2: still open after 3 s)"
    assert_header Connection close
}

# served STATUS WHAT REQUEST (the request says Connection: close).
served() {
    raw "$3"
    one_answer "$2"
    assert_status "$1" "$2"
}

CLOSE='Connection: close\r\n'

# asked NAME: how many requests (any method) coap_testsrv got for /r/NAME.
asked() {
    local stats
    stats=$(coap_get "$SRV" /stats) || fail "cannot read /stats from coap_testsrv"
    awk -v p="/r/$1" 'index($2, p) == 1 { n += $NF } END { print n + 0 }' <<<"$stats"
}

# ---- §6.1/§6.3: request smuggling ----
# A smuggled request after the body must never reach the device.
SMUGGLED='GET /api/r/smuggled HTTP/1.1\r\n'"$H"'\r\n\r\n'
refused 400 bad-request "Content-Length with Transfer-Encoding" \
    'POST /api/r/cl-te HTTP/1.1\r\n'"$H"'\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'"$SMUGGLED"
refused 400 bad-request "Transfer-Encoding then Content-Length" \
    'POST /api/r/te-cl HTTP/1.1\r\n'"$H"'\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nContent-Length: 44\r\n\r\n0\r\n\r\n'"$SMUGGLED"
refused 400 bad-request "two different Content-Lengths" \
    'POST /api/r/two-cl HTTP/1.1\r\n'"$H"'\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\nok'"$SMUGGLED"
refused 400 bad-request "whitespace before the colon" \
    'POST /api/r/ws HTTP/1.1\r\n'"$H"'\r\nContent-Type: text/plain\r\nTransfer-Encoding : chunked\r\nContent-Length: 0\r\n\r\n5\r\nhello\r\n0\r\n\r\n'
refused 400 bad-request "a tab before the colon" \
    'GET /api/r/tab HTTP/1.1\r\n'"$H"'\r\nX-Test\t: 1\r\n\r\n'
refused 400 bad-request "Transfer-Encoding: gzip" \
    'POST /api/r/te-gzip HTTP/1.1\r\n'"$H"'\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip\r\n\r\nxyz'
refused 400 bad-request "Transfer-Encoding: identity" \
    'POST /api/r/te-identity HTTP/1.1\r\n'"$H"'\r\nContent-Type: text/plain\r\nTransfer-Encoding: identity\r\n\r\nxyz'
refused 400 bad-request "chunked then gzip on two lines" \
    'POST /api/r/te-2 HTTP/1.1\r\n'"$H"'\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n'
refused 501 not-implemented "gzip, chunked (a coding the gateway does not decode)" \
    'POST /api/r/te-gz-ch HTTP/1.1\r\n'"$H"'\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n'
refused 400 bad-request "a malformed Content-Length" \
    'POST /api/r/cl-bad HTTP/1.1\r\n'"$H"'\r\nContent-Type: text/plain\r\nContent-Length: abc\r\n\r\n'
refused 400 bad-request "Content-Length: 3, 3" \
    'POST /api/r/cl-list HTTP/1.1\r\n'"$H"'\r\nContent-Type: text/plain\r\nContent-Length: 3, 3\r\n\r\nabc'
refused 413 content-too-large "a Content-Length beyond 64 bits" \
    'POST /api/r/cl-huge HTTP/1.1\r\n'"$H"'\r\nContent-Type: text/plain\r\nContent-Length: 99999999999999999999999\r\n\r\n'
for p in cl-te te-cl two-cl ws te-gzip te-identity te-2 te-gz-ch cl-bad cl-list cl-huge smuggled; do
    assert_eq 0 "$(asked "$p")" "device requests for /r/$p"
done
# The same Content-Length twice is one length; chunked alone is fine.
served 200 "the same Content-Length twice" \
    'POST /api/r/cl-same?plen=1 HTTP/1.1\r\n'"$H"'\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nContent-Length: 2\r\n'"$CLOSE"'\r\nok'
assert_eq 2 "$BODY" "payload length the device saw"
served 200 "a chunked body" \
    'POST /api/r/chunked?plen=1 HTTP/1.1\r\n'"$H"'\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n'"$CLOSE"'\r\n3\r\nabc\r\n0\r\n\r\n'
assert_eq 3 "$BODY" "payload length the device saw"

# ---- §3.2: Host ----
refused 400 bad-request "HTTP/1.1 without Host" 'GET /api/r/nohost HTTP/1.1\r\n\r\n'
refused 400 bad-request "two Host fields" 'GET /api/r/twohost HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'
refused 400 bad-request "Host with a space" 'GET /api/r/badhost HTTP/1.1\r\nHost: exa mple\r\n\r\n'
refused 400 bad-request "Host with a path" 'GET /api/r/badhost HTTP/1.1\r\nHost: a/b\r\n\r\n'
refused 400 bad-request "Host with a bad port" 'GET /api/r/badhost HTTP/1.1\r\nHost: a:8x\r\n\r\n'
refused 400 bad-request "Host with userinfo" 'GET /api/r/badhost HTTP/1.1\r\nHost: u@a\r\n\r\n'
for p in nohost twohost badhost; do
    assert_eq 0 "$(asked "$p")" "device requests for /r/$p"
done
served 200 "HTTP/1.0 without Host" 'GET /api/r/h10 HTTP/1.0\r\n\r\n'
served 200 "an IPv6 literal Host" 'GET /api/r/h6 HTTP/1.1\r\nHost: [::1]:8080\r\n'"$CLOSE"'\r\n'
served 200 "an empty Host" 'GET /api/r/hempty HTTP/1.1\r\nHost:\r\n'"$CLOSE"'\r\n'

# ---- §3.2.2: absolute-form (curl -x, http_proxy clients) ----
served 200 "absolute-form to a route" \
    'GET http://127.0.0.1:'"$GW_PORT"'/api/r/abs?body=absolute HTTP/1.1\r\n'"$H"'\r\n'"$CLOSE"'\r\n'
assert_eq absolute "$BODY" "absolute-form body"
assert_eq 1 "$(srv_count "$SRV" "GET /r/abs")" "device asked for /r/abs"
served 200 "absolute-form to an admin path" \
    'GET HTTP://gw.example/healthz HTTP/1.1\r\n'"$H"'\r\n'"$CLOSE"'\r\n'
assert_eq ok "$(tr -d '\r\n' <<<"$BODY")" "/healthz body"
served 404 "absolute-form with a query and no path (/)" \
    'GET http://gw.example?x=1 HTTP/1.1\r\n'"$H"'\r\n'"$CLOSE"'\r\n'
assert_problem 404 no-route

# ---- the target: NUL and control bytes are refused (and never reach the access log) ----
for t in 'NUL:\0' 'CR:\r' 'ESC:\x1b[31m' 'BS:\x08' 'DEL:\x7f' 'TAB:\t' 'LF-escape:%0A\x01'; do
    refused 400 bad-request "a ${t%%:*} in the target" 'GET /api/r/ctl'"${t#*:}"'x HTTP/1.1\r\n'"$H"'\r\n\r\n'
done
assert_eq 0 "$(asked ctl)" "device requests for a target with a control byte"
wait_until "the access log line of the refused targets" grep -q 'path="/api/r/ctl\\x1b\[31mx" status=400' "$GW_LOG"
if LC_ALL=C grep -q $'[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]' "$GW_LOG"; then
    fail "a raw control byte reached the gateway's log"
fi

# ---- RFC 9110 §5.3: a list field on several lines is one list ----
served 200 "cacheable GET (MISS)" 'GET /api/r/list?max_age=60 HTTP/1.1\r\n'"$H"'\r\n'"$CLOSE"'\r\n'
assert_header X-Cache MISS
served 200 "cacheable GET (HIT)" 'GET /api/r/list?max_age=60 HTTP/1.1\r\n'"$H"'\r\n'"$CLOSE"'\r\n'
assert_header X-Cache HIT
served 200 "no-store on a second Cache-Control line" \
    'GET /api/r/list?max_age=60 HTTP/1.1\r\n'"$H"'\r\nCache-Control: max-stale=10\r\nCache-Control: no-store\r\n'"$CLOSE"'\r\n'
assert_header X-Cache BYPASS
served 200 "cacheable GET (MISS)" 'GET /api/r/prag?max_age=60 HTTP/1.1\r\n'"$H"'\r\n'"$CLOSE"'\r\n'
served 200 "no-cache on a second Pragma line" \
    'GET /api/r/prag?max_age=60 HTTP/1.1\r\n'"$H"'\r\nPragma: x-foo\r\nPragma: no-cache\r\n'"$CLOSE"'\r\n'
assert_eq 2 "$(asked prag)" "device requests after Pragma: no-cache on a second line"
served 200 "Accept on two lines, the second mappable" \
    'GET /api/r/acc HTTP/1.1\r\n'"$H"'\r\nAccept: image/x-none\r\nAccept: text/plain\r\n'"$CLOSE"'\r\n'

# ---- RFC 9110 §8.4: a content-coded body is refused, never forwarded as identity ----
refused 415 unsupported-media-type "Content-Encoding: gzip" \
    'PUT /api/r/ce HTTP/1.1\r\n'"$H"'\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc'
assert_header Accept-Encoding identity
refused 415 unsupported-media-type "Content-Encoding on a chunked body" \
    'POST /api/r/ce HTTP/1.1\r\n'"$H"'\r\nContent-Type: text/plain\r\nContent-Encoding: br\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'
assert_eq 0 "$(asked ce)" "device requests for a content-coded body"
served 200 "Content-Encoding: identity" \
    'PUT /api/r/ce-id?plen=1 HTTP/1.1\r\n'"$H"'\r\nContent-Type: text/plain\r\nContent-Encoding: identity\r\nContent-Length: 3\r\n'"$CLOSE"'\r\nabc'

# ---- what MHD refuses before any callback: its own page (HTML, see README), but once, and closed ----
mhd_refused() { # STATUS WHAT REQUEST
    raw "$3"
    one_answer "$2"
    assert_status "$1" "$2"
    assert_eq 0 "$RAW_RC" "$2: connection closed after the answer"
}
mhd_refused 400 "a header line without a colon" 'GET /api/r/x HTTP/1.1\r\n'"$H"'\r\nFoo\r\n\r\n'
mhd_refused 505 "HTTP/2.0 in the request line" 'GET /api/r/x HTTP/2.0\r\n'"$H"'\r\n\r\n'
mhd_refused 400 "a malformed chunk size" \
    'POST /api/r/badchunk HTTP/1.1\r\n'"$H"'\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n'
assert_eq 0 "$(asked badchunk)" "device requests for a malformed chunked body"

# ---- keep-alive still works: two pipelined requests, two answers ----
raw 'GET /api/r/ka1 HTTP/1.1\r\n'"$H"'\r\n\r\nGET /api/r/ka2 HTTP/1.1\r\n'"$H"'\r\n'"$CLOSE"'\r\n'
assert_eq 2 "$(grep -ac '^HTTP/1\.1 200 ' "$T/raw")" "answers to two pipelined requests"

stop_gateway
pass
