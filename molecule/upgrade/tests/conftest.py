"""Fixtures of the upgrade scenario: the appliance and the client (the
shared ones are tests/integration/fixtures.py's)."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "integration"))

from fixtures import (Testbed, appliance, client, grants, journal, platforms, probe, since,  # noqa: E402,F401
                      sink_subjects, subscribers)
from probe import run_site, wait_for  # noqa: E402,F401

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
(APPLIANCE, APPLIANCE_IP), (CLIENT, CLIENT_IP) = (platforms("upgrade")[g] for g in ("qubemail", "clients"))
DOMAIN = "qube.test"
PASSWORDS = {"alice": "alice-test-pw", "bob": "bob-test-pw", "carol": "carol-test-pw"}
EXTERNAL = "someone@external.test"  # routed by the smart relay to the client's sink


@pytest.fixture(scope="session")
def testbed():
    return Testbed(appliance=APPLIANCE, client=CLIENT, appliance_ip=APPLIANCE_IP, passwords=PASSWORDS)


def converge(args=()):
    """playbooks/site.yml on the appliance with the scenario's inventory."""
    run, seconds = run_site(APPLIANCE, {}, SCENARIO / "inventory" / "group_vars", args)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return run, seconds


def versions(appliance):
    """The Debian release and the installed versions of what the roles configure."""
    query = appliance.check_output("dpkg-query -W -f '${Package} ${Version}\\n' postfix dovecot-core mlmmj roundcube-core")
    return {"debian": appliance.file("/etc/debian_version").content_string.strip(),
            **dict(line.split(" ", 1) for line in query.splitlines())}
