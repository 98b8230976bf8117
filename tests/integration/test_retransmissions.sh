#!/usr/bin/env bash
# Retransmissions of CON requests: libcoap 4.3.1 reports none, so the client counts those its schedule makes
# certain (RFC 7252 §4.2: the k-th leaves at most 2 s x 1.5 x (2^k - 1) after the first transmission). For a
# device that never answers (rawcoap's /mute), an exchange given up at 4.5 s has had exactly 1 retransmission
# (sent 2 to 3 s after the request; the 2nd is due at 6 s at the earliest) and one given up at 11.5 s exactly
# 2 (the 2nd by 9 s, the 3rd at 14 s at the earliest): the device's log and the gateway's debug exchange
# lines (retransmits=) must agree; an answered request counts 0. The deadlines sit 1.5 s and more away from
# every window of the schedule, so a loaded machine does not change the figures.
source "$(dirname "$0")/lib.sh"

start_rawcoap
GW_PORT=$(free_port)
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "four": { "uri": "coap://127.0.0.1:$RAW_PORT", "timeout_ms": 4500 },
    "ten": { "uri": "coap://127.0.0.1:$RAW_PORT", "timeout_ms": 11500 }
  },
  "routes": [
    { "prefix": "/four/", "upstream": "four", "cache": false },
    { "prefix": "/ten/", "upstream": "ten", "cache": false }
  ],
  "log": { "level": "debug" }
}
JSON
start_gateway "$T/gw.json"

http GET /four/ok
assert_status 200 "an answered request"
curl -sS -o /dev/null -w '%{http_code}' --max-time 60 "$(url /ten/mute/b)" >"$T/ten.code" 2>"$T/ten.err" &
TEN=$!
http GET /four/mute/a
assert_problem 504
wait "$TEN" || fail "curl for /ten/mute/b failed"
assert_eq 504 "$(cat "$T/ten.code")" "status of /ten/mute/b"

copies() { # PATH: how many copies of the request the device received, and with how many message ids
    local lines
    lines=$(grep "^REQ .* path=$1 " "$RAW_LOG" || true)
    printf '%s %s\n' "$(grep -c . <<<"$lines")" "$(grep -o 'mid=[0-9]*' <<<"$lines" | sort -u | grep -c .)"
}
assert_eq "2 1" "$(copies /mute/a)" "copies (and message ids) of /mute/a at the device"
assert_eq "3 1" "$(copies /mute/b)" "copies (and message ids) of /mute/b at the device"
# Log lines are written by the logger's own thread: they may land just after the HTTP answer.
has_line() { grep -q "event=exchange .*path=\"$1\"" "$GW_LOG"; }
for p in /ok /mute/a /mute/b; do
    wait_until "the debug exchange line of $p" has_line "$p"
done
line_of() { grep "event=exchange .*path=\"$1\"" "$GW_LOG"; }
assert_contains "$(line_of /mute/a)" "status=timeout block1=- block2=- retransmits=1 " "exchange of /mute/a"
assert_contains "$(line_of /mute/b)" "status=timeout block1=- block2=- retransmits=2 " "exchange of /mute/b"
assert_contains "$(line_of /ok)" " retransmits=0 " "exchange of /ok"
stop_gateway
pass
