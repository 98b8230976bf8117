#!/usr/bin/env bash
# HTTP/1.1 persistent connections: answers from the device, gateway-made errors (404, 405, 413 with an
# unread body, 415) and a 504 all leave the connection usable for the next request.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$SRV" '"timeout_ms": 1000' '"methods": ["GET", "PUT"], "cache": false' \
    '"limits": { "max_body_bytes": 1000 }'
start_gateway "$T/gw.json"

head -c 5000 /dev/zero | tr '\0' 'a' >"$T/big"
# One curl, one connection, several requests. --next resets the per-request options, so each part repeats
# its own -w and -o.
W=(-w '%{http_code} %{num_connects}\n')
TXT='Content-Type: text/plain; charset=utf-8'
curl -sS --max-time 60 "${W[@]}" -o /dev/null "$(url '/api/r/a?body=a')" \
    --next "${W[@]}" -o /dev/null "$(url /nothing)" \
    --next "${W[@]}" -o /dev/null -X POST -H "$TXT" --data-binary 'x' "$(url /api/echo)" \
    --next "${W[@]}" -o /dev/null -X PUT -H "$TXT" --data-binary "@$T/big" "$(url /api/echo)" \
    --next "${W[@]}" -o /dev/null -X PUT -H 'Content-Type: application/x-nope' --data-binary 'x' "$(url /api/echo)" \
    --next "${W[@]}" -o /dev/null "$(url '/api/r/mute?silent=1')" \
    --next "${W[@]}" -o "$T/body" "$(url '/api/r/b?body=last')" >"$T/codes"
# After a 413 the server may close the connection rather than read the unwanted body (RFC 9110 §15.5.14),
# so the request after it may need a new connection.
expected="200 1
404 0
405 0
413 0
415 [01]
504 0
200 0"
# shellcheck disable=SC2053 # the right-hand side is a glob pattern on purpose
[[ $(cat "$T/codes") == $expected ]] ||
    fail "statuses and new connections per request: expected
$expected
got
$(cat "$T/codes")"
assert_eq last "$(cat "$T/body")" "last body on the shared connection"

stop_gateway
pass
