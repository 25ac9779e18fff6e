"""Fixtures shared by the molecule scenarios' tests (molecule/*/tests).

Each scenario's conftest.py puts this directory on sys.path, imports the
fixtures it uses from here (pytest takes the fixtures a conftest module
holds, imported or not) and defines `testbed`: which containers and
addresses its scenario has. Everything a test needs beyond that it makes
itself, so that any test passes alone and in any order."""

import dataclasses
import json
import os
import pathlib
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


def platforms(default):
    """The containers of the running scenario (molecule's
    MOLECULE_SCENARIO_NAME, else `default`), by inventory group: {group:
    (name, IPv4 address)} from its molecule.yml. A scenario that runs another
    one's tests on other containers (debian12: default's) is found so."""
    import yaml  # the venv has it (ansible); not needed by the clients

    name = os.environ.get("MOLECULE_SCENARIO_NAME") or default
    config = pathlib.Path(__file__).resolve().parents[2] / "molecule" / name / "molecule.yml"
    found = {}
    for platform in yaml.safe_load(config.read_text())["platforms"]:
        for group in platform.get("groups", []):
            found[group] = (platform["name"], platform["networks"][0]["ipv4_address"])
    return found


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


def grants(appliance):
    """POP-before-SMTP's live grants, by address."""
    return {g["ip"]: g for g in json.loads(appliance.check_output("pop-before-smtp list --json"))}


def subscribers(appliance, list_name):
    """The members of `list_name`, from the list engine."""
    return set(appliance.check_output(f"mlmmj-list -L /var/spool/mlmmj/{list_name}").split())


def sink_subjects(client):
    """Subjects of the mail the client's SMTP sink (default's prepare.yml) received."""
    out = client.run("grep -rh '^Subject:' /var/spool/sink/new /var/spool/sink/cur 2>/dev/null").stdout
    return [line.split(":", 1)[1].strip() for line in out.splitlines()]
