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
  - This file provides three filters used by the qubemail roles.
  - P(qubemail_base#filter) checks C(qubemail_hostname), C(qubemail_domains) and C(qubemail_users) and returns the
    appliance name, the mail domains (the first is the primary domain) and the mailbox users sorted by name.
  - P(qubemail_mta#filter) checks the C(mta_*) variables of the mta role against the output of P(qubemail_base#filter)
    and returns Postfix-ready values (C(mynetworks), C(relayhost), C(message_size_limit), aliases...).
  - P(qubemail_pop_before_smtp#filter) checks the C(pop_before_smtp_*) variables.
  - "All problems are collected and reported at once in one C(AnsibleFilterError); its message starts with
    C(qubemail: invalid inventory:) and has one line per problem naming the variable and path
    (for example C(qubemail_users[2].aliases[0])), the offending value and what is expected."
  - Passwords are never shown in error messages.
  - "Reserved names (RESERVED_NAMES in the source, plus every name starting with C(systemd-)) may be neither user names
    nor user aliases: V(root), V(postmaster), V(mailer-daemon), V(abuse), V(hostmaster), V(webmaster), V(nobody),
    V(daemon), V(bin), V(sys), V(sync), V(games), V(man), V(lp), V(mail), V(news), V(uucp), V(proxy), V(www-data),
    V(backup), V(list), V(irc), V(gnats), V(_apt), V(messagebus), V(postfix), V(dovecot), V(dovenull), V(sshd),
    V(admin), V(operator), V(noc), V(security), V(usenet). They may be keys of O(qubemail_mta.settings.mta_aliases)."
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
            description: Largest accepted message in kilobytes; V("") or V(null) means unlimited.
            type: int
            default: null
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
      V(0) = unlimited); C(masquerade_domain) (str); C(catch_all) (V(''), a user name or an address);
      C(denied_networks) (list, Postfix cidr-table syntax, given order, de-duplicated); C(denied_hostnames)
      (list, lower-cased, given order, de-duplicated); C(aliases) (list sorted by C(name) of dicts with C(name) and
      C(targets)) combining user aliases, O(qubemail_mta.settings.mta_aliases) and the default aliases."
    - "P(qubemail_pop_before_smtp#filter): a dict with C(enabled) (bool), C(ttl) (int seconds) and C(never_authorize)
      (list of CIDR strings without brackets, given order, de-duplicated)."
  type: dict
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
    "mta_max_message_size_kb": None,
    "mta_masquerade_domain": "",
    "mta_catch_all": "",
    "mta_denied_hosts": [],
    "mta_aliases": {},
}
POP_BEFORE_SMTP_DEFAULTS = {
    "pop_before_smtp_enabled": False,
    "pop_before_smtp_ttl": 900,
    "pop_before_smtp_never_authorize": [],
}

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


def _check_local_part(errors, field, value):
    """Validate an alias local part; return it lower-cased."""
    if not isinstance(value, str):
        errors.add(field, value, "expected a local part (a string)")
        return None
    name = value.lower()
    if not ALIAS_RE.match(name):
        errors.add(field, value, "expected a local part matching %s (after lower-casing)" % ALIAS_RE.pattern)
        return None
    return name


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
    if ":" in value or any(unicodedata.category(c) == "Cc" for c in value):
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
    ok = True
    for key in sorted(user, key=str):
        if key not in USER_KEYS:
            hint = difflib.get_close_matches(str(key), USER_KEYS, n=1)
            errors.note(field, "unknown key %r%s; allowed keys are %s" % (
                str(key), " (did you mean %r?)" % hint[0] if hint else "", ", ".join(USER_KEYS)))
            ok = False
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
# qubemail_mta
# --------------------------------------------------------------------------

def _base_index(base):
    """Return (user names, {user alias: user}) from qubemail_base output."""
    try:
        users = {u["name"]: u for u in base["users"]}
        aliases = {a: name for name, u in users.items() for a in u["aliases"]}
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError("qubemail_mta: the second argument must be the output of "
                                 "qubemail_base (%s)" % exc)
    return set(users), aliases


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


def _message_size_limit(errors, value):
    if _is_blank(value):
        return 0
    kilobytes = _check_int(errors, "mta_max_message_size_kb", value, 1,
                           unit=" (kilobytes) or '' for unlimited")
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
    user_names, user_aliases = _base_index(base)
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
    message_size_limit = _message_size_limit(errors, s["mta_max_message_size_kb"])
    masquerade = ("" if _is_blank(s["mta_masquerade_domain"]) else
                  _check_domain(errors, "mta_masquerade_domain", s["mta_masquerade_domain"],
                                "'' or a domain name"))
    catch_all = _catch_all(errors, s["mta_catch_all"], user_names)
    denied_networks, denied_hostnames = _denied_hosts(errors, s["mta_denied_hosts"])

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
        "aliases": [{"name": name, "targets": aliases[name]} for name in sorted(aliases)],
    }


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


class FilterModule(object):
    """qubemail inventory filters."""

    def filters(self):
        return {
            "qubemail_base": qubemail_base,
            "qubemail_mta": qubemail_mta,
            "qubemail_pop_before_smtp": qubemail_pop_before_smtp,
        }
