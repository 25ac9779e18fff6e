# -*- coding: utf-8 -*-
"""The qubemail_php_string filter: a string as a PHP single-quoted literal."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.qubemail.appliance.plugins.plugin_utils.checks import (
    show,
)

DOCUMENTATION = r"""
name: qubemail_php_string
short_description: A string as a PHP single-quoted literal
version_added: 1.0.0
author: qubemail project
description:
  - Quotes a string for a generated PHP file; C(\\) and C(') are escaped, nothing is interpolated.
options:
  _input:
    description: The string.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: In a template
  ansible.builtin.debug:
    msg: "$config['product_name'] = {{ webmail_config.product_name | qubemail_php_string }};"
"""

RETURN = r"""
_value:
  description: The quoted string, e.g. V('it\\'s') for V(it's).
  type: str
"""

def qubemail_php_string(value):
    """Quote *value* as a PHP single-quoted string literal (no interpolation)."""
    if not isinstance(value, str):
        raise AnsibleFilterError("qubemail_php_string: expected a string, not %s" % show(value))
    return "'%s'" % value.replace("\\", "\\\\").replace("'", "\\'")


class FilterModule:
    """The qubemail_php_string filter."""

    def filters(self):
        return {"qubemail_php_string": qubemail_php_string}
