#!/bin/sh
# Installs the Debian packages coapgw needs to build, run and test, but only those that are missing.
# Runs apt-get update first when something must be installed. clang and libclang-rt-14-dev (libFuzzer, only a
# Recommends of clang) build the fuzz harnesses. Needs root (or sudo) on Debian bookworm.
set -eu

PACKAGES="build-essential cmake pkg-config curl ca-certificates iproute2 procps
libmicrohttpd-dev libcoap3-dev libcoap3-bin libjansson-dev libgnutls28-dev check
clang libclang-rt-14-dev"

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
