"""playbooks/dns-check.yml against a real DNS server: the external host's NSD
serves the zone snippet the play wrote for qube.test (as the admin would
publish it); dns-check says each record is present, and names the one taken
out of the zone as missing and the one changed as different."""

import hashlib
import re
import shlex

import pytest
from conftest import APPLIANCE_IP, DOMAIN, SCENARIO
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
    assert ("present", "TXT", f"_mta-sts.{DOMAIN}.") in states, output[-3000:]
    assert ("present", "CNAME", f"mta-sts.{DOMAIN}.") in states, output[-3000:]
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


def test_the_mta_sts_policy_is_served_where_the_zone_says(appliance, client):
    # Senders fetch https://mta-sts.DOMAIN/.well-known/mta-sts.txt when the
    # TXT record's id is new to them: the id is the digest of what is served.
    get = f"curl -sk --resolve mta-sts.{DOMAIN}:443:{APPLIANCE_IP} https://mta-sts.{DOMAIN}"
    policy = client.check_output(f"{get}/.well-known/mta-sts.txt")
    assert policy.splitlines() == ["version: STSv1", "mode: testing", "mx: mail.qube.test", "max_age: 604800"]
    zone = appliance.check_output(f"cat {ZONE}")
    digest = hashlib.sha256((policy + "\n").encode()).hexdigest()[:16]
    assert f'_mta-sts IN TXT "v=STSv1; id={digest}"' in zone, zone
    assert f"mta-sts IN CNAME mail.{DOMAIN}." in zone, zone
    # That name serves nothing else: not WebMail, not the mail programs' settings.
    assert client.run(f"{get}/ -o /dev/null -w '%{{http_code}}'").stdout in ("403", "404")
    assert client.run(f"{get}/mail/config-v1.1.xml -o /dev/null -w '%{{http_code}}'").stdout == "404"
