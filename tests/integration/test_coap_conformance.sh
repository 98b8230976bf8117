#!/usr/bin/env bash
# RFC 7252 message and option rules against a device that does what libcoap's server never does (rawcoap):
# duplicated CON responses (§4.5), tokens (§5.3.1), bad option lengths and unknown critical options (§5.4),
# Uri-Host and Uri-Query (§6.4), a request too large for one message (§4.6), an unsolicited 2.03.
source "$(dirname "$0")/lib.sh"

start_rawcoap
RAW=$RAW_PORT
GW_PORT=$(free_port)
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "dev": { "uri": "coap://127.0.0.1:$RAW", "timeout_ms": 5000 },
    "named": { "uri": "coap://LocalHost:$RAW", "timeout_ms": 5000 }
  },
  "routes": [
    { "prefix": "/api/", "upstream": "dev", "cache": false },
    { "prefix": "/named/", "upstream": "named", "cache": false }
  ]
}
JSON
start_gateway "$T/gw.json"

# Requests the device logged for PATH (REQ lines), and a field of the last one.
reqs() { grep -F " path=$1 " "$RAW_LOG" || true; }
field() { # PATH NAME
    reqs "$1" | tail -n 1 | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { sub(/^[^=]*=/, ""); print }'
}
# http, and the time it took in ms in ELAPSED_MS.
timed_http() {
    local start=$EPOCHREALTIME
    http "$@"
    ELAPSED_MS=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')
}
rst_for() { grep -c "^RST mid=$1\$" "$RAW_LOG" || true; }

echo "check: §4.5 every copy of a duplicated CON separate response is ACKed, the answer used once"
http GET /api/dup
assert_status 200 "duplicated CON response"
assert_eq dup "$BODY" "duplicated CON response"
dup_mid=$(awk '/^SENT mid=/ { sub(/^SENT mid=/, ""); print $1 }' "$RAW_LOG" | tail -n 1)
[[ -n $dup_mid ]] || fail "rawcoap logged no CON response for /dup"
two_acks() { (($(grep -c "^ACK mid=$dup_mid\$" "$RAW_LOG") >= 2)); }
wait_until "two ACKs for the two copies of mid $dup_mid" two_acks
assert_eq 2 "$(grep -c "^ACK mid=$dup_mid\$" "$RAW_LOG")" "ACKs for mid $dup_mid"
assert_eq 0 "$(rst_for "$dup_mid")" "RSTs for mid $dup_mid"

echo "check: §5.3.1 tokens are 8 bytes, a new random one per exchange"
for i in 1 2 3 4 5 6; do
    http GET "/api/tok/$i"
    assert_status 200 "token request $i"
    assert_match "$(field "/tok/$i" token)" '^[0-9a-f]{16}$' "token of request $i"
done
assert_eq 6 "$(grep -F ' path=/tok/' "$RAW_LOG" | sed 's/.* token=\([^ ]*\).*/\1/' | sort -u | wc -l)" \
    "distinct tokens of 6 requests"

echo "check: §5.4.1 a 9-byte ETag is ignored and the response used (piggybacked, no RST)"
timed_http GET /api/etag9
assert_status 200 "response with a 9-byte ETag"
assert_eq etag9 "$BODY" "response with a 9-byte ETag"
assert_no_header ETag
((ELAPSED_MS < 2500)) || fail "the response with a 9-byte ETag took ${ELAPSED_MS} ms"
assert_eq 0 "$(rst_for "$(field /etag9 mid)")" "RSTs answering the ACK with a 9-byte ETag"

echo "check: §5.4.1 a 5-byte Max-Age is ignored (default 60) and the response used"
http GET /api/maxage5
assert_status 200 "response with a 5-byte Max-Age"
assert_eq maxage5 "$BODY" "response with a 5-byte Max-Age"
assert_header Cache-Control "max-age=60"

echo "check: §5.4.1 a CON separate response with a 9-byte ETag is ACKed and used"
http GET /api/etag9-con
assert_status 200 "CON response with a 9-byte ETag"
assert_eq etag9 "$BODY" "CON response with a 9-byte ETag"
con_mid=$(awk '/^SENT mid=/ { sub(/^SENT mid=/, ""); print $1 }' "$RAW_LOG" | tail -n 1)
acked() { grep -q "^ACK mid=$con_mid\$" "$RAW_LOG"; }
wait_until "the ACK of mid $con_mid" acked
assert_eq 0 "$(rst_for "$con_mid")" "RSTs for the CON response with a 9-byte ETag"

echo "check: §5.4.1 an unknown critical option in an ACK: prompt 502, the ACK not answered with RST"
timed_http GET /api/critical
assert_problem 502 upstream-error
((ELAPSED_MS < 2500)) || fail "502 for an unknown critical option took ${ELAPSED_MS} ms (timeout_ms 5000)"
assert_eq 0 "$(rst_for "$(field /critical mid)")" "RSTs answering an ACK"

echo "check: §5.4.1 an unknown critical option in a CON response: RST and a prompt 502"
timed_http GET /api/critical-con
assert_problem 502 upstream-error
((ELAPSED_MS < 2500)) || fail "502 for an unknown critical option took ${ELAPSED_MS} ms (timeout_ms 5000)"
crit_mid=$(awk '/^SENT mid=/ { sub(/^SENT mid=/, ""); print $1 }' "$RAW_LOG" | tail -n 1)
rejected() { grep -q "^RST mid=$crit_mid\$" "$RAW_LOG"; }
wait_until "the RST of mid $crit_mid" rejected

echo "check: an unsolicited 2.03 Valid (the request had no ETag) is 502, never 304"
http GET /api/valid
assert_problem 502 upstream-error

echo "check: §6.4 step 5 Uri-Host for a host name (lower case), none for an IP literal"
if [[ $(getent ahosts localhost 2>/dev/null | awk 'NR == 1 { print $1 }') == 127.0.0.1 ]]; then
    http GET /named/host
    assert_status 200 "request to an upstream named LocalHost"
    assert_eq localhost "$(field /host host)" "Uri-Host for LocalHost"
else
    echo "  (skipped the host name half: localhost does not resolve to 127.0.0.1 first here)"
fi
http GET /api/nohost
assert_status 200 "request to an IP literal upstream"
assert_eq - "$(field /nohost host)" "Uri-Host for 127.0.0.1"

echo "check: §6.4 step 8 every query item is one Uri-Query, empty ones included"
http GET '/api/q1?&x=1'
assert_status 200 "query with an empty item"
assert_eq 2 "$(field /q1 queries)" "Uri-Query count for ?&x=1"
assert_eq '[][x=1]' "$(field /q1 q)" "Uri-Query items for ?&x=1"
http GET '/api/q2?a&&b='
assert_eq '[a][][b=]' "$(field /q2 q)" "Uri-Query items for ?a&&b="

echo "check: the long-poll rewrite (observe=next stripped) keeps the other items exactly, empty ones too"
http GET '/api/q3?x=1&observe=next&y=2'
assert_eq '[x=1][y=2]' "$(field /q3 q)" "Uri-Query items for ?x=1&observe=next&y=2"
http GET '/api/q4?&x=1&observe=next'
assert_eq '[][x=1]' "$(field /q4 q)" "Uri-Query items for ?&x=1&observe=next"
http GET '/api/q5?x=1&observe=next&'
assert_eq '[x=1][]' "$(field /q5 q)" "Uri-Query items for ?x=1&observe=next&"

echo "check: §4.6 options that cannot fit one CoAP message: 414, the device not asked"
long=$(printf 'v%.0s' {1..250})
query="a=$long&b=$long&c=$long&d=$long&e=$long&f=$long"
http GET "/api/toolong?$query"
assert_problem 414 uri-too-long
assert_eq "" "$(reqs /toolong)" "requests the device saw for /toolong"

alive "$RAW_PID" || fail "rawcoap died"
stop_gateway
pass
