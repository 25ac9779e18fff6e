#!/usr/bin/env python3
"""mailprobe - real SMTP, POP3 and IMAP sessions for qubemail's tests and benches.

Runs inside the client container (standard library only) and prints one JSON
object, so a test on the controller can assert on every server reply:

  mailprobe smtp --server H --from A --to B [--to C ...] [--subject S] [--size N]
                 [--port 587 --starttls | --port 465 --ssl] [--login U --password P]
  mailprobe pop3 --server H --user U --password P [--tls stls|ssl|none]
  mailprobe imap --server H --user U --password P [--tls starttls|ssl|none] [--mailbox M] [--read SUBJECT]
  mailprobe imap-ask --server H --user U --password P --mailbox M --ask status|list|lsub|select|examine|myrights|getacl ...
  mailprobe unlock --server H --user U --password P --to X [--count N]
  mailprobe expiry --server H --user U --password P --to X
  mailprobe login-time --server H --user U --password P [--count N]
  mailprobe raw --server H [--port 25] [--step N:BYTES ...] [--step eof:BYTES]
  mailprobe https --server H [--port 443] [--path /]
  mailprobe autoconfig --server H --email A --password P --to B [--kind thunderbird|outlook] [--cafile F]

SMTP commands are sent verbatim (`MAIL FROM:<A>`, `RCPT TO:<B>`) so the
open-relay battery can use forms that smtplib would rewrite.
"""

import argparse
import base64
import codecs
import email
import email.policy
import http.client
import imaplib
import json
import poplib
import smtplib
import socket
import ssl
import statistics
import sys
import time
import urllib.parse
import xml.etree.ElementTree as ET


def _bind_source(address):
    """Make every client connection leave from `address` (the client
    container has extra addresses to play a denied or never-authorised host)."""
    create = socket.create_connection

    def create_from(addr, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None, **kw):
        return create(addr, timeout, source_address or (address, 0), **kw)

    socket.create_connection = create_from


def tls_context():
    # The appliance's certificate is self-signed in tests: encrypt, don't verify.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _reply(code_msg):
    code, msg = code_msg
    return [code, msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)]


def _message(mail_from, to, subject, body="Sent by mailprobe.", size=0, extra_headers=(), omit=()):
    """The message's bytes: mailprobe's own From, To, Subject and Message-ID
    (less those in `omit`), then `extra_headers`. An extra header of the same
    name replaces mailprobe's own (case-insensitive), as `swaks --header`
    does: a post given a Message-ID has that one, not a second one after
    mailprobe's (Dovecot threads by the first)."""
    if size:
        line = "x" * 76 + "\r\n"
        body += "\r\n" + line * (size // len(line) + 1)
    defaults = [
        f"From: <{mail_from}>",
        f"To: <{to}>",
        f"Subject: {subject}",
        f"Message-ID: <{time.time_ns()}@mailprobe.test>",
    ]

    def name(header):
        return header.split(":", 1)[0].strip().lower()

    given = {name(h) for h in extra_headers}
    dropped = given | {h.lower() for h in omit}
    headers = [h for h in defaults if name(h) not in dropped] + list(extra_headers)
    return ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode()


def cmd_smtp(args):
    out = {"rcpt": [], "data": None}
    smtp = (smtplib.SMTP_SSL(timeout=args.timeout, context=tls_context()) if args.ssl
            else smtplib.SMTP(timeout=args.timeout))
    # TLS needs a server name (SNI): smtplib takes it from the constructor's
    # host, which is left out here to record the banner of connect().
    smtp._host = args.server
    try:
        out["banner"] = _reply(smtp.connect(args.server, args.port))
        out["ehlo"], out["ehlo_text"] = _reply(smtp.ehlo(args.helo))
        if args.starttls:
            out["starttls"] = _reply(smtp.starttls(context=tls_context()))[0]
            out["ehlo_text"] = _reply(smtp.ehlo(args.helo))[1]
        if args.login:
            # AUTH PLAIN by hand: smtplib.login() raises before the reply
            # can be recorded, and refuses when AUTH is not offered.
            token = base64.b64encode(f"\0{args.login}\0{args.password}".encode()).decode()
            out["auth"] = _reply(smtp.docmd("AUTH", f"PLAIN {token}"))
        out["mail"] = _reply(smtp.docmd(f"MAIL FROM:<{args.mail_from}>"))
        accepted = 0
        for rcpt in args.to:
            reply = _reply(smtp.docmd(f"RCPT TO:<{rcpt}>"))
            out["rcpt"].append([rcpt] + reply)
            accepted += reply[0] == 250
        if accepted and not args.no_data:
            code, msg = smtp.docmd("DATA")
            if code == 354:
                message = _message(args.mail_from, args.to[0], args.subject, args.body, args.size, args.header,
                                   args.omit_header)
                smtp.send(smtplib.quotedata(message.decode()).encode() + b"\r\n.\r\n")
                code, msg = smtp.getreply()
            out["data"] = _reply((code, msg))
        else:
            smtp.docmd("RSET")
        smtp.quit()
    except (smtplib.SMTPException, OSError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def _subjects(raw_messages):
    parsed = [email.message_from_bytes(raw, policy=email.policy.default) for raw in raw_messages]
    return [{"subject": str(m["Subject"] or ""), "from": str(m["From"] or ""),
             "to": str(m["To"] or ""), "headers": [[k, str(v)] for k, v in m.items()],
             "body": _text_body(m)}
            for m in parsed]


def _text_body(message):
    part = message.get_body(("plain",))
    if part is None:
        return ""
    try:
        return part.get_content()
    except (LookupError, ValueError):
        return part.get_payload(decode=True).decode("utf-8", "replace")


def pop3_login(args):
    if args.tls == "ssl":
        pop = poplib.POP3_SSL(args.server, args.port or 995, timeout=args.timeout, context=tls_context())
    else:
        pop = poplib.POP3(args.server, args.port or 110, timeout=args.timeout)
        if args.tls == "stls":
            pop.stls(context=tls_context())
    pop.user(args.user)
    pop.pass_(args.password)
    return pop


def cmd_pop3(args):
    out = {"login": False}
    try:
        pop = pop3_login(args)
        out["login"] = True
        count, _ = pop.stat()
        # The unique ids a client keeps to know what it already has.
        out["uidl"] = [line.split()[1].decode() for line in pop.uidl()[1]]
        raw = [b"\r\n".join(pop.retr(i + 1)[1]) for i in range(count)]
        out["messages"] = _subjects(raw)
        # The UIDL of each message, in the same order ("N UIDL" lines).
        out["uidls"] = [line.split()[1].decode() for line in pop.uidl()[1]]
        pop.quit()
    except (poplib.error_proto, OSError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def _mailbox_name(line):
    """The name from a LIST reply line: (\\Flags) "/" "Mailing Lists/x"."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else str(line)
    name = text.split(') ', 1)[1].split(' ', 1)[1]
    return name[1:-1] if name.startswith('"') else name


def _imap_quoted(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def imap_login(args):
    if args.tls == "ssl":
        imap = imaplib.IMAP4_SSL(args.server, args.port or 993, ssl_context=tls_context(), timeout=args.timeout)
    else:
        imap = imaplib.IMAP4(args.server, args.port or 143, timeout=args.timeout)
        if args.tls == "starttls":
            imap.starttls(ssl_context=tls_context())
    imap.login(args.user, args.password)
    return imap


def cmd_imap(args):
    out = {"login": False}
    try:
        imap = imap_login(args)
        out["login"] = True
        _, listing = imap.list()
        out["mailboxes"] = [_mailbox_name(line) for line in listing if line]
        _, listing = imap.lsub()
        out["subscribed"] = [_mailbox_name(line) for line in listing if line]
        # STATUS must not tell a reader without rights anything either.
        out["status"], _ = imap.status(f'"{args.mailbox}"', "(MESSAGES)")
        status, _ = imap.select(f'"{args.mailbox}"', readonly=not args.read)
        out["select"] = status
        raw, flags = [], []
        if status == "OK":
            if args.read:  # as a mail client reading them: \Seen
                _, data = imap.search(None, "SUBJECT", _imap_quoted(args.read))
                for num in data[0].split():
                    imap.fetch(num, "(BODY[])")
            _, data = imap.search(None, "ALL")
            for num in data[0].split():
                _, parts = imap.fetch(num, "(FLAGS BODY.PEEK[])")
                raw.append(parts[0][1])
                flags.append(sorted(f.decode() for f in imaplib.ParseFlags(parts[0][0])))
        out["messages"] = _subjects(raw)
        # Each message's flags, in the order of messages.
        out["flags"] = flags
        imap.logout()
    except (imaplib.IMAP4.error, OSError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


ASK = {
    "status": lambda imap, box: imap.status(box, "(MESSAGES RECENT UIDNEXT UNSEEN)"),
    "list": lambda imap, box: imap.list('""', box),
    "lsub": lambda imap, box: imap.lsub('""', box),
    "select": lambda imap, box: imap.select(box),
    "examine": lambda imap, box: imap.select(box, readonly=True),
    "myrights": lambda imap, box: imap.myrights(box),
    "getacl": lambda imap, box: imap.getacl(box),
}


def cmd_imap_ask(args):
    """One IMAP session that asks each --ask about --mailbox, in order, and
    nothing else: {"answers": [[command, status, [untagged data]], ...]}."""
    out = {"login": False, "answers": []}
    try:
        imap = imap_login(args)
        out["login"] = True
        box = _imap_quoted(args.mailbox)
        for command in args.ask:
            try:
                status, data = ASK[command](imap, box)
            except imaplib.IMAP4.error as exc:  # BAD, or NO where imaplib raises
                status, data = "ERROR", [str(exc)]
            data = [d.decode("utf-8", "replace") if isinstance(d, bytes) else str(d) for d in data if d is not None]
            out["answers"].append([command, status, data])
        imap.logout()
    except (imaplib.IMAP4.error, OSError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def _relay_session(args):
    smtp = smtplib.SMTP(args.server, 25, timeout=args.timeout)
    smtp.ehlo("client.test")
    smtp.docmd(f"MAIL FROM:<{args.user}@{args.sender_domain}>")
    return smtp


def cmd_unlock(args):
    """Time from a successful POP3 login to the first accepted relay RCPT.

    The SMTP session is open before the login, so only the unlock is timed;
    RCPT is retried until it is accepted (10 s at most). The message is then
    sent for real: transactions abandoned after an accepted RCPT would use up
    Postfix's in_flow_delay tokens and slow every later one by a second."""
    latencies = []
    for _ in range(args.count):
        smtp = _relay_session(args)
        pop = pop3_login(args)
        t0 = time.perf_counter()
        while True:
            code, _ = smtp.docmd(f"RCPT TO:<{args.to}>")
            elapsed = time.perf_counter() - t0
            if code == 250 or elapsed > 10:
                latencies.append(elapsed * 1000 if code == 250 else None)
                break
        pop.quit()
        if code == 250:
            smtp.data(_message(f"{args.user}@{args.sender_domain}", args.to, "unlock"))
        smtp.quit()
    return {"count": len(latencies), "latencies_ms": latencies}


def cmd_expiry(args):
    """After a POP3 login, poll relay every --interval seconds until it is
    refused; print the wall-clock time of the last accept and first refusal."""
    pop = pop3_login(args)
    pop.quit()
    smtp = smtplib.SMTP(args.server, 25, timeout=args.timeout)
    smtp.ehlo("client.test")
    start = time.time()
    last_ok = None
    accepted = 0
    smtp.docmd(f"MAIL FROM:<{args.user}@{args.sender_domain}>")
    while True:
        code, _ = smtp.docmd(f"RCPT TO:<{args.to}>")
        now = time.time()
        if code == 250:
            last_ok = now
            accepted += 1
            if accepted % 90 == 0:  # stay under smtpd_recipient_limit
                smtp.docmd("RSET")
                smtp.docmd(f"MAIL FROM:<{args.user}@{args.sender_domain}>")
        elif last_ok is not None or now - start > 10:
            break
        time.sleep(args.interval)
    smtp.quit()
    return {"last_accepted": last_ok, "first_refused": now}


def cmd_login_time(args):
    """POP3 login (connect, STLS, USER/PASS, QUIT) durations in milliseconds."""
    times = []
    for _ in range(args.count):
        t0 = time.perf_counter()
        pop3_login(args).quit()
        times.append((time.perf_counter() - t0) * 1000)
    return {"count": len(times), "p50_ms": statistics.median(times),
            "p99_ms": sorted(times)[int(len(times) * 0.99) - 1], "times_ms": times}


def _read_reply(stream):
    """One SMTP reply (all its lines) as [code, text], or None at EOF. A line
    without a reply code (a POP3 or IMAP greeting) is [0, the whole line]."""
    lines = []
    while True:
        line = stream.readline()
        if not line:
            return None
        text = line.decode("latin-1").rstrip("\r\n")
        if not lines and not text[:3].isdigit():
            return [0, text]
        lines.append(text[4:])
        if len(text) < 4 or text[3] != "-":
            return [int(text[:3]) if text[:3].isdigit() else 0, "\n".join(lines)]


def cmd_raw(args):
    """Bytes exactly as given, for protocol edge cases (SMTP smuggling,
    pipelining) and greetings (no --step). Each --step is N:BYTES: send BYTES (Python escapes such as
    \\r\\n are decoded, so bare <LF> and <CR> can be written) in one write,
    then read N replies; "eof:" reads replies until the server closes the
    connection, so every byte sent has been processed when this returns."""
    out = {"greeting": None, "steps": [], "closed": False}
    try:
        sock = socket.create_connection((args.server, args.port), timeout=args.timeout)
    except OSError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    stream = sock.makefile("rb")
    try:
        out["greeting"] = _read_reply(stream)
        for step in args.step:
            count, _, data = step.partition(":")
            sock.sendall(codecs.decode(data, "unicode_escape").encode("latin-1"))
            replies = []
            while count == "eof" or len(replies) < int(count):
                reply = _read_reply(stream)
                if reply is None:
                    out["closed"] = True
                    break
                replies.append(reply)
            out["steps"].append(replies)
            if out["closed"]:
                break
    except OSError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()
    return out


def cmd_https(args):
    """One GET over HTTPS (certificate not verified): status, headers, body."""
    conn = http.client.HTTPSConnection(args.server, args.port, timeout=args.timeout, context=tls_context())
    try:
        conn.request("GET", args.path, headers={"Host": args.host or args.server})
        response = conn.getresponse()
        return {"status": response.status, "headers": [[k, v] for k, v in response.getheaders()],
                "body": response.read().decode("utf-8", "replace")}
    except (http.client.HTTPException, OSError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()


#: Outlook's Autodiscover request (POX) and the namespace of its answer.
AUTODISCOVER_REQUEST = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">'
    "<Request><EMailAddress>{email}</EMailAddress>"
    "<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
    "</AcceptableResponseSchema></Request></Autodiscover>")
AUTODISCOVER_NS = {"a": "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"}


def _resolve_all_to(address):
    """Every host name resolves to `address`, as the test network's DNS
    would: clients still connect, send SNI and check certificates by name."""
    getaddrinfo = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        return getaddrinfo(address, *args, **kwargs)

    socket.getaddrinfo = resolve


def parse_thunderbird(text, email_address):
    """Thunderbird's config-v1.1.xml: ([incoming], [outgoing]), each a dict
    with type, hostname, port, socket and username (placeholders filled)."""
    local = email_address.split("@", 1)[0]

    def server(node):
        username = (node.findtext("username") or "").replace("%EMAILLOCALPART%", local)
        return {"type": node.get("type"), "hostname": node.findtext("hostname"), "port": int(node.findtext("port")),
                "socket": node.findtext("socketType"), "username": username.replace("%EMAILADDRESS%", email_address)}

    provider = ET.fromstring(text).find("emailProvider")
    return ([server(n) for n in provider.findall("incomingServer")],
            [server(n) for n in provider.findall("outgoingServer")])


def parse_autodiscover(text):
    """Outlook's Autodiscover answer: ([incoming], [outgoing]) as parse_thunderbird."""
    incoming, outgoing = [], []
    for node in ET.fromstring(text).iterfind(".//a:Account/a:Protocol", AUTODISCOVER_NS):
        kind = node.findtext("a:Type", namespaces=AUTODISCOVER_NS).lower()
        server = {"type": kind, "hostname": node.findtext("a:Server", namespaces=AUTODISCOVER_NS),
                  "port": int(node.findtext("a:Port", namespaces=AUTODISCOVER_NS)),
                  "socket": {"SSL": "SSL", "TLS": "STARTTLS"}[node.findtext("a:Encryption", namespaces=AUTODISCOVER_NS)],
                  "username": node.findtext("a:LoginName", namespaces=AUTODISCOVER_NS)}
        (outgoing if kind == "smtp" else incoming).append(server)
    return incoming, outgoing


def cmd_autoconfig(args):
    """As a mail program sets an account up: ask for the settings (Thunderbird's
    autoconfig or Outlook's Autodiscover, over HTTPS), then use the first
    incoming and the first outgoing server from the answer alone: log in
    over IMAP or POP3, and send one message with AUTH to `--to`."""
    context = ssl.create_default_context(cafile=args.cafile) if args.cafile else tls_context()
    _resolve_all_to(args.server)
    domain = args.email.split("@", 1)[1]
    out = {}
    try:
        if args.kind == "thunderbird":
            host = f"autoconfig.{domain}"
            path = "/mail/config-v1.1.xml?" + urllib.parse.urlencode({"emailaddress": args.email})
            method, body = "GET", None
        else:
            host = f"autodiscover.{domain}"
            path, method = "/autodiscover/autodiscover.xml", "POST"
            body = AUTODISCOVER_REQUEST.format(email=args.email).encode()
        conn = http.client.HTTPSConnection(host, 443, timeout=args.timeout, context=context)
        conn.request(method, path, body=body, headers={"Content-Type": "text/xml"} if body else {})
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        conn.close()
        out["http"] = [response.status, response.getheader("Content-Type")]
        incoming, outgoing = (parse_thunderbird(text, args.email) if args.kind == "thunderbird"
                              else parse_autodiscover(text))
        out["incoming"], out["outgoing"] = incoming, outgoing
        inbound, outbound = incoming[0], outgoing[0]
        if inbound["socket"] != "SSL":
            raise ValueError(f"the incoming server is offered with {inbound['socket']}, not implicit TLS")
        if inbound["type"] == "imap":
            session = imaplib.IMAP4_SSL(inbound["hostname"], inbound["port"], ssl_context=context,
                                        timeout=args.timeout)
            out["login"] = session.login(inbound["username"], args.password)[0] == "OK"
            session.logout()
        else:
            session = poplib.POP3_SSL(inbound["hostname"], inbound["port"], timeout=args.timeout, context=context)
            session.user(inbound["username"])
            out["login"] = session.pass_(args.password).startswith(b"+OK")
            session.quit()
        ssl_first = outbound["socket"] == "SSL"
        smtp = (smtplib.SMTP_SSL(outbound["hostname"], outbound["port"], timeout=args.timeout, context=context)
                if ssl_first else smtplib.SMTP(outbound["hostname"], outbound["port"], timeout=args.timeout))
        if not ssl_first:
            smtp.starttls(context=context)
        smtp.login(outbound["username"], args.password)
        refused = smtp.sendmail(args.email, [args.to], _message(args.email, args.to, args.subject))
        out["sent"] = not refused
        smtp.quit()
    except (http.client.HTTPException, OSError, ET.ParseError, smtplib.SMTPException, imaplib.IMAP4.error,
            poplib.error_proto, AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--port", type=int)
    parser.add_argument("--timeout", type=float, default=15)
    parser.add_argument("--source", help="source IP address to connect from")
    sub = parser.add_subparsers(dest="cmd", required=True)

    smtp = sub.add_parser("smtp")
    smtp.add_argument("--from", dest="mail_from", default="probe@client.test")
    smtp.add_argument("--to", action="append", required=True)
    smtp.add_argument("--helo", default="client.test")
    smtp.add_argument("--subject", default="mailprobe")
    smtp.add_argument("--body", default="Sent by mailprobe.")
    smtp.add_argument("--size", type=int, default=0, help="pad the body to about N bytes")
    smtp.add_argument("--header", action="append", default=[],
                      help='extra header line "Name: value"; replaces mailprobe\'s own header of that name')
    smtp.add_argument("--omit-header", action="append", default=[],
                      help="leave out mailprobe's own header (From, To, Subject, Message-ID)")
    smtp.add_argument("--starttls", action="store_true")
    smtp.add_argument("--ssl", action="store_true", help="TLS from the first byte (submissions, port 465)")
    smtp.add_argument("--login", metavar="USER", help="SMTP AUTH PLAIN as USER (after --starttls or --ssl)")
    smtp.add_argument("--password")
    smtp.add_argument("--no-data", action="store_true")

    for name, tls_choices, default in (("pop3", ["stls", "ssl", "none"], "stls"),
                                       ("imap", ["starttls", "ssl", "none"], "starttls"),
                                       ("imap-ask", ["starttls", "ssl", "none"], "starttls"),
                                       ("unlock", ["stls", "ssl", "none"], "stls"),
                                       ("expiry", ["stls", "ssl", "none"], "stls"),
                                       ("login-time", ["stls", "ssl", "none"], "stls")):
        p = sub.add_parser(name)
        p.add_argument("--user", required=True)
        p.add_argument("--password", required=True)
        p.add_argument("--tls", choices=tls_choices, default=default)
        if name == "imap":
            p.add_argument("--mailbox", default="INBOX")
            p.add_argument("--read", metavar="SUBJECT", help="read (fetch, so \\Seen) the messages whose subject has SUBJECT")
        if name == "imap-ask":
            p.add_argument("--mailbox", required=True)
            p.add_argument("--ask", action="append", choices=sorted(ASK), required=True)
        if name in ("unlock", "login-time"):
            p.add_argument("--count", type=int, default=1)
        if name in ("unlock", "expiry"):
            p.add_argument("--to", required=True)
            p.add_argument("--sender-domain", default="client.test")
        if name == "expiry":
            p.add_argument("--interval", type=float, default=0.02)

    raw = sub.add_parser("raw")
    raw.add_argument("--step", action="append", default=[],
                     help="N:BYTES (send, then read N replies) or eof:BYTES (read until the server closes)")

    https = sub.add_parser("https")
    https.add_argument("--path", default="/")
    https.add_argument("--host", help="Host header (default: --server)")

    autoconfig = sub.add_parser("autoconfig", help="set an account up from the appliance's autoconfig, log in, send")
    autoconfig.add_argument("--email", required=True)
    autoconfig.add_argument("--password", required=True)
    autoconfig.add_argument("--to", required=True)
    autoconfig.add_argument("--subject", default="mailprobe autoconfig")
    autoconfig.add_argument("--kind", choices=["thunderbird", "outlook"], default="thunderbird")
    autoconfig.add_argument("--cafile", help="check certificates against these CAs (default: not checked)")

    args = parser.parse_args(argv)
    if args.source:
        _bind_source(args.source)
    if args.cmd == "smtp" and args.port is None:
        args.port = 465 if args.ssl else 25
    if args.cmd == "raw" and args.port is None:
        args.port = 25
    if args.cmd == "https" and args.port is None:
        args.port = 443
    handler = {"smtp": cmd_smtp, "pop3": cmd_pop3, "imap": cmd_imap, "imap-ask": cmd_imap_ask,
               "unlock": cmd_unlock, "expiry": cmd_expiry, "login-time": cmd_login_time,
               "raw": cmd_raw, "https": cmd_https, "autoconfig": cmd_autoconfig}[args.cmd]
    json.dump(handler(args), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
