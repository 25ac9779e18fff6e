"""Shared fixtures: the appliance and the client, and real mail sessions run
from the client container with tests/clients/mailprobe.py (JSON out)."""

import json
import shlex
import time
import uuid

import pytest
import testinfra

APPLIANCE_IP = "172.30.0.10"
CLIENT_IP = "172.30.0.20"
DENIED_IP = "172.30.0.30"  # in mta_denied_hosts
NEVER_AUTHORIZE_IP = "172.30.0.40"  # in pop_before_smtp_never_authorize
OTHER_CLIENT_IP = "172.30.0.50"  # the client again, neither denied nor excluded
PASSWORDS = {"alice": "alice-test-pw", "bob": "bob-test-pw", "carol": "carol-test-pw"}
EXTERNAL = "someone@external.test"  # routed by the smart relay to the client's sink


def _host(name):
    return testinfra.get_host(f"docker://{name}")


@pytest.fixture(scope="session")
def appliance():
    return _host("qubemail-appliance")


@pytest.fixture(scope="session")
def client():
    return _host("qubemail-client")


class Probe:
    """Runs mailprobe in the client container and returns its JSON."""

    def __init__(self, client):
        self.client = client

    def __call__(self, *args):
        cmd = "mailprobe --server " + APPLIANCE_IP + " " + " ".join(shlex.quote(str(a)) for a in args)
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
        return self("pop3", "--user", user, "--password", password or PASSWORDS[user], "--tls", tls)

    def imap(self, user, password=None, tls="starttls", mailbox="INBOX"):
        return self("imap", "--user", user, "--password", password or PASSWORDS[user],
                    "--tls", tls, "--mailbox", mailbox)


@pytest.fixture(scope="session")
def probe(client):
    return Probe(client)


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
