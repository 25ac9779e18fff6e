# -*- coding: utf-8 -*-
"""The qubemail_variables filter: every role variable against its argument spec."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.qubemail.appliance.plugins.plugin_utils.checks import (
    Errors,
    did_you_mean,
    has_control_chars,
)

DOCUMENTATION = r"""
name: qubemail_variables
short_description: Every qubemail role variable checked against its argument spec
version_added: 1.0.0
author: qubemail project
extends_documentation_fragment:
  - qubemail.appliance.validation
description:
  - The first step of the play's validation (roles/qubemail/tasks/validate.yml) - before any task changes the host,
    every variable of every role is checked against its role's C(meta/argument_specs.yml) as Ansible would check
    it when the role starts (type, elements, choices), and a C(path) must be absolute.
  - A variable the inventory or C(-e) defines with a role prefix that no role knows (a misspelt name) is an error
    naming the closest known variable.
  - Values missing from the input take the spec's default, which is the only place a default is written.
options:
  _input:
    description: Variable names and their values.
    type: dict
    required: true
  specs:
    description: Role name to the C(main) entry of its C(meta/argument_specs.yml).
    type: dict
    required: true
  defined:
    description: The names the inventory and extra vars define (C(hostvars[inventory_hostname].keys())).
    type: list
    elements: str
    default: []
  prefixes:
    description: Name prefixes that belong to the roles (V(qubemail_), V(mta_), V(pop_), V(lists_), V(webmail_)).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Every variable, checked, with its default when the inventory does not set it
  ansible.builtin.set_fact:
    qubemail_settings: "{{ values | qubemail_variables(specs, hostvars[inventory_hostname].keys() | list, ['mta_']) }}"

# A misspelt name fails with:
#   qubemail: invalid inventory:
#     mta_relay_alowed_networks: is not a variable of any qubemail role (did you mean 'mta_relay_allowed_networks'?); ...
"""

RETURN = r"""
_value:
  description: Every option of every spec with its value (with O(collect), C({config, errors})).
  type: dict
"""

#: Keys of an argument spec option that document it rather than check it.
DOC_KEYS = ("description", "version_added", "short_description")
#: What each spec type expects, for the error line.
EXPECTED = {
    "str": "a string", "int": "an integer", "bool": "a boolean (true or false)", "list": "a list",
    "dict": "a dict", "path": "an absolute path", "raw": "a value", "float": "a number",
}
#: Longest absolute path accepted (Linux PATH_MAX).
MAX_PATH = 4096


def _expected(option):
    text = EXPECTED.get(option.get("type", "str"), "a %s" % option.get("type"))
    if option.get("type") == "list" and option.get("elements"):
        text += " of %ss" % EXPECTED.get(option["elements"], option["elements"]).split(" ", 1)[1]
    if option.get("choices"):
        text = "%s, %s %s" % (text, "each one of" if option.get("type") == "list" else "one of",
                              ", ".join(repr(choice) for choice in option["choices"]))
    return text


def _check_value(errors, name, value, option):
    """Check *value* against one option of an argument spec, as Ansible does
    when the role starts, plus: a path is absolute and one line."""
    spec = {key: item for key, item in option.items() if key not in DOC_KEYS}
    result = ArgumentSpecValidator({name: spec}).validate({name: value})
    if result.error_messages:
        choices = option.get("choices") or []
        words = value if isinstance(value, (list, tuple)) else [value]
        hint = next((did_you_mean(word, [str(c) for c in choices]) for word in words
                     if choices and word not in choices), "")
        errors.add(name, value, "expected %s%s" % (_expected(option), hint))
    elif option.get("type") == "path" and value is not None and (
            not isinstance(value, str) or not value.startswith("/") or has_control_chars(value)
            or any(c.isspace() for c in value) or len(value) > MAX_PATH):
        errors.add(name, value, "expected an absolute path without spaces or control characters")


def qubemail_variables(values, specs, defined=(), prefixes=(), collect=False):
    """Check every role variable against its role's argument spec.

    *values* maps variable names to their values (the inventory's, or the
    role defaults'); a name of a spec missing from it takes the spec's
    default.  *specs* maps a role name to its ``meta/argument_specs.yml``
    ``main`` entry.  *defined* are the names the inventory and extra vars
    define; those starting with one of *prefixes* that no spec knows are
    reported with the closest known name.  Returns ``{name: value}`` for
    every option of every spec (with *collect*: ``{"config", "errors"}``).
    """
    if not isinstance(values, dict) or not isinstance(specs, dict):
        raise AnsibleFilterError("qubemail_variables: expected a dict of values and a dict of role specs")
    errors = Errors()
    options = {}
    for role in sorted(specs):
        try:
            role_options = specs[role]["options"]
        except (KeyError, TypeError):
            raise AnsibleFilterError("qubemail_variables: the spec of role %r has no options" % role) from None
        for name, option in role_options.items():
            options.setdefault(name, option)
    config = {}
    for name, option in options.items():
        config[name] = values[name] if name in values else option.get("default")
        _check_value(errors, name, config[name], option)
    known = sorted(options)
    for name in sorted(set(defined), key=str):
        if isinstance(name, str) and name.startswith(tuple(prefixes)) and name not in options:
            errors.note(name, "is not a variable of any qubemail role%s; see the roles' README tables"
                        % (did_you_mean(name, known) or " (misspelt?)"))
    if collect:
        # The values are returned with the errors: the roles' filters still
        # check the rest, so one run shows every problem.
        return {"config": config, "errors": errors.items}
    return errors.result(config)


class FilterModule:
    """The qubemail_variables filter."""

    def filters(self):
        return {"qubemail_variables": qubemail_variables}
