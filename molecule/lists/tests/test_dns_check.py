"""playbooks/dns-check.yml against a real DNS server: the external host's NSD
serves the zone snippet the play wrote for qube.test (as the admin would
publish it); dns-check says each record is present, and names the one taken
out of the zone as missing and the one changed as different."""

import re
import shlex

import pytest
from conftest import DOMAIN, SCENARIO
from probe import run_site

ZONE = f"/var/lib/qubemail/dns/{DOMAIN}.zone"
NSD_ZONE = f"/etc/nsd/{DOMAIN}.zone"
NSD_CONF = "/etc/nsd/nsd.conf.d/qubemail-own.conf"
DNS_SERVER = "172.30.1.30"


def publish(external, text):
    """NSD serves `text` (a zone snippet, with the SOA and NS a provider adds) for qube.test."""
    zone = text + (f"\n{DOMAIN}. IN SOA ns.{DOMAIN}. hostmaster.{DOMAIN}. 1 3600 600 86400 60\n"
                   f"{DOMAIN}. IN NS ns.reject.example.\n")
    external.check_output(f"printf %s {shlex.quote(zone)} > {NSD_ZONE}")
    external.check_output(f"printf 'zone:\\n  name: {DOMAIN}\\n  zonefile: {NSD_ZONE}\\n' > {NSD_CONF}")
    external.check_output("systemctl restart nsd && nsd-checkconf /etc/nsd/nsd.conf")


@pytest.fixture
def published(appliance, external):
    """The appliance's snippet for qube.test, served by NSD while the test runs."""
    text = appliance.check_output(f"cat {ZONE}")
    publish(external, text)
    yield text
    external.check_output(f"rm -f {NSD_CONF} {NSD_ZONE} && systemctl restart nsd")


def dns_check():
    """The playbook's run; its report in JSON, a record a line."""
    run, _ = run_site("qubemail-lists-appliance", {"dns_check_server": DNS_SERVER}, SCENARIO / "group_vars",
                      playbook="dns-check.yml", env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"})
    return run, run.stdout + run.stderr


def test_every_published_record_is_present(published):
    run, output = dns_check()
    assert run.returncode == 0, output[-3000:]
    states = re.findall(r'"(present|missing|different) +(\w+) +(\S+)', output)
    assert ("present", "MX", f"{DOMAIN}.") in states, output[-3000:]
    assert ("present", "TXT", f"mail._domainkey.{DOMAIN}.") in states, output[-3000:]
    assert ("present", "TXT", f"_dmarc.{DOMAIN}.") in states, output[-3000:]
    assert all(state == "present" for state, _, _ in states), output[-3000:]


def test_a_record_taken_out_is_missing_and_a_changed_one_different(published, external):
    # The admin forgot the DKIM key and typed the SPF record wrong.
    text = re.sub(r"(?m)^mail\._domainkey IN TXT \([^)]*\) ;$", "", published)
    text = text.replace('"v=spf1 mx -all"', '"v=spf1 a -all"')
    assert "_domainkey IN" not in text and "v=spf1 a -all" in text
    publish(external, text)
    run, output = dns_check()
    assert run.returncode != 0, output[-3000:]
    assert re.search(rf"missing +TXT +mail\._domainkey\.{re.escape(DOMAIN)}\. ", output), output[-3000:]
    assert re.search(rf"different +TXT +{re.escape(DOMAIN)}\. .*v=spf1 mx -all.*\(DNS: .*v=spf1 a -all", output), \
        output[-3000:]
    assert re.search(rf"present +TXT +_dmarc\.{re.escape(DOMAIN)}\. ", output), output[-3000:]
    assert "2 of " in output and "records are not published" in output, output[-3000:]
