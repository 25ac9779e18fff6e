# -*- coding: utf-8 -*-
"""The qubemail_mta filter: postfix settings of the mta role, checked."""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.qubemail.appliance.plugins.plugin_utils.checks import (
    DEFAULT_ALIASES,
    MAIL_PORTS,
    Errors,
    SYSTEM_MAILBOXES,
    base_index,
    check_address,
    check_extra_settings,
    check_bool,
    check_domain,
    check_int,
    check_list,
    check_local_part,
    check_network,
    check_networks,
    is_blank,
    is_int,
    looks_like_ip,
    postfix_network,
    settings_of,
    strip_brackets,
)

DOCUMENTATION = r"""
name: qubemail_mta
short_description: Postfix settings of the mta role, checked
version_added: 1.0.0
author: qubemail project
extends_documentation_fragment:
  - qubemail.appliance.validation
  - qubemail.appliance.validation.base
description:
  - Checks the C(mta_*) variables against the output of P(qubemail_base#filter) and returns Postfix-ready values.
  - The variables, their types and defaults are the mta role's argument spec (roles/mta/meta/argument_specs.yml,
    the table in roles/mta/README.md); P(qubemail_variables#filter) checks types and choices first, this filter
    what a spec cannot say (networks, addresses, alias targets and loops, ranges).
  - C(mta_main_cf_extra) may not set a parameter that roles/mta/templates/main.cf.j2 sets.
options:
  _input:
    description: Every variable of the mta role, keyed by name (other keys are ignored); a missing one is an error.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Postfix settings
  ansible.builtin.set_fact:
    mta_config: "{{ qubemail_settings | qubemail_mta(qubemail_base) }}"

# A bad value fails with, for example:
#   qubemail: invalid inventory:
#     mta_relay_allowed_networks[0] = '192.168.1.7/24': host bits are set; did you mean '192.168.1.0/24'?
"""

RETURN = r"""
_value:
  description:
    - "A dict with C(smtp_enabled) (bool); C(mynetworks) (list: V(127.0.0.0/8), V([::1]/128), then the allowed
      networks in Postfix syntax, IPv6 in brackets, de-duplicated); C(relayhost) (V('') or V([host]:port));
      C(message_size_limit) (int bytes, V(0) = unlimited only when asked for with V(0)); C(masquerade_domain);
      C(catch_all) (V(''), a user name or an address); C(denied_networks) and C(denied_hostnames) (given order,
      de-duplicated); C(transports) (sorted [domain, nexthop] pairs); C(aliases) (sorted by C(name), dicts with
      C(name) and C(targets): user aliases, C(mta_aliases) and the default aliases); C(relay_policy_services); C(submission_policy_services) (the same, or
      none unless C(mta_submission_relay_policy));
      C(alias_maps_extra); C(internal_recipients) (sorted); C(main_cf_extra) (sorted [name, value] pairs);
      C(submission_services) (master.cf's submission services: dicts with C(listen), C(name) and C(options), the
      C(-o) arguments; port 587 listens on 127.0.0.1 at least, for WebMail); C(sender_domains) (the domains and the host name, sorted: senders a stranger may not use on port 25); C(milters) (list); C(dovecot_delivery) (bool)."
    - With O(collect), C({config, errors}) as P(qubemail_base#filter) documents.
  type: dict
"""

#: Widest networks accepted in ``mta_relay_allowed_networks``.
MAX_RELAY_PREFIX = {4: 8, 6: 32}

LOOPBACK_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

#: The variables qubemail_mta reads (their defaults: roles/mta/meta/argument_specs.yml).
MTA_SETTINGS = (
    "mta_smtp_enabled", "mta_relay_allowed_networks", "mta_smart_relay_host", "mta_smart_relay_port",
    "mta_max_message_size_kb", "mta_masquerade_domain", "mta_catch_all", "mta_denied_hosts", "mta_aliases",
    "mta_transports", "mta_relay_policy_services", "mta_relay_policy_timeout", "mta_loopback_port",
    "mta_alias_maps_extra", "mta_internal_recipients", "mta_main_cf_extra", "mta_submission_enabled",
    "mta_submissions_enabled", "mta_submission_relay_policy", "mta_milters", "mta_dovecot_delivery",
)
MILTER_RE = re.compile(r"^(?:unix:/[A-Za-z0-9_./-]+|inet:(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5})$")
POLICY_SERVICE_RE = re.compile(r"^(?:unix:[A-Za-z0-9_./-]+|inet:(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5})$")
LOOKUP_TABLE_RE = re.compile(r"^[a-z][a-z0-9_]*:/[A-Za-z0-9_./+-]+$")
#: Postfix parameter names.
POSTFIX_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
#: The main.cf parameters roles/mta/templates/main.cf.j2 sets, which
#: mta_main_cf_extra may not override (a unit test keeps this equal to the template).
MAIN_CF_OWNED = frozenset((
    "compatibility_level", "myhostname", "mydomain", "myorigin", "mydestination", "smtpd_banner", "biff",
    "append_dot_mydomain", "readme_directory", "alias_maps", "alias_database", "home_mailbox",
    "mailbox_size_limit", "recipient_delimiter", "luser_relay", "local_recipient_maps", "mynetworks_style",
    "mynetworks", "relayhost", "smtpd_relay_restrictions", "smtpd_policy_service_try_limit", "transport_maps",
    "smtpd_client_restrictions", "smtpd_recipient_restrictions", "smtpd_helo_required", "disable_vrfy_command",
    "smtpd_recipient_limit", "smtpd_forbid_bare_newline", "smtpd_forbid_bare_newline_exclusions",
    "smtpd_forbid_unauth_pipelining", "always_add_missing_headers", "message_size_limit", "masquerade_domains",
    "masquerade_classes", "smtpd_tls_cert_file", "smtpd_tls_key_file", "smtpd_tls_security_level",
    "smtpd_tls_loglevel", "smtpd_tls_exclude_ciphers", "smtp_tls_security_level", "smtpd_tls_mandatory_protocols",
    "smtpd_tls_protocols", "inet_interfaces", "inet_protocols", "smtpd_sender_restrictions", "smtpd_sasl_type",
    "smtpd_sasl_path", "smtpd_sasl_auth_enable", "smtpd_tls_auth_only", "smtpd_sender_login_maps",
    "qubemail_submission_relay_restrictions", "smtpd_tls_mandatory_ciphers", "tls_high_cipherlist",
    "smtpd_milters", "non_smtpd_milters", "milter_default_action", "milter_protocol", "milter_mail_macros",
    "mailbox_command", "mailbox_transport_maps",
))
# A Postfix transport_maps next hop: "transport:nexthop", e.g. smtp:[mx]:25.
TRANSPORT_RE = re.compile(r"^[a-z][a-z0-9_-]*:[^\s,]*$")

def _relayhost(errors, host, port):
    """Return the Postfix relayhost value: '' or '[host]:port'."""
    if is_blank(host):
        return ""
    field = "mta_smart_relay_host"
    if isinstance(host, str) and looks_like_ip(host):
        try:
            address = ipaddress.ip_address(strip_brackets(host))
        except ValueError:
            errors.add(field, host, "expected a host name or a single IP address, without a port "
                                    "(the port goes in mta_smart_relay_port)")
            return None
        bracketed = "ipv6:%s" % address if address.version == 6 else str(address)
    else:
        bracketed = check_domain(errors, field, host, "'' (deliver directly), a host name or an IP address")
    if bracketed is None or port is None:
        return None
    return "[%s]:%d" % (bracketed, port)

def _mta_size_limit(errors, value):
    """mta_max_message_size_kb to bytes. Unlike a list's limit, unlimited is
    only an explicit 0: a blank value is refused, not taken as unlimited."""
    field = "mta_max_message_size_kb"
    wanted = " (kilobytes), or 0 for unlimited"
    if is_blank(value):
        errors.add(field, value, "expected a positive integer%s; a blank value is not taken as unlimited" % wanted)
        return None
    if value == "0" or (is_int(value) and value == 0):
        return 0
    kilobytes = check_int(errors, field, value, 1, unit=wanted)
    return None if kilobytes is None else kilobytes * 1024

def _catch_all(errors, value, user_names):
    if is_blank(value):
        return ""
    field = "mta_catch_all"
    if isinstance(value, str) and "@" in value:
        return check_address(errors, field, value)
    if isinstance(value, str) and value in user_names:
        return str(value)
    errors.add(field, value, "expected '', a user defined in qubemail_users or an address local@domain")
    return None

def _denied_hosts(errors, value):
    """Split mta_denied_hosts into (networks, host names)."""
    networks, names = [], []
    for index, item in enumerate(check_list(errors, "mta_denied_hosts", value)):
        field = "mta_denied_hosts[%d]" % index
        if isinstance(item, str) and looks_like_ip(item):
            network = check_network(errors, field, item)
            if network is not None and str(network) not in networks:
                networks.append(str(network))
        else:
            name = check_domain(errors, field, item, "an IP address, a CIDR network or a host/domain name")
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
        name = check_local_part(errors, field, key)
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
            target = check_address(errors, item_field, item)
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

def _submission_services(port_587, port_465, milters):
    """master.cf's submission services: [{"listen", "name", "options"}].

    Port 587 always listens on loopback at least: WebMail on this host
    submits there as the logged-in user, with the same sender binding.
    Every option is one master.cf ``-o`` argument (no spaces)."""
    login = [
        "smtpd_tls_security_level=encrypt",
        "smtpd_sasl_auth_enable=yes",
        "smtpd_relay_restrictions=$qubemail_submission_relay_restrictions",
        "smtpd_sender_restrictions=reject_authenticated_sender_login_mismatch",
    ]
    if milters:
        # The milter tells outgoing mail from mail coming in by this name.
        login.append("milter_macro_daemon_name=ORIGINATING")
    services = [{"listen": "submission" if port_587 else "127.0.0.1:submission", "name": "submission",
                 "options": ["syslog_name=postfix/submission"] + login}]
    if port_465:
        services.append({"listen": "submissions", "name": "submissions",
                         "options": ["syslog_name=postfix/submissions", "smtpd_tls_wrappermode=yes"] + login})
    return services

def qubemail_mta(settings, base, collect=False):
    """Validate the mta role's settings against qubemail_base output.

    Returns the Postfix-ready values documented in RETURN (with *collect*:
    ``{"config", "errors"}``).
    """
    errors = Errors()
    user_names, user_aliases = base_index(base)[:2]
    s = settings_of(settings, MTA_SETTINGS, "qubemail_mta")

    smtp_enabled = check_bool(errors, "mta_smtp_enabled", s["mta_smtp_enabled"])
    relay = check_networks(errors, "mta_relay_allowed_networks", s["mta_relay_allowed_networks"],
                            MAX_RELAY_PREFIX)
    mynetworks = []
    for network in LOOPBACK_NETWORKS + tuple(relay):
        if postfix_network(network) not in mynetworks:
            mynetworks.append(postfix_network(network))

    port = check_int(errors, "mta_smart_relay_port", s["mta_smart_relay_port"], 1, 65535)
    relayhost = _relayhost(errors, s["mta_smart_relay_host"], port)
    size_limit = _mta_size_limit(errors, s["mta_max_message_size_kb"])
    masquerade = ("" if is_blank(s["mta_masquerade_domain"]) else
                  check_domain(errors, "mta_masquerade_domain", s["mta_masquerade_domain"],
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

    policy_services = _endpoints(errors, "mta_relay_policy_services", s["mta_relay_policy_services"],
                                 POLICY_SERVICE_RE,
                                 "a Postfix policy service, unix:private/NAME or inet:127.0.0.1:PORT")
    check_int(errors, "mta_relay_policy_timeout", s["mta_relay_policy_timeout"], 1, 60, " (seconds)")
    loopback_port = check_int(errors, "mta_loopback_port", s["mta_loopback_port"], 0, 65535,
                              " (0: no loopback listener)")
    if loopback_port and loopback_port in MAIL_PORTS:
        errors.add("mta_loopback_port", s["mta_loopback_port"], "is a port of the mail services (%s)"
                   % ", ".join(str(port) for port in MAIL_PORTS))
    alias_maps = _lookup_tables(errors, "mta_alias_maps_extra", s["mta_alias_maps_extra"])
    internal = [check_local_part(errors, "mta_internal_recipients[%d]" % index, item)
                for index, item in enumerate(check_list(errors, "mta_internal_recipients",
                                                        s["mta_internal_recipients"]))]
    extra = check_extra_settings(errors, "mta_main_cf_extra", s["mta_main_cf_extra"], POSTFIX_KEY_RE,
                                 MAIN_CF_OWNED, "main.cf")
    port_587 = check_bool(errors, "mta_submission_enabled", s["mta_submission_enabled"])
    port_465 = check_bool(errors, "mta_submissions_enabled", s["mta_submissions_enabled"])
    submission_policy = check_bool(errors, "mta_submission_relay_policy", s["mta_submission_relay_policy"])
    # Milters: unix:/PATH inside Postfix's chroot, or inet:HOST:PORT.
    milters = _endpoints(errors, "mta_milters", s["mta_milters"], MILTER_RE,
                         "a Postfix milter, unix:/rspamd/milter.sock or inet:127.0.0.1:PORT")
    dovecot_delivery = check_bool(errors, "mta_dovecot_delivery", s["mta_dovecot_delivery"])

    return errors.result({
        "smtp_enabled": smtp_enabled,
        "mynetworks": mynetworks,
        "relayhost": relayhost,
        "message_size_limit": size_limit,
        "masquerade_domain": masquerade,
        "catch_all": catch_all,
        "denied_networks": denied_networks,
        "denied_hostnames": denied_hostnames,
        "transports": transports,
        "aliases": [{"name": name, "targets": aliases[name]} for name in sorted(aliases)],
        "relay_policy_services": policy_services,
        "submission_policy_services": policy_services if submission_policy else [],
        "alias_maps_extra": alias_maps,
        "internal_recipients": sorted(set(internal) - {None}),
        "main_cf_extra": extra,
        "submission_services": _submission_services(port_587, port_465, milters),
        "milters": milters,
        "dovecot_delivery": dovecot_delivery,
        "sender_domains": base["mail_names"],
    }, collect)

def _endpoints(errors, field, value, pattern, expected):
    """A list of Postfix endpoints (policy services, milters), each matching *pattern*."""
    endpoints = []
    for index, item in enumerate(check_list(errors, field, value)):
        if isinstance(item, str) and pattern.match(item):
            endpoints.append(item)
        else:
            errors.add("%s[%d]" % (field, index), item, "expected " + expected)
    return endpoints

def _lookup_tables(errors, field, value):
    """A list of Postfix lookup tables, TYPE:/absolute/path."""
    tables = []
    for index, item in enumerate(check_list(errors, field, value)):
        if isinstance(item, str) and LOOKUP_TABLE_RE.match(item):
            tables.append(item)
        else:
            errors.add("%s[%d]" % (field, index), item, "expected a Postfix lookup table TYPE:/path, "
                                                        "e.g. hash:/var/lib/qubemail/lists-aliases/aliases")
    return tables


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
        checked = check_domain(errors, field, domain)
        if not isinstance(nexthop, str) or not TRANSPORT_RE.match(nexthop):
            errors.add(field, nexthop, 'expected "transport:nexthop", e.g. "smtp:[mx.example.net]:25"')
        elif checked is not None:
            routes.append([checked, nexthop])
    return sorted(routes)


class FilterModule:
    """The qubemail_mta filter."""

    def filters(self):
        return {"qubemail_mta": qubemail_mta}
