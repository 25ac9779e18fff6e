"""Fixtures of the upgrade scenario: the appliance and the client (the
shared ones are tests/integration/fixtures.py's)."""

import pathlib
import sys
import uuid

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "integration"))

from fixtures import (Testbed, appliance, client, grants, journal, platforms, probe, since,  # noqa: E402,F401
                      sink_subjects, subscribers)
from probe import rcpt_codes, run_site, subjects, wait_for  # noqa: E402,F401

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "clients"))
from webmail import WebMail, browser  # noqa: E402

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
(APPLIANCE, APPLIANCE_IP), (CLIENT, CLIENT_IP) = (platforms("upgrade")[g] for g in ("qubemail", "clients"))
DOMAIN = "qube.test"
HOSTNAME = f"mail.{DOMAIN}"
PEBBLE_ROOT = "/root/pebble-root.pem"
PASSWORDS = {"alice": "alice-test-pw", "bob": "bob-test-pw", "carol": "carol-test-pw"}
EXTERNAL = "someone@external.test"  # routed by the smart relay to the client's sink


@pytest.fixture(scope="session")
def testbed():
    return Testbed(appliance=APPLIANCE, client=CLIENT, appliance_ip=APPLIANCE_IP, passwords=PASSWORDS)


def converge(args=()):
    """playbooks/site.yml on the appliance with the scenario's inventory."""
    run, seconds = run_site(APPLIANCE, {}, SCENARIO / "inventory" / "group_vars", args)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return run, seconds


def versions(appliance):
    """The Debian release and the installed versions of what the roles configure."""
    query = appliance.check_output("dpkg-query -W -f '${Package} ${Version}\\n' postfix dovecot-core mlmmj roundcube-core")
    return {"debian": appliance.file("/etc/debian_version").content_string.strip(),
            **dict(line.split(" ", 1) for line in query.splitlines())}


ARCHIVE = "Mailing Lists/team"
ROUNDCUBE_DB = "/var/lib/dbconfig-common/sqlite3/roundcube/roundcube"
APT = ("DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Options::=--force-confdef"
       " -o Dpkg::Options::=--force-confold")


def tag(label):
    return f"{label} {uuid.uuid4().hex[:8]}"


def inbox(probe, user, subject):
    """How many of `user`'s INBOX messages have `subject`."""
    return sum(subject in s for s in subjects(probe.imap(user)["messages"]))


def collected(appliance, user):
    """The addresses WebMail collected from `user`'s sent mail (Roundcube's own table)."""
    return set(appliance.check_output(
        "python3 -c 'import sqlite3, sys; db = sqlite3.connect(sys.argv[1]);"
        " print(*(r[0] for r in db.execute(\"SELECT c.email FROM collected_addresses c JOIN users u"
        " ON u.user_id = c.user_id WHERE u.username = ?\", (sys.argv[2],))))' "
        f"{ROUNDCUBE_DB} {user}").split())


def sessions(appliance, probe):
    """What users see: alice's POP3 mail (a POP3 login: a grant), the open
    list's members, bob's archive with his flags, WebMail's own data."""
    return {
        "versions": versions(appliance),
        "pop3": probe.pop3("alice"),
        "open": subscribers(appliance, "open"),
        "archive": probe.imap("bob", mailbox=ARCHIVE),
        "collected": collected(appliance, "alice"),
        "sent": subjects(probe.imap("alice", mailbox="Sent")["messages"]),
        # The certificate from the ACME CA (tests/test_acme.py).
        "certificate": appliance.check_output("openssl x509 -in /etc/qubemail/tls/cert.pem -noout -serial -issuer"),
    }


@pytest.fixture(scope="session")
def upgraded(appliance, probe):
    if not versions(appliance)["debian"].startswith("12"):
        pytest.fail("the appliance is not on Debian 12 (already upgraded?): molecule destroy, then converge")
    subject = {"inbox": [tag("kept") for _ in range(3)], "posts": [tag("archived") for _ in range(2)],
               "webmail": tag("from WebMail"), "during": tag("during the upgrade"),
               "during_post": tag("posted during the upgrade"), "relayed": tag("relayed after the upgrade")}
    # Used on Debian 12: mail in alice's Maildir, read over POP3 (UIDLs).
    for s in subject["inbox"]:
        assert rcpt_codes(probe.send(f"alice@{DOMAIN}", subject=s)) == [250]
    assert wait_for(lambda: all(inbox(probe, "alice", s) for s in subject["inbox"]), timeout=60)
    # carol subscribes herself to the open list (from her mail program: submission).
    probe.send(f"open-join@{DOMAIN}", subject="subscribe", login="carol")
    assert wait_for(lambda: f"carol@{DOMAIN}" in subscribers(appliance, "open"), timeout=60)
    # Two posts archived; bob reads the first (\Seen is his, per user).
    for s in subject["posts"]:
        assert rcpt_codes(probe.send(f"team@{DOMAIN}", subject=s, login="alice")) == [250]
    assert wait_for(lambda: all(any(p in m for m in subjects(probe.imap("bob", mailbox=ARCHIVE)["messages"]))
                                for p in subject["posts"]), timeout=60)
    probe.imap("bob", mailbox=ARCHIVE, read=subject["posts"][0])
    # alice writes from WebMail: the message is in her Sent, the recipient collected.
    with browser() as driver:
        session = WebMail(driver, f"https://{probe.server}/")
        assert session.login("alice", PASSWORDS["alice"]), session.login_error()
        assert "sent" in session.send(EXTERNAL, subject["webmail"], "Before the upgrade.").lower()
    before = sessions(appliance, probe)
    # The grant of alice's POP3 login just now is live across the upgrade.
    before["grants"] = grants(appliance)

    # The upgrade, as README.md says: apt sources to trixie, full-upgrade.
    appliance.check_output("sed -i 's/bookworm/trixie/g' /etc/apt/sources.list $(ls /etc/apt/sources.list.d/*.list"
                           " /etc/apt/sources.list.d/*.sources 2>/dev/null)")
    appliance.check_output(f"{APT} update")
    # Run too early (sources switched, packages not upgraded), the playbook stops and says what to run.
    halted, _ = run_site(APPLIANCE, {}, SCENARIO / "inventory" / "group_vars")
    # Then its steps, as it says them.
    appliance.check_output("systemctl mask --now dovecot.service")
    appliance.check_output(f"{APT} full-upgrade")
    during = {"versions": versions(appliance)}
    # Mail that arrives before the playbook has run again is queued or
    # delivered, never lost: a user's, and a post the archive must take
    # (on port 25 as alice, whose POP3 login unlocked the client: Dovecot,
    # which checks submission's logins, is down until the playbook runs).
    during["inbox"] = probe.send(f"alice@{DOMAIN}", subject=subject["during"])
    during["post"] = probe.send(f"team@{DOMAIN}", mail_from=f"alice@{DOMAIN}", subject=subject["during_post"])
    run, seconds = converge()
    # The grant as it is now, and relay on it, before anyone logs in again.
    after = {"grants": grants(appliance),
             "relayed": probe.send(EXTERNAL, mail_from=f"alice@{DOMAIN}", subject=subject["relayed"])}
    after.update(sessions(appliance, probe))
    again, again_seconds = converge()
    return {"subject": subject, "before": before, "halted": halted, "during": during, "after": after, "run": run,
            "seconds": seconds, "again": again, "again_seconds": again_seconds}


@pytest.fixture(scope="session")
def pebble_root(client):
    """pebble's root (made when it started), where the client's checks read it."""
    client.check_output("python3 -c 'import ssl, sys, urllib.request; print(urllib.request.urlopen("
                        "sys.argv[1], context=ssl.create_default_context(cafile=sys.argv[2])).read().decode())'"
                        f" https://{CLIENT_IP}:15000/roots/0 /etc/pebble/ca.pem > {PEBBLE_ROOT}")
    return PEBBLE_ROOT
