"""Fixtures shared by the molecule scenarios' tests (molecule/*/tests).

Each scenario's conftest.py puts this directory on sys.path, imports the
fixtures it uses from here (pytest takes the fixtures a conftest module
holds, imported or not) and defines `testbed`: which containers and
addresses its scenario has. Everything a test needs beyond that it makes
itself, so that any test passes alone and in any order."""

import dataclasses
import time

import pytest

from probe import Probe, host


@dataclasses.dataclass(frozen=True)
class Testbed:
    """A scenario's containers (docker names) and the appliance's address."""
    appliance: str
    appliance_ip: str
    passwords: dict
    client: str | None = None


@pytest.fixture(scope="session")
def testbed():
    raise pytest.UsageError("the scenario's conftest.py defines the testbed fixture")


@pytest.fixture(scope="session")
def appliance(testbed):
    return host(testbed.appliance)


@pytest.fixture(scope="session")
def client(testbed):
    if not testbed.client:
        pytest.skip("this scenario has no client container")
    return host(testbed.client)


@pytest.fixture(scope="session")
def probe(client, testbed):
    """mailprobe in the client container, against the appliance."""
    return Probe(client, testbed.appliance_ip, testbed.passwords)


@pytest.fixture
def since():
    """This test's start, as a journalctl --since @ value (a second early)."""
    return int(time.time()) - 1


def journal(host_, since, *units):
    """The journal of `units` (all when none) since `since`, messages only."""
    selected = " ".join(f"-u {u}" for u in units)
    return host_.check_output(f"journalctl {selected} --since @{since} --no-pager -o cat")
