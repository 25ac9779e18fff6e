"""Fixtures of the default scenario: the appliance and the client, and real
mail sessions from the client container (tests/integration/probe.py); the
fixtures themselves are tests/integration/fixtures.py's."""

import os
import shlex
import pathlib
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "integration"))

from fixtures import (Testbed, appliance, client, grants, journal, platforms, probe, since,  # noqa: E402,F401
                      sink_subjects)
from probe import rcpt_codes, subjects, unique_subject, wait_for  # noqa: E402,F401

# This scenario's containers, or debian12's when it runs these tests.
(APPLIANCE, APPLIANCE_IP), (CLIENT, CLIENT_IP) = (platforms("default")[g] for g in ("qubemail", "clients"))
SCENARIO = os.environ.get("MOLECULE_SCENARIO_NAME") or "default"
NET = APPLIANCE_IP.rsplit(".", 1)[0]  # group_vars/all.yml's testbed_net
DENIED_IP = f"{NET}.30"  # in mta_denied_hosts
NEVER_AUTHORIZE_IP = f"{NET}.40"  # in pop_before_smtp_never_authorize
OTHER_CLIENT_IP = f"{NET}.50"  # the client again, neither denied nor excluded
ATTACKER_IPS = [f"{NET}.{n}" for n in (60, 61, 62)]  # the client guessing passwords (test_fail2ban)
PASSWORDS = {"alice": "alice-test-pw", "bob": "bob-test-pw", "carol": "carol-test-pw"}
EXTERNAL = "someone@external.test"  # routed by the smart relay to the client's sink
# A stranger's MAIL FROM in our domains on port 25, not granted: refused by
# the sender rule (before relay is considered), 553.
REFUSED = [553]


@pytest.fixture(scope="session")
def testbed():
    return Testbed(appliance=APPLIANCE, client=CLIENT,
                   appliance_ip=APPLIANCE_IP, passwords=PASSWORDS)


@pytest.fixture
def no_grant(appliance):
    """No POP-before-SMTP grant at all, whatever ran before (any POP3 login
    from the client makes one); withdrawn again afterwards."""
    appliance.check_output("pop-before-smtp flush")
    assert grants(appliance) == {}
    yield
    appliance.check_output("pop-before-smtp flush")


@pytest.fixture
def grant(appliance, probe, no_grant):
    """The client's grant made by alice's POP3 login (its own, fresh):
    the daemon's record of it, with "before", the time of the login."""
    before = time.time()
    assert probe.pop3("alice")["login"] is True
    made = wait_for(lambda: grants(appliance).get(CLIENT_IP), timeout=10)
    assert made, "alice's POP3 login made no grant"
    return dict(made, before=before)


def daemon_journal(appliance, since):
    """pop-before-smtp's journal since `since`."""
    return journal(appliance, since, "pop-before-smtp")


def sink_file(client, subject):
    return client.check_output(f"grep -l -r -F {shlex.quote('Subject: ' + subject)} /var/spool/sink/new").split()[0]


def verify_dkim(client, path, record):
    """python3-dkim's verdict on the message at `path`, the key given as DNS would."""
    script = ("import dkim, sys\n"
              "record = sys.argv[2].encode()\n"
              "message = open(sys.argv[1], 'rb').read()\n"
              "print(dkim.verify(message, dnsfunc=lambda name, timeout=5: record))\n")
    return client.check_output(f"python3 -c {shlex.quote(script)} {shlex.quote(path)} {shlex.quote(record)}")
