"""Fixtures of the lists scenario: appliance, client, and the external sink."""

import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "integration"))

from probe import Probe, host  # noqa: E402

APPLIANCE_IP = "172.30.1.10"
PASSWORDS = {"alice": "alice-test-pw", "bob": "bob-test-pw", "carol": "carol-test-pw", "dave": "dave-test-pw"}

# Reads the external host's sink Maildir: envelope (X-MailFrom, X-RcptTo
# added by aiosmtpd) and headers of every message, as JSON.
SINK_DUMP = r"""
import email, email.policy, json, pathlib
out = []
for path in sorted(pathlib.Path('/var/spool/sink/new').glob('*')):
    m = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    out.append({'headers': [[k, str(v)] for k, v in m.items()]})
print(json.dumps(out))
"""


@pytest.fixture(scope="session")
def appliance():
    return host("qubemail-lists-appliance")


@pytest.fixture(scope="session")
def client():
    return host("qubemail-lists-client")


@pytest.fixture(scope="session")
def external():
    return host("qubemail-lists-external")


@pytest.fixture(scope="session")
def probe(client):
    return Probe(client, APPLIANCE_IP, PASSWORDS)


@pytest.fixture(scope="session")
def sink(external):
    def read():
        return json.loads(external.check_output("python3 -c %s", SINK_DUMP))
    return read


def header(message, name):
    """All values of header `name` in a mailprobe/sink message."""
    return [v for k, v in message["headers"] if k.lower() == name.lower()]
