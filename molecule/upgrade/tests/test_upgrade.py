"""Debian 12 -> 13 in place, as the README's upgrade procedure says, on an
appliance that was used first. The session fixture `upgraded` does it once,
in order: use the appliance on Debian 12 and record what a user would see
(`before`), switch apt to trixie and run `apt full-upgrade` as an admin
would (keeping the configuration files), send mail while Dovecot still has
its Debian 12 configuration, re-run the playbook, and record the same
things again (`after`) before anything else logs in. Each test compares one
part, so any of them passes alone."""

import pathlib
import sys
import uuid

import pytest
from conftest import (APPLIANCE, CLIENT_IP, DOMAIN, EXTERNAL, PASSWORDS, SCENARIO, converge, grants, run_site,
                      sink_subjects, subscribers, versions, wait_for)
from probe import rcpt_codes, recap_changed, subjects

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "clients"))
from webmail import WebMail, browser  # noqa: E402

testinfra_hosts = [f"docker://{APPLIANCE}"]

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


def test_the_host_is_on_debian_13_with_dovecot_2_4(upgraded):
    assert upgraded["before"]["versions"]["debian"].startswith("12")
    assert upgraded["after"]["versions"]["debian"].startswith("13")
    assert upgraded["after"]["versions"]["dovecot-core"].startswith("1:2.4"), upgraded["after"]["versions"]


def test_run_half_way_the_playbook_changes_nothing_and_says_what_to_run(upgraded):
    halted = upgraded["halted"]
    out = halted.stdout + halted.stderr
    assert halted.returncode != 0, out[-3000:]
    assert "apt would upgrade Dovecot 2.3 to 2.4" in out and "nothing was changed" in out, out[-3000:]
    steps = ["1. systemctl mask --now dovecot.service", "2. apt full-upgrade", "3. ansible-playbook"]
    assert all(step in out for step in steps), out[-3000:]
    assert sorted(steps, key=out.index) == steps, out[-3000:]
    assert recap_changed(halted.stdout) == 0, out[-3000:]


def test_the_playbook_says_what_happened(upgraded):
    out = upgraded["run"].stdout
    assert "qubemail: Dovecot 2.3 -> 2.4" in out, out[-3000:]
    assert "qubemail: Dovecot" not in upgraded["again"].stdout  # said once


def test_a_second_run_changes_nothing(upgraded):
    assert recap_changed(upgraded["again"].stdout) == 0, upgraded["again"].stdout[-3000:]


def test_pop3_uidls_are_unchanged(upgraded):
    before, after = upgraded["before"]["pop3"], upgraded["after"]["pop3"]
    assert before["uidl"], before
    # The mail sent during the upgrade comes last; what was there keeps its ids.
    assert after["uidl"][:len(before["uidl"])] == before["uidl"]
    assert after["messages"][:len(before["messages"])] == before["messages"]


def mail_log(appliance):
    """The queue and Postfix's recent log, for a failure message."""
    return appliance.run("postqueue -p; journalctl -q --no-pager -n 60 -t postfix/local -t postfix/qmgr"
                         " -t postfix/smtpd -t postfix/cleanup -t postfix/master").stdout


def test_mail_sent_during_the_upgrade_arrives_once(upgraded, probe, appliance):
    subject = upgraded["subject"]
    assert rcpt_codes(upgraded["during"]["inbox"]) == [250]
    assert wait_for(lambda: inbox(probe, "alice", subject["during"]), timeout=60), mail_log(appliance)
    assert inbox(probe, "alice", subject["during"]) == 1
    assert rcpt_codes(upgraded["during"]["post"]) == [250]
    assert wait_for(lambda: any(subject["during_post"] in s for s in subjects(
        probe.imap("bob", mailbox=ARCHIVE)["messages"])), timeout=120)
    archived = subjects(probe.imap("bob", mailbox=ARCHIVE)["messages"])
    assert sum(subject["during_post"] in s for s in archived) == 1
    assert inbox(probe, "bob", subject["during_post"]) == 1


def test_the_self_subscribed_member_is_still_subscribed(upgraded):
    assert f"carol@{DOMAIN}" in upgraded["before"]["open"]
    assert upgraded["after"]["open"] == upgraded["before"]["open"]


def test_archived_posts_keep_their_seen_flags(upgraded):
    before, after = upgraded["before"]["archive"], upgraded["after"]["archive"]
    first, second = upgraded["subject"]["posts"]
    flags = dict(zip(subjects(before["messages"]), before["flags"]))
    assert any(first in s and "\\Seen" in f for s, f in flags.items()), flags
    assert any(second in s and "\\Seen" not in f for s, f in flags.items()), flags
    kept = dict(zip(subjects(after["messages"]), after["flags"]))
    assert {s: f for s, f in kept.items() if s in flags} == flags


def test_webmail_keeps_its_database_and_sent_mail(upgraded):
    before, after = upgraded["before"], upgraded["after"]
    assert EXTERNAL in before["collected"]
    assert after["collected"] == before["collected"]
    assert any(upgraded["subject"]["webmail"] in s for s in before["sent"])
    assert after["sent"] == before["sent"]


def test_webmail_works_after_the_upgrade(upgraded, probe):
    with browser() as driver:
        session = WebMail(driver, f"https://{probe.server}/")
        assert session.login("alice", PASSWORDS["alice"]), session.login_error()
        assert "INBOX" in session.folders()


def test_a_grant_keeps_its_expiry_and_still_relays(upgraded, client):
    before, after = upgraded["before"]["grants"], upgraded["after"]["grants"]
    assert CLIENT_IP in before, before
    assert after[CLIENT_IP]["expires"] == before[CLIENT_IP]["expires"]
    assert after[CLIENT_IP]["user"] == before[CLIENT_IP]["user"]
    reply = upgraded["after"]["relayed"]
    assert rcpt_codes(reply) == [250], reply
    assert wait_for(lambda: upgraded["subject"]["relayed"] in sink_subjects(client), timeout=30)
