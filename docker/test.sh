#!/bin/bash
# `make docker-test`: builds both images (docker/build.sh) and proves they run. The containers share the
# host's network (`docker run --network host`, or `buildah run --isolation chroot` where there is no Docker
# engine and podman cannot create cgroups), listen on free loopback ports, and are asked from outside with
# curl: /healthz and /api/ (the image's own demo configuration, its ports moved), the HEALTHCHECK command run
# inside the image, /device/ through the compose configuration to the device image's coap-server. It also
# checks the image's metadata (non-root user, ports, health check, entry point) and its size: at most 10 MB
# above debian:bookworm-slim. Not part of `make test` (it builds images and needs minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-coapgw:latest}
DEVICE_IMAGE=${DEVICE_IMAGE:-coapgw-device:latest}
BASE=debian:bookworm-slim
MAX_GROWTH=10000000 # bytes above the base image
DEADLINE_S=60
START=$SECONDS
T=$(mktemp -d "${TMPDIR:-/tmp}/coapgw-docker-test.XXXXXX")
PIDS=()
CONTAINERS=()

say() { echo "docker-test: $*"; }
fail() {
    echo "docker-test: FAIL: $*" >&2
    for f in "$T"/*.log; do
        [[ -s $f ]] && { echo "----- $(basename "$f") -----" >&2; tail -n 40 "$f" >&2; }
    done
    exit 1
}

engine() {
    if [[ -n ${ENGINE:-} ]]; then
        echo "$ENGINE"
    elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        echo docker
    else
        echo podman
    fi
}
ENG=$(engine)
export ENGINE=$ENG

# Children first, so a coapgw under `buildah run` gets the SIGTERM itself.
descendants() {
    local kid
    for kid in $(pgrep -P "$1" || true); do
        descendants "$kid"
        echo "$kid"
    done
}

# The coapgw process under `buildah run` PID (buildah's chroot runtime sits in between).
coapgw_under() { # PID
    local pid
    for pid in $(descendants "$1"); do
        if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == coapgw ]]; then
            echo "$pid"
            return 0
        fi
    done
    fail "no coapgw process under pid $1"
}

cleanup() {
    local rc=$? pid
    set +e
    for pid in "${PIDS[@]}"; do
        # shellcheck disable=SC2046 # one pid a word
        kill -TERM $(descendants "$pid") "$pid" 2>/dev/null
    done
    for c in "${CONTAINERS[@]}"; do
        if [[ $ENG == docker ]]; then
            docker rm -f "$c" >/dev/null 2>&1
        else
            buildah rm "$c" >/dev/null 2>&1
        fi
    done
    ((rc == 0)) && rm -rf "$T" || echo "docker-test: temp dir kept: $T" >&2
    exit "$rc"
}
trap cleanup EXIT

# A TCP and UDP port nobody listens on, below the ephemeral range (the integration tests' range).
free_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((26384 + RANDOM % 6384))
        if ! ss -Htanu | awk '{ print $5 }' | grep -q ":$p\$"; then
            echo "$p"
            return 0
        fi
    done
    fail "no free port"
}

wait_until() { # WHAT CMD...
    local what=$1 end=$((SECONDS + DEADLINE_S))
    shift
    until "$@"; do
        ((SECONDS < end)) || fail "timed out after ${DEADLINE_S}s waiting for: $what"
        sleep 0.2
    done
}

# A working container of IMAGE, named in CTR (buildah's: the image's rootfs plus its config). Not called in
# $(...): CONTAINERS must be this shell's, for the clean-up.
new_container() { # IMAGE
    if [[ $ENG == docker ]]; then
        CTR=coapgw-test-$$-${#CONTAINERS[@]}
    else
        CTR=$(buildah from --pull-never "$1")
    fi
    CONTAINERS+=("$CTR")
}

# Starts ENTRY ARGS in container C of IMAGE, on the host's network, $T mounted read-only at /test, as the
# image's user. Sets LAST_PID; output in $T/NAME.log.
run_bg() { # NAME C IMAGE ENTRY ARGS...
    local name=$1 c=$2 image=$3 entry=$4
    shift 4
    if [[ $ENG == docker ]]; then
        docker run --rm --name "$c" --network host -v "$T:/test:ro" --entrypoint "$entry" "$image" "$@" \
            >"$T/$name.log" 2>&1 &
    else
        buildah run --isolation chroot -v "$T:/test:ro" "$c" -- "$entry" "$@" >"$T/$name.log" 2>&1 &
    fi
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# Runs CMD... in the running container C (docker exec) or a new process of its rootfs (buildah run).
run_in() { # C CMD...
    local c=$1
    shift
    if [[ $ENG == docker ]]; then
        docker exec "$c" "$@"
    else
        buildah run --isolation chroot "$c" -- "$@"
    fi
}

inspect() { # IMAGE FORMAT
    if [[ $ENG == docker ]]; then
        docker image inspect --format "$2" "$1"
    else
        podman image inspect --format "$2" "$1"
    fi
}

healthz_ok() { # PORT
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/healthz") == 200 ]]
}

# ---- build ----
say "engine: $ENG"
docker/build.sh
BUILT=$SECONDS

# ---- image metadata and size ----
user=$(inspect "$IMAGE" '{{.Config.User}}')
[[ $user == 10001:10001 ]] || fail "image user: expected 10001:10001, got '$user'"
ports=$(inspect "$IMAGE" '{{json .Config.ExposedPorts}}')
[[ $ports == *'"8080/tcp"'* && $ports == *'"5683/udp"'* ]] || fail "exposed ports: $ports"
hc=$(inspect "$IMAGE" '{{json .Config.Healthcheck}}')
[[ $hc == *'"coapgw","--health","http://127.0.0.1:8080/healthz"'* ]] || fail "health check: $hc"
ep=$(inspect "$IMAGE" '{{json .Config.Entrypoint}} {{json .Config.Cmd}}')
[[ $ep == '["coapgw"] ["--config","/etc/coapgw/coapgw.json"]' ]] || fail "entry point and command: $ep"
size=$(inspect "$IMAGE" '{{.Size}}')
base=$(inspect "$BASE" '{{.Size}}')
growth=$((size - base))
say "image $IMAGE: $size bytes, $BASE: $base bytes, growth $growth bytes ($((growth / 1000)) kB)"
((growth <= MAX_GROWTH)) || fail "the image grows the base by $growth bytes (at most $MAX_GROWTH)"

# ---- the gateway image with its own configuration, ports moved ----
new_container "$IMAGE"
GW=$CTR
chmod 755 "$T"
run_in "$GW" cat /etc/coapgw/coapgw.json >"$T/image.json" 2>"$T/cat.log" || fail "no /etc/coapgw/coapgw.json"
HTTP=$(free_port)
COAP=$(free_port)
sed -e "s/0\.0\.0\.0:8080/127.0.0.1:$HTTP/" -e "s/0\.0\.0\.0:5683/127.0.0.1:$COAP/" \
    -e "s|coap://127\.0\.0\.1:5683|coap://127.0.0.1:$COAP|" "$T/image.json" >"$T/gw.json"
{ grep -q "127.0.0.1:$HTTP" "$T/gw.json" && grep -q "coap://127.0.0.1:$COAP" "$T/gw.json"; } ||
    fail "the image's configuration is not the demo one: $(cat "$T/image.json")"
chmod 644 "$T"/*.json
run_bg gateway "$GW" "$IMAGE" coapgw --config /test/gw.json
GW_PID=$LAST_PID
wait_until "the image's coapgw on port $HTTP" healthz_ok "$HTTP"

body=$(curl -sS --max-time 10 "http://127.0.0.1:$HTTP/api/") || fail "GET /api/"
[[ $body == "Hello, CoAP!" ]] || fail "GET /api/: expected 'Hello, CoAP!', got '$body'"
body=$(curl -sS --max-time 10 "http://127.0.0.1:$HTTP/api/sensors/temperature")
[[ $body == *'"unit":"Cel"'* ]] || fail "GET /api/sensors/temperature: '$body'"
say "the image answers /healthz and /api/ on 127.0.0.1:$HTTP"

# The gateway runs as the image's user, not root.
if [[ $ENG == docker ]]; then
    uid=$(docker top "$GW" -o uid,comm | awk '$2 == "coapgw" { print $1; exit }')
else
    GW_INNER=$(coapgw_under "$GW_PID")
    uid=$(awk '/^Uid:/ { print $2 }' "/proc/$GW_INNER/status")
fi
[[ $uid == 10001 ]] || fail "coapgw in the container runs as uid '$uid', expected 10001"

# The HEALTHCHECK's own command, inside the image (its URL with the moved port).
out=$(run_in "$GW" coapgw --health "http://127.0.0.1:$HTTP/healthz" 2>&1) || fail "coapgw --health in the image: $out"
[[ $out == "HTTP/1.1 200 OK" ]] || fail "coapgw --health in the image printed '$out'"
if run_in "$GW" coapgw --health "http://127.0.0.1:$HTTP/nope" >/dev/null 2>&1; then
    fail "coapgw --health in the image passed on a 404"
fi

# ---- compose: the gateway with the compose configuration, in front of the device image ----
new_container "$DEVICE_IMAGE"
DEV=$CTR
DEV_PORT=$(free_port)
run_bg device "$DEV" "$DEVICE_IMAGE" coap-server-notls -A 127.0.0.1 -p "$DEV_PORT"
HTTP2=$(free_port)
COAP2=$(free_port)
sed -e "s/0\.0\.0\.0:8080/127.0.0.1:$HTTP2/" -e "s|coap://device:5683|coap://127.0.0.1:$DEV_PORT|" \
    -e "s/127\.0\.0\.1:5683/127.0.0.1:$COAP2/g" docker/compose.coapgw.json >"$T/compose.json"
chmod 644 "$T/compose.json"
new_container "$IMAGE"
GW2=$CTR
run_bg compose-gateway "$GW2" "$IMAGE" coapgw --config /test/compose.json
wait_until "the compose gateway on port $HTTP2" healthz_ok "$HTTP2"
device_up() {
    body=$(curl -s --max-time 5 "http://127.0.0.1:$HTTP2/device/") && [[ $body == *libcoap* ]]
}
wait_until "the device's coap-server through the gateway" device_up
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$HTTP2/device/time")
[[ $code == 200 ]] || fail "GET /device/time: $code"
say "the device image answers through the compose configuration: /device/ and /device/time"

# ---- a clean stop: SIGTERM to the gateway, exit 0 ----
if [[ $ENG == docker ]]; then
    docker stop "$GW" >/dev/null
    rc=0
    wait "$GW_PID" || rc=$?
else
    kill -TERM "$GW_INNER" # buildah's own processes would pass on a SIGKILL
    rc=0
    wait "$GW_PID" || rc=$?
fi
((rc == 0)) || fail "the gateway exited with status $rc after SIGTERM"
grep -q 'event=stopping' "$T/gateway.log" || fail "no event=stopping in the gateway's log"

say "PASS: build $((BUILT - START)) s, run $((SECONDS - BUILT)) s, image growth $((growth / 1000)) kB over $BASE"
