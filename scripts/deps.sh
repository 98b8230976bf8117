#!/bin/sh
# Installs the Debian packages coapgw needs, but only those that are missing; apt-get update first when
# something must be installed. Needs root (or sudo) on Debian bookworm.
#   scripts/deps.sh build   what building and running the gateway needs (`make run`)
#   scripts/deps.sh         that and everything `make test` uses
set -eu

# check is in BUILD: configuring the tree (CMakeLists.txt) needs it.
BUILD="build-essential cmake pkg-config libmicrohttpd-dev libcoap3-dev libjansson-dev libgnutls28-dev check"
# The tests: curl and libcoap's servers and clients (integration), jq and promtool (JSON
# logs, /metrics), clang and libclang-rt-14-dev (the libFuzzer harnesses; libFuzzer is only a Recommends of
# clang), nginx in front of two replicas (integ_nginx), python3 and python3-yaml for the Kubernetes and
# compose YAML (integ_manifests). The tests run nginx on their own ports; Debian starts its nginx.service on
# port 80 where a policy-rc.d does not forbid it (`systemctl disable --now nginx` if unwanted).
TEST="curl ca-certificates iproute2 procps libcoap3-bin jq prometheus clang libclang-rt-14-dev
nginx python3 python3-yaml"

case "${1:-test}" in
build) PACKAGES=$BUILD ;;
test) PACKAGES="$BUILD $TEST" ;;
*)
    echo "usage: scripts/deps.sh [build|test]" >&2
    exit 2
    ;;
esac

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "coapgw: installing missing Debian packages:$missing"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "coapgw: need root (or sudo) to install:$missing" >&2; exit 1; }
    SUDO=sudo
fi
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
