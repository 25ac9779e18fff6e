# -*- coding: utf-8 -*-
"""The qubemail_senders filter: who may use which envelope sender."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.qubemail.appliance.plugins.plugin_utils.checks import base_index

DOCUMENTATION = r"""
name: qubemail_senders
short_description: The envelope senders each login owns, users' and lists' together
version_added: 1.0.0
author: qubemail project
description:
  - The table behind Postfix's C(smtpd_sender_login_maps) and the POP-before-SMTP daemon's senders file.
    Each user owns their name and aliases at every domain and their C(send_as) (from P(qubemail_base#filter));
    each user among a list's owners also owns the list's address at every domain, so an owner can write to
    the list as the list (announcements, the list's own notices).
  - An owner that is an external address owns nothing here: it has no login.
options:
  _input:
    description: The output of P(qubemail_base#filter).
    type: dict
    required: true
  lists:
    description: The output of P(qubemail_lists#filter).
    type: list
    required: true
"""

EXAMPLES = r"""
- name: Who may send as what
  ansible.builtin.set_fact:
    qubemail_sender_logins: "{{ qubemail_base | qubemail_senders(qubemail_config['lists']) }}"
"""

RETURN = r"""
_value:
  description: Sorted C([address, "login,login"]) pairs (logins sorted, de-duplicated).
  type: list
"""


def qubemail_senders(base, lists):
    """[[address, "login,login"]] for Postfix and the daemon, sorted."""
    user_names, user_aliases, domains, _ = base_index(base, "qubemail_senders: the first argument")
    try:
        owners = {address: set(logins.split(",")) for address, logins in base["sender_logins"]}
        for mailing_list in lists:
            users = set()
            for owner in mailing_list["owners"]:
                # An owner stands for a user when it is NAME or an alias of
                # NAME at one of our domains.
                local, _, domain = owner.lower().rpartition("@")
                if domain in domains:
                    users.add(local if local in user_names else user_aliases.get(local))
            users.discard(None)
            if users:
                for domain in domains:
                    owners.setdefault("%s@%s" % (mailing_list["name"], domain), set()).update(users)
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError("qubemail_senders: expected the outputs of qubemail_base and qubemail_lists (%s)"
                                 % exc)
    return [[address, ",".join(sorted(names))] for address, names in sorted(owners.items())]


class FilterModule:
    """The qubemail_senders filter."""

    def filters(self):
        return {"qubemail_senders": qubemail_senders}
