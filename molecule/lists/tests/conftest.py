"""Fixtures of the lists scenario: appliance, client, and the external sink
(the shared ones are tests/integration/fixtures.py's)."""

import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "integration"))

from fixtures import Testbed, appliance, client, journal, probe, since, subscribers  # noqa: E402,F401
from probe import host, run_site  # noqa: E402

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
DOMAIN = "qube.test"
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
def testbed():
    return Testbed(appliance="qubemail-lists-appliance", client="qubemail-lists-client",
                   appliance_ip=APPLIANCE_IP, passwords=PASSWORDS)


@pytest.fixture(scope="session")
def external():
    return host("qubemail-lists-external")


@pytest.fixture(scope="session")
def sink(external):
    def read():
        return json.loads(external.check_output("python3 -c %s", SINK_DUMP))
    return read


def header(message, name):
    """All values of header `name` in a mailprobe/sink message."""
    return [v for k, v in message["headers"] if k.lower() == name.lower()]


def unsubscribed(appliance, list_name, address):
    """`address` off `list_name` (quietly, as the list's owner) if a test
    subscribed it before; returns the subscribers left."""
    appliance.check_output(f"/usr/bin/mlmmj-unsub -L /var/spool/mlmmj/{list_name} -a {address} -q -s")
    return subscribers(appliance, list_name)


def converge(extra_vars, args=()):
    """playbooks/site.yml on the appliance with the scenario's inventory,
    `extra_vars` and ansible-playbook's `args`."""
    run, _ = run_site("qubemail-lists-appliance", extra_vars, SCENARIO / "group_vars", args)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return run


@pytest.fixture
def bob_left_sales(probe):
    """The inventory without bob in sales and without the staff group (so
    without its list), as an admin would edit it; bob was a member with the
    archive subscribed before. The scenario's inventory is converged again
    afterwards, with only the lists role (`--tags lists`: what the change
    touched; a full run afterwards changes nothing, measured)."""
    assert "Mailing Lists/sales" in probe.imap("bob")["subscribed"], "bob was not a member of sales to begin with"
    groups = [{"name": "sales", "members": ["alice"],
               "list": {"description": "Sales team", "archive": True, "archive_retention_days": 365}}]
    try:
        yield converge({"qubemail_groups": groups})
    finally:
        converge({}, ["--tags", "lists"])
