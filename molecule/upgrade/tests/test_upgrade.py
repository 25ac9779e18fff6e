"""Debian 12 -> 13 in place, as the README's upgrade procedure says, on an
appliance that was used first. The session fixture `upgraded` does it once,
in order: use the appliance on Debian 12 and record what a user would see
(`before`), switch apt to trixie and run `apt full-upgrade` as an admin
would (keeping the configuration files), send mail while Dovecot still has
its Debian 12 configuration, re-run the playbook, and record the same
things again (`after`) before anything else logs in. Each test compares one
part, so any of them passes alone."""

from conftest import (APPLIANCE, ARCHIVE, CLIENT_IP, DOMAIN, EXTERNAL, PASSWORDS, WebMail, browser, inbox,
                      sink_subjects, wait_for)
from probe import rcpt_codes, recap_changed, subjects

testinfra_hosts = [f"docker://{APPLIANCE}"]


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
    # On failure: what the playbook did about the old Postfix master, and Postfix's log.
    lines = upgraded["run"].stdout.splitlines()
    master = [" ".join(lines[i:i + 3]) for i, line in enumerate(lines) if "Postfix master" in line or
              "deferred under the old Postfix" in line]
    assert wait_for(lambda: inbox(probe, "alice", subject["during"]), timeout=60), (master, mail_log(appliance))
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
