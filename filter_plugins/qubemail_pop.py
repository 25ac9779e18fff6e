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
  dovecot_version:
    description:
      - "The Dovecot version the configuration is for, as dpkg gives it (C(1:2.4.1+dfsg1-6)) or plain (C(2.3.19)):
        the installed package's, else the one apt would install. Dovecot 2.3 and 2.4 spell the same settings
        differently; this picks the spelling. Empty or V(null) (not known yet) means the newest supported, 2.4."
    type: str
    required: false
  dovecot_candidate:
    description:
      - "The Dovecot version apt would install (its candidate), in the same form. When it is of a newer release
        than O(dovecot_version) (the host is between Debian releases: apt's sources are for the next one, the
        packages are not upgraded yet), C(dovecot.upgrade) says so."
    type: str
    required: false
"""

EXAMPLES = r"""
- name: Dovecot settings
  ansible.builtin.set_fact:
    pop_config: "{{ qubemail_settings | qubemail_pop(qubemail_base, inventory_hostname, '1:2.4.1+dfsg1-6') }}"
"""

RETURN = r"""
_value:
  description:
    - "A dict with C(protocols) (list of V(pop3), V(imap)); C(imap_local) (IMAP on 127.0.0.1 only, for WebMail);
      C(ssl) (V(yes) or V(required)); C(users) (dicts with C(name), C(logins), C(password_hash), C(password) and
      C(salt), V(null) unless a plain-text password is to be hashed); C(dovecot_conf_extra) (sorted [name, value])."
    - "C(dovecot): what the Dovecot version spells differently, as lines the templates print: C(version)
      ([major, minor]); C(head) (the first settings); C(protocols); C(mail), C(auth), C(tls) (dovecot.conf);
      C(listener_address) (the name of an inet_listener's address); C(pop3_uidl_format); C(lists) (the archive
      namespace's C(plugins), C(location), C(acl), C(imap_plugins) and the C(acl_file)); C(auth_policy) (the
      POP-before-SMTP report's C(attributes) and C(timeout)); C(junk) (the rspamd role's Sieve script at
      delivery by the LDA); C(upgrade) (V([installed, candidate]) releases
      such as V([\"2.3\", \"2.4\"]) when apt would upgrade Dovecot to a newer release, else V([]))."
    - With O(collect), C({config, errors}) as P(qubemail_base#filter) documents.
  type: dict
"""

#: The variables qubemail_pop reads (their defaults: roles/pop/meta/argument_specs.yml).
POP_SETTINGS = (
    "pop_pop3_enabled", "pop_imap_enabled", "pop_imap_loopback", "pop_plaintext_auth_from_loopback",
    "pop_dovecot_conf_extra", "pop_users_file", "qubemail_tls_dir", "lists_archive_dir",
)
#: The Dovecot releases whose spelling the filter knows: 2.3 (Debian 12), 2.4 (Debian 13).
DOVECOT_RELEASES = ((2, 3), (2, 4))
#: The configuration and storage version a 2.4 configuration declares: the
#: syntax and defaults the roles are written for, and Debian's own
#: dovecot.conf's. Raising it changes defaults (and, for the storage, file
#: formats an older 2.4 cannot read), so it stays fixed across 2.4 updates.
DOVECOT_CONFIG_VERSION = "2.4.0"
#: Dovecot's global ACL file for the list archives (roles/lists writes it).
LISTS_ACL_FILE = "/etc/dovecot/qubemail-lists.acl"
#: The POP3 UIDL: the message's IMAP UID and its folder's UIDVALIDITY, each
#: as 8 lower-case hex digits. The same string on 2.3 and 2.4 (a client that
#: saw another one would fetch every message again).
POP3_UIDL_FORMAT = {(2, 3): "%08Xu%08Xv", (2, 4): "%{uid | hex(8)}%{uidvalidity | hex(8)}"}
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
    # Dovecot 2.4's names of the same settings
    "dovecot_config_version", "dovecot_storage_version", "mail_driver", "mail_path", "auth_allow_cleartext",
    "ssl_server_cert_file", "ssl_server_key_file", "ssl_server_prefer_ciphers",
    # roles/pop_before_smtp (auth policy reports) and roles/lists (archive ACLs)
    "auth_policy_server_url", "auth_policy_server_api_header", "auth_policy_server_timeout_msecs",
    "auth_policy_check_before_auth", "auth_policy_check_after_auth", "auth_policy_report_after_auth",
    "auth_policy_request_attributes", "auth_policy_hash_nonce", "mail_plugins", "mail_access_groups",
    "acl_driver", "acl_global_path", "acl_globals_only",
))
#: Refused although no template sets them: a trusted network may claim any
#: client address (and so unlock POP-before-SMTP relay for an address of its
#: choice); the rest would weaken TLS or authentication the role sets up.
DOVECOT_FORBIDDEN = frozenset(("login_trusted_networks", "ssl_ca", "ssl_dh", "ssl_server_ca_file",
                               "ssl_server_dh_file", "auth_default_realm", "auth_default_domain",
                               "auth_username_format", "auth_master_user_separator"))
#: Length of the salt a plain-text password is hashed with.
SALT_LENGTH = 16


def dovecot_release(version):
    """(major, minor) of a Dovecot *version* string as dpkg or Dovecot print
    it (``1:2.4.1+dfsg1-6``, ``2.3.19.1``); ``None`` or ``""`` (not known yet)
    is the newest release the roles know. A newer 2.x is spelt as 2.4."""
    if version is None or version == "":
        return DOVECOT_RELEASES[-1]
    match = re.match(r"^(?:\d+:)?(\d+)\.(\d+)", version) if isinstance(version, str) else None
    if not match:
        raise AnsibleFilterError("qubemail_pop: the fourth argument must be a Dovecot version such as "
                                 "'1:2.4.1+dfsg1-6', not %r" % (version,))
    release = (int(match.group(1)), int(match.group(2)))
    if release < DOVECOT_RELEASES[0] or release[0] != 2:
        raise AnsibleFilterError("qubemail_pop: Dovecot %s is not supported (2.3 and 2.4 are)" % version)
    return min(release, DOVECOT_RELEASES[-1])


def pending_upgrade(installed, candidate):
    """``[installed, candidate]`` releases ("2.3", "2.4") when apt would
    upgrade Dovecot to a newer release than *installed*, else ``[]``."""
    if not installed or not candidate:
        return []
    old, new = dovecot_release(installed), dovecot_release(candidate)
    return ["%d.%d" % old, "%d.%d" % new] if new > old else []


#: The global Sieve script of the rspamd role (spam into Junk), run before the user's own.
JUNK_SIEVE = "/etc/dovecot/sieve/qubemail-junk.sieve"


def dovecot_syntax(release, settings):
    """The lines of the Dovecot configuration that 2.3 and 2.4 spell
    differently, for *release* ((major, minor)); *settings* gives the paths."""
    users, tls, archive = settings["pop_users_file"], settings["qubemail_tls_dir"], settings["lists_archive_dir"]
    if release < (2, 4):
        return {
            "head": [],
            "none": "none",
            "mail": ["mail_location = maildir:~/Maildir"],
            "auth": [
                "disable_plaintext_auth = yes",
                "# The whole login name is looked up (%u): alice@elsewhere.example is no one,",
                "# rather than alice with a domain the userdb then fails on.",
                "passdb {", "  driver = passwd-file", "  args = scheme=CRYPT username_format=%%u %s" % users, "}",
                "userdb {", "  driver = passwd", "}",
            ],
            "tls": ["ssl_cert = <%s/cert.pem" % tls, "ssl_key = <%s/key.pem" % tls, "ssl_prefer_server_ciphers = no"],
            "listener_address": "address",
            "lists": {
                "plugins": ["mail_plugins = $mail_plugins acl"],
                "location": ["location = maildir:%s:INDEXPVT=~/Maildir/lists-pvt" % archive],
                "acl": ["plugin {", "  acl = vfile:%s" % LISTS_ACL_FILE, "  acl_globals_only = yes", "}"],
                "imap_plugins": ["mail_plugins = $mail_plugins imap_acl"],
            },
            "junk": ["protocol lda {", "  mail_plugins = $mail_plugins sieve", "}",
                     "plugin {", "  sieve_before = %s" % JUNK_SIEVE, "}"],
            "auth_policy": {
                "attributes": ["auth_policy_request_attributes = login=%{requested_username} account=%{user} "
                               "remote=%{rip} protocol=%s"],
                "timeout": ["auth_policy_server_timeout_msecs = 2000"],
            },
        }
    return {
        "head": ["dovecot_config_version = %s" % DOVECOT_CONFIG_VERSION,
                 "dovecot_storage_version = %s" % DOVECOT_CONFIG_VERSION],
        "none": "",
        "mail": ["mail_driver = maildir", "mail_path = ~/Maildir"],
        "auth": [
            "auth_allow_cleartext = no",
            "# The whole login name is looked up (auth_username_format's default, the",
            "# user in lower case): alice@elsewhere.example is no one, rather than alice",
            "# with a domain the userdb then fails on.",
            "passdb passwd-file {", "  passwd_file_path = %s" % users, "  default_password_scheme = CRYPT", "}",
            "userdb passwd {", "}",
        ],
        "tls": ["ssl_server_cert_file = %s/cert.pem" % tls, "ssl_server_key_file = %s/key.pem" % tls,
                "ssl_server_prefer_ciphers = client"],
        "listener_address": "listen",
        "lists": {
            # A boolean list: "$mail_plugins acl" would be taken as one plugin's name.
            "plugins": ["mail_plugins {", "  acl = yes", "}"],
            "location": ["mail_driver = maildir", "mail_path = %s" % archive,
                         "mail_index_private_path = ~/Maildir/lists-pvt"],
            # The global ACL file (deprecated in 2.4 for ACLs in dovecot.conf,
            # which need a reload at each change of a list's members): one
            # file, one format on both releases, re-read without a reload.
            "acl": ["acl_driver = vfile", "acl_global_path = %s" % LISTS_ACL_FILE, "acl_globals_only = yes"],
            "imap_plugins": ["mail_plugins {", "  imap_acl = yes", "}"],
        },
        # A boolean list, as above; a "before" script runs ahead of the user's own.
        "junk": ["protocol lda {", "  mail_plugins {", "    sieve = yes", "  }", "}",
                 "sieve_script qubemail_junk {", "  type = before", "  path = %s" % JUNK_SIEVE, "}"],
        "auth_policy": {
            # A string list merged with Dovecot's defaults (which add pwhash,
            # a truncated password hash, device_id, fail_type, session_id):
            # emptied first, so that only these four are sent.
            "attributes": ["auth_policy_request_attributes =", "auth_policy_request_attributes {",
                           "  login = %{requested_username}", "  account = %{user}", "  remote = %{remote_ip}",
                           "  protocol = %{protocol}", "}"],
            # The report's HTTP client gives up after 2 s (2.3's
            # auth_policy_server_timeout_msecs).
            "timeout": ["auth_policy {", "  http_client_request_absolute_timeout = 2s", "}"],
        },
    }


def qubemail_pop(settings, base, host, dovecot_version=None, collect=False, dovecot_candidate=None):
    """Validate the pop role's settings; derive Dovecot's.

    *base* is qubemail_base output; *host* the inventory name of the host,
    which, with the user's name, makes the salt of a plain-text password, so
    that every run writes the same hash; *dovecot_version* the Dovecot the
    configuration is for (see dovecot_release), *dovecot_candidate* the one
    apt would install.  Returns the dict documented
    in RETURN (with *collect*: ``{"config", "errors"}``).
    """
    errors = Errors()
    base_index(base, "qubemail_pop: the second argument")
    if not isinstance(host, str) or not host:
        raise AnsibleFilterError("qubemail_pop: the third argument must be the host's inventory name")
    release = dovecot_release(dovecot_version)
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
    dovecot = dovecot_syntax(release, s)
    no_protocols = dovecot.pop("none")
    dovecot.update({
        "version": list(release),
        "protocols": " ".join(protocols) if protocols else no_protocols,
        "pop3_uidl_format": POP3_UIDL_FORMAT[release],
        "upgrade": pending_upgrade(dovecot_version, dovecot_candidate),
    })
    dovecot["lists"]["acl_file"] = LISTS_ACL_FILE
    return errors.result({
        "dovecot": dovecot,
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
