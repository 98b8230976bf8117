#!/usr/bin/env bash
# Location-Path / Location-Query of a 2.01 -> HTTP Location under the route prefix (RFC 8075 §7.1); with an
# upstream base path the base is stripped, and a location outside the base gives no Location.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "dev": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 10000 },
    "based": { "uri": "coap://127.0.0.1:$SRV/r", "timeout_ms": 10000 }
  },
  "routes": [
    { "prefix": "/api/", "upstream": "dev", "cache": false },
    { "prefix": "/b/", "upstream": "based", "cache": false }
  ]
}
JSON
start_gateway "$T/gw.json"

post() { # PATH
    http POST "$1" -H 'Content-Type: text/plain; charset=utf-8' --data-binary 'new'
}

post "/api/r/items?code=2.01&loc_path=a/b&loc_query=x=1"
assert_status 201 "2.01 with Location-Path a/b and Location-Query x=1"
assert_header Location "/api/a/b?x=1"

post "/api/r/items?code=2.01&loc_path=items/42"
assert_status 201 "2.01 with Location-Path only"
assert_header Location "/api/items/42"

post "/api/r/items?code=2.01&loc_path=a&loc_query=x=1&loc_query=y=2"
assert_status 201 "2.01 with two Location-Query options"
assert_header Location "/api/a?x=1&y=2"

post "/api/r/items?code=2.01"
assert_status 201 "2.01 without Location options"
assert_no_header Location

# Base path "r": the device names /r/a/b, the client sees /b/a/b.
post "/b/items?code=2.01&loc_path=r/a/b&loc_query=x=1"
assert_status 201 "2.01 through a base-path upstream"
assert_header Location "/b/a/b?x=1"

post "/b/items?code=2.01&loc_path=elsewhere/a"
assert_status 201 "2.01 with a location outside the base path"
assert_no_header Location

assert_eq 6 "$(srv_count "$SRV" "POST /r/items")" "device requests to /r/items (both routes)"
stop_gateway
pass
