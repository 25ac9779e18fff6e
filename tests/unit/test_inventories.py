"""The inventories we ship (example, demo, molecule scenarios) pass the same
validation the playbook runs first, so the documented settings stay valid."""

import importlib.util
import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("qubemail_filters", ROOT / "filter_plugins" / "qubemail.py")
qf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(qf)

INVENTORIES = ["inventory/example/group_vars/qubemail.yml", "inventory/demo/group_vars/qubemail.yml",
               "molecule/lists/group_vars/qubemail.yml"]


def prefixed(variables, prefix):
    return {key: value for key, value in variables.items() if key.startswith(prefix)}


@pytest.mark.parametrize("path", INVENTORIES)
def test_shipped_inventory_is_valid(path):
    variables = yaml.safe_load((ROOT / path).read_text())
    base = qf.qubemail_base(variables["qubemail_hostname"], variables["qubemail_domains"],
                            variables["qubemail_users"])
    qf.qubemail_mta(prefixed(variables, "mta_"), base)
    qf.qubemail_pop_before_smtp(prefixed(variables, "pop_before_smtp_"))
    qf.qubemail_webmail(prefixed(variables, "webmail_"))
    lists = qf.qubemail_lists(variables.get("qubemail_groups", []), variables.get("qubemail_lists", []),
                              base, variables.get("mta_aliases"))
    # Every group has its list.
    assert {g["name"] for g in variables.get("qubemail_groups", [])} <= {entry["name"] for entry in lists}
