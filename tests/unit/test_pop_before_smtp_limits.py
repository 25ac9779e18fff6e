"""Unit tests of the daemon's bounds and its defences against local clients
(issue 8): back-pressure, connection caps and time limits, the whole-request
HTTP bound, rate-limited error logs, durable admin changes, a journal that
never outgrows the live set, the report peer check, inherited sockets."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_pop_before_smtp import (DAEMON, T0, TOKEN, Clock, config_file, http_exchange, http_post, logbuf,
                                  make_config, pbs, policy_request, read_http_response, read_replies,
                                  report_body, running)

__all__ = ["logbuf"]  # a fixture, used by name


@pytest.fixture
def fast_limits(monkeypatch):
    """Small caps and short time limits, reaped every 20 ms."""
    monkeypatch.setattr(pbs, "REAP_INTERVAL", 0.02)
    monkeypatch.setattr(pbs, "LIMITS", {"policy": pbs.Limits(4, 0.5, 0.3), "report": pbs.Limits(4, 0.5, 0.3),
                                        "admin": pbs.Limits(4, 0.5, 0.3), "grants": pbs.Limits(4, 0.5, 0.3)})


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = 5) -> bool:
    try:
        while await asyncio.wait_for(reader.read(65536), timeout):
            pass
    except ConnectionResetError:
        pass
    return True


def server_side(d: pbs.Daemon, kind: str) -> list[pbs._Base]:
    return list(d.conns[kind].values())


async def accepted(d: pbs.Daemon, kind: str, n: int = 1, timeout: float = 5) -> list[pbs._Base]:
    """The daemon's side of the ``n`` connections of ``kind`` just opened,
    once it has accepted them all (however loaded the machine)."""
    deadline = time.monotonic() + timeout
    while len(d.conns[kind]) < n:
        assert time.monotonic() < deadline, f"{kind}: {len(d.conns[kind])} of {n} connections accepted"
        await asyncio.sleep(0.005)
    return server_side(d, kind)


# ------------------------------------------------------- back-pressure ---

def test_pipelining_without_reading_is_bounded_and_others_are_served(tmp_path, logbuf, monkeypatch):
    """Finding 1: 40 MiB of empty requests and never a read used to grow the
    reply buffer until the daemon was killed."""

    monkeypatch.setattr(pbs, "REAP_INTERVAL", 0.05)
    monkeypatch.setitem(pbs.LIMITS, "policy", pbs.Limits(256, 330.0, 1.0))

    async def scenario():
        async with running(tmp_path, Clock()) as d:
            d.store.grant("192.0.2.7", "alice", "admin")
            hostile = socket.create_connection(("127.0.0.1", d.port("policy")))
            hostile.setblocking(False)
            flood = b"\n\n" * 32768
            [proto] = await accepted(d, "policy")
            sent = most_buffered = most_unsent = 0
            answered = False
            deadline = time.monotonic() + 20
            while not proto.transport.is_closing() and time.monotonic() < deadline:
                try:
                    sent += hostile.send(flood)  # and never a recv()
                except BlockingIOError:
                    pass
                except OSError:
                    break
                most_buffered = max(most_buffered, len(proto.buf))
                most_unsent = max(most_unsent, proto.transport.get_write_buffer_size())
                if not proto.reading and not answered:
                    # a well-behaved client is answered at once meanwhile
                    reader, writer = await asyncio.open_connection("127.0.0.1", d.port("policy"))
                    writer.write(policy_request("192.0.2.7"))
                    assert await read_replies(reader, 1) == [b"action=OK\n\n"]
                    writer.close()
                    answered = True
                await asyncio.sleep(0.001)
            hostile.close()
            assert answered and proto.transport.is_closing()  # dropped: its replies stalled too long
            assert most_unsent <= pbs.WRITE_HIGH + 64 * 1024
            assert most_buffered <= 256 * 1024 + pbs.MAX_POLICY_REQUEST
            return sent

    sent = asyncio.run(scenario())
    assert sent > 1024 * 1024
    assert "connection-closed listener=policy reason=replies-not-read" in logbuf.getvalue()


def test_back_pressure_resumes_and_answers_every_request(tmp_path, logbuf):
    """A slow reader loses nothing: every pipelined request is answered, in order."""
    n = 50_000

    async def scenario():
        async with running(tmp_path, Clock()) as d:
            d.store.grant("192.0.2.7", "alice", "admin")
            reader, writer = await asyncio.open_connection("127.0.0.1", d.port("policy"))
            writer.write((policy_request("192.0.2.7") + b"\n\n") * n)
            await asyncio.sleep(0.2)  # let the daemon hit its bound before we read
            got = b""
            while got.count(b"\n\n") < 2 * n:
                got += await asyncio.wait_for(reader.read(1 << 20), 10)
            writer.close()
            return got

    got = asyncio.run(scenario())
    assert got == (b"action=OK\n\n" + b"action=DUNNO\n\n") * n


# --------------------------------------------------- caps and time limits ---

def test_connection_cap_makes_room_by_closing_the_longest_idle(tmp_path, logbuf, fast_limits):
    async def scenario():
        async with running(tmp_path, Clock()) as d:
            d.store.grant("192.0.2.7", "alice", "admin")
            idle = [await asyncio.open_connection("127.0.0.1", d.port("policy")) for _ in range(4)]
            assert len(await accepted(d, "policy", 4)) == 4
            reader, writer = await asyncio.open_connection("127.0.0.1", d.port("policy"))
            writer.write(policy_request("192.0.2.7"))
            assert await read_replies(reader, 1) == [b"action=OK\n\n"]
            assert len(d.conns["policy"]) == 4
            assert await closed_by_peer(idle[0][0])  # the oldest made room
            writer.close()
            for _, w in idle:
                w.close()

    asyncio.run(scenario())
    assert "connection-limit listener=policy limit=4" in logbuf.getvalue()


def test_idle_and_dribbling_connections_are_closed(tmp_path, logbuf, fast_limits):
    async def scenario():
        async with running(tmp_path, Clock()) as d:
            idle_r, _ = await asyncio.open_connection("127.0.0.1", d.port("policy"))
            slow_r, slow_w = await asyncio.open_connection("127.0.0.1", d.port("report"))
            slow_w.write(b"POST /?command=report HTTP/1.1\r\n")  # and never the rest
            started = time.monotonic()
            assert await closed_by_peer(idle_r)
            assert time.monotonic() - started < 3
            status, _, _ = await read_http_response(slow_r)
            assert status == 408
            assert d.conns["policy"] == {} and d.conns["report"] == {}

    asyncio.run(scenario())
    assert "connection-closed listener=report reason=request-timeout" in logbuf.getvalue()


# ------------------------------------------------------------ HTTP bound ---

@pytest.mark.parametrize("tail", [
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n" + b"X-Trailer: " + b"t" * 50 + b"\r\n",  # endless trailers
    b"X-Header: " + b"h" * 50 + b"\r\n",  # endless header lines
    b"Transfer-Encoding: chunked\r\n\r\n" + b"1\r\nx\r\n",  # endless 1-byte chunks
])
def test_a_whole_http_request_is_bounded(tmp_path, logbuf, tail):
    """Finding 3: chunked trailer lines had no total cap (60 MiB: +121 MB RSS)."""
    head, _, repeat = tail.rpartition(b"\r\n\r\n")
    head = head + b"\r\n\r\n" if repeat != tail else b""
    unit = repeat if head else tail

    async def scenario():
        async with running(tmp_path, Clock()) as d:
            reader, writer = await asyncio.open_connection("127.0.0.1", d.port("report"))
            writer.write(b"POST /?command=report HTTP/1.1\r\nHost: x\r\nX-API-Key: s3cret-token\r\n" + head)
            await accepted(d, "report")  # so that "closed" below means the daemon closed it
            sent = most_buffered = 0
            with contextlib.suppress(ConnectionError):  # the daemon may close it mid-write
                while sent < 4 * pbs.MAX_HTTP_REQUEST and server_side(d, "report"):
                    [proto] = server_side(d, "report")
                    most_buffered = max(most_buffered, len(proto.buf))
                    writer.write(unit * 64)
                    sent += len(unit) * 64
                    await writer.drain()
                    await asyncio.sleep(0.001)
            assert not server_side(d, "report"), "the daemon kept reading"
            assert most_buffered <= pbs.MAX_HTTP_REQUEST + 64 * len(unit)
            assert sent <= pbs.MAX_HTTP_REQUEST + 128 * len(unit) + 65536
            status, _, _ = await read_http_response(reader)
            assert status in (400, 413)

    asyncio.run(scenario())


# ------------------------------------------------------ rate-limited logs ---

def test_repeated_errors_are_logged_once_per_interval_with_a_count(tmp_path, logbuf):
    """Finding 3: 211k error lines in 17 s made journald drop grant lines."""

    async def scenario():
        async with running(tmp_path, Clock()) as d:
            reader, writer = await asyncio.open_connection("127.0.0.1", d.port("report"))
            for _ in range(500):
                writer.write(http_post(report_body(), token=b"wrong"))
            for _ in range(500):
                assert (await read_http_response(reader))[0] == 403
            status, _, _ = await http_exchange(d.port("report"), http_post(report_body(remote="192.0.2.9")))
            assert status == 200
            writer.close()

    asyncio.run(scenario())
    out = logbuf.getvalue()
    assert out.count("report-refused reason=bad-token") == 1
    assert "report-refused suppressed=499 " in out  # logged at stop
    assert "grant user=alice ip=192.0.2.9" in out


# ------------------------------------------------- durable admin changes ---

def failing_writes(monkeypatch, after: int = 0):
    """Journal writes fail as with a full disk or a file size limit (EFBIG),
    ``after`` bytes into the write."""
    real = os.write

    def write(fd, data):
        if after:
            real(fd, bytes(data[:after]))
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(pbs.os, "write", write)
    return real


@pytest.mark.parametrize("cmd", ["revoke", "flush"])
def test_admin_change_that_cannot_be_made_durable_fails_and_changes_nothing(tmp_path, logbuf, monkeypatch, cmd):
    """Finding 4: revoke and flush said ok with the journal unwritable, and a
    restart brought the grant back."""
    clock = Clock()
    cfg = make_config(tmp_path)

    async def scenario():
        async with running(tmp_path, clock) as d:
            assert d.handle_admin(json.dumps({"cmd": "grant", "ip": "192.0.2.7"}).encode())["ok"]
            size = os.path.getsize(cfg.state_file)
            failing_writes(monkeypatch, after=7)
            reply = d.handle_admin(json.dumps({"cmd": cmd, "ip": "192.0.2.7"}).encode())
            monkeypatch.undo()
            assert reply["ok"] is False and "cannot write the journal" in reply["error"]
            assert "nothing was changed" in reply["error"]
            assert d.store.lookup("192.0.2.7") is not None  # still granted, as reported
            assert os.path.getsize(cfg.state_file) == size  # the torn line was cut back
            # a later change is journalled whole
            assert d.handle_admin(json.dumps({"cmd": "grant", "ip": "192.0.2.8"}).encode())["ok"]

    asyncio.run(scenario())
    after = pbs.GrantStore(900, (), pbs.Journal(cfg.state_file), clock)
    assert after.restore() == 2 and after.lookup("192.0.2.7") is not None


def test_admin_grant_that_cannot_be_made_durable_fails(tmp_path, logbuf, monkeypatch):
    async def scenario():
        async with running(tmp_path, Clock()) as d:
            failing_writes(monkeypatch)
            reply = d.handle_admin(json.dumps({"cmd": "grant", "ip": "192.0.2.7"}).encode())
            monkeypatch.undo()
            assert reply["ok"] is False and d.store.lookup("192.0.2.7") is None

    asyncio.run(scenario())


def test_admin_cli_reports_a_failed_revoke(tmp_path, logbuf, monkeypatch, capsys):
    async def scenario():
        async with running(tmp_path, Clock(time.time())) as d:
            d.store.grant("192.0.2.7", "alice", "dovecot")
            failing_writes(monkeypatch)
            loop = asyncio.get_running_loop()
            code = await loop.run_in_executor(None, pbs.main, ["revoke", "192.0.2.7",
                                                               "--admin-socket", d.cfg.admin_socket])
            monkeypatch.undo()
            return code

    assert asyncio.run(scenario()) == 1
    assert "cannot write the journal" in capsys.readouterr().err


# -------------------------------------------------- journal stays bounded ---

def test_journal_is_compacted_as_it_grows_not_only_at_the_sweep(tmp_path, logbuf):
    """Finding 5: the journal grew to 650k lines between sweeps."""

    async def scenario():
        async with running(tmp_path, Clock(), sweep_interval="3600") as d:
            worst = shrinks = 0
            for i in range(20_000):
                before = d.store.journal.lines
                d.store.grant(f"192.0.2.{i % 10}", "alice", "dovecot")
                worst = max(worst, d.store.journal.lines)
                if i % 50 == 0:
                    # The loop runs between batches of logins; a compaction
                    # started meanwhile is let finish (its fsync runs in a
                    # thread, as slow as the disk), so the figures below do
                    # not depend on the machine's speed.
                    await asyncio.sleep(0)
                    if d._compactor is not None:
                        await d._compactor
                shrinks += d.store.journal.lines < before
            if d._compactor is not None:
                await d._compactor
            return worst, shrinks, d.store.journal.lines, d.cfg.state_file

    worst, shrinks, lines, path = asyncio.run(scenario())
    limit = pbs.COMPACT_MIN_LINES
    assert shrinks >= 20_000 // limit - 1, shrinks  # compacted as it grew, the sweep never ran
    assert worst <= 2 * limit, worst
    assert sum(1 for _ in open(path, "rb")) == lines <= limit


def test_restore_streams_a_long_journal_into_the_live_set(tmp_path, logbuf):
    path = tmp_path / "grants.journal"
    live = set()
    with open(path, "w") as f:
        for i in range(30_000):  # churn: each of 100 IPs granted 300 times, some revoked
            ip = f"198.18.0.{i % 100}"
            f.write(json.dumps({"op": "grant", "ip": ip, "user": "u", "login": T0 + i / 100,
                                "expires": T0 + i / 100 + 900}) + "\n")
            live.add(ip)
            if i % 7 == 0:
                f.write(json.dumps({"op": "revoke", "ip": ip, "at": T0}) + "\n")
                live.discard(ip)
    s = pbs.GrantStore(900, (), pbs.Journal(str(path)), Clock(T0 + 300))
    assert s.restore() == len(live) > 80
    assert set(s.grants) == live
    assert sum(1 for _ in open(path)) == len(live)
    exp = [g[0] for g in s.grants.values()]
    assert exp == sorted(exp)  # expiry order kept
    assert len({id(g[1]) for g in s.grants.values()}) == 1  # one user string, shared


def test_max_grants_refuses_new_addresses_and_logs_once(tmp_path, logbuf):
    clock = Clock()
    s = pbs.GrantStore(900, (), None, clock, max_grants=3)
    for i in range(3):
        assert s.grant(f"192.0.2.{i}", "u", "dovecot")
    assert s.grant("192.0.2.1", "u", "dovecot")  # a refresh is not a new grant
    assert s.grant("192.0.2.9", "u", "dovecot") is None
    assert s.grant("192.0.2.10", "u", "dovecot") is None
    clock.t += 901  # expired ones make room
    assert s.grant("192.0.2.9", "u", "dovecot")
    assert logbuf.getvalue().count("grant-refused reason=max-grants") == 1


# ------------------------------------------------------------ who reports ---

def test_report_without_the_authenticated_account_grants_nothing(tmp_path, logbuf):
    """Finding 6: the typed login (alice@evil.example) was recorded, not the account."""

    async def scenario():
        async with running(tmp_path, Clock()) as d:
            body = json.loads(report_body(login="alice@evil.example"))
            del body["account"]
            status, _, _ = await http_exchange(d.port("report"), http_post(json.dumps(body).encode()))
            assert status == 200 and d.store.lookup("192.0.2.7") is None
            status, _, _ = await http_exchange(d.port("report"), http_post(
                report_body(login="ALICE@example.org", account="alice")))
            assert d.store.lookup("192.0.2.7")[1] == "alice"

    asyncio.run(scenario())
    assert "report-ignored reason=no-account login=alice@evil.example" in logbuf.getvalue()


def test_peer_uid_is_the_owner_of_the_other_end(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as srv:
        client = socket.create_connection(srv.getsockname())
        conn, _ = srv.accept()
        try:
            assert pbs.peer_uid(conn) == os.getuid()
        finally:
            conn.close()
            client.close()
    a, b = socket.socketpair()
    assert pbs.peer_uid(a) is None  # not TCP
    a.close()
    b.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another uid")
def test_report_from_an_account_not_allowed_is_refused_even_with_the_token(tmp_path, logbuf):
    """Finding 2: with the token, nobody POSTed a report and got an IP granted."""
    nobody = 65534

    async def scenario():
        async with running(tmp_path, Clock(), report_users="daemon") as d:
            port = d.port("report")
            loop = asyncio.get_running_loop()
            raw = http_post(report_body(remote="198.51.100.7"))
            reply = await loop.run_in_executor(None, as_uid, nobody, port, raw)
            assert reply == b""  # closed at once, nothing answered
            assert d.store.lookup("198.51.100.7") is None
            status, _, _ = await http_exchange(port, raw)  # root may
            assert status == 200 and d.store.lookup("198.51.100.7") is not None

    asyncio.run(scenario())
    assert "report-refused reason=peer-not-allowed uid=65534" in logbuf.getvalue()


def as_uid(uid: int, port: int, raw: bytes) -> bytes:
    """Send raw to 127.0.0.1:port from a child process running as uid."""
    code = ("import encodings.idna,os,socket,sys\nos.setgid(65534); os.setuid(%d)\n"
            "s=socket.create_connection(('127.0.0.1',%d)); s.settimeout(5)\n"
            "try:\n s.sendall(sys.stdin.buffer.read())\n"
            "except OSError: pass\nout=b''\n"
            "try:\n while (c:=s.recv(65536)): out+=c\n"
            "except OSError: pass\nsys.stdout.buffer.write(out)\n") % (uid, port)
    return subprocess.run([sys.executable, "-c", code], input=raw, capture_output=True, timeout=20,
                          check=True).stdout


# ----------------------------------------------------- inherited sockets ---

def test_systemd_sockets_are_adopted_and_stay_bound_when_the_daemon_dies(tmp_path):
    """Finding 2: after a kill, another account bound the daemon's ports.
    With inherited sockets the listener outlives the daemon (systemd's role is
    played by this test), so a squatter cannot bind it, and a connection made
    while the daemon is down is answered by the next one."""
    (tmp_path / "token").write_bytes(TOKEN)
    policy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    policy.bind(str(tmp_path / "policy.sock"))
    policy.listen(16)
    report = socket.create_server(("127.0.0.1", 0))
    admin = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    admin.bind(str(tmp_path / "admin.sock"))
    admin.listen(16)
    conf = config_file(tmp_path, sockets="systemd", state_file=f"{tmp_path}/grants.journal",
                       admin_socket=f"{tmp_path}/admin.sock", grants_listen="")
    launcher = ("import os,sys\nfor i,fd in enumerate(map(int,sys.argv[1:4])): os.dup2(fd,3+i)\n"
                "os.environ.update(LISTEN_PID=str(os.getpid()),LISTEN_FDS='3',"
                "LISTEN_FDNAMES='policy:report:admin')\nos.execv(sys.executable,[sys.executable]+sys.argv[4:])\n")
    fds = [policy.fileno(), report.fileno(), admin.fileno()]

    def start():
        proc = subprocess.Popen([sys.executable, "-c", launcher, *map(str, fds), str(DAEMON), "serve",
                                 "--config", str(conf)], pass_fds=fds, stderr=subprocess.PIPE, text=True)
        return proc

    proc = start()
    try:
        assert pbs.admin_call(str(tmp_path / "admin.sock"), {"cmd": "grant", "ip": "192.0.2.7"})["ok"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        squatter = socket.socket()
        with pytest.raises(OSError) as e:
            squatter.bind(report.getsockname())
        assert e.value.errno == errno.EADDRINUSE
        squatter.close()
        waiting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        waiting.connect(str(tmp_path / "policy.sock"))  # queues while no daemon runs
        waiting.sendall(policy_request("192.0.2.7"))
        proc = start()
        waiting.settimeout(10)
        assert waiting.recv(100) == b"action=OK\n\n"  # the grant survived the kill
        waiting.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert "sockets=systemd" in err.splitlines()[0]
        assert (tmp_path / "admin.sock").exists()  # systemd's socket is left in place
    finally:
        if proc.poll() is None:
            proc.kill()
        for s in (policy, report, admin):
            s.close()


def test_systemd_mode_without_sockets_fails_at_start(tmp_path):
    (tmp_path / "token").write_bytes(TOKEN)
    proc = subprocess.run([sys.executable, str(DAEMON), "serve", "--config", str(config_file(tmp_path)),
                           "--sockets", "systemd", "--state-file", str(tmp_path / "j"),
                           "--admin-socket", str(tmp_path / "a.sock")],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 1
    assert "no policy socket from systemd" in proc.stderr
    assert not Path(tmp_path / "a.sock").exists()
