"""The qubemail_dns filter: report addresses, the host's zone, and bad input."""

from __future__ import annotations

import pytest

from conftest import load_filter, role_defaults
from test_filter_qubemail import base_ok, error_lines

dns = load_filter("qubemail_dns")


def settings(**changes):
    values = {name: value for name, value in role_defaults().items() if name in dns.DNS_SETTINGS}
    values.update(changes)
    return values


def test_the_defaults_quarantine_and_report_to_each_domains_postmaster():
    config = dns.qubemail_dns(settings(), base_ok())
    assert config["ttl"] == 3600 and config["addresses"] == []
    assert config["domains"] == [
        {"name": "example.com", "dmarc": "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com",
         "tlsrpt": "v=TLSRPTv1; rua=mailto:postmaster@example.com"},
        {"name": "example.org", "dmarc": "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org",
         "tlsrpt": "v=TLSRPTv1; rua=mailto:postmaster@example.org"},
    ]
    # mail.example.com's A/AAAA go into example.com's zone.
    assert config["host_zone"] == "example.com"


def test_one_report_address_and_the_public_addresses_given():
    config = dns.qubemail_dns(settings(dns_dmarc_policy="Reject", dns_report_address="dmarc@example.net",
                                       dns_host_addresses=["203.0.113.7", "2001:DB8::25", "203.0.113.7"]),
                              base_ok())
    assert config["domains"][1]["dmarc"] == "v=DMARC1; p=reject; rua=mailto:dmarc@example.net"
    assert config["addresses"] == ["203.0.113.7", "2001:db8::25"]


def test_mta_sts_is_published_where_webmail_serves_https_on_443():
    config = dns.qubemail_dns(settings(webmail_enabled=True, webmail_https_port=443), base_ok())["mta_sts"]
    assert config["served"] is True and config["why"] == "" and config["mode"] == "testing"
    assert config["policy"] == "version: STSv1\nmode: testing\nmx: mail.example.com\nmax_age: 604800\n"
    assert config["path"] == "/var/lib/qubemail/mta-sts/.well-known/mta-sts.txt"
    # The id follows the policy: the same policy, the same id; another mode, another id.
    again = dns.qubemail_dns(settings(webmail_enabled=True, webmail_https_port=443), base_ok())["mta_sts"]
    enforce = dns.qubemail_dns(settings(webmail_enabled=True, webmail_https_port=443, dns_mta_sts_mode="enforce"),
                               base_ok())["mta_sts"]
    assert again["id"] == config["id"] != enforce["id"] and len(config["id"]) == 16 and config["id"].isalnum()
    assert "mode: enforce" in enforce["policy"]


@pytest.mark.parametrize("changes, why", [
    ({"webmail_enabled": False}, "its policy is served by WebMail's Apache (webmail_enabled is false)"),
    ({"webmail_enabled": True, "webmail_https_port": 8443}, "its policy must be served on port 443 "
                                                           "(webmail_https_port is 8443)"),
    ({"webmail_enabled": True, "webmail_https_port": 443, "dns_mta_sts_mode": "none"}, "dns_mta_sts_mode is none"),
])
def test_mta_sts_is_not_published_and_the_zone_says_why(changes, why):
    config = dns.qubemail_dns(settings(**changes), base_ok())["mta_sts"]
    assert config["served"] is False and config["why"] == why


@pytest.mark.parametrize("changes, line", [
    ({"dns_dmarc_policy": "block"}, "dns_dmarc_policy = 'block': expected one of 'none', 'quarantine', 'reject'"),
    ({"dns_report_address": "postmaster"}, "dns_report_address = 'postmaster': expected an e-mail address "
                                           "local@domain"),
    ({"dns_host_addresses": ["127.0.0.1"]}, "dns_host_addresses[0] = '127.0.0.1': is not an address other hosts "
                                            "reach this host at"),
    ({"dns_host_addresses": ["mail.example.com"]}, "dns_host_addresses[0] = 'mail.example.com': expected an IPv4 "
                                                   "or IPv6 address"),
    ({"dns_ttl": 5}, "dns_ttl = 5: expected an integer from 60 to 86400 (seconds)"),
    ({"dns_mta_sts_mode": "strict"}, "dns_mta_sts_mode = 'strict': expected one of 'none', 'testing', 'enforce'"),
])
def test_bad_input_names_the_field(changes, line):
    assert error_lines(dns.qubemail_dns, settings(**changes), base_ok()) == [line]
