# -*- coding: utf-8 -*-
"""The qubemail_pop_before_smtp filter: settings of the POP-before-SMTP daemon, checked."""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.qubemail.appliance.plugins.plugin_utils.checks import (
    Errors,
    check_bool,
    check_choice,
    check_int,
    check_list,
    check_networks,
    settings_of,
)

DOCUMENTATION = r"""
name: qubemail_pop_before_smtp
short_description: Settings of the POP-before-SMTP daemon, checked
version_added: 1.0.0
author: qubemail project
extends_documentation_fragment:
  - qubemail.appliance.validation
description:
  - Checks the C(pop_before_smtp_*) variables (roles/pop_before_smtp/meta/argument_specs.yml), including what the
    daemon would refuse at start (a sweep interval of 0, an empty protocol list, a report listener that is not a
    loopback address and port), so a bad value stops the play instead of leaving a daemon that restarts in a loop.
options:
  _input:
    description: Every variable of the pop_before_smtp role, keyed by name (other keys are ignored).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Daemon settings
  ansible.builtin.set_fact:
    pop_before_smtp_config: "{{ qubemail_settings | qubemail_pop_before_smtp }}"
"""

RETURN = r"""
_value:
  description:
    - "A dict with C(enabled) (bool), C(ttl) (int seconds), C(never_authorize) (CIDR strings without brackets,
      given order, de-duplicated), C(protocols), C(report_listen), C(sweep_interval) (int seconds), C(bind_sender) and C(submission) (bools), C(grants_reader) (a user name or empty)."
    - With O(collect), C({config, errors}) as P(qubemail_base#filter) documents.
  type: dict
"""

#: The variables qubemail_pop_before_smtp reads (their defaults:
#: roles/pop_before_smtp/meta/argument_specs.yml).
POP_BEFORE_SMTP_SETTINGS = (
    "pop_before_smtp_enabled", "pop_before_smtp_ttl", "pop_before_smtp_never_authorize",
    "pop_before_smtp_protocols", "pop_before_smtp_report_listen", "pop_before_smtp_sweep_interval",
    "pop_before_smtp_bind_sender", "pop_before_smtp_submission", "pop_before_smtp_grants_reader",
)
PROTOCOLS = ("pop3", "imap")
#: A system account (pop_before_smtp_grants_reader): Debian's service users start with "_".
SYSTEM_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
#: The daemon's sweep timer, in seconds (it refuses to start outside this).
MAX_SWEEP_INTERVAL = 86399


def _report_listen(errors, value):
    """The report listener: a loopback address and a port, HOST:PORT or [V6]:PORT."""
    field = "pop_before_smtp_report_listen"
    expected = "expected a loopback address and port such as '127.0.0.1:10032' or '[::1]:10032'"
    host, sep, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        errors.add(field, value, expected)
        return None
    if not sep or (address.version == 6) != bracketed or not (port.isascii() and port.isdigit()) \
            or not 0 < int(port) <= 65535:
        errors.add(field, value, expected)
        return None
    if not address.is_loopback:
        errors.add(field, value, "must be a loopback address: Dovecot reports logins on this host only, "
                                 "and no other host may send reports")
        return None
    return value


def qubemail_pop_before_smtp(settings, collect=False):
    """Validate the POP-before-SMTP settings.

    Returns ``{"enabled", "ttl", "never_authorize", "protocols",
    "report_listen", "sweep_interval", "bind_sender", "submission", "grants_reader"}``; networks are CIDR strings without
    brackets, de-duplicated, in the given order (with *collect*:
    ``{"config", "errors"}``).  It checks what the daemon would otherwise
    refuse at start, so a bad value stops the play instead of leaving a
    daemon that restarts in a loop and relays nothing.
    """
    errors = Errors()
    s = settings_of(settings, POP_BEFORE_SMTP_SETTINGS, "qubemail_pop_before_smtp")
    enabled = check_bool(errors, "pop_before_smtp_enabled", s["pop_before_smtp_enabled"])
    ttl = check_int(errors, "pop_before_smtp_ttl", s["pop_before_smtp_ttl"], 1, unit=" (seconds)")
    never = check_networks(errors, "pop_before_smtp_never_authorize", s["pop_before_smtp_never_authorize"])
    protocols = []
    for index, item in enumerate(check_list(errors, "pop_before_smtp_protocols", s["pop_before_smtp_protocols"])):
        word = check_choice(errors, "pop_before_smtp_protocols[%d]" % index, item, PROTOCOLS)
        if word is not None and word not in protocols:
            protocols.append(word)
    if not protocols and isinstance(s["pop_before_smtp_protocols"], (list, tuple)) \
            and not s["pop_before_smtp_protocols"]:
        errors.add("pop_before_smtp_protocols", s["pop_before_smtp_protocols"],
                   "expected at least one of %s; to unlock relay by no login, set "
                   "pop_before_smtp_enabled: false" % ", ".join(PROTOCOLS))
    sweep = check_int(errors, "pop_before_smtp_sweep_interval", s["pop_before_smtp_sweep_interval"], 1,
                      MAX_SWEEP_INTERVAL, " (seconds)")
    bind_sender = check_bool(errors, "pop_before_smtp_bind_sender", s["pop_before_smtp_bind_sender"])
    submission = check_bool(errors, "pop_before_smtp_submission", s["pop_before_smtp_submission"])
    reader = s["pop_before_smtp_grants_reader"]
    if not isinstance(reader, str) or (reader and not SYSTEM_USER_RE.match(reader)):
        errors.add("pop_before_smtp_grants_reader", reader, "expected a system user's name, e.g. _rspamd, or ''")
    return errors.result({"enabled": enabled, "ttl": ttl, "never_authorize": [str(n) for n in never],
                          "protocols": protocols, "report_listen": _report_listen(errors, s["pop_before_smtp_report_listen"]),
                          "sweep_interval": sweep, "bind_sender": bind_sender, "submission": submission,
                          "grants_reader": reader}, collect)


class FilterModule:
    """The qubemail_pop_before_smtp filter."""

    def filters(self):
        return {"qubemail_pop_before_smtp": qubemail_pop_before_smtp}
