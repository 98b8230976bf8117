#!/usr/bin/env bash
# RFC 7959 edge cases against rawcoap: the ETag changing between Block2 blocks (§2.4), a block answering with
# the wrong number, and a representation whose Size2 passes limits.max_body_bytes (§4). Each ends at once:
# never two representations spliced, never a 504 at the deadline, never the upstream reported down.
source "$(dirname "$0")/lib.sh"

start_rawcoap
RAW=$RAW_PORT
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$RAW" '"timeout_ms": 6000' '"cache": false' \
    '"limits": { "max_body_bytes": 4096 }'
start_gateway "$T/gw.json"

timed_http() {
    local start=$EPOCHREALTIME
    http "$@"
    ELAPSED_MS=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')
}
prompt() { # WHAT
    ((ELAPSED_MS < 3000)) || fail "$1 took ${ELAPSED_MS} ms (timeout_ms 6000)"
}

echo "check: §2.4 the ETag changes at block 1: the new representation whole, or a prompt 502"
timed_http GET /api/etag-change
prompt "the ETag-change transfer"
if [[ $HTTP_STATUS == 200 ]]; then
    assert_eq "$(printf 'B%.0s' {1..48})" "$BODY" "body after the ETag changed"
else
    assert_problem 502 upstream-error
fi

echo "check: a block answering with the wrong block number (the previous one again): prompt 502"
timed_http GET /api/wrongblock
assert_problem 502 upstream-error
prompt "the wrong-block transfer"
echo "check: a block answering with the wrong block number (one ahead): prompt 502"
timed_http GET /api/wrongblock-ahead
assert_problem 502 upstream-error
prompt "the wrong-block transfer"

echo "check: §4 Size2 is asked for (Size2 0 in the first request) and above max_body_bytes gives 502 at once"
timed_http GET /api/size2
assert_problem 502 upstream-error
prompt "the Size2 transfer"
first=$(grep -F ' path=/size2 ' "$RAW_LOG" | head -n 1)
assert_contains "$first" "size2=1" "the first request for /size2"

echo "check: none of this made the upstream count as down"
http GET /readyz
assert_status 200 "/readyz after the block-wise errors"
assert_not_contains "$(cat "$GW_LOG")" "upstream_down" "gateway log"

stop_gateway
pass
