#!/bin/bash
# Builds the coapgw image (docker/Dockerfile) as coapgw:latest, and the CoAP device image of compose.yaml
# (docker/device.Dockerfile) as coapgw-device:latest. `make docker` runs it from the repository root.
#
# With a Docker engine (`docker info` answers) it is a plain `docker build`. Otherwise it uses podman, which
# it installs when missing (Debian packages podman, buildah, debootstrap), and builds with chroot isolation
# (no cgroups or user namespaces needed) from a local debian:bookworm-slim made once with debootstrap (no
# registry needed; kept in podman's storage, so later builds reuse it). ENGINE=docker|podman forces one.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-coapgw:latest}
DEVICE_IMAGE=${DEVICE_IMAGE:-coapgw-device:latest}
BASE=debian:bookworm-slim

say() { echo "docker/build.sh: $*" >&2; }

engine() {
    if [[ -n ${ENGINE:-} ]]; then
        echo "$ENGINE"
    elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        echo docker
    else
        echo podman
    fi
}

# Installs the Debian packages named when their command is missing (needs root or sudo).
need() { # COMMAND PACKAGE...
    local cmd=$1 sudo=
    shift
    command -v "$cmd" >/dev/null 2>&1 && return 0
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    say "installing $*"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# A debian:bookworm-slim of our own, from Debian's packages: debootstrap's minbase variant, imported.
make_base() {
    local dir
    podman image exists "$BASE" && return 0
    need debootstrap debootstrap
    dir=$(mktemp -d "${TMPDIR:-/var/tmp}/coapgw-base.XXXXXX")
    say "no local $BASE: making one with debootstrap --variant=minbase bookworm (once; about a minute)"
    debootstrap --variant=minbase bookworm "$dir/rootfs" >"$dir/debootstrap.log" 2>&1 || {
        tail -n 20 "$dir/debootstrap.log" >&2
        rm -rf "$dir"
        return 1
    }
    rm -rf "$dir"/rootfs/var/cache/apt/archives/*.deb "$dir"/rootfs/var/lib/apt/lists/*
    tar -C "$dir/rootfs" -c . | podman import - "$BASE" >/dev/null
    rm -rf "$dir"
}

case $(engine) in
docker)
    docker build -f docker/Dockerfile -t "$IMAGE" .
    docker build -f docker/device.Dockerfile -t "$DEVICE_IMAGE" docker
    ;;
podman)
    need podman podman buildah
    need buildah buildah
    make_base
    podman build --isolation=chroot --format docker --pull=never -f docker/Dockerfile -t "$IMAGE" .
    podman build --isolation=chroot --format docker --pull=never -f docker/device.Dockerfile -t "$DEVICE_IMAGE" docker
    ;;
*)
    say "ENGINE must be docker or podman"
    exit 2
    ;;
esac
say "built $IMAGE and $DEVICE_IMAGE"
