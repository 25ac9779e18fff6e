# -*- coding: utf-8 -*-
"""The qubemail_senders filter: who may use which envelope sender."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

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


def _user_of(base, address):
    """The user an owner address stands for (NAME or an alias of NAME at one
    of our domains), else None."""
    local, _, domain = address.lower().rpartition("@")
    if domain not in base["domains"]:
        return None
    for user in base["users"]:
        if local == user["name"] or local in user["aliases"]:
            return user["name"]
    return None


def qubemail_senders(base, lists):
    """[[address, "login,login"]] for Postfix and the daemon, sorted."""
    try:
        owners = {address: set(logins.split(",")) for address, logins in base["sender_logins"]}
        for mailing_list in lists:
            users = {_user_of(base, owner) for owner in mailing_list["owners"]} - {None}
            for domain in base["domains"]:
                if users:
                    owners.setdefault("%s@%s" % (mailing_list["name"], domain), set()).update(users)
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError("qubemail_senders: expected the outputs of qubemail_base and qubemail_lists (%s)"
                                 % exc)
    return [[address, ",".join(sorted(names))] for address, names in sorted(owners.items())]


class FilterModule:
    """The qubemail_senders filter."""

    def filters(self):
        return {"qubemail_senders": qubemail_senders}
