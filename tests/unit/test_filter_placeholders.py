"""qubemail_placeholders: the example's values refused."""

import pytest

from test_filter_qubemail import qf


def refused(settings):
    with pytest.raises(qf.AnsibleFilterError) as error:
        qf.qubemail_placeholders(settings)
    lines = str(error.value).splitlines()
    assert lines[0] == qf.ERROR_HEADER
    return {line.split(" = ")[0].strip(): line for line in lines[1:]}


@pytest.mark.parametrize("value", [
    "192.0.2.25", "198.51.100.0/24", "203.0.113.7", "[192.0.2.1]:587", "2001:db8::25", "2001:DB8:0:1::/64",
    "192.0.0.0/16",  # wider than, and so containing, 192.0.2.0/24
])
def test_documentation_addresses_and_networks_are_refused(value):
    assert "a documentation network" in refused({"mta_relay_allowed_networks": [value]})["mta_relay_allowed_networks[0]"]


@pytest.mark.parametrize("value", [
    "example.com", "mail.example.org", "user@example.net", "buyer@customer.example", "MAIL.EXAMPLE.COM",
    "smtp:[mx.partner.example]:25", "Alice <alice@example.com>",
])
def test_documentation_domains_are_refused(value):
    assert "reserved for documentation" in refused({"mta_catch_all": value})["mta_catch_all"]


@pytest.mark.parametrize("value", [
    "qube.test", "alice@demo.test", "192.168.10.0/24", "10.0.0.1", "198.51.101.0/24", "2001:db9::/32",
    "example", "Example Office WebMail", "examples.com", "notexample.org", "example.com.au.test", "", "1.2",
])
def test_real_and_test_values_pass(value):
    assert qf.qubemail_placeholders({"webmail_product_name": value, "mta_aliases": {"office": [value]}}) is True


def test_every_string_at_any_depth_is_checked_and_secrets_are_not_shown():
    found = refused({
        "qubemail_users": [{"name": "bob", "password": "change-me-and-vault-me"}],
        "mta_transports": {"partner.test": "smtp:[192.0.2.9]:25"},
        "qubemail_groups": [{"name": "team", "list": {"owners": ["boss@example.com"]}}],
        "pop_before_smtp_ttl": 900,
    })
    assert set(found) == {"qubemail_users[0].password", "mta_transports.partner.test",
                          "qubemail_groups[0].list.owners[0]"}
    assert "change-me" not in found["qubemail_users[0].password"]


def test_not_a_dict_is_a_usage_error():
    with pytest.raises(qf.AnsibleFilterError, match="expected a dict"):
        qf.qubemail_placeholders(["example.com"])
