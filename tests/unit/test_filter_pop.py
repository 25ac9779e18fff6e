"""qubemail_pop (Dovecot's settings derived) and the escape hatches of the
mta and pop roles, whose refused names must follow the templates."""

import hashlib
import re

import jinja2
import pytest

from conftest import ROOT, load_filter, role_defaults
from test_filter_qubemail import SHA512, base_ok, error_lines

qp = load_filter("qubemail_pop")
qm = load_filter("qubemail_mta")
DEFAULTS = role_defaults()


#: Dovecot as dpkg names it on Debian 12 and 13.
DOVECOT_23 = "1:2.3.19.1+dfsg1-2.1+deb12u6"
DOVECOT_24 = "1:2.4.1+dfsg1-6+deb13u7"
#: The Dovecot templates (the pop role's and those of the roles that add files to qubemail.d).
DOVECOT_TEMPLATES = ("roles/pop/templates/dovecot.conf.j2",
                     "roles/pop_before_smtp/templates/dovecot-auth-policy.conf.j2",
                     "roles/lists/templates/dovecot-lists.conf.j2")


def pop(host="mail.example.com", dovecot=DOVECOT_24, **settings):
    return qp.qubemail_pop({**DEFAULTS, **settings}, base_ok(), host, dovecot)


def template_keys(*paths):
    keys = set()
    for path in paths:
        keys |= set(re.findall(r"^([a-z][a-z0-9_]*) *=", (ROOT / path).read_text(), re.M))
    return keys


def render(path, dovecot=DOVECOT_24, **settings):
    """A Dovecot template rendered as Ansible would (trim_blocks), with the
    filter's result for *dovecot* and the roles' defaults."""
    config = pop(dovecot=dovecot, **settings)
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string((ROOT / path).read_text()).render(
        DEFAULTS, ansible_managed="managed", pop_config=config, lists_dovecot=config["dovecot"],
        pop_before_smtp_dovecot=config["dovecot"], pop_before_smtp_config={"report_listen": "127.0.0.1:10032"},
        qubemail_base=base_ok(), qubemail_tls_ciphers=["ECDHE-RSA-AES128-GCM-SHA256"])


def rendered_keys(dovecot):
    """The top-level settings the Dovecot templates write for *dovecot*."""
    return {key for path in DOVECOT_TEMPLATES
            for key in re.findall(r"^([a-z][a-z0-9_]*) *=", render(path, dovecot), re.M)}


def test_main_cf_owned_names_are_exactly_the_templates_parameters():
    assert qm.MAIN_CF_OWNED == template_keys("roles/mta/templates/main.cf.j2")


def test_dovecot_owned_names_are_exactly_the_templates_top_level_settings():
    # Both releases' names: an inventory written for one stays valid on the other.
    top_level = rendered_keys(DOVECOT_23) | rendered_keys(DOVECOT_24)
    # pop3_uidl_format is set inside "protocol pop3 {}": refused as well, so
    # that no override changes the UIDLs (clients would fetch everything again).
    assert qp.DOVECOT_OWNED == top_level | {"pop3_uidl_format"}


@pytest.mark.parametrize("version, release", [
    (DOVECOT_23, (2, 3)), ("2.3.21", (2, 3)), (DOVECOT_24, (2, 4)), ("2.4.2", (2, 4)), ("2.5.0", (2, 4)),
    # Not known yet (nothing installed, apt knows no candidate): the newest.
    (None, (2, 4)), ("", (2, 4)),
])
def test_the_dovecot_release_is_read_from_the_package_version(version, release):
    assert qp.dovecot_release(version) == release
    assert pop(dovecot=version)["dovecot"]["version"] == list(release)


@pytest.mark.parametrize("installed, candidate, upgrade", [
    # Half-way from Debian 12 to 13: apt's sources say trixie, Dovecot is still 2.3.
    (DOVECOT_23, DOVECOT_24, ["2.3", "2.4"]),
    (DOVECOT_23, "1:2.3.19.1+dfsg1-2.1+deb12u7", []),  # a point release: nothing to say
    (DOVECOT_24, DOVECOT_24, []), (DOVECOT_24, DOVECOT_23, []),  # never a downgrade
    (DOVECOT_23, None, []), (DOVECOT_23, "", []), ("", DOVECOT_24, []),  # not installed or no candidate
])
def test_a_pending_dovecot_upgrade_is_named(installed, candidate, upgrade):
    config = qp.qubemail_pop({**DEFAULTS}, base_ok(), "mail.example.com", installed or candidate,
                             dovecot_candidate=candidate)
    assert config["dovecot"]["upgrade"] == upgrade


@pytest.mark.parametrize("version", ["1:2.2.36-1", "3.0.0", "dovecot", 24])
def test_a_dovecot_the_roles_cannot_configure_stops_the_filter(version):
    with pytest.raises(qp.AnsibleFilterError, match="qubemail_pop: "):
        pop(dovecot=version)


def test_dovecot_23_keeps_its_own_spelling():
    conf = render("roles/pop/templates/dovecot.conf.j2", DOVECOT_23)
    assert conf.splitlines()[4] == "protocols = pop3 imap" and "dovecot_config_version" not in conf
    for line in ("mail_location = maildir:~/Maildir", "disable_plaintext_auth = yes",
                 "  args = scheme=CRYPT username_format=%u /etc/dovecot/qubemail-users",
                 "ssl_cert = </etc/qubemail/tls/cert.pem", "ssl_key = </etc/qubemail/tls/key.pem",
                 "ssl_prefer_server_ciphers = no", "  pop3_uidl_format = %08Xu%08Xv"):
        assert line in conf.splitlines(), line
    assert "    address = 127.0.0.1" in render("roles/pop/templates/dovecot.conf.j2", DOVECOT_23,
                                               pop_imap_enabled=False, pop_imap_loopback=True).splitlines()
    assert pop(dovecot=DOVECOT_23, pop_pop3_enabled=False, pop_imap_enabled=False)["dovecot"]["protocols"] == "none"
    lists = render("roles/lists/templates/dovecot-lists.conf.j2", DOVECOT_23).splitlines()
    for line in ("mail_plugins = $mail_plugins acl", "  mail_plugins = $mail_plugins imap_acl",
                 "  location = maildir:/var/lib/qubemail/lists:INDEXPVT=~/Maildir/lists-pvt",
                 "  acl = vfile:/etc/dovecot/qubemail-lists.acl", "  acl_globals_only = yes"):
        assert line in lists, line
    policy = render("roles/pop_before_smtp/templates/dovecot-auth-policy.conf.j2", DOVECOT_23).splitlines()
    assert "auth_policy_server_timeout_msecs = 2000" in policy
    assert ("auth_policy_request_attributes = login=%{requested_username} account=%{user} remote=%{rip} "
            "protocol=%s") in policy


def test_dovecot_24_gets_the_24_names_and_syntax():
    conf = render("roles/pop/templates/dovecot.conf.j2").splitlines()
    # Dovecot 2.4 refuses a configuration whose first setting is another one.
    settings = [line for line in conf if line and not line.startswith("#")]
    assert settings[:2] == ["dovecot_config_version = 2.4.0", "dovecot_storage_version = 2.4.0"]
    for line in ("mail_driver = maildir", "mail_path = ~/Maildir", "auth_allow_cleartext = no",
                 "passdb passwd-file {", "  passwd_file_path = /etc/dovecot/qubemail-users",
                 "  default_password_scheme = CRYPT", "userdb passwd {",
                 "ssl_server_cert_file = /etc/qubemail/tls/cert.pem", "ssl_server_key_file = /etc/qubemail/tls/key.pem",
                 "ssl_server_prefer_ciphers = client", "  pop3_uidl_format = %{uid | hex(8)}%{uidvalidity | hex(8)}"):
        assert line in conf, line
    names = set(rendered_keys(DOVECOT_24))
    assert not names & {"mail_location", "disable_plaintext_auth", "ssl_cert", "ssl_key", "ssl_prefer_server_ciphers",
                        "auth_policy_server_timeout_msecs", "plugin"}
    assert "    listen = 127.0.0.1" in render("roles/pop/templates/dovecot.conf.j2",
                                              pop_imap_enabled=False, pop_imap_loopback=True).splitlines()
    # No protocol: an empty list (2.4 has no "none").
    assert pop(pop_pop3_enabled=False, pop_imap_enabled=False)["dovecot"]["protocols"] == ""
    lists = render("roles/lists/templates/dovecot-lists.conf.j2")
    # mail_plugins is a boolean list: "$mail_plugins acl" would name one plugin of that name.
    assert "mail_plugins {\n  acl = yes\n}" in lists and "$mail_plugins" not in lists
    assert "protocol imap {\n  mail_plugins {\n    imap_acl = yes\n  }\n}" in lists
    for line in ("  mail_driver = maildir", "  mail_path = /var/lib/qubemail/lists",
                 "  mail_index_private_path = ~/Maildir/lists-pvt", "acl_driver = vfile",
                 "acl_global_path = /etc/dovecot/qubemail-lists.acl", "acl_globals_only = yes"):
        assert line in lists.splitlines(), line
    assert "plugin {" not in lists


def test_dovecot_24_reports_carry_only_the_four_attributes():
    policy = render("roles/pop_before_smtp/templates/dovecot-auth-policy.conf.j2")
    # A string list merges with Dovecot's defaults (pwhash, device_id, ...)
    # unless it is emptied before the entries are given.
    assert ("auth_policy_request_attributes =\nauth_policy_request_attributes {\n"
            "  login = %{requested_username}\n  account = %{user}\n  remote = %{remote_ip}\n"
            "  protocol = %{protocol}\n}\n") in policy
    assert "auth_policy {\n  http_client_request_absolute_timeout = 2s\n}" in policy
    assert "pwhash" not in policy.replace("no pwhash attribute", "")


def test_the_pop3_uidl_is_spelt_for_each_release_and_means_the_same():
    # 2.3's %08Xu%08Xv and 2.4's hex(8) both print 8 lower-case hex digits of
    # the UID, then of the UIDVALIDITY (measured on Debian 12 and 13; the
    # default scenario checks it against doveadm on the host).
    assert pop(dovecot=DOVECOT_23)["dovecot"]["pop3_uidl_format"] == "%08Xu%08Xv"
    assert pop()["dovecot"]["pop3_uidl_format"] == "%{uid | hex(8)}%{uidvalidity | hex(8)}"


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
        base_ok(), "mail.example.com", DOVECOT_24)
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
