# -*- coding: utf-8 -*-
"""The qubemail_clients filter: what mail clients are told about the appliance."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: qubemail_clients
short_description: The servers mail clients are pointed to (autoconfig, Autodiscover, RFC 6186 SRV records)
version_added: 1.0.0
author: qubemail project
description:
  - >-
    From the checked settings of the pop and mta roles, the services a mail client should use, each with
    TLS - IMAP on 993 and POP3 on 995 (implicit TLS, RFC 8314), submission on 465 (implicit TLS, preferred)
    and 587 (STARTTLS). A service that is off for the network is left out.
  - >-
    The RFC 6186 SRV records that say the same in DNS, per domain; the services started in the clear
    (C(_imap), C(_pop3)) and those that are off are published as not offered (target C(.)), so that
    clients use TLS from the first byte.
options:
  _input:
    description: qubemail_config (roles/qubemail/tasks/validate.yml), with the keys C(pop) and C(mta).
    type: dict
    required: true
  base:
    description: The output of P(qubemail_base#filter) (host name and domains).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Where clients are pointed to
  ansible.builtin.set_fact:
    webmail_clients: "{{ qubemail_config | qubemail_clients(qubemail_base) }}"
"""

RETURN = r"""
_value:
  description:
    - "A dict with C(hostname), C(domains) (the primary first), C(incoming) and C(outgoing) (lists of dicts with
      C(type) (V(imap), V(pop3), V(smtp)), C(port) and C(socket) (V(SSL) or V(STARTTLS)), the preferred first)
      and C(srv) (the SRV records, one zone-file line each)."
  type: dict
"""

#: RFC 6186 / RFC 8314 service names: (SRV service, type, port, socket).
SERVICES = (
    ("_submissions", "smtp", 465, "SSL"),
    ("_submission", "smtp", 587, "STARTTLS"),
    ("_imaps", "imap", 993, "SSL"),
    ("_pop3s", "pop3", 995, "SSL"),
)
#: Started in the clear: clients are told to use the TLS service instead.
CLEARTEXT = ("_imap", "_pop3")
#: The records' TTL, in seconds.
SRV_TTL = 3600


def qubemail_clients(config, base):
    """The services clients are pointed to, and the SRV records that say so."""
    try:
        pop, mta = config["pop"], config["mta"]
        public_smtp = {s["name"] for s in mta["submission_services"] if not s["listen"].startswith("127.0.0.1:")}
        offered = {
            "_submissions": "submissions" in public_smtp,
            "_submission": "submission" in public_smtp,
            "_imaps": "imap" in pop["protocols"] and not pop["imap_local"],
            "_pop3s": "pop3" in pop["protocols"],
        }
        hostname, domains = base["hostname"], [base["primary_domain"]] + sorted(
            set(base["domains"]) - {base["primary_domain"]})
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError("qubemail_clients: expected qubemail_config and the output of qubemail_base (%s)"
                                 % exc)
    servers = [{"type": kind, "port": port, "socket": socket}
               for name, kind, port, socket in SERVICES if offered[name]]
    srv = []
    for domain in domains:
        for name, _kind, port, _socket in SERVICES:
            # Priority: implicit TLS before STARTTLS (RFC 8314 section 5.1).
            target = ("%d 1 %d %s." % (name == "_submission", port, hostname)) if offered[name] else "0 0 0 ."
            srv.append("%s._tcp.%s. %d IN SRV %s" % (name, domain, SRV_TTL, target))
        srv += ["%s._tcp.%s. %d IN SRV 0 0 0 ." % (name, domain, SRV_TTL) for name in CLEARTEXT]
    return {
        "hostname": hostname,
        "domains": domains,
        "incoming": [s for s in servers if s["type"] != "smtp"],
        "outgoing": [s for s in servers if s["type"] == "smtp"],
        "srv": srv,
    }


class FilterModule:
    """The qubemail_clients filter."""

    def filters(self):
        return {"qubemail_clients": qubemail_clients}
