#!/usr/bin/env bash
# limits.max_connections: a client beyond it gets a prompt 503 problem+json with Connection: close and
# Retry-After, instead of waiting in the listen backlog (libmicrohttpd 0.9.75 stops polling the listening
# socket at its own limit). With max_connections 8 held by 8 keep-alive connections (each answered once,
# so each is admitted): one client and then 30 at once get 503 within curl's 5 s (header_timeout_s and
# connection_timeout_s are 30 s, so no timeout ends them); once the 8 close, clients are served again.
# Then the descriptor limit is fitted to max_connections and MHD's headroom, or a warning says it cannot be.
source "$(dirname "$0")/lib.sh"

GW_PORT=$(free_port)
HELD=8
cat >"$T/gw.json" <<JSON
{
  "listen": "127.0.0.1:$GW_PORT",
  "limits": { "max_connections": $HELD, "max_connections_per_ip": 0, "header_timeout_s": 30,
              "connection_timeout_s": 30 }
}
JSON
start_gateway "$T/gw.json"

held=()
for ((i = 0; i < HELD; i++)); do
    exec {fd}<>"/dev/tcp/127.0.0.1/$GW_PORT"
    printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' >&"$fd"
    line=
    read -r -t 10 line <&"$fd" || true
    [[ $line == "HTTP/1.1 200"* ]] || fail "held connection $i: expected a 200, got '${line%$'\r'}'"
    held+=("$fd")
done

# One client beyond the limit.
http GET /healthz --max-time 5
assert_problem 503 service-unavailable
assert_header Connection close
assert_header Retry-After 1
assert_contains "$BODY" "limits.max_connections"

# Thirty at once: every one answered 503 (curl exit 28 would be a client left hanging).
pids=()
for ((i = 0; i < 30; i++)); do
    curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$(url /healthz)" >"$T/burst.$i" 2>"$T/burst.$i.log" &
    pids+=($!)
done
for ((i = 0; i < 30; i++)); do
    rc=0
    wait "${pids[$i]}" || rc=$?
    ((rc == 0)) || fail "burst client $i: curl exit status $rc ($(cat "$T/burst.$i.log"))"
    assert_eq 503 "$(cat "$T/burst.$i")" "burst client $i"
done

# The held connections close: new clients are served again.
for fd in "${held[@]}"; do
    exec {fd}>&-
done
served() {
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$(url /healthz)") == 200 ]]
}
wait_until "a client to be served once the held connections closed" served
for ((i = 0; i < 20; i++)); do
    http GET /healthz --max-time 5
    assert_status 200 "request $i after the limit freed"
done

stop_gateway

# Descriptors: max_connections 2000 plus MHD's headroom (250) plus 64 must fit RLIMIT_NOFILE. A soft limit
# of 256 is raised to fit; a hard limit of 300 cannot be, and the gateway says so.
cat >"$T/fd.json" <<JSON
{ "listen": "127.0.0.1:$GW_PORT", "limits": { "max_connections": 2000 } }
JSON
need=2314
hard=$(ulimit -Hn)
[[ $hard == unlimited ]] || ((hard >= need)) || need=$hard
(
    ulimit -Sn 256
    exec "$COAPGW" --config "$T/fd.json" >"$T/fd.log" 2>&1
) &
fd_pid=$!
soft_raised() { [[ $(awk '/^Max open files/ { print $4 }' "/proc/$fd_pid/limits") == "$need" ]]; }
wait_until "the soft RLIMIT_NOFILE raised to $need" soft_raised
kill -TERM "$fd_pid"
wait "$fd_pid" || fail "coapgw with a raised descriptor limit exited with status $?"
(
    ulimit -n 300
    exec "$COAPGW" --config "$T/fd.json" >"$T/fd2.log" 2>&1
) &
fd_pid=$!
warned() { grep -q 'event=fd_limit max_connections=2000 needed=2314 nofile=300' "$T/fd2.log"; }
wait_until "the fd_limit warning" warned
kill -TERM "$fd_pid"
wait "$fd_pid" || fail "coapgw with a low descriptor limit exited with status $?"
pass
