"""Fixtures of the default scenario: the appliance and the client, and real
mail sessions from the client container (tests/integration/probe.py); the
fixtures themselves are tests/integration/fixtures.py's."""

import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "integration"))

from fixtures import Testbed, appliance, client, journal, probe, since  # noqa: E402,F401
from probe import rcpt_codes, subjects, unique_subject, wait_for  # noqa: E402,F401

APPLIANCE_IP = "172.30.0.10"
CLIENT_IP = "172.30.0.20"
DENIED_IP = "172.30.0.30"  # in mta_denied_hosts
NEVER_AUTHORIZE_IP = "172.30.0.40"  # in pop_before_smtp_never_authorize
OTHER_CLIENT_IP = "172.30.0.50"  # the client again, neither denied nor excluded
PASSWORDS = {"alice": "alice-test-pw", "bob": "bob-test-pw", "carol": "carol-test-pw"}
EXTERNAL = "someone@external.test"  # routed by the smart relay to the client's sink


@pytest.fixture(scope="session")
def testbed():
    return Testbed(appliance="qubemail-appliance", client="qubemail-client",
                   appliance_ip=APPLIANCE_IP, passwords=PASSWORDS)


def grants(appliance):
    """POP-before-SMTP's live grants, by address."""
    return {g["ip"]: g for g in json.loads(appliance.check_output("pop-before-smtp list --json"))}


def daemon_journal(appliance, since):
    """pop-before-smtp's journal since `since`."""
    return journal(appliance, since, "pop-before-smtp")
