#!/usr/bin/python3
"""pop-before-smtp: relay authorisation after a POP3 login, Cobalt Qube 3 style.

"When a user logs in for POP3 email, the Qube 3 notes the IP address from which
the connection was made and permits relay from that IP address for a limited
time ... the IP addresses expire after 15 minutes."  One asyncio loop serves:

* report (HTTP, 127.0.0.1:10032): Dovecot's auth-policy interface.  With
  ``auth_policy_report_after_auth = yes`` Dovecot POSTs ``/?command=report``
  after every authentication; a successful pop3 login grants its remote IP.
* policy (TCP, 127.0.0.1:10031): Postfix's policy delegation protocol, used in
  smtpd_relay_restrictions.  ``action=OK`` for a granted client_address (exact
  IP, never a subnet), ``action=DUNNO`` for everything else.
* admin (unix socket, 0600): one JSON line per request; the ``list``, ``grant``,
  ``revoke`` and ``flush`` sub-commands of this same file are its client.

Design notes
------------
Auth-policy reports, not log parsing: the classic poprelayd tailed the mail
log with regexes, so it broke with the log format, lagged behind the login and
parsed text partly controlled by the client (user names).  Dovecot's report is
structured JSON, authenticated by a shared token, carries the authoritative
success flag and remote IP, and arrives as the login happens.

Expiry at lookup time: a grant is valid iff ``now < expires`` where
``expires = login + ttl`` in absolute wall-clock time (so it survives a
restart, which never extends it).  Answers are exact whatever the sweep
interval; the sweep only frees memory and logs ``expired``.  Grants are kept
in insertion order, which is expiry order, so a sweep stops at the first live
grant.

Fail closed: unknown client, garbage request, expired grant, unparsable
address all yield ``DUNNO`` -- never ``OK``, and never ``REJECT`` (which would
cut short other restrictions).  If the daemon is down, Postfix applies its
``default_action=DUNNO``.  Either way evaluation falls through to
reject_unauth_destination, so a failure can only deny relay, never open it.

Persistence: append-only JSON-lines journal (see Journal), replayed and then
atomically compacted at start and whenever it outgrows the live set.

Logging: one ``event key=value ...`` line per event on stderr; every value is
escaped (see ``clean``) so that client-controlled text cannot split or forge
log lines.
"""
from __future__ import annotations

import argparse
import asyncio
import configparser
import contextlib
import gc
import hmac
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

PROG = "pop-before-smtp"
SECTION = "pop-before-smtp"
DEFAULT_CONFIG = "/etc/pop-before-smtp/pop-before-smtp.conf"
DEFAULTS: dict[str, str] = {
    "policy_listen": "127.0.0.1:10031",
    "report_listen": "127.0.0.1:10032",
    "admin_socket": "/run/pop-before-smtp/admin.sock",
    "state_file": "/var/lib/pop-before-smtp/grants.journal",
    "token_file": "/etc/pop-before-smtp/token",
    "ttl": "900",
    "never_authorize": "",
    "protocols": "pop3",
    "sweep_interval": "30",
}
MAX_POLICY_REQUEST = 64 * 1024
MAX_HTTP_HEADER = 16 * 1024
MAX_HTTP_BODY = 64 * 1024
MAX_ADMIN_LINE = 64 * 1024
MAX_USER = 256
SWEEP_BATCH = 100  # expired grants (and log lines) per loop iteration
COMPACT_FACTOR = 4
COMPACT_MIN_LINES = 1024
COMPACT_CHUNK = 256
NORM_CACHE_MAX = 8192  # policy client_address -> normalised; ~150 bytes an entry
OK = b"action=OK\n\n"
DUNNO = b"action=DUNNO\n\n"
HTTP_OK_BODY = b'{"status":0,"msg":""}'
REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 413: "Payload Too Large"}
_SPECIAL = frozenset(' "\\=')
_HEX = frozenset(b"0123456789abcdefABCDEF")

log = logging.getLogger(PROG)
Grant = tuple[float, str, float]  # (expires, user, login): small, and sorts by expiry


# ---------------------------------------------------------------- helpers ---

def clean(value: object, limit: int = 512) -> str:
    """One log value: plain printable text as is, anything else quoted with
    backslash escapes for quotes, backslashes and every non-printable
    character (CR, LF, ESC, NUL, U+2028, bidi overrides ...)."""
    s = value if isinstance(value, str) else str(value)
    if len(s) > limit:
        s = s[:limit] + "..."
    if s and s.isprintable() and _SPECIAL.isdisjoint(s):
        return s
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            o = ord(ch)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    return '"' + "".join(out) + '"'


def event(name: str, **fields: object) -> None:
    """Log one audit event as a single ``name key=value ...`` line."""
    if log.isEnabledFor(logging.INFO):
        log.info(" ".join([name] + [f"{k}={clean(v)}" for k, v in fields.items()]))


def setup_logging(stream: Any = None) -> logging.Handler:
    """Plain lines on stderr (journald adds timestamps and the unit name)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    return handler


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalize_ip(text: object) -> str | None:
    """Canonical text of an IP address, or None.  IPv4-mapped IPv6 becomes
    IPv4, IPv6 is compressed lower case; zone ids, prefixes, whitespace and
    non-strings are refused."""
    if not isinstance(text, str) or not text or len(text) > 45 or "%" in text:
        return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``."""
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"bad listen address {value!r} (want HOST:PORT)")
    return host, int(port)


def parse_networks(value: str) -> tuple[Any, ...]:
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in value.replace(",", " ").split())
    except ValueError as e:
        raise ValueError(f"never_authorize: {e}") from None


def _attr(req: bytes, key: bytes) -> bytes | None:
    """Value of policy attribute ``key`` (given as b"name=") at a line start."""
    if req.startswith(key):
        i = len(key)
    else:
        i = req.find(b"\n" + key)
        if i < 0:
            return None
        i += len(key) + 1
    j = req.find(b"\n", i)
    return req[i:] if j < 0 else req[i:j]


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", "replace")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ----------------------------------------------------------------- config ---

class ConfigError(Exception):
    pass


class Config(NamedTuple):
    policy_listen: tuple[str, int]
    report_listen: tuple[str, int]
    admin_socket: str
    state_file: str
    token_file: str
    ttl: int
    never_authorize: tuple[Any, ...]
    protocols: frozenset[str]
    sweep_interval: float


def load_config(path: str | None = None, overrides: dict[str, Any] | None = None,
                default_path: str = DEFAULT_CONFIG) -> Config:
    """Defaults < INI file < overrides (command-line flags; None = unset)."""
    raw = dict(DEFAULTS)
    if path is None and os.path.exists(default_path):
        path = default_path
    if path is not None:
        parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
        try:
            with open(path, encoding="utf-8") as f:
                parser.read_file(f)
        except (OSError, UnicodeDecodeError, configparser.Error) as e:
            raise ConfigError(f"cannot read config {path}: {e}") from None
        if not parser.has_section(SECTION):
            raise ConfigError(f"{path}: no [{SECTION}] section")
        for key, value in parser.items(SECTION):
            if key not in DEFAULTS:
                raise ConfigError(f"{path}: unknown key {key!r}")
            raw[key] = value
    raw.update({k: str(v) for k, v in (overrides or {}).items() if v is not None and k in DEFAULTS})
    try:
        ttl = int(raw["ttl"])
        sweep = float(raw["sweep_interval"])
        if ttl <= 0 or not 0 < sweep < 86400:
            raise ValueError("ttl and sweep_interval must be positive")
        protocols = frozenset(p.lower() for p in raw["protocols"].replace(",", " ").split())
        if not protocols:
            raise ValueError("protocols is empty")
        return Config(parse_listen(raw["policy_listen"]), parse_listen(raw["report_listen"]),
                      raw["admin_socket"], raw["state_file"], raw["token_file"], ttl,
                      parse_networks(raw["never_authorize"]), protocols, sweep)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def read_token(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            token = f.read().strip()
    except OSError as e:
        raise ConfigError(f"cannot read token file {path}: {e.strerror}") from None
    if not token:
        raise ConfigError(f"token file {path} is empty")
    return token


# ---------------------------------------------------------------- journal ---

def grant_line(ip: str, g: Grant) -> bytes:
    expires, user, login = g
    return (f'{{"op":"grant","ip":"{ip}","user":{json.dumps(user)},'
            f'"login":{login!r},"expires":{expires!r}}}\n').encode()


class Journal:
    """Append-only JSON-lines journal of grant / revoke / flush events.

    Each event is one ``os.write`` of one whole line on an O_APPEND descriptor
    (no user-space buffer), so it is in the kernel at once and survives a crash
    or SIGKILL of the daemon.  It is deliberately not fsync'ed per event: an
    fsync can stall the single event loop for milliseconds (the policy p99
    budget is 1 ms), and all it would add is surviving a power cut for the last
    few seconds of grants -- losing those fails closed (the user logs in to
    POP again).  Compaction (tmp + fsync + rename) and shutdown do fsync.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines = 0
        self._fd: int | None = None
        self._pending: list[bytes] | None = None  # appends during compaction

    def replay(self) -> tuple[list[dict[str, Any]], int]:
        """All parsable records and the count of corrupt/truncated lines."""
        records: list[dict[str, Any]] = []
        bad = 0
        try:
            with open(self.path, "rb") as f:
                for raw in f:
                    try:
                        rec = json.loads(raw)
                    except (ValueError, RecursionError):
                        rec = None
                    if isinstance(rec, dict):
                        records.append(rec)
                    elif raw.strip():
                        bad += 1
        except FileNotFoundError:
            pass
        return records, bad

    def append(self, rec: dict[str, Any] | bytes) -> None:
        line = rec if isinstance(rec, bytes) else (json.dumps(rec, separators=(",", ":")) + "\n").encode()
        self.lines += 1
        if self._pending is not None:
            self._pending.append(line)
        if self._fd is not None:
            try:
                _write_all(self._fd, line)
            except OSError as e:
                event("journal-error", op="append", path=self.path, error=e.strerror)

    def _open_tmp(self) -> tuple[str, int]:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o750, exist_ok=True)
        tmp = self.path + ".tmp"
        return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)

    def _install(self, tmp: str, count: int) -> None:
        os.replace(tmp, self.path)
        old, self._fd = self._fd, os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        if old is not None:
            os.close(old)
        self.lines = count

    def compact(self, lines: list[bytes]) -> None:
        """Atomically replace the journal with ``lines`` (blocking; start-up)."""
        tmp, fd = self._open_tmp()
        try:
            _write_all(fd, b"".join(lines))
            os.fsync(fd)
        except BaseException:
            os.unlink(tmp)
            raise
        finally:
            os.close(fd)
        self._install(tmp, len(lines))
        _fsync_dir(self.path)

    async def compact_async(self, items: list[tuple[str, Grant]], now: float) -> None:
        """Same for the grants in ``items`` still valid at ``now``, without
        stalling the loop: encode in small chunks, fsync in a thread, and
        carry over the events appended meanwhile."""
        loop = asyncio.get_running_loop()
        tmp, fd = self._open_tmp()
        self._pending = []
        installed = False
        kept = 0
        try:
            for i in range(0, len(items), COMPACT_CHUNK):
                lines = [grant_line(ip, g) for ip, g in items[i:i + COMPACT_CHUNK] if now < g[0]]
                _write_all(fd, b"".join(lines))
                kept += len(lines)
                await asyncio.sleep(0)
            await loop.run_in_executor(None, os.fsync, fd)
            pending = self._pending
            _write_all(fd, b"".join(pending))  # no await from here to install
            os.close(fd)
            fd = -1
            self._install(tmp, kept + len(pending))
            installed = True
        finally:
            self._pending = None
            if fd >= 0:
                os.close(fd)
            if not installed and os.path.exists(tmp):
                os.unlink(tmp)
        await loop.run_in_executor(None, _fsync_dir, self.path)

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError as e:
                event("journal-error", op="fsync", path=self.path, error=e.strerror)
            os.close(self._fd)
            self._fd = None


# ------------------------------------------------------------------ grants ---

class GrantStore:
    """ip -> (expires, user, login).  ``clock`` is injectable for tests."""

    def __init__(self, ttl: int, never_authorize: tuple[Any, ...] = (),
                 journal: Journal | None = None, clock: Callable[[], float] = time.time) -> None:
        self.ttl = ttl
        self.never = tuple(never_authorize)
        self.journal = journal
        self.clock = clock
        self.grants: dict[str, Grant] = {}

    def never_authorized(self, ip: str) -> bool:
        if not self.never:
            return False
        addr = ipaddress.ip_address(ip)
        return any(addr in net for net in self.never)

    def lookup(self, ip: str) -> Grant | None:
        g = self.grants.get(ip)
        return g if g is not None and self.clock() < g[0] else None

    def valid(self) -> list[tuple[str, Grant]]:
        now = self.clock()
        return [(ip, g) for ip, g in self.grants.items() if now < g[0]]

    def grant(self, ip: str, user: str, source: str) -> float | None:
        """Grant (or refresh) a normalised ip; returns expiry, None if refused."""
        if self.never_authorized(ip):
            event("grant-refused", reason="never-authorize", user=user, ip=ip, source=source)
            return None
        now = self.clock()
        g = (now + self.ttl, user[:MAX_USER], now)
        self.grants.pop(ip, None)  # re-insert at the end: keeps expiry order
        self.grants[ip] = g
        if self.journal is not None:
            self.journal.append(grant_line(ip, g))
        event("grant", user=g[1], ip=ip, expires=iso(g[0]), source=source)
        return g[0]

    def revoke(self, ip: str, source: str = "admin") -> bool:
        was_valid = self.lookup(ip) is not None
        g = self.grants.pop(ip, None)
        if g is not None:
            if self.journal is not None:
                self.journal.append({"op": "revoke", "ip": ip, "at": self.clock()})
            event("revoke", ip=ip, user=g[1], source=source)
        return was_valid

    def flush(self, source: str = "admin") -> int:
        count = len(self.valid())
        self.grants.clear()
        if self.journal is not None:
            self.journal.append({"op": "flush", "at": self.clock()})
        event("flush", grants=count, source=source)
        return count

    def sweep(self, limit: int = SWEEP_BATCH) -> int:
        """Drop up to ``limit`` expired grants from the front; returns count."""
        now = self.clock()
        expired = []
        for ip, g in self.grants.items():
            if now < g[0] or len(expired) >= limit:
                break
            expired.append(ip)
        for ip in expired:
            event("expired", ip=ip, user=self.grants.pop(ip)[1])
        return len(expired)

    def restore(self) -> int:
        """Replay the journal, keep still-valid grants (expiry capped to
        login + current ttl, never extended), then compact it."""
        if self.journal is None:
            return 0
        records, bad = self.journal.replay()
        state: dict[str, Grant] = {}
        for rec in records:
            op, ip = rec.get("op"), normalize_ip(rec.get("ip"))
            exp, user, login = rec.get("expires"), rec.get("user"), rec.get("login")
            if op == "flush":
                state.clear()
            elif op == "revoke" and ip is not None:
                state.pop(ip, None)
            elif (op == "grant" and ip is not None and isinstance(user, str)
                  and all(type(v) in (int, float) and abs(v) < 1e12 for v in (exp, login))):
                state[ip] = (float(exp), user[:MAX_USER], float(login))
            else:
                bad += 1
        if bad:
            event("journal-skipped", lines=bad, path=self.journal.path)
        now = self.clock()
        kept = []
        for ip, (exp, user, login) in state.items():
            exp = min(exp, min(login, now) + self.ttl)  # min(login, now): clock went back
            if now >= exp:
                continue
            if self.never_authorized(ip):
                event("grant-refused", reason="never-authorize", user=user, ip=ip, source="journal")
                continue
            kept.append((exp, ip, user, login))
        kept.sort()
        self.grants = {ip: (exp, user, login) for exp, ip, user, login in kept}
        self.journal.compact([grant_line(ip, g) for ip, g in self.grants.items()])
        return len(self.grants)

    def needs_compaction(self) -> bool:
        j = self.journal
        return j is not None and j.lines > max(COMPACT_MIN_LINES, COMPACT_FACTOR * len(self.grants))

    async def compact(self) -> None:
        if self.journal is not None:
            await self.journal.compact_async(list(self.grants.items()), self.clock())


# ---------------------------------------------------------------- daemon ---

class Daemon:
    def __init__(self, cfg: Config, token: bytes, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.token = token
        self.store = GrantStore(cfg.ttl, cfg.never_authorize, Journal(cfg.state_file), clock)
        self.clock = clock
        self.decisions = self.permitted = self.reports = 0
        self.conns: set[asyncio.BaseTransport] = set()
        self._norm: dict[bytes, str | None] = {}
        self._relay_seen: dict[str, tuple[bytes, ...]] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._admin_bound = False
        self.policy_port = self.report_port = 0

    async def start(self) -> None:
        restored = self.store.restore()
        loop = asyncio.get_running_loop()
        try:
            for listen, proto in ((self.cfg.policy_listen, PolicyProtocol),
                                  (self.cfg.report_listen, ReportProtocol)):
                srv = await loop.create_server(lambda p=proto: p(self), *listen, reuse_address=True)
                self._servers.append(srv)
            self.policy_port, self.report_port = (s.sockets[0].getsockname()[1] for s in self._servers)
            path = self.cfg.admin_socket
            _prepare_admin_socket(path)
            old = os.umask(0o177)
            try:
                self._servers.append(await loop.create_unix_server(lambda: AdminProtocol(self), path))
                self._admin_bound = True
            finally:
                os.umask(old)
            os.chmod(path, 0o600)
        except BaseException:
            await self.stop(log_stop=False)
            raise
        self._sweeper = asyncio.create_task(self._sweep_loop())
        event("start", ttl=self.cfg.ttl, **{"grants-restored": restored},
              policy=f"{self.cfg.policy_listen[0]}:{self.policy_port}",
              report=f"{self.cfg.report_listen[0]}:{self.report_port}", admin=self.cfg.admin_socket)

    async def stop(self, log_stop: bool = True) -> None:
        for srv in self._servers:
            srv.close()
        for transport in list(self.conns):
            transport.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._admin_bound:
            self._admin_bound = False
            with contextlib.suppress(OSError):
                os.unlink(self.cfg.admin_socket)
        self._servers.clear()
        if self.store.journal is not None:
            self.store.journal.close()
        if log_stop:
            event("stop", grants=len(self.store.grants))

    def reload_token(self) -> None:
        try:
            self.token = read_token(self.cfg.token_file)
            event("reload", token="ok")
        except ConfigError as e:
            event("reload", token="kept-old", error=str(e))

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.sweep_interval)
            while self.store.sweep() == SWEEP_BATCH:
                await asyncio.sleep(0)
            grants = self.store.grants
            for ip in [ip for ip in self._relay_seen if ip not in grants]:
                del self._relay_seen[ip]
            if self.store.needs_compaction():
                try:
                    await self.store.compact()
                except Exception as e:  # keep serving from memory; retried next sweep
                    event("journal-error", op="compact", path=self.cfg.state_file, error=str(e))

    # -- Postfix policy: the hot path
    def policy_decide(self, req: bytes, now: float) -> bytes:
        self.decisions += 1
        raw = _attr(req, b"client_address=")
        if raw is None or _attr(req, b"request=") != b"smtpd_access_policy":
            return DUNNO
        ip = self._norm.get(raw, "")  # "" = not cached yet; None = unparsable
        if ip == "":
            if len(self._norm) >= NORM_CACHE_MAX:
                self._norm.clear()
            try:
                ip = self._norm[raw] = normalize_ip(raw.decode("ascii"))
            except UnicodeDecodeError:
                ip = None
        if ip is None:
            return DUNNO
        g = self.store.grants.get(ip)
        if g is None or now >= g[0]:
            return DUNNO
        self.permitted += 1
        instance = _attr(req, b"instance=") or b""
        seen = self._relay_seen.get(ip, ())
        if instance not in seen:
            self._relay_seen[ip] = (seen + (instance,))[-8:]
            event("relay-permitted", ip=ip, user=g[1], sender=_text(_attr(req, b"sender=")),
                  recipient=_text(_attr(req, b"recipient=")), instance=_text(instance))
        return OK

    # -- Dovecot auth policy
    def handle_report(self, doc: dict[str, Any]) -> str:
        """Grant on a successful login of an accepted protocol; returns outcome."""
        self.reports += 1
        if doc.get("success") is not True:
            return "failed-login"
        if doc.get("policy_reject") is True:
            return "policy-reject"
        protocol = doc.get("protocol")
        if not isinstance(protocol, str) or protocol.lower() not in self.cfg.protocols:
            return "protocol"
        user = doc.get("login") if isinstance(doc.get("login"), str) else ""
        ip = normalize_ip(doc.get("remote"))
        if ip is None:
            event("report-ignored", reason="bad-remote", user=user, remote=doc.get("remote"))
            return "bad-remote"
        return "granted" if self.store.grant(ip, user, "dovecot") is not None else "never-authorize"

    def handle_http(self, req: HttpRequest, peer: str) -> tuple[int, bytes]:
        key = req.headers.get("x-api-key", "").encode("latin-1")
        if not hmac.compare_digest(key, self.token):
            event("report-refused", reason="bad-token", peer=peer)
            return 403, b'{"error":"bad token"}'
        if req.method != "POST":
            return 405, b'{"error":"use POST"}'
        url = urlsplit(req.target)
        if url.path not in ("", "/"):
            return 404, b'{"error":"not found"}'
        command = parse_qs(url.query).get("command", [""])[0]
        if command == "allow":
            return 200, HTTP_OK_BODY
        if command != "report":
            return 400, b'{"error":"unknown command"}'
        try:
            doc = json.loads(req.body)
        except (ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict):
            return 400, b'{"error":"body is not a JSON object"}'
        self.handle_report(doc)
        return 200, HTTP_OK_BODY

    # -- admin socket
    def handle_admin(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
        except (ValueError, RecursionError):
            req = None
        if not isinstance(req, dict):
            return {"ok": False, "error": "malformed request"}
        cmd = req.get("cmd")
        if cmd == "list":
            now = self.clock()
            return {"ok": True, "now": now, "grants": [
                {"ip": ip, "user": g[1], "login": g[2], "expires": g[0], "seconds_left": int(g[0] - now)}
                for ip, g in self.store.valid()]}
        if cmd == "flush":
            return {"ok": True, "flushed": self.store.flush()}
        if cmd == "stats":
            return {"ok": True, "pid": os.getpid(), "grants": len(self.store.grants),
                    "decisions": self.decisions, "permitted": self.permitted, "reports": self.reports}
        if cmd not in ("grant", "revoke"):
            return {"ok": False, "error": f"unknown command {clean(cmd)}"}
        ip = normalize_ip(req.get("ip"))
        if ip is None:
            return {"ok": False, "error": f"invalid IP address {clean(req.get('ip'))}"}
        if cmd == "revoke":
            return {"ok": True, "ip": ip, "revoked": self.store.revoke(ip)}
        user = req.get("user") or "admin"
        if not isinstance(user, str):
            return {"ok": False, "error": "user must be a string"}
        expires = self.store.grant(ip, user, "admin")
        if expires is None:
            return {"ok": False, "error": f"{ip} is inside never_authorize"}
        return {"ok": True, "ip": ip, "user": user[:MAX_USER], "expires": expires}


def _prepare_admin_socket(path: str) -> None:
    """Create the directory; refuse to steal the socket of a running daemon."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o750, exist_ok=True)
    if os.path.exists(path):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(path)
            except OSError:
                os.unlink(path)  # stale
                return
        raise OSError(f"{path}: another daemon is listening")


# -------------------------------------------------------------- protocols ---

class _Base(asyncio.Protocol):
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.buf = b""
        self.transport: asyncio.Transport = None  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.d.conns.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.d.conns.discard(self.transport)

    def peer(self) -> str:
        peer = self.transport.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


class PolicyProtocol(_Base):
    """Postfix policy delegation: ``name=value`` lines, blank line ends a
    request; many (possibly pipelined) requests per connection."""

    def data_received(self, data: bytes) -> None:
        if self.buf:  # only the new bytes (plus one) can end a request: linear if dribbled
            complete, buf = b"\n\n" in self.buf[-1:] + data, self.buf + data
        else:
            complete, buf = True, data
        if complete:
            requests = buf.split(b"\n\n")
            buf = requests.pop()
            if requests:
                decide, now = self.d.policy_decide, self.d.clock()
                self.transport.write(b"".join([decide(r, now) for r in requests]))
        self.buf = buf
        if len(buf) > MAX_POLICY_REQUEST:
            event("policy-oversized", peer=self.peer())
            self.transport.close()


class HttpError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class HttpRequest(NamedTuple):
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes


def _dechunk(buf: bytes, pos: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``pos``; None while incomplete."""
    chunks, total = [], 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            if len(buf) - pos > 1024:
                raise HttpError(400, "bad chunk header")
            return None
        size = buf[pos:eol].split(b";", 1)[0].strip(b" \t")
        if not size or len(size) > 8 or not _HEX.issuperset(size):
            raise HttpError(400, "bad chunk size")
        n, pos = int(size, 16), eol + 2
        if n == 0:
            while True:  # trailer fields up to an empty line
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    if len(buf) - pos > MAX_HTTP_HEADER:
                        raise HttpError(400, "trailer too large")
                    return None
                if eol == pos:
                    return b"".join(chunks), eol + 2
                pos = eol + 2
        total += n
        if total > MAX_HTTP_BODY:
            raise HttpError(413, "body too large")
        if len(buf) < pos + n + 2:
            return None
        if buf[pos + n:pos + n + 2] != b"\r\n":
            raise HttpError(400, "bad chunk terminator")
        chunks.append(buf[pos:pos + n])
        pos += n + 2


def parse_http_request(buf: bytes, start: int = 0) -> tuple[HttpRequest, int] | None:
    """One complete HTTP/1.x request at ``buf[start:]`` and the offset after
    it, None if more data is needed; raises HttpError if malformed."""
    end = buf.find(b"\r\n\r\n", start)
    if end < 0:
        if len(buf) - start > MAX_HTTP_HEADER:
            raise HttpError(400, "header too large")
        return None
    lines = buf[start:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[0].isalpha():
        raise HttpError(400, "bad request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or not name.isprintable():
            raise HttpError(400, "bad header")
        name, value = name.lower(), value.strip(" \t")
        if name in headers and name in ("content-length", "x-api-key"):
            raise HttpError(400, f"duplicate {name}")
        headers[name] = headers[name] + "," + value if name in headers else value
    pos = end + 4
    if "transfer-encoding" in headers:
        if headers["transfer-encoding"].lower() != "chunked" or "content-length" in headers:
            raise HttpError(400, "unsupported transfer-encoding")
        done = _dechunk(buf, pos)
        if done is None:
            return None
        body, pos = done
    else:
        length = headers.get("content-length", "0")
        if not (length.isascii() and length.isdigit()):
            raise HttpError(400, "bad content-length")
        if int(length) > MAX_HTTP_BODY:
            raise HttpError(413, "body too large")
        if len(buf) < pos + int(length):
            return None
        body, pos = buf[pos:pos + int(length)], pos + int(length)
    return HttpRequest(parts[0], parts[1], parts[2], headers, body), pos


class ReportProtocol(_Base):
    """Minimal HTTP/1.1 server for Dovecot's auth policy: keep-alive,
    pipelining, Content-Length or chunked bodies."""

    def data_received(self, data: bytes) -> None:
        buf, pos = self.buf + data, 0
        while pos < len(buf) and not self.transport.is_closing():
            while buf.startswith(b"\r\n", pos):  # tolerated between requests
                pos += 2
            try:
                parsed = parse_http_request(buf, pos)
            except HttpError as e:
                self.respond(e.status, json.dumps({"error": str(e)}).encode(), keep=False)
                break
            if parsed is None:
                break
            req, pos = parsed
            conn = req.headers.get("connection", "").lower()
            keep = "close" not in conn if req.version == "HTTP/1.1" else "keep-alive" in conn
            self.respond(*self.d.handle_http(req, self.peer()), keep=keep)
        self.buf = buf[pos:]

    def respond(self, status: int, body: bytes, keep: bool) -> None:
        head = (f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n")
        if not keep:
            head += "Connection: close\r\n"
        self.transport.write(head.encode() + b"\r\n" + body)
        if not keep:
            self.transport.close()


class AdminProtocol(_Base):
    """One JSON object per line each way."""

    def data_received(self, data: bytes) -> None:
        *lines, self.buf = (self.buf + data).split(b"\n")
        if lines:
            self.transport.write(b"".join(json.dumps(self.d.handle_admin(x)).encode() + b"\n" for x in lines))
        if len(self.buf) > MAX_ADMIN_LINE:
            self.transport.close()


# -------------------------------------------------------------------- CLI ---

def admin_call(path: str, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(request).encode() + b"\n")
        chunks = []
        while not chunks or not chunks[-1].endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                raise OSError("connection closed by daemon")
            chunks.append(chunk)
    return json.loads(b"".join(chunks))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="POP-before-SMTP relay daemon and admin CLI.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE",
                        help=f"INI file with a [{SECTION}] section (default {DEFAULT_CONFIG} if it exists)")
    common.add_argument("--admin-socket", metavar="PATH", help=f"default {DEFAULTS['admin_socket']}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", parents=[common], help="run the daemon")
    metavars = {"policy_listen": "HOST:PORT", "report_listen": "HOST:PORT", "state_file": "FILE",
                "token_file": "FILE", "ttl": "SECONDS", "never_authorize": "CIDRS", "protocols": "LIST",
                "sweep_interval": "SECONDS"}
    for key, metavar in metavars.items():
        serve.add_argument("--" + key.replace("_", "-"), dest=key, metavar=metavar,
                           help=f"default {DEFAULTS[key]!r}")
    listing = sub.add_parser("list", parents=[common], help="show valid grants")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    grant = sub.add_parser("grant", parents=[common], help="permit relay from IP for ttl seconds")
    grant.add_argument("ip")
    grant.add_argument("--user", default="admin", help="name recorded in the audit log (default admin)")
    sub.add_parser("revoke", parents=[common], help="withdraw the grant of IP").add_argument("ip")
    sub.add_parser("flush", parents=[common], help="withdraw all grants")
    return parser


def run_admin(args: argparse.Namespace, socket_path: str) -> int:
    request: dict[str, Any] = {"cmd": args.command}
    if args.command in ("grant", "revoke"):
        ip = normalize_ip(args.ip)
        if ip is None:
            print(f"{PROG}: invalid IP address: {args.ip!r}", file=sys.stderr)
            return 2
        request["ip"] = ip
        if args.command == "grant":
            request["user"] = args.user
    try:
        reply = admin_call(socket_path, request)
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        print(f"{PROG}: cannot reach the daemon at {socket_path}: {reason}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"{PROG}: {reply.get('error', 'request failed')}", file=sys.stderr)
        return 1
    if args.command == "list":
        grants = sorted(reply["grants"], key=lambda g: g["expires"])
        if args.json:
            print(json.dumps([dict(g, expires_iso=iso(g["expires"])) for g in grants], indent=2))
            return 0
        rows = [("IP", "USER", "EXPIRES", "LEFT")]
        rows += [(g["ip"], clean(g["user"], 64), iso(g["expires"]), f"{g['seconds_left']}s") for g in grants]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for r in rows:
            print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    elif args.command == "grant":
        print(f"granted {reply['ip']} to {clean(reply['user'])} until {iso(reply['expires'])}")
    elif args.command == "revoke":
        print(f"revoked {reply['ip']}" if reply["revoked"] else f"{reply['ip']} had no valid grant")
    else:
        print(f"flushed {reply['flushed']} grant(s)")
    return 0


async def _serve(cfg: Config, token: bytes) -> int:
    daemon = Daemon(cfg, token)
    try:
        await daemon.start()
    except OSError as e:
        event("error", reason="startup", error=e.strerror or str(e), path=e.filename or "")
        return 1
    gc.freeze()  # start-up objects out of the collector's way: shorter full-collection pauses
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload_token)
    await stopping.wait()
    await daemon.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k in DEFAULTS}
    try:
        cfg = load_config(args.config, overrides)
        if args.command != "serve":
            return run_admin(args, cfg.admin_socket)
        token = read_token(cfg.token_file)
    except ConfigError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    setup_logging()
    if hasattr(sys.stderr, "reconfigure"):
        sys.stderr.reconfigure(errors="backslashreplace")
    return asyncio.run(_serve(cfg, token))


if __name__ == "__main__":
    sys.exit(main())
