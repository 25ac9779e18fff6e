#!/usr/bin/env bash
# Prepare this machine to run the appliance in containers: Docker engine and
# debootstrap from Debian, a running dockerd, the local Debian 12 base image,
# Debian's Chromium and chromedriver for the WebMail browser tests, and the
# project's Python venv with the test toolchain (scripts/controller-setup.sh
# with requirements.txt). Safe to re-run: every step checks first.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${QUBEMAIL_BASE_IMAGE:-qubemail/debian12-systemd:2}
VENV=${QUBEMAIL_VENV:-$here/.venv}
STATE=${QUBEMAIL_STATE_DIR:-/var/tmp/qubemail}
mkdir -p "$STATE"

log() { printf '[host-setup] %s\n' "$*" >&2; }

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
command -v chromedriver >/dev/null 2>&1 || need_pkgs+=(chromium chromium-driver)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_pkgs+=(python3-venv)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]} from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (log: $STATE/dockerd.log)"
    nohup dockerd >"$STATE/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { log "dockerd did not start; see $STATE/dockerd.log"; exit 1; }
fi

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "building base image $IMAGE with debootstrap (about a minute)"
    root=$(mktemp -d "$STATE/rootfs.XXXXXX")
    debootstrap --variant=minbase \
        --include=python3,python3-apt,systemd,systemd-sysv,iproute2,ca-certificates,sudo \
        bookworm "$root" >"$STATE/debootstrap.log" 2>&1 \
        || { log "debootstrap failed; see $STATE/debootstrap.log"; exit 1; }
    tar -C "$root" -c . | docker import -c 'CMD ["/sbin/init"]' - "$IMAGE" >/dev/null
    rm -rf "$root"
fi

QUBEMAIL_VENV=$VENV bash "$here/scripts/controller-setup.sh" "$here/requirements.txt"
log "ready: docker $(docker version -f '{{.Server.Version}}'), image $IMAGE, venv $VENV"
