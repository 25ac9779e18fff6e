"""The inventories we ship (example, demo, molecule scenarios) pass the same
validation the playbook runs first, so the documented settings stay valid."""

import importlib.util
import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("qubemail_filters", ROOT / "filter_plugins" / "qubemail.py")
qf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(qf)

INVENTORIES = ["inventory/example/group_vars/qubemail", "inventory/demo/group_vars/qubemail.yml",
               "molecule/lists/group_vars/qubemail.yml"]


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


def prefixed(variables, prefix):
    return {key: value for key, value in variables.items() if key.startswith(prefix)}


@pytest.mark.parametrize("path", INVENTORIES)
def test_shipped_inventory_is_valid(path):
    variables = load(path)
    base = qf.qubemail_base(variables["qubemail_hostname"], variables["qubemail_domains"],
                            variables["qubemail_users"])
    qf.qubemail_mta(prefixed(variables, "mta_"), base)
    qf.qubemail_pop_before_smtp(prefixed(variables, "pop_before_smtp_"))
    qf.qubemail_webmail(prefixed(variables, "webmail_"))
    lists = qf.qubemail_lists(variables.get("qubemail_groups", []), variables.get("qubemail_lists", []),
                              base, variables.get("mta_aliases"))
    # Every group has its list.
    assert {g["name"] for g in variables.get("qubemail_groups", [])} <= {entry["name"] for entry in lists}


def test_example_inventory_placeholders_are_all_refused():
    """Left as shipped, every placeholder the README's table names is refused,
    each with its field, so nothing example-shaped goes live."""
    variables = {k: v for k, v in load("inventory/example/group_vars/qubemail").items()
                 if not k.startswith("vault_")}  # site.yml checks the roles' settings, which read these
    hosts = yaml.safe_load((ROOT / "inventory/example/hosts.yml").read_text())
    [host] = hosts["qubemail"]["hosts"].values()
    with pytest.raises(qf.AnsibleFilterError) as error:
        qf.qubemail_placeholders({**variables, "ansible_host": host["ansible_host"]})
    fields = {line.split(" = ")[0].strip() for line in str(error.value).splitlines()[1:]}
    assert fields == {"ansible_host", "qubemail_hostname", "qubemail_domains[0]", "qubemail_domains[1]",
                      "qubemail_users[0].password_hash", "qubemail_users[1].password",
                      "mta_relay_allowed_networks[0]", "qubemail_lists[0].members[1]"}
    assert "change-me" not in str(error.value) and "qubeexample2026" not in str(error.value)


@pytest.mark.parametrize("path", INVENTORIES[1:])
def test_demo_and_test_inventories_have_no_placeholders(path):
    assert qf.qubemail_placeholders(load(path)) is True
