#!/usr/bin/python3
"""pop-before-smtp: relay authorisation after a POP3 login, Cobalt Qube 3 style.

"When a user logs in for POP3 email, the Qube 3 notes the IP address from which
the connection was made and permits relay from that IP address for a limited
time ... the IP addresses expire after 15 minutes."  One asyncio loop serves:

* report (HTTP on loopback, ``report_listen``): Dovecot's auth-policy interface.  With
  ``auth_policy_report_after_auth = yes`` Dovecot POSTs ``/?command=report``
  after every authentication (the only command served: no policy checks are
  asked for); a successful pop3 login grants its remote IP.
  Only connections whose other end belongs to an allowed local account (root,
  Dovecot's auth service) are served: the kernel says who owns a loopback
  peer (sock_diag), and the shared token must match too.
* policy (unix socket in Postfix's spool, 0600 postfix): Postfix's policy
  delegation protocol, used in smtpd_relay_restrictions.  ``action=OK`` for a
  granted client_address (exact IP, never a subnet), ``action=DUNNO`` for
  everything else.  With ``bind_sender`` the grant also says who: an IP
  keeps the users whose logins unlocked it (several behind one NAT, each
  with their own expiry), and relay is permitted only for an envelope
  sender one of them owns (``senders_file``: Postfix's sender_logins
  table); another sender is refused with a clear 553 at the relay stage
  (``policy_context=relay``) and left to Postfix's own checks at the sender
  stage (``policy_context=sender``: DUNNO, so inbound mail is never refused
  here).
* grants (unix socket, 0600, of one reader: rspamd's user): a Sendmail-style
  socketmap with one map, ``grant``.  Asked with a client's address as rspamd
  scans its message, it answers ``OK USER[,USER...]`` for a granted address
  (expiry decided at that lookup), so rspamd treats the mail as sent by a
  user: signed, not scored as inbound; ``NOTFOUND`` for every other address,
  loopback included.  Postfix never waits on it: rspamd asks with a short
  timeout, and a daemon that is down or hung means the mail is scored as
  inbound, never refused.
* admin (unix socket, 0600 root): one JSON line per request; the ``list``,
  ``grant``, ``revoke``, ``flush`` and ``stats`` sub-commands of this same
  file are its client.

Under systemd the listening sockets belong to socket units and are
inherited (``sockets = systemd``): they stay bound while the daemon is down,
restarting or replaying its journal, so no other process can ever answer in
its place; connections queue until it is back.

Every connection is bounded: a cap per listener (the longest-idle connection
makes room for a new one), an idle timeout, a time limit for a request to
arrive, a size limit for a whole request, and back-pressure -- a connection
whose unsent replies pass WRITE_HIGH is not read until they drain.  Repeated
errors are logged once per LOG_INTERVAL with a count.

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
cut short other restrictions).  The one refusal is a granted address whose
users do not own the sender (``bind_sender``), at the relay stage only:
Postfix asks there only for mail to other domains, so it never refuses
inbound mail.  If the daemon is down, Postfix applies its
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
import errno
import functools
import gc
import hmac
import ipaddress
import itertools
import json
import logging
import math
import os
import pwd
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

PROG = "pop-before-smtp"
SECTION = "pop-before-smtp"
DEFAULT_CONFIG = "/etc/pop-before-smtp/pop-before-smtp.conf"
# The keys the role writes into the config file, every one of them, from
# its variables (roles/pop_before_smtp/meta/argument_specs.yml) and paths: the
# daemon keeps no copy of their defaults, so a missing one is an error at
# start that names it. Flags (serve --ttl ...) override the file.
REQUIRED = ("sockets", "policy_listen", "report_listen", "report_users", "admin_socket", "state_file",
            "token_file", "ttl", "never_authorize", "protocols", "sweep_interval", "bind_sender",
            "senders_file", "grants_listen")
# The daemon's own limits, not settings of the role: these may be left out.
DEFAULTS: dict[str, str] = {
    "max_grants": "200000",
}
KEYS = REQUIRED + tuple(DEFAULTS)
LISTENERS = ("policy", "report", "admin", "grants")
MAX_POLICY_REQUEST = 64 * 1024
# A socketmap request is one netstring "NAME KEY": Postfix's client address
# keys are at most an IPv6 address with a scope; anything longer is garbage.
MAX_SOCKETMAP_REQUEST = 512
MAX_HTTP_HEADER = 16 * 1024
MAX_HTTP_BODY = 64 * 1024
MAX_HTTP_REQUEST = 2 * MAX_HTTP_HEADER + MAX_HTTP_BODY  # head + body + trailers, all told
MAX_ADMIN_LINE = 64 * 1024
MAX_USER = 256
MAX_USERS_PER_IP = 16  # users behind one address (NAT) with a live grant each; the oldest makes room
MAX_SENDERS_FILE = 16 * 1024 * 1024  # bytes of senders_file read at most
MAX_SENDERS = 200_000  # addresses in it
WRITE_HIGH = 64 * 1024  # unsent replies on a connection before it is no longer read
WRITE_LOW = 16 * 1024
LOG_INTERVAL = 60.0  # a repeated error is logged once per interval, with a count
REAP_INTERVAL = 1.0


class Limits(NamedTuple):
    connections: int  # open at once; the longest-idle one makes room for a new one
    idle: float  # seconds without a byte in either direction
    request: float  # seconds a started request may take to arrive whole


# Postfix keeps a policy connection per smtpd process (default_process_limit
# 100) for up to smtpd_policy_service_max_idle = 300 s; Dovecot's auth
# process keeps a few HTTP connections.  The sum stays far below LimitNOFILE.
LIMITS = {"policy": Limits(256, 330.0, 10.0), "report": Limits(32, 60.0, 10.0),
          "admin": Limits(8, 60.0, 10.0), "grants": Limits(64, 330.0, 10.0)}
SOCKETMAP_NAME = b"grant"  # the one map served on the grants socket
SWEEP_BATCH = 100  # expired grants (and log lines) per loop iteration
COMPACT_FACTOR = 2  # the journal stays under twice the live set (plus COMPACT_MIN_LINES)
COMPACT_MIN_LINES = 1024
COMPACT_CHUNK = 256
NORM_CACHE_MAX = 8192  # policy client_address -> normalised; ~150 bytes an entry
OK = b"action=OK\n\n"
DUNNO = b"action=DUNNO\n\n"
NOT_YOURS = (b"action=553 5.7.1 Sender address not yours: the POP3 login that unlocked relay from this "
             b"address was not its owner's; send as your own address, or log in on port 587\n\n")
HTTP_OK_BODY = b'{"status":0,"msg":""}'
REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 413: "Payload Too Large"}
_SPECIAL = frozenset(' "\\=')
_HEX = frozenset(b"0123456789abcdefABCDEF")

log = logging.getLogger(PROG)


# A grant is an exact tuple (expires, user, login), its fields read by name:
# g[EXPIRES] is login + ttl in absolute wall-clock time (valid while now <
# it), g[USER] the account that logged in (interned), g[LOGIN] the login time.
# Not a NamedTuple or a class: the collector stops tracking an exact tuple of
# floats and a str, so a large live set adds nothing to each full collection
# (measured with 100 000 grants: a NamedTuple made it 10-15 ms longer and the
# start-up replay 10% slower).
Grant = tuple[float, str, float]
EXPIRES, USER, LOGIN = 0, 1, 2

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


_limited: dict[str, list[float]] = {}  # event name -> [window start, suppressed count]


def event_limited(name: str, **fields: object) -> None:
    """``event`` for errors a client can repeat at will: the first of a name
    in each LOG_INTERVAL is logged, the rest are counted and the count is
    logged when the interval ends (``flush_limited``), so a flood can never
    crowd grant and relay audit lines out of the journal."""
    now = time.monotonic()
    window = _limited.get(name)
    if window is not None and now - window[0] < LOG_INTERVAL:
        window[1] += 1
        return
    if window is not None and window[1]:
        event(name, suppressed=int(window[1]), seconds=int(now - window[0]))
    _limited[name] = [now, 0]
    event(name, **fields)


def flush_limited(force: bool = False) -> None:
    """Log the counts of intervals that have ended (all of them if force)."""
    now = time.monotonic()
    for name, window in list(_limited.items()):
        if force or now - window[0] >= LOG_INTERVAL:
            if window[1]:
                event(name, suppressed=int(window[1]), seconds=int(now - window[0]))
            del _limited[name]


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
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:  # fast path: text the C library prints back unchanged is canonical
        if socket.inet_ntop(family, socket.inet_pton(family, text)) == text and not text.startswith("::ffff:"):
            return text
    except (OSError, ValueError):
        pass
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def parse_listen(value: str) -> tuple[str, int] | str:
    """``host:port``, ``[v6]:port`` or ``unix:/absolute/path``."""
    value = value.strip()
    if value.startswith("unix:"):
        path = value[5:]
        if not path.startswith("/") or len(path.encode()) > 100:
            raise ValueError(f"bad listen address {value!r} (want unix:/ABSOLUTE/PATH)")
        return path
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"bad listen address {value!r} (want HOST:PORT or unix:PATH)")
    return host, int(port)


def listen_text(addr: tuple[str, int] | str) -> str:
    return f"unix:{addr}" if isinstance(addr, str) else f"{addr[0]}:{addr[1]}"


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


# ---------------------------------------------------------------- sockets ---

SD_LISTEN_FDS_START = 3
# Python 3.13 (Debian 13) removes a unix server's socket file when it
# closes, and to know which file stats the path at start: the policy
# socket's, in Postfix's private/ (0700), is PermissionError to us, and
# the file belongs to systemd (and our own bind's to _bound_paths) anyway.
UNIX_SERVER_OPTIONS: dict[str, Any] = {"cleanup_socket": False} if sys.version_info >= (3, 13) else {}
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
INET_DIAG_NOCOOKIE = 0xFFFFFFFF
_NLMSGHDR = struct.Struct("=IHHII")
_UID_OFFSET = _NLMSGHDR.size + 4 + 48 + 12  # inet_diag_msg: 4 bytes, sockid, expires/rqueue/wqueue


def systemd_sockets(environ: dict[str, str] | None = None) -> dict[str, socket.socket]:
    """The listening sockets passed by systemd socket units (sd_listen_fds),
    by FileDescriptorName; empty when none were passed to this process."""
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()):
        return {}
    count = int(env.get("LISTEN_FDS", "0") or 0)
    names = env.get("LISTEN_FDNAMES", "").split(":")
    found = {}
    for i in range(count):
        fd = SD_LISTEN_FDS_START + i
        os.set_inheritable(fd, False)
        found[names[i] if i < len(names) and names[i] else f"fd{fd}"] = socket.socket(fileno=fd)
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)
    return found


def sd_notify(state: bytes, environ: dict[str, str] | None = None) -> None:
    """Tell systemd (Type=notify) the daemon's state, e.g. READY=1 once its
    signal handlers are in place: until then systemd queues a reload (a
    SIGHUP that would otherwise end a daemon still starting). Nothing
    without NOTIFY_SOCKET."""
    path = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not path:
        return
    if path.startswith("@"):  # an abstract socket
        path = "\0" + path[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.sendto(state, path)


def peer_uid(conn: socket.socket) -> int | None:
    """The uid that owns the other end of a local TCP connection, asked of
    the kernel (NETLINK_SOCK_DIAG, an exact lookup by the four-tuple), or
    None if it cannot be told: not TCP, not local, or the socket is gone."""
    family = conn.family
    if family not in (socket.AF_INET, socket.AF_INET6) or conn.type != socket.SOCK_STREAM:
        return None
    try:
        ours, theirs = conn.getsockname(), conn.getpeername()
        packed = [socket.inet_pton(family, a[0]).ljust(16, b"\0") for a in (theirs, ours)]
        # The peer's socket: its local end is our remote end.
        sockid = struct.pack("!HH16s16s", theirs[1], ours[1], *packed) + struct.pack(
            "=III", 0, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE)
        req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
            nl.settimeout(1.0)
            nl.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0) + req)
            data = nl.recv(8192)
    except OSError:
        return None
    if len(data) < _UID_OFFSET + 4 or _NLMSGHDR.unpack_from(data)[1] != SOCK_DIAG_BY_FAMILY:
        return None
    return struct.unpack_from("=I", data, _UID_OFFSET)[0]


def parse_users(value: str) -> frozenset[int] | None:
    """Account names or uids allowed to send reports; None = anyone (empty)."""
    uids = set()
    for item in value.replace(",", " ").split():
        if item.isdigit():
            uids.add(int(item))
            continue
        try:
            uids.add(pwd.getpwnam(item).pw_uid)
        except KeyError:
            raise ValueError(f"report_users: no such account {item!r}") from None
    return frozenset(uids | {0}) if uids else None


# ----------------------------------------------------------------- config ---

class ConfigError(Exception):
    pass


class Config(NamedTuple):
    sockets: str  # "systemd": inherit the listeners; "bind": make them (tests, benches)
    policy_listen: tuple[str, int] | str
    report_listen: tuple[str, int] | str
    report_users: frozenset[int] | None
    admin_socket: str
    state_file: str
    token_file: str
    ttl: int
    never_authorize: tuple[Any, ...]
    protocols: frozenset[str]
    sweep_interval: float
    bind_sender: bool
    senders_file: str
    grants_listen: tuple[str, int] | str | None  # None: no grant lookups
    max_grants: int


def read_config(path: str | None = None, overrides: dict[str, Any] | None = None,
                default_path: str = DEFAULT_CONFIG) -> dict[str, str]:
    """The raw settings: DEFAULTS < INI file < overrides (command-line flags;
    None = unset). Unknown keys are refused; missing ones are left out."""
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
            if key not in KEYS:
                raise ConfigError(f"{path}: unknown key {key!r}")
            raw[key] = value
    raw.update({k: str(v) for k, v in (overrides or {}).items() if v is not None and k in KEYS})
    return raw


def load_config(path: str | None = None, overrides: dict[str, Any] | None = None,
                default_path: str = DEFAULT_CONFIG) -> Config:
    """The daemon's settings (see read_config): every REQUIRED key must be given."""
    raw = read_config(path, overrides, default_path)
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        where = path or (default_path if os.path.exists(default_path) else "no config file")
        raise ConfigError(f"{where}: missing {', '.join(missing)} in [{SECTION}] "
                          "(the pop_before_smtp role writes every key)")
    try:
        ttl = int(raw["ttl"])
        sweep = float(raw["sweep_interval"])
        max_grants = int(raw["max_grants"])
        if ttl <= 0 or not 0 < sweep < 86400 or max_grants <= 0:
            raise ValueError("ttl, sweep_interval and max_grants must be positive")
        if raw["sockets"] not in ("bind", "systemd"):
            raise ValueError(f"sockets must be bind or systemd, not {raw['sockets']!r}")
        protocols = frozenset(p.lower() for p in raw["protocols"].replace(",", " ").split())
        if not protocols:
            raise ValueError("protocols is empty")
        bind = raw["bind_sender"].strip().lower()
        if bind not in ("yes", "no"):
            raise ValueError(f"bind_sender must be yes or no, not {raw['bind_sender']!r}")
        if bind == "yes" and not raw["senders_file"]:
            raise ValueError("bind_sender = yes needs a senders_file")
        grants_listen = parse_listen(raw["grants_listen"]) if raw["grants_listen"].strip() else None
        return Config(raw["sockets"], parse_listen(raw["policy_listen"]), parse_listen(raw["report_listen"]),
                      parse_users(raw["report_users"]), raw["admin_socket"], raw["state_file"],
                      raw["token_file"], ttl, parse_networks(raw["never_authorize"]), protocols, sweep,
                      bind == "yes", raw["senders_file"], grants_listen, max_grants)
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


Senders = dict[str, tuple[str, ...]]


def read_senders(path: str) -> Senders:
    """The envelope senders and the users who own them: Postfix's
    smtpd_sender_login_maps source, one ``address user,user`` a line ('#'
    comments). Bounded (MAX_SENDERS_FILE bytes, MAX_SENDERS lines); a bad
    line is an error naming it, so a broken file never binds half."""
    senders: Senders = {}
    owner_sets: dict[str, tuple[str, ...]] = {}  # one tuple per distinct owners field: most addresses share one
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SENDERS_FILE + 1)
    except OSError as e:
        raise ConfigError(f"cannot read senders file {path}: {e.strerror}") from None
    if len(data) > MAX_SENDERS_FILE:
        raise ConfigError(f"senders file {path} is larger than {MAX_SENDERS_FILE} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"senders file {path} is not UTF-8") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        address, names = fields[0], tuple(sorted({u for u in fields[-1].split(",") if u}))
        if len(fields) != 2 or "@" not in address or not names or any(len(u) > MAX_USER for u in names):
            raise ConfigError(f"senders file {path}, line {number}: expected 'ADDRESS USER[,USER...]'")
        if len(senders) >= MAX_SENDERS:
            raise ConfigError(f"senders file {path} has more than {MAX_SENDERS} addresses")
        key = ",".join(names)
        owners = owner_sets.get(key)
        if owners is None:
            owners = owner_sets[key] = tuple(sys.intern(u) for u in names)
        senders[address.lower()] = owners
    return senders


def sender_owners(senders: Senders, sender: str) -> tuple[str, ...]:
    """Who owns an envelope sender: its exact address, else the address
    without its +extension (as Postfix looks it up)."""
    address = sender.lower()
    owners = senders.get(address)
    if owners is None:
        local, at, domain = address.rpartition("@")
        base = local.partition("+")[0]
        if at and base != local:
            owners = senders.get(f"{base}@{domain}")
    return owners or ()


# ---------------------------------------------------------------- journal ---

def grant_line(ip: str, g: Grant) -> bytes:
    return (f'{{"op":"grant","ip":"{ip}","user":{json.dumps(g[USER])},'
            f'"login":{g[LOGIN]!r},"expires":{g[EXPIRES]!r}}}\n').encode()


class JournalError(Exception):
    """An event that had to be durable could not be written."""


class Journal:
    """Append-only JSON-lines journal of grant / revoke / flush events.

    Each event is one ``os.write`` of one whole line on an O_APPEND descriptor
    (no user-space buffer), so it is in the kernel at once and survives a crash
    or SIGKILL of the daemon.  Grants from logins are deliberately not
    fsync'ed: an fsync can stall the single event loop for milliseconds, and
    all it would add is surviving a power cut for the last few seconds of
    grants -- losing those fails closed (the user logs in to POP again).
    Admin changes are ``durable``: written and fsync'ed before they take
    effect, or refused -- a revoke that a restart could undo would fail open.
    A write that fails part-way is cut back, so no torn line is left for the
    next event to be glued to.  Compaction (tmp + fsync + rename) and
    shutdown fsync too.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines = 0
        self._fd: int | None = None
        self._pending: list[bytes] | None = None  # appends during compaction
        self._pending_durable = False

    def records(self, bad: list[int]) -> Iterator[dict[str, Any]]:
        """Each parsable record, one at a time (start-up memory stays that of
        the live set, however long the file); counts bad lines in bad[0]."""
        try:
            with open(self.path, "rb") as f:
                for raw in f:
                    try:
                        rec = json.loads(raw)
                    except (ValueError, RecursionError):
                        rec = None
                    if isinstance(rec, dict):
                        yield rec
                    elif raw.strip():
                        bad[0] += 1
        except FileNotFoundError:
            pass

    def append(self, rec: dict[str, Any] | bytes, durable: bool = False) -> None:
        """Write one event; raises JournalError if a durable one fails."""
        line = rec if isinstance(rec, bytes) else (json.dumps(rec, separators=(",", ":")) + "\n").encode()
        fd = self._fd
        if fd is None:
            if durable:
                raise JournalError(f"the journal {self.path} is not open")
            return
        size = -1
        try:
            size = os.fstat(fd).st_size
            _write_all(fd, line)
            if durable:
                os.fsync(fd)
        except OSError as e:
            if size >= 0:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
            event_limited("journal-error", op="append", path=self.path, error=e.strerror or str(e))
            if durable:
                raise JournalError(f"cannot write the journal {self.path}: {e.strerror or e}; "
                                   "nothing was changed") from None
            return
        self.lines += 1
        if self._pending is not None:
            self._pending.append(line)
            self._pending_durable = self._pending_durable or durable

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

    def _rewrite(self, items: Iterable[tuple[str, Grant]], now: float) -> Iterator[Callable[[], None] | None]:
        """The one crash-safe compaction, as steps for ``compact`` and
        ``compact_async`` to drive: write the grants of ``items`` still
        valid at ``now`` to a temporary file, COMPACT_CHUNK at a time
        (yielding None after each), fsync it, add the events appended
        meanwhile, install it and fsync the directory.  The two blocking
        fsyncs are yielded as calls for the driver to make, in a thread or
        not; from the appended events to the install nothing is yielded."""
        tmp, fd = self._open_tmp()
        self._pending, self._pending_durable = [], False
        installed = False
        kept = 0
        try:
            grants = iter(items)
            while batch := list(itertools.islice(grants, COMPACT_CHUNK)):
                lines = [grant_line(ip, g) for ip, g in batch if now < g[EXPIRES]]
                _write_all(fd, b"".join(lines))
                kept += len(lines)
                yield None
            yield functools.partial(os.fsync, fd)
            pending = self._pending
            _write_all(fd, b"".join(pending))  # nothing is yielded from here to the install
            if self._pending_durable:
                os.fsync(fd)  # an admin change made meanwhile stays durable in the new file
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
        yield functools.partial(_fsync_dir, self.path)

    def compact(self, items: Iterable[tuple[str, Grant]]) -> None:
        """Atomically replace the journal with ``items`` (blocking: start-up)."""
        with contextlib.closing(self._rewrite(items, -math.inf)) as steps:
            for step in steps:
                if step is not None:
                    step()

    async def compact_async(self, items: list[tuple[str, Grant]], now: float) -> None:
        """Same for the grants in ``items`` still valid at ``now``, without
        stalling the loop: it runs between chunks and during the fsyncs (in a
        thread), and the events appended meanwhile are carried over."""
        loop = asyncio.get_running_loop()
        with contextlib.closing(self._rewrite(items, now)) as steps:
            for step in steps:
                if step is None:
                    await asyncio.sleep(0)
                else:
                    await loop.run_in_executor(None, step)

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError as e:
                event("journal-error", op="fsync", path=self.path, error=e.strerror)
            os.close(self._fd)
            self._fd = None


# ------------------------------------------------------------------ grants ---

def _merge(grants: dict[str, Grant], others: dict[str, dict[str, Grant]], ip: str, g: Grant,
           now: float) -> None:
    """Make ``g`` the newest grant of ``ip`` (moved to the end: expiry
    order).  The grant it replaces stays beside it in ``others`` if it is
    another user's and still valid: a login never extends or ends another
    user's grant.  At most MAX_USERS_PER_IP users an address; the one that
    expires first makes room."""
    old = grants.pop(ip, None)
    extra = others.get(ip)
    if old is not None and old[USER] != g[USER] and now < old[EXPIRES]:
        if extra is None:
            extra = others[ip] = {}
        extra[old[USER]] = old
    if extra is not None:
        extra.pop(g[USER], None)
        for user in [u for u, o in extra.items() if now >= o[EXPIRES]]:
            del extra[user]
        while len(extra) >= MAX_USERS_PER_IP:
            del extra[min(extra, key=lambda u: extra[u][EXPIRES])]
        if not extra:
            del others[ip]
    grants[ip] = g


class GrantStore:
    """ip -> Grant (the newest login's), in expiry order, and ip -> {user:
    Grant} for the other users of an address whose grants are still live
    (``others``: several users behind one NAT).  ``clock`` is injectable
    for tests.  ``on_grow`` is called when the journal has outgrown the
    live set."""

    def __init__(self, ttl: int, never_authorize: tuple[Any, ...] = (),
                 journal: Journal | None = None, clock: Callable[[], float] = time.time,
                 max_grants: int = int(DEFAULTS["max_grants"])) -> None:
        self.ttl = ttl
        self.never = tuple(never_authorize)
        self.journal = journal
        self.clock = clock
        self.max_grants = max_grants
        self.grants: dict[str, Grant] = {}
        self.others: dict[str, dict[str, Grant]] = {}
        self.on_grow: Callable[[], None] | None = None

    def never_authorized(self, ip: str) -> bool:
        if not self.never:
            return False
        addr = ipaddress.ip_address(ip)
        return any(addr in net for net in self.never)

    def lookup(self, ip: str) -> Grant | None:
        g = self.grants.get(ip)
        return g if g is not None and self.clock() < g[EXPIRES] else None

    def valid(self) -> list[tuple[str, Grant]]:
        """Every live (ip, grant), one per user of an address."""
        now = self.clock()
        return [(ip, g) for ip, g in self.items() if now < g[EXPIRES]]

    def items(self) -> Iterator[tuple[str, Grant]]:
        """Every (ip, grant) kept, an address's other users before its
        newest: the order a replay of them rebuilds."""
        others = self.others
        for ip, g in self.grants.items():
            if ip in others:
                for other in others[ip].values():
                    yield ip, other
            yield ip, g

    def users(self, ip: str, g: Grant, now: float) -> Iterator[str]:
        """The users with a live grant on ``ip``, whose newest grant is ``g``."""
        if now < g[EXPIRES]:
            yield g[USER]
        for user, other in self.others.get(ip, {}).items():
            if now < other[EXPIRES]:
                yield user

    def _journal(self, rec: dict[str, Any] | bytes, durable: bool) -> None:
        if self.journal is None:
            return
        self.journal.append(rec, durable)
        if self.on_grow is not None and self.needs_compaction():
            self.on_grow()

    def grant(self, ip: str, user: str, source: str, durable: bool = False) -> float | None:
        """Grant (or refresh) a normalised ip; returns expiry, None if refused.
        Raises JournalError (and grants nothing) if a durable grant fails."""
        if self.never_authorized(ip):
            event("grant-refused", reason="never-authorize", user=user, ip=ip, source=source)
            return None
        if ip not in self.grants and len(self.grants) >= self.max_grants:
            while self.sweep() == SWEEP_BATCH:
                pass
            if len(self.grants) >= self.max_grants:
                event_limited("grant-refused", reason="max-grants", user=user, ip=ip, source=source)
                return None
        now = self.clock()
        g = (now + self.ttl, sys.intern(user[:MAX_USER]), now)  # (EXPIRES, USER, LOGIN)
        self._journal(grant_line(ip, g), durable)
        _merge(self.grants, self.others, ip, g, now)
        event("grant", user=g[USER], ip=ip, expires=iso(g[EXPIRES]), source=source)
        return g[EXPIRES]

    def revoke(self, ip: str, source: str = "admin") -> bool:
        """Withdraw ip's grant, durably first (raises JournalError otherwise)."""
        was_valid = self.lookup(ip) is not None
        if ip in self.grants:
            self._journal({"op": "revoke", "ip": ip, "at": self.clock()}, durable=True)
            users = [self.grants.pop(ip)[USER], *self.others.pop(ip, {})]
            event("revoke", ip=ip, user=",".join(users), source=source)
        return was_valid

    def flush(self, source: str = "admin") -> int:
        """Withdraw every grant, durably first (raises JournalError otherwise)."""
        count = len(self.valid())
        self._journal({"op": "flush", "at": self.clock()}, durable=True)
        self.grants.clear()
        self.others.clear()
        event("flush", grants=count, source=source)
        return count

    def sweep(self, limit: int = SWEEP_BATCH) -> int:
        """Drop up to ``limit`` expired grants from the front; returns count."""
        now = self.clock()
        expired = []
        for ip, g in self.grants.items():
            if now < g[EXPIRES] or len(expired) >= limit:
                break
            expired.append(ip)
        for ip in expired:  # the address's other users' grants expired before its newest
            users = [self.grants.pop(ip)[USER], *self.others.pop(ip, {})]
            event("expired", ip=ip, user=",".join(users))
        return len(expired)

    def restore(self) -> int:
        """Replay the journal, keep still-valid grants (expiry capped to
        login + current ttl, never extended), then compact it.  The journal
        is read one line at a time into the live set: memory is that of the
        live grants, not of the file."""
        if self.journal is None:
            return 0
        bad = [0]
        now = self.clock()
        state: dict[str, Grant] = {}
        others: dict[str, dict[str, Grant]] = {}
        for rec in self.journal.records(bad):
            op, ip = rec.get("op"), normalize_ip(rec.get("ip"))
            exp, user, login = rec.get("expires"), rec.get("user"), rec.get("login")
            if op == "flush":
                state.clear()
                others.clear()
            elif op == "revoke" and ip is not None:
                state.pop(ip, None)
                others.pop(ip, None)
            elif (op == "grant" and ip is not None and isinstance(user, str)
                  and all(type(v) in (int, float) and abs(v) < 1e12 for v in (exp, login))):
                exp = min(float(exp), min(float(login), now) + self.ttl)  # min(login, now): clock went back
                if now < exp:  # one line a login: merged per address as the logins were
                    _merge(state, others, ip, (exp, sys.intern(user[:MAX_USER]), float(login)), now)
            else:
                bad[0] += 1
        if bad[0]:
            event("journal-skipped", lines=bad[0], path=self.journal.path)
        for ip in [ip for ip in state if self.never_authorized(ip)]:
            others.pop(ip, None)
            event("grant-refused", reason="never-authorize", user=state.pop(ip)[USER], ip=ip, source="journal")
        order = sorted(state, key=lambda ip: state[ip][EXPIRES])  # references only: no pair per grant
        if len(order) > self.max_grants:  # keep the longest-lived
            event("grant-refused", reason="max-grants", grants=len(order) - self.max_grants, source="journal")
            del order[:len(order) - self.max_grants]
        self.grants = {ip: state[ip] for ip in order}
        self.others = {ip: extra for ip, extra in others.items() if ip in self.grants}
        del state, order, others
        self.journal.compact(self.items())
        return len(self.grants)

    def needs_compaction(self) -> bool:
        j = self.journal
        live = len(self.grants) + sum(map(len, self.others.values()))
        return j is not None and j.lines > max(COMPACT_MIN_LINES, COMPACT_FACTOR * live)

    async def compact(self) -> None:
        if self.journal is not None:
            await self.journal.compact_async(list(self.items()), self.clock())


# ---------------------------------------------------------------- daemon ---

class Daemon:
    def __init__(self, cfg: Config, token: bytes, clock: Callable[[], float] = time.time,
                 inherited: dict[str, socket.socket] | None = None, senders: Senders | None = None) -> None:
        self.cfg = cfg
        self.token = token
        if senders is None:
            senders = read_senders(cfg.senders_file) if cfg.bind_sender else {}
        self.senders = senders
        self.store = GrantStore(cfg.ttl, cfg.never_authorize, Journal(cfg.state_file), clock, cfg.max_grants)
        self.store.on_grow = self._schedule_compaction
        self.clock = clock
        self.decisions = self.permitted = self.reports = 0
        self.conns: dict[str, dict[asyncio.BaseTransport, _Base]] = {kind: {} for kind in LISTENERS}
        self.inherited = inherited or {}
        self._norm: dict[bytes, str | None] = {}
        self._relay_seen: dict[str, tuple[bytes, ...]] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._compactor: asyncio.Task[None] | None = None
        self._bound_paths: list[str] = []
        self.addresses: dict[str, str] = {}

    async def start(self) -> None:
        restored = self.store.restore()
        loop = asyncio.get_running_loop()
        factories = {"policy": PolicyProtocol, "report": ReportProtocol, "admin": AdminProtocol,
                     "grants": SocketmapProtocol}
        wanted = {"policy": self.cfg.policy_listen, "report": self.cfg.report_listen,
                  "admin": self.cfg.admin_socket, "grants": self.cfg.grants_listen}
        try:
            for kind in LISTENERS:
                if wanted[kind] is None:
                    continue
                sock = self._listener(kind, wanted[kind])
                factory = (lambda f=factories[kind]: f(self))
                if sock.family == socket.AF_UNIX:
                    srv = await loop.create_unix_server(factory, sock=sock, backlog=256, **UNIX_SERVER_OPTIONS)
                else:
                    srv = await loop.create_server(factory, sock=sock, backlog=256)
                self._servers.append(srv)
                self.addresses[kind] = listen_text(sock.getsockname())
        except BaseException:
            await self.stop(log_stop=False)
            raise
        self._tasks = [asyncio.create_task(self._sweep_loop()), asyncio.create_task(self._reap_loop())]
        event("start", ttl=self.cfg.ttl, **{"grants-restored": restored}, sockets=self.cfg.sockets,
              **self.addresses)

    def _listener(self, kind: str, addr: tuple[str, int] | str) -> socket.socket:
        """The inherited socket (sockets = systemd), or a new one (bind)."""
        if self.cfg.sockets == "systemd":
            sock = self.inherited.get(kind)
            if sock is None:
                raise OSError(errno.ENOENT, f"no {kind} socket from systemd (FileDescriptorName={kind})")
            return sock
        if isinstance(addr, str):
            _prepare_unix_socket(addr)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)
            try:
                sock.bind(addr)
            finally:
                os.umask(old)
            self._bound_paths.append(addr)
            return sock
        infos = socket.getaddrinfo(addr[0], addr[1], type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        sock = socket.socket(infos[0][0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(infos[0][4])
        return sock

    def port(self, kind: str) -> int:
        return int(self.addresses[kind].rpartition(":")[2])

    async def stop(self, log_stop: bool = True) -> None:
        for srv in self._servers:
            srv.close()
        for conns in self.conns.values():
            for transport in list(conns):
                transport.close()
        for task in self._tasks + ([self._compactor] if self._compactor else []):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks, self._compactor = [], None
        for path in self._bound_paths:  # ours only: systemd's stay for the next start
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._bound_paths.clear()
        self._servers.clear()
        if self.store.journal is not None:
            self.store.journal.close()
        flush_limited(force=True)
        if log_stop:
            event("stop", grants=len(self.store.grants))

    def reload_token(self) -> None:
        try:
            self.token = read_token(self.cfg.token_file)
            event("reload", token="ok")
        except ConfigError as e:
            event("reload", token="kept-old", error=str(e))

    def reload_senders(self) -> None:
        if not self.cfg.bind_sender:
            return
        try:
            self.senders = read_senders(self.cfg.senders_file)
            event("reload", senders=len(self.senders))
        except ConfigError as e:
            event("reload", senders="kept-old", error=str(e))

    def reload(self) -> None:
        """SIGHUP: the token and the senders again (each kept if unreadable)."""
        self.reload_token()
        self.reload_senders()

    def _schedule_compaction(self) -> None:
        if self._compactor is None or self._compactor.done():
            with contextlib.suppress(RuntimeError):  # no running loop: start-up or tests
                self._compactor = asyncio.get_running_loop().create_task(self._compact())

    async def _compact(self) -> None:
        try:
            await self.store.compact()
        except Exception as e:  # keep serving from memory; retried at the next growth or sweep
            event_limited("journal-error", op="compact", path=self.cfg.state_file, error=str(e))

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.sweep_interval)
            while self.store.sweep() == SWEEP_BATCH:
                await asyncio.sleep(0)
            grants = self.store.grants
            for ip in [ip for ip in self._relay_seen if ip not in grants]:
                del self._relay_seen[ip]
            if self.store.needs_compaction():
                self._schedule_compaction()
            flush_limited()

    async def _reap_loop(self) -> None:
        """Close connections that are idle too long or dribble a request."""
        while True:
            await asyncio.sleep(REAP_INTERVAL)
            now = time.monotonic()
            for kind, conns in self.conns.items():
                limits = LIMITS[kind]
                for proto in list(conns.values()):
                    proto.reap(now, limits)

    def admit(self, proto: _Base) -> None:
        """Count a new connection of ``proto.kind``; at the cap, the
        longest-idle connection is closed to make room for it."""
        conns = self.conns[proto.kind]
        if len(conns) >= LIMITS[proto.kind].connections:
            oldest = min(conns.values(), key=lambda p: p.last_active)
            event_limited("connection-limit", listener=proto.kind, limit=LIMITS[proto.kind].connections)
            oldest.transport.abort()
            conns.pop(oldest.transport, None)
        conns[proto.transport] = proto

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
        if g is None or now >= g[EXPIRES]:
            return DUNNO
        user = g[USER]
        if self.cfg.bind_sender:
            sender = _text(_attr(req, b"sender="))
            owners = sender_owners(self.senders, sender) if sender else ()
            user = next((u for u in self.store.users(ip, g, now) if u in owners), None)
            if user is None:
                # The sender stage leaves it to Postfix's own checks (a
                # stranger's mail to us from the same NAT still arrives); the
                # relay stage (or a request that does not say) refuses.
                if _attr(req, b"policy_context=") == b"sender":
                    return DUNNO
                self._log_once(ip, req, "relay-refused", reason="sender-not-owned",
                               user=",".join(self.store.users(ip, g, now)))
                return NOT_YOURS
        self.permitted += 1
        self._log_once(ip, req, "relay-permitted", user=user)
        return OK

    # -- grant lookups (socketmap), for rspamd: is this client a user's?
    def grants_decide(self, req: bytes, now: float) -> bytes:
        """The socketmap reply (without its netstring frame) for "NAME KEY"."""
        name, _, key = req.partition(b" ")
        if name != SOCKETMAP_NAME:
            return b"PERM unknown map"
        try:
            ip = normalize_ip(key.decode("ascii"))
        except UnicodeDecodeError:
            ip = None
        # Loopback is this host's own mail (WebMail, the list engine): never
        # a POP user's, even if an IMAP login from WebMail granted it.
        if ip is None or ipaddress.ip_address(ip).is_loopback:
            return b"NOTFOUND "
        g = self.store.grants.get(ip)
        users = sorted(self.store.users(ip, g, now)) if g is not None else []
        if not users:
            return b"NOTFOUND "
        return b"OK " + ",".join(users).encode()

    def _log_once(self, ip: str, req: bytes, name: str, **fields: object) -> None:
        """One line per smtpd session (instance) and outcome, not per recipient."""
        key = (_attr(req, b"instance=") or b"") + name.encode()
        seen = self._relay_seen.get(ip, ())
        if key not in seen:
            self._relay_seen[ip] = (seen + (key,))[-8:]
            event(name, ip=ip, **fields, sender=_text(_attr(req, b"sender=")),
                  recipient=_text(_attr(req, b"recipient=")), instance=_text(_attr(req, b"instance=")))

    # -- Dovecot auth policy
    def handle_report(self, doc: dict[str, Any]) -> str:
        """Grant on a successful login of an accepted protocol; returns outcome."""
        self.reports += 1
        if doc.get("success") is not True:
            return "failed-login"
        # Dovecot sends policy_reject with every report: true if a policy
        # check refused the login.  The role asks for no checks, but a login
        # refused by a policy (auth_policy_log_only lets it through) never grants.
        if doc.get("policy_reject") is True:
            return "policy-reject"
        protocol = doc.get("protocol")
        if not isinstance(protocol, str) or protocol.lower() not in self.cfg.protocols:
            return "protocol"
        # The account that authenticated (Dovecot's %{user}, after the passdb
        # has settled the name), not what the client typed (%{requested_username}).
        user = doc.get("account")
        if not isinstance(user, str) or not user:
            event_limited("report-ignored", reason="no-account", login=doc.get("login"))
            return "no-account"
        ip = normalize_ip(doc.get("remote"))
        if ip is None:
            event_limited("report-ignored", reason="bad-remote", user=user, remote=doc.get("remote"))
            return "bad-remote"
        return "granted" if self.store.grant(ip, user, "dovecot") is not None else "refused"

    def handle_http(self, req: HttpRequest, peer: str) -> tuple[int, bytes]:
        key = req.headers.get("x-api-key", "").encode("latin-1")
        if not hmac.compare_digest(key, self.token):
            event_limited("report-refused", reason="bad-token", peer=peer)
            return 403, b'{"error":"bad token"}'
        if req.method != "POST":
            return 405, b'{"error":"use POST"}'
        url = urlsplit(req.target)
        if url.path not in ("", "/"):
            return 404, b'{"error":"not found"}'
        # Only reports: the role sets auth_policy_check_{before,after}_auth =
        # no, so Dovecot never asks command=allow.  Were it asked, the 400
        # makes Dovecot log an error and go on (auth_policy_reject_on_fail = no).
        if parse_qs(url.query).get("command", [""])[0] != "report":
            return 400, b'{"error":"unknown command"}'
        try:
            doc = json.loads(req.body)
        except (ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict):
            return 400, b'{"error":"body is not a JSON object"}'
        self.handle_report(doc)
        return 200, HTTP_OK_BODY

    # -- admin socket: one JSON request a line, dispatched by "cmd" (ADMIN)
    def handle_admin(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
        except (ValueError, RecursionError):
            req = None
        if not isinstance(req, dict):
            return {"ok": False, "error": "malformed request"}
        cmd = req.get("cmd")
        command = self.ADMIN.get(cmd) if isinstance(cmd, str) else None
        if command is None:
            return {"ok": False, "error": f"unknown command {clean(cmd)}; known: {', '.join(sorted(self.ADMIN))}"}
        try:
            return command(self, req)
        except JournalError as e:  # a change that could not be made durable: nothing was changed
            return {"ok": False, "error": str(e)}

    def _admin_list(self, req: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        return {"ok": True, "now": now, "grants": [
            {"ip": ip, "user": g[USER], "login": g[LOGIN], "expires": g[EXPIRES],
             "seconds_left": int(g[EXPIRES] - now)}
            for ip, g in self.store.valid()]}

    def _admin_stats(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "pid": os.getpid(), "grants": len(self.store.grants),
                "shared": sum(map(len, self.store.others.values())), "senders": len(self.senders),
                "decisions": self.decisions, "permitted": self.permitted, "reports": self.reports,
                "connections": {k: len(v) for k, v in self.conns.items()}}

    def _admin_flush(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "flushed": self.store.flush()}

    def _admin_revoke(self, req: dict[str, Any]) -> dict[str, Any]:
        ip = normalize_ip(req.get("ip"))
        if ip is None:
            return _invalid_ip(req)
        return {"ok": True, "ip": ip, "revoked": self.store.revoke(ip)}

    def _admin_grant(self, req: dict[str, Any]) -> dict[str, Any]:
        ip = normalize_ip(req.get("ip"))
        if ip is None:
            return _invalid_ip(req)
        user = req.get("user") or "admin"
        if not isinstance(user, str):
            return {"ok": False, "error": "user must be a string"}
        expires = self.store.grant(ip, user, "admin", durable=True)
        if expires is None:
            reason = "is inside never_authorize" if self.store.never_authorized(ip) else \
                f"cannot be granted: {self.cfg.max_grants} grants (max_grants) are live"
            return {"ok": False, "error": f"{ip} {reason}"}
        return {"ok": True, "ip": ip, "user": user[:MAX_USER], "expires": expires}

    ADMIN: dict[str, Callable[[Daemon, dict[str, Any]], dict[str, Any]]] = {
        "list": _admin_list, "stats": _admin_stats, "grant": _admin_grant, "revoke": _admin_revoke,
        "flush": _admin_flush}


def _invalid_ip(req: dict[str, Any]) -> dict[str, Any]:
    return {"ok": False, "error": f"invalid IP address {clean(req.get('ip'))}"}


def _prepare_unix_socket(path: str) -> None:
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
    """A connection of one listener (``kind``): reads into ``buf``, answers
    with ``process``, which stops while WRITE_HIGH bytes of replies are
    unsent; reading is paused meanwhile, so a client that writes without
    reading holds at most one read's worth of requests and WRITE_HIGH of
    replies.  ``reap`` enforces the listener's idle and request time limits."""

    kind = ""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.buf = b""
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.last_active = time.monotonic()
        self.request_since = 0.0  # when the request now in buf began; 0: none
        self.blocked_since = 0.0  # when reading stopped for unsent replies; 0: reading
        self.write_blocked = False  # the transport's buffer passed WRITE_HIGH
        self.starved = False  # process() stopped for lack of room, requests wait in buf
        self.reading = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.allowed():
            self.transport.abort()
            return
        self.transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self.d.admit(self)

    def allowed(self) -> bool:
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.d.conns[self.kind].pop(self.transport, None)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        self.buf = self.buf + data if self.buf else data
        self._run()

    def _run(self) -> None:
        """process(), then read on only if nothing waits for room: a client
        that writes faster than it reads is paused, not buffered."""
        self.starved = False
        self.process()
        if not self.buf:
            self.request_since = 0.0
        elif not self.request_since:
            self.request_since = time.monotonic()
        if self.transport.is_closing():
            return
        reading = not (self.write_blocked or self.starved)
        if reading != self.reading:
            self.reading = reading
            (self.transport.resume_reading if reading else self.transport.pause_reading)()
            self.blocked_since = 0.0 if reading else time.monotonic()

    def process(self) -> None:
        raise NotImplementedError

    def room(self) -> int:
        """Bytes of replies that may still be written now; sets starved at 0."""
        room = WRITE_HIGH - self.transport.get_write_buffer_size()
        if room <= 0:
            self.starved = True
        return room

    def pause_writing(self) -> None:
        self.write_blocked = True
        if self.reading:
            self.reading = False
            self.transport.pause_reading()
            self.blocked_since = time.monotonic()

    def resume_writing(self) -> None:
        self.write_blocked = False
        self.last_active = time.monotonic()
        self._run()  # what was read meanwhile, then read on

    def reap(self, now: float, limits: Limits) -> None:
        if self.transport.is_closing():
            return
        if self.starved and not self.write_blocked:
            self._run()  # room came back without a resume_writing call
        if self.blocked_since and now - self.blocked_since > limits.request:
            event_limited("connection-closed", listener=self.kind, reason="replies-not-read", peer=self.peer())
            self.transport.abort()
        elif self.request_since and now - self.request_since > limits.request:
            event_limited("connection-closed", listener=self.kind, reason="request-timeout", peer=self.peer())
            self.timed_out()
        elif now - self.last_active > limits.idle:
            self.transport.close()

    def timed_out(self) -> None:
        self.transport.close()

    def peer(self) -> str:
        peer = self.transport.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and peer else "local"


class PolicyProtocol(_Base):
    """Postfix policy delegation: ``name=value`` lines, blank line ends a
    request; many (possibly pipelined) requests per connection."""

    kind = "policy"
    scan = 0  # buf[:scan] holds no request end: searches resume there (linear if dribbled)

    def process(self) -> None:
        buf, pos, out = self.buf, 0, []
        room, decide, now = self.room(), self.d.policy_decide, self.d.clock()
        end = 0
        while True:
            end = buf.find(b"\n\n", max(pos, self.scan))
            if end < 0:
                break
            if room <= 0:
                self.starved = True
                break
            reply = decide(buf[pos:end], now)
            out.append(reply)
            room -= len(reply)
            pos = end + 2
        if out:
            self.transport.write(b"".join(out))
        self.buf = buf[pos:] if pos else buf
        self.scan = max(len(self.buf) - 1, 0) if end < 0 else 0
        self.starved = end >= 0
        if end < 0 and len(self.buf) > MAX_POLICY_REQUEST:
            event_limited("policy-oversized", peer=self.peer())
            self.buf = b""
            self.transport.close()


class SocketmapProtocol(_Base):
    """Sendmail's socketmap, as Postfix speaks it: one netstring request
    ``LEN:NAME KEY,`` and one netstring reply, many per connection.  A
    malformed or oversized request closes the connection (Postfix then
    treats the lookup as failed: the mail is scored as inbound)."""

    kind = "grants"

    def process(self) -> None:
        buf, pos, out = self.buf, 0, []
        room, decide, now = self.room(), self.d.grants_decide, self.d.clock()
        self.starved = False
        while pos < len(buf):
            colon = buf.find(b":", pos, pos + 6)
            if colon < 0:
                if len(buf) - pos >= 6 or not buf[pos:].isdigit():
                    return self._bad()
                break  # the length is still arriving
            digits = buf[pos:colon]
            if not digits.isdigit() or int(digits) > MAX_SOCKETMAP_REQUEST:
                return self._bad()
            end = colon + 1 + int(digits)
            if len(buf) <= end:
                break  # the request is still arriving
            if buf[end:end + 1] != b",":
                return self._bad()
            if room <= 0:
                self.starved = True
                break
            reply = decide(buf[colon + 1:end], now)
            out.append(b"%d:%s," % (len(reply), reply))
            room -= len(out[-1])
            pos = end + 1
        if out:
            self.transport.write(b"".join(out))
        self.buf = buf[pos:] if pos else buf

    def _bad(self) -> None:
        event_limited("socketmap-malformed", peer=self.peer())
        self.buf = b""
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
    pipelining, Content-Length or chunked bodies, at most MAX_HTTP_REQUEST
    bytes a request.  Only peers owned by ``report_users`` are served."""

    kind = "report"

    def allowed(self) -> bool:
        users = self.d.cfg.report_users
        if users is None:
            return True
        uid = peer_uid(self.transport.get_extra_info("socket"))
        if uid in users:
            return True
        event_limited("report-refused", reason="peer-not-allowed", uid="unknown" if uid is None else uid,
                      peer=self.peer())
        return False

    def process(self) -> None:
        buf, pos, incomplete = self.buf, 0, False
        while pos < len(buf) and not self.transport.is_closing() and self.room() > 0:
            while buf.startswith(b"\r\n", pos):  # tolerated between requests
                pos += 2
            try:
                parsed = parse_http_request(buf, pos)
            except HttpError as e:
                self.respond(e.status, json.dumps({"error": str(e)}).encode(), keep=False)
                break
            if parsed is None:
                incomplete = True
                break
            req, pos = parsed
            conn = req.headers.get("connection", "").lower()
            keep = "close" not in conn if req.version == "HTTP/1.1" else "keep-alive" in conn
            self.respond(*self.d.handle_http(req, self.peer()), keep=keep)
        self.buf = buf[pos:] if not self.transport.is_closing() else b""
        if incomplete and len(self.buf) > MAX_HTTP_REQUEST:
            self.buf = b""
            self.respond(413, b'{"error":"request too large"}', keep=False)

    def timed_out(self) -> None:
        self.buf = b""
        self.respond(408, b'{"error":"request timeout"}', keep=False)

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

    kind = "admin"

    def process(self) -> None:
        out, room = [], self.room()
        while b"\n" in self.buf:
            if room <= 0:
                self.starved = True
                break
            line, _, self.buf = self.buf.partition(b"\n")
            out.append(json.dumps(self.d.handle_admin(line)).encode() + b"\n")
            room -= len(out[-1])
        if out:
            self.transport.write(b"".join(out))
        if b"\n" not in self.buf and len(self.buf) > MAX_ADMIN_LINE:
            self.buf = b""
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
    common.add_argument("--admin-socket", metavar="PATH", help="instead of the config file's admin_socket")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", parents=[common], help="run the daemon")
    metavars = {"sockets": "bind|systemd", "policy_listen": "HOST:PORT|unix:PATH",
                "report_listen": "HOST:PORT", "report_users": "USERS", "state_file": "FILE",
                "token_file": "FILE", "ttl": "SECONDS", "never_authorize": "CIDRS", "protocols": "LIST",
                "sweep_interval": "SECONDS", "bind_sender": "yes|no", "senders_file": "FILE",
                "grants_listen": "HOST:PORT|unix:PATH", "max_grants": "N"}
    for key, metavar in metavars.items():
        shown = f"default {DEFAULTS[key]!r}" if key in DEFAULTS else f"instead of the config file's {key}"
        serve.add_argument("--" + key.replace("_", "-"), dest=key, metavar=metavar, help=shown)
    listing = sub.add_parser("list", parents=[common], help="show valid grants")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    grant = sub.add_parser("grant", parents=[common], help="permit relay from IP for ttl seconds")
    grant.add_argument("ip")
    grant.add_argument("--user", default="admin",
                       help="whose grant it is (default admin); with bind_sender, relay is permitted only for "
                            "envelope senders this user owns")
    sub.add_parser("revoke", parents=[common], help="withdraw the grant of IP").add_argument("ip")
    sub.add_parser("flush", parents=[common], help="withdraw all grants")
    sub.add_parser("stats", parents=[common],
                   help="show the daemon's pid, grants in memory, counters since start and open connections (JSON)")
    return parser


def admin_socket(raw: dict[str, str]) -> str:
    """The admin sub-commands need nothing of the config but this."""
    if not raw.get("admin_socket"):
        raise ConfigError(f"no admin socket: give --admin-socket, or --config with admin_socket "
                          f"(default {DEFAULT_CONFIG}, when it exists)")
    return raw["admin_socket"]


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
    PRINTERS[args.command](reply, args)
    return 0


def _print_list(reply: dict[str, Any], args: argparse.Namespace) -> None:
    grants = sorted(reply["grants"], key=lambda g: g["expires"])
    if args.json:
        print(json.dumps([dict(g, expires_iso=iso(g["expires"])) for g in grants], indent=2))
        return
    rows = [("IP", "USER", "EXPIRES", "LEFT")]
    rows += [(g["ip"], clean(g["user"], 64), iso(g["expires"]), f"{g['seconds_left']}s") for g in grants]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")


# What each admin sub-command prints of the daemon's reply.
PRINTERS: dict[str, Callable[[dict[str, Any], argparse.Namespace], None]] = {
    "list": _print_list,
    "grant": lambda r, _: print(f"granted {r['ip']} to {clean(r['user'])} until {iso(r['expires'])}"),
    "revoke": lambda r, _: print(f"revoked {r['ip']}" if r["revoked"] else f"{r['ip']} had no valid grant"),
    "flush": lambda r, _: print(f"flushed {r['flushed']} grant(s)"),
    "stats": lambda r, _: print(json.dumps({k: v for k, v in r.items() if k != "ok"}, indent=2, sort_keys=True)),
}


def _loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's own errors (accept() out of descriptors, say): rate-limited."""
    exc = context.get("exception")
    event_limited("loop-error", message=context.get("message", ""), error=repr(exc) if exc else "")


async def _serve(cfg: Config, token: bytes, senders: Senders, inherited: dict[str, socket.socket]) -> int:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_loop_error)
    daemon = Daemon(cfg, token, inherited=inherited, senders=senders)
    try:
        await daemon.start()
    except (OSError, JournalError) as e:
        error = (e.strerror or str(e)) if isinstance(e, OSError) else str(e)
        event("error", reason="startup", error=error, path=getattr(e, "filename", None) or "")
        return 1
    gc.freeze()  # start-up objects out of the collector's way: shorter full-collection pauses
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    sd_notify(b"READY=1")
    await stopping.wait()
    await daemon.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k in KEYS}
    try:
        if args.command != "serve":
            return run_admin(args, admin_socket(read_config(args.config, overrides)))
        cfg = load_config(args.config, overrides)
        token = read_token(cfg.token_file)
        senders = read_senders(cfg.senders_file) if cfg.bind_sender else {}
    except ConfigError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    setup_logging()
    if hasattr(sys.stderr, "reconfigure"):
        sys.stderr.reconfigure(errors="backslashreplace")
    return asyncio.run(_serve(cfg, token, senders, systemd_sockets()))


if __name__ == "__main__":
    sys.exit(main())
