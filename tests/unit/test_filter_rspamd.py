"""The qubemail_rspamd filter: thresholds, keys, the office's own addresses, and bad input."""

from __future__ import annotations

import pytest

from conftest import load_filter, role_defaults
from test_filter_qubemail import base_ok, error_lines

rspamd = load_filter("qubemail_rspamd")


def settings(**changes):
    values = {name: value for name, value in role_defaults().items() if name in rspamd.RSPAMD_SETTINGS}
    values.update(changes)
    return values


def test_the_defaults_refuse_at_15_file_junk_at_6_and_do_not_greylist():
    config = rspamd.qubemail_rspamd(settings(), base_ok())
    assert config["enabled"] is True
    assert (config["reject_score"], config["junk_score"]) == (15, 6)
    assert config["greylisting"] is False and config["test_patterns"] is False
    assert config["local_addrs"] == ["127.0.0.0/8", "::1/128"]
    assert config["grant_lookup"] == ""
    assert config["refuse_forged_from"] is True
    assert config["own_domains"] == ["example.com", "example.org", "mail.example.com"]
    assert config["list_from_rewrite"] is True
    assert config["dns_servers"] == []
    assert config["list_names"] == ""


def test_the_list_names_are_a_file():
    config = rspamd.qubemail_rspamd(settings(rspamd_list_names="/var/lib/qubemail/lists-aliases/names"), base_ok())
    assert config["list_names"] == "/var/lib/qubemail/lists-aliases/names"


def test_the_dns_servers_are_addresses_on_port_53():
    config = rspamd.qubemail_rspamd(settings(rspamd_dns_servers=["192.0.2.53", "2001:db8::53", "192.0.2.53"]),
                                    base_ok())
    assert config["dns_servers"] == ["192.0.2.53:53", "[2001:db8::53]:53"]


def test_the_grant_lookup_is_a_socket_path():
    config = rspamd.qubemail_rspamd(settings(rspamd_grant_lookup="/run/pop-before-smtp/grants.sock"), base_ok())
    assert config["grant_lookup"] == "/run/pop-before-smtp/grants.sock"


def test_each_domain_has_its_own_key_for_the_selector():
    config = rspamd.qubemail_rspamd(settings(rspamd_dkim_selector="qube2026"), base_ok())
    assert config["dkim_selector"] == "qube2026"
    assert config["dkim_dir"] == "/var/lib/qubemail/dkim"
    assert config["domains"] == [
        {"name": "example.com", "key": "/var/lib/qubemail/dkim/example.com.qube2026.key",
         "record": "/var/lib/qubemail/dkim/example.com.qube2026.txt"},
        {"name": "example.org", "key": "/var/lib/qubemail/dkim/example.org.qube2026.key",
         "record": "/var/lib/qubemail/dkim/example.org.qube2026.txt"},
    ]


def test_the_relay_allowed_networks_are_the_offices_own():
    config = rspamd.qubemail_rspamd(settings(mta_relay_allowed_networks=["192.168.1.0/24", "2001:db8::/48"]),
                                    base_ok())
    assert config["local_addrs"] == ["127.0.0.0/8", "::1/128", "192.168.1.0/24", "2001:db8::/48"]


@pytest.mark.parametrize("changes, line", [
    ({"rspamd_reject_score": 0}, "rspamd_reject_score = 0: expected an integer from 1 to 1000 (a score)"),
    ({"rspamd_junk_score": 15}, "rspamd_junk_score = 15: must be below rspamd_reject_score (15): above it mail "
                                "is refused, not filed in Junk"),
    ({"rspamd_junk_score": "x"}, "rspamd_junk_score = 'x': expected an integer from 1 to 1000 (a score), "
                                "not a string"),
    ({"rspamd_greylisting": "maybe"}, "rspamd_greylisting = 'maybe': expected a boolean (true or false)"),
    ({"rspamd_dkim_selector": "Mail_1"}, "rspamd_dkim_selector = 'Mail_1': expected a DNS label: lower-case "
                                         "letters, digits and '-', e.g. 'mail' or 'qube2026'"),
    ({"rspamd_dkim_selector": ""}, "rspamd_dkim_selector = '': expected a DNS label: lower-case "
                                   "letters, digits and '-', e.g. 'mail' or 'qube2026'"),
    ({"rspamd_refuse_forged_from": "sometimes"}, "rspamd_refuse_forged_from = 'sometimes': expected a boolean "
                                                 "(true or false)"),
    ({"rspamd_grant_lookup": "grants.sock"}, "rspamd_grant_lookup = 'grants.sock': expected the absolute path of "
                                             "a unix socket, e.g. /run/pop-before-smtp/grants.sock, or ''"),
    ({"rspamd_grant_lookup": '/run/x"; os.exit()'}, "rspamd_grant_lookup = '/run/x\"; os.exit()': expected the "
                                                  "absolute path of a unix socket, e.g. "
                                                  "/run/pop-before-smtp/grants.sock, or ''"),
    ({"rspamd_list_names": "names"}, "rspamd_list_names = 'names': expected the absolute path of a file, e.g. "
                                     "/var/lib/qubemail/lists-aliases/names, or ''"),
    ({"rspamd_list_from_rewrite": "if strict"}, "rspamd_list_from_rewrite = 'if strict': expected a boolean "
                                                "(true or false)"),
    ({"rspamd_dns_servers": "192.0.2.53"}, "rspamd_dns_servers = '192.0.2.53': expected a list of at most 8 IP "
                                           "addresses, e.g. ['192.0.2.53'], or [] for /etc/resolv.conf"),
    ({"rspamd_dns_servers": ["192.0.2.%d" % i for i in range(9)]},
     "rspamd_dns_servers = <list of 9 items>: expected a list of at most 8 IP addresses, e.g. ['192.0.2.53'], or [] for "
     "/etc/resolv.conf"),
    ({"rspamd_dns_servers": ["192.0.2.0/24"]}, "rspamd_dns_servers[0] = '192.0.2.0/24': expected one address, "
                                               "not a network"),
    ({"rspamd_dns_servers": ["dns.example"]}, "rspamd_dns_servers[0] = 'dns.example': expected an IPv4/IPv6 address "
                                              "or CIDR network such as '192.0.2.0/24' or '2001:db8::/32'"),
])
def test_bad_input_names_the_field(changes, line):
    assert error_lines(rspamd.qubemail_rspamd, settings(**changes), base_ok()) == [line]


def test_all_errors_show_at_once():
    lines = error_lines(rspamd.qubemail_rspamd, settings(rspamd_reject_score=0, rspamd_dkim_selector="a b"),
                        base_ok())
    assert [line.split(" = ")[0] for line in lines] == ["rspamd_reject_score", "rspamd_dkim_selector"]
