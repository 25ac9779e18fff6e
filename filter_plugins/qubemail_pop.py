# -*- coding: utf-8 -*-
"""The qubemail_pop filter: Dovecot settings of the pop role."""

from __future__ import annotations

import hashlib
import re

from ansible.errors import AnsibleFilterError
from ansible_collections.qubemail.appliance.plugins.plugin_utils.checks import (
    Errors,
    base_index,
    check_bool,
    check_extra_settings,
    settings_of,
)

DOCUMENTATION = r"""
name: qubemail_pop
short_description: Dovecot settings of the pop role, checked and derived
version_added: 1.0.0
author: qubemail project
extends_documentation_fragment:
  - qubemail.appliance.validation
  - qubemail.appliance.validation.base
description:
  - Checks the C(pop_*) variables the Dovecot configuration is built from and derives what the templates print
    (protocols, the loopback-only IMAP listener, the C(ssl) mode, each user's logins and password salt).
  - The variables, types and defaults are roles/pop/meta/argument_specs.yml (the table in roles/pop/README.md).
  - "C(pop_dovecot_conf_extra) may not set what the roles set (dovecot.conf and the files other roles put in
    /etc/dovecot/qubemail.d) nor V(login_trusted_networks) and settings that weaken TLS or authentication."
options:
  _input:
    description: Every variable of the pop role, keyed by name (other keys are ignored).
    type: dict
    required: true
  host:
    description: The host's inventory name; with a user's name it makes the salt of a plain-text password, so a re-run writes the same hash.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Dovecot settings
  ansible.builtin.set_fact:
    pop_config: "{{ qubemail_settings | qubemail_pop(qubemail_base, inventory_hostname) }}"
"""

RETURN = r"""
_value:
  description:
    - "A dict with C(protocols) (list of V(pop3), V(imap)); C(imap_local) (IMAP on 127.0.0.1 only, for WebMail);
      C(ssl) (V(yes) or V(required)); C(users) (dicts with C(name), C(logins), C(password_hash), C(password) and
      C(salt), V(null) unless a plain-text password is to be hashed); C(dovecot_conf_extra) (sorted [name, value])."
    - With O(collect), C({config, errors}) as P(qubemail_base#filter) documents.
  type: dict
"""

#: The variables qubemail_pop reads (their defaults: roles/pop/meta/argument_specs.yml).
POP_SETTINGS = (
    "pop_pop3_enabled", "pop_imap_enabled", "pop_imap_loopback", "pop_plaintext_auth_from_loopback",
    "pop_dovecot_conf_extra",
)
#: Dovecot setting names.
DOVECOT_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
#: Top-level settings the pop role (dovecot.conf.j2) and the roles that add
#: files in /etc/dovecot/qubemail.d set; a unit test keeps this equal to the
#: templates.  pop_dovecot_conf_extra may not override them.
DOVECOT_OWNED = frozenset((
    "protocols", "listen", "login_greeting", "mail_location", "mail_privileged_group", "first_valid_uid",
    "auth_mechanisms", "disable_plaintext_auth", "ssl", "ssl_cert", "ssl_key", "ssl_min_protocol",
    "ssl_cipher_list", "ssl_prefer_server_ciphers", "pop3_uidl_format", "log_path", "syslog_facility",
    "auth_verbose",
    # roles/pop_before_smtp (auth policy reports) and roles/lists (archive ACLs)
    "auth_policy_server_url", "auth_policy_server_api_header", "auth_policy_server_timeout_msecs",
    "auth_policy_check_before_auth", "auth_policy_check_after_auth", "auth_policy_report_after_auth",
    "auth_policy_request_attributes", "auth_policy_hash_nonce", "mail_plugins", "mail_access_groups",
))
#: Refused although no template sets them: a trusted network may claim any
#: client address (and so unlock POP-before-SMTP relay for an address of its
#: choice); the rest would weaken TLS or authentication the role sets up.
DOVECOT_FORBIDDEN = frozenset(("login_trusted_networks", "auth_allow_cleartext", "ssl_server_cert_file",
                               "ssl_server_key_file", "ssl_ca", "ssl_dh", "auth_default_realm",
                               "auth_username_format", "auth_master_user_separator"))
#: Length of the salt a plain-text password is hashed with.
SALT_LENGTH = 16


def qubemail_pop(settings, base, host, collect=False):
    """Validate the pop role's settings; derive Dovecot's.

    *base* is qubemail_base output; *host* the inventory name of the host,
    which, with the user's name, makes the salt of a plain-text password, so
    that every run writes the same hash.  Returns the dict documented in
    RETURN (with *collect*: ``{"config", "errors"}``).
    """
    errors = Errors()
    base_index(base, "qubemail_pop: the second argument")
    if not isinstance(host, str) or not host:
        raise AnsibleFilterError("qubemail_pop: the third argument must be the host's inventory name")
    s = settings_of(settings, POP_SETTINGS, "qubemail_pop")
    pop3 = check_bool(errors, "pop_pop3_enabled", s["pop_pop3_enabled"])
    imap_public = check_bool(errors, "pop_imap_enabled", s["pop_imap_enabled"])
    loopback = check_bool(errors, "pop_imap_loopback", s["pop_imap_loopback"])
    plaintext = check_bool(errors, "pop_plaintext_auth_from_loopback", s["pop_plaintext_auth_from_loopback"])
    imap_local = bool(not imap_public and loopback)
    protocols = (["pop3"] if pop3 else []) + (["imap"] if imap_public or imap_local else [])
    extra = check_extra_settings(errors, "pop_dovecot_conf_extra", s["pop_dovecot_conf_extra"], DOVECOT_KEY_RE,
                                 DOVECOT_OWNED | DOVECOT_FORBIDDEN, "dovecot.conf")
    users = []
    for user in base["users"]:
        salt = hashlib.sha256(("%s:%s" % (host, user["name"])).encode()).hexdigest()[:SALT_LENGTH]
        users.append({
            "name": user["name"],
            # A user logs in as NAME or NAME@ one of our domains, nothing else.
            "logins": [user["name"]] + ["%s@%s" % (user["name"], domain) for domain in base["domains"]],
            "password_hash": user["password_hash"],
            "password": user["password"],
            "salt": None if user["password_hash"] else salt,
        })
    return errors.result({
        "protocols": protocols,
        "imap_local": imap_local,
        "ssl": "yes" if plaintext else "required",
        "users": users,
        "dovecot_conf_extra": extra,
    }, collect)


class FilterModule:
    """The qubemail_pop filter."""

    def filters(self):
        return {"qubemail_pop": qubemail_pop}
