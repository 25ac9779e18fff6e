"""Mail in and out of the appliance with real SMTP, POP3 and IMAP sessions
from the client container."""

import shlex

from conftest import CLIENT, DENIED_IP, rcpt_codes, subjects, unique_subject, wait_for

testinfra_hosts = [f"docker://{CLIENT}"]


def _arrives(probe, user, subject, protocol="pop3"):
    def check():
        reply = probe.pop3(user) if protocol == "pop3" else probe.imap(user)
        return reply["login"] and subject in subjects(reply["messages"])
    return wait_for(check, timeout=30)


def test_delivery_to_a_local_user_then_pop3_and_imap(probe):
    subject = unique_subject("hello alice")
    reply = probe.send("alice@qube.test", subject=subject)
    assert rcpt_codes(reply) == [250]
    assert reply["data"][0] == 250
    assert _arrives(probe, "alice", subject, "pop3")
    assert _arrives(probe, "alice", subject, "imap")


def test_pop3_uidl_is_the_uid_and_uidvalidity_in_hex_on_every_release(probe, appliance):
    # A client keeps the UIDLs it has seen: another spelling (after the 12 ->
    # 13 upgrade, Dovecot 2.3 -> 2.4) would make it fetch every message again.
    # Dovecot 2.3 (%08Xu%08Xv) and 2.4 (%{uid | hex(8)}...) must both give
    # 8 lower-case hex digits of the IMAP UID, then of the UIDVALIDITY.
    subject = unique_subject("uidl")
    assert probe.send("carol@qube.test", subject=subject)["data"][0] == 250
    assert _arrives(probe, "carol", subject)
    reply = probe.pop3("carol")
    uidl = reply["uidls"][subjects(reply["messages"]).index(subject)]
    validity = appliance.check_output("doveadm -f flow mailbox status -u carol uidvalidity INBOX")
    fetched = appliance.check_output(f"doveadm -f flow fetch -u carol uid mailbox INBOX subject {shlex.quote(subject)}")
    uid = int(fetched.split("uid=")[1].split()[0])
    assert uidl == "%08x%08x" % (uid, int(validity.split("uidvalidity=")[1])), (uidl, uid, validity)


def test_second_domain_and_user_alias_deliver_to_the_user(probe):
    subject = unique_subject("to sales")
    assert probe.send("sales@qube-alias.test", subject=subject)["data"][0] == 250
    assert _arrives(probe, "alice", subject)


def test_site_alias_reaches_every_target(probe):
    subject = unique_subject("to the office")
    assert probe.send("office@qube.test", subject=subject)["data"][0] == 250
    assert _arrives(probe, "alice", subject)
    assert _arrives(probe, "bob", subject)


def test_catch_all_receives_unknown_recipients(probe):
    subject = unique_subject("to nobody")
    reply = probe.send("no-such-user@qube.test", subject=subject)
    assert rcpt_codes(reply) == [250]
    assert _arrives(probe, "carol", subject)


def test_wrong_password_is_refused(probe):
    reply = probe.pop3("alice", password="wrong")
    assert reply["login"] is False
    assert probe.imap("alice", password="wrong")["login"] is False


def test_plaintext_password_without_tls_is_refused(probe):
    reply = probe.pop3("alice", tls="none")
    assert reply["login"] is False
    assert probe.imap("alice", tls="none")["login"] is False


def test_pop3s_and_imaps_work(probe):
    assert probe.pop3("bob", tls="ssl")["login"] is True
    assert probe.imap("bob", tls="ssl")["login"] is True


def test_oversize_message_is_refused(probe):
    # mta_max_message_size_kb: 512 in the scenario.
    subject = unique_subject("too big")
    reply = probe.send("bob@qube.test", "--size", 600 * 1024, subject=subject)
    assert rcpt_codes(reply) == [250]
    assert reply["data"][0] == 552, reply
    fits = unique_subject("fits")
    small = probe.send("bob@qube.test", "--size", 400 * 1024, subject=fits)
    assert small["data"][0] == 250, small
    # Once the message sent after it is delivered, the refused one is not.
    assert _arrives(probe, "bob", fits)
    assert subject not in subjects(probe.pop3("bob")["messages"])


def test_denied_host_is_refused(probe):
    reply = probe("--source", DENIED_IP, "smtp", "--to", "alice@qube.test")
    assert rcpt_codes(reply) == [554], reply
    assert "Access denied" in reply["rcpt"][0][2]
    # The same message from the client's normal address is accepted.
    assert rcpt_codes(probe.send("alice@qube.test")) == [250]
