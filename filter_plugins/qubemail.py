# -*- coding: utf-8 -*-
"""Validate and normalise the qubemail inventory.

The roles never read ``qubemail_*`` / ``mta_*`` / ``pop_before_smtp_*``
variables directly to build configuration files.  They pass them through the
filters below, which

* check every value and collect *all* problems, then raise one
  ``AnsibleFilterError`` whose message starts with
  ``qubemail: invalid inventory:`` and has one line per problem, each naming
  the inventory variable and path (``qubemail_users[2].aliases[0]``), the
  offending value and what was expected, so an administrator can fix
  everything in one run;
* return plain, normalised data (lower-cased names, Postfix syntax for
  networks, sorted lists) so generated files are byte-for-byte stable across
  runs.

The functions are pure: no I/O, no randomness, no dependence on dict order
beyond the order the administrator wrote lists in.

Filters:

``qubemail_base(hostname, domains, users)``
    Appliance name, mail domains and mailbox users.
``qubemail_mta(settings, base)``
    Postfix settings of the ``mta`` role; *base* is qubemail_base's output.
``qubemail_pop_before_smtp(settings)``
    Settings of the POP-before-SMTP relay daemon.
``qubemail_lists(groups, lists, base, mta_aliases=None)``
    Mailing lists (mlmmj): one per group plus the independent lists.
``qubemail_list_acl(lists, subscribers=None, domains=None, users=None, prefix="Mailing Lists/")``
    Dovecot ACL entries for the archive folders ``Mailing Lists/NAME``.
``qubemail_webmail(settings)``
    Settings of the WebMail role (Roundcube, Apache).
``qubemail_php_string(value)``
    A string as a PHP single-quoted literal, for generated PHP files.
``qubemail_placeholders(settings)``
    Refuses the example inventory's placeholders left in place.
``qubemail_validation_errors(results)``
    The error lines of failed validation tasks, for site.yml's stop step.

Passwords are never echoed in error messages: ``password`` values are
redacted entirely and ``password_hash`` values are shown only by their scheme
prefix (a plain-text password put in the wrong field must not end up in an
Ansible log).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import unicodedata

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: qubemail
short_description: Validate and normalise the qubemail inventory
version_added: 1.0.0
author: qubemail project
description:
  - This file provides nine filters used by the qubemail roles and playbooks/site.yml.
  - P(qubemail_base#filter) checks C(qubemail_hostname), C(qubemail_domains) and C(qubemail_users) and returns the
    appliance name, the mail domains (the first is the primary domain) and the mailbox users sorted by name.
  - P(qubemail_mta#filter) checks the C(mta_*) variables of the mta role against the output of P(qubemail_base#filter)
    and returns Postfix-ready values (C(mynetworks), C(relayhost), C(message_size_limit), aliases...).
  - P(qubemail_pop_before_smtp#filter) checks the C(pop_before_smtp_*) variables.
  - P(qubemail_lists#filter) checks C(qubemail_groups) and C(qubemail_lists) and returns the mlmmj mailing lists.
    As on the Qube 3, every group automatically has a mailing list of the same name whose members are the group's
    users; independent lists may also have external members. Archiving is off by default.
  - P(qubemail_list_acl#filter) returns who may read each list archive folder C(Mailing Lists/NAME) in Dovecot.
  - P(qubemail_webmail#filter) checks the C(webmail_*) variables and works out how WebMail reaches Dovecot from
    C(pop_plaintext_auth_from_loopback).
  - P(qubemail_php_string#filter) quotes a string as a PHP single-quoted literal (no variable interpolation).
  - "P(qubemail_placeholders#filter) refuses the example inventory's placeholders left in place in a dict of
    settings (its secrets, addresses in the documentation networks 192.0.2.0/24, 198.51.100.0/24,
    203.0.113.0/24 and 2001:db8::/32, names under example.com, example.org, example.net and .example).
    Names reserved for testing (.test) pass."
  - "P(qubemail_validation_errors#filter) turns the registered results of the validation tasks into the error
    lines site.yml stops with; a task that failed without the validator's error lines (an undefined variable,
    a vault secret missing) gives its whole message, so every failure stops the play."
  - "All problems are collected and reported at once in one C(AnsibleFilterError); its message starts with
    C(qubemail: invalid inventory:) and has one line per problem naming the variable and path
    (for example C(qubemail_users[2].aliases[0])), the offending value and what is expected."
  - Passwords are never shown in error messages.
  - "Reserved names (RESERVED_NAMES in the source, plus every name starting with C(systemd-)) may be neither user names
    nor user aliases: V(root), V(postmaster), V(mailer-daemon), V(abuse), V(hostmaster), V(webmaster), V(nobody),
    V(daemon), V(bin), V(sys), V(sync), V(games), V(man), V(lp), V(mail), V(news), V(uucp), V(proxy), V(www-data),
    V(backup), V(list), V(irc), V(gnats), V(_apt), V(messagebus), V(postfix), V(dovecot), V(dovenull), V(sshd),
    V(admin), V(operator), V(noc), V(security), V(usenet), V(mlmmj), V(mlarchive). They may be keys of
    O(qubemail_mta.settings.mta_aliases) but not list names."
options:
  qubemail_base:
    description: "C(qubemail_hostname | qubemail_base(qubemail_domains, qubemail_users))."
    type: dict
    suboptions:
      hostname:
        description:
          - C(qubemail_hostname), the appliance FQDN. At least two labels of 1-63 characters V(a-z), V(0-9), V(-)
            (not first or last), the last label not all digits, at most 253 characters, no trailing dot.
            Case-insensitive.
        type: str
        required: true
      domains:
        description:
          - C(qubemail_domains), the accepted mail domains, same syntax as the hostname, no duplicates.
          - The first one is the primary domain.
        type: list
        elements: str
        required: true
      users:
        description:
          - C(qubemail_users), the mailbox users. V(null) counts as an empty list. Unknown keys are an error.
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description:
              - Login and mailbox name, C(^[a-z][a-z0-9._-]{0,31}$), not ending in V(.) or V(-), not reserved, unique.
            type: str
            required: true
          full_name:
            description: GECOS full name; no V(:), newline or other control characters.
            type: str
          password_hash:
            description:
              - A crypt(3) hash, one of sha512crypt (V($6$)), sha256crypt (V($5$)), yescrypt (V($y$)) or bcrypt
                (V($2b$), V($2y$)). Exactly one of O(qubemail_base.users.password_hash) and
                O(qubemail_base.users.password) is required.
            type: str
          password:
            description: Plain-text password (keep it vault-encrypted), non-empty.
            type: str
          aliases:
            description:
              - Extra local parts delivered to this user, C(^[a-z0-9][a-z0-9._+-]{0,63}$) after lower-casing.
              - They may not be a user name, another user's alias or a reserved name.
            type: list
            elements: str
  qubemail_mta:
    description: "C(settings | qubemail_mta(base)); keys missing from O(qubemail_mta.settings) take the defaults shown."
    type: dict
    suboptions:
      settings:
        description: The mta role's variables, keyed by variable name. Other keys are ignored.
        type: dict
        required: true
        suboptions:
          mta_smtp_enabled:
            description: Accept SMTP connections. Must be a real boolean.
            type: bool
            default: true
          mta_relay_allowed_networks:
            description:
              - IPv4/IPv6 addresses or CIDR networks allowed to relay, besides loopback.
              - No host bits may be set; not wider than V(/8) (IPv4) or V(/32) (IPv6).
            type: list
            elements: str
            default: []
          mta_smart_relay_host:
            description: Empty to deliver directly, otherwise the FQDN or IP address of the smart host.
            type: str
            default: ""
          mta_smart_relay_port:
            description: Port of the smart host, 1-65535.
            type: int
            default: 25
          mta_max_message_size_kb:
            description:
              - Largest accepted message in kilobytes (the Qube's "Maximum Email Message Size"), a positive integer,
                or V(0) for unlimited. The default is 25 MB, as at common mail providers.
              - V("") and V(null) are refused: unlimited must be asked for with V(0).
            type: int
            default: 25600
          mta_masquerade_domain:
            description: Empty, or a domain name to rewrite sender addresses to.
            type: str
            default: ""
          mta_catch_all:
            description: Empty, a user name from O(qubemail_base.users), or an address V(local@domain).
            type: str
            default: ""
          mta_denied_hosts:
            description: IP addresses, CIDR networks, host or domain names whose SMTP connections are refused.
            type: list
            elements: str
            default: []
          mta_aliases:
            description:
              - Site-wide aliases, local part to a non-empty list of targets (user, alias or external address).
              - Reserved names are allowed here. Defaults are added unless overridden
                (V(postmaster) to V(root); V(abuse), V(mailer-daemon), V(hostmaster), V(webmaster) to V(postmaster)).
            type: dict
            default: {}
          mta_transports:
            description: Per-domain next hops for Postfix transport_maps, domain to V(transport:nexthop).
            type: dict
            default: {}
      base:
        description: The output of P(qubemail_base#filter).
        type: dict
        required: true
  qubemail_pop_before_smtp:
    description: "C(settings | qubemail_pop_before_smtp)."
    type: dict
    suboptions:
      settings:
        description: The POP-before-SMTP variables, keyed by variable name. Other keys are ignored.
        type: dict
        required: true
        suboptions:
          pop_before_smtp_enabled:
            description: Run the POP-before-SMTP daemon. Must be a real boolean.
            type: bool
            default: false
          pop_before_smtp_ttl:
            description: Seconds an authenticated POP/IMAP client may relay, a positive integer.
            type: int
            default: 900
          pop_before_smtp_never_authorize:
            description: Addresses or CIDR networks never authorised to relay this way (no host bits set).
            type: list
            elements: str
            default: []
  qubemail_lists:
    description:
      - "C(qubemail_groups | qubemail_lists(qubemail_lists, qubemail, mta_aliases))."
      - "List settings are the same keys under O(qubemail_lists.groups.list) and on each item of
        O(qubemail_lists.lists): C(description) (one line, default V('')), C(moderators) and C(owners) (user names,
        aliases, list names or addresses; C(owners) defaults to the moderators, else V(postmaster@<primary domain>)),
        C(posting) (V(members), V(any) or V(moderated), which needs moderators; default V(members)),
        C(subscription) (V(confirm), V(open) or V(closed); default V(closed) for a group's list, V(confirm) otherwise),
        C(max_message_size_kb) (V('') = no list limit, else a positive integer), C(reply_to_list) (bool, default
        V(false)), C(subject_prefix) (one line of at most 64 characters, default V([NAME]), V('') for none),
        C(archive) (bool, default V(false)) and C(archive_retention_days) (V('') = keep forever, else a positive
        integer). A missing key or V(null) takes the default. Unknown keys are an error."
      - "Each list has the address C(NAME@<primary domain>) and the aliases C(NAME-request), C(NAME-owner),
        C(owner-NAME), C(NAME-bounces), C(NAME-join), C(NAME-subscribe), C(NAME-leave) and C(NAME-unsubscribe)
        (LIST_ALIAS_FAMILY in the source). Neither the name nor an alias may be a reserved name, a user name, a user
        alias, a key of O(qubemail_mta.settings.mta_aliases) or another list's name or alias; no user alias or
        C(mta_aliases) key may be C(NAME+anything)."
    type: list
    suboptions:
      groups:
        description: C(qubemail_groups), the Qube groups. V(null) counts as an empty list.
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description:
              - Group and list name, C(^[a-z0-9][a-z0-9_-]{0,40}$) after lower-casing, unique among groups and lists.
              - No dots, because the name is also the Maildir folder C(Mailing Lists/NAME).
            type: str
            required: true
          members:
            description: User names from O(qubemail_base.users) (or V(user@one-of-our-domains)). May be empty.
            type: list
            elements: str
          list:
            description: Settings of the group's list (see above).
            type: dict
      lists:
        description: C(qubemail_lists), the independent mailing lists. V(null) counts as an empty list.
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: As O(qubemail_lists.groups.name).
            type: str
            required: true
          members:
            description:
              - User names, V(user@one-of-our-domains), the address of another list (V(other@one-of-our-domains),
                kept as written; a list may not contain itself, and loops through other lists are stopped by the loop guard) or external addresses. May be empty.
              - Any other address at one of our domains is an error.
            type: list
            elements: str
      base:
        description: The output of P(qubemail_base#filter).
        type: dict
        required: true
      mta_aliases:
        description: The raw O(qubemail_mta.settings.mta_aliases); its keys are taken names.
        type: dict
        default: {}
  qubemail_list_acl:
    description: "C(qubemail_mailing_lists | qubemail_list_acl(subscribers, qubemail.domains, qubemail.users))."
    type: list
    suboptions:
      lists:
        description: The output of P(qubemail_lists#filter).
        type: list
        required: true
      subscribers:
        description:
          - List name to the addresses mlmmj has subscribed now, including self-subscriptions
            (a list of addresses, or C(mlmmj-list) output as one string).
          - Those at one of our domains whose local part (without a C(+extension)) is a user may read the archive.
        type: dict
        default: {}
      domains:
        description: Our mail domains, besides the lists' own domain.
        type: list
        elements: str
        default: []
      users:
        description:
          - The user names (or the user dicts of P(qubemail_base#filter)). When omitted, any local part that could be a
            user name counts.
        type: list
        default: null
      prefix:
        description: The archive namespace's prefix with its separator (the lists role's C(lists_archive_prefix) + V(/)).
        type: str
        default: Mailing Lists/
  qubemail_webmail:
    description: "C({'webmail_enabled': webmail_enabled, ...} | qubemail_webmail)."
    type: dict
    suboptions:
      settings:
        description:
          - "Keys: C(webmail_enabled) (bool, default V(false)), C(webmail_https_port) (1-65535, V(443)),
            C(webmail_http_port) (0-65535, V(80); V(0) = none; must differ from the HTTPS port),
            C(webmail_hsts_max_age) (seconds, V(63072000); V(0) for none), C(webmail_product_name) (one line, 1-64 characters),
            C(webmail_language) (Roundcube code such as V(en_US)), C(webmail_session_lifetime) (minutes, 1-1440,
            V(30)), C(webmail_max_upload_mb) (1-2048, V(10))."
          - "Also C(mta_loopback_port) and C(pop_plaintext_auth_from_loopback). The web ports may not be those of the
            mail services (25, 110, 143, 993, 995, 10031, 10032, C(mta_loopback_port))."
        type: dict
        required: true
  qubemail_php_string:
    description: "C(value | qubemail_php_string): the string between single quotes, C(\\) and C(') escaped."
    type: str
  qubemail_placeholders:
    description: "C(settings | qubemail_placeholders): a dict of variable names and values, every string in it checked."
    type: dict
  qubemail_validation_errors:
    description: "C(results | qubemail_validation_errors): the registered results of the validation tasks."
    type: list
"""

EXAMPLES = r"""
- name: Validate the inventory once, early
  ansible.builtin.set_fact:
    qubemail: "{{ qubemail_hostname | qubemail_base(qubemail_domains, qubemail_users) }}"

- name: Build the Postfix settings
  ansible.builtin.set_fact:
    qubemail_mta_config: >-
      {{ {
           'mta_smtp_enabled': mta_smtp_enabled,
           'mta_relay_allowed_networks': mta_relay_allowed_networks,
           'mta_smart_relay_host': mta_smart_relay_host,
           'mta_smart_relay_port': mta_smart_relay_port,
           'mta_max_message_size_kb': mta_max_message_size_kb,
           'mta_masquerade_domain': mta_masquerade_domain,
           'mta_catch_all': mta_catch_all,
           'mta_denied_hosts': mta_denied_hosts,
           'mta_aliases': mta_aliases,
         } | qubemail_mta(qubemail) }}

- name: POP-before-SMTP daemon settings
  ansible.builtin.set_fact:
    qubemail_pbs: >-
      {{ {
           'pop_before_smtp_enabled': pop_before_smtp_enabled,
           'pop_before_smtp_ttl': pop_before_smtp_ttl,
           'pop_before_smtp_never_authorize': pop_before_smtp_never_authorize,
         } | qubemail_pop_before_smtp }}

- name: Mailing lists, one per group plus the independent ones
  ansible.builtin.set_fact:
    qubemail_mailing_lists: "{{ qubemail_groups | qubemail_lists(qubemail_lists, qubemail, mta_aliases) }}"

- name: Who may read the archive folders (subscribers read from mlmmj-list on the host)
  ansible.builtin.set_fact:
    qubemail_list_acl: >-
      {{ qubemail_mailing_lists | qubemail_list_acl(qubemail_list_subscribers, qubemail.domains, qubemail.users) }}

# With
#   qubemail_hostname: Mail.Example.COM
#   qubemail_domains: [example.com, example.org]
#   qubemail_users:
#     - {name: alice, full_name: Alice Liddell, password_hash: "$6$...", aliases: [Info, sales]}
# qubemail is
#   hostname: mail.example.com
#   domains: [example.com, example.org]
#   primary_domain: example.com
#   users:
#     - {name: alice, full_name: Alice Liddell, password_hash: "$6$...", password: null, aliases: [info, sales]}
#
# A bad inventory fails with, for example:
#   qubemail: invalid inventory:
#     qubemail_users[1].aliases[0] = 'MAILER-DAEMON': 'mailer-daemon' is a reserved name; route it with mta_aliases
#     mta_relay_allowed_networks[0] = '192.168.1.7/24': host bits are set; did you mean '192.168.1.0/24'?
#
# With, besides
#   qubemail_groups:
#     - {name: sales, members: [alice], list: {archive: true}}
#   qubemail_lists:
#     - {name: friends, members: [alice, Pal@Elsewhere.NET, sales@example.org], reply_to_list: yes}
# qubemail_mailing_lists is (the aliases elided)
#   - {name: friends, kind: list, address: friends@example.com, domain: example.com, description: "",
#      members: [alice@example.com, pal@elsewhere.net, sales@example.org], local_members: [alice],
#      moderators: [], owners: [postmaster@example.com], posting: members, subscription: confirm,
#      max_message_size: 0, reply_to_list: true, subject_prefix: "[friends]", archive: false,
#      archive_retention_days: 0,
#      aliases: [{name: friends-request, target: friends+help}, {name: friends-owner, target: friends+owner}, ...]}
#   - {name: sales, kind: group, ..., members: [alice@example.com], subscription: closed, archive: true, ...}
# and qubemail_list_acl, with qubemail_list_subscribers: {sales: [alice@example.com, bob+lists@example.org]},
#   - {mailbox: Mailing Lists/sales, users: [alice, bob]}
#
# A bad list fails with, for example:
#   qubemail: invalid inventory:
#     qubemail_lists[0].name = 'team': its alias 'team-join' clashes with the user name 'team-join'
#     qubemail_lists[1].subscription = 'closd': expected one of 'confirm', 'open', 'closed' (did you mean 'closed'?)
"""

RETURN = r"""
_value:
  description:
    - "P(qubemail_base#filter): a dict with C(hostname) (str), C(domains) (list, given order, lower-cased),
      C(primary_domain) (str) and C(users), a list sorted by name of dicts with C(name),
      C(full_name) (str, may be empty), C(password_hash) (str or V(null)), C(password) (str or V(null))
      and C(aliases) (sorted, lower-cased)."
    - "P(qubemail_mta#filter): a dict with C(smtp_enabled) (bool); C(mynetworks) (list: V(127.0.0.0/8), V([::1]/128),
      then the allowed networks in Postfix syntax, IPv6 in brackets, single addresses as /32 or /128, de-duplicated);
      C(relayhost) (V('') or V([host]:port), IPv6 as V([ipv6:2001:db8::1]:port)); C(message_size_limit) (int bytes,
      V(0) = unlimited, only when asked for with V(0)); C(masquerade_domain) (str); C(catch_all) (V(''), a user name or an address);
      C(denied_networks) (list, Postfix cidr-table syntax, given order, de-duplicated); C(denied_hostnames)
      (list, lower-cased, given order, de-duplicated); C(aliases) (list sorted by C(name) of dicts with C(name) and
      C(targets)) combining user aliases, O(qubemail_mta.settings.mta_aliases) and the default aliases."
    - "P(qubemail_pop_before_smtp#filter): a dict with C(enabled) (bool), C(ttl) (int seconds) and C(never_authorize)
      (list of CIDR strings without brackets, given order, de-duplicated)."
    - "P(qubemail_lists#filter): a list sorted by C(name) of dicts with C(name) (lower-cased), C(kind) (V(group) or
      V(list)), C(address) (V(NAME@<primary domain>)), C(domain) (the primary domain), C(description),
      C(members) (sorted, de-duplicated, lower-cased addresses; users as V(user@<primary domain>)),
      C(local_members) (sorted user names among the members), C(moderators) and C(owners) (sorted addresses),
      C(posting), C(subscription), C(max_message_size) (int bytes, V(0) = no list limit), C(reply_to_list) (bool),
      C(subject_prefix) (str, may be empty), C(archive) (bool), C(archive_retention_days) (int, V(0) = forever)
      and C(aliases) (in LIST_ALIAS_FAMILY order, dicts with
      C(name) and C(target), e.g. V({name: sales-request, target: sales+help}); the list address itself is not
      included)."
    - "P(qubemail_list_acl#filter): a list sorted by C(mailbox) of dicts with C(mailbox) (V(Mailing Lists/NAME)) and
      C(users) (sorted user names: the local members plus the local subscribers, never V(mlarchive)), one per list
      with archive on."
    - "P(qubemail_webmail#filter): a dict with C(enabled) (bool), C(https_port), C(http_port) (V(0) = none),
      C(hsts_max_age) (V(0) = no header), C(product_name), C(language), C(session_lifetime) (minutes),
      C(max_upload_mb), C(imap_host) (V(127.0.0.1:143) or V(tls://127.0.0.1:143)) and C(smtp_host)
      (V(127.0.0.1:25))."
    - "P(qubemail_php_string#filter): the quoted string, e.g. V('it\\'s') for V(it's)."
    - "P(qubemail_placeholders#filter): V(true), or an error listing every placeholder with its field."
    - "P(qubemail_validation_errors#filter): a list of error lines, each starting with two spaces; empty when no
      validation failed."
  type: raw
"""

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

#: Names that may be neither a mailbox user nor a user alias: Debian system
#: accounts, daemons the appliance runs, and RFC 2142 role addresses.  Route
#: the role addresses with ``mta_aliases`` instead.
RESERVED_NAMES = frozenset((
    # RFC 2142 / RFC 5321 role mailboxes
    "postmaster", "mailer-daemon", "abuse", "hostmaster", "webmaster",
    "noc", "security", "usenet", "news", "uucp",
    # Debian base-passwd and daemon accounts
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail",
    "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody",
    "_apt", "messagebus", "sshd",
    # mail daemons installed by the appliance
    "postfix", "dovecot", "dovenull",
    # administrative names users must not impersonate
    "admin", "operator",
    # accounts of the mailing-list feature: mlmmj runs the lists, mlarchive
    # owns the posts filed in "Mailing Lists/NAME" (it receives no mail)
    "mlmmj", "mlarchive",
))
#: Name prefixes reserved as a whole (systemd's dynamic service users).
RESERVED_PREFIXES = ("systemd-",)

#: Local names that are valid alias targets although they are not users.
SYSTEM_MAILBOXES = frozenset(("root",))

#: Aliases added unless ``mta_aliases`` defines the name.  ``root`` is left
#: out on purpose (Debian convention: map ``root: [alice]`` to read it).
DEFAULT_ALIASES = {
    "postmaster": ("root",),
    "abuse": ("postmaster",),
    "mailer-daemon": ("postmaster",),
    "hostmaster": ("postmaster",),
    "webmaster": ("postmaster",),
}

USER_NAME_RE = re.compile(r"^[a-z][a-z0-9._-]{0,31}$")
ALIAS_RE = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,63}$")
DNS_LABEL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# RFC 5322 dot-atom: atext runs separated by single dots.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
DOT_ATOM_RE = re.compile(r"^%s(?:\.%s)*$" % (_ATEXT, _ATEXT))

_B64 = r"[./0-9A-Za-z]"
#: Accepted crypt(3) formats, by scheme prefix.
PASSWORD_HASH_RES = {
    "$6$": re.compile(r"^\$6\$(?:rounds=[0-9]+\$)?%s{1,16}\$%s{86}$" % (_B64, _B64)),
    "$5$": re.compile(r"^\$5\$(?:rounds=[0-9]+\$)?%s{1,16}\$%s{43}$" % (_B64, _B64)),
    "$y$": re.compile(r"^\$y\$%s+\$%s*\$%s{43}$" % (_B64, _B64, _B64)),
    "$2b$": re.compile(r"^\$2b\$(?:0[4-9]|[12][0-9]|3[01])\$%s{53}$" % _B64),
    "$2y$": re.compile(r"^\$2y\$(?:0[4-9]|[12][0-9]|3[01])\$%s{53}$" % _B64),
}

USER_KEYS = ("name", "full_name", "password_hash", "password", "aliases")

MAX_DOMAIN_LENGTH = 253
#: Widest networks accepted in ``mta_relay_allowed_networks``.
MAX_RELAY_PREFIX = {4: 8, 6: 32}
LOOPBACK_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

MTA_DEFAULTS = {
    "mta_smtp_enabled": True,
    "mta_relay_allowed_networks": [],
    "mta_smart_relay_host": "",
    "mta_smart_relay_port": 25,
    # 25 MB, as at common mail providers; unlimited only as an explicit 0.
    "mta_max_message_size_kb": 25600,
    "mta_masquerade_domain": "",
    "mta_catch_all": "",
    "mta_denied_hosts": [],
    "mta_aliases": {},
    "mta_transports": {},
}
# A Postfix transport_maps next hop: "transport:nexthop", e.g. smtp:[mx]:25.
TRANSPORT_RE = re.compile(r"^[a-z][a-z0-9_-]*:[^\s,]*$")
POP_BEFORE_SMTP_DEFAULTS = {
    "pop_before_smtp_enabled": False,
    "pop_before_smtp_ttl": 900,
    "pop_before_smtp_never_authorize": [],
}
WEBMAIL_DEFAULTS = {
    "webmail_enabled": False,
    "webmail_https_port": 443,
    "webmail_http_port": 80,
    "webmail_hsts_max_age": 63072000,
    "webmail_product_name": "Qube WebMail",
    "webmail_language": "en_US",
    "webmail_session_lifetime": 30,
    "webmail_max_upload_mb": 10,
    # How WebMail reaches Dovecot, and the ports it must leave alone.
    "mta_loopback_port": 10025,
    "pop_plaintext_auth_from_loopback": True,
}
#: Ports the appliance's mail services use: SMTP, POP3(S), IMAP(S), the
#: POP-before-SMTP daemon's policy and report listeners.
MAIL_PORTS = (25, 110, 143, 993, 995, 10031, 10032)
#: Roundcube language codes: en_US, de, pt_BR, zh_TW, sr_cyrl, ...
WEBMAIL_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")
MAX_PRODUCT_NAME = 64

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
#: Account that owns the archive folders (never a reader).
LIST_ARCHIVE_ACCOUNT = "mlarchive"
#: Dovecot public namespace holding the list archives.
LIST_MAILBOX_PREFIX = "Mailing Lists/"
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

ERROR_HEADER = "qubemail: invalid inventory:"


# --------------------------------------------------------------------------
# Error collection and value display
# --------------------------------------------------------------------------

class _Errors:
    """Collects problems; :meth:`raise_if_any` reports them all at once."""

    def __init__(self):
        self._lines = []

    def add(self, field, value, problem):
        """Record *problem* with the value of inventory path *field*."""
        self._lines.append("%s = %s: %s" % (field, _show(value), problem))

    def note(self, field, problem):
        """Record *problem* about *field* when no single value is at fault."""
        self._lines.append("%s: %s" % (field, problem))

    def raise_if_any(self):
        """Raise one AnsibleFilterError listing every problem, one per line."""
        if self._lines:
            raise AnsibleFilterError("\n  ".join([ERROR_HEADER] + self._lines))


class _Redacted:
    """Stand-in shown instead of a secret value."""

    def __init__(self, text):
        self.text = text


def _show(value, limit=80):
    """Render *value* for an error message without dumping containers."""
    if isinstance(value, _Redacted):
        return value.text
    if isinstance(value, str):
        text = repr(str(value))
        return text if len(text) <= limit else text[:limit - 4] + "...'"
    if isinstance(value, dict):
        return "<dict with keys %s>" % ", ".join(sorted(repr(str(k)) for k in value))
    if isinstance(value, (list, tuple)):
        if all(isinstance(item, (str, int, float)) or item is None for item in value):
            text = "[%s]" % ", ".join(_show(item, limit) for item in value)
            if len(text) <= limit:
                return text
        return "<list of %d item%s>" % (len(value), "" if len(value) == 1 else "s")
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return "<%s>" % type(value).__name__


def _redact_password(value):
    """Describe a password value without revealing it."""
    if isinstance(value, str):
        return _Redacted("<redacted string of %d characters>" % len(value))
    return _Redacted("<redacted %s>" % type(value).__name__)


def _redact_hash(value):
    """Show only the scheme prefix of a would-be password hash."""
    if not isinstance(value, str):
        return _redact_password(value)
    prefix = re.match(r"^(\$[0-9a-z]{1,2}\$|\{[A-Za-z0-9.-]+\})", value)
    if prefix:
        return _Redacted("%r... (redacted)" % prefix.group(1))
    return _Redacted("<redacted string of %d characters>" % len(value))


# --------------------------------------------------------------------------
# Shared value checks: each records errors and returns the normalised value,
# or None when the value is invalid.
# --------------------------------------------------------------------------

def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_blank(value):
    return value is None or (isinstance(value, str) and value == "")


def _domain_problem(name):
    """Return why lower-cased *name* is not a FQDN, or None."""
    if not name:
        return "is empty"
    if name.endswith("."):
        return "has a trailing dot; write the name without it"
    if len(name) > MAX_DOMAIN_LENGTH:
        return "is %d characters long; at most %d allowed" % (len(name), MAX_DOMAIN_LENGTH)
    labels = name.split(".")
    if len(labels) < 2:
        return "is a single label; a fully qualified name with at least two labels is required"
    for label in labels:
        if not DNS_LABEL_RE.match(label):
            return ("label %r is invalid; labels are 1-63 characters a-z, 0-9 and '-', "
                    "not starting or ending with '-'" % label)
    if labels[-1].isdigit():
        return "the last label is all digits; expected a domain name, not an IP address"
    return None


def _check_domain(errors, field, value, what="a fully qualified domain name"):
    """Validate a FQDN; return it lower-cased."""
    if not isinstance(value, str):
        errors.add(field, value, "expected %s (a string)" % what)
        return None
    name = value.lower()
    problem = _domain_problem(name)
    if problem:
        errors.add(field, value, "expected %s: %s" % (what, problem))
        return None
    return name


def _strip_brackets(text):
    """Accept Postfix-style '[2001:db8::]/32' as well as '2001:db8::/32'."""
    match = re.match(r"^\[([^\]]*)\](/.*)?$", text)
    return match.group(1) + (match.group(2) or "") if match else text


def _check_network(errors, field, value, max_prefix=None):
    """Validate an IP address or CIDR network; return an ip_network.

    Host bits must not be set.  With *max_prefix* (``{4: 8, 6: 32}``),
    networks wider than that prefix length are rejected as an open relay.
    """
    expected = "expected an IPv4/IPv6 address or CIDR network such as '192.0.2.0/24' or '2001:db8::/32'"
    if not isinstance(value, str):
        errors.add(field, value, expected)
        return None
    text = _strip_brackets(value.strip())
    if "%" in text:
        errors.add(field, value, "%s, without a '%%zone' suffix" % expected)
        return None
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            meant = ipaddress.ip_network(text, strict=False)
        except ValueError:
            errors.add(field, value, expected)
            return None
        errors.add(field, value, "host bits are set; did you mean %r?" % str(meant))
        return None
    if max_prefix and network.prefixlen < max_prefix[network.version]:
        errors.add(field, value,
                   "network is wider than /%d; allowing it to relay would make an open relay"
                   % max_prefix[network.version])
        return None
    return network


def _looks_like_ip(text):
    """True when *text* is meant as an address or network, not a name."""
    return ":" in text or "[" in text or bool(re.match(r"^[0-9./]+$", text))


def _postfix_network(network):
    """Format for Postfix main.cf lists (``mynetworks``): IPv6 in brackets."""
    if network.version == 6:
        return "[%s]/%d" % (network.network_address, network.prefixlen)
    return str(network)


def _check_list(errors, field, value):
    """Return *value* as a list; None counts as empty, anything else is an error."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    errors.add(field, value, "expected a list")
    return []


def _check_networks(errors, field, value, max_prefix=None):
    """Validate a list of networks; return them de-duplicated in given order."""
    networks = []
    for index, item in enumerate(_check_list(errors, field, value)):
        network = _check_network(errors, "%s[%d]" % (field, index), item, max_prefix)
        if network is not None and network not in networks:
            networks.append(network)
    return networks


# Extra vars given as ``-e name=value`` arrive as strings: accept the words
# YAML and Ansible's ``bool`` filter accept, nothing looser.
BOOL_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _check_bool(errors, field, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in BOOL_WORDS:
        return BOOL_WORDS[value.strip().lower()]
    errors.add(field, value, "expected a boolean (true or false)")
    return None


def _check_int(errors, field, value, low, high=None, unit=""):
    """Validate an int in [low, high]; bools are rejected, a string of ASCII
    digits (``-e name=120``) is taken as the number it spells.

    *unit* is appended to the expectation, e.g. " (seconds)".
    """
    number = int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else value
    if _is_int(number) and number >= low and (high is None or number <= high):
        return int(number)
    if high is not None:
        wanted = "an integer from %d to %d" % (low, high)
    else:
        wanted = "a positive integer" if low == 1 else "an integer of at least %d" % low
    not_a = ("boolean" if isinstance(value, bool) else None if _is_int(number)
             else "string" if isinstance(value, str) else type(value).__name__)
    errors.add(field, value, "expected %s%s%s" % (wanted, unit, ", not a " + not_a if not_a else ""))
    return None


def _check_address(errors, field, value):
    """Validate ``local@domain`` (dot-atom local part); lower-case the domain."""
    if not isinstance(value, str) or value.count("@") != 1:
        errors.add(field, value, "expected an e-mail address local@domain")
        return None
    local, domain = value.split("@")
    if not DOT_ATOM_RE.match(local):
        errors.add(field, value, "expected an e-mail address local@domain: local part %r is not "
                                 "a simple dot-atom (letters, digits, !#$%%&'*+/=?^_`{|}~- "
                                 "and single inner dots)" % local)
        return None
    problem = _domain_problem(domain.lower())
    if problem:
        errors.add(field, value, "expected an e-mail address local@domain: domain %r %s" % (domain, problem))
        return None
    return "%s@%s" % (local, domain.lower())


def _is_reserved(name):
    return name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES)


def _check_lowercase_name(errors, field, value, pattern, what, why=""):
    """Validate a name that must match *pattern* once lower-cased; return it lower-cased."""
    if not isinstance(value, str):
        errors.add(field, value, "expected %s (a string)" % what)
        return None
    name = value.lower()
    if not pattern.match(name):
        errors.add(field, value, "expected %s matching %s after lower-casing%s" % (what, pattern.pattern, why))
        return None
    return name


def _check_local_part(errors, field, value):
    """Validate an alias local part; return it lower-cased."""
    return _check_lowercase_name(errors, field, value, ALIAS_RE, "a local part")


def _did_you_mean(word, choices):
    """Return " (did you mean 'x'?)" for the closest of *choices*, or ''."""
    hint = difflib.get_close_matches(str(word), choices, n=1)
    return " (did you mean %r?)" % hint[0] if hint else ""


def _check_keys(errors, field, item, allowed):
    """Report every key of dict *item* not in *allowed*; return True if none."""
    ok = True
    for key in sorted(item, key=str):
        if key not in allowed:
            errors.note(field, "unknown key %r%s; allowed keys are %s" % (
                str(key), _did_you_mean(key, allowed), ", ".join(allowed)))
            ok = False
    return ok


def _check_choice(errors, field, value, choices):
    """Validate one of the words *choices* (case-insensitive); return it lower-cased."""
    word = value.strip().lower() if isinstance(value, str) else None
    if word in choices:
        return word
    errors.add(field, value, "expected one of %s%s" % (
        ", ".join(repr(c) for c in choices), _did_you_mean(word or "", choices)))
    return None


def _has_control_chars(text):
    return any(unicodedata.category(c) == "Cc" for c in text)


def _settings(errors, variable, settings, defaults):
    """Return the keys of *defaults* from *settings*, defaults for missing ones."""
    if not isinstance(settings, dict):
        errors.add(variable, settings, "expected a dict of %s variables" % variable)
        return dict(defaults)
    return {key: settings.get(key, default) for key, default in defaults.items()}


# --------------------------------------------------------------------------
# qubemail_base
# --------------------------------------------------------------------------

def _check_user_name(errors, field, value):
    if not isinstance(value, str):
        errors.add(field, value, "expected a user name (a string)")
        return None
    if not USER_NAME_RE.match(value) or value[-1] in ".-":
        errors.add(field, value, "expected a user name matching %s, not ending in '.' or '-'"
                   % USER_NAME_RE.pattern)
        return None
    if _is_reserved(value):
        errors.add(field, value, "%r is a reserved system or role account name" % value)
        return None
    return str(value)


def _check_full_name(errors, field, value):
    if value is None:
        return ""
    if not isinstance(value, str):
        errors.add(field, value, "expected a string")
        return None
    if ":" in value or _has_control_chars(value):
        errors.add(field, value, "must not contain ':', newlines or other control characters "
                                 "(it goes into the GECOS field of /etc/passwd)")
        return None
    return str(value)


def _check_password_hash(errors, field, value):
    scheme = next((p for p in PASSWORD_HASH_RES if isinstance(value, str) and value.startswith(p)), None)
    if scheme and PASSWORD_HASH_RES[scheme].match(value):
        return str(value)
    problem = ("is not a well-formed %s hash" % scheme if scheme else
               "expected a crypt(3) hash starting with $6$, $5$, $y$, $2b$ or $2y$, "
               "without a {SCHEME} prefix (put plain text in 'password' instead)")
    errors.add(field, _redact_hash(value), problem)
    return None


def _check_user(errors, field, user):
    """Validate one user entry except its aliases.

    Returns ``(name, entry)``: the name if valid (even when other fields are
    not, so duplicates are still detected) and the normalised dict, or None.
    """
    if not isinstance(user, dict):
        errors.add(field, user, "expected a dict with at least 'name' and a password")
        return None, None
    ok = _check_keys(errors, field, user, USER_KEYS)
    if "name" in user:
        name = _check_user_name(errors, field + ".name", user["name"])
    else:
        errors.note(field + ".name", "missing; every user needs a name")
        name = None
    full_name = _check_full_name(errors, field + ".full_name", user.get("full_name"))

    password_hash, password = user.get("password_hash"), user.get("password")
    if password_hash is not None and password is not None:
        errors.note(field, "has both 'password_hash' and 'password'; give exactly one")
        ok = False
    elif password_hash is None and password is None:
        errors.note(field, "has neither 'password_hash' nor 'password'; give exactly one")
        ok = False
    if password_hash is not None:
        password_hash = _check_password_hash(errors, field + ".password_hash", password_hash)
        ok = ok and password_hash is not None
    if password is not None:
        if isinstance(password, str) and password:
            password = str(password)
        else:
            errors.add(field + ".password", _redact_password(password),
                       "expected a non-empty string (quote numeric passwords in YAML)")
            ok = False

    if not ok or name is None or full_name is None:
        return name, None
    return name, {"name": name, "full_name": full_name, "password_hash": password_hash,
                  "password": password, "aliases": []}


def _check_user_aliases(errors, field, value, owner, user_names, alias_owner):
    """Validate one user's aliases; return them sorted and de-duplicated.

    *owner* describes the user ("user 'alice'"); *alias_owner* maps each alias
    seen so far to ``(owner, field)`` and is updated.
    """
    aliases = set()
    for index, item in enumerate(_check_list(errors, field, value)):
        item_field = "%s[%d]" % (field, index)
        alias = _check_local_part(errors, item_field, item)
        if alias is None:
            continue
        if _is_reserved(alias):
            errors.add(item_field, item, "%r is a reserved name; route it with mta_aliases" % alias)
        elif alias in user_names:
            errors.add(item_field, item, "clashes with the user name %r" % alias)
        elif alias in alias_owner and alias_owner[alias][0] != owner:
            errors.add(item_field, item, "%r of %s is also an alias of %s (%s)"
                       % (alias, owner, alias_owner[alias][0], alias_owner[alias][1]))
        else:
            alias_owner.setdefault(alias, (owner, item_field))
            aliases.add(alias)
    return sorted(aliases)


def _check_domains(errors, domains):
    """Validate qubemail_domains; return them lower-cased in given order."""
    if not isinstance(domains, (list, tuple)) or not domains:
        errors.add("qubemail_domains", domains, "expected a non-empty list of mail domains")
        return []
    result, seen = [], {}
    for index, item in enumerate(domains):
        field = "qubemail_domains[%d]" % index
        domain = _check_domain(errors, field, item)
        if domain in seen:
            errors.add(field, item, "duplicate of %s" % seen[domain])
        elif domain is not None:
            seen[domain] = field
            result.append(domain)
    return result


def qubemail_base(hostname, domains, users):
    """Validate qubemail_hostname, qubemail_domains and qubemail_users.

    Returns ``{"hostname", "domains", "primary_domain", "users"}`` with names
    lower-cased, users sorted by name and each user's aliases sorted.
    """
    errors = _Errors()
    hostname = _check_domain(errors, "qubemail_hostname", hostname)
    domain_list = _check_domains(errors, domains)

    # Pass 1: the users themselves, so that pass 2 knows every user name.
    records, first_field = [], {}
    for index, user in enumerate(_check_list(errors, "qubemail_users", users)):
        field = "qubemail_users[%d]" % index
        name, entry = _check_user(errors, field, user)
        if name in first_field:
            errors.add(field + ".name", name, "duplicate user name, also %s.name" % first_field[name])
            continue
        if name is not None:
            first_field[name] = field
        if isinstance(user, dict):
            owner = "user %r" % name if name else field
            records.append((field, owner, entry, user.get("aliases")))

    # Pass 2: aliases, checked for every user entry so all errors show at once.
    alias_owner = {}
    for field, owner, entry, aliases in records:
        aliases = _check_user_aliases(errors, field + ".aliases", aliases, owner,
                                      set(first_field), alias_owner)
        if entry is not None:
            entry["aliases"] = aliases

    errors.raise_if_any()
    return {
        "hostname": hostname,
        "domains": domain_list,
        "primary_domain": domain_list[0],
        "users": sorted((entry for _, _, entry, _ in records), key=lambda e: e["name"]),
    }


# --------------------------------------------------------------------------
# qubemail_placeholders and qubemail_validation_errors
# --------------------------------------------------------------------------

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
            errors.add(field, _redact_hash(value), "the example inventory's placeholder secret, whose plain text "
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


def qubemail_placeholders(settings):
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
    errors = _Errors()
    for name in sorted(settings):
        _check_placeholders(errors, name, settings[name])
    errors.raise_if_any()
    return True


MAX_RAW_ERROR = 600


def qubemail_validation_errors(results):
    """The error lines of the failed results among *results* (the registered
    results of every validation task): the field lines of a validator's
    error, or, for a task that failed any other way (an undefined variable, a
    vaulted value without the vault password), its whole message on one
    line, so that every failure stops the play. Without failures: []."""
    lines = []
    for result in results:
        if not isinstance(result, dict) or not result.get("failed"):
            continue
        message = str(result.get("msg") or "failed without a message")
        _, header, rest = message.partition(ERROR_HEADER)
        found = [line for line in rest.splitlines() if re.match(r"^  \S", line)] if header else []
        if not found:
            raw = " ".join(message.split())
            found = ["  " + (raw if len(raw) <= MAX_RAW_ERROR else raw[:MAX_RAW_ERROR - 3] + "...")]
        lines.extend(line for line in found if line not in lines)
    return lines


# --------------------------------------------------------------------------
# qubemail_mta
# --------------------------------------------------------------------------

def _base_index(base, argument="qubemail_mta: the second argument"):
    """Return (user names, {user alias: user}, domains, primary domain) from
    qubemail_base output; *argument* names the parameter in the usage error.
    """
    try:
        users = {u["name"]: u for u in base["users"]}
        aliases = {a: name for name, u in users.items() for a in u["aliases"]}
        domains, primary = list(base["domains"]), base["primary_domain"]
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError("%s must be the output of qubemail_base (%s)" % (argument, exc))
    return set(users), aliases, domains, primary


def _relayhost(errors, host, port):
    """Return the Postfix relayhost value: '' or '[host]:port'."""
    if _is_blank(host):
        return ""
    field = "mta_smart_relay_host"
    if isinstance(host, str) and _looks_like_ip(host):
        try:
            address = ipaddress.ip_address(_strip_brackets(host))
        except ValueError:
            errors.add(field, host, "expected a host name or a single IP address, without a port "
                                    "(the port goes in mta_smart_relay_port)")
            return None
        bracketed = "ipv6:%s" % address if address.version == 6 else str(address)
    else:
        bracketed = _check_domain(errors, field, host, "'' (deliver directly), a host name or an IP address")
    if bracketed is None or port is None:
        return None
    return "[%s]:%d" % (bracketed, port)


def _message_size_limit(errors, field, value):
    """Kilobytes ('' or None: unlimited) to bytes (0: unlimited)."""
    if _is_blank(value):
        return 0
    kilobytes = _check_int(errors, field, value, 1, unit=" (kilobytes) or '' for unlimited")
    return None if kilobytes is None else kilobytes * 1024


def _mta_size_limit(errors, value):
    """mta_max_message_size_kb to bytes. Unlike a list's limit, unlimited is
    only an explicit 0: a blank value is refused, not taken as unlimited."""
    field = "mta_max_message_size_kb"
    wanted = " (kilobytes), or 0 for unlimited"
    if _is_blank(value):
        errors.add(field, value, "expected a positive integer%s; a blank value is not taken as unlimited" % wanted)
        return None
    if value == "0" or (_is_int(value) and value == 0):
        return 0
    kilobytes = _check_int(errors, field, value, 1, unit=wanted)
    return None if kilobytes is None else kilobytes * 1024


def _catch_all(errors, value, user_names):
    if _is_blank(value):
        return ""
    field = "mta_catch_all"
    if isinstance(value, str) and "@" in value:
        return _check_address(errors, field, value)
    if isinstance(value, str) and value in user_names:
        return str(value)
    errors.add(field, value, "expected '', a user defined in qubemail_users or an address local@domain")
    return None


def _denied_hosts(errors, value):
    """Split mta_denied_hosts into (networks, host names)."""
    networks, names = [], []
    for index, item in enumerate(_check_list(errors, "mta_denied_hosts", value)):
        field = "mta_denied_hosts[%d]" % index
        if isinstance(item, str) and _looks_like_ip(item):
            network = _check_network(errors, field, item)
            if network is not None and str(network) not in networks:
                networks.append(str(network))
        else:
            name = _check_domain(errors, field, item, "an IP address, a CIDR network or a host/domain name")
            if name is not None and name not in names:
                names.append(name)
    return networks, names


def _site_aliases(errors, value, user_names, user_aliases):
    """Validate mta_aliases keys; return {name: (field, raw targets)}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.add("mta_aliases", value, "expected a dict of local part: [targets]")
        return {}
    result = {}
    for key in sorted(value, key=str):
        field = "mta_aliases[%r]" % str(key) if isinstance(key, str) else "mta_aliases"
        name = _check_local_part(errors, field, key)
        if name is None:
            continue
        if name in user_names:
            errors.add(field, key, "clashes with the user name %r; users receive their own mail" % name)
        elif name in user_aliases:
            errors.add(field, key, "clashes with an alias of user %r in qubemail_users" % user_aliases[name])
        elif name in result:
            errors.add(field, key, "duplicate of %s (keys are compared case-insensitively)" % result[name][0])
        else:
            result[name] = (field, value[key])
    return result


def _alias_targets(errors, field, value, local_names):
    """Validate one alias's target list; local names are lower-cased."""
    if not isinstance(value, (list, tuple)) or not value:
        errors.add(field, value, "expected a non-empty list of targets (users, aliases or "
                                 "addresses), e.g. ['alice']")
        return None
    targets, ok = [], True
    for index, item in enumerate(value):
        item_field = "%s[%d]" % (field, index)
        if isinstance(item, str) and "@" in item:
            target = _check_address(errors, item_field, item)
        elif isinstance(item, str) and item.lower() in local_names:
            target = item.lower()
        else:
            errors.add(item_field, item, "unknown local target; expected a user or alias defined in the "
                                         "inventory, root, or an address local@domain")
            target = None
        if target is None:
            ok = False
        elif target not in targets:
            targets.append(target)
    return targets if ok else None


def _alias_loop(name, aliases, mailboxes):
    """Return the loop path if alias *name* never reaches a mailbox or address, else None.

    A target naming an alias is expanded, except an alias naming itself when
    it is also a real mailbox (Postfix then delivers locally).  A local
    target that is neither an alias nor a mailbox was already reported as
    invalid and counts as delivering, so one mistake gives one error.
    """
    stack, seen = [(name, [name])], {name}
    while stack:
        current, path = stack.pop()
        for target in aliases[current]:
            if "@" in target or target not in aliases or (target == current and target in mailboxes):
                return None
            if target not in seen:
                seen.add(target)
                stack.append((target, path + [target]))
    return path + [aliases[current][0]]


def qubemail_mta(settings, base):
    """Validate the mta role's settings against qubemail_base output.

    Returns the Postfix-ready values documented in RETURN.
    """
    errors = _Errors()
    user_names, user_aliases = _base_index(base)[:2]
    s = _settings(errors, "settings", settings, MTA_DEFAULTS)

    smtp_enabled = _check_bool(errors, "mta_smtp_enabled", s["mta_smtp_enabled"])
    relay = _check_networks(errors, "mta_relay_allowed_networks", s["mta_relay_allowed_networks"],
                            MAX_RELAY_PREFIX)
    mynetworks = []
    for network in LOOPBACK_NETWORKS + tuple(relay):
        if _postfix_network(network) not in mynetworks:
            mynetworks.append(_postfix_network(network))

    port = _check_int(errors, "mta_smart_relay_port", s["mta_smart_relay_port"], 1, 65535)
    relayhost = _relayhost(errors, s["mta_smart_relay_host"], port)
    message_size_limit = _mta_size_limit(errors, s["mta_max_message_size_kb"])
    masquerade = ("" if _is_blank(s["mta_masquerade_domain"]) else
                  _check_domain(errors, "mta_masquerade_domain", s["mta_masquerade_domain"],
                                "'' or a domain name"))
    catch_all = _catch_all(errors, s["mta_catch_all"], user_names)
    denied_networks, denied_hostnames = _denied_hosts(errors, s["mta_denied_hosts"])
    transports = _transports(errors, s["mta_transports"])

    site = _site_aliases(errors, s["mta_aliases"], user_names, user_aliases)
    aliases = {alias: [owner] for alias, owner in user_aliases.items()}
    aliases.update((name, list(targets)) for name, targets in DEFAULT_ALIASES.items() if name not in site)
    local_names = user_names | SYSTEM_MAILBOXES | set(aliases) | set(site)
    for name, (field, raw) in sorted(site.items()):
        targets = _alias_targets(errors, field, raw, local_names)
        if targets == [name]:
            errors.add(field, raw, "alias %r maps only to itself" % name)
        elif targets is not None:
            aliases[name] = targets
    mailboxes = user_names | SYSTEM_MAILBOXES
    for name in sorted(set(site) & set(aliases)):
        loop = _alias_loop(name, aliases, mailboxes)
        if loop:
            errors.add(site[name][0], site[name][1],
                       "never reaches a mailbox or external address (alias loop: %s)" % " -> ".join(loop))

    errors.raise_if_any()
    return {
        "smtp_enabled": smtp_enabled,
        "mynetworks": mynetworks,
        "relayhost": relayhost,
        "message_size_limit": message_size_limit,
        "masquerade_domain": masquerade,
        "catch_all": catch_all,
        "denied_networks": denied_networks,
        "denied_hostnames": denied_hostnames,
        "transports": transports,
        "aliases": [{"name": name, "targets": aliases[name]} for name in sorted(aliases)],
    }


def _transports(errors, value):
    """mta_transports: domain -> "transport:nexthop"; returns a sorted list of pairs."""
    if value is None:
        return []
    if not isinstance(value, dict):
        errors.add("mta_transports", value, 'expected a mapping of domain to "transport:nexthop"')
        return []
    routes = []
    for domain, nexthop in value.items():
        field = "mta_transports[%r]" % (domain,)
        checked = _check_domain(errors, field, domain)
        if not isinstance(nexthop, str) or not TRANSPORT_RE.match(nexthop):
            errors.add(field, nexthop, 'expected "transport:nexthop", e.g. "smtp:[mx.example.net]:25"')
        elif checked is not None:
            routes.append([checked, nexthop])
    return sorted(routes)


# --------------------------------------------------------------------------
# qubemail_pop_before_smtp
# --------------------------------------------------------------------------

def qubemail_pop_before_smtp(settings):
    """Validate the POP-before-SMTP settings.

    Returns ``{"enabled", "ttl", "never_authorize"}``; networks are CIDR
    strings without brackets, de-duplicated, in the given order.
    """
    errors = _Errors()
    s = _settings(errors, "settings", settings, POP_BEFORE_SMTP_DEFAULTS)
    enabled = _check_bool(errors, "pop_before_smtp_enabled", s["pop_before_smtp_enabled"])
    ttl = _check_int(errors, "pop_before_smtp_ttl", s["pop_before_smtp_ttl"], 1, unit=" (seconds)")
    never = _check_networks(errors, "pop_before_smtp_never_authorize", s["pop_before_smtp_never_authorize"])
    errors.raise_if_any()
    return {"enabled": enabled, "ttl": ttl, "never_authorize": [str(n) for n in never]}


# --------------------------------------------------------------------------
# qubemail_webmail
# --------------------------------------------------------------------------

def qubemail_webmail(settings):
    """Validate the WebMail settings.

    Returns ``{"enabled", "https_port", "http_port", "hsts_max_age",
    "product_name", "language", "session_lifetime", "max_upload_mb",
    "imap_host", "smtp_host"}``.  ``http_port`` 0 means nothing answers plain
    HTTP.  ``imap_host`` is plain IMAP on loopback, or STARTTLS
    (``tls://``) when Dovecot refuses plaintext passwords even there;
    ``smtp_host`` is Postfix's port 25 on loopback (it stays there when SMTP
    is off), with every restriction of main.cf.
    """
    errors = _Errors()
    s = _settings(errors, "settings", settings, WEBMAIL_DEFAULTS)
    result = {
        "enabled": _check_bool(errors, "webmail_enabled", s["webmail_enabled"]),
        "https_port": _check_int(errors, "webmail_https_port", s["webmail_https_port"], 1, 65535),
        "http_port": _check_int(errors, "webmail_http_port", s["webmail_http_port"], 0, 65535,
                                " (0: nothing listens for plain HTTP)"),
        "hsts_max_age": _check_int(errors, "webmail_hsts_max_age", s["webmail_hsts_max_age"], 0,
                                   unit=" (seconds; 0: no Strict-Transport-Security header)"),
        "product_name": _check_line(errors, "webmail_product_name", s["webmail_product_name"],
                                    MAX_PRODUCT_NAME),
        "language": None,
        "session_lifetime": _check_int(errors, "webmail_session_lifetime", s["webmail_session_lifetime"],
                                       1, 24 * 60, " (minutes)"),
        "max_upload_mb": _check_int(errors, "webmail_max_upload_mb", s["webmail_max_upload_mb"], 1, 2048,
                                    " (MiB)"),
    }
    language = s["webmail_language"]
    if isinstance(language, str) and WEBMAIL_LANGUAGE_RE.match(language):
        result["language"] = language
    else:
        errors.add("webmail_language", language, "expected a Roundcube language code such as en_US, de_DE or fr_FR")
    if result["product_name"] is not None and not result["product_name"].strip():
        errors.add("webmail_product_name", s["webmail_product_name"], "must not be empty")
    if result["https_port"] is not None and result["https_port"] == result["http_port"]:
        errors.add("webmail_http_port", s["webmail_http_port"],
                   "must differ from webmail_https_port (use 0 to answer no plain HTTP)")
    loopback_port = _check_int(errors, "mta_loopback_port", s["mta_loopback_port"], 0, 65535)
    taken = set(MAIL_PORTS) | ({loopback_port} if loopback_port else set())
    for field in ("https_port", "http_port"):
        if result[field] and result[field] in taken:
            errors.add("webmail_" + field, s["webmail_" + field],
                       "is a port of the mail services (%s); choose another"
                       % ", ".join(str(p) for p in sorted(taken)))
    plaintext = _check_bool(errors, "pop_plaintext_auth_from_loopback", s["pop_plaintext_auth_from_loopback"])
    result["imap_host"] = "127.0.0.1:143" if plaintext else "tls://127.0.0.1:143"
    result["smtp_host"] = "127.0.0.1:25"
    errors.raise_if_any()
    return result


def qubemail_php_string(value):
    """Quote *value* as a PHP single-quoted string literal (no interpolation)."""
    if not isinstance(value, str):
        raise AnsibleFilterError("qubemail_php_string: expected a string, not %s" % _show(value))
    return "'%s'" % value.replace("\\", "\\\\").replace("'", "\\'")


# --------------------------------------------------------------------------
# qubemail_lists
# --------------------------------------------------------------------------

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
            address = _check_address(errors, field, value)
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


def _check_line(errors, field, value, max_length=None):
    """Validate a one-line text without control characters."""
    if not isinstance(value, str) or _has_control_chars(value):
        errors.add(field, value, "expected a one-line string without newlines or other control characters")
        return None
    if max_length is not None and len(value) > max_length:
        errors.add(field, value, "is %d characters long; at most %d allowed" % (len(value), max_length))
        return None
    return str(value)


def _check_list_name(errors, field, value):
    """Validate a list (or group) name; return it lower-cased."""
    return _check_lowercase_name(errors, field, value, LIST_NAME_RE, "a list name",
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
    _check_keys(errors, field, item, GROUP_KEYS if kind == "group" else LIST_KEYS)
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
            _check_keys(errors, settings_field, settings, LIST_SETTING_KEYS)
    return {"field": field, "kind": kind, "name": name, "raw_name": item.get("name"), "members": item.get("members"),
            "settings": settings, "settings_field": settings_field}


def _list_entries(errors, groups, lists):
    """Pass 1: the groups' and the independent lists' entries, without duplicates."""
    entries, first = [], {}
    for variable, kind, value in (("qubemail_groups", "group", groups), ("qubemail_lists", "list", lists)):
        for index, item in enumerate(_check_list(errors, variable, value)):
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
        if _is_reserved(name):
            errors.add(field, value, "%r is a reserved name" % name)
        elif any(_is_reserved(alias) for alias in family):
            errors.add(field, value, "its aliases %s are reserved names"
                       % ", ".join(repr(alias) for alias in family if _is_reserved(alias)))
        for claim in [name] + family:
            subject = repr(claim) if claim == name else "its alias %r" % claim
            other = claims.get(claim)
            if _is_reserved(claim):
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
    for index, item in enumerate(_check_list(errors, field, value)):
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
    posting = _check_choice(errors, field + ".posting", s["posting"], LIST_POSTING)
    if posting == "moderated" and not s["moderators"]:
        errors.add(field + ".posting", s["posting"], "needs at least one moderator in %s.moderators; "
                                                     "nobody could release the held posts" % field)
    retention = s["archive_retention_days"]
    return {
        "description": _check_line(errors, field + ".description", s["description"]),
        "moderators": moderators,
        "owners": owners or moderators or ["postmaster@%s" % primary],
        "posting": posting,
        "subscription": _check_choice(errors, field + ".subscription", s["subscription"], LIST_SUBSCRIPTION),
        "max_message_size": _message_size_limit(errors, field + ".max_message_size_kb",
                                                s["max_message_size_kb"]),
        "reply_to_list": _check_bool(errors, field + ".reply_to_list", s["reply_to_list"]),
        "subject_prefix": _check_line(errors, field + ".subject_prefix", s["subject_prefix"],
                                      MAX_SUBJECT_PREFIX),
        "archive": _check_bool(errors, field + ".archive", s["archive"]),
        "archive_retention_days": 0 if _is_blank(retention) else _check_int(
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


def qubemail_lists(groups, lists, base, mta_aliases=None):
    """Validate qubemail_groups and qubemail_lists against qubemail_base output.

    Every group yields a list of the same name whose members are the group's
    users; *mta_aliases* (the raw site aliases) only contributes taken names.
    Returns the lists documented in RETURN, sorted by name.
    """
    errors = _Errors()
    user_names, user_aliases, domains, primary = _base_index(base, "qubemail_lists: the third argument")
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

    errors.raise_if_any()
    return sorted(results, key=lambda result: result["name"])


# --------------------------------------------------------------------------
# qubemail_list_acl
# --------------------------------------------------------------------------

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
                                 "not %s" % _show(subscribers))
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


class FilterModule(object):
    """qubemail inventory filters."""

    def filters(self):
        return {
            "qubemail_base": qubemail_base,
            "qubemail_mta": qubemail_mta,
            "qubemail_pop_before_smtp": qubemail_pop_before_smtp,
            "qubemail_lists": qubemail_lists,
            "qubemail_list_acl": qubemail_list_acl,
            "qubemail_webmail": qubemail_webmail,
            "qubemail_php_string": qubemail_php_string,
            "qubemail_placeholders": qubemail_placeholders,
            "qubemail_validation_errors": qubemail_validation_errors,
        }
