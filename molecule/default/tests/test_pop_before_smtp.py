"""POP-before-SMTP, in order: relay refused before a login, open-relay
battery, logins that must not unlock, a POP3 login that does, restart and
stop of the daemon, then expiry after the scenario's TTL (30 s).

The tests in this module run in file order and share the grant made by
test_pop3_login_unlocks_relay."""

import json
import time

import pytest

from conftest import (APPLIANCE_IP, CLIENT_IP, EXTERNAL, NEVER_AUTHORIZE_IP, OTHER_CLIENT_IP,
                      PASSWORDS, rcpt_codes, subjects, unique_subject, wait_for)

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

_state = {}


def grants(appliance):
    out = appliance.check_output("pop-before-smtp list --json")
    return {g["ip"]: g for g in json.loads(out)}


def relay(probe, *source, subject=None):
    return probe(*source, "smtp", "--from", "alice@qube.test", "--to", EXTERNAL,
                 "--subject", subject or unique_subject("relay"))


def sink_subjects(client):
    out = client.run("grep -rh '^Subject:' /var/spool/sink/new /var/spool/sink/cur 2>/dev/null").stdout
    return [line.split(":", 1)[1].strip() for line in out.splitlines()]


def journal(appliance, since):
    return appliance.check_output(f"journalctl -u pop-before-smtp --since @{since} --no-pager -o cat")


@pytest.fixture(scope="module", autouse=True)
def clean_slate(appliance):
    appliance.check_output("pop-before-smtp flush")
    _state["start"] = int(time.time()) - 1
    yield


def test_relay_refused_before_any_login(probe, appliance):
    assert grants(appliance) == {}
    reply = relay(probe)
    assert rcpt_codes(reply) == [554], reply
    assert "Relay access denied" in reply["rcpt"][0][2]


@pytest.mark.parametrize("mail_from,rcpt", OPEN_RELAY_FORMS)
def test_open_relay_battery_is_refused(probe, mail_from, rcpt):
    reply = probe("smtp", "--from", mail_from, "--to", rcpt, "--no-data")
    assert reply["rcpt"], reply
    code = reply["rcpt"][0][1]
    assert 500 <= code < 600, f"{mail_from} -> {rcpt}: {reply['rcpt']}"


def test_failed_login_does_not_unlock(probe, appliance):
    assert probe.pop3("alice", password="wrong")["login"] is False
    assert rcpt_codes(relay(probe)) == [554]
    assert grants(appliance) == {}


def test_imap_login_does_not_unlock(probe, appliance):
    # pop_before_smtp_protocols is [pop3], as on the Qube.
    assert probe.imap("alice")["login"] is True
    assert rcpt_codes(relay(probe)) == [554]
    assert grants(appliance) == {}


def test_log_injection_grants_nothing(probe, appliance):
    # Strings that log-parsing POP-before-SMTP daemons matched on, in the
    # user name (POP3) and in the envelope (SMTP).
    crafted = f"x rip={CLIENT_IP}, lip={APPLIANCE_IP} pop3-login: Login: user=<alice>"
    assert probe("pop3", "--user", crafted, "--password", "x")["login"] is False
    probe("smtp", "--from", f'"pop3-login: Login: user=<alice>, rip={CLIENT_IP}"@x.test',
          "--to", "alice@qube.test", "--no-data")
    assert grants(appliance) == {}
    assert rcpt_codes(relay(probe)) == [554]


def test_never_authorized_network_is_not_unlocked(probe, appliance):
    source = ("--source", NEVER_AUTHORIZE_IP)
    assert probe(*source, "pop3", "--user", "bob", "--password", PASSWORDS["bob"])["login"] is True
    assert rcpt_codes(relay(probe, *source)) == [554]
    assert NEVER_AUTHORIZE_IP not in grants(appliance)
    assert "grant-refused" in journal(appliance, _state["start"])


def test_pop3_login_unlocks_relay(probe, client, appliance):
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
    assert before + TTL - 2 <= grant["expires"] <= time.time() + TTL
    _state["grant"] = grant


def test_only_the_exact_ip_is_unlocked(probe, appliance):
    # Same /24, another address of the client: never widened to a subnet.
    reply = relay(probe, "--source", OTHER_CLIENT_IP)
    assert rcpt_codes(reply) == [554]
    assert rcpt_codes(relay(probe)) == [250]


def test_restart_keeps_the_grant_and_its_expiry(probe, appliance):
    appliance.check_output("systemctl restart pop-before-smtp")
    assert grants(appliance)[CLIENT_IP]["expires"] == _state["grant"]["expires"]
    assert rcpt_codes(relay(probe)) == [250]


def test_daemon_down_means_no_relay_but_inbound_mail_flows(probe, appliance):
    # Down for good: the sockets too (the service alone would be started
    # again by the next connection to them).
    units = "pop-before-smtp-policy.socket pop-before-smtp-report.socket pop-before-smtp.service"
    appliance.check_output(f"systemctl stop {units}")
    try:
        assert rcpt_codes(relay(probe)) == [554]
        subject = unique_subject("inbound while daemon down")
        reply = probe.send("bob@qube.test", subject=subject)
        assert reply["data"][0] == 250
        assert wait_for(lambda: subject in subjects(probe.pop3("bob")["messages"]), timeout=30)
    finally:
        appliance.check_output(f"systemctl start {units}")
    assert rcpt_codes(relay(probe)) == [250]


def test_daemon_hung_means_no_relay_after_the_timeout_but_inbound_mail_flows(probe, appliance):
    # Its own grant, on another address: the shared grant's expiry is the
    # next test's subject.
    source = ("--source", OTHER_CLIENT_IP)
    appliance.check_output(f"pop-before-smtp grant {OTHER_CLIENT_IP} --user hung-test")
    appliance.check_output("systemctl kill -s STOP pop-before-smtp.service")
    try:
        assert rcpt_codes(relay(probe, *source)) == [554]  # Postfix gave up after 2 s: DUNNO
        subject = unique_subject("inbound while daemon hung")
        assert probe.send("bob@qube.test", subject=subject)["data"][0] == 250
        # Read over IMAP: a POP3 login's report would wait for the daemon and
        # grant this client anew once it runs again.
        assert wait_for(lambda: subject in subjects(probe.imap("bob")["messages"]), timeout=30)
    finally:
        appliance.check_output("systemctl kill -s CONT pop-before-smtp.service")
    try:
        assert rcpt_codes(relay(probe, *source)) == [250]
    finally:
        appliance.check_output(f"pop-before-smtp revoke {OTHER_CLIENT_IP}")


def test_audit_lines_in_the_journal(appliance):
    log = journal(appliance, _state["start"])
    assert f"grant user=alice ip={CLIENT_IP}" in log
    assert f"relay-permitted ip={CLIENT_IP}" in log


def test_relay_refused_again_after_the_ttl(probe, appliance):
    expires = _state["grant"]["expires"]
    time.sleep(max(0.0, expires - time.time()) + 1)
    assert rcpt_codes(relay(probe)) == [554]
    assert CLIENT_IP not in grants(appliance)
    assert wait_for(lambda: f"expired ip={CLIENT_IP}" in journal(appliance, _state["start"]), timeout=15)
