# -*- coding: utf-8 -*-
"""The qubemail_lists filter: mailing lists (mlmmj) from the groups and lists of the inventory."""

from __future__ import annotations

import re

from ansible_collections.qubemail.appliance.plugins.plugin_utils.checks import (
    DEFAULT_ALIASES,
    Errors,
    LIST_MAILBOX_PREFIX,
    SYSTEM_MAILBOXES,
    base_index,
    check_address,
    check_bool,
    check_choice,
    check_int,
    check_keys,
    check_line,
    check_list,
    check_lowercase_name,
    is_blank,
    is_reserved,
    message_size_limit,
)

DOCUMENTATION = r"""
name: qubemail_lists
short_description: Mailing lists (mlmmj) from the groups and lists of the inventory
version_added: 1.0.0
author: qubemail project
extends_documentation_fragment:
  - qubemail.appliance.validation
  - qubemail.appliance.validation.base
description:
  - Checks C(qubemail_groups) and C(qubemail_lists) and returns the mailing lists. As on the Qube 3, every group
    has a mailing list of the same name whose members are the group's users; independent lists may also have
    external members. Archiving is off by default.
  - "List settings are the same keys under a group's C(list) and on each C(qubemail_lists) item: C(description)
    (one line, default V('')), C(moderators) and C(owners) (user names, aliases, list names or addresses;
    C(owners) defaults to the moderators, else V(postmaster@<primary domain>)), C(posting) (V(members), V(any) or
    V(moderated), which needs moderators; default V(members)), C(subscription) (V(confirm), V(open) or V(closed);
    default V(closed) for a group's list, V(confirm) otherwise), C(max_message_size_kb) (V('') = no list limit,
    else a positive integer), C(reply_to_list) (bool, default V(false)), C(subject_prefix) (one line of at most 64
    characters, default V([NAME]), V('') for none), C(archive) (bool, default V(false)) and
    C(archive_retention_days) (V('') = keep forever, else a positive integer). A missing key or V(null) takes the
    default. Unknown keys are an error."
  - "Each list has the address C(NAME@<primary domain>) and the aliases C(NAME-request), C(NAME-owner),
    C(owner-NAME), C(NAME-bounces), C(NAME-join), C(NAME-subscribe), C(NAME-leave) and C(NAME-unsubscribe).
    Neither the name nor an alias may be a reserved name, a user name, a user alias, a key of C(mta_aliases) or
    another list's name or alias; no user alias or C(mta_aliases) key may be C(NAME+anything)."
  - "Names: C(^[a-z0-9][a-z0-9_-]{0,40}$) after lower-casing, unique among groups and lists, no dots (the name is
    also the folder C(Mailing Lists/NAME)). Group members are users (or V(user@one-of-our-domains)); list members
    may also be another list's address (V(other@one-of-our-domains); a list may not contain itself) or external
    addresses; any other address at one of our domains is an error."
options:
  _input:
    description: C(qubemail_groups), the Qube groups (C(name), C(members), C(list)). V(null) counts as an empty list.
    type: list
    elements: dict
    required: true
  lists:
    description: C(qubemail_lists), the independent lists (C(name), C(members) and the list settings).
    type: list
    elements: dict
    required: true
  mta_aliases:
    description: The raw C(mta_aliases); its keys are taken names.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Mailing lists, one per group plus the independent ones
  ansible.builtin.set_fact:
    lists_config: "{{ qubemail_groups | qubemail_lists(qubemail_lists, qubemail_base, mta_aliases) }}"

# With qubemail_groups: [{name: sales, members: [alice], list: {archive: true}}] and
#   qubemail_lists: [{name: friends, members: [alice, Pal@Elsewhere.NET, sales@example.org], reply_to_list: yes}]
# the result is (the aliases elided)
#   - {name: friends, kind: list, address: friends@example.com, domain: example.com, description: "",
#      members: [alice@example.com, pal@elsewhere.net, sales@example.org], local_members: [alice],
#      moderators: [], owners: [postmaster@example.com], posting: members, subscription: confirm,
#      max_message_size: 0, reply_to_list: true, subject_prefix: "[friends]", archive: false,
#      archive_retention_days: 0,
#      aliases: [{name: friends-request, target: friends+help}, {name: friends-owner, target: friends+owner}, ...]}
#   - {name: sales, kind: group, ..., members: [alice@example.com], subscription: closed, archive: true, ...}
# A bad list fails with, for example:
#   qubemail: invalid inventory:
#     qubemail_lists[0].name = 'team': its alias 'team-join' clashes with the user name 'team-join'
#     qubemail_lists[1].subscription = 'closd': expected one of 'confirm', 'open', 'closed' (did you mean 'closed'?)
"""

RETURN = r"""
_value:
  description:
    - "A list sorted by C(name) of dicts with C(name) (lower-cased), C(kind) (V(group) or V(list)), C(address),
      C(domain) (the primary domain), C(description), C(members) (sorted, de-duplicated, lower-cased addresses;
      users as V(user@<primary domain>)), C(local_members) (sorted user names among the members), C(moderators)
      and C(owners) (sorted addresses), C(posting), C(subscription), C(max_message_size) (int bytes, V(0) = no
      list limit), C(reply_to_list), C(subject_prefix), C(archive), C(archive_retention_days) (int, V(0) = forever)
      and C(aliases) (dicts with C(name) and C(target), e.g. V({name: sales-request, target: sales+help}))."
    - With O(collect), C({config, errors}) as P(qubemail_base#filter) documents.
  type: list
"""

#: List names: also a Maildir++ folder ``.NAME`` of the archive namespace, so
#: no dots (a dot would nest the folder), and no ``+`` (recipient delimiter).
LIST_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")

#: Mailman-style addresses of each list, as (alias pattern, mlmmj 1.3.0
#: command after ``NAME+``).  The list address ``NAME`` itself is piped to
#: mlmmj-receive by the role and is not part of the family.
LIST_ALIAS_FAMILY = (
    ("%s-request", "help"),
    ("%s-owner", "owner"),
    ("owner-%s", "owner"),
    ("%s-bounces", "bounces-help"),
    ("%s-join", "subscribe"),
    ("%s-subscribe", "subscribe"),
    ("%s-leave", "unsubscribe"),
    ("%s-unsubscribe", "unsubscribe"),
)

LIST_POSTING = ("members", "any", "moderated")

LIST_SUBSCRIPTION = ("confirm", "open", "closed")

#: Qube 3: a group's list takes its members from the group.
LIST_SUBSCRIPTION_DEFAULTS = {"group": "closed", "list": "confirm"}

MAX_SUBJECT_PREFIX = 64

#: Settings of a list, the same under ``qubemail_groups[i].list`` and on a
#: ``qubemail_lists[i]`` item.  A missing key or null takes the default;
#: None marks defaults that depend on the list (kind, name, moderators).
LIST_DEFAULTS = {
    "description": "",
    "moderators": [],
    "owners": [],
    "posting": "members",
    "subscription": None,
    "max_message_size_kb": "",
    "reply_to_list": False,
    "subject_prefix": None,
    "archive": False,
    "archive_retention_days": "",
}

LIST_SETTING_KEYS = tuple(LIST_DEFAULTS)

GROUP_KEYS = ("name", "members", "list")

LIST_KEYS = ("name", "members") + LIST_SETTING_KEYS

#: How each kind of entry may name a recipient: (label of an unknown local
#: name, what is expected).
_RECIPIENT_ROLES = {
    "group": ("unknown user", "group members must be users defined in qubemail_users"),
    "member": ("unknown local member", "expected a user defined in qubemail_users, another list's address "
                                       "(name@domain) or an external address local@domain"),
    "manager": ("unknown local recipient", "expected a user, an alias or a list defined in the inventory, "
                                           "or an external address local@domain"),
}

class _Recipients:
    """Resolves the user names and addresses written in members, moderators and owners."""

    def __init__(self, primary, domains, user_names, user_aliases, site_names, list_names):
        self.primary = primary
        self.domains = set(domains)
        self.users = user_names
        self.user_aliases = user_aliases
        self.lists = list_names
        self.aliases = set(user_aliases) | set(site_names) | set(DEFAULT_ALIASES) | SYSTEM_MAILBOXES

    def resolve(self, errors, field, value, role):
        """Return ``(address, user, list)`` for one entry, or None after recording an error.

        *role* is ``group`` (users only), ``member`` (users, other lists'
        addresses, external addresses) or ``manager`` (moderators and owners:
        also any local alias).  Users become ``user@<primary>``, whatever our
        domain they were written with; *user* / *list* name the local user or
        list the entry is, else None.
        """
        label, expected = _RECIPIENT_ROLES[role]
        if not isinstance(value, str):
            errors.add(field, value, "expected a user name" + ("" if role == "group" else
                                                              " or an address local@domain"))
            return None
        address = None
        if "@" in value:
            address = check_address(errors, field, value)
            if address is None:
                return None
            address = address.lower()
            local, domain = address.split("@")
            if domain not in self.domains:
                if role != "group":
                    return address, None, None
                errors.add(field, value, "a group holds users only; put external addresses in a "
                                         "qubemail_lists entry")
                return None
        else:
            local = value.lower()
        if local in self.users:
            return "%s@%s" % (local, self.primary), local, None
        if local in self.lists and role != "group" and (address or role == "manager"):
            return address or "%s@%s" % (local, self.primary), None, local
        if role == "manager" and local in self.aliases:
            return address or "%s@%s" % (local, self.primary), None, None
        hint = ""
        if local in self.user_aliases and role != "manager":
            hint = " (%r is an alias of user %r: write %r)" % (local, self.user_aliases[local],
                                                              self.user_aliases[local])
        elif local in self.lists and role == "member":
            hint = " (to make list %r a member write %r)" % (local, "%s@%s" % (local, self.primary))
        errors.add(field, value, "%s %r; %s%s" % (label, local, expected, hint))
        return None

def _check_list_name(errors, field, value):
    """Validate a list (or group) name; return it lower-cased."""
    return check_lowercase_name(errors, field, value, LIST_NAME_RE, "a list name",
                                 "; no dots: the name is also the archive folder '%sNAME', which a dot "
                                 "would nest" % LIST_MAILBOX_PREFIX)

def _list_entry(errors, field, item, kind):
    """Check the shape of one qubemail_groups / qubemail_lists item.

    Returns ``{"field", "kind", "name", "raw_name", "members", "settings",
    "settings_field"}`` (name None when missing or invalid), or None when
    *item* is not a dict.
    """
    if not isinstance(item, dict):
        errors.add(field, item, "expected a dict with at least 'name'")
        return None
    check_keys(errors, field, item, GROUP_KEYS if kind == "group" else LIST_KEYS)
    if "name" in item:
        name = _check_list_name(errors, field + ".name", item["name"])
    else:
        errors.note(field + ".name", "missing; every %s needs a name" % kind)
        name = None
    settings_field, settings = field, item
    if kind == "group":
        settings_field, settings = field + ".list", item.get("list")
        if settings is None:
            settings = {}
        elif not isinstance(settings, dict):
            errors.add(settings_field, settings, "expected a dict of list settings (or nothing for the defaults)")
            settings = {}
        else:
            check_keys(errors, settings_field, settings, LIST_SETTING_KEYS)
    return {"field": field, "kind": kind, "name": name, "raw_name": item.get("name"), "members": item.get("members"),
            "settings": settings, "settings_field": settings_field}

def _list_entries(errors, groups, lists):
    """Pass 1: the groups' and the independent lists' entries, without duplicates."""
    entries, first = [], {}
    for variable, kind, value in (("qubemail_groups", "group", groups), ("qubemail_lists", "list", lists)):
        for index, item in enumerate(check_list(errors, variable, value)):
            entry = _list_entry(errors, "%s[%d]" % (variable, index), item, kind)
            if entry is None or entry["name"] is None:
                continue
            name, field = entry["name"], entry["field"] + ".name"
            if name not in first:
                first[name] = (kind, entry["field"])
            elif first[name][0] == kind:
                errors.add(field, entry["raw_name"], "duplicate %s name, also %s.name" % (kind, first[name][1]))
                continue
            else:
                errors.add(field, entry["raw_name"], "group %r (%s.name) already has a list of that name; put its "
                                                "settings under %s.list" % (name, first[name][1], first[name][1]))
                continue
            entries.append(entry)
    return entries

def _site_alias_names(errors, mta_aliases):
    """Return {lower-cased mta_aliases key: key as written} (qubemail_mta checks the rest)."""
    if mta_aliases is None:
        return {}
    if not isinstance(mta_aliases, dict):
        errors.add("mta_aliases", mta_aliases, "expected a dict of local part: [targets]")
        return {}
    names = {}
    for key in sorted((k for k in mta_aliases if isinstance(k, str)), key=str):
        names.setdefault(key.lower(), key)
    return names

def _check_list_claims(errors, entries, user_names, user_aliases, site):
    """Report list names and family aliases that are taken or claimed twice."""
    taken = {}
    for name in sorted(user_names):
        taken.setdefault(name, "the user name %r" % name)
    for alias, owner in sorted(user_aliases.items()):
        taken.setdefault(alias, "an alias of user %r in qubemail_users" % owner)
    for name, key in sorted(site.items()):
        taken.setdefault(name, "the site alias mta_aliases[%r]" % key)
    claims = {}
    for entry in entries:
        name, field = entry["name"], entry["field"] + ".name"
        value = entry["raw_name"]
        family = [pattern % name for pattern, _ in LIST_ALIAS_FAMILY]
        if is_reserved(name):
            errors.add(field, value, "%r is a reserved name" % name)
        elif any(is_reserved(alias) for alias in family):
            errors.add(field, value, "its aliases %s are reserved names"
                       % ", ".join(repr(alias) for alias in family if is_reserved(alias)))
        for claim in [name] + family:
            subject = repr(claim) if claim == name else "its alias %r" % claim
            other = claims.get(claim)
            if is_reserved(claim):
                continue
            if claim in taken:
                errors.add(field, value, "%s clashes with %s" % (subject, taken[claim]))
            elif other is not None:
                errors.add(field, value, "%s %s %s %r (%s.name)" % (
                    subject, "clashes with" if claim == other["name"] else "is also an alias of",
                    other["kind"], other["name"], other["field"]))
            else:
                claims[claim] = entry
        # local(8) looks up NAME+EXT before NAME: such an alias would capture a list command.
        for other in sorted(t for t in taken if t.startswith(name + "+")):
            errors.add(field, value, "%s would capture the list command address %r" % (taken[other], other))

def _list_recipients(errors, field, value, recipients, role):
    """Resolve a members / moderators / owners list.

    Returns (sorted addresses, sorted local user names, [(field, value, list
    name)] for entries that are lists).
    """
    addresses, users, lists = set(), set(), []
    for index, item in enumerate(check_list(errors, field, value)):
        item_field = "%s[%d]" % (field, index)
        resolved = recipients.resolve(errors, item_field, item, role)
        if resolved is not None:
            address, user, list_name = resolved
            addresses.add(address)
            if user:
                users.add(user)
            if list_name:
                lists.append((item_field, item, list_name))
    return sorted(addresses), sorted(users), lists

def _list_settings(errors, entry, recipients):
    """Validate one list's settings; return the RETURN fields they give."""
    field, raw, name, primary = entry["settings_field"], entry["settings"], entry["name"], recipients.primary
    defaults = dict(LIST_DEFAULTS, subscription=LIST_SUBSCRIPTION_DEFAULTS[entry["kind"]],
                    subject_prefix="[%s]" % name)
    s = {key: default if raw.get(key) is None else raw[key] for key, default in defaults.items()}

    moderators = _list_recipients(errors, field + ".moderators", s["moderators"], recipients, "manager")[0]
    owners = _list_recipients(errors, field + ".owners", s["owners"], recipients, "manager")[0]
    posting = check_choice(errors, field + ".posting", s["posting"], LIST_POSTING)
    if posting == "moderated" and not s["moderators"]:
        errors.add(field + ".posting", s["posting"], "needs at least one moderator in %s.moderators; "
                                                     "nobody could release the held posts" % field)
    retention = s["archive_retention_days"]
    return {
        "description": check_line(errors, field + ".description", s["description"]),
        "moderators": moderators,
        "owners": owners or moderators or ["postmaster@%s" % primary],
        "posting": posting,
        "subscription": check_choice(errors, field + ".subscription", s["subscription"], LIST_SUBSCRIPTION),
        "max_message_size": message_size_limit(errors, field + ".max_message_size_kb",
                                                s["max_message_size_kb"]),
        "reply_to_list": check_bool(errors, field + ".reply_to_list", s["reply_to_list"]),
        "subject_prefix": check_line(errors, field + ".subject_prefix", s["subject_prefix"],
                                      MAX_SUBJECT_PREFIX),
        "archive": check_bool(errors, field + ".archive", s["archive"]),
        "archive_retention_days": 0 if is_blank(retention) else check_int(
            errors, field + ".archive_retention_days", retention, 1, unit=" (days) or '' to keep forever"),
    }

def _check_list_loops(errors, nested):
    """Report a list that names its own address as a member.

    *nested* maps a list name to its ``(field, value, list name)`` members.
    Lists that reach each other through other lists (A in B, B in A) are
    allowed: each list's loop guard (X-Loop, List-Id) stops a post that comes
    back to it, and an external list can close such a loop anyway.
    """
    for name in sorted(nested):
        for field, value, member in nested[name]:
            if member == name:
                errors.add(field, value, "is the address of list %r itself; a list cannot be its own member"
                           % name)

def qubemail_lists(groups, lists, base, mta_aliases=None, collect=False):
    """Validate qubemail_groups and qubemail_lists against qubemail_base output.

    Every group yields a list of the same name whose members are the group's
    users; *mta_aliases* (the raw site aliases) only contributes taken names.
    Returns the lists documented in RETURN, sorted by name.
    """
    errors = Errors()
    user_names, user_aliases, domains, primary = base_index(base, "qubemail_lists: the third argument")
    site = _site_alias_names(errors, mta_aliases)

    # Pass 1: the names, so that pass 2 knows every list a member may be.
    entries = _list_entries(errors, groups, lists)
    _check_list_claims(errors, entries, user_names, user_aliases, site)
    recipients = _Recipients(primary, domains, user_names, user_aliases, site,
                             {entry["name"] for entry in entries})

    # Pass 2: members and settings.
    results, nested = [], {}
    for entry in entries:
        name = entry["name"]
        members, local_members, nested[name] = _list_recipients(
            errors, entry["field"] + ".members", entry["members"], recipients,
            "group" if entry["kind"] == "group" else "member")
        result = {"name": name, "kind": entry["kind"], "address": "%s@%s" % (name, primary), "domain": primary,
                  "members": members, "local_members": local_members}
        result.update(_list_settings(errors, entry, recipients))
        result["aliases"] = [{"name": pattern % name, "target": "%s+%s" % (name, command)}
                             for pattern, command in LIST_ALIAS_FAMILY]
        results.append(result)
    _check_list_loops(errors, nested)

    if errors.items:
        return errors.result(None, collect)
    return errors.result(sorted(results, key=lambda result: result["name"]), collect)


class FilterModule:
    """The qubemail_lists filter."""

    def filters(self):
        return {"qubemail_lists": qubemail_lists}
