"""Shared helpers of the unit tests: the filter plugins loaded from their
files (as Ansible loads them, with the playbook-adjacent collection that
holds their shared checking code on the import path), and the role
variables' defaults read from the roles' argument specs."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import pathlib
import sys
import types

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / "playbooks" / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

FILTERS = sorted((ROOT / "filter_plugins").glob("qubemail_*.py"))
ROLES = ("qubemail", "mta", "pop", "pop_before_smtp", "lists", "webmail", "acme", "fail2ban", "rspamd", "dns")


def load_module(path, name=None, register=False):
    """The Python file ROOT/*path* (a script without .py too) as a module
    named *name*; *register* puts it in sys.modules (for code that pickles
    or introspects its own module)."""
    name = name or pathlib.Path(path).stem.replace("-", "_")
    loader = importlib.machinery.SourceFileLoader(name, str(ROOT / path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    if register:
        sys.modules[name] = module
    loader.exec_module(module)
    return module


def load_filter(name):
    """filter_plugins/NAME.py as a module."""
    return load_module("filter_plugins/%s.py" % name, "qubemail_filter_" + name)


def all_filters():
    """Every filter module's names in one namespace (the tests were written
    against one module; a name defined twice would be a bug, so it fails)."""
    from ansible_collections.qubemail.appliance.plugins.plugin_utils import checks

    namespace = {key: value for key, value in vars(checks).items() if not key.startswith("__")}
    for path in FILTERS:
        module = load_filter(path.stem)
        for key, value in vars(module).items():
            if key.startswith("__") or key in ("DOCUMENTATION", "EXAMPLES", "RETURN", "FilterModule"):
                continue
            namespace.setdefault(key, value)
    return types.SimpleNamespace(**namespace)


def role_specs():
    """{role: the main entry of roles/ROLE/meta/argument_specs.yml}."""
    return {role: yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
            ["argument_specs"]["main"] for role in ROLES}


def role_defaults():
    """{variable: default} of every role, from the argument specs."""
    return {name: option.get("default") for spec in role_specs().values()
            for name, option in spec["options"].items()}
