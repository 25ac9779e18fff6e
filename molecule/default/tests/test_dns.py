"""The DNS records the play writes for the admin (roles/dns), read by a real
zone parser (python3-dnspython, on the client) as a DNS server would load
them; the DKIM record in them verifies what the appliance signs."""

import json
import shlex

import pytest

from conftest import APPLIANCE_IP, EXTERNAL, sink_file, sink_subjects, unique_subject, verify_dkim, wait_for

ZONES = "/var/lib/qubemail/dns"
HOST = "mail.qube.test"

# Runs on the client: the zone text on stdin, its origin in argv; prints
# every record as [name, type, text].
PARSE = r"""
import dns.zone, json, sys
zone = dns.zone.from_text(sys.stdin.read(), origin=sys.argv[1], relativize=False, check_origin=False)
print(json.dumps([[str(name), dns.rdatatype.to_text(rdataset.rdtype), rdata.to_text()]
                  for name, rdataset in zone.iterate_rdatasets() for rdata in rdataset]))
"""


def records(appliance, client, domain):
    text = appliance.check_output(f"cat {ZONES}/{domain}.zone")
    script = f"python3 -c {shlex.quote(PARSE)} {domain}. <<'ZONE'\n{text}\nZONE"
    return json.loads(client.check_output(script))


def txt(value):
    """A TXT record's text as DNS gives it: its strings joined."""
    return "".join(part.strip('"') for part in value.split('" "'))


def of(found, name, kind):
    return [value for n, t, value in found if n == name and t == kind]


@pytest.mark.parametrize("domain", ["qube.test", "qube-alias.test"])
def test_each_domain_has_mx_spf_dmarc_tlsrpt_and_srv(appliance, client, domain):
    found = records(appliance, client, domain)
    assert of(found, f"{domain}.", "MX") == [f"10 {HOST}."]
    assert [txt(v) for v in of(found, f"{domain}.", "TXT")] == ["v=spf1 mx -all"]
    assert [txt(v) for v in of(found, f"_dmarc.{domain}.", "TXT")] == [
        f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"]
    assert [txt(v) for v in of(found, f"_smtp._tls.{domain}.", "TXT")] == [
        f"v=TLSRPTv1; rua=mailto:postmaster@{domain}"]
    assert of(found, f"_submissions._tcp.{domain}.", "SRV") == [f"0 1 465 {HOST}."]
    assert of(found, f"_imap._tcp.{domain}.", "SRV") == ["0 0 0 ."]


def test_the_hosts_address_is_in_its_own_domains_zone_only(appliance, client):
    assert of(records(appliance, client, "qube.test"), f"{HOST}.", "A") == [APPLIANCE_IP]
    assert not [r for r in records(appliance, client, "qube-alias.test") if r[0] == f"{HOST}."]


def test_the_published_dkim_record_verifies_what_the_appliance_signs(appliance, client, probe):
    record = txt(of(records(appliance, client, "qube.test"), "mail._domainkey.qube.test.", "TXT")[0])
    assert record.startswith("v=DKIM1; k=rsa; p=")
    subject = unique_subject("dns dkim")
    assert probe.send(EXTERNAL, login="carol", mail_from="carol@qube.test", subject=subject)["data"][0] == 250
    assert wait_for(lambda: subject in sink_subjects(client), timeout=30)
    assert verify_dkim(client, sink_file(client, subject), record).strip() == "True"
