#!/usr/bin/env bash
# `make demo`: one appliance container on this machine, converged by the site
# playbook with inventory/demo, mail ports published on 127.0.0.1.
#   demo.sh up [ansible-playbook args...]   create or re-converge (idempotent)
#   demo.sh down                             remove the container
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
NAME=qubemail-demo
IMAGE=${QUBEMAIL_BASE_IMAGE:-qubemail/debian12-systemd:2}
# host port -> container port
PORTS=(2525:25 1110:110 1995:995 1143:143 1993:993)

down() {
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    echo "demo appliance removed"
}

up() {
    if [ -z "$(docker ps -q -f name="^${NAME}$")" ]; then
        docker rm -f "$NAME" >/dev/null 2>&1 || true
        publish=()
        for p in "${PORTS[@]}"; do publish+=(-p "127.0.0.1:$p"); done
        docker run -d --name "$NAME" --hostname mail.demo.test \
            --cap-add SYS_ADMIN --cap-add NET_ADMIN \
            --tmpfs /run --tmpfs /run/lock \
            --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
            "${publish[@]}" "$IMAGE" /sbin/init >/dev/null
        for _ in $(seq 1 30); do
            state=$(docker exec "$NAME" systemctl is-system-running 2>/dev/null || true)
            case "$state" in running|degraded) break ;; esac
            sleep 1
        done
    fi
    cd "$here"
    ansible-playbook -i inventory/demo playbooks/site.yml "$@"
    cat <<'HOWTO'

qubemail demo appliance is up (container qubemail-demo; `make demo-down` removes it).
  SMTP 127.0.0.1:2525   POP3 127.0.0.1:1110 (STLS), POP3S :1995   IMAP 127.0.0.1:1143 (STARTTLS), IMAPS :1993
  Users: alice / alice-demo-pw  (alias sales@demo.test)     bob / bob-demo-pw     domain demo.test
  List: team@demo.test (alice, bob), archive in IMAP folder "Mailing Lists/team"
  Self-signed certificate: tell your client to accept it (curl: -k).

POP-before-SMTP in two lines: check mail first, then relay works from your address for 15 minutes.
  curl -k --ssl-reqd pop3://127.0.0.1:1110/ -u alice:alice-demo-pw
  printf 'Subject: hi\n\nhello\n' | curl -s smtp://127.0.0.1:2525 --mail-from alice@demo.test --mail-rcpt friend@elsewhere.test -T - && echo relay accepted
HOWTO
}

case "${1:-up}" in
    up) shift || true; up "$@" ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
