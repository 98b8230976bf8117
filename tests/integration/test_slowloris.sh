#!/usr/bin/env bash
# Slowloris: limits.header_timeout_s and limits.body_timeout_s are deadlines for the whole header section and
# the whole body, which bytes trickling in do not reset (limits.connection_timeout_s, MHD's idle timeout,
# does). 50 connections send their header section one byte per 0.5 s (half of them after a whole request
# line, so they are inside a request and get a 408); meanwhile a normal request is answered at once, every
# slow connection is closed within header_timeout_s + 2 s, a body trickling in gets a 408 within
# body_timeout_s + 2 s, and an idle keep-alive connection is closed within header_timeout_s + 2 s of its
# answer. Each slow client gives up after 6 s, so the test is bounded and fails on a gateway without the
# deadlines (connections held past 5 s).
source "$(dirname "$0")/lib.sh"

SLOW=50
HEADER_S=2
BODY_S=2
GIVE_UP_MS=6000

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$SRV" '"timeout_ms": 2000' '"methods": ["GET", "PUT"], "cache": false' \
    "\"limits\": { \"header_timeout_s\": $HEADER_S, \"body_timeout_s\": $BODY_S, \"connection_timeout_s\": 30 }"
start_gateway "$T/gw.json"

CRLF=$'\r\n'
# trickle FILE TEXT: sends TEXT on fd 3 one byte per 0.5 s (the reads are the pauses) until the gateway
# answers or closes, or GIVE_UP_MS after $start. Writes "closed MS FIRSTLINE" or "held MS" to FILE (MS since
# $start; FIRSTLINE is the answer's status line, "-" when the connection was closed without one).
trickle() {
    local file=$1 text=$2 k=0 rc line part="" first=-
    trap '' PIPE # a write on a closed connection fails (EPIPE) instead of killing the client
    while (($(now_ms) - start < GIVE_UP_MS)); do
        if ((k < ${#text})); then
            printf '%s' "${text:k:1}" >&3 2>/dev/null || break
            k=$((k + 1))
        fi
        rc=0
        IFS= read -r -t 0.5 -u 3 line 2>/dev/null || rc=$?
        if ((rc > 128)); then
            part+=$line # a timeout keeps what it read of a line: the rest comes with the next read
        elif ((rc == 0)); then
            line=$part$line
            part=""
            [[ $first != - ]] || first=${line%$'\r'}
        else
            line=$part$line # the end of the connection (or a reset), maybe after an unterminated line
            [[ $first != - || -z $line ]] || first=${line%$'\r'}
            break
        fi
    done
    if (($(now_ms) - start < GIVE_UP_MS)); then
        echo "closed $(($(now_ms) - start)) $first" >"$file"
    else
        echo "held $(($(now_ms) - start))" >"$file"
    fi
}

# A slow header section: the request line byte by byte, or (with "inside") sent whole first.
slow_header() { # I [inside]
    local start target="GET /api/r/a HTTP/1.1$CRLF" rest="Host: 127.0.0.1:$GW_PORT${CRLF}X-Slow: aaaaaaaaaaaaaaaa$CRLF$CRLF"
    exec 3<>"/dev/tcp/127.0.0.1/$GW_PORT" || {
        echo "noconnect" >"$T/slow.$1"
        return 0
    }
    start=$(now_ms)
    if [[ ${2:-} == inside ]]; then
        printf '%s' "$target" >&3
        trickle "$T/slow.$1" "$rest"
    else
        trickle "$T/slow.$1" "$target$rest"
    fi
}

# A whole header section at once, then the body one byte per 0.5 s; the time counts from the header end.
slow_body() {
    local start
    exec 3<>"/dev/tcp/127.0.0.1/$GW_PORT"
    printf '%s' "PUT /api/echo HTTP/1.1${CRLF}Host: 127.0.0.1:$GW_PORT${CRLF}Content-Type: text/plain$CRLF" >&3
    printf '%s' "Content-Length: 100$CRLF$CRLF" >&3
    start=$(now_ms)
    trickle "$T/body.res" "$(printf 'b%.0s' {1..100})"
}

# One whole request on a keep-alive connection, then silence: the next header section is due too.
idle_keepalive() {
    local start line rc=0
    exec 3<>"/dev/tcp/127.0.0.1/$GW_PORT"
    printf '%s' "GET /healthz HTTP/1.1${CRLF}Host: 127.0.0.1:$GW_PORT$CRLF$CRLF" >&3
    IFS= read -r -t 5 -u 3 line || rc=$?
    start=$(now_ms)
    [[ $rc == 0 && $line == "HTTP/1.1 200"* ]] || {
        echo "noanswer $rc ${line%$'\r'}" >"$T/idle.res"
        return 0
    }
    trickle "$T/idle.res" ""
}

pids=()
for ((i = 0; i < SLOW; i++)); do
    if ((i % 2 == 0)); then
        slow_header "$i" inside &
    else
        slow_header "$i" &
    fi
    pids+=($!)
done
slow_body &
pids+=($!)
idle_keepalive &
pids+=($!)

# (1) A normal request while the slow connections are open.
sleep 1
read -r code secs < <(curl -sS -o "$T/body" -w '%{http_code} %{time_total}\n' --max-time 5 "$(url '/api/r/a?body=ok')")
assert_eq 200 "$code" "a normal request during the slow connections"
assert_eq ok "$(cat "$T/body")" "its body"
awk -v s="$secs" 'BEGIN { exit !(s < 1.0) }' || fail "a normal request took ${secs}s during the slow connections"

for pid in "${pids[@]}"; do
    wait "$pid"
done

# (2) Every slow header section ended within header_timeout_s + 2 s; the ones inside a request got a 408.
limit=$(((HEADER_S + 2) * 1000))
for ((i = 0; i < SLOW; i++)); do
    read -r what ms first <"$T/slow.$i"
    [[ $what == closed ]] || fail "slow header $i: $what after ${ms:-?} ms (expected closed within $limit ms)"
    ((ms <= limit)) || fail "slow header $i: closed after $ms ms (limit $limit ms)"
    if ((i % 2 == 0)); then
        assert_match "$first" '^HTTP/1\.1 408' "slow header $i (inside a request): answer"
    fi
done

# (3) The trickling body got a 408 within body_timeout_s + 2 s of the header section's end.
read -r what ms first <"$T/body.res"
[[ $what == closed ]] || fail "slow body: $what after ${ms:-?} ms"
((ms <= (BODY_S + 2) * 1000)) || fail "slow body: closed after $ms ms (limit $(((BODY_S + 2) * 1000)) ms)"
assert_match "$first" '^HTTP/1\.1 408' "slow body: answer"

# (4) The idle keep-alive connection was closed within header_timeout_s + 2 s of its answer.
read -r what ms first <"$T/idle.res"
[[ $what == closed ]] || fail "idle keep-alive connection: $what ${ms:-} $first"
((ms <= limit)) || fail "idle keep-alive connection: closed after $ms ms (limit $limit ms)"

# The gateway still serves, and the access log has the body's 408.
http GET '/api/r/a?body=after'
assert_status 200
wait_until "the access line of the 408" grep -q 'event=access method=PUT path=/api/echo status=408' "$GW_LOG"
stop_gateway
pass
