"""Helpers shared by the molecule scenarios' testinfra tests: real mail
sessions run from a client container with tests/clients/mailprobe.py."""

import json
import shlex
import time
import uuid

import testinfra


def host(name):
    return testinfra.get_host(f"docker://{name}")


class Probe:
    """Runs mailprobe in the client container against `server`; returns its JSON."""

    def __init__(self, client, server, passwords):
        self.client = client
        self.server = server
        self.passwords = passwords

    def __call__(self, *args):
        cmd = f"mailprobe --server {self.server} " + " ".join(shlex.quote(str(a)) for a in args)
        result = self.client.run(cmd)
        assert result.rc == 0, f"{cmd}: {result.stderr}"
        return json.loads(result.stdout)

    def send(self, to, *extra, mail_from="probe@client.test", subject=None):
        tos = [to] if isinstance(to, str) else list(to)
        args = ["smtp", "--from", mail_from]
        for rcpt in tos:
            args += ["--to", rcpt]
        if subject:
            args += ["--subject", subject]
        return self(*args, *extra)

    def pop3(self, user, password=None, tls="stls"):
        return self("pop3", "--user", user, "--password", password or self.passwords[user], "--tls", tls)

    def imap(self, user, password=None, tls="starttls", mailbox="INBOX"):
        return self("imap", "--user", user, "--password", password or self.passwords[user],
                    "--tls", tls, "--mailbox", mailbox)


def unique_subject(label):
    return f"{label} {uuid.uuid4().hex[:12]}"


def rcpt_codes(reply):
    return [code for _, code, _ in reply["rcpt"]]


def wait_for(predicate, timeout=30, interval=0.5):
    """Poll until predicate() is truthy; return its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def subjects(messages):
    return [m["subject"] for m in messages]
