"""qubemail_pop (Dovecot's settings derived) and the escape hatches of the
mta and pop roles, whose refused names must follow the templates."""

import hashlib
import re

import pytest

from conftest import ROOT, load_filter, role_defaults
from test_filter_qubemail import SHA512, base_ok, error_lines

qp = load_filter("qubemail_pop")
qm = load_filter("qubemail_mta")
DEFAULTS = role_defaults()


def pop(host="mail.example.com", **settings):
    return qp.qubemail_pop({**DEFAULTS, **settings}, base_ok(), host)


def template_keys(*paths):
    keys = set()
    for path in paths:
        keys |= set(re.findall(r"^([a-z][a-z0-9_]*) *=", (ROOT / path).read_text(), re.M))
    return keys


def test_main_cf_owned_names_are_exactly_the_templates_parameters():
    assert qm.MAIN_CF_OWNED == template_keys("roles/mta/templates/main.cf.j2")


def test_dovecot_owned_names_are_exactly_the_templates_top_level_settings():
    top_level = template_keys("roles/pop/templates/dovecot.conf.j2",
                              "roles/pop_before_smtp/templates/dovecot-auth-policy.conf.j2",
                              "roles/lists/templates/dovecot-lists.conf.j2")
    # pop3_uidl_format is set inside "protocol pop3 {}": refused as well, so
    # that no override changes the UIDLs (clients would fetch everything again).
    assert qp.DOVECOT_OWNED == top_level | {"pop3_uidl_format"}


def test_protocols_and_the_loopback_imap_listener_follow_the_toggles():
    assert pop()["protocols"] == ["pop3", "imap"]
    assert pop(pop_imap_enabled=False)["protocols"] == ["pop3"]
    only_local = pop(pop_imap_enabled=False, pop_imap_loopback=True)
    assert only_local["protocols"] == ["pop3", "imap"] and only_local["imap_local"]
    assert pop(pop_pop3_enabled="no", pop_imap_enabled="false")["protocols"] == []
    assert pop()["ssl"] == "yes" and pop(pop_plaintext_auth_from_loopback=False)["ssl"] == "required"


def test_a_plain_password_gets_a_salt_from_host_and_user_a_hash_none():
    users = {user["name"]: user for user in pop()["users"]}
    assert users["bob"]["salt"] == hashlib.sha256(b"mail.example.com:bob").hexdigest()[:16]
    assert pop(host="other")["users"] != pop()["users"]
    assert users["alice"]["salt"] is None and users["alice"]["password_hash"] == SHA512
    assert users["bob"]["logins"] == ["bob", "bob@example.com", "bob@example.org"]


def test_dovecot_extra_settings_are_rendered_sorted_and_owned_ones_refused():
    assert pop(pop_dovecot_conf_extra={"mail_max_userip_connections": 20, "verbose_proctitle": True})[
        "dovecot_conf_extra"] == [["mail_max_userip_connections", "20"], ["verbose_proctitle", "yes"]]
    lines = error_lines(qp.qubemail_pop, {**DEFAULTS, "pop_dovecot_conf_extra": {
        "login_trusted_networks": "0.0.0.0/0", "mail_plugins": "", "Bad Name": 1, "ok_name": "two\nlines"}},
        base_ok(), "mail.example.com")
    assert lines == [
        "pop_dovecot_conf_extra['Bad Name'] = 'Bad Name': expected a dovecot.conf setting name matching "
        "^[a-z][a-z0-9_]*$",
        "pop_dovecot_conf_extra['login_trusted_networks'] = 'login_trusted_networks': is set by the role itself; "
        "use the role's variable for it (see its README) instead of overriding dovecot.conf",
        "pop_dovecot_conf_extra['mail_plugins'] = 'mail_plugins': is set by the role itself; use the role's "
        "variable for it (see its README) instead of overriding dovecot.conf",
        "pop_dovecot_conf_extra['ok_name'] = 'two\\nlines': expected one line of at most 1000 characters, "
        "without control characters",
    ]


@pytest.mark.parametrize("extra, fragment", [
    ({"mynetworks": "0.0.0.0/0"}, "is set by the role itself"),
    ({"smtpd_relay_restrictions": "permit"}, "is set by the role itself"),
    ({"header_size_limit": ["a"]}, "expected a string, a number or a boolean"),
])
def test_main_cf_extra_refuses_what_the_role_owns(extra, fragment):
    lines = error_lines(qm.qubemail_mta, {**DEFAULTS, "mta_main_cf_extra": extra}, base_ok())
    assert len(lines) == 1 and fragment in lines[0]


def test_main_cf_extra_passes_unowned_parameters():
    result = qm.qubemail_mta({**DEFAULTS, "mta_main_cf_extra": {"smtpd_banner_delay": 2, "strict_rfc821_envelopes": True}},
                             base_ok())
    assert result["main_cf_extra"] == [["smtpd_banner_delay", "2"], ["strict_rfc821_envelopes", "yes"]]
