# -*- coding: utf-8 -*-
"""The qubemail_dns filter: settings of the dns role, checked."""

from __future__ import annotations

import hashlib
import ipaddress

from ansible_collections.qubemail.appliance.plugins.plugin_utils.checks import (
    Errors,
    check_address,
    check_choice,
    check_int,
    check_list,
    is_blank,
    MTA_STS_MODES,
    mta_sts_served,
    settings_of,
)

DOCUMENTATION = r"""
name: qubemail_dns
short_description: Settings of the dns role, checked, and the values its zone snippets print
version_added: 1.0.0
author: qubemail project
extends_documentation_fragment:
  - qubemail.appliance.validation
description:
  - Checks the C(dns_*) variables (roles/dns/meta/argument_specs.yml) and works out, for each domain of the base,
    the DMARC and TLS-RPT records (reports to C(dns_report_address), else postmaster at the domain).
options:
  _input:
    description: Every variable of the dns role.
    type: dict
    required: true
  base:
    description: The output of P(qubemail.appliance.qubemail_base#filter) (host name and domains).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: dns settings
  ansible.builtin.set_fact:
    dns_config: "{{ qubemail_settings | qubemail_dns(qubemail_base) }}"
"""

RETURN = r"""
_value:
  description:
    - "A dict with C(ttl) (int), C(addresses) (the given IPv4 and IPv6 addresses, normalised; empty: the host's
      own), C(hostname), C(host_zone) (the domain whose zone holds the host's name, or V('')) and C(domains): a
      list of dicts with C(name), C(dmarc) and C(tlsrpt) (the TXT values)."
    - "C(mta_sts): C(mode), C(served) (bool), C(why) (why it is not), C(policy) (the policy file's text),
      C(id) (a digest of it: it changes when the policy does), C(dir) (WebMail's document root for
      C(mta-sts.DOMAIN)) and C(path) (the policy file)."
    - With O(collect), C({config, errors}) as P(qubemail_base#filter) documents.
  type: dict
"""

#: The variables qubemail_dns reads (defaults: roles/dns/meta/argument_specs.yml).
DNS_SETTINGS = ("dns_dmarc_policy", "dns_report_address", "dns_host_addresses", "dns_ttl", "dns_mta_sts_mode",
                "webmail_enabled", "webmail_https_port")
POLICIES = ("none", "quarantine", "reject")
#: Where the MTA-STS policy is kept; WebMail serves this directory as https://mta-sts.DOMAIN/.
MTA_STS_DIR = "/var/lib/qubemail/mta-sts"
#: How long senders keep the policy (RFC 8461 section 3.2): a week.
MTA_STS_MAX_AGE = 604800
#: An IPv4 and an IPv6 address, or a few of each.
MAX_ADDRESSES = 8


def _addresses(errors, value):
    addresses = []
    items = check_list(errors, "dns_host_addresses", value)
    if len(items) > MAX_ADDRESSES:
        errors.add("dns_host_addresses", value, "has %d entries; at most %d" % (len(items), MAX_ADDRESSES))
        return []
    for index, item in enumerate(items):
        try:
            address = ipaddress.ip_address(item.strip() if isinstance(item, str) else item)
        except ValueError:
            errors.add("dns_host_addresses[%d]" % index, item, "expected an IPv4 or IPv6 address")
            continue
        if address.is_loopback or address.is_unspecified or address.is_link_local or address.is_multicast:
            errors.add("dns_host_addresses[%d]" % index, item,
                       "is not an address other hosts reach this host at")
        elif str(address) not in addresses:
            addresses.append(str(address))
    return addresses


def qubemail_dns(settings, base, collect=False):
    """Validate the dns settings; see RETURN."""
    errors = Errors()
    s = settings_of(settings, DNS_SETTINGS, "qubemail_dns")
    policy = check_choice(errors, "dns_dmarc_policy", s["dns_dmarc_policy"], POLICIES)
    report = None if is_blank(s["dns_report_address"]) else check_address(
        errors, "dns_report_address", s["dns_report_address"])
    addresses = _addresses(errors, s["dns_host_addresses"])
    ttl = check_int(errors, "dns_ttl", s["dns_ttl"], 60, 86400, " (seconds)")
    mode = check_choice(errors, "dns_mta_sts_mode", s["dns_mta_sts_mode"], MTA_STS_MODES)
    if errors.items:
        return errors.result(None, collect)
    domains = []
    for domain in base["domains"]:
        rua = "mailto:%s" % (report or "postmaster@" + domain)
        domains.append({"name": domain, "dmarc": "v=DMARC1; p=%s; rua=%s" % (policy, rua),
                        "tlsrpt": "v=TLSRPTv1; rua=%s" % rua})
    # The host's A/AAAA go into the zone its name belongs to (the longest of
    # our domains it ends in), if it is one of ours.
    hostname = base["hostname"]
    zones = [d for d in base["domains"] if hostname.endswith("." + d)]
    policy = "version: STSv1\nmode: %s\nmx: %s\nmax_age: %d\n" % (mode, hostname, MTA_STS_MAX_AGE)
    why = mta_sts_served(s)
    mta_sts = {"mode": mode, "served": why is None, "why": why or "", "policy": policy,
               "id": hashlib.sha256(policy.encode()).hexdigest()[:16], "dir": MTA_STS_DIR,
               "path": MTA_STS_DIR + "/.well-known/mta-sts.txt"}
    return errors.result({"ttl": ttl, "addresses": addresses, "hostname": hostname, "domains": domains,
                          "host_zone": max(zones, key=len) if zones else "", "mta_sts": mta_sts}, collect)


class FilterModule:
    """The qubemail_dns filter."""

    def filters(self):
        return {"qubemail_dns": qubemail_dns}
