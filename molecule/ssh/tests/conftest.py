"""Fixtures of the ssh scenario: the record of the README's commands run on
the host (tests/readme.py, made by converge or, failing that, here), and
real mail sessions from this machine, the admin's side of the network
(the shared fixtures are tests/integration/fixtures.py's)."""

import json
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[2] / "tests" / "integration"))

import readme  # noqa: E402
from fixtures import Testbed, appliance  # noqa: E402,F401
from probe import Probe, rcpt_codes, subjects, unique_subject, wait_for  # noqa: E402,F401

MAILPROBE = HERE.parents[2] / "tests" / "clients" / "mailprobe.py"


class LocalProbe(Probe):
    """tests/clients/mailprobe.py run here, on the controller, optionally
    from one of its addresses."""

    def __init__(self, server, passwords, source):
        super().__init__(None, server, passwords)
        self.source = source

    def __call__(self, *args):
        cmd = [sys.executable, str(MAILPROBE), "--server", self.server, "--source", self.source, *map(str, args)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, f"{cmd}: {run.stderr}"
        return json.loads(run.stdout)


@pytest.fixture(scope="session")
def scenario():
    return readme.Scenario()


@pytest.fixture(scope="session")
def record(scenario):
    return readme.recorded_run(scenario)


@pytest.fixture(scope="session")
def converged(record):
    failed = [c for c in record["commands"] if c["rc"] != 0]
    assert record["complete"], f"the README's commands did not all succeed: {failed[-1]['command'] if failed else ''}"
    return record


def command(record, fragment, again=False):
    """The recorded run of the README command containing `fragment` (the
    last such; again=True: the extra run of the last command)."""
    matches = [c for c in record["commands"] if fragment in c["command"] and c["again"] == again]
    assert matches, f"no README command with {fragment!r} ran: {[c['command'] for c in record['commands']]}"
    return matches[-1]


@pytest.fixture(scope="session")
def testbed(scenario):
    """The host only: this scenario's mail sessions run from this machine."""
    return Testbed(appliance=scenario.container, appliance_ip=scenario.address, passwords=readme.PASSWORDS)


@pytest.fixture(scope="session")
def outsider(scenario, converged):
    """This machine from the gateway's address: not in the relay networks,
    and never logged in over POP3, so never unlocked for relay."""
    return LocalProbe(scenario.address, readme.PASSWORDS, scenario.gateway)


@pytest.fixture(scope="session")
def reader(scenario, converged):
    """This machine from its second address: mailbox logins (a POP3 login
    opens relay for the address it comes from)."""
    return LocalProbe(scenario.address, readme.PASSWORDS, scenario.second_address)
