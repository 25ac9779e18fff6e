#!/usr/bin/env python3
"""Benchmark client for the pop-before-smtp daemon (stdlib only).

1. Loads N grants (default 100 000) through the daemon's Dovecot auth-policy
   HTTP endpoint (``/?command=report``, pipelined on one keep-alive
   connection) -- the same path real logins take, and reachable over TCP from
   another container -- or through the admin socket with ``--load-via admin``.
2. Measures Postfix policy decisions per second and p50/p99/max latency with a
   realistic ~30-attribute request (see Postfix SMTPD_POLICY_README), mixing
   granted and ungranted client addresses: sequential request/response on ONE
   connection (client busy-polling, then blocking), then MANY concurrent
   connections (one selector loop, one outstanding request per connection,
   like a pool of smtpd processes) flat out, then paced at --rate.
3. Prints the daemon's RSS (/proc/PID/status) and CPU time per decision when it
   knows the PID (``--spawn`` or ``--pid``).

It prints figures against the goals (>= 20 000 decisions/s, p99 < 1 ms,
RSS < 64 MiB at 100 000 grants) and asserts nothing.

    bench/pop_before_smtp_policy.py --spawn
    bench/pop_before_smtp_policy.py --token-file token --pid 1234   # on the appliance, as root
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import random
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_DAEMON = HERE.parent / "roles/pop_before_smtp/files/pop_before_smtp.py"
GOAL_RATE, GOAL_P99_MS, GOAL_RSS_MIB = 20_000, 1.0, 64


def connect(addr: tuple[str, int] | str, timeout: float) -> socket.socket:
    """TCP to (host, port), or the unix socket at a path."""
    if isinstance(addr, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(addr)
        return sock
    return socket.create_connection(addr, timeout=timeout)


def hostport(value: str) -> tuple[str, int] | str:
    if value.startswith("/"):
        return value
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def granted_ip(i: int) -> str:
    """i-th granted address: 90% IPv4 from 198.18.0.0/15, 10% IPv6."""
    if i % 10 == 9 or i >= 131_000:
        return str(ipaddress.IPv6Address((0x20010DB8000B << 80) | i))
    return str(ipaddress.IPv4Address(0xC6120000 + 1 + i))


def ungranted_ip(j: int) -> str:
    if j % 10 == 9:
        return str(ipaddress.IPv6Address((0x20010DB8DEAD << 80) | j))
    return str(ipaddress.IPv4Address(0x64400000 + 1 + j))  # 100.64.0.0/10


def policy_request(ip: str, n: int, sender: str | None = None) -> bytes:
    """A Postfix 3.7 smtpd_access_policy request at RCPT stage."""
    attrs = [
        ("request", "smtpd_access_policy"), ("protocol_state", "RCPT"), ("protocol_name", "ESMTP"),
        ("client_address", ip), ("client_name", f"host-{n}.dsl.example.net"), ("client_port", str(40000 + n % 20000)),
        ("reverse_client_name", f"host-{n}.dsl.example.net"), ("server_address", "192.0.2.25"),
        ("server_port", "587"), ("helo_name", "[192.168.1.23]"), ("sender", sender or f"user{n % 500}@example.org"),
        ("recipient", f"friend{n}@example.com"), ("recipient_count", "0"), ("queue_id", ""),
        ("instance", f"{n // 3:x}.6581a0f2.4c1d2.0"), ("size", str(1000 + n % 90000)), ("etrn_domain", ""),
        ("stress", ""), ("sasl_method", ""), ("sasl_username", ""), ("sasl_sender", ""),
        ("ccert_subject", ""), ("ccert_issuer", ""), ("ccert_fingerprint", ""), ("ccert_pubkey_fingerprint", ""),
        ("encryption_protocol", "TLSv1.3"), ("encryption_cipher", "TLS_AES_256_GCM_SHA384"),
        ("encryption_keysize", "256"), ("policy_context", ""), ("compatibility_level", "3.6"),
        ("mail_version", "3.7.11"),
    ]
    return "".join(f"{k}={v}\n" for k, v in attrs).encode() + b"\n"


def build_pool(grants: int, ratio: float, size: int = 8192) -> list[tuple[bytes, bytes]]:
    rnd = random.Random(42)
    pool = []
    for n in range(size):
        if rnd.random() < ratio:  # the granted user's own address: relayed with or without --bind-sender
            i = rnd.randrange(grants)
            pool.append((policy_request(granted_ip(i), n, f"user{i}@example.org"), b"action=OK\n\n"))
        else:
            pool.append((policy_request(ungranted_ip(rnd.randrange(1_000_000)), n), b"action=DUNNO\n\n"))
    return pool


# ------------------------------------------------------------ grant load ---

def read_http_responses(sock: socket.socket, buf: bytes, count: int) -> tuple[list[int], bytes]:
    statuses = []
    while len(statuses) < count:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].decode("latin-1").split("\r\n")
            length = next(int(h.split(":", 1)[1]) for h in head if h.lower().startswith("content-length:"))
            if len(buf) >= end + 4 + length:
                statuses.append(int(head[0].split()[1]))
                buf = buf[end + 4 + length:]
                continue
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("report endpoint closed the connection")
        buf += chunk
    return statuses, buf


def load_via_http(addr: tuple[str, int], token: str, n: int, batch: int = 500) -> int:
    ok, buf = 0, b""
    with socket.create_connection(addr, timeout=60) as sock:
        for start in range(0, n, batch):
            reqs = []
            for i in range(start, min(n, start + batch)):
                # As Dovecot sends it: the account (%{user}) is what the daemon grants for.
                body = json.dumps({"login": f"user{i}@example.org", "account": f"user{i}", "policy_reject": False,
                                   "protocol": "pop3", "remote": granted_ip(i), "success": True,
                                   "tls": True}).encode()
                reqs.append(b"POST /?command=report HTTP/1.1\r\nHost: %s\r\nX-API-Key: %s\r\n"
                            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                            % (addr[0].encode(), token.encode(), len(body), body))
            sock.sendall(b"".join(reqs))
            statuses, buf = read_http_responses(sock, buf, len(reqs))
            ok += statuses.count(200)
    return ok


def admin_lines(path: str, requests: list[dict]) -> list[dict]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(60)
        sock.connect(path)
        sock.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in requests))
        buf = b""
        while buf.count(b"\n") < len(requests):
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("admin socket closed")
            buf += chunk
    return [json.loads(line) for line in buf.splitlines()]


def load_via_admin(path: str, n: int, batch: int = 1000) -> int:
    ok = 0
    for start in range(0, n, batch):
        reqs = [{"cmd": "grant", "ip": granted_ip(i), "user": f"user{i}"} for i in range(start, min(n, start + batch))]
        ok += sum(1 for r in admin_lines(path, reqs) if r.get("ok"))
    return ok


# ---------------------------------------------------------- measurement ---

def percentile(sorted_ns: list[int], p: float) -> float:
    rank = math.ceil(len(sorted_ns) * p / 100)  # nearest-rank percentile
    return sorted_ns[min(len(sorted_ns), max(1, rank)) - 1] / 1e6  # in ms


def one_connection(addr: tuple[str, int], pool: list[tuple[bytes, bytes]], total: int,
                   spin: bool) -> tuple[float, list[int], int]:
    """Sequential request/response on one connection.  With ``spin`` the
    client busy-polls its socket, so the figures are the daemon's and not the
    client's own wake-up latency (tens of microseconds per round trip on a VM)."""
    lat, wrong = [], 0
    clock = time.perf_counter_ns
    with connect(addr, timeout=10) as sock:
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(not spin)
        start = time.perf_counter()
        for n in range(total):
            req, expect = pool[n % len(pool)]
            t0 = clock()
            sock.send(req)  # 671 bytes always fit in the send buffer
            reply = b""
            while not reply.endswith(b"\n\n"):
                try:
                    more = sock.recv(256)
                except BlockingIOError:
                    continue
                if not more:
                    raise ConnectionError("policy server closed the connection")
                reply += more
            lat.append(clock() - t0)
            wrong += reply != expect
        elapsed = time.perf_counter() - start
    return elapsed, lat, wrong


def many_connections(addr: tuple[str, int], pool: list[tuple[bytes, bytes]], total: int,
                     conns: int, rate: float = 0) -> tuple[float, list[int], int]:
    """Closed loop (rate 0): every connection sends its next request as soon as
    the reply arrives -- maximum throughput, latency = conns / throughput.
    Paced (rate > 0): requests are released one by one at ``rate`` per second
    on whichever connection is idle (busy-polling, as epoll's 1 ms timeout
    granularity would otherwise turn the pacing into bursts); latency is
    measured from the actual send."""
    sel = selectors.DefaultSelector()
    clock = time.perf_counter_ns
    lat: list[int] = []
    wrong = sent = 0
    socks = []

    def send_next(sock: socket.socket, state: list) -> None:
        nonlocal sent
        req, expect = pool[(sent * 7919) % len(pool)]
        sent += 1
        state[0], state[1], state[2] = b"", clock(), expect
        sock.send(req)

    for _ in range(conns):
        sock = connect(addr, timeout=10)
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        socks.append(sock)
        sel.register(sock, selectors.EVENT_READ, [b"", 0, b""])
    idle = deque((key.fileobj, key.data) for key in sel.get_map().values())  # FIFO: rotate connections
    start = time.perf_counter()
    while len(lat) < total:
        due = total if not rate else min(total, int((time.perf_counter() - start) * rate) + 1)
        while idle and sent < due:
            send_next(*idle.popleft())
        timeout = 10 if not rate or sent >= total else 0
        for key, _ in sel.select(timeout=timeout):
            state = key.data
            data = key.fileobj.recv(256)
            if not data:
                raise ConnectionError("policy server closed a connection")
            state[0] += data
            if state[0].endswith(b"\n\n"):
                lat.append(clock() - state[1])
                wrong += state[0] != state[2]
                idle.append((key.fileobj, state))
    elapsed = time.perf_counter() - start
    for sock in socks:
        sel.unregister(sock)
        sock.close()
    return elapsed, lat, wrong


def proc_rss_kib(pid: int) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def proc_cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def report(label: str, elapsed: float, lat: list[int], wrong: int, cpu: float | None,
           goal_rate: float = GOAL_RATE) -> None:
    lat.sort()
    rate = len(lat) / elapsed
    p50, p99, p999 = (percentile(lat, p) for p in (50, 99, 99.9))
    verdict = "PASS" if rate >= goal_rate and p99 < GOAL_P99_MS else "MISS"
    print(f"{label:<27} {len(lat):>7} decisions in {elapsed:6.2f} s = {rate:8.0f}/s   "
          f"p50 {p50:.3f} ms  p99 {p99:.3f} ms  p99.9 {p999:.3f} ms  max {lat[-1] / 1e6:.2f} ms  "
          f"wrong {wrong}   [goal >= {goal_rate:.0f}/s, p99 < {GOAL_P99_MS:g} ms: {verdict}]")
    if cpu is not None:
        print(f"{'':<27} daemon CPU {cpu:.2f} s = {cpu / len(lat) * 1e6:.1f} us/decision "
              f"(= {len(lat) / cpu:.0f} decisions per daemon CPU-second)")


# ---------------------------------------------------------------- driver ---

def spawn(args: argparse.Namespace, tmp: Path) -> subprocess.Popen:
    token = secrets.token_hex(16)
    (tmp / "token").write_text(token + "\n")
    args.token = token
    args.policy, args.report = str(tmp / "policy.sock"), f"127.0.0.1:{free_port()}"
    args.admin_socket = str(tmp / "admin.sock")
    (tmp / "pbs.conf").write_text(
        f"[pop-before-smtp]\npolicy_listen = unix:{args.policy}\nreport_listen = {args.report}\n"
        f"admin_socket = {args.admin_socket}\nstate_file = {tmp}/state/grants.journal\n"
        f"token_file = {tmp}/token\nsockets = bind\nreport_users =\nttl = 900\nnever_authorize =\n"
        f"protocols = pop3\nsweep_interval = 30\nbind_sender = {'yes' if args.bind_sender else 'no'}\n"
        f"senders_file = {tmp}/senders\ngrants_listen =\n")  # every key: the daemon has no defaults for them
    # Who owns which sender, as the role writes it: each granted user their address.
    (tmp / "senders").write_text("".join(f"user{i}@example.org\tuser{i}\n" for i in range(args.grants)))
    with open(tmp / "daemon.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, str(args.daemon), "serve", "--config", str(tmp / "pbs.conf")],
                                stdout=log, stderr=log)
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"daemon exited with {proc.returncode}:\n{(tmp / 'daemon.log').read_text()}")
        try:
            admin_lines(args.admin_socket, [{"cmd": "stats"}])
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("daemon did not become ready in 15 s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spawn", action="store_true", help="start the daemon locally with a temp state dir")
    p.add_argument("--daemon", type=Path, default=REPO_DAEMON if REPO_DAEMON.exists()
                   else Path("/usr/local/sbin/pop-before-smtp"), help="daemon script for --spawn")
    p.add_argument("--policy", default="/var/spool/postfix/private/pop-before-smtp",
                   help="policy socket: PATH or HOST:PORT")
    p.add_argument("--report", default="127.0.0.1:10032", help="auth-policy report HOST:PORT")
    p.add_argument("--token", help="X-API-Key for the report endpoint")
    p.add_argument("--token-file", default="/etc/pop-before-smtp/token")
    p.add_argument("--load-via", choices=("http", "admin"), default="http")
    p.add_argument("--admin-socket", default="/run/pop-before-smtp/admin.sock")
    p.add_argument("--grants", type=int, default=100_000)
    p.add_argument("--requests", type=int, default=100_000, help="decisions per phase")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--rate", type=float, default=GOAL_RATE, help="offered load of the paced phase")
    p.add_argument("--granted-ratio", type=float, default=0.5)
    p.add_argument("--pid", type=int, help="daemon PID on this host, for RSS and CPU figures")
    p.add_argument("--bind-sender", action="store_true",
                   help="with --spawn: relay only the granted users' own senders (bind_sender = yes)")
    args = p.parse_args()

    tmpdir = tempfile.TemporaryDirectory(prefix="pbs-bench-") if args.spawn else None
    proc = spawn(args, Path(tmpdir.name)) if tmpdir else None
    pid = proc.pid if proc else args.pid
    try:
        if args.load_via == "http" and not args.token:
            args.token = Path(args.token_file).read_text().strip()
        policy = hostport(args.policy)
        print(f"pop-before-smtp policy benchmark (python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.2f})")
        print(f"daemon: {'spawned ' + str(args.daemon) if proc else 'external'}, pid {pid or 'unknown'}, "
              f"policy {args.policy}, report {args.report}, bind_sender {'yes' if args.bind_sender else 'no'}")
        if pid:
            print(f"RSS idle: {proc_rss_kib(pid)[0] / 1024:.1f} MiB")
        t0 = time.perf_counter()
        if args.load_via == "http":
            loaded = load_via_http(hostport(args.report), args.token, args.grants)
        else:
            loaded = load_via_admin(args.admin_socket, args.grants)
        dt = time.perf_counter() - t0
        print(f"grants: {loaded}/{args.grants} accepted via {args.load_via} in {dt:.1f} s ({loaded / dt:.0f}/s)")
        if proc or args.load_via == "admin":
            stats = admin_lines(args.admin_socket, [{"cmd": "stats"}])[0]
            print(f"daemon reports {stats['grants']} grants in memory")
            if stats["grants"] != loaded:
                sys.exit(f"bench: {loaded} loads accepted but {stats['grants']} grants held; figures would be wrong")
        pool = build_pool(args.grants, args.granted_ratio)
        print(f"request: {pool[0][0].count(b'=')} attributes, {len(pool[0][0])} bytes; "
              f"{args.granted_ratio:.0%} granted client addresses, {len(pool)} distinct requests")
        one_connection(policy, pool, 2000, spin=True)  # warm-up
        cpu = proc_cpu_seconds(pid)
        for spin in (True, False):
            elapsed, lat, wrong = one_connection(policy, pool, args.requests, spin)
            cpu0, cpu = cpu, proc_cpu_seconds(pid)
            report(f"1 conn, {'polling' if spin else 'blocking'} client", elapsed, lat, wrong,
                   None if cpu is None else cpu - cpu0)
        cpu1 = cpu
        elapsed, lat, wrong = many_connections(policy, pool, args.requests, args.connections)
        cpu2 = proc_cpu_seconds(pid)
        report(f"{args.connections} conns, closed", elapsed, lat, wrong, None if cpu1 is None else cpu2 - cpu1)
        elapsed, lat, wrong = many_connections(policy, pool, args.requests, args.connections, args.rate)
        cpu3 = proc_cpu_seconds(pid)
        report(f"{args.connections} conns @{args.rate:g}/s", elapsed, lat, wrong,
               None if cpu2 is None else cpu3 - cpu2, goal_rate=0.99 * args.rate)
        if pid:
            rss, hwm = proc_rss_kib(pid)
            verdict = "PASS" if rss < GOAL_RSS_MIB * 1024 else "MISS"
            print(f"RSS: {rss / 1024:.1f} MiB (peak {hwm / 1024:.1f} MiB) with {args.grants} grants "
                  f"[goal < {GOAL_RSS_MIB} MiB: {verdict}]")
        else:
            print("RSS: unknown (pass --pid or --spawn)")
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            print(f"daemon stopped, exit code {proc.returncode}")
        if tmpdir:
            tmpdir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
