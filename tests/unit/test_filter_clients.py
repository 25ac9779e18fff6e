"""qubemail_clients: the services autoconfig, Autodiscover and the SRV records
point clients to, from the pop and mta roles' checked settings."""

import pytest
from ansible.errors import AnsibleFilterError

from conftest import load_filter, role_defaults
from test_filter_pop import DOVECOT_24
from test_filter_qubemail import base_ok

qc = load_filter("qubemail_clients")
qm = load_filter("qubemail_mta")
qp = load_filter("qubemail_pop")
DEFAULTS = role_defaults()


def clients(**settings):
    values = {**DEFAULTS, **settings}
    config = {"mta": qm.qubemail_mta(values, base_ok()),
              "pop": qp.qubemail_pop(values, base_ok(), "mail.example.com", DOVECOT_24)}
    return qc.qubemail_clients(config, base_ok())


def ports(servers):
    return [(s["type"], s["port"], s["socket"]) for s in servers]


def test_the_defaults_point_to_implicit_tls_first():
    config = clients()
    assert config["hostname"] == "mail.example.com"
    assert config["domains"] == ["example.com", "example.org"]
    assert ports(config["incoming"]) == [("imap", 993, "SSL"), ("pop3", 995, "SSL")]
    assert ports(config["outgoing"]) == [("smtp", 465, "SSL"), ("smtp", 587, "STARTTLS")]


def test_srv_records_per_domain_say_what_is_offered_and_refuse_cleartext():
    srv = clients(pop_pop3_enabled=False, mta_submission_enabled=False)["srv"]
    assert "_submissions._tcp.example.com. 3600 IN SRV 0 1 465 mail.example.com." in srv
    assert "_imaps._tcp.example.org. 3600 IN SRV 0 1 993 mail.example.com." in srv
    # Off, or started in the clear: "decidedly not available" (RFC 6186 3.4).
    for name in ("_submission", "_pop3s", "_imap", "_pop3"):
        assert f"{name}._tcp.example.com. 3600 IN SRV 0 0 0 ." in srv
    assert len(srv) == 2 * 6


def test_submission_on_587_comes_after_465():
    srv = clients()["srv"]
    assert "_submission._tcp.example.com. 3600 IN SRV 1 1 587 mail.example.com." in srv


@pytest.mark.parametrize("settings, incoming, outgoing", [
    ({"pop_imap_enabled": False, "webmail_enabled": True, "pop_imap_loopback": True},
     [("pop3", 995, "SSL")], [("smtp", 465, "SSL"), ("smtp", 587, "STARTTLS")]),
    ({"pop_pop3_enabled": False}, [("imap", 993, "SSL")], [("smtp", 465, "SSL"), ("smtp", 587, "STARTTLS")]),
    ({"mta_submission_enabled": False, "mta_submissions_enabled": False},
     [("imap", 993, "SSL"), ("pop3", 995, "SSL")], []),
])
def test_services_off_for_the_network_are_not_offered(settings, incoming, outgoing):
    config = clients(**settings)
    assert ports(config["incoming"]) == incoming
    assert ports(config["outgoing"]) == outgoing


def test_anything_but_the_checked_settings_is_a_clear_error():
    with pytest.raises(AnsibleFilterError, match="qubemail_clients: expected qubemail_config"):
        qc.qubemail_clients({"mta": {}}, base_ok())
