"""Fixtures of the default scenario: the appliance and the client, and real
mail sessions from the client container (tests/integration/probe.py)."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "integration"))

from probe import Probe, host, rcpt_codes, subjects, unique_subject, wait_for  # noqa: E402,F401

APPLIANCE_IP = "172.30.0.10"
CLIENT_IP = "172.30.0.20"
DENIED_IP = "172.30.0.30"  # in mta_denied_hosts
NEVER_AUTHORIZE_IP = "172.30.0.40"  # in pop_before_smtp_never_authorize
OTHER_CLIENT_IP = "172.30.0.50"  # the client again, neither denied nor excluded
PASSWORDS = {"alice": "alice-test-pw", "bob": "bob-test-pw", "carol": "carol-test-pw"}
EXTERNAL = "someone@external.test"  # routed by the smart relay to the client's sink


@pytest.fixture(scope="session")
def appliance():
    return host("qubemail-appliance")


@pytest.fixture(scope="session")
def client():
    return host("qubemail-client")


@pytest.fixture(scope="session")
def probe(client):
    return Probe(client, APPLIANCE_IP, PASSWORDS)
