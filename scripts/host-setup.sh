#!/usr/bin/env bash
# Prepare this machine to run the appliance in containers: Docker engine and
# debootstrap from Debian, a running dockerd, the local Debian 12 and Debian 13
# base images, Debian's Chromium and chromedriver for the WebMail browser
# tests, and the project's Python venv with the test toolchain
# (scripts/controller-setup.sh with requirements.txt). Safe to re-run: every step checks first.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# The base images: Debian 12 (bookworm) and Debian 13 (trixie). A tag is
# bumped when its recipe changes, so an image that exists is never rebuilt.
IMAGE12=qubemail/debian12-systemd:3
IMAGE13=qubemail/debian13-systemd:2
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

# build_image IMAGE SUITE [SOURCES]: a minimal systemd rootfs of SUITE from
# debootstrap, imported as IMAGE, unless IMAGE exists. SOURCES, if given,
# replaces debootstrap's one-line sources.list (deb822, with the updates and
# security suites). dpkg in these throw-away test images does not fsync each
# file it unpacks (force-unsafe-io, as Docker's own Debian images do): the
# converges install a few hundred packages, and the Debian 12 -> 13 upgrade
# a thousand.
build_image() {
    local image=$1 suite=$2 sources=${3:-} root
    docker image inspect "$image" >/dev/null 2>&1 && return 0
    log "building base image $image ($suite) with debootstrap (about a minute)"
    root=$(mktemp -d "$STATE/rootfs.XXXXXX")
    debootstrap --variant=minbase \
        --include=python3,python3-apt,systemd,systemd-sysv,iproute2,ca-certificates,sudo \
        "$suite" "$root" >"$STATE/debootstrap-$suite.log" 2>&1 \
        || { log "debootstrap failed; see $STATE/debootstrap-$suite.log"; rm -rf "$root"; exit 1; }
    echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/qubemail-unsafe-io"
    if [ -n "$sources" ]; then
        rm -f "$root/etc/apt/sources.list"
        printf '%s\n' "$sources" >"$root/etc/apt/sources.list.d/debian.sources"
    fi
    tar -C "$root" -c . | docker import -c 'CMD ["/sbin/init"]' - "$image" >/dev/null
    rm -rf "$root"
}

build_image "$IMAGE12" bookworm
build_image "$IMAGE13" trixie "Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"

QUBEMAIL_VENV=$VENV bash "$here/scripts/controller-setup.sh" "$here/requirements.txt"
log "ready: docker $(docker version -f '{{.Server.Version}}'), images $IMAGE12 $IMAGE13, venv $VENV"
