#!/usr/bin/env bash
# deploy/nginx/coapgw.conf for real: nginx (its own prefix, pid and logs in the temp dir, free ports) in front
# of two coapgw replicas and one coap_testsrv device. Hashing by resource makes the fleet behave as one
# gateway: 16 resources x 8 concurrent clients within Max-Age cost the device one request each (both replicas
# serving some of them); 10 SSE clients of one resource through nginx are one registration at the device and
# each gets its events while its stream is open; with one replica killed every resource is still answered
# (proxy_next_upstream).
source "$(dirname "$0")/lib.sh"

NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
[[ -x $NGINX ]] || { echo "SKIP: nginx not installed (scripts/deps.sh installs it)"; exit 77; }
CONF=$(dirname "$0")/../../deploy/nginx/coapgw.conf

start_testsrv
DEV=$TESTSRV_PORT

# ---- two replicas of the same configuration ----
declare -a GWP GWPID GWLOG
for i in 0 1; do
    GW_PORT=$(free_port)
    write_config "$T/gw$i.json" "coap://127.0.0.1:$DEV" '' '"cache": true' \
        '"limits": { "max_connections_per_ip": 0 }'
    start_gateway "$T/gw$i.json"
    GWP[i]=$GW_PORT GWPID[i]=$GW_PID GWLOG[i]=$GW_LOG
done
GW_PID= # the replicas are stopped below, one by one

# ---- nginx with the deployed file, its replicas and port filled in ----
NGX_PORT=$(free_port)
chmod 711 "$T"
mkdir -m 777 "$T/nginx"
sed -e "s/server coapgw-1:8080 /server 127.0.0.1:${GWP[0]} /" -e "s/server coapgw-2:8080 /server 127.0.0.1:${GWP[1]} /" \
    -e "s/^    listen 80;/    listen 127.0.0.1:$NGX_PORT;/" "$CONF" >"$T/coapgw.conf"
{ grep -q "127.0.0.1:${GWP[1]} " "$T/coapgw.conf" && grep -q "listen 127.0.0.1:$NGX_PORT;" "$T/coapgw.conf"; } ||
    fail "deploy/nginx/coapgw.conf no longer has the replica and listen lines this test fills in"
cat >"$T/nginx.conf" <<EOF
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx-error.log info;
events { worker_connections 512; }
http {
    access_log $T/nginx-access.log;
    client_body_temp_path $T/nginx/body;
    proxy_temp_path $T/nginx/proxy;
    fastcgi_temp_path $T/nginx/fastcgi;
    uwsgi_temp_path $T/nginx/uwsgi;
    scgi_temp_path $T/nginx/scgi;
    include $T/coapgw.conf;
}
EOF
"$NGINX" -t -p "$T/nginx" -c "$T/nginx.conf" >"$T/nginx-t.log" 2>&1 || fail "nginx -t: $(cat "$T/nginx-t.log")"
"$NGINX" -p "$T/nginx" -c "$T/nginx.conf" -g 'daemon off;' >"$T/nginx-out.log" 2>&1 &
NGX_PID=$!
GW_PORT=$NGX_PORT # http() and url() now go through nginx
nginx_up() {
    alive "$NGX_PID" || fail "nginx exited: $(cat "$T/nginx-error.log")"
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$(url /healthz)") == 200 ]]
}
wait_until "nginx on port $NGX_PORT answering /healthz" nginx_up

# ---- one device request per resource across the fleet ----
N_RES=16
N_CLIENTS=8
for ((r = 0; r < N_RES; r++)); do
    for ((c = 0; c < N_CLIENTS; c++)); do
        curl -s -o "$T/get.$r.$c" -w '%{http_code}' --max-time 30 "$(url "/api/r/res$r?max_age=300&body=v$r")" \
            >"$T/code.$r.$c" &
    done
done
for ((r = 0; r < N_RES; r++)); do
    for ((c = 0; c < N_CLIENTS; c++)); do
        wait_until "client $c of resource $r" test -s "$T/code.$r.$c"
        assert_eq 200 "$(cat "$T/code.$r.$c")" "GET /api/r/res$r (client $c) through nginx"
        assert_eq "v$r" "$(cat "$T/get.$r.$c")" "body of /api/r/res$r"
    done
done
for ((r = 0; r < N_RES; r++)); do
    assert_eq 1 "$(srv_count "$DEV" "GET /r/res$r")" "device requests for /r/res$r ($N_CLIENTS clients, 2 replicas)"
done
for i in 0 1; do
    served=$(grep -c 'path=/api/r/res' "${GWLOG[i]}" || true)
    ((served > 0)) || fail "replica $i served none of the $N_RES resources: the hash sent everything to one"
    echo "replica $i served $served of the $((N_RES * N_CLIENTS)) GETs"
done
# One resource sticks to one replica: its access lines are all in one log.
for ((r = 0; r < N_RES; r++)); do
    in0=$(grep -c "path=/api/r/res$r " "${GWLOG[0]}" || true)
    in1=$(grep -c "path=/api/r/res$r " "${GWLOG[1]}" || true)
    ((in0 == 0 || in1 == 0)) || fail "/api/r/res$r reached both replicas ($in0 and $in1 requests)"
done

# ---- 10 SSE clients of one resource: one registration, events as they come ----
SSE_PATH="/api/obs/live?period_ms=200"
for ((c = 0; c < 10; c++)); do
    curl -sN -H 'Accept: text/event-stream' --max-time 60 "$(url "$SSE_PATH")" >"$T/sse.$c" 2>/dev/null &
    eval "SSE_PID_$c=$!"
done
events_in() { # FILE N
    (($(grep -c '^event: 2.05' "$1" || true) >= $2))
}
for ((c = 0; c < 10; c++)); do
    wait_until "3 events on SSE client $c through nginx" events_in "$T/sse.$c" 3
done
assert_eq 1 "$(srv_count "$DEV" "REGISTER /obs/live")" "device registrations for 10 SSE clients through nginx"
assert_eq 1 "$(srv_stat "$DEV" observers/live)" "observers of /obs/live at the device"
for ((c = 0; c < 10; c++)); do
    pid_var=SSE_PID_$c
    kill "${!pid_var}" 2>/dev/null || true
done

# ---- a replica dies: every resource is still answered ----
# Kill the replica that serves /api/r/res0, so at least that resource must move.
if grep -q 'path=/api/r/res0 ' "${GWLOG[0]}"; then victim=0; else victim=1; fi
other=$((1 - victim))
kill -KILL "${GWPID[victim]}"
gone() { ! alive "${GWPID[victim]}"; }
wait_until "replica $victim to die" gone
for ((r = 0; r < N_RES; r++)); do
    http GET "/api/r/res$r?max_age=300&body=v$r"
    assert_status 200 "GET /api/r/res$r with replica $victim dead"
    assert_eq "v$r" "$BODY" "body of /api/r/res$r with replica $victim dead"
done
# The resources that moved cost the device one more request each, and no more.
for ((r = 0; r < N_RES; r++)); do
    n=$(srv_count "$DEV" "GET /r/res$r")
    ((n == 1 || n == 2)) || fail "device requests for /r/res$r after the failover: $n (expected 1 or 2)"
done
assert_eq 2 "$(srv_count "$DEV" "GET /r/res0")" "device requests for /r/res0 (moved to replica $other)"

GW_PID=${GWPID[other]}
stop_gateway
pass
