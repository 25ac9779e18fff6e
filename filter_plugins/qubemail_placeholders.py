# -*- coding: utf-8 -*-
"""The qubemail_placeholders filter: refuse the example inventory's placeholders."""

from __future__ import annotations

import ipaddress
import re

from ansible.errors import AnsibleFilterError
from ansible_collections.qubemail.appliance.plugins.plugin_utils.checks import (
    Errors,
    redact_hash,
)

DOCUMENTATION = r"""
name: qubemail_placeholders
short_description: Refuse the example inventory's placeholders
version_added: 1.0.0
author: qubemail project
extends_documentation_fragment:
  - qubemail.appliance.validation
description:
  - "Every string in a dict of settings, at any depth, is checked: the example inventory's secrets, addresses in the
    documentation networks 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32, and names under
    example.com, example.org, example.net and .example are errors. Names reserved for testing (.test) pass."
options:
  _input:
    description: Variable names and values (every role variable and the host's C(ansible_host)).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Refuse placeholders left in place
  ansible.builtin.assert:
    that: qubemail_settings | qubemail_placeholders
"""

RETURN = r"""
_value:
  description: V(true), or an error listing every placeholder with its field (with O(collect), C({config, errors})).
  type: raw
"""

# What documentation reserves, and so what no live server uses: the example
# inventory's placeholders are drawn from these (RFC 5737, RFC 3849, RFC 2606).
DOCUMENTATION_NETWORKS = tuple(ipaddress.ip_network(n) for n in
                               ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"))

DOCUMENTATION_DOMAINS = ("example.com", "example.org", "example.net", "example")

# The example inventory's secrets (inventory/example/group_vars/qubemail/vault.yml),
# whose plain text the example prints.
PLACEHOLDER_SECRETS = frozenset((
    "change-me-and-vault-me",
    "$6$qubeexample2026$If2Z496.UfyxXmZ4faXfbhPAOcSvf.4sDqZnsKdDUqFUkkHY7jGlHb2DhKl20AxLSH8kBFP/uZ/DDL6qlCF6S.",
))

_IP_TOKEN_RE = re.compile(r"[0-9A-Fa-f:.]*[.:][0-9A-Fa-f:.]*(?:/[0-9]{1,3})?")

_NAME_TOKEN_RE = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")

MAX_PLACEHOLDER_DEPTH = 8

def _documentation_network(text):
    """The documentation network that *text* (an address or network) lies in, or None."""
    for token in _IP_TOKEN_RE.findall(text):
        try:
            network = ipaddress.ip_network(token, strict=False)
        except ValueError:
            continue
        for reserved in DOCUMENTATION_NETWORKS:
            if network.version == reserved.version and network.overlaps(reserved):
                return reserved
    return None

def _documentation_domain(text):
    """The documentation domain that a name or address in *text* is under, or None."""
    for token in _NAME_TOKEN_RE.findall(text.lower()):
        if "." not in token:
            continue  # "Example Office WebMail" names no domain
        for reserved in DOCUMENTATION_DOMAINS:
            if token == reserved or token.endswith("." + reserved):
                return reserved
    return None

def _check_placeholders(errors, field, value, depth=0):
    if depth > MAX_PLACEHOLDER_DEPTH:
        return
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            _check_placeholders(errors, "%s.%s" % (field, key), value[key], depth + 1)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_placeholders(errors, "%s[%d]" % (field, index), item, depth + 1)
    elif isinstance(value, str):
        if value in PLACEHOLDER_SECRETS:
            errors.add(field, redact_hash(value), "the example inventory's placeholder secret, whose plain text "
                       "it prints: put your own (vault.yml; a hash from `mkpasswd -m sha-512`)")
            return
        network = _documentation_network(value)
        if network is not None:
            errors.add(field, value, "in %s, a documentation network (the example's placeholder): "
                       "put your own address or network" % network)
            return
        domain = _documentation_domain(value)
        if domain is not None:
            errors.add(field, value, "under %s, reserved for documentation (the example's placeholder): "
                       "put your own domain or address" % (domain if "." in domain else "." + domain))

def qubemail_placeholders(settings, collect=False):
    """Refuse the example inventory's placeholders left in place.

    *settings* maps variable names to their values (the inventory's
    ``qubemail_*``, ``mta_*``, ``pop_*``, ``lists_*``, ``webmail_*`` and the
    host's ``ansible_host``). Every string in them, at any depth, is checked:
    the example's secrets, addresses in the documentation networks and names
    under the documentation domains are errors. Names reserved for testing
    (``.test``, used by the demo and the tests) are not. Returns True.
    """
    if not isinstance(settings, dict):
        raise AnsibleFilterError("qubemail_placeholders: expected a dict of settings, got %s"
                                 % type(settings).__name__)
    errors = Errors()
    for name in sorted(settings):
        _check_placeholders(errors, name, settings[name])
    if errors.items:
        return errors.result(None, collect)
    return errors.result(True, collect)


class FilterModule:
    """The qubemail_placeholders filter."""

    def filters(self):
        return {"qubemail_placeholders": qubemail_placeholders}
