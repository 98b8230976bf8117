#!/bin/sh
# Installs the Debian packages coapgw needs to build, run and test, but only those that are missing.
# Runs apt-get update first when something must be installed. Needs root (or sudo) on Debian bookworm.
set -eu

PACKAGES="build-essential cmake pkg-config curl ca-certificates iproute2 procps
libmicrohttpd-dev libcoap3-dev libcoap3-bin libjansson-dev libgnutls28-dev check
jq prometheus"
# The deployment tests: nginx in front of two replicas (integ_nginx), the Kubernetes and compose YAML read by
# python3 (integ_manifests). The tests run nginx on their own ports; Debian starts its nginx.service on port 80
# where a policy-rc.d does not forbid it (`systemctl disable --now nginx` if unwanted).
PACKAGES="$PACKAGES nginx python3 python3-yaml"

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
