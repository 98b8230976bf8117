#!/usr/bin/env bash
# log.format json: one JSON object a line, parsed back with jq. The access log is on stdout with exactly
# ts, request_id, remote, method, path (with query), status, upstream, coap_code, cache, bytes and
# duration_ms; every other line (coapgw's, libcoap's, libmicrohttpd's) is JSON on stderr. Client values
# (control bytes, quotes, invalid UTF-8) arrive escaped and the files stay valid UTF-8. X-Request-Id: a
# valid one is kept, an absent, spaced, too long or repeated one replaced by 32 hex digits, and it is on
# every answer (problem+json refusals, cache hits, 304, SSE) and in the line. /healthz and /readyz are not
# logged at info; /metrics is.
source "$(dirname "$0")/lib.sh"
: "${RAWHTTP:?set RAWHTTP to the rawhttp binary}"

command -v jq >/dev/null || fail "jq is missing (scripts/deps.sh installs it)"

GW_PORT=$(free_port)
DEMO_PORT=$GW_PORT # freeport checks TCP and UDP: HTTP on TCP, the demo on UDP
start_testsrv --blackhole
HOLE=$TESTSRV_PORT
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": { "demo": { "uri": "coap://127.0.0.1:$DEMO_PORT" },
                 "hole": { "uri": "coap://127.0.0.1:$HOLE", "timeout_ms": 300 } },
  "routes": [ { "prefix": "/api/", "upstream": "demo" },
              { "prefix": "/hole/", "upstream": "hole", "cache": false } ],
  "demo_server": { "enabled": true, "listen": "127.0.0.1:$DEMO_PORT" },
  "log": { "format": "json" }
}
JSON

# The gateway with stdout and stderr apart (start_gateway merges them).
start_json_gateway() { # NAME [args...]
    local name=$1
    shift
    OUT=$T/$name.out.log
    ERR=$T/$name.err.log
    "$COAPGW" --config "$T/gw.json" "$@" >"$OUT" 2>"$ERR" &
    GW_PID=$!
    healthy() {
        alive "$GW_PID" || fail "coapgw exited before /healthz answered"
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$(url /healthz)") == 200 ]]
    }
    wait_until "coapgw /healthz == 200 on port $GW_PORT" healthy
}

HEX32='^[0-9a-f]{32}$'

# The access line of request id ID (exactly one).
line_of() { # ID
    local n
    n=$(jq -c --arg id "$1" 'select(.request_id == $id)' "$OUT" | wc -l)
    assert_eq 1 "$n" "access lines with request_id $1"
    jq -c --arg id "$1" 'select(.request_id == $id)' "$OUT"
}

# True when some line of FILE matches the jq condition (jq 1.6's -e looks only at the last input).
has_line() { # FILE CONDITION
    local found
    found=$(jq -c "select($2)" "$1") || fail "$1 is not JSON lines"
    [[ -n $found ]]
}

field() { # ID JQ-EXPR
    line_of "$1" | jq -r "$2"
}

start_json_gateway info

echo "check: a valid X-Request-Id is kept, on the answer and in the line"
http GET /api/ -H 'X-Request-Id: trace-42/x:y'
assert_status 200
assert_header X-Request-Id 'trace-42/x:y'
max=$(printf 'i%.0s' $(seq 128))
http GET /api/sensors/humidity -H "X-Request-Id: $max"
assert_header X-Request-Id "$max"

echo "check: an absent, spaced, too long, empty or repeated id is replaced"
ids=()
http GET /api/
assert_header_matches X-Request-Id "$HEX32"
ids+=("$(header X-Request-Id)")
for h in 'X-Request-Id: has space' "X-Request-Id: ${max}j" 'X-Request-Id;' ; do
    http GET /api/ -H "$h"
    assert_header_matches X-Request-Id "$HEX32"
    ids+=("$(header X-Request-Id)")
done
http GET /api/ -H 'X-Request-Id: one' -H 'X-Request-Id: two'
assert_header_matches X-Request-Id "$HEX32"
ids+=("$(header X-Request-Id)")
assert_eq 5 "$(printf '%s\n' "${ids[@]}" | sort -u | wc -l)" "distinct generated ids"

echo "check: cache hit, 304, problem+json, SSE all carry it"
http GET /api/ -H 'X-Request-Id: hit-1'
assert_header X-Cache HIT
assert_header X-Request-Id hit-1
etag=$(header ETag)
: >"$T/body"
http GET /api/ -H "If-None-Match: $etag" -H 'X-Request-Id: nm-1'
assert_status 304
assert_header X-Request-Id nm-1
http GET /nowhere -H 'X-Request-Id: p-1'
assert_problem 404 no-route
assert_header X-Request-Id p-1
"$RAWHTTP" -t 3000 "$GW_PORT" 'POST /api/ HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\nX-Request-Id: p-2\r\n\r\n' \
    >"$T/raw0" || true
grep -q $'^HTTP/1.1 413' "$T/raw0" || fail "no 413 for a declared huge body: $(head -c 300 "$T/raw0")"
grep -qi $'^X-Request-Id: p-2\r$' "$T/raw0" || fail "no X-Request-Id on the 413: $(head -c 500 "$T/raw0")"
curl -sS -N --max-time 2 -H 'Accept: text/event-stream' -H 'X-Request-Id: sse-1' -D "$T/sse.h" \
    -o "$T/sse.out" "$(url /api/sensors/temperature)" 2>/dev/null || true
assert_eq sse-1 "$(header X-Request-Id "$T/sse.h")" "SSE X-Request-Id"
grep -q '^event: 2.05$' "$T/sse.out" || fail "the SSE stream carried no event"

echo "check: a request line vet.c refuses (control byte) answers with the id"
"$RAWHTTP" -t 3000 "$GW_PORT" 'GET /api/a\x01b"q HTTP/1.1\r\nHost: x\r\nX-Request-Id: raw-1\r\n\r\n' \
    >"$T/raw1" || true
grep -q $'^HTTP/1.1 400' "$T/raw1" || fail "no 400 for a control byte: $(head -c 300 "$T/raw1")"
grep -qi $'^X-Request-Id: raw-1\r$' "$T/raw1" || fail "no X-Request-Id on the refusal: $(head -c 500 "$T/raw1")"
"$RAWHTTP" -t 3000 "$GW_PORT" 'GET /api/\xff\xfe\xc3?q=\xe2\x80\xa8 HTTP/1.1\r\nHost: x\r\nX-Request-Id: raw-2\r\nConnection: close\r\n\r\n' \
    >"$T/raw2" || true
grep -qi $'^X-Request-Id: raw-2\r$' "$T/raw2" || fail "no X-Request-Id: $(head -c 500 "$T/raw2")"

echo "check: a 504"
http GET '/hole/r?x=1' -H 'X-Request-Id: to-1'
assert_problem 504

echo "check: probes"
for i in 1 2 3; do
    http GET /healthz -H "X-Request-Id: probe-h$i"
    http GET /readyz -H "X-Request-Id: probe-r$i"
done
http GET /metrics -H 'X-Request-Id: m-1'
assert_status 200
assert_header X-Request-Id m-1
stop_gateway

echo "check: every stdout line is an access object with exactly its members, and valid UTF-8"
iconv -f UTF-8 -t UTF-8 "$OUT" >/dev/null || fail "stdout is not valid UTF-8"
iconv -f UTF-8 -t UTF-8 "$ERR" >/dev/null || fail "stderr is not valid UTF-8"
lines=$(wc -l <"$OUT")
((lines >= 15)) || fail "only $lines access lines on stdout"
bad=$(jq -c 'select((keys_unsorted != ["ts","request_id","remote","method","path","status","upstream",
        "coap_code","cache","bytes","duration_ms"])
    or (.ts | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$") | not)
    or (.status | type) != "number" or (.duration_ms | type) != "number"
    or ((.bytes | type) != "number" and .bytes != null)
    or (.request_id | type) != "string" or .remote != "127.0.0.1")' "$OUT") ||
    fail "stdout is not JSON lines: $(head -c 600 "$OUT")"
[[ -z $bad ]] || fail "access lines with other members or types: $(head -c 600 <<<"$bad")"

assert_eq 'GET /api/ 200 demo 2.05 MISS 12' \
    "$(field 'trace-42/x:y' '"\(.method) \(.path) \(.status) \(.upstream) \(.coap_code) \(.cache) \(.bytes)"')"
assert_eq 200 "$(field "$max" .status)"
assert_eq HIT "$(field hit-1 .cache)"
assert_eq '304 0' "$(field nm-1 '"\(.status) \(.bytes)"')"
assert_eq '404 null null' "$(field p-1 '"\(.status) \(.upstream) \(.cache)"')"
assert_eq 413 "$(field p-2 .status)"
assert_eq '200 null' "$(field sse-1 '"\(.status) \(.bytes)"')"
assert_eq '504 hole null /hole/r?x=1' "$(field to-1 '"\(.status) \(.upstream) \(.coap_code) \(.path)"')"
for id in "${ids[@]}"; do
    line_of "$id" >/dev/null
done
# Escaped client bytes: the control byte and the quote come back as they were sent, invalid UTF-8 as U+FFFD.
assert_eq true "$(field raw-1 '.path == "/api/a\u0001b\"q"')" "raw-1 path: $(field raw-1 .path | od -c | head -2)"
assert_eq 400 "$(field raw-1 .status)"
assert_eq true "$(field raw-2 '.path == "/api/\ufffd\ufffd\ufffd?q=\u2028"')" "raw-2 path: $(field raw-2 .path)"
grep -qF '\u0001' "$OUT" || fail "the control byte is not escaped as \\u0001 on stdout"
grep -qF '"/api/\ufffd\ufffd\ufffd?q=\u2028"' "$OUT" || fail "invalid UTF-8 / U+2028 not escaped on stdout"
! grep -q $'\x01' "$OUT" || fail "a raw control byte on stdout"
assert_eq 200 "$(field m-1 .status)"
n=$(jq -c 'select(.request_id | startswith("probe-"))' "$OUT" | wc -l)
assert_eq 0 "$n" "/healthz and /readyz lines at info"

echo "check: every stderr line is JSON with ts, level and mod; no access line there"
bad=$(jq -c 'select((.ts | type) != "string" or (.level | IN("error","warn","info","debug") | not)
    or (.mod | type) != "string")' "$ERR") || fail "stderr is not JSON lines: $(head -c 600 "$ERR")"
[[ -z $bad ]] || fail "stderr lines without ts/level/mod: $bad"
has_line "$ERR" '.mod == "main" and .event == "started"' || fail "no started line on stderr"
has_line "$ERR" '.mod == "client" and .event == "timeout" and .upstream == "hole" and .path == "/r"' ||
    fail "no client timeout line as JSON: $(head -c 600 "$ERR")"
! has_line "$ERR" '.event == "access"' || fail "an access line on stderr"
# The SSE client that left above is no warning (libmicrohttpd's "application error" is our reader ending).
! has_line "$ERR" '.mod == "http" and .level == "warn"' || fail "an http warn line: $(grep '"http"' "$ERR" | head -3)"

echo "check: at debug, libcoap's and libmicrohttpd's lines are JSON too, and the probes are logged"
start_json_gateway debug --log-level debug
http GET /api/sensors/temperature
http GET /healthz -H 'X-Request-Id: probe-debug'
curl -sS -N --max-time 1 -H 'Accept: text/event-stream' -o /dev/null "$(url /api/sensors/humidity)" \
    2>/dev/null || true
# A second gateway on the same ports cannot start: its stderr is JSON lines too, the reason among them.
rc=0
"$COAPGW" --config "$T/gw.json" >/dev/null 2>"$T/fail.err.log" || rc=$?
assert_eq 1 "$rc" "exit status of a gateway whose ports are taken"
bad=$(jq -c 'select((.level | type) != "string")' "$T/fail.err.log") ||
    fail "a failed start wrote lines that are not JSON: $(head -c 400 "$T/fail.err.log")"
[[ -z $bad ]] || fail "a failed start wrote lines without a level: $bad"
has_line "$T/fail.err.log" '.event == "start_failed" and .level == "error" and (.detail | length) > 0' ||
    fail "no start_failed line: $(head -c 400 "$T/fail.err.log")"
stop_gateway
iconv -f UTF-8 -t UTF-8 "$ERR" >/dev/null || fail "stderr is not valid UTF-8 at debug"
bad=$(jq -c 'select((.ts | type) != "string" or (.level | type) != "string" or (.mod | type) != "string")' \
    "$ERR") || fail "stderr at debug is not JSON lines"
[[ -z $bad ]] || fail "stderr lines without ts/level/mod at debug: $(head -c 600 <<<"$bad")"
has_line "$ERR" '.mod == "coap" and .level == "debug" and (.msg | type) == "string"' ||
    fail "no libcoap line as JSON at debug"
has_line "$ERR" '.mod == "client" and .event == "exchange"' || fail "no exchange line at debug"
line_of probe-debug >/dev/null
pass
