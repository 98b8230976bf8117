#!/usr/bin/env bash
# SIGHUP reloads the configuration: a new route answers once the reload is logged, a changed token file
# takes effect, the log level changes, the cache is kept when its settings and the upstreams are unchanged,
# an invalid file is refused with the --check-config message while the old configuration serves on, a
# listen (or demo_server) change is named in a warning and the rest is applied, a limit changes, and an SSE
# stream keeps its generation until it ends (or SIGTERM ends it). Real curl, real signals, coap_testsrv as the
# device.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
umask 077
printf 'tok-A\n' >"$T/tokens.txt"

LISTEN=$GW_PORT LEVEL=info MAX_ENTRIES=100 EXTRA_ROUTES= TOP=
write_gw() {
    cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$LISTEN",
  "upstreams": { "dev": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 5000, "max_inflight": 4 } },
  "routes": [
    { "prefix": "/api/", "upstream": "dev", "cache": false },
    { "prefix": "/sec/", "upstream": "dev", "cache": false,
      "auth": { "type": "bearer", "tokens_file": "tokens.txt" } },
    { "prefix": "/c/", "upstream": "dev", "cache": true }$EXTRA_ROUTES
  ],
  "cache": { "max_entries": $MAX_ENTRIES },
  "log": { "level": "$LEVEL" }$TOP
}
JSON
}

count() { # PATTERN: lines of the gateway's log matching it (grep -E)
    grep -cE -- "$1" "$GW_LOG" || true
}

# reload: SIGHUP, then wait for the next "event=reloaded" line (signals are never sent faster than they are
# handled, so none is merged). Leaves that line in RELOADED.
RELOADED=
reload() {
    local before
    before=$(count 'event=reloaded ')
    kill -HUP "$GW_PID"
    reloaded() { (($(count 'event=reloaded ') > before)); }
    wait_until "the reload to be logged" reloaded
    RELOADED=$(grep 'event=reloaded ' "$GW_LOG" | tail -n 1)
}

write_gw
start_gateway "$T/gw.json"

echo "check: a route added to the file answers as soon as the reload is logged"
http GET /new/r/x
assert_problem 404
EXTRA_ROUTES=$',\n    { "prefix": "/new/", "upstream": "dev", "cache": false }'
write_gw
t0=$(date +%s%N)
reload
t1=$(date +%s%N)
echo "figure: SIGHUP to the reload logged (as the test saw it, polling every 50 ms): $(((t1 - t0) / 1000000)) ms"
assert_contains "$RELOADED" "generation=2 changed=routes" "reload line"
assert_contains "$RELOADED" "level=info mod=main" "reload line"
http GET '/new/r/x?body=fresh'
assert_status 200 "the new route, first request after the reload"
assert_eq fresh "$BODY" "the new route's body"

echo "check: a changed token file takes effect"
http GET /sec/r/s -H 'Authorization: Bearer tok-A'
assert_status 200 "the old token before the reload"
printf 'tok-B\n' >"$T/tokens.txt"
reload
assert_contains "$RELOADED" "changed=routes" "reload after a token file change"
http GET /sec/r/s -H 'Authorization: Bearer tok-A'
assert_problem 403
http GET /sec/r/s -H 'Authorization: Bearer tok-B'
assert_status 200 "the new token"

echo "check: the log level changes (info -> debug -> info)"
http GET /api/r/lvl-info
access_logged() { (($(count "event=access .*path=/api/r/$1 ") == 1)); }
wait_until "the access line of /api/r/lvl-info" access_logged lvl-info
assert_eq 0 "$(count 'event=exchange .*/r/lvl-info')" "debug lines at info"
LEVEL=debug
write_gw
reload
assert_contains "$RELOADED" "changed=log" "reload to debug"
http GET /api/r/lvl-debug
wait_until "the access line of /api/r/lvl-debug" access_logged lvl-debug
assert_eq 1 "$(count 'event=exchange .*/r/lvl-debug')" "debug exchange lines at debug"
LEVEL=info
write_gw
reload
http GET /api/r/lvl-back
wait_until "the access line of /api/r/lvl-back" access_logged lvl-back
# The exchange line is written by the worker before the request completes, so the access line comes after.
assert_eq 0 "$(count 'event=exchange .*/r/lvl-back')" "debug lines after going back to info"

echo "check: the cache and its entries are kept when the cache settings and the upstreams are unchanged"
http GET '/c/r/kept?max_age=600&body=cached'
assert_header X-Cache MISS
http GET '/c/r/kept?max_age=600&body=cached'
assert_header X-Cache HIT
EXTRA_ROUTES=$',\n    { "prefix": "/new/", "upstream": "dev", "cache": false },\n    { "prefix": "/more/", "upstream": "dev" }'
write_gw
reload
assert_contains "$RELOADED" "cache=kept" "reload with a route added"
http GET '/c/r/kept?max_age=600&body=cached'
assert_header X-Cache HIT
assert_eq 1 "$(srv_count "$SRV" "GET /r/kept")" "device requests for the kept entry"
MAX_ENTRIES=50
write_gw
reload
assert_contains "$RELOADED" "changed=cache cache=new" "reload with new cache bounds"
http GET '/c/r/kept?max_age=600&body=cached'
assert_header X-Cache MISS

echo "check: an invalid file is refused with the --check-config message; the old configuration serves on"
good=$(cat "$T/gw.json")
EXTRA_ROUTES=$',\n    { "prefix": "bad", "upstream": "dev" }'
write_gw
rc=0
expected=$("$COAPGW" --config "$T/gw.json" --check-config 2>&1) || rc=$?
assert_eq 2 "$rc" "--check-config exit status for the invalid file"
assert_not_contains "$expected" '"' "the message (quotes would be escaped in the log)"
failed_before=$(count 'event=reload_failed')
kill -HUP "$GW_PID"
refused() { (($(count 'event=reload_failed') > failed_before)); }
wait_until "the refused reload to be logged" refused
line=$(grep 'event=reload_failed' "$GW_LOG" | tail -n 1)
assert_contains "$line" "level=error mod=main event=reload_failed detail=\"$expected\"" "refusal line"
http GET /new/r/still
assert_status 200 "a route of the old configuration after the refused reload"
http GET /sec/r/s -H 'Authorization: Bearer tok-B'
assert_status 200 "the old configuration's token after the refused reload"
printf '%s\n' "$good" >"$T/gw.json"
reload
assert_contains "$RELOADED" "generation=8 " "the refused file made no generation"

echo "check: a listen or demo_server change needs a restart and is named; the rest is applied"
NEW_PORT=$(free_port)
DEMO_PORT=$(free_port)
LISTEN=$NEW_PORT
TOP=$',\n  "demo_server": { "enabled": true, "listen": "127.0.0.1:'"$DEMO_PORT"$'" }'
EXTRA_ROUTES=$',\n    { "prefix": "/late/", "upstream": "dev", "cache": false }'
write_gw
warned_before=$(count 'event=reload_needs_restart')
reload
assert_eq $((warned_before + 1)) "$(count 'event=reload_needs_restart')" "restart warnings"
warn=$(grep 'event=reload_needs_restart' "$GW_LOG" | tail -n 1)
assert_contains "$warn" "level=warn mod=main event=reload_needs_restart fields=listen,demo_server.enabled,demo_server.listen " "restart warning"
http GET /late/r/x
assert_status 200 "a route added with the listen change, on the running address"
rc=0
curl -sS -o /dev/null --max-time 5 "http://127.0.0.1:$NEW_PORT/healthz" 2>/dev/null || rc=$?
assert_eq 7 "$rc" "curl to the new listen address (connection refused)"
demo=$("$COAP_CLIENT" -B 2 "coap://127.0.0.1:$DEMO_PORT/" 2>&1 || true)
assert_not_contains "$demo" "Hello" "the demo server's port (it is never started by a reload)"
# Still named at the next reload: the running address is what the snapshot keeps.
reload
assert_eq $((warned_before + 2)) "$(count 'event=reload_needs_restart')" "restart warnings after a second reload"

echo "check: an SSE stream keeps its generation until it ends"
curl -sS -N --max-time 90 -H 'Accept: text/event-stream' -o "$T/s.sse" "$(url '/api/obs/s?period_ms=200')" \
    2>"$T/s.err" &
sse=$!
events() { grep -c '^event: 2.05$' "$T/${1:-s}.sse" 2>/dev/null || true; } # [NAME]
some_events() { (($(events "$@") >= 2)); }
wait_until "the stream's first events" some_events
reload
assert_contains "$RELOADED" "older_held=1" "the stream holds its generation"
at_reload=$(events)
more_events() { (($(events) >= at_reload + 2)); }
wait_until "events on the stream after the reload" more_events
kill "$sse" 2>/dev/null || true
wait "$sse" 2>/dev/null || true
released() {
    reload
    [[ $RELOADED == *"older_held=0"* ]]
}
wait_until "the stream's generation to be destroyed after it ended" released

echo "check: a limit changes with the reload"
long=/api/r/$(printf 'x%.0s' {1..80})
http GET "$long"
assert_status 200 "an 86-byte target before the reload"
TOP="$TOP"$',\n  "limits": { "max_uri_bytes": 64 }'
write_gw
reload
assert_contains "$RELOADED" "changed=limits" "reload with a smaller max_uri_bytes"
http GET "$long"
assert_problem 414
http GET /api/r/short
assert_status 200 "a short target after the reload"

echo "check: SIGTERM with a stream holding a retired generation ends the stream and exits 0"
curl -sS -N --max-time 90 -H 'Accept: text/event-stream' -o "$T/t.sse" "$(url '/api/obs/t?period_ms=200')" \
    2>"$T/t.err" &
sse=$!
wait_until "the second stream's first events" some_events t
reload
assert_contains "$RELOADED" "older_held=1" "the second stream holds its generation"
stop_gateway
wait "$sse" || true
pass
