# -*- coding: utf-8 -*-
"""The qubemail_fail2ban filter: settings of the fail2ban role, checked."""

from __future__ import annotations

from ansible_collections.qubemail.appliance.plugins.plugin_utils.checks import (
    Errors,
    check_bool,
    check_int,
    check_networks,
    settings_of,
)

DOCUMENTATION = r"""
name: qubemail_fail2ban
short_description: Settings of the fail2ban role, checked, and the jails they make
version_added: 1.0.0
author: qubemail project
extends_documentation_fragment:
  - qubemail.appliance.validation
description:
  - Checks the C(fail2ban_*) variables (roles/fail2ban/meta/argument_specs.yml) and works out the jails
    (C(postfix-sasl) for failed SASL logins on submission, C(dovecot) for POP3 and IMAP and, with WebMail,
    C(roundcube-auth)) and the addresses never banned (loopback first, then C(mta_relay_allowed_networks),
    then C(fail2ban_ignore)).
options:
  _input:
    description: Every variable of the fail2ban role, and C(webmail_enabled), C(mta_relay_allowed_networks).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: fail2ban settings
  ansible.builtin.set_fact:
    fail2ban_config: "{{ qubemail_settings | qubemail_fail2ban }}"
"""

RETURN = r"""
_value:
  description:
    - "A dict with C(enabled) (bool), C(maxretry), C(findtime), C(bantime) (ints), C(ignoreip) (a list of
      addresses and networks) and C(jails) (a list of dicts with C(name), C(filter) and C(comment))."
    - With O(collect), C({config, errors}) as P(qubemail_base#filter) documents.
  type: dict
"""

#: The variables qubemail_fail2ban reads (defaults: roles/fail2ban/meta/argument_specs.yml, and
#: roles/webmail and roles/mta for the last two).
FAIL2BAN_SETTINGS = (
    "fail2ban_enabled", "fail2ban_maxretry", "fail2ban_findtime", "fail2ban_bantime", "fail2ban_ignore",
    "webmail_enabled", "mta_relay_allowed_networks",
)
#: Never banned: WebMail's own IMAP and submission logins come from here.
LOOPBACK = ["127.0.0.0/8", "::1"]
#: fail2ban_ignore is a short list of the office's own addresses.
MAX_IGNORE = 100
#: Debian 12's postfix unit starts the master as postfix@-.service, as 13's does; both are read.
POSTFIX_JOURNAL = "_SYSTEMD_UNIT=postfix.service _SYSTEMD_UNIT=postfix@-.service"
#: Every jail of the appliance: name, Debian's filter with its options, what it reads.
JAILS = (
    ("postfix-sasl", 'postfix[mode=auth, journalmatch="%s"]' % POSTFIX_JOURNAL,
     "Failed SASL logins on submission (587, 465): Postfix's 'SASL PLAIN authentication failed'."),
    ("dovecot", "dovecot",
     "Failed POP3 and IMAP logins: Dovecot's 'auth failed' (2.3) and 'Login aborted' (2.4)."),
    ("roundcube-auth", "roundcube-auth",
     "Failed WebMail logins: Roundcube's 'Failed login for NAME from ADDRESS', one line for each (journal)."),
)


def qubemail_fail2ban(settings, collect=False):
    """Validate the fail2ban settings and derive the jails.

    Returns ``{"enabled", "maxretry", "findtime", "bantime", "ignoreip", "jails"}``.
    """
    errors = Errors()
    s = settings_of(settings, FAIL2BAN_SETTINGS, "qubemail_fail2ban")
    enabled = check_bool(errors, "fail2ban_enabled", s["fail2ban_enabled"])
    maxretry = check_int(errors, "fail2ban_maxretry", s["fail2ban_maxretry"], 1, 1000, " (failed logins)")
    findtime = check_int(errors, "fail2ban_findtime", s["fail2ban_findtime"], 10, 86400, " (seconds)")
    bantime = check_int(errors, "fail2ban_bantime", s["fail2ban_bantime"], 10, 31536000, " (seconds)")
    ignore = check_networks(errors, "fail2ban_ignore", s["fail2ban_ignore"])
    if len(ignore) > MAX_IGNORE:
        errors.add("fail2ban_ignore", s["fail2ban_ignore"],
                   "has %d entries; at most %d (name networks rather than addresses)" % (len(ignore), MAX_IGNORE))
    webmail = check_bool(errors, "webmail_enabled", s["webmail_enabled"])
    # The relay-allowed networks may send without a login anyway; the mta
    # filter reports their errors.
    relay = check_networks(Errors(), "mta_relay_allowed_networks", s["mta_relay_allowed_networks"])
    if errors.items:
        return errors.result(None, collect)
    ignoreip = list(LOOPBACK)
    for network in relay + ignore:
        if str(network) not in ignoreip + ["127.0.0.0/8", "::1/128"]:
            ignoreip.append(str(network))
    jails = [{"name": name, "filter": jail_filter, "comment": comment}
             for name, jail_filter, comment in JAILS if name != "roundcube-auth" or webmail]
    return errors.result({
        "enabled": enabled, "maxretry": maxretry, "findtime": findtime, "bantime": bantime,
        "ignoreip": ignoreip, "jails": jails,
    }, collect)


class FilterModule:
    """The qubemail_fail2ban filter."""

    def filters(self):
        return {"qubemail_fail2ban": qubemail_fail2ban}
