"""The qubemail_acme filter: names, challenge, certbot's request, and bad input."""

from __future__ import annotations

import pytest

from conftest import load_filter, role_defaults
from test_filter_qubemail import base_ok, error_lines

acme = load_filter("qubemail_acme")


def settings(**changes):
    values = {name: value for name, value in role_defaults().items() if name in acme.ACME_SETTINGS}
    values.update({"acme_enabled": True, **changes})
    return values


def test_the_defaults_ask_lets_encrypt_for_the_host_and_autoconfig_names():
    config = acme.qubemail_acme(settings(), base_ok())
    assert config["enabled"] is True
    assert config["directory_url"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert config["email"] == "postmaster@example.com"
    assert config["names"] == ["mail.example.com", "autoconfig.example.com", "autoconfig.example.org",
                               "autodiscover.example.com", "autodiscover.example.org"]
    argv = config["certonly"]
    assert argv[:2] == ["certbot", "certonly"] and "--non-interactive" in argv
    assert argv[argv.index("--domains") + 1] == ",".join(config["names"])
    assert argv[argv.index("--server") + 1] == config["directory_url"]
    assert argv[argv.index("--cert-name") + 1] == "qubemail"
    assert "--reuse-key" in argv and argv[argv.index("--deploy-hook") + 1] == acme.DEPLOY_HOOK


def test_the_mta_sts_names_where_webmail_serves_the_policy():
    config = acme.qubemail_acme(settings(webmail_enabled=True, webmail_https_port=443), base_ok())
    assert {"mta-sts.example.com", "mta-sts.example.org"} <= set(config["names"])
    off = acme.qubemail_acme(settings(webmail_enabled=True, webmail_https_port=443, dns_mta_sts_mode="none"),
                             base_ok())
    assert not [name for name in off["names"] if name.startswith("mta-sts.")]


def test_webmail_on_port_80_answers_the_challenge_else_certbot_does():
    webroot = acme.qubemail_acme(settings(webmail_enabled=True), base_ok())
    assert webroot["authenticator"] == "webroot"
    assert webroot["certonly"][-5:-2] == ["--webroot", "--webroot-path", acme.WEBROOT]
    for changes in ({"webmail_enabled": False}, {"webmail_enabled": True, "webmail_http_port": 0},
                    {"webmail_enabled": True, "webmail_http_port": 8080}):
        config = acme.qubemail_acme(settings(**changes), base_ok())
        assert config["authenticator"] == "standalone", changes
        assert "--standalone" in config["certonly"] and "--webroot" not in config["certonly"]


def test_extra_names_are_lower_cased_deduplicated_and_the_host_stays_first():
    config = acme.qubemail_acme(settings(acme_autoconfig_names=False,
                                         acme_extra_names=["WWW.example.com", "mail.example.com",
                                                           "www.example.com", "a.example.org"]), base_ok())
    assert config["names"] == ["mail.example.com", "a.example.org", "www.example.com"]


def test_the_request_changes_with_what_the_ca_is_asked_and_only_then():
    first = acme.qubemail_acme(settings(), base_ok())["request"]
    assert first == acme.qubemail_acme(settings(), base_ok())["request"]
    for changes in ({"acme_extra_names": ["www.example.com"]}, {"webmail_enabled": True},
                    {"acme_directory_url": "https://acme-staging-v02.api.letsencrypt.org/directory"}):
        assert acme.qubemail_acme(settings(**changes), base_ok())["request"] != first, changes
    assert acme.qubemail_acme(settings(acme_email="admin@example.org"), base_ok())["request"] == first


def test_a_given_email_is_used():
    config = acme.qubemail_acme(settings(acme_email="Admin@Example.ORG"), base_ok())
    assert config["email"] == "Admin@example.org"
    assert config["certonly"][config["certonly"].index("--email") + 1] == "Admin@example.org"


@pytest.mark.parametrize("changes, line", [
    ({"acme_directory_url": "http://acme.example.com/dir"}, "acme_directory_url = "),
    ({"acme_directory_url": "https://acme.example.com/dir x"}, "acme_directory_url = "),
    ({"acme_directory_url": 42}, "acme_directory_url = 42"),
    ({"acme_email": "not-an-address"}, "acme_email = "),
    ({"acme_extra_names": ["ok.example.com", "bad_name"]}, "acme_extra_names[1] = "),
    ({"acme_extra_names": "www.example.com"}, "acme_extra_names = "),
    ({"acme_autoconfig_names": "maybe"}, "acme_autoconfig_names = "),
    ({"acme_enabled": "perhaps"}, "acme_enabled = "),
    ({"qubemail_tls_certificate": "-----BEGIN CERTIFICATE-----"}, "acme_enabled = True: ACME makes"),
    ({"webmail_enabled": True, "webmail_https_port": 80, "webmail_http_port": 0}, "webmail_https_port = 80"),
])
def test_bad_input_names_the_field(changes, line):
    lines = error_lines(acme.qubemail_acme, settings(**changes), base_ok())
    assert len(lines) == 1 and lines[0].startswith(line), lines


def test_too_many_names_are_refused():
    names = ["h%d.example.com" % n for n in range(100)]
    lines = error_lines(acme.qubemail_acme, settings(acme_extra_names=names), base_ok())
    assert lines == [line for line in lines if line.startswith("acme_extra_names = ")] and len(lines) == 1
    assert "at most 100" in lines[0]


def test_off_a_certificate_in_the_inventory_is_fine():
    config = acme.qubemail_acme(settings(acme_enabled=False, qubemail_tls_certificate="PEM"), base_ok())
    assert config["enabled"] is False


def test_collect_returns_the_errors_as_data():
    result = acme.qubemail_acme(settings(acme_email="x"), base_ok(), collect=True)
    assert result["config"] is None and [e["variable"] for e in result["errors"]] == ["acme_email"]


def test_a_base_that_is_not_qubemail_bases_is_a_usage_error():
    with pytest.raises(Exception, match="output of qubemail_base"):
        acme.qubemail_acme(settings(), {"hostname": "x"})
