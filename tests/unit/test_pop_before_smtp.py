"""Unit tests for roles/pop_before_smtp/files/pop_before_smtp.py (stdlib daemon).

Network tests start the real asyncio servers on 127.0.0.1 port 0 inside
``asyncio.run``; the clock is injected so expiry is tested without sleeping.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, load_module

DAEMON = ROOT / "roles/pop_before_smtp/files/pop_before_smtp.py"
pbs = load_module("roles/pop_before_smtp/files/pop_before_smtp.py", register=True)

TOKEN = b"s3cret-token"
T0 = 1_700_000_000.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def logbuf():
    buf = io.StringIO()
    pbs.setup_logging(buf)
    yield buf
    pbs.setup_logging(io.StringIO())


def config_values(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """Every key the daemon requires (the role's template writes them all),
    with test values: its own listeners on free ports, files under tmp_path."""
    values = {"sockets": "bind", "policy_listen": "127.0.0.1:0", "report_listen": "127.0.0.1:0",
              "report_users": "", "admin_socket": str(tmp_path / "run" / "admin.sock"),
              "state_file": str(tmp_path / "state" / "grants.journal"), "token_file": str(tmp_path / "token"),
              "ttl": "900", "never_authorize": "", "protocols": "pop3", "sweep_interval": "30",
              "bind_sender": "no", "senders_file": "", "grants_listen": "127.0.0.1:0"}
    values.update(overrides)
    return values


def config_file(tmp_path: Path, **overrides: str) -> Path:
    """A complete config file, as the role writes one."""
    conf = tmp_path / "pbs.conf"
    values = config_values(tmp_path, **overrides)
    conf.write_text("[pop-before-smtp]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return conf


def make_config(tmp_path: Path, **overrides) -> pbs.Config:
    return pbs.load_config(None, config_values(tmp_path, **overrides), default_path=str(tmp_path / "absent.conf"))


def store(tmp_path: Path, clock: Clock, ttl: int = 900, never: str = "") -> pbs.GrantStore:
    s = pbs.GrantStore(ttl, pbs.parse_networks(never), pbs.Journal(str(tmp_path / "grants.journal")), clock)
    s.restore()
    return s


@contextlib.asynccontextmanager
async def running(tmp_path: Path, clock: Clock, **overrides):
    daemon = pbs.Daemon(make_config(tmp_path, **overrides), TOKEN, clock)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


def policy_request(ip: str, instance: str = "1A2B.5f3e1c2d.9a1b.0", recipient: str = "bob@example.net",
                   sender: str = "alice@example.org") -> bytes:
    attrs = [("request", "smtpd_access_policy"), ("protocol_state", "RCPT"), ("protocol_name", "ESMTP"),
             ("client_address", ip), ("client_name", "unknown"), ("helo_name", "laptop"),
             ("sender", sender), ("recipient", recipient), ("recipient_count", "0"),
             ("queue_id", ""), ("instance", instance), ("size", "0"), ("sasl_username", "")]
    return "".join(f"{k}={v}\n" for k, v in attrs).encode() + b"\n"


async def read_replies(reader: asyncio.StreamReader, n: int) -> list[bytes]:
    return [await asyncio.wait_for(reader.readuntil(b"\n\n"), 5) for _ in range(n)]


def report_body(**fields) -> bytes:
    doc = {"login": "alice", "account": "alice", "protocol": "pop3", "remote": "192.0.2.7", "success": True,
           "policy_reject": False, "tls": True}
    doc.update(fields)
    return json.dumps(doc, sort_keys=True).encode()


def http_post(body: bytes, token: bytes | None = TOKEN, command: str = "report", extra: str = "") -> bytes:
    head = f"POST /?command={command} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    if token is not None:
        head += f"X-API-Key: {token.decode()}\r\n"
    return (head + extra + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def read_http_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


async def http_exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    try:
        return await read_http_response(reader)
    finally:
        writer.close()


# ------------------------------------------------------------ pure logic ---

@pytest.mark.parametrize("text, expected", [
    ("192.0.2.7", "192.0.2.7"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("::FFFF:C000:0207", "192.0.2.7"),
    ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
    ("2001:db8::1", "2001:db8::1"),
    ("fe80::1%eth0", None),
    ("192.0.2.7/32", None),
    (" 192.0.2.7", None),
    ("192.0.2.07", None),
    ("192.0.2.256", None),
    ("mail.example.com", None),
    ("", None),
    (None, None),
    (3221225991, None),
])
def test_normalize_ip(text, expected):
    assert pbs.normalize_ip(text) == expected


def test_grant_lookup_expiry_at_exact_boundary(tmp_path):
    clock = Clock()
    s = store(tmp_path, clock)
    assert s.lookup("192.0.2.7") is None
    assert s.grant("192.0.2.7", "alice", "dovecot") == T0 + 900
    clock.t = T0 + 899.999
    assert s.lookup("192.0.2.7")[1] == "alice"
    clock.t = T0 + 900
    assert s.lookup("192.0.2.7") is None
    assert s.lookup("192.0.2.8") is None  # exact IP only, never a subnet


def test_new_login_refreshes_and_keeps_expiry_order(tmp_path):
    clock = Clock()
    s = store(tmp_path, clock)
    s.grant("192.0.2.7", "alice", "dovecot")
    clock.t = T0 + 100
    s.grant("192.0.2.8", "bob", "dovecot")
    clock.t = T0 + 800
    s.grant("192.0.2.7", "alice", "dovecot")
    clock.t = T0 + 1000
    assert s.lookup("192.0.2.7") is not None
    assert s.lookup("192.0.2.8") is None
    assert list(s.grants) == ["192.0.2.8", "192.0.2.7"]


def test_never_authorize_refuses_and_logs(tmp_path, logbuf):
    s = store(tmp_path, Clock(), never="10.0.0.0/8, 2001:db8::/32 192.0.2.99")
    assert s.grant("10.1.2.3", "mallory", "dovecot") is None
    assert s.grant("2001:db8::5", "mallory", "admin") is None
    assert s.grant("192.0.2.99", "mallory", "admin") is None
    assert s.grant("192.0.2.98", "alice", "admin") is not None
    assert s.lookup("10.1.2.3") is None and s.lookup("2001:db8::5") is None
    lines = logbuf.getvalue().splitlines()
    assert sum(line.startswith("grant-refused reason=never-authorize") for line in lines) == 3
    assert "grant-refused reason=never-authorize user=mallory ip=10.1.2.3 source=dovecot" in lines


def test_sweep_frees_expired_and_logs(tmp_path, logbuf):
    clock = Clock()
    s = store(tmp_path, clock)
    s.grant("192.0.2.1", "a", "dovecot")
    clock.t += 500
    s.grant("192.0.2.2", "b", "dovecot")
    clock.t = T0 + 901
    assert s.sweep() == 1
    assert list(s.grants) == ["192.0.2.2"]
    assert "expired ip=192.0.2.1 user=a" in logbuf.getvalue().splitlines()
    clock.t = T0 + 5000
    assert s.sweep(limit=10) == 1 and s.grants == {}


def test_persistence_keeps_original_expiry_and_drops_expired(tmp_path):
    clock = Clock()
    s = store(tmp_path, clock)
    s.grant("192.0.2.1", "old", "dovecot")
    clock.t = T0 + 600
    s.grant("2001:db8::1", "new", "admin")
    s.journal.close()
    clock.t = T0 + 1000  # first grant expired at T0+900, second expires T0+1500
    s2 = store(tmp_path, clock)
    assert list(s2.grants) == ["2001:db8::1"]
    assert s2.grants["2001:db8::1"] == (T0 + 1500, "new", T0 + 600)
    g = s2.grants["2001:db8::1"]
    assert (g[pbs.EXPIRES], g[pbs.USER], g[pbs.LOGIN]) == (T0 + 1500, "new", T0 + 600)
    # exact tuples of floats and a str: the collector stops tracking them (a large live set costs it nothing)
    assert type(g) is tuple and type(s.grants["2001:db8::1"]) is tuple
    gc.collect()
    assert not gc.is_tracked(g)
    s2.journal.close()
    clock.t = T0 + 1499  # another restart must not extend it
    s3 = store(tmp_path, clock, ttl=3600)
    assert s3.grants["2001:db8::1"][0] == T0 + 1500
    clock.t = T0 + 1500
    assert s3.lookup("2001:db8::1") is None


def test_restart_with_shorter_ttl_caps_expiry(tmp_path):
    clock = Clock()
    s = store(tmp_path, clock)
    s.grant("192.0.2.1", "alice", "dovecot")
    s.grant("192.0.2.2", "bob", "dovecot")
    s.journal.close()
    clock.t = T0 + 100
    s2 = store(tmp_path, clock, ttl=300)
    assert s2.grants["192.0.2.1"][0] == T0 + 300
    clock.t = T0 + 300
    assert s2.lookup("192.0.2.1") is None
    s2.journal.close()
    clock.t = T0 + 310  # at ttl=300 both are now expired and gone, even with a longer ttl again
    assert store(tmp_path, clock, ttl=900).grants == {}


def test_restart_replays_revoke_and_flush_and_compacts(tmp_path):
    clock = Clock()
    s = store(tmp_path, clock)
    for i in range(1, 4):
        s.grant(f"192.0.2.{i}", f"u{i}", "dovecot")
    s.revoke("192.0.2.2")
    s.flush()
    s.grant("192.0.2.9", "late", "admin")
    s.grant("192.0.2.9", "late", "admin")
    s.journal.close()
    s2 = store(tmp_path, clock)
    assert list(s2.grants) == ["192.0.2.9"]
    records = [json.loads(x) for x in Path(s2.journal.path).read_text().splitlines()]
    assert records == [{"op": "grant", "ip": "192.0.2.9", "user": "late", "login": T0, "expires": T0 + 900}]


def test_restart_drops_grants_now_inside_never_authorize(tmp_path):
    clock = Clock()
    s = store(tmp_path, clock)
    s.grant("10.0.0.5", "alice", "dovecot")
    s.grant("192.0.2.5", "bob", "dovecot")
    s.journal.close()
    assert list(store(tmp_path, clock, never="10.0.0.0/8").grants) == ["192.0.2.5"]


def test_corrupt_and_truncated_journal_lines_are_skipped(tmp_path, logbuf):
    good = {"op": "grant", "ip": "192.0.2.1", "user": "alice", "login": T0, "expires": T0 + 900}
    lines = [
        json.dumps(good),
        "this is not json",
        "[1, 2, 3]",
        json.dumps({**good, "ip": "not-an-ip"}),
        json.dumps({**good, "ip": "192.0.2.2", "login": True}),
        json.dumps({**good, "ip": "192.0.2.3", "expires": "soon"}),
        json.dumps({**good, "ip": "192.0.2.4", "user": None}),
        json.dumps({**good, "ip": "::ffff:192.0.2.5", "user": "mapped"}),
        "\x00\x00\x00\x00",
        json.dumps({"op": "explode"}),
        "",
        json.dumps({**good, "ip": "192.0.2.6"})[:-9],  # truncated write, no newline
    ]
    path = tmp_path / "grants.journal"
    path.write_text("\n".join(lines))
    s = store(tmp_path, Clock(T0 + 10))
    assert sorted(s.grants) == ["192.0.2.1", "192.0.2.5"]
    assert "journal-skipped lines=9 " in logbuf.getvalue()
    assert len(path.read_text().splitlines()) == 2  # compacted to valid grants only


def test_journal_compaction_runs_when_grown_and_keeps_concurrent_appends(tmp_path):
    clock = Clock()
    s = store(tmp_path, clock)
    for i in range(3000):
        s.grant(f"198.18.{i // 256}.{i % 256}", "u", "dovecot")
    for _ in range(2):
        s.grant("192.0.2.1", "alice", "dovecot")
    for i in range(500):
        s.revoke(f"198.18.{i // 256}.{i % 256}")
    assert not s.needs_compaction()  # 3502 lines for 2501 live grants
    for _ in range(3000):
        s.grant("192.0.2.1", "alice", "dovecot")
    assert s.needs_compaction()

    async def compact_while_granting():
        task = asyncio.create_task(s.compact())
        await asyncio.sleep(0)
        s.grant("192.0.2.200", "during", "admin")
        s.revoke("198.18.10.0")  # i=2560, present in the snapshot
        await task

    asyncio.run(compact_while_granting())
    assert not s.needs_compaction()
    journal = Path(s.journal.path)
    assert len(journal.read_text().splitlines()) == 2501 + 2  # snapshot + the two concurrent events
    assert not journal.with_suffix(".journal.tmp").exists()
    s.journal.close()
    s2 = store(tmp_path, clock)
    assert "192.0.2.200" in s2.grants and "198.18.10.0" not in s2.grants
    assert len(s2.grants) == 2501


def test_both_compactions_write_the_same_file_and_the_async_one_lets_the_loop_run(tmp_path):
    clock = Clock()
    s = store(tmp_path, clock)
    n = 5 * pbs.COMPACT_CHUNK + 3
    for i in range(n):
        s.grant(f"198.18.{i // 256}.{i % 256}", f"u{i % 7}", "dovecot")
    journal = Path(s.journal.path)
    s.journal.compact(s.items())
    blocking = journal.read_bytes()
    assert len(blocking.splitlines()) == n == s.journal.lines

    async def compact_counting_loop_turns():
        turns = 0

        async def ticker():
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = turns
        await s.compact()
        task.cancel()
        return turns - before

    assert asyncio.run(compact_counting_loop_turns()) >= n // pbs.COMPACT_CHUNK  # a turn between chunks at least
    assert journal.read_bytes() == blocking and s.journal.lines == n
    clock.t = T0 + 900  # all expired: the async compaction keeps only what is valid
    asyncio.run(s.compact())
    assert journal.read_bytes() == b"" and s.journal.lines == 0


@pytest.mark.parametrize("mode", ["blocking", "async"])
def test_a_failed_compaction_keeps_the_old_journal_and_leaves_no_temp_file(tmp_path, monkeypatch, mode):
    clock = Clock()
    s = store(tmp_path, clock)
    for i in range(3):
        s.grant("192.0.2.1", "alice", "dovecot")
    journal = Path(s.journal.path)
    before = journal.read_bytes()

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(pbs.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        if mode == "blocking":
            s.journal.compact(s.items())
        else:
            asyncio.run(s.compact())
    monkeypatch.undo()
    assert journal.read_bytes() == before and s.journal.lines == 3
    assert not journal.with_suffix(".journal.tmp").exists()
    s.grant("192.0.2.2", "bob", "dovecot")  # still appends to the old file, no carry-over left behind
    assert s.journal._pending is None
    assert len(journal.read_bytes().splitlines()) == 4


def test_config_file_flags_and_validation(tmp_path):
    conf = config_file(tmp_path, ttl="600", never_authorize="10.0.0.0/8, 192.0.2.0/24 2001:db8::/32",
                       policy_listen="[::1]:10099", report_listen="127.0.0.1:10032", protocols="pop3, IMAP")
    cfg = pbs.load_config(str(conf), {"ttl": "120", "report_listen": None})
    assert cfg.ttl == 120
    assert cfg.policy_listen == ("::1", 10099)
    assert cfg.report_listen == ("127.0.0.1", 10032)
    assert cfg.protocols == {"pop3", "imap"}
    assert [str(n) for n in cfg.never_authorize] == ["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"]
    assert cfg.max_grants == 200000  # a daemon limit, not a setting of the role: it may be left out
    for key, bad in (("ttl", "0"), ("ttl", "ten"), ("never_authorize", "10.0.0.0/33"),
                     ("policy_listen", "10031"), ("sweep_interval", "0"), ("protocols", " ")):
        config_file(tmp_path, **{key: bad})
        with pytest.raises(pbs.ConfigError):
            pbs.load_config(str(conf))
    conf.write_text(conf.read_text() + "tll = 5\n")
    with pytest.raises(pbs.ConfigError, match="unknown key 'tll'"):
        pbs.load_config(str(conf))


@pytest.mark.parametrize("key", pbs.REQUIRED)
def test_a_missing_key_is_an_error_that_names_it(tmp_path, key):
    """The daemon has no defaults of its own for what the role writes."""
    conf = config_file(tmp_path)
    conf.write_text("".join(line for line in conf.read_text().splitlines(keepends=True)
                            if not line.startswith(key + " = ")))
    with pytest.raises(pbs.ConfigError, match=rf"pbs.conf: missing {key} in \[pop-before-smtp\]"):
        pbs.load_config(str(conf))
    assert pbs.load_config(str(conf), {key: config_values(tmp_path)[key]}).ttl == 900  # a flag fills it in
    assert pbs.main(["serve", "--config", str(conf)]) == 2


def test_the_role_template_writes_every_key_the_daemon_requires():
    template = (DAEMON.parents[1] / "templates/pop-before-smtp.conf.j2").read_text()
    keys = [line.split(" = ")[0] for line in template.splitlines() if " = " in line and not line.startswith("#")]
    assert sorted(keys) == sorted(pbs.REQUIRED)


def test_admin_commands_need_only_the_admin_socket(tmp_path, capsys):
    assert pbs.main(["list", "--config", str(tmp_path / "absent.conf")]) == 2  # cannot read it
    conf = tmp_path / "admin-only.conf"
    conf.write_text(f"[pop-before-smtp]\nadmin_socket = {tmp_path}/nobody.sock\n")
    assert pbs.main(["list", "--config", str(conf)]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the daemon at " + str(tmp_path / "nobody.sock") in err


def test_clean_escapes_everything_unsafe():
    assert pbs.clean("alice") == "alice"
    assert pbs.clean("a b") == '"a b"'
    assert pbs.clean('x"y\\') == '"x\\"y\\\\"'
    assert pbs.clean("a\nb\rc\x1b[31m\x00\u2028\u202e") == '"a\\x0ab\\x0dc\\x1b[31m\\x00\\u2028\\u202e"'
    assert pbs.clean("") == '""'
    assert len(pbs.clean("x" * 5000)) == 515


@pytest.mark.parametrize("user", ["evil\ngrant user=root ip=203.0.113.1 source=admin", "evil\r\nstop",
                                  "evil\x1b[2K\x08\x00", "evil\u2028start ttl=1", "evil\x85next"])
def test_log_injection_via_username_yields_one_line(tmp_path, logbuf, user):
    async def scenario():
        async with running(tmp_path, Clock()) as d:
            logbuf.truncate(0)
            logbuf.seek(0)
            status, _, _ = await http_exchange(d.port("report"), http_post(report_body(account=user)))
            assert status == 200
            assert d.store.lookup("192.0.2.7")[1] == user
            return logbuf.getvalue()

    out = asyncio.run(scenario())
    assert out.count("\n") == 1 and out.endswith("\n")
    assert out.startswith("grant user=\"evil") and " ip=192.0.2.7 " in out
    assert all(ch.isprintable() for ch in out[:-1])
    assert len(out[:-1].splitlines()) == 1


def test_sweeper_task_expires_grants_and_compacts(tmp_path, logbuf):
    clock = Clock()

    async def scenario():
        async with running(tmp_path, clock, sweep_interval="0.02") as d:
            d.store.grant("192.0.2.1", "alice", "dovecot")
            for _ in range(pbs.COMPACT_MIN_LINES + 10):
                d.store.grant("192.0.2.2", "bob", "dovecot")
            clock.t = T0 + 900.5
            d.store.grant("192.0.2.3", "carol", "dovecot")
            for _ in range(100):
                await asyncio.sleep(0.02)
                if "192.0.2.1" not in d.store.grants and d.store.journal.lines <= 2:
                    break
            return list(d.store.grants), Path(d.cfg.state_file).read_text().splitlines()

    grants, journal = asyncio.run(scenario())
    assert grants == ["192.0.2.3"]
    assert [json.loads(x)["ip"] for x in journal] == ["192.0.2.3"]
    lines = logbuf.getvalue().splitlines()
    assert "expired ip=192.0.2.1 user=alice" in lines and "expired ip=192.0.2.2 user=bob" in lines


# ---------------------------------------------------- policy over a socket ---

def test_policy_protocol_decisions(tmp_path, logbuf):
    clock = Clock()

    async def scenario():
        async with running(tmp_path, clock) as d:
            d.store.grant("192.0.2.7", "alice", "dovecot")
            d.store.grant("2001:db8::7", "bob", "dovecot")
            reader, writer = await asyncio.open_connection("127.0.0.1", d.port("policy"))
            cases = [
                (policy_request("192.0.2.7"), b"action=OK\n\n"),
                (policy_request("192.0.2.8"), b"action=DUNNO\n\n"),          # neighbour: no subnet
                (policy_request("::ffff:192.0.2.7"), b"action=OK\n\n"),
                (policy_request("2001:DB8::7"), b"action=OK\n\n"),
                (policy_request("2001:db8::8"), b"action=DUNNO\n\n"),
                (policy_request("unknown"), b"action=DUNNO\n\n"),
                (policy_request("192.0.2.7%eth0"), b"action=DUNNO\n\n"),
                (b"hello there\n\n", b"action=DUNNO\n\n"),
                (b"\xff\xfe\x00garbage=\xff\n\n", b"action=DUNNO\n\n"),
                (b"client_address=192.0.2.7\n\n", b"action=DUNNO\n\n"),     # no request= line
                (policy_request("198.51.100.1", sender="x\nclient_address=192.0.2.7"), b"action=DUNNO\n\n"),
                (policy_request("198.51.100.1").replace(b"helo_name=laptop", b"xclient_address=192.0.2.7"),
                 b"action=DUNNO\n\n"),
            ]
            for request, expected in cases:
                writer.write(request)
                assert (await read_replies(reader, 1))[0] == expected, request
            # pipelined: several requests in one write, answered in order
            writer.write(policy_request("192.0.2.8") + policy_request("192.0.2.7") + policy_request("192.0.2.9"))
            assert await read_replies(reader, 3) == [b"action=DUNNO\n\n", b"action=OK\n\n", b"action=DUNNO\n\n"]
            # one request dribbled byte by byte
            for byte in policy_request("192.0.2.7"):
                writer.write(bytes([byte]))
                await writer.drain()
            assert await read_replies(reader, 1) == [b"action=OK\n\n"]
            # expiry is decided at lookup time, no sweep needed
            clock.t = T0 + 900
            writer.write(policy_request("192.0.2.7"))
            assert await read_replies(reader, 1) == [b"action=DUNNO\n\n"]
            assert "192.0.2.7" in d.store.grants
            writer.close()

    asyncio.run(scenario())


def netstring(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


async def read_netstrings(reader: asyncio.StreamReader, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        length = int((await asyncio.wait_for(reader.readuntil(b":"), 5))[:-1])
        data = await asyncio.wait_for(reader.readexactly(length + 1), 5)
        assert data[-1:] == b","
        out.append(data[:-1])
    return out


def test_grant_lookup_names_the_users_of_a_granted_address_only(tmp_path, logbuf):
    """rspamd's grant lookup (socketmap, map "grant"): the users whose
    logins unlocked the address, NOTFOUND for everyone else, loopback
    included, and expiry decided at lookup time."""
    clock = Clock()

    async def scenario():
        async with running(tmp_path, clock) as d:
            d.store.grant("192.0.2.7", "alice", "dovecot")
            d.store.grant("2001:db8::7", "bob", "dovecot")
            d.store.grant("127.0.0.1", "carol", "dovecot")  # WebMail's IMAP login
            reader, writer = await asyncio.open_connection("127.0.0.1", d.port("grants"))
            granted = b"OK alice"
            cases = [
                (b"grant 192.0.2.7", granted),
                (b"grant 192.0.2.8", b"NOTFOUND "),
                (b"grant 2001:DB8::7", b"OK bob"),
                (b"grant ::ffff:192.0.2.7", granted),
                (b"grant 127.0.0.1", b"NOTFOUND "),
                (b"grant unknown", b"NOTFOUND "),
                (b"grant \xff\xfe", b"NOTFOUND "),
                (b"other 192.0.2.7", b"PERM unknown map"),
            ]
            for request, expected in cases:
                writer.write(netstring(request))
                assert await read_netstrings(reader, 1) == [expected], request
            # pipelined, and one dribbled byte by byte
            writer.write(netstring(b"grant 192.0.2.8") + netstring(b"grant 192.0.2.7"))
            assert await read_netstrings(reader, 2) == [b"NOTFOUND ", granted]
            for byte in netstring(b"grant 192.0.2.7"):
                writer.write(bytes([byte]))
                await writer.drain()
            assert await read_netstrings(reader, 1) == [granted]
            # A second user behind the same address; then both expire.
            clock.t = T0 + 100
            d.store.grant("192.0.2.7", "bob", "dovecot")
            writer.write(netstring(b"grant 192.0.2.7"))
            assert await read_netstrings(reader, 1) == [b"OK alice,bob"]
            clock.t = T0 + 900
            writer.write(netstring(b"grant 192.0.2.7"))
            assert await read_netstrings(reader, 1) == [b"OK bob"]
            clock.t = T0 + 1000
            writer.write(netstring(b"grant 192.0.2.7"))
            assert await read_netstrings(reader, 1) == [b"NOTFOUND "]
            writer.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("garbage", [b"x:grant 192.0.2.7,", b"5:grant 192.0.2.7,", b"1234567:",
                                     b"99999:" + b"m" * 600, b"3:abc;"])
def test_grant_lookup_closes_a_connection_that_is_not_a_socketmap_client(tmp_path, logbuf, garbage):
    async def scenario():
        async with running(tmp_path, Clock()) as d:
            d.store.grant("192.0.2.7", "alice", "dovecot")
            reader, writer = await asyncio.open_connection("127.0.0.1", d.port("grants"))
            writer.write(garbage)
            assert await asyncio.wait_for(reader.read(), 5) == b""

    asyncio.run(scenario())
    assert "socketmap-malformed" in logbuf.getvalue()


def test_no_grant_lookups_without_grants_listen(tmp_path, logbuf):
    async def scenario():
        async with running(tmp_path, Clock(), grants_listen="") as d:
            assert "grants" not in d.addresses and d.port("policy")

    asyncio.run(scenario())


def test_policy_oversized_request_closes_connection(tmp_path, logbuf):
    async def scenario():
        async with running(tmp_path, Clock()) as d:
            reader, writer = await asyncio.open_connection("127.0.0.1", d.port("policy"))
            writer.write(b"request=smtpd_access_policy\n" + b"x" * (64 * 1024 + 10))
            assert await asyncio.wait_for(reader.read(), 5) == b""
            # a request just under the limit is still answered
            reader, writer = await asyncio.open_connection("127.0.0.1", d.port("policy"))
            writer.write(b"request=smtpd_access_policy\nfoo=" + b"y" * (60 * 1024) + b"\n\n")
            assert await read_replies(reader, 1) == [b"action=DUNNO\n\n"]
            writer.close()

    asyncio.run(scenario())
    assert "policy-oversized peer=" in logbuf.getvalue()


def test_relay_permitted_logged_once_per_instance(tmp_path, logbuf):
    async def scenario():
        async with running(tmp_path, Clock()) as d:
            d.store.grant("192.0.2.7", "alice", "dovecot")
            reader, writer = await asyncio.open_connection("127.0.0.1", d.port("policy"))
            msg1 = b"".join(policy_request("192.0.2.7", instance="A.1", recipient=f"r{i}@example.net")
                            for i in range(50))
            writer.write(msg1 + policy_request("192.0.2.7", instance="B.2", recipient="z@example.com"))
            assert set(await read_replies(reader, 51)) == {b"action=OK\n\n"}
            writer.close()

    asyncio.run(scenario())
    relays = [x for x in logbuf.getvalue().splitlines() if x.startswith("relay-permitted")]
    assert relays == [
        "relay-permitted ip=192.0.2.7 user=alice sender=alice@example.org recipient=r0@example.net instance=A.1",
        "relay-permitted ip=192.0.2.7 user=alice sender=alice@example.org recipient=z@example.com instance=B.2",
    ]


# ------------------------------------------------ Dovecot report over HTTP ---

@pytest.mark.parametrize("fields, granted", [
    ({}, True),
    ({"remote": "::ffff:192.0.2.7"}, True),
    ({"protocol": "POP3"}, True),
    ({"success": False}, False),
    ({"success": "true"}, False),
    ({"success": 1}, False),
    ({"protocol": "imap"}, False),
    ({"protocol": None}, False),
    ({"policy_reject": True}, False),
    ({"remote": "not-an-ip"}, False),
    ({"remote": ""}, False),
    ({"remote": "fe80::1%eth0"}, False),
    ({"remote": "10.9.9.9"}, False),  # never_authorize
])
def test_report_grants_only_successful_pop3_logins(tmp_path, logbuf, fields, granted):
    async def scenario():
        async with running(tmp_path, Clock(), never_authorize="10.0.0.0/8") as d:
            status, headers, body = await http_exchange(d.port("report"), http_post(report_body(**fields)))
            assert (status, body) == (200, b'{"status":0,"msg":""}')
            assert headers["content-type"] == "application/json"
            return dict(d.store.grants)

    grants = asyncio.run(scenario())
    expected_ip = pbs.normalize_ip(fields.get("remote", "192.0.2.7"))
    assert (expected_ip in grants if expected_ip else bool(grants)) is granted
    assert len(grants) == (1 if granted else 0)


def test_report_of_a_login_a_policy_check_refused_grants_nothing(tmp_path, logbuf):
    d = pbs.Daemon(make_config(tmp_path), TOKEN, Clock())
    doc = json.loads(report_body())
    assert d.handle_report(dict(doc, policy_reject=True)) == "policy-reject"
    assert d.store.grants == {}
    assert d.handle_report(doc) == "granted" and list(d.store.grants) == ["192.0.2.7"]


@pytest.mark.parametrize("token", [None, b"wrong", b"s3cret-toke", b"s3cret-token2", b""])
def test_report_with_bad_token_is_forbidden(tmp_path, logbuf, token):
    async def scenario():
        async with running(tmp_path, Clock()) as d:
            status, _, _ = await http_exchange(d.port("report"), http_post(report_body(), token=token))
            return status, dict(d.store.grants)

    assert asyncio.run(scenario()) == (403, {})
    assert "report-refused reason=bad-token peer=127.0.0.1:" in logbuf.getvalue()


def test_report_only_command_and_errors(tmp_path, logbuf):
    async def scenario():
        async with running(tmp_path, Clock()) as d:
            port = d.port("report")
            # Dovecot's policy check (command=allow) is never asked for: refused, grants nothing
            status, _, body = await http_exchange(port, http_post(report_body(), command="allow"))
            assert (status, body) == (400, b'{"error":"unknown command"}')
            assert (await http_exchange(port, http_post(b"{not json", command="report")))[0] == 400
            assert (await http_exchange(port, http_post(b"[1,2]", command="report")))[0] == 400
            assert (await http_exchange(port, http_post(b"[" * 60000, command="report")))[0] == 400
            assert (await http_exchange(port, http_post(b"{}", command="nope")))[0] == 400
            assert (await http_exchange(port, b"GARBAGE\r\n\r\n"))[0] == 400
            assert (await http_exchange(port, b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"))[0] == 400
            big = b"POST /?command=report HTTP/1.1\r\nContent-Length: 999999\r\n\r\n"
            assert (await http_exchange(port, big))[0] == 413
            get = f"GET /?command=report HTTP/1.1\r\nX-API-Key: {TOKEN.decode()}\r\n\r\n".encode()
            assert (await http_exchange(port, get))[0] == 405
            return dict(d.store.grants)

    assert asyncio.run(scenario()) == {}


def test_report_keep_alive_two_requests_one_connection(tmp_path, logbuf):
    async def scenario():
        async with running(tmp_path, Clock()) as d:
            reader, writer = await asyncio.open_connection("127.0.0.1", d.port("report"))
            writer.write(http_post(report_body(remote="192.0.2.1", account="a")))
            assert (await read_http_response(reader))[0] == 200
            writer.write(http_post(report_body(remote="192.0.2.2", account="b")))
            status, headers, _ = await read_http_response(reader)
            assert status == 200 and "connection" not in headers
            # pipelined, the second split in the middle of its body
            both = http_post(report_body(remote="192.0.2.3")) + http_post(report_body(remote="192.0.2.4"))
            writer.write(both[:-7])
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(both[-7:])
            assert [(await read_http_response(reader))[0] for _ in range(2)] == [200, 200]
            # Connection: close is honoured
            writer.write(http_post(report_body(remote="192.0.2.5"), extra="Connection: close\r\n"))
            status, headers, _ = await read_http_response(reader)
            assert status == 200 and headers["connection"] == "close"
            assert await asyncio.wait_for(reader.read(), 5) == b""
            # HTTP/1.0 closes by default
            reader, writer = await asyncio.open_connection("127.0.0.1", d.port("report"))
            writer.write(http_post(report_body(remote="192.0.2.6")).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
            assert (await read_http_response(reader))[0] == 200
            assert await asyncio.wait_for(reader.read(), 5) == b""
            return sorted(d.store.grants)

    assert asyncio.run(scenario()) == [f"192.0.2.{i}" for i in range(1, 7)]


def test_report_chunked_body(tmp_path, logbuf):
    body = report_body(remote="2001:DB8::42", account="carol")
    chunks = [body[:10], body[10:11], body[11:]]
    encoded = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nX-Trailer: 1\r\n\r\n"
    head = (f"POST /?command=report HTTP/1.1\r\nX-API-Key: {TOKEN.decode()}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()

    async def scenario():
        async with running(tmp_path, Clock()) as d:
            reader, writer = await asyncio.open_connection("127.0.0.1", d.port("report"))
            raw = head + encoded
            for i in range(0, len(raw), 13):  # arrives in pieces
                writer.write(raw[i:i + 13])
                await writer.drain()
            assert (await read_http_response(reader))[0] == 200
            bad = head + b"zz\r\n" + body + b"\r\n0\r\n\r\n"
            writer.write(bad)
            assert (await read_http_response(reader))[0] == 400
            writer.close()
            return dict(d.store.grants)

    grants = asyncio.run(scenario())
    assert list(grants) == ["2001:db8::42"] and grants["2001:db8::42"][1] == "carol"


# ---------------------------------------------------------- admin socket ---

def test_admin_socket_protocol_and_permissions(tmp_path, logbuf):
    clock = Clock()

    async def scenario():
        async with running(tmp_path, clock, never_authorize="10.0.0.0/8") as d:
            path = d.cfg.admin_socket
            assert oct(os.stat(path).st_mode & 0o777) == "0o600"
            reader, writer = await asyncio.open_unix_connection(path)

            async def call(obj) -> dict:
                writer.write((obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n")
                return json.loads(await asyncio.wait_for(reader.readline(), 5))

            r = await call({"cmd": "grant", "ip": "::ffff:192.0.2.7", "user": "helpdesk"})
            assert r == {"ok": True, "ip": "192.0.2.7", "user": "helpdesk", "expires": T0 + 900}
            assert (await call({"cmd": "grant", "ip": "192.0.2.8"}))["user"] == "admin"
            assert (await call({"cmd": "grant", "ip": "10.0.0.1"}))["ok"] is False
            assert (await call({"cmd": "grant", "ip": "192.0.2.0/24"}))["ok"] is False
            clock.t = T0 + 100
            listing = await call({"cmd": "list"})
            assert [(g["ip"], g["user"], g["seconds_left"]) for g in listing["grants"]] == [
                ("192.0.2.7", "helpdesk", 800), ("192.0.2.8", "admin", 800)]
            assert (await call({"cmd": "revoke", "ip": "192.0.2.7"}))["revoked"] is True
            assert (await call({"cmd": "revoke", "ip": "192.0.2.7"}))["revoked"] is False
            assert (await call({"cmd": "flush"}))["flushed"] == 1
            assert (await call({"cmd": "list"}))["grants"] == []
            assert (await call(b"not json"))["ok"] is False
            assert (await call({"cmd": "rm -rf"}))["ok"] is False
            writer.close()

    asyncio.run(scenario())
    out = logbuf.getvalue()
    assert "grant user=helpdesk ip=192.0.2.7 expires=2023-11-14T22:28:20Z source=admin" in out
    assert "grant user=admin ip=192.0.2.8" in out
    assert "revoke ip=192.0.2.7 user=helpdesk source=admin" in out
    assert "flush grants=1 source=admin" in out


def test_admin_stats_on_the_socket_and_the_cli(tmp_path, logbuf, capsys):
    async def scenario():
        async with running(tmp_path, Clock()) as d:
            status, _, _ = await http_exchange(d.port("report"), http_post(report_body()))
            assert status == 200
            reader, writer = await asyncio.open_connection("127.0.0.1", d.port("policy"))
            writer.write(policy_request("192.0.2.7") + policy_request("192.0.2.8"))
            assert await read_replies(reader, 2) == [b"action=OK\n\n", b"action=DUNNO\n\n"]
            loop = asyncio.get_running_loop()
            reply = await loop.run_in_executor(None, pbs.admin_call, d.cfg.admin_socket, {"cmd": "stats"})
            code = await loop.run_in_executor(None, pbs.main, ["stats", "--admin-socket", d.cfg.admin_socket])
            writer.close()
            return reply, code

    reply, code = asyncio.run(scenario())
    assert reply == {"ok": True, "pid": os.getpid(), "grants": 1, "decisions": 2, "permitted": 1, "reports": 1,
                     "shared": 0, "senders": 0,
                     "connections": {"policy": 1, "report": 0, "admin": 1, "grants": 0}}
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed.pop("connections").keys() == {"policy", "report", "admin", "grants"}
    assert printed == {k: v for k, v in reply.items() if k not in ("ok", "connections")}


def test_unknown_admin_commands_are_named_with_the_known_ones(tmp_path):
    d = pbs.Daemon(make_config(tmp_path), TOKEN, Clock())
    errors = [d.handle_admin(json.dumps(req).encode())
              for req in ({"cmd": "rm -rf"}, {"cmd": ["list"]}, {}, {"cmd": "allow"})]
    known = "known: flush, grant, list, revoke, stats"
    assert errors == [{"ok": False, "error": f"unknown command {text}; {known}"}
                      for text in ('"rm -rf"', "['list']", "None", "allow")]


def test_admin_cli_end_to_end(tmp_path, logbuf, capsys):
    async def scenario():
        async with running(tmp_path, Clock(time.time()), never_authorize="10.0.0.0/8") as d:
            sock = ["--admin-socket", d.cfg.admin_socket]
            loop = asyncio.get_running_loop()

            async def cli(*argv):
                code = await loop.run_in_executor(None, pbs.main, [*argv, *sock])
                out = capsys.readouterr()
                return code, out.out, out.err

            code, out, _ = await cli("grant", "192.0.2.7", "--user", "alice")
            assert code == 0 and out.startswith("granted 192.0.2.7 to alice until ")
            code, out, _ = await cli("list")
            lines = out.splitlines()
            assert code == 0 and lines[0].split() == ["IP", "USER", "EXPIRES", "LEFT"]
            assert lines[1].split()[:2] == ["192.0.2.7", "alice"] and lines[1].split()[2].endswith("Z")
            code, out, _ = await cli("list", "--json")
            assert code == 0 and [g["ip"] for g in json.loads(out)] == ["192.0.2.7"]
            code, _, err = await cli("grant", "10.1.1.1")
            assert code == 1 and "never_authorize" in err
            code, _, err = await cli("grant", "999.1.1.1")
            assert code != 0 and "invalid IP address" in err
            code, out, _ = await cli("revoke", "192.0.2.7")
            assert code == 0 and out.strip() == "revoked 192.0.2.7"
            code, out, _ = await cli("flush")
            assert code == 0 and out.strip() == "flushed 0 grant(s)"

    asyncio.run(scenario())
    code = pbs.main(["list", "--admin-socket", str(tmp_path / "nobody.sock")])
    assert code == 1 and "cannot reach the daemon" in capsys.readouterr().err


def test_serve_process_sigterm_flushes_and_exits_zero(tmp_path):
    (tmp_path / "token").write_bytes(TOKEN + b"\n")
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    conf = config_file(tmp_path, policy_listen=f"127.0.0.1:{ports[0]}", report_listen=f"127.0.0.1:{ports[1]}",
                       admin_socket=f"{tmp_path}/admin.sock")
    proc = subprocess.Popen([sys.executable, str(DAEMON), "serve", "--config", str(conf), "--ttl", "60"],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 10
        while not os.path.exists(tmp_path / "admin.sock"):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        assert pbs.admin_call(str(tmp_path / "admin.sock"), {"cmd": "grant", "ip": "192.0.2.7"})["ok"]
        with socket.create_connection(("127.0.0.1", ports[0])) as s:
            s.sendall(policy_request("192.0.2.7"))
            assert s.recv(100) == b"action=OK\n\n"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0
    lines = err.splitlines()
    assert lines[0].startswith("start ttl=60 grants-restored=0 ")
    assert lines[-1] == "stop grants=1"
    assert not (tmp_path / "admin.sock").exists()
    journal = [json.loads(x) for x in (tmp_path / "state/grants.journal").read_text().splitlines()]
    assert [(r["op"], r["ip"], r["expires"] - r["login"]) for r in journal] == [("grant", "192.0.2.7", 60.0)]
