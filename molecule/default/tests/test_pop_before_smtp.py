"""POP-before-SMTP: relay refused before a login, open-relay battery,
logins that must not unlock, a POP3 login that does, restart and stop of the
daemon, then expiry after the scenario's TTL (30 s).

Each test makes the state it needs with conftest's fixtures (no grant at
all, or a grant made by a real POP3 login), so any test passes alone and in
any order."""

import json
import time

import pytest

from conftest import (APPLIANCE_IP, CLIENT_IP, EXTERNAL, NEVER_AUTHORIZE_IP, OTHER_CLIENT_IP,
                      PASSWORDS, REFUSED, daemon_journal, grants, rcpt_codes, sink_subjects, subjects, unique_subject,
                      wait_for)

TTL = 30

# The 16 relay forms of nmap's smtp-open-relay script, with D = a local
# domain, IP = the appliance's address, and an external target.
D = "qube.test"
IP = f"[{APPLIANCE_IP}]"
T_USER, T_DOM = "relaytest", "external.test"
OPEN_RELAY_FORMS = [
    ("", f"{T_USER}@{T_DOM}"),
    (f"antispam@{IP}", f"{T_USER}@{T_DOM}"),
    (f"antispam@{D}", f"{T_USER}@{T_DOM}"),
    (f"antispam@{IP}", f'"{T_USER}@{T_DOM}"'),
    (f"antispam@{IP}", f'"{T_USER}%{T_DOM}"'),
    (f"antispam@{IP}", f"{T_USER}%{T_DOM}@{IP}"),
    (f"antispam@{IP}", f"{T_USER}%{T_DOM}@{D}"),
    (f"antispam@{IP}", f'"{T_USER}@{T_DOM}"@{IP}'),
    (f"antispam@{IP}", f'"{T_USER}@{T_DOM}"@{D}'),
    (f"antispam@{IP}", f"{T_USER}@{T_DOM}@{IP}"),
    (f"antispam@{IP}", f"{T_USER}@{T_DOM}@{D}"),
    (f"antispam@{IP}", f"@{IP}:{T_USER}@{T_DOM}"),
    (f"antispam@{IP}", f"@{D}:{T_USER}@{T_DOM}"),
    (f"antispam@{IP}", f"{T_DOM}!{T_USER}"),
    (f"antispam@{IP}", f"{T_DOM}!{T_USER}@{IP}"),
    (f"antispam@{IP}", f"{T_DOM}!{T_USER}@{D}"),
]


def relay(probe, *source, subject=None):
    return probe(*source, "smtp", "--from", "alice@qube.test", "--to", EXTERNAL,
                 "--subject", subject or unique_subject("relay"))


def reports(appliance):
    """How many login reports the daemon has handled since it started."""
    return json.loads(appliance.check_output("pop-before-smtp stats"))["reports"]


def handled(appliance, before):
    """Wait for the daemon to have handled a report more than `before` (Dovecot
    reports asynchronously): only then does "no grant" mean something."""
    assert wait_for(lambda: reports(appliance) > before, timeout=15), "the daemon got no report of the login"


def test_relay_refused_before_any_login(probe, appliance, no_grant):
    # As the travelling user herself: her address is ours, so it is refused
    # as a sender before relay is even considered.
    reply = relay(probe)
    assert rcpt_codes(reply) == REFUSED, reply
    assert "Sender address in our own domain" in reply["rcpt"][0][2]
    # With a sender of another domain, the relay rule refuses it.
    reply = probe("smtp", "--from", "traveller@client.test", "--to", EXTERNAL, "--no-data")
    assert rcpt_codes(reply) == [554], reply
    assert "Relay access denied" in reply["rcpt"][0][2]


def test_a_stranger_may_not_use_our_domains_as_sender(probe, no_grant):
    # Inbound mail to a user, not relay: refused only for its sender.
    for sender in ("bob@qube.test", "anyone@qube-alias.test", "x@mail.qube.test"):
        reply = probe.send("carol@qube.test", "--no-data", mail_from=sender)
        assert rcpt_codes(reply) == REFUSED, (sender, reply)
        assert "Sender address in our own domain" in reply["rcpt"][0][2]
    assert rcpt_codes(probe.send("carol@qube.test", "--no-data", mail_from="bob@elsewhere.test")) == [250]


def test_a_pop3_login_lets_its_client_use_our_domains_as_sender(probe, grant):
    subject = unique_subject("inbound from a granted user")
    reply = probe.send("carol@qube.test", mail_from="alice@qube.test", subject=subject)
    assert rcpt_codes(reply) == [250], reply
    assert wait_for(lambda: subject in subjects(probe.imap("carol")["messages"]), timeout=30)


@pytest.mark.parametrize("mail_from,rcpt", OPEN_RELAY_FORMS)
def test_open_relay_battery_is_refused(probe, mail_from, rcpt, no_grant):
    reply = probe("smtp", "--from", mail_from, "--to", rcpt, "--no-data")
    assert reply["rcpt"], reply
    code = reply["rcpt"][0][1]
    assert 500 <= code < 600, f"{mail_from} -> {rcpt}: {reply['rcpt']}"


def test_failed_login_does_not_unlock(probe, appliance, no_grant):
    before = reports(appliance)
    assert probe.pop3("alice", password="wrong")["login"] is False
    handled(appliance, before)
    assert rcpt_codes(relay(probe)) == REFUSED
    assert grants(appliance) == {}


def test_imap_login_does_not_unlock(probe, appliance, no_grant):
    # pop_before_smtp_protocols is [pop3], as on the Qube.
    before = reports(appliance)
    assert probe.imap("alice")["login"] is True
    handled(appliance, before)
    assert rcpt_codes(relay(probe)) == REFUSED
    assert grants(appliance) == {}


def test_log_injection_grants_nothing(probe, appliance, no_grant):
    # Strings that log-parsing POP-before-SMTP daemons matched on, in the
    # user name (POP3) and in the envelope (SMTP).
    crafted = f"x rip={CLIENT_IP}, lip={APPLIANCE_IP} pop3-login: Login: user=<alice>"
    before = reports(appliance)
    assert probe("pop3", "--user", crafted, "--password", "x")["login"] is False
    handled(appliance, before)
    probe("smtp", "--from", f'"pop3-login: Login: user=<alice>, rip={CLIENT_IP}"@x.test',
          "--to", "alice@qube.test", "--no-data")
    assert grants(appliance) == {}
    assert rcpt_codes(relay(probe)) == REFUSED


def test_never_authorized_network_is_not_unlocked(probe, appliance, no_grant, since):
    source = ("--source", NEVER_AUTHORIZE_IP)
    assert probe(*source, "pop3", "--user", "bob", "--password", PASSWORDS["bob"])["login"] is True
    # The daemon's answer to the report first, then nothing may be open.
    assert wait_for(lambda: f"grant-refused reason=never-authorize user=bob ip={NEVER_AUTHORIZE_IP}"
                    in daemon_journal(appliance, since), timeout=15), daemon_journal(appliance, since)
    assert rcpt_codes(relay(probe, *source)) == REFUSED
    assert NEVER_AUTHORIZE_IP not in grants(appliance)


def test_pop3_login_unlocks_relay(probe, client, appliance, no_grant):
    before = time.time()
    assert probe.pop3("alice")["login"] is True
    subject = unique_subject("relayed")
    reply = wait_for(lambda: (r := relay(probe, subject=subject)) and rcpt_codes(r) == [250] and r, timeout=5)
    assert reply, "relay was not unlocked by the POP3 login"
    assert reply["data"][0] == 250
    # It really left: the smart relay (the client's sink) got it.
    assert wait_for(lambda: subject in sink_subjects(client), timeout=10)
    grant = grants(appliance)[CLIENT_IP]
    assert grant["user"] == "alice"
    assert before_ttl(dict(grant, before=before))


def test_only_the_exact_ip_is_unlocked(probe, appliance, grant):
    # Same /24, another address of the client: never widened to a subnet.
    reply = relay(probe, "--source", OTHER_CLIENT_IP)
    assert rcpt_codes(reply) == REFUSED
    assert rcpt_codes(relay(probe)) == [250]


def test_restart_keeps_the_grant_and_its_expiry(probe, appliance, grant):
    appliance.check_output("systemctl restart pop-before-smtp")
    assert grants(appliance)[CLIENT_IP]["expires"] == grant["expires"]
    assert rcpt_codes(relay(probe)) == [250]


def test_daemon_down_means_no_relay_but_inbound_mail_flows(probe, appliance, grant):
    # Down for good: the sockets too (the service alone would be started
    # again by the next connection to them, rspamd's grant lookups included).
    assert rcpt_codes(relay(probe)) == [250]
    units = ("pop-before-smtp-policy.socket pop-before-smtp-report.socket pop-before-smtp-grants.socket "
             "pop-before-smtp.service")
    appliance.check_output(f"systemctl stop {units}")
    try:
        assert rcpt_codes(relay(probe)) == REFUSED
        subject = unique_subject("inbound while daemon down")
        reply = probe.send("bob@qube.test", subject=subject)
        assert reply["data"][0] == 250
        assert wait_for(lambda: subject in subjects(probe.pop3("bob")["messages"]), timeout=30)
    finally:
        appliance.check_output(f"systemctl start {units}")
    assert rcpt_codes(relay(probe)) == [250]


def test_daemon_hung_means_no_relay_after_the_timeout_but_inbound_mail_flows(probe, appliance, no_grant):
    # Its own grant, made by the admin on another address, for alice (the relayed sender).
    source = ("--source", OTHER_CLIENT_IP)
    appliance.check_output(f"pop-before-smtp grant {OTHER_CLIENT_IP} --user alice")
    assert rcpt_codes(relay(probe, *source)) == [250]
    appliance.check_output("systemctl kill -s STOP pop-before-smtp.service")
    try:
        assert rcpt_codes(relay(probe, *source)) == REFUSED  # Postfix gave up after 2 s: DUNNO
        subject = unique_subject("inbound while daemon hung")
        assert probe.send("bob@qube.test", subject=subject)["data"][0] == 250
        # Read over IMAP: a POP3 login's report would wait for the daemon and
        # grant this client anew once it runs again.
        assert wait_for(lambda: subject in subjects(probe.imap("bob")["messages"]), timeout=30)
    finally:
        appliance.check_output("systemctl kill -s CONT pop-before-smtp.service")
    assert rcpt_codes(relay(probe, *source)) == [250]


def test_audit_lines_in_the_journal(probe, appliance, since, grant):
    assert rcpt_codes(relay(probe)) == [250]
    log = wait_for(lambda: (j := daemon_journal(appliance, since)) and f"relay-permitted ip={CLIENT_IP}" in j and j)
    assert log, daemon_journal(appliance, since)
    assert f"grant user=alice ip={CLIENT_IP}" in log


def test_relay_refused_again_after_the_ttl(probe, appliance, since, grant):
    assert before_ttl(grant) and rcpt_codes(relay(probe)) == [250]
    time.sleep(max(0.0, grant["expires"] - time.time()) + 1)
    assert rcpt_codes(relay(probe)) == REFUSED
    assert CLIENT_IP not in grants(appliance)
    assert wait_for(lambda: f"expired ip={CLIENT_IP}" in daemon_journal(appliance, since), timeout=15)


def before_ttl(grant):
    """The grant was made for the scenario's TTL (30 s), not longer."""
    return grant["before"] + TTL - 2 <= grant["expires"] <= time.time() + TTL


# --- POP-before-SMTP with identity (pop_before_smtp_bind_sender, on) ---

NOT_YOURS = "Sender address not yours"
OUR_DOMAIN = "Sender address in our own domain"


def users_of(appliance, ip):
    """The users whose logins hold a live grant on `ip`."""
    return {g["user"] for g in json.loads(appliance.check_output("pop-before-smtp list --json")) if g["ip"] == ip}


def test_a_grant_relays_only_its_users_senders(probe, client, appliance, since, grant):
    subject = unique_subject("relayed as alice")
    assert rcpt_codes(probe.send(EXTERNAL, mail_from="alice@qube.test", subject=subject)) == [250]
    # bob's address and one bob may send as: ours, so refused as a sender;
    # a stranger's address: refused by the daemon at the relay stage.
    for sender, text in (("bob@qube.test", OUR_DOMAIN), ("office@qube.test", OUR_DOMAIN),
                         ("ceo@bigbank.example", NOT_YOURS), ("", NOT_YOURS)):
        reply = probe.send(EXTERNAL, "--no-data", mail_from=sender)
        assert rcpt_codes(reply) == [553], (sender, reply)
        assert text in reply["rcpt"][0][2], (sender, reply)
    assert wait_for(lambda: subject in sink_subjects(client), timeout=10)
    log = wait_for(lambda: (j := daemon_journal(appliance, since)) and "relay-refused" in j and j, timeout=10)
    assert log and f"relay-refused ip={CLIENT_IP} reason=sender-not-owned user=alice" in log, log


def test_a_granted_address_still_takes_mail_for_us_from_any_sender(probe, grant):
    # Someone else behind the same NAT writing to one of our users: inbound mail.
    subject = unique_subject("inbound from the granted NAT")
    reply = probe.send("carol@qube.test", mail_from="friend@elsewhere.test", subject=subject)
    assert rcpt_codes(reply) == [250], reply
    assert wait_for(lambda: subject in subjects(probe.imap("carol")["messages"]), timeout=30)


def test_two_users_behind_one_address_each_send_as_themselves(probe, client, appliance, grant):
    assert probe.pop3("bob")["login"] is True
    assert wait_for(lambda: users_of(appliance, CLIENT_IP) == {"alice", "bob"}, timeout=10), \
        users_of(appliance, CLIENT_IP)
    subjects_sent = []
    for sender in ("alice@qube.test", "bob@qube.test", "office@qube.test"):  # office: bob's send_as
        subjects_sent.append(unique_subject(f"relayed as {sender}"))
        reply = probe.send(EXTERNAL, mail_from=sender, subject=subjects_sent[-1])
        assert rcpt_codes(reply) == [250], (sender, reply)
    reply = probe.send(EXTERNAL, "--no-data", mail_from="carol@qube.test")
    assert rcpt_codes(reply) == [553] and OUR_DOMAIN in reply["rcpt"][0][2], reply
    assert wait_for(lambda: all(s in sink_subjects(client) for s in subjects_sent), timeout=15)


def test_a_pop3_login_unlocks_the_submission_port_without_a_login(probe, client, grant):
    subject = unique_subject("relayed on 587 after POP3")
    reply = probe("--port", 587, "smtp", "--starttls", "--from", "alice@qube.test", "--to", EXTERNAL,
                  "--subject", subject)
    assert rcpt_codes(reply) == [250] and reply["data"][0] == 250, reply
    reply = probe("--port", 587, "smtp", "--starttls", "--from", "ceo@bigbank.example", "--to", EXTERNAL,
                  "--no-data")
    assert rcpt_codes(reply) == [553] and NOT_YOURS in reply["rcpt"][0][2], reply
    assert wait_for(lambda: subject in sink_subjects(client), timeout=10)
