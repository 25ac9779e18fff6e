# -*- coding: utf-8 -*-
"""Checking code shared by the qubemail filters (filter_plugins/qubemail_*.py).

Each ``check_*`` function validates one value, records what is wrong in an
:class:`Errors` and returns the normalised value, or None when the value is
invalid, so that a filter reports every problem of an inventory at once.

Errors are data: each is a dict naming the inventory field (the variable and
its path, ``qubemail_users[2].aliases[0]``), the variable, the value as shown
(secrets redacted) and the problem.  A filter either returns them
(``collect=True``: ``{"config": ..., "errors": [...]}``) or raises
:class:`InventoryError`, an ``AnsibleFilterError`` whose message has one line
per problem and which carries the same list in ``.errors``.

The code is pure: no I/O, no randomness, no dependence on dict order beyond
the order the administrator wrote lists in.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import unicodedata

from ansible.errors import AnsibleFilterError

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

MAX_DOMAIN_LENGTH = 253

#: Account that owns the archive folders (never a reader).
LIST_ARCHIVE_ACCOUNT = "mlarchive"

#: Dovecot public namespace holding the list archives.
LIST_MAILBOX_PREFIX = "Mailing Lists/"

#: Ports the appliance's mail services use: SMTP, POP3(S), IMAP(S), the
#: POP-before-SMTP daemon's policy and report listeners.
MAIL_PORTS = (25, 110, 143, 993, 995, 10031, 10032)

ERROR_HEADER = "qubemail: invalid inventory:"

class InventoryError(AnsibleFilterError):
    """Bad inventory values; ``.errors`` lists them as Errors records them."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("\n  ".join([ERROR_HEADER] + [error["line"] for error in self.errors]))


_VARIABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*")


def error(field, problem, value=None, shown=True):
    """One problem as data: the field, its variable, the value as shown
    (None when no single value is at fault, *shown* False) and the problem."""
    text = show(value) if shown else None
    match = _VARIABLE_RE.match(field)
    return {"field": field, "variable": match.group(0) if match else field, "value": text,
            "problem": problem,
            "line": "%s = %s: %s" % (field, text, problem) if shown else "%s: %s" % (field, problem)}


class Errors:
    """Collects problems; :meth:`result` returns or raises them all at once."""

    def __init__(self):
        self.items = []

    def add(self, field, value, problem):
        """Record *problem* with the value of inventory path *field*."""
        self.items.append(error(field, problem, value))

    def note(self, field, problem):
        """Record *problem* about *field* when no single value is at fault."""
        self.items.append(error(field, problem, shown=False))

    def raise_if_any(self):
        """Raise one InventoryError listing every problem, one per line."""
        if self.items:
            raise InventoryError(self.items)

    def result(self, config, collect=False):
        """With *collect*: ``{"config": config or None, "errors": [...]}``;
        else *config*, or InventoryError when there are problems."""
        if collect:
            return {"config": None if self.items else config, "errors": list(self.items)}
        self.raise_if_any()
        return config


def settings_of(settings, names, function):
    """``{name: settings[name]}`` for every one of *names*; a missing key is a
    usage error of *function*, not an inventory error (the filters get every
    variable of their role, with the role's defaults: see qubemail_variables)."""
    if not isinstance(settings, dict):
        raise AnsibleFilterError("%s: expected a dict of the role's variables, not %s"
                                 % (function, type(settings).__name__))
    missing = [name for name in names if name not in settings]
    if missing:
        raise AnsibleFilterError("%s: the settings lack %s; pass every variable of the role "
                                 "(qubemail_variables gives them with their defaults)"
                                 % (function, ", ".join(missing)))
    return {name: settings[name] for name in names}


class Redacted:
    """Stand-in shown instead of a secret value."""

    def __init__(self, text):
        self.text = text

def show(value, limit=80):
    """Render *value* for an error message without dumping containers."""
    if isinstance(value, Redacted):
        return value.text
    if isinstance(value, str):
        text = repr(str(value))
        return text if len(text) <= limit else text[:limit - 4] + "...'"
    if isinstance(value, dict):
        return "<dict with keys %s>" % ", ".join(sorted(repr(str(k)) for k in value))
    if isinstance(value, (list, tuple)):
        if all(isinstance(item, (str, int, float)) or item is None for item in value):
            text = "[%s]" % ", ".join(show(item, limit) for item in value)
            if len(text) <= limit:
                return text
        return "<list of %d item%s>" % (len(value), "" if len(value) == 1 else "s")
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return "<%s>" % type(value).__name__

def redact_password(value):
    """Describe a password value without revealing it."""
    if isinstance(value, str):
        return Redacted("<redacted string of %d characters>" % len(value))
    return Redacted("<redacted %s>" % type(value).__name__)

def redact_hash(value):
    """Show only the scheme prefix of a would-be password hash."""
    if not isinstance(value, str):
        return redact_password(value)
    prefix = re.match(r"^(\$[0-9a-z]{1,2}\$|\{[A-Za-z0-9.-]+\})", value)
    if prefix:
        return Redacted("%r... (redacted)" % prefix.group(1))
    return Redacted("<redacted string of %d characters>" % len(value))

def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)

def is_blank(value):
    return value is None or (isinstance(value, str) and value == "")

def domain_problem(name):
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

def check_domain(errors, field, value, what="a fully qualified domain name"):
    """Validate a FQDN; return it lower-cased."""
    if not isinstance(value, str):
        errors.add(field, value, "expected %s (a string)" % what)
        return None
    name = value.lower()
    problem = domain_problem(name)
    if problem:
        errors.add(field, value, "expected %s: %s" % (what, problem))
        return None
    return name

def strip_brackets(text):
    """Accept Postfix-style '[2001:db8::]/32' as well as '2001:db8::/32'."""
    match = re.match(r"^\[([^\]]*)\](/.*)?$", text)
    return match.group(1) + (match.group(2) or "") if match else text

def check_network(errors, field, value, max_prefix=None):
    """Validate an IP address or CIDR network; return an ip_network.

    Host bits must not be set.  With *max_prefix* (``{4: 8, 6: 32}``),
    networks wider than that prefix length are rejected as an open relay.
    """
    expected = "expected an IPv4/IPv6 address or CIDR network such as '192.0.2.0/24' or '2001:db8::/32'"
    if not isinstance(value, str):
        errors.add(field, value, expected)
        return None
    text = strip_brackets(value.strip())
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

def looks_like_ip(text):
    """True when *text* is meant as an address or network, not a name."""
    return ":" in text or "[" in text or bool(re.match(r"^[0-9./]+$", text))

def postfix_network(network):
    """Format for Postfix main.cf lists (``mynetworks``): IPv6 in brackets."""
    if network.version == 6:
        return "[%s]/%d" % (network.network_address, network.prefixlen)
    return str(network)

def check_list(errors, field, value):
    """Return *value* as a list; None counts as empty, anything else is an error."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    errors.add(field, value, "expected a list")
    return []

def check_networks(errors, field, value, max_prefix=None):
    """Validate a list of networks; return them de-duplicated in given order."""
    networks = []
    for index, item in enumerate(check_list(errors, field, value)):
        network = check_network(errors, "%s[%d]" % (field, index), item, max_prefix)
        if network is not None and network not in networks:
            networks.append(network)
    return networks

# Extra vars given as ``-e name=value`` arrive as strings: accept the words
# YAML and Ansible's ``bool`` filter accept, nothing looser.
BOOL_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}

def check_bool(errors, field, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in BOOL_WORDS:
        return BOOL_WORDS[value.strip().lower()]
    errors.add(field, value, "expected a boolean (true or false)")
    return None

def check_int(errors, field, value, low, high=None, unit=""):
    """Validate an int in [low, high]; bools are rejected, a string of ASCII
    digits (``-e name=120``) is taken as the number it spells.

    *unit* is appended to the expectation, e.g. " (seconds)".
    """
    number = int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else value
    if is_int(number) and number >= low and (high is None or number <= high):
        return int(number)
    if high is not None:
        wanted = "an integer from %d to %d" % (low, high)
    else:
        wanted = "a positive integer" if low == 1 else "an integer of at least %d" % low
    not_a = ("boolean" if isinstance(value, bool) else None if is_int(number)
             else "string" if isinstance(value, str) else type(value).__name__)
    errors.add(field, value, "expected %s%s%s" % (wanted, unit, ", not a " + not_a if not_a else ""))
    return None

def check_address(errors, field, value):
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
    problem = domain_problem(domain.lower())
    if problem:
        errors.add(field, value, "expected an e-mail address local@domain: domain %r %s" % (domain, problem))
        return None
    return "%s@%s" % (local, domain.lower())

def is_reserved(name):
    return name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES)

def check_lowercase_name(errors, field, value, pattern, what, why=""):
    """Validate a name that must match *pattern* once lower-cased; return it lower-cased."""
    if not isinstance(value, str):
        errors.add(field, value, "expected %s (a string)" % what)
        return None
    name = value.lower()
    if not pattern.match(name):
        errors.add(field, value, "expected %s matching %s after lower-casing%s" % (what, pattern.pattern, why))
        return None
    return name

def check_local_part(errors, field, value):
    """Validate an alias local part; return it lower-cased."""
    return check_lowercase_name(errors, field, value, ALIAS_RE, "a local part")

def did_you_mean(word, choices):
    """Return " (did you mean 'x'?)" for the closest of *choices*, or ''."""
    hint = difflib.get_close_matches(str(word), choices, n=1)
    return " (did you mean %r?)" % hint[0] if hint else ""

def check_keys(errors, field, item, allowed):
    """Report every key of dict *item* not in *allowed*; return True if none."""
    ok = True
    for key in sorted(item, key=str):
        if key not in allowed:
            errors.note(field, "unknown key %r%s; allowed keys are %s" % (
                str(key), did_you_mean(key, allowed), ", ".join(allowed)))
            ok = False
    return ok

def check_choice(errors, field, value, choices):
    """Validate one of the words *choices* (case-insensitive); return it lower-cased."""
    word = value.strip().lower() if isinstance(value, str) else None
    if word in choices:
        return word
    errors.add(field, value, "expected one of %s%s" % (
        ", ".join(repr(c) for c in choices), did_you_mean(word or "", choices)))
    return None

def has_control_chars(text):
    return any(unicodedata.category(c) == "Cc" for c in text)

def check_line(errors, field, value, max_length=None):
    """Validate a one-line text without control characters."""
    if not isinstance(value, str) or has_control_chars(value):
        errors.add(field, value, "expected a one-line string without newlines or other control characters")
        return None
    if max_length is not None and len(value) > max_length:
        errors.add(field, value, "is %d characters long; at most %d allowed" % (len(value), max_length))
        return None
    return str(value)

def message_size_limit(errors, field, value):
    """Kilobytes ('' or None: unlimited) to bytes (0: unlimited)."""
    if is_blank(value):
        return 0
    kilobytes = check_int(errors, field, value, 1, unit=" (kilobytes) or '' for unlimited")
    return None if kilobytes is None else kilobytes * 1024

def base_index(base, argument="qubemail_mta: the second argument"):
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


MAX_EXTRA_VALUE = 1000


def check_extra_settings(errors, field, value, key_re, owned, where):
    """An escape hatch: a dict of setting name to one-line value for *where*
    (main.cf, dovecot.conf) that the role does not model.  Names must match
    *key_re* and not be one of *owned* (the role's own settings, which it
    would silently lose to a later line); booleans become yes/no.  Returns a
    sorted list of [name, value]."""
    if value is None:
        return []
    if not isinstance(value, dict):
        errors.add(field, value, "expected a dict of %s setting name: value" % where)
        return []
    result = []
    for key in sorted(value, key=str):
        item_field = "%s[%r]" % (field, str(key))
        if not isinstance(key, str) or not key_re.match(key):
            errors.add(item_field, key, "expected a %s setting name matching %s" % (where, key_re.pattern))
            continue
        if key in owned:
            errors.add(item_field, key, "is set by the role itself; use the role's variable for it "
                                        "(see its README) instead of overriding %s" % where)
            continue
        raw = value[key]
        if isinstance(raw, bool):
            text = "yes" if raw else "no"
        elif is_int(raw) or isinstance(raw, str):
            text = str(raw)
        else:
            errors.add(item_field, raw, "expected a string, a number or a boolean")
            continue
        if has_control_chars(text) or len(text) > MAX_EXTRA_VALUE:
            errors.add(item_field, raw, "expected one line of at most %d characters, without control "
                                        "characters" % MAX_EXTRA_VALUE)
            continue
        result.append([key, text.strip()])
    return result


#: MTA-STS modes (RFC 8461) as dns_mta_sts_mode spells them; "none" publishes nothing.
MTA_STS_MODES = ("none", "testing", "enforce")


def mta_sts_served(settings):
    """Why MTA-STS is not published for *settings* (dns_mta_sts_mode, webmail_enabled,
    webmail_https_port), or None when it is: its policy needs WebMail's HTTPS on
    port 443 (https://mta-sts.DOMAIN/). The one rule the dns and acme filters share."""
    mode = settings.get("dns_mta_sts_mode")
    if mode not in MTA_STS_MODES[1:]:
        return "dns_mta_sts_mode is none" if mode == "none" else "dns_mta_sts_mode is not valid"
    if not check_bool(Errors(), "webmail_enabled", settings.get("webmail_enabled")):
        return "its policy is served by WebMail's Apache (webmail_enabled is false)"
    if str(settings.get("webmail_https_port")) != "443":
        return "its policy must be served on port 443 (webmail_https_port is %s)" % settings.get("webmail_https_port")
    return None
