#!/usr/bin/env bash
# HTTP path and query -> Uri-Path / Uri-Query exactly as RFC 7252 §6.4 / RFC 8075 §5.3: percent-decoded, one
# option per segment or '&'-separated item, %2F inside a segment, trailing slash, '+' kept, upstream base
# path prepended, dot segments and bad escapes rejected before the device is asked.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "dev": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 10000 },
    "based": { "uri": "coap://127.0.0.1:$SRV/echo/base", "timeout_ms": 10000 }
  },
  "routes": [
    { "prefix": "/api/", "upstream": "dev", "cache": false },
    { "prefix": "/b/", "upstream": "based", "cache": false }
  ]
}
JSON
start_gateway "$T/gw.json"

# opts NUMBER: "hex,hex,..." of option NUMBER in the last /echo answer (in wire order).
opts() {
    awk -v n="opt=$1" '$1 == n { sub(/^val=/, "", $2); printf "%s%s", sep, $2; sep = "," }' <<<"$BODY"
}
# hexlist A B ...: "hex(A),hex(B),..."
hexlist() {
    local out="" s
    for s in "$@"; do
        out+=${out:+,}$(hex "$s")
    done
    echo "$out"
}
get_echo() { # PATH
    http GET "$1" --path-as-is
    assert_status 200 "GET $1"
}

get_echo /api/echo
assert_eq "$(hexlist echo)" "$(opts 11)" "Uri-Path of /api/echo"
assert_eq "" "$(opts 15)" "Uri-Query of /api/echo"

get_echo /api/echo/a/b
assert_eq "$(hexlist echo a b)" "$(opts 11)" "Uri-Path of /api/echo/a/b"

get_echo /api/echo/a%2Fb/c%20d
assert_eq "$(hexlist echo a/b "c d")" "$(opts 11)" "Uri-Path with %2F and %20"

get_echo /api/echo/x/
assert_eq "$(hexlist echo x "")" "$(opts 11)" "trailing slash -> empty last Uri-Path"

get_echo /api/echo/%C3%A9t%C3%A9/~user
assert_eq "$(hexlist echo "été" "~user")" "$(opts 11)" "UTF-8 and unreserved characters"

get_echo '/api/echo?x=1&y=a%26b&z=c+d&w&e=%3D%20'
assert_eq "$(hexlist "x=1" "y=a&b" "z=c+d" "w" "e== ")" "$(opts 15)" "Uri-Query items"
assert_eq "$(hexlist echo)" "$(opts 11)" "Uri-Path with a query"

get_echo '/api/echo/p%3Fq?k=v'
assert_eq "$(hexlist echo "p?q")" "$(opts 11)" "%3F stays inside the segment"
assert_eq "$(hexlist "k=v")" "$(opts 15)" "query after an encoded ?"

# Upstream base path prepended.
get_echo /b/x/y?q=1
assert_eq "$(hexlist echo base x y)" "$(opts 11)" "base path prepended"
assert_eq "$(hexlist q=1)" "$(opts 15)" "query with a base path"
get_echo /b/
assert_eq "$(hexlist echo base)" "$(opts 11)" "base path alone"

# A 255-byte segment is the longest Uri-Path option.
seg=$(printf 'a%.0s' $(seq 255))
get_echo "/api/echo/$seg"
assert_eq "$(hexlist echo "$seg")" "$(opts 11)" "255-byte segment"

# Rejected before the device is asked.
before=$(coap_get "$SRV" /stats)
for bad in /api/echo/../x /api/echo/./x /api/./echo /api/echo/.. /api/echo/%zz /api/echo/%4 '/api/echo?x=%g1'; do
    http GET "$bad" --path-as-is
    assert_problem 400 bad-request
done
http GET "/api/echo/${seg}b" --path-as-is
assert_problem 414 uri-too-long
assert_eq "$before" "$(coap_get "$SRV" /stats)" "device requests after rejected URIs"

stop_gateway
pass
