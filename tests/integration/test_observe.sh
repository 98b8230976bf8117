#!/usr/bin/env bash
# CoAP Observe (RFC 7641) as live HTTP data: Server-Sent Events from the demo's temperature sensor and from
# coap_testsrv's /obs resources; N subscribers share one registration at the device and the last one leaving
# deregisters it; a device that goes silent ends the stream with "event: error"; long-poll ?observe=next
# answers the next notification or 204; subscriber limits answer 503; binary payloads travel base64.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
DEMO_PORT=$GW_PORT # freeport checks TCP and UDP: HTTP on TCP, the demo on UDP, same number

# write_gateway FILE [LIMITS_EXTRA]: /api/ -> coap_testsrv (timeout 1500 ms: a silent device is given up
# quickly), /demo/ -> the embedded demo; keep-alives every second, long-poll gives up after 2 s.
write_gateway() {
    cat >"$1" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "upstreams": {
    "dev": { "uri": "coap://127.0.0.1:$SRV", "timeout_ms": 1500 },
    "demo": { "uri": "coap://127.0.0.1:$DEMO_PORT" }
  },
  "routes": [
    { "prefix": "/api/", "upstream": "dev", "cache": false },
    { "prefix": "/demo/", "upstream": "demo", "cache": false }
  ],
  "demo_server": { "enabled": true, "listen": "127.0.0.1:$DEMO_PORT" },
  "limits": { "sse_keepalive_s": 1, "longpoll_timeout_s": 2${2:+, $2} }
}
JSON
}
write_gateway "$T/gw.json"
start_gateway "$T/gw.json"

# sse_start NAME PATH: an SSE client in the background; stream in $T/NAME.sse, headers in $T/NAME.h.
# Sets SSE_PID.
sse_start() {
    curl -sS -N --max-time 90 -H 'Accept: text/event-stream' -D "$T/$1.h" -o "$T/$1.sse" "$(url "$2")" \
        2>"$T/$1.err" &
    SSE_PID=$!
}

sse_stop() { # PID...
    local pid
    for pid in "$@"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

events() { # NAME [EVENT]: how many events of that type (default 2.05) arrived so far
    [[ -f $T/$1.sse ]] || {
        echo 0
        return
    }
    grep -c "^event: ${2:-2.05}\$" "$T/$1.sse" || true
}

has_events() { # NAME N
    (($(events "$1") >= $2))
}

# Observe value ("id:") of every event, in order, must grow.
assert_ids_grow() { # NAME
    local ids
    ids=$(sed -n 's/^id: //p' "$T/$1.sse" | tr '\n' ' ')
    awk '{ for (i = 1; i <= NF; i++) { if (i > 1 && $i + 0 <= $(i - 1) + 0) exit 1 } exit (NF == 0) }' \
        <<<"$ids" || fail "SSE ids of $1 missing or not increasing: $ids"
}

n_of() { # {"n":5} -> 5
    sed -n 's/.*"n":\([0-9][0-9]*\).*/\1/p' <<<"$1"
}

observers() { # NAME
    coap_get "$SRV" "/stats/observers/$1"
}

# The device has no observer left on /obs/NAME and has counted TIMES deregistrations (default 1).
deregistered() { # NAME [TIMES]
    [[ $(observers "$1") == 0 && $(srv_count "$SRV" "DEREGISTER /obs/$1") == "${2:-1}" ]]
}

# ---- the demo's temperature sensor: 3 events within a few seconds ----
t0=$(now_ms)
sse_start temp /demo/sensors/temperature
temp_pid=$SSE_PID
wait_until "3 SSE events from /demo/sensors/temperature" has_events temp 3
temp_ms=$(($(now_ms) - t0))
((temp_ms < 6000)) || fail "3 temperature events took $temp_ms ms (the demo notifies every second)"
cp "$T/temp.h" "$T/headers"
assert_content_type "text/event-stream; charset=utf-8"
assert_header Cache-Control no-store
(($(grep -c '^data: {"value":' "$T/temp.sse") >= 3)) || fail "temperature events without JSON data lines"
assert_ids_grow temp
sse_stop "$temp_pid"
echo "[$TEST_NAME] 3 temperature events in $temp_ms ms; first one:" >&2
awk 'NF == 0 { exit } { print }' "$T/temp.sse" >&2

# ---- fan-out: N subscribers, one registration at the device; the last one out deregisters ----
N=5
fan_pids=()
for ((i = 1; i <= N; i++)); do
    sse_start "fan$i" "/api/obs/fan?period_ms=200"
    fan_pids+=("$SSE_PID")
done
all_have_events() {
    local i
    for ((i = 1; i <= N; i++)); do
        has_events "fan$i" 3 || return 1
    done
}
wait_until "3 events on each of $N SSE clients" all_have_events
fan_regs=$(srv_count "$SRV" "REGISTER /obs/fan")
echo "[$TEST_NAME] $N SSE subscribers on one resource -> $fan_regs registration(s) at the device," \
    "$(observers fan) observer(s)" >&2
assert_eq 1 "$fan_regs" "registrations at the device for $N subscribers"
assert_eq 1 "$(observers fan)" "observers of /obs/fan at the device"
for ((i = 1; i <= N; i++)); do
    assert_ids_grow "fan$i"
    grep -q '^data: {"n":[0-9]*}$' "$T/fan$i.sse" || fail "fan$i: JSON payload not sent as is"
done
# They all read the same observation: the newest notification reaches every stream.
newest=$(grep '^id: ' "$T/fan1.sse" | tail -n 1)
seen_everywhere() {
    local i
    for ((i = 2; i <= N; i++)); do
        grep -qx "$newest" "$T/fan$i.sse" || return 1
    done
}
wait_until "'$newest' on every stream" seen_everywhere

sse_stop "${fan_pids[@]:1}"
assert_eq 0 "$(srv_count "$SRV" "DEREGISTER /obs/fan")" "deregistrations while one subscriber is left"
assert_eq 1 "$(observers fan)" "observers of /obs/fan while one subscriber is left"
has_events fan1 1 # still streaming
t0=$(now_ms)
sse_stop "${fan_pids[0]}"
wait_until "the device to see the deregistration of /obs/fan" deregistered fan
echo "[$TEST_NAME] last subscriber gone -> deregistered after $(($(now_ms) - t0)) ms" >&2
assert_eq 1 "$(srv_count "$SRV" "REGISTER /obs/fan")" "registrations at the device after all left"
# A new subscriber starts a new observation.
sse_start fan_again "/api/obs/fan?period_ms=200"
wait_until "an event after re-subscribing" has_events fan_again 2
assert_eq 2 "$(srv_count "$SRV" "REGISTER /obs/fan")" "registrations after a new subscriber came"
sse_stop "$SSE_PID"
wait_until "the device to see the second deregistration" deregistered fan 2

# A quiet resource: the disconnect shows at the next keep-alive write (sse_keepalive_s 1).
sse_start quiet "/api/obs/quiet?period_ms=600000"
keepalive_seen() { grep -q '^: keep-alive$' "$T/quiet.sse" 2>/dev/null; }
wait_until "a keep-alive comment on a quiet stream" keepalive_seen
assert_eq 1 "$(events quiet)" "events on a quiet stream (the registration's answer)"
t0=$(now_ms)
sse_stop "$SSE_PID"
wait_until "the device to see the deregistration of a quiet resource" deregistered quiet
echo "[$TEST_NAME] quiet stream closed -> deregistered after $(($(now_ms) - t0)) ms (keep-alive 1 s)" >&2

# ---- device silent: Max-Age 1 passes, the re-registration is ignored -> event: error, stream ends ----
t0=$(now_ms)
sse_start mute "/api/obs/mute?period_ms=200&max_age=1&stop_after=3"
mute_pid=$SSE_PID
mute_ended() { ! alive "$mute_pid"; }
wait_until "the SSE stream of a silent device to end by itself" mute_ended
rc=0
wait "$mute_pid" || rc=$?
echo "[$TEST_NAME] silent device: stream ended after $(($(now_ms) - t0)) ms; its tail:" >&2
tail -n 6 "$T/mute.sse" >&2
assert_eq 0 "$rc" "curl exit status (the gateway ended the stream cleanly)"
assert_eq 4 "$(events mute)" "2.05 events before the device went silent (registration + 3)"
assert_eq 1 "$(events mute error)" "error events"
last_event=$(grep '^event: ' "$T/mute.sse" | tail -n 1)
assert_eq "event: error" "$last_event" "last event of the stream"
error_data=$(awk '/^event: error$/ { e = 1; next } e && /^data: / { print; exit }' "$T/mute.sse")
assert_match "$error_data" '^data: .+' "error event detail"
((($(srv_count "$SRV" "IGNORED /obs/mute")) >= 1)) || fail "the device never saw a re-registration"

# ---- long-poll ----
# With an SSE stream keeping the observation alive: ?observe=next shares it and answers the NEXT one.
sse_start lp "/api/obs/lp?period_ms=300"
lp_pid=$SSE_PID
wait_until "3 events on /obs/lp" has_events lp 3
cur=$(n_of "$(coap_get "$SRV" /obs/lp)")
[[ -n $cur ]] || fail "cannot read the current n of /obs/lp"
http GET "/api/obs/lp?period_ms=300&observe=next"
assert_status 200 "long-poll next"
assert_content_type "application/json"
got=$(n_of "$BODY")
if [[ -z $got ]] || ((got <= cur)); then
    fail "long-poll answered '$BODY'; expected n > $cur (the current one)"
fi
assert_eq 1 "$(srv_count "$SRV" "REGISTER /obs/lp")" "registrations: the long-poll joined the SSE observation"
sse_stop "$lp_pid"
echo "[$TEST_NAME] long-poll: current n=$cur, answered n=$got" >&2

# Alone: the registration's answer is skipped, the first notification (n=1) answers.
http GET "/api/obs/lp2?period_ms=300&observe=next"
assert_status 200 "long-poll next on a fresh observation"
assert_eq '{"n":1}' "$BODY" "long-poll answer on a fresh observation"
wait_until "the device to see the long-poll's deregistration" deregistered lp2

# Nothing within longpoll_timeout_s (2 s): 204.
: >"$T/body"
t=$(curl -sS -o "$T/body" -D "$T/headers" -w '%{http_code} %{time_total}' --max-time 60 \
    "$(url "/api/obs/still?period_ms=600000&observe=next")")
assert_eq 204 "${t% *}" "long-poll status without a notification"
assert_eq 0 "$(wc -c <"$T/body" | tr -d ' ')" "204 body length"
awk -v t="${t#* }" 'BEGIN { exit !(t >= 1.9 && t < 10) }' ||
    fail "204 after ${t#* } s; expected about 2 s (longpoll_timeout_s)"
wait_until "the device to see the deregistration after 204" deregistered still

# ---- binary payloads: base64 with an encoding line ----
sse_start bin "/api/obs/bin?period_ms=200&ct=42&binary=1"
bin_pid=$SSE_PID
sse_start raw "/api/obs/raw?period_ms=200&ct=-1&binary=1"
raw_pid=$SSE_PID
wait_until "2 events of octet-stream data" has_events bin 2
wait_until "2 events of data without a Content-Format" has_events raw 2
sse_stop "$bin_pid" "$raw_pid"
for name in bin raw; do
    block=$(awk '/^event: 2.05$/ { e = 1 } e { print } e && NF == 0 { exit }' "$T/$name.sse")
    assert_contains "$block" $'\nencoding: base64\n' "$name event"
    b64=$(sed -n 's/^data: //p' <<<"$block")
    decoded=$(base64 -d <<<"$b64" | od -An -tx1 -v | tr -d ' \n') || fail "$name: data is not base64: $b64"
    assert_eq "00fffe$(hex '{"n":0}')" "$decoded" "$name: decoded first event"
done

# ---- Max-Age 0 on notifications: re-registration waits at least 1 s (no registration storm) ----
sse_start m0 "/api/obs/m0?period_ms=1000&max_age=0"
m0_pid=$SSE_PID
m0_events() { (($(grep -c '^event: 2.05' "$T/m0.sse" 2>/dev/null || true) >= 3)); }
wait_until "3 events on /obs/m0" m0_events
sse_stop "$m0_pid"
rereg=$(srv_count "$SRV" "REREGISTER /obs/m0")
echo "[$TEST_NAME] Max-Age 0: $rereg re-registrations during 3 notifications" >&2
((rereg <= 10)) || fail "Max-Age 0 caused $rereg re-registrations for 3 notifications (a storm)"

# ---- long-poll on a resource that is not there: the device's 4.04, not 204 ----
http GET "/api/r/missing?code=4.04&observe=next"
assert_status 404 "long-poll of a 4.04 resource"

# ---- subscriber limits: 1 per resource, 2 in total ----
for pid in $(jobs -p); do
    [[ $pid == "$TESTSRV_PID" || $pid == "$GW_PID" ]] || fail "a client (pid $pid) is still running"
done
stop_gateway
write_gateway "$T/gw-limits.json" '"max_subscribers": 2, "max_subscribers_per_resource": 1'
start_gateway "$T/gw-limits.json"
sse_start one "/api/obs/one?period_ms=200"
one_pid=$SSE_PID
wait_until "an event on /obs/one" has_events one 1
http GET "/api/obs/one?period_ms=200" -H 'Accept: text/event-stream'
assert_problem 503
assert_contains "$BODY" "max_subscribers" "per-resource refusal detail"
http GET "/api/obs/one?period_ms=200&observe=next"
assert_problem 503
sse_start two "/api/obs/two?period_ms=200"
two_pid=$SSE_PID
wait_until "an event on /obs/two" has_events two 1
http GET "/api/obs/three?period_ms=200" -H 'Accept: text/event-stream'
assert_problem 503
assert_contains "$BODY" "max_subscribers" "total refusal detail"
assert_eq 1 "$(srv_count "$SRV" "REGISTER /obs/one")" "registrations of /obs/one (refused ones asked nothing)"
assert_eq 0 "$(srv_count "$SRV" "GET /obs/three")" "requests for /obs/three (refused)"
sse_stop "$one_pid"
wait_until "the device to see /obs/one deregistered" deregistered one
sse_start one_again "/api/obs/one?period_ms=200"
wait_until "an event on /obs/one once the slot is free" has_events one_again 1
sse_stop "$SSE_PID" "$two_pid"
stop_gateway
pass
