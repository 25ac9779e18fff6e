# -*- coding: utf-8 -*-
"""The qubemail_list_acl filter: who may read each list archive folder."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.qubemail.appliance.plugins.plugin_utils.checks import (
    LIST_ARCHIVE_ACCOUNT,
    LIST_MAILBOX_PREFIX,
    USER_NAME_RE,
    show,
)

DOCUMENTATION = r"""
name: qubemail_list_acl
short_description: Who may read each list archive folder
version_added: 1.0.0
author: qubemail project
description:
  - Returns, for each list with archive on, the users who may read its Dovecot folder C(Mailing Lists/NAME) - its
    local members and its local subscribers (self-subscribed too), never the archive account V(mlarchive).
options:
  _input:
    description: The output of P(qubemail_lists#filter).
    type: list
    required: true
  subscribers:
    description:
      - List name to the addresses mlmmj has subscribed now (a list, or C(mlmmj-list) output as one string).
      - Those at one of our domains whose local part (without a C(+extension)) is a user may read the archive.
    type: dict
    default: {}
  domains:
    description: Our mail domains, besides the lists' own domain.
    type: list
    elements: str
    default: []
  users:
    description: The user names (or the user dicts of P(qubemail_base#filter)); when omitted, any local part that could be a user name counts.
    type: list
  prefix:
    description: The archive namespace's prefix with its separator (the lists role's C(lists_archive_prefix) + V(/)).
    type: str
    default: Mailing Lists/
"""

EXAMPLES = r"""
- name: Who may read the archives
  ansible.builtin.set_fact:
    lists_archive_acl: "{{ lists_config | qubemail_list_acl(subscribers, qubemail_base.domains, qubemail_base.users) }}"
# With subscribers {sales: [alice@example.com, bob+lists@example.org]}: [{mailbox: Mailing Lists/sales, users: [alice, bob]}]
"""

RETURN = r"""
_value:
  description: A list sorted by C(mailbox) of dicts with C(mailbox) (V(Mailing Lists/NAME)) and C(users) (sorted user names).
  type: list
"""

def _subscriber_user(address, domains, users, list_names):
    """Return the local user an mlmmj subscriber address delivers to, or None."""
    if not isinstance(address, str):
        return None
    local, _, domain = address.strip().lower().rpartition("@")
    # recipient_delimiter = + : alice+lists@ is delivered to alice.
    user = local.split("+", 1)[0]
    if domain not in domains or not USER_NAME_RE.match(user) or user in list_names \
            or user == LIST_ARCHIVE_ACCOUNT:
        return None
    return user if users is None or user in users else None

def qubemail_list_acl(lists, subscribers=None, domains=None, users=None, prefix=LIST_MAILBOX_PREFIX):
    """Who may read each list archive folder ``Mailing Lists/NAME``.

    *lists* is qubemail_lists output; *subscribers* maps a list name to the
    addresses mlmmj currently has subscribed (a list, or mlmmj-list's output
    as one string).  *prefix* is the archive namespace's prefix, separator
    included.  Returns ``[{"mailbox", "users"}]`` for the lists with archive
    on, sorted by mailbox.
    """
    try:
        archived = [(item["name"], item["local_members"]) for item in lists if item["archive"]]
        list_names = {item["name"] for item in lists}
        our_domains = {item["domain"] for item in lists}
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError("qubemail_list_acl: the first argument must be the output of "
                                 "qubemail_lists (%s)" % exc)
    if subscribers is None:
        subscribers = {}
    if not isinstance(subscribers, dict):
        raise AnsibleFilterError("qubemail_list_acl: subscribers must be a dict of list name: [addresses], "
                                 "not %s" % show(subscribers))
    our_domains |= {str(domain).lower() for domain in domains or ()}
    if users is not None:
        users = {str(u["name"] if isinstance(u, dict) else u) for u in users}
    acl = []
    for name, local_members in archived:
        current = subscribers.get(name) or []
        if isinstance(current, str):
            current = current.splitlines()
        readers = set(local_members)
        readers.update(_subscriber_user(a, our_domains, users, list_names) for a in current)
        readers.discard(None)
        readers.discard(LIST_ARCHIVE_ACCOUNT)
        acl.append({"mailbox": prefix + name, "users": sorted(readers)})
    return sorted(acl, key=lambda entry: entry["mailbox"])


class FilterModule:
    """The qubemail_list_acl filter."""

    def filters(self):
        return {"qubemail_list_acl": qubemail_list_acl}
