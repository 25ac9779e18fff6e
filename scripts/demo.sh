#!/usr/bin/env bash
# `make demo`: one appliance container on this machine, converged by the site
# playbook with inventory/demo, mail ports published on 127.0.0.1.
#   demo.sh up [ansible-playbook args...]   create or re-converge (idempotent)
#   demo.sh down                             remove the container
# DEMO_DEBIAN=12 runs it on Debian 12 instead of 13 (`make demo-down` first
# to switch: an existing container is re-converged as it is).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
NAME=qubemail-demo
# Debian 13 unless DEMO_DEBIAN=12 (both images: scripts/host-setup.sh).
case "${DEMO_DEBIAN:-13}" in
    12) IMAGE=qubemail/debian12-systemd:3 ;;
    13) IMAGE=qubemail/debian13-systemd:2 ;;
    *) echo "DEMO_DEBIAN must be 12 or 13" >&2; exit 2 ;;
esac
# host port -> container port
PORTS=(2525:25 1587:587 1465:465 1110:110 1995:995 1143:143 1993:993 8443:443)

down() {
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    echo "demo appliance removed"
}

# One thread in the team archive, so a newcomer finds it in WebMail at first
# login. Only into an empty archive: re-running `make demo` adds nothing.
seed_archive() {
    local count
    count=$(docker exec "$NAME" doveadm -f flow mailbox status -u alice messages "Mailing Lists/team" 2>/dev/null \
            | sed -n 's/.*messages=\([0-9]*\).*/\1/p')
    [ "${count:-}" = 0 ] || return 0
    docker exec -i "$NAME" /usr/sbin/sendmail -f alice@demo.test team@demo.test <<'MAIL'
From: Alice Demo <alice@demo.test>
To: team@demo.test
Subject: Welcome to the team list
Message-ID: <welcome.1@demo.test>

Hello team,

everything sent to team@demo.test reaches all of us, and a copy is kept in
WebMail under "Mailing Lists" -> team. Reply to this message to see a thread.

Alice
MAIL
    sleep 2
    docker exec -i "$NAME" /usr/sbin/sendmail -f bob@demo.test team@demo.test <<'MAIL'
From: Bob Demo <bob@demo.test>
To: team@demo.test
Subject: Re: Welcome to the team list
Message-ID: <welcome.2@demo.test>
In-Reply-To: <welcome.1@demo.test>
References: <welcome.1@demo.test>

Thanks Alice, found it.

Bob
MAIL
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
    seed_archive
    cat <<'HOWTO'

qubemail demo appliance is up (container qubemail-demo; `make demo-down` removes it).
  WebMail https://127.0.0.1:8443/   log in as alice or bob: "Mailing Lists" -> team holds a thread;
                                    carol is in no list and has no "Mailing Lists"
  SMTP 127.0.0.1:2525   POP3 127.0.0.1:1110 (STLS), POP3S :1995   IMAP 127.0.0.1:1143 (STARTTLS), IMAPS :1993
  Submission 127.0.0.1:1587 (STARTTLS), :1465 (TLS): log in with the POP3/IMAP name and password
  Users: alice / alice-demo-pw  (alias sales@demo.test)   bob / bob-demo-pw   carol / carol-demo-pw
  Domain demo.test. List: team@demo.test (alice, bob), archived in "Mailing Lists/team"
  Self-signed certificate: tell your browser or client to accept it (curl: -k).

POP-before-SMTP in two lines: check mail first, then relay works from your address for 15 minutes.
  curl -k --ssl-reqd pop3://127.0.0.1:1110/ -u alice:alice-demo-pw
  printf 'Subject: hi\n\nhello\n' | curl -s smtp://127.0.0.1:2525 --mail-from alice@demo.test --mail-rcpt friend@elsewhere.test -T - && echo relay accepted
  (only as alice's own addresses: as bob@demo.test it is refused, 553)

A mail program of today (Thunderbird, a phone): IMAP 127.0.0.1:1993 SSL/TLS, outgoing 127.0.0.1:1465 SSL/TLS
(or :1587 STARTTLS), normal password, user name alice. From the command line:
  printf 'Subject: hi\n\nhello\n' | curl -sk --ssl-reqd smtp://127.0.0.1:1587 -u alice:alice-demo-pw --mail-from alice@demo.test --mail-rcpt bob@demo.test -T - && echo sent
HOWTO
}

case "${1:-up}" in
    up) shift || true; up "$@" ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
