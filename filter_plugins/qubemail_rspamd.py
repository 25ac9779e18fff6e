# -*- coding: utf-8 -*-
"""The qubemail_rspamd filter: settings of the rspamd role, checked."""

from __future__ import annotations

import re

from ansible_collections.qubemail.appliance.plugins.plugin_utils.checks import (
    DNS_LABEL_RE,
    Errors,
    check_bool,
    check_int,
    check_network,
    check_networks,
    is_blank,
    settings_of,
)

DOCUMENTATION = r"""
name: qubemail_rspamd
short_description: Settings of the rspamd role, checked, and what rspamd and Postfix are told
version_added: 1.0.0
author: qubemail project
extends_documentation_fragment:
  - qubemail.appliance.validation
description:
  - Checks the C(rspamd_*) variables (roles/rspamd/meta/argument_specs.yml) and works out the addresses rspamd
    counts as this office's own (loopback, then C(mta_relay_allowed_networks)). Their mail is signed and not
    scored as inbound, as is mail from users who logged in.
options:
  _input:
    description: Every variable of the rspamd role, and C(mta_relay_allowed_networks).
    type: dict
    required: true
  base:
    description: The output of P(qubemail.appliance.qubemail_base#filter) (the domains to sign for).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: rspamd settings
  ansible.builtin.set_fact:
    rspamd_config: "{{ qubemail_settings | qubemail_rspamd(qubemail_base) }}"
"""

RETURN = r"""
_value:
  description:
    - "A dict with C(enabled), C(greylisting), C(test_patterns) (bools), C(reject_score), C(junk_score) (ints),
      C(grant_lookup) (the POP-before-SMTP daemon's socket, or empty), C(refuse_forged_from),
      C(list_from_rewrite) (bools), C(dns_servers) (rspamd's resolvers as C(ADDRESS:53), or none: resolv.conf),
      C(list_names) (the file of the lists' names, or empty),
      C(own_domains) (the domains and the host name, sorted: a From: in them from outside must be signed by us),
      C(dkim_selector), C(local_addrs) (loopback and the relay-allowed networks), C(dkim_dir) (the keys'
      directory) and C(domains) (the domains signed for, each with C(name), C(key), the private key's path, and
      C(record), the path of the DNS record to publish)."
    - With O(collect), C({config, errors}) as P(qubemail_base#filter) documents.
  type: dict
"""

#: The variables qubemail_rspamd reads (defaults: roles/rspamd/meta/argument_specs.yml, and roles/mta's).
RSPAMD_SETTINGS = (
    "rspamd_enabled", "rspamd_reject_score", "rspamd_junk_score", "rspamd_greylisting", "rspamd_dkim_selector",
    "rspamd_test_patterns", "rspamd_grant_lookup", "rspamd_refuse_forged_from", "rspamd_list_from_rewrite",
    "rspamd_dns_servers", "rspamd_list_names", "mta_relay_allowed_networks",
)
#: Programs on this host: the list engine's copies, WebMail, cron's mail.
LOOPBACK = ["127.0.0.0/8", "::1/128"]
#: Where the role keeps the DKIM keys (root:_rspamd 0750; keys 0640).
DKIM_KEY_DIR = "/var/lib/qubemail/dkim"
#: The absolute path of a socket or file (rspamd_grant_lookup, rspamd_list_names).
PATH_RE = re.compile(r"^/[A-Za-z0-9_./-]{1,200}$")
#: A score no message reaches.
MAX_SCORE = 1000
#: rspamd's resolver takes at most this many servers (rspamd_dns_servers).
MAX_DNS_SERVERS = 8


def _path(errors, field, value, what):
    """An absolute path (PATH_RE) or ''."""
    if not isinstance(value, str) or (value and not PATH_RE.match(value)):
        errors.add(field, value, "expected the absolute path of %s, or ''" % what)
    return value


def _dns_servers(errors, value):
    """rspamd_dns_servers: single addresses, as rspamd's dns.nameserver spells them (port 53)."""
    servers = []
    items = value if isinstance(value, list) else None
    if items is None or len(items) > MAX_DNS_SERVERS:
        errors.add("rspamd_dns_servers", value,
                   "expected a list of at most %d IP addresses, e.g. ['192.0.2.53'], or [] for /etc/resolv.conf"
                   % MAX_DNS_SERVERS)
        return servers
    for index, item in enumerate(items):
        field = "rspamd_dns_servers[%d]" % index
        network = check_network(errors, field, item)
        if network is None:
            continue
        if network.num_addresses != 1:
            errors.add(field, item, "expected one address, not a network")
            continue
        address = network.network_address
        server = ("[%s]:53" if address.version == 6 else "%s:53") % address
        if server not in servers:
            servers.append(server)
    return servers


def qubemail_rspamd(settings, base, collect=False):
    """Validate the rspamd settings; see RETURN."""
    errors = Errors()
    s = settings_of(settings, RSPAMD_SETTINGS, "qubemail_rspamd")
    enabled = check_bool(errors, "rspamd_enabled", s["rspamd_enabled"])
    reject = check_int(errors, "rspamd_reject_score", s["rspamd_reject_score"], 1, MAX_SCORE, " (a score)")
    junk = check_int(errors, "rspamd_junk_score", s["rspamd_junk_score"], 1, MAX_SCORE, " (a score)")
    if reject is not None and junk is not None and junk >= reject:
        errors.add("rspamd_junk_score", s["rspamd_junk_score"],
                   "must be below rspamd_reject_score (%d): above it mail is refused, not filed in Junk" % reject)
    greylisting = check_bool(errors, "rspamd_greylisting", s["rspamd_greylisting"])
    test_patterns = check_bool(errors, "rspamd_test_patterns", s["rspamd_test_patterns"])
    refuse_forged_from = check_bool(errors, "rspamd_refuse_forged_from", s["rspamd_refuse_forged_from"])
    list_from_rewrite = check_bool(errors, "rspamd_list_from_rewrite", s["rspamd_list_from_rewrite"])
    dns_servers = _dns_servers(errors, s["rspamd_dns_servers"])
    grant_lookup = _path(errors, "rspamd_grant_lookup", s["rspamd_grant_lookup"],
                         "a unix socket, e.g. /run/pop-before-smtp/grants.sock")
    list_names = _path(errors, "rspamd_list_names", s["rspamd_list_names"],
                       "a file, e.g. /var/lib/qubemail/lists-aliases/names")
    selector = s["rspamd_dkim_selector"]
    if is_blank(selector) or not isinstance(selector, str) or not DNS_LABEL_RE.match(selector):
        errors.add("rspamd_dkim_selector", selector,
                   "expected a DNS label: lower-case letters, digits and '-', e.g. 'mail' or 'qube2026'")
        selector = None
    relay = check_networks(Errors(), "mta_relay_allowed_networks", s["mta_relay_allowed_networks"])
    if errors.items:
        return errors.result(None, collect)
    local_addrs = list(LOOPBACK)
    for network in relay:
        if str(network) not in local_addrs:
            local_addrs.append(str(network))
    return errors.result({
        "enabled": enabled, "reject_score": reject, "junk_score": junk, "greylisting": greylisting,
        "test_patterns": test_patterns, "dkim_selector": selector, "local_addrs": local_addrs,
        "dkim_dir": DKIM_KEY_DIR, "grant_lookup": grant_lookup, "refuse_forged_from": refuse_forged_from,
        "own_domains": base["mail_names"], "list_from_rewrite": list_from_rewrite, "dns_servers": dns_servers,
        "list_names": list_names,
        "domains": [{"name": domain, "key": "%s/%s.%s.key" % (DKIM_KEY_DIR, domain, selector),
                     "record": "%s/%s.%s.txt" % (DKIM_KEY_DIR, domain, selector)} for domain in base["domains"]],
    }, collect)


class FilterModule:
    """The qubemail_rspamd filter."""

    def filters(self):
        return {"qubemail_rspamd": qubemail_rspamd}
