#!/usr/bin/python
# -*- coding: utf-8 -*-
"""The qubemail_dns_check module: is each record of the zone snippets published?"""

from __future__ import annotations

DOCUMENTATION = r"""
module: qubemail_dns_check
short_description: Compare the records the play wrote for the admin with what DNS answers
description:
  - Parses each zone snippet (roles/dns, C(/var/lib/qubemail/dns/DOMAIN.zone)) as a DNS server would load it
    and asks DNS for every name and type in it; each record is V(present), V(missing) (DNS has no record of
    that name and type, or not this one) or V(different) (DNS has records of that name and type, not this one).
  - Runs on the controller (dnspython, requirements-controller.txt). Only reads; never changes anything.
options:
  zones:
    description: The snippets, the text of each zone file by its domain.
    type: dict
    required: true
  server:
    description: A DNS server's address to ask (the domain's own, say); empty asks the controller's resolvers.
    type: str
    default: ""
  timeout:
    description: Seconds to wait for each answer (1 to 30).
    type: int
    default: 5
author: qubemail project
"""

RETURN = r"""
records:
  description: One dict per record, in the snippets' order, with C(name), C(type), C(value) (as the zone says it),
    C(state) (V(present), V(missing) or V(different)) and C(found) (what DNS answered for that name and type).
  type: list
  returned: always
missing:
  description: How many records are not V(present).
  type: int
  returned: always
lines:
  description: A line per record for people, C(STATE TYPE NAME VALUE), with what DNS has where it differs.
  type: list
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import dns.exception
    import dns.rdatatype
    import dns.resolver
    import dns.zone
except ImportError:  # pragma: no cover - reported by the module
    dns = None

#: Record types a snippet holds; anything else in it is left alone.
CHECKED = ("MX", "A", "AAAA", "TXT", "SRV", "CNAME")
#: The most records one run asks about (a snippet has about a dozen per domain).
MAX_RECORDS = 2000


def _answers(resolver, name, rdtype):
    """The rdata texts DNS gives for name/type: a set, empty when there are none; None when DNS did not answer."""
    try:
        return {rdata.to_text() for rdata in resolver.resolve(name, rdtype, raise_on_no_answer=False)}
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return set()
    except (dns.resolver.NoNameservers, dns.exception.Timeout):  # LifetimeTimeout is a Timeout
        return None


def _normal(rdtype, text):
    """A TXT value's strings joined (providers split long ones differently); other types as they are."""
    if rdtype == "TXT":
        return "".join(part.strip('"') for part in text.split('" "'))
    return text.lower()


def check(zones, resolver):
    """The records of `zones` with their state (see RETURN)."""
    out = []
    for domain, text in sorted(zones.items()):
        origin = str(domain).rstrip(".") + "."
        parsed = dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False)
        for name, rdataset in parsed.iterate_rdatasets():
            rdtype = dns.rdatatype.to_text(rdataset.rdtype)
            if rdtype not in CHECKED:
                continue
            found = _answers(resolver, name, rdataset.rdtype)
            normal = {_normal(rdtype, answer) for answer in found or ()}
            for rdata in rdataset:
                value = rdata.to_text()
                if found is None:  # no server answered: nothing is known to be published
                    state = "missing"
                elif _normal(rdtype, value) in normal:
                    state = "present"
                else:
                    state = "different" if found else "missing"
                out.append({"name": str(name), "type": rdtype, "value": value, "state": state,
                            "found": sorted(found) if found is not None else ["(no answer from DNS)"]})
                if len(out) > MAX_RECORDS:
                    raise ValueError("more than %d records in the zone snippets" % MAX_RECORDS)
    return out


def _short(text, limit=70):
    return text if len(text) <= limit else text[:limit - 3] + "..."


def lines(records):
    """A line per record (see RETURN)."""
    out = []
    for record in records:
        line = "%-9s %-5s %s %s" % (record["state"], record["type"], record["name"], _short(record["value"]))
        if record["state"] != "present":
            line += "  (DNS: %s)" % (", ".join(_short(found) for found in record["found"]) or "nothing")
        out.append(line)
    return out


def main():
    module = AnsibleModule(
        argument_spec={"zones": {"type": "dict", "required": True},
                       "server": {"type": "str", "default": ""},
                       "timeout": {"type": "int", "default": 5}},
        supports_check_mode=True,
    )
    if dns is None:
        module.fail_json(msg=missing_required_lib("dnspython (requirements-controller.txt)"))
    params = module.params
    if not 1 <= params["timeout"] <= 30:
        module.fail_json(msg="timeout = %r: expected seconds from 1 to 30" % params["timeout"])
    resolver = dns.resolver.Resolver(configure=not params["server"])
    if params["server"]:
        resolver.nameservers = [params["server"]]
    resolver.timeout = resolver.lifetime = params["timeout"]
    try:
        records = check(params["zones"], resolver)
    except (ValueError, dns.exception.DNSException) as error:
        module.fail_json(msg="qubemail_dns_check: %s" % error)
    module.exit_json(changed=False, records=records, lines=lines(records),
                     missing=sum(1 for record in records if record["state"] != "present"))


if __name__ == "__main__":
    main()
