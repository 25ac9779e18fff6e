"""POP-before-SMTP with identity: a grant knows whose login made it, an
address keeps every user who unlocked it (NAT), and with bind_sender the
policy service relays only for senders those users own."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from test_pop_before_smtp import (DAEMON, T0, TOKEN, Clock, config_values, logbuf, make_config, pbs,
                                  policy_request, store)  # noqa: F401 (logbuf: a fixture)

SENDERS = ("# qubemail: who owns which sender\n"
           "alice@example.org\talice\n"
           "bob@example.org\tbob\n"
           "office@example.org\tbob,carol\n")
NAT = "198.51.100.9"


def senders_file(tmp_path, text=SENDERS):
    path = tmp_path / "senders"
    path.write_text(text)
    return path


def daemon(tmp_path, clock, **overrides):
    values = {"bind_sender": "yes", "senders_file": str(senders_file(tmp_path)), **overrides}
    return pbs.Daemon(make_config(tmp_path, **values), TOKEN, clock)


def ask(d, sender, context="relay", ip=NAT, instance="1"):
    req = policy_request(ip, instance=instance, sender=sender)
    if context is not None:
        req = req[:-1] + f"policy_context={context}\n\n".encode()
    return d.policy_decide(req, d.clock())


# ------------------------------------------------------------ senders file ---

def test_the_senders_file_is_read_as_postfix_reads_sender_logins(tmp_path):
    senders = pbs.read_senders(str(senders_file(tmp_path, SENDERS + "Dave@Example.ORG   dave\nalice.l@example.org alice\n")))
    assert senders["office@example.org"] == ("bob", "carol")
    assert pbs.sender_owners(senders, "DAVE@example.org") == ("dave",)
    assert pbs.sender_owners(senders, "alice+lists@example.org") == ("alice",)  # its +extension dropped
    assert pbs.sender_owners(senders, "alice@example.net") == ()
    assert pbs.sender_owners(senders, "mallory+alice@example.org") == ()
    assert senders["alice.l@example.org"] is senders["alice@example.org"]  # equal owners: one tuple


@pytest.mark.parametrize("line", ["alice@example.org", "alice alice", "a@b c d", "x@y ,"])
def test_a_bad_senders_line_is_an_error_naming_it(tmp_path, line):
    path = senders_file(tmp_path, SENDERS + line + "\n")
    with pytest.raises(pbs.ConfigError, match=r"line 5: expected 'ADDRESS USER\[,USER...\]'"):
        pbs.read_senders(str(path))


def test_the_senders_file_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(pbs, "MAX_SENDERS_FILE", 64)
    with pytest.raises(pbs.ConfigError, match="larger than 64 bytes"):
        pbs.read_senders(str(senders_file(tmp_path)))
    monkeypatch.setattr(pbs, "MAX_SENDERS_FILE", 1 << 20)
    monkeypatch.setattr(pbs, "MAX_SENDERS", 2)
    with pytest.raises(pbs.ConfigError, match="more than 2 addresses"):
        pbs.read_senders(str(senders_file(tmp_path)))


def test_bind_sender_needs_a_senders_file(tmp_path):
    with pytest.raises(pbs.ConfigError, match="bind_sender = yes needs a senders_file"):
        make_config(tmp_path, bind_sender="yes", senders_file="")
    with pytest.raises(pbs.ConfigError, match="bind_sender must be yes or no"):
        make_config(tmp_path, bind_sender="true")


# ------------------------------------------------------ several users an IP ---

def test_each_user_behind_one_address_keeps_their_own_expiry(tmp_path):
    clock = Clock()
    s = store(tmp_path, clock)
    s.grant(NAT, "alice", "dovecot")
    clock.t += 600
    s.grant(NAT, "bob", "dovecot")  # does not extend alice's grant
    g = s.grants[NAT]
    assert sorted(s.users(NAT, g, clock.t)) == ["alice", "bob"]
    clock.t += 301  # alice's 900 s are over, bob's are not
    assert list(s.users(NAT, g, clock.t)) == ["bob"]
    clock.t = T0 + 600
    s.grant(NAT, "alice", "dovecot")  # her new login: her grant again, the newest
    assert s.grants[NAT][pbs.USER] == "alice" and list(s.others[NAT]) == ["bob"]


def test_an_address_keeps_at_most_max_users(tmp_path, monkeypatch):
    monkeypatch.setattr(pbs, "MAX_USERS_PER_IP", 3)
    clock = Clock()
    s = store(tmp_path, clock)
    for i, user in enumerate(["u1", "u2", "u3", "u4"]):
        clock.t = T0 + i
        s.grant(NAT, user, "dovecot")
    assert sorted(s.users(NAT, s.grants[NAT], clock.t)) == ["u2", "u3", "u4"]  # the first to expire made room


def test_a_restart_brings_every_user_back_with_their_expiry(tmp_path):
    clock = Clock()
    s = store(tmp_path, clock)
    s.grant(NAT, "alice", "dovecot")
    clock.t += 100
    s.grant(NAT, "bob", "dovecot")
    s.grant("192.0.2.1", "carol", "dovecot")
    before = sorted(s.valid())
    s.journal.close()
    again = store(tmp_path, clock)  # replays, then compacts
    assert sorted(again.valid()) == before
    again.journal.close()
    assert sorted(store(tmp_path, clock).valid()) == before  # the compacted journal too


def test_a_journal_of_one_user_an_address_replays_as_before(tmp_path):
    """Journals written before grants had identity: one line a login, the
    newest wins for its user; another user's older line stays live."""
    journal = tmp_path / "grants.journal"
    journal.write_text(
        f'{{"op":"grant","ip":"{NAT}","user":"alice","login":{T0},"expires":{T0 + 900}}}\n'
        f'{{"op":"grant","ip":"{NAT}","user":"bob","login":{T0 + 10},"expires":{T0 + 910}}}\n'
        f'{{"op":"grant","ip":"{NAT}","user":"alice","login":{T0 + 20},"expires":{T0 + 920}}}\n')
    s = store(tmp_path, Clock(T0 + 30))
    assert sorted((g[pbs.USER], g[pbs.EXPIRES]) for _, g in s.valid()) == [("alice", T0 + 920), ("bob", T0 + 910)]


def test_revoke_and_expiry_take_every_user_of_the_address(tmp_path):
    clock = Clock()
    s = store(tmp_path, clock)
    s.grant(NAT, "alice", "dovecot")
    s.grant(NAT, "bob", "dovecot")
    assert s.revoke(NAT)
    assert s.valid() == [] and s.others == {}
    s.grant(NAT, "alice", "dovecot")
    s.grant(NAT, "bob", "dovecot")
    clock.t += 901
    assert s.sweep() == 1 and s.others == {}


# -------------------------------------------------------- sender binding ---

def test_relay_only_for_a_sender_the_users_own(tmp_path):
    clock = Clock()
    d = daemon(tmp_path, clock)
    d.store.grant(NAT, "alice", "dovecot")
    assert ask(d, "alice@example.org") == pbs.OK
    assert ask(d, "Alice+news@Example.org") == pbs.OK
    assert ask(d, "bob@example.org") == pbs.NOT_YOURS
    assert ask(d, "office@example.org") == pbs.NOT_YOURS
    assert ask(d, "ceo@bigbank.example") == pbs.NOT_YOURS
    assert ask(d, "") == pbs.NOT_YOURS  # a null sender is nobody's
    assert ask(d, "bob@example.org", context=None) == pbs.NOT_YOURS  # a request that does not say: relay
    assert ask(d, "bob@example.org", ip="192.0.2.200") == pbs.DUNNO  # not granted: Postfix's own refusal
    assert pbs.NOT_YOURS.startswith(b"action=553 5.7.1 ")


def test_the_sender_stage_leaves_a_foreign_sender_to_postfix(tmp_path):
    d = daemon(tmp_path, Clock())
    d.store.grant(NAT, "alice", "dovecot")
    assert ask(d, "alice@example.org", context="sender") == pbs.OK  # skips the our-domains check
    assert ask(d, "bob@example.org", context="sender") == pbs.DUNNO  # that check refuses it
    assert ask(d, "friend@example.net", context="sender") == pbs.DUNNO  # inbound from the NAT: let through


def test_users_behind_one_nat_each_send_as_themselves(tmp_path):
    clock = Clock()
    d = daemon(tmp_path, clock)
    d.store.grant(NAT, "alice", "dovecot")
    clock.t += 600
    d.store.grant(NAT, "carol", "dovecot")
    assert [ask(d, s) for s in ("alice@example.org", "office@example.org", "bob@example.org")] == \
        [pbs.OK, pbs.OK, pbs.NOT_YOURS]
    clock.t += 301  # alice's grant is over; carol's is not
    assert ask(d, "alice@example.org") == pbs.NOT_YOURS
    assert ask(d, "office@example.org") == pbs.OK


def test_without_binding_any_sender_is_relayed(tmp_path):
    d = pbs.Daemon(make_config(tmp_path), TOKEN, Clock())  # bind_sender = no
    d.store.grant(NAT, "alice", "dovecot")
    assert ask(d, "ceo@bigbank.example") == pbs.OK


def test_a_refusal_is_logged_once_a_session_with_the_users(tmp_path, logbuf):
    d = daemon(tmp_path, Clock())
    d.store.grant(NAT, "alice", "dovecot")
    for _ in range(3):
        assert ask(d, "bob@example.org", instance="7") == pbs.NOT_YOURS
    lines = [line for line in logbuf.getvalue().splitlines() if "relay-refused" in line]
    assert len(lines) == 1, lines
    assert "reason=sender-not-owned" in lines[0] and "user=alice" in lines[0] and "sender=bob@example.org" in lines[0]


def test_sighup_reads_the_senders_again_and_keeps_them_if_broken(tmp_path, logbuf):
    d = daemon(tmp_path, Clock())
    d.store.grant(NAT, "alice", "dovecot")
    assert ask(d, "sales@example.org") == pbs.NOT_YOURS
    senders_file(tmp_path, SENDERS + "sales@example.org alice\n")
    d.reload()
    assert ask(d, "sales@example.org") == pbs.OK
    senders_file(tmp_path, "garbage\n")
    d.reload()
    assert ask(d, "sales@example.org") == pbs.OK
    assert "senders=kept-old" in logbuf.getvalue()


def test_the_policy_socket_answers_with_the_binding(tmp_path):
    async def scenario():
        d = daemon(tmp_path, Clock())
        await d.start()
        try:
            d.store.grant(NAT, "alice", "dovecot")
            host, port = d.addresses["policy"].rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            for sender in ("alice@example.org", "bob@example.org"):
                writer.write(policy_request(NAT, sender=sender))
            replies = [await asyncio.wait_for(reader.readuntil(b"\n\n"), 5) for _ in range(2)]
            writer.close()
            return replies
        finally:
            await d.stop()

    assert asyncio.run(scenario()) == [pbs.OK, pbs.NOT_YOURS]


def test_systemd_is_told_when_the_daemon_is_ready(tmp_path):
    """Type=notify: READY=1 once SIGHUP is handled (a reload right after a
    start once ended a daemon still starting, before its handler was set)."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(path)
        sink.settimeout(5)
        pbs.sd_notify(b"READY=1", {"NOTIFY_SOCKET": path})
        assert sink.recv(64) == b"READY=1"
    pbs.sd_notify(b"READY=1", {})  # not under systemd: nothing, no error


def test_the_serving_daemon_says_ready_then_takes_sighup(tmp_path):
    (tmp_path / "token").write_bytes(TOKEN + b"\n")
    senders = senders_file(tmp_path)
    conf = tmp_path / "pbs.conf"
    values = dict(config_values(tmp_path), bind_sender="yes", senders_file=str(senders))
    conf.write_text("[pop-before-smtp]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    notify = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(notify)
        sink.settimeout(10)
        proc = subprocess.Popen([sys.executable, str(DAEMON), "serve", "--config", str(conf)],
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "NOTIFY_SOCKET": notify})
        try:
            assert sink.recv(64) == b"READY=1"
            senders.write_text(SENDERS + "sales@example.org alice\n")
            proc.send_signal(signal.SIGHUP)  # what the role's reload handler sends
            deadline = time.time() + 10
            while pbs.admin_call(values["admin_socket"], {"cmd": "stats"})["senders"] != 4:
                assert proc.poll() is None and time.time() < deadline
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=10)
        finally:
            proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0
    assert "reload senders=4" in err
