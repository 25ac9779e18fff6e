# -*- coding: utf-8 -*-
"""The qubemail_base filter: validate and normalise the appliance name, mail domains and users."""

from __future__ import annotations

import re

from ansible_collections.qubemail.appliance.plugins.plugin_utils.checks import (
    Errors,
    USER_NAME_RE,
    check_address,
    check_domain,
    check_keys,
    check_list,
    check_local_part,
    has_control_chars,
    is_reserved,
    redact_hash,
    redact_password,
)

DOCUMENTATION = r"""
name: qubemail_base
short_description: Validate and normalise the appliance name, mail domains and users
version_added: 1.0.0
author: qubemail project
extends_documentation_fragment:
  - qubemail.appliance.validation
description:
  - Checks C(qubemail_hostname), C(qubemail_domains) and C(qubemail_users) and returns the appliance name, the mail
    domains (the first is the primary domain) and the mailbox users sorted by name. Every other qubemail filter takes
    this output as its O(base); roles/qubemail/tasks/validate.yml computes it once.
  - "All problems are collected at once: the filter raises one error whose message starts with
    C(qubemail: invalid inventory:) and has one line per problem naming the variable and path (for example
    C(qubemail_users[2].aliases[0])), the offending value and what is expected; with O(collect) it returns them."
  - Passwords are never shown in error messages; a hash only by its scheme prefix.
  - "Reserved names (plus every name starting with C(systemd-)) may be neither user names nor user aliases:
    V(root), V(postmaster), V(mailer-daemon), V(abuse), V(hostmaster), V(webmaster), V(nobody), V(daemon), V(bin),
    V(sys), V(sync), V(games), V(man), V(lp), V(mail), V(news), V(uucp), V(proxy), V(www-data), V(backup), V(list),
    V(irc), V(gnats), V(_apt), V(messagebus), V(postfix), V(dovecot), V(dovenull), V(sshd), V(admin), V(operator),
    V(noc), V(security), V(usenet), V(mlmmj), V(mlarchive). They may be keys of C(mta_aliases) but not list names."
options:
  _input:
    description:
      - C(qubemail_hostname), the appliance FQDN. At least two labels of 1-63 characters V(a-z), V(0-9), V(-) (not
        first or last), the last label not all digits, at most 253 characters, no trailing dot. Case-insensitive.
    type: str
    required: true
  domains:
    description: C(qubemail_domains), the accepted mail domains, same syntax as the hostname, no duplicates; the first is the primary domain.
    type: list
    elements: str
    required: true
  users:
    description:
      - C(qubemail_users), the mailbox users. V(null) counts as an empty list. Unknown keys are an error.
      - C(name) is the login and mailbox name, C(^[a-z][a-z0-9._-]{0,31}$), not ending in V(.) or V(-), not reserved, unique.
      - C(full_name) is the GECOS full name; no V(:), newline or other control characters.
      - Exactly one of C(password_hash) (crypt(3) sha512crypt V($6$), sha256crypt V($5$), yescrypt V($y$) or bcrypt
        V($2b$), V($2y$)) and C(password) (plain text, keep it vault-encrypted, non-empty).
      - C(aliases) are extra local parts delivered to this user, C(^[a-z0-9][a-z0-9._+-]{0,63}$) after lower-casing;
        not a user name, another user's alias or a reserved name.
      - C(send_as) are full addresses (C(local@domain)) this user may also use as envelope sender after logging in
        (authenticated submission, WebMail), besides NAME and the aliases at every domain; several users may share
        one, e.g. V(sales@example.com). Lower-cased, sorted, de-duplicated.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: The appliance's name, domains and users, checked
  ansible.builtin.set_fact:
    qubemail_base: "{{ qubemail_hostname | qubemail_base(qubemail_domains, qubemail_users) }}"

# With qubemail_hostname: Mail.Example.COM, qubemail_domains: [example.com, example.org] and
#   qubemail_users: [{name: alice, full_name: Alice Liddell, password_hash: "$6$...", aliases: [Info, sales]}]
# the result is
#   {hostname: mail.example.com, domains: [example.com, example.org], primary_domain: example.com,
#    users: [{name: alice, full_name: Alice Liddell, password_hash: "$6$...", password: null, aliases: [info, sales]}]}
# A bad inventory fails with, for example:
#   qubemail: invalid inventory:
#     qubemail_users[1].aliases[0] = 'MAILER-DAEMON': 'mailer-daemon' is a reserved name; route it with mta_aliases
"""

RETURN = r"""
_value:
  description:
    - "A dict with C(hostname) (str), C(domains) (list, given order, lower-cased), C(primary_domain) (str),
      C(mail_names) (the domains and the host name, sorted: the names only this host sends as) and
      C(users), a list sorted by name of dicts with C(name), C(full_name) (str, may be empty), C(password_hash)
      (str or V(null)), C(password) (str or V(null)), C(aliases) (sorted, lower-cased) and C(send_as) (sorted, lower-cased);
      C(sender_logins), who owns which envelope sender (sorted [address, logins] pairs: each user's name and aliases
      at every domain and their C(send_as), logins comma-separated)."
    - With O(collect), C({config, errors}), C(config) that dict or V(null), C(errors) a list of dicts with
      C(field), C(variable), C(value) (as shown, secrets redacted), C(problem) and C(line).
  type: dict
"""

_B64 = r"[./0-9A-Za-z]"

#: Accepted crypt(3) formats, by scheme prefix.
PASSWORD_HASH_RES = {
    "$6$": re.compile(r"^\$6\$(?:rounds=[0-9]+\$)?%s{1,16}\$%s{86}$" % (_B64, _B64)),
    "$5$": re.compile(r"^\$5\$(?:rounds=[0-9]+\$)?%s{1,16}\$%s{43}$" % (_B64, _B64)),
    "$y$": re.compile(r"^\$y\$%s+\$%s*\$%s{43}$" % (_B64, _B64, _B64)),
    "$2b$": re.compile(r"^\$2b\$(?:0[4-9]|[12][0-9]|3[01])\$%s{53}$" % _B64),
    "$2y$": re.compile(r"^\$2y\$(?:0[4-9]|[12][0-9]|3[01])\$%s{53}$" % _B64),
}

USER_KEYS = ("name", "full_name", "password_hash", "password", "aliases", "send_as")

def _check_user_name(errors, field, value):
    if not isinstance(value, str):
        errors.add(field, value, "expected a user name (a string)")
        return None
    if not USER_NAME_RE.match(value) or value[-1] in ".-":
        errors.add(field, value, "expected a user name matching %s, not ending in '.' or '-'"
                   % USER_NAME_RE.pattern)
        return None
    if is_reserved(value):
        errors.add(field, value, "%r is a reserved system or role account name" % value)
        return None
    return str(value)

def _check_full_name(errors, field, value):
    if value is None:
        return ""
    if not isinstance(value, str):
        errors.add(field, value, "expected a string")
        return None
    if ":" in value or has_control_chars(value):
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
    errors.add(field, redact_hash(value), problem)
    return None

def _check_user(errors, field, user):
    """Validate one user entry except its aliases.

    Returns ``(name, entry)``: the name if valid (even when other fields are
    not, so duplicates are still detected) and the normalised dict, or None.
    """
    if not isinstance(user, dict):
        errors.add(field, user, "expected a dict with at least 'name' and a password")
        return None, None
    ok = check_keys(errors, field, user, USER_KEYS)
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
            errors.add(field + ".password", redact_password(password),
                       "expected a non-empty string (quote numeric passwords in YAML)")
            ok = False

    send_as = _check_send_as(errors, field + ".send_as", user.get("send_as"))

    if not ok or name is None or full_name is None or send_as is None:
        return name, None
    return name, {"name": name, "full_name": full_name, "password_hash": password_hash,
                  "password": password, "aliases": [], "send_as": send_as}

def _check_send_as(errors, field, value):
    """Extra envelope senders a user may use after logging in: full
    addresses, sorted and de-duplicated; None if one is bad."""
    addresses, ok = set(), True
    for index, item in enumerate(check_list(errors, field, value)):
        address = check_address(errors, "%s[%d]" % (field, index), item)
        if address is None:
            ok = False
        else:
            addresses.add(address)
    return sorted(addresses) if ok else None

def _check_user_aliases(errors, field, value, owner, user_names, alias_owner):
    """Validate one user's aliases; return them sorted and de-duplicated.

    *owner* describes the user ("user 'alice'"); *alias_owner* maps each alias
    seen so far to ``(owner, field)`` and is updated.
    """
    aliases = set()
    for index, item in enumerate(check_list(errors, field, value)):
        item_field = "%s[%d]" % (field, index)
        alias = check_local_part(errors, item_field, item)
        if alias is None:
            continue
        if is_reserved(alias):
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
        domain = check_domain(errors, field, item)
        if domain in seen:
            errors.add(field, item, "duplicate of %s" % seen[domain])
        elif domain is not None:
            seen[domain] = field
            result.append(domain)
    return result

def qubemail_base(hostname, domains, users, collect=False):
    """Validate qubemail_hostname, qubemail_domains and qubemail_users.

    Returns ``{"hostname", "domains", "primary_domain", "mail_names", "users",
    "sender_logins"}`` with names
    lower-cased, users sorted by name and each user's aliases sorted.
    """
    errors = Errors()
    hostname = check_domain(errors, "qubemail_hostname", hostname)
    domain_list = _check_domains(errors, domains)

    # Pass 1: the users themselves, so that pass 2 knows every user name.
    records, first_field = [], {}
    for index, user in enumerate(check_list(errors, "qubemail_users", users)):
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

    if errors.items:
        return errors.result(None, collect)
    base = {
        "hostname": hostname,
        "domains": domain_list,
        "primary_domain": domain_list[0],
        "mail_names": sorted(set(domain_list) | {hostname}),
        "users": sorted((entry for _, _, entry, _ in records), key=lambda e: e["name"]),
    }
    base["sender_logins"] = _sender_logins(base)
    return errors.result(base, collect)


def _sender_logins(base):
    """Who owns which envelope sender: [[address, "login,login"]], sorted.
    Each user owns NAME and each alias at every domain, and their send_as.
    Postfix's smtpd_sender_login_maps and the POP-before-SMTP daemon's
    senders file are both this."""
    owners = {}
    for user in base["users"]:
        for local in [user["name"]] + user["aliases"]:
            for domain in base["domains"]:
                owners.setdefault("%s@%s" % (local, domain), set()).add(user["name"])
        for address in user.get("send_as", ()):
            owners.setdefault(address.lower(), set()).add(user["name"])
    return [[address, ",".join(sorted(names))] for address, names in sorted(owners.items())]


class FilterModule:
    """The qubemail_base filter."""

    def filters(self):
        return {"qubemail_base": qubemail_base}
