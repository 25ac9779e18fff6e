"""The inventories we ship (example, demo, molecule scenarios) pass the same
validation the playbook runs first, so the documented settings stay valid."""

import os
import re
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, load_filter

qf = load_filter("qubemail_placeholders")

INVENTORIES = ["inventory/example/group_vars/qubemail", "inventory/demo/group_vars/qubemail.yml",
               "molecule/lists/group_vars/qubemail.yml", "molecule/default/inventory/group_vars",
               "molecule/debian12/inventory/group_vars", "molecule/upgrade/inventory/group_vars"]


def load(path):
    """A group_vars file, or a group_vars directory's files merged, with
    "{{ vault_... }}" references resolved from them (as Ansible would)."""
    path = ROOT / path
    variables = {}
    for part in sorted(path.glob("*.yml")) if path.is_dir() else [path]:
        variables.update(yaml.safe_load(part.read_text()))

    def resolve(value):
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        match = re.fullmatch(r"\{\{ (vault_\w+) \}\}", value) if isinstance(value, str) else None
        return variables[match.group(1)] if match else value

    return resolve(variables)


def validate(tmp_path, variables, *extra):
    """Run site.yml's validation (``--tags validate``: nothing else runs) on
    this machine with *variables* as the group's; return (rc, output)."""
    inventory = tmp_path / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"qubemail": {"hosts": {"mail.qube.test": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    (inventory / "group_vars" / "qubemail.yml").write_text(yaml.safe_dump(variables))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    run = subprocess.run([sys.executable, "-m", "ansible.cli.playbook", "-i", str(inventory),
                          str(ROOT / "playbooks" / "site.yml"), "--tags", "validate", "-e", "ansible_become=false",
                          *extra], capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300)
    return run.returncode, run.stdout + run.stderr


@pytest.mark.parametrize("path", INVENTORIES[1:])
def test_shipped_inventory_passes_the_plays_validation(tmp_path, path):
    rc, out = validate(tmp_path, load(path))
    assert rc == 0, out
    assert "Stop before any change if the inventory has errors" in out and "failed=0" in out


def test_the_play_reports_every_bad_field_and_misspelt_name_before_any_role_runs(tmp_path):
    rc, out = validate(tmp_path, load("molecule/lists/group_vars/qubemail.yml"),
                       "-e", "mta_relay_alowed_networks=[]", "-e", "pop_before_smtp_sweep_interval=0",
                       "-e", "pop_tls_min_protocol=TLSv1.1", "-e", "webmail_https_port=25",
                       "-e", "lists_archive_dir=relative", "-e", '{"qubemail_tls_dir": "/etc/qubemail/my tls"}')
    assert rc != 0
    message = out[out.index("qubemail: invalid inventory, nothing was changed:"):]
    for line in ("mta_relay_alowed_networks: is not a variable of any qubemail role "
                 "(did you mean 'mta_relay_allowed_networks'?)",
                 "pop_before_smtp_sweep_interval = '0': expected an integer from 1 to 86399 (seconds)",
                 "pop_tls_min_protocol = 'TLSv1.1': expected a string, one of 'TLSv1.2', 'TLSv1.3'",
                 "webmail_https_port = '25': is a port of the mail services",
                 "lists_archive_dir = 'relative': expected an absolute path",
                 "qubemail_tls_dir = '/etc/qubemail/my tls': expected an absolute path"):
        assert line in message, out
    # One error per field: the spec check's, not the role filter's again.
    assert message.split("Origin:")[0].count("pop_tls_min_protocol") == 1
    assert "Validating arguments against arg spec" not in out


def test_example_inventory_placeholders_are_all_refused():
    """Left as shipped, every placeholder the README's table names is refused,
    each with its field, so nothing example-shaped goes live."""
    variables = {k: v for k, v in load("inventory/example/group_vars/qubemail").items()
                 if not k.startswith("vault_")}  # site.yml checks the roles' settings, which read these
    hosts = yaml.safe_load((ROOT / "inventory/example/hosts.yml").read_text())
    [host] = hosts["qubemail"]["hosts"].values()
    with pytest.raises(qf.AnsibleFilterError) as error:
        qf.qubemail_placeholders({**variables, "ansible_host": host["ansible_host"]})
    assert {e["field"] for e in error.value.errors} == {line.split(" = ")[0].strip()
                                                         for line in str(error.value).splitlines()[1:]}
    fields = {line.split(" = ")[0].strip() for line in str(error.value).splitlines()[1:]}
    assert fields == {"ansible_host", "qubemail_hostname", "qubemail_domains[0]", "qubemail_domains[1]",
                      "qubemail_users[0].password_hash", "qubemail_users[1].password", "qubemail_users[1].send_as[0]",
                      "mta_relay_allowed_networks[0]", "qubemail_lists[0].members[1]"}
    assert "change-me" not in str(error.value) and "qubeexample2026" not in str(error.value)


@pytest.mark.parametrize("path", INVENTORIES[1:])
def test_demo_and_test_inventories_have_no_placeholders(path):
    assert qf.qubemail_placeholders(load(path)) is True
