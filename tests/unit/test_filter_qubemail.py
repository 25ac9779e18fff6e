"""Unit tests for the filters in filter_plugins/ (one namespace, see conftest).

The plugins are loaded from their paths relative to this file, so the tests
need no Ansible configuration.  Settings given to a role's filter are the
role defaults (from the argument specs) updated with the test's values.  Every error test checks that the reported line
names the inventory field and shows the offending value.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from conftest import FILTERS, ROOT, all_filters, load_filter, role_defaults

qf = all_filters()
DEFAULTS = role_defaults()


def mta(settings, base):
    return qf.qubemail_mta({**DEFAULTS, **settings}, base)


def pop_before_smtp(settings):
    return qf.qubemail_pop_before_smtp({**DEFAULTS, **settings})


def webmail(settings):
    return qf.qubemail_webmail({**DEFAULTS, **settings})

HEADER = "qubemail: invalid inventory:"

# Real crypt(3) strings (password "secret"; the yescrypt one is a well-known sample).
SHA512 = ("$6$zvO6jKfWs/Xgb2p7$mdIcX7wqn.zy4huTXS6OioHRVk7kwkrDbG1648MreY/"
          "H9PWRG1rgb9YLzR4CVcbXGh382he9WPkH/RNBffizZ/")
SHA256 = "$5$KJ4p2zypmk4L8kVO$Q//7WfvcFogYaduzY6gdiSp6otyvJNUMpuZUpjhndyB"
YESCRYPT = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7"
BCRYPT_2B = "$2b$12$xJNPVvjfc3NDNAaOwFLkFu6M2Jeu68JOJt5gJfUuAKYMRPzg83y5K"
BCRYPT_2Y = "$2y$" + BCRYPT_2B[4:]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def error_lines(func, *args):
    """Call *func*, expect the collected error, return its problem lines."""
    with pytest.raises(AnsibleFilterError) as info:
        func(*args)
    message = info.value.message
    lines = message.split("\n")
    assert lines[0] == HEADER
    return [line.strip() for line in lines[1:]]


def assert_reported(lines, field, value, *fragments):
    """Some line starts with *field* and contains *value* and every fragment."""
    for line in lines:
        if line.startswith(field) and value in line and all(f in line for f in fragments):
            return line
    pytest.fail("no error line for %s with %s %s in:\n%s" % (field, value, fragments, "\n".join(lines)))


def users_ok():
    return [
        {"name": "bob", "password": "s3cret", "aliases": ["Sales", "info", "sales"]},
        {"name": "alice", "full_name": "Alice Liddell", "password_hash": SHA512,
         "aliases": ["Alice.L", "a+b"]},
        {"name": "carol", "password_hash": YESCRYPT},
    ]


def base_ok():
    return qf.qubemail_base("Mail.Example.COM", ["Example.COM", "example.org"], users_ok())


def base_errors(hostname="mail.example.com", domains=("example.com",), users=None):
    return error_lines(qf.qubemail_base, hostname, list(domains), users if users is not None else [])


def user_errors(*users):
    return base_errors(users=list(users))


def mta_errors(**settings):
    return error_lines(qf.qubemail_mta, {**DEFAULTS, **settings}, base_ok())


def pop_errors(**settings):
    return error_lines(qf.qubemail_pop_before_smtp, {**DEFAULTS, **settings})


def user(**fields):
    entry = {"name": "dave", "password": "pw"}
    entry.update(fields)
    return entry


# --------------------------------------------------------------------------
# plugin wiring and documentation
# --------------------------------------------------------------------------

@pytest.mark.parametrize("path", FILTERS, ids=lambda path: path.stem)
def test_each_file_is_one_filter_of_its_name_with_its_own_documentation(path):
    module = load_filter(path.stem)
    assert list(module.FilterModule().filters()) == [path.stem]
    assert module.FilterModule().filters()[path.stem] is getattr(module, path.stem)
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc["name"] == path.stem and doc["short_description"] and doc["description"]
    assert yaml.safe_load(module.EXAMPLES)
    assert "_value" in yaml.safe_load(module.RETURN)
    assert len(path.read_text().splitlines()) <= 600


def test_ansible_doc_shows_every_filter():
    names = [path.stem for path in FILTERS]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    out = subprocess.run([sys.executable, "-m", "ansible.cli.doc", "-t", "filter", "--json", *names],
                         capture_output=True, text=True, env=env, cwd="/", check=True).stdout
    docs = json.loads(out)
    assert sorted(docs) == sorted(names)
    for name in names:
        assert docs[name]["doc"]["name"] == name


def test_base_documentation_lists_every_reserved_name():
    doc = load_filter("qubemail_base").DOCUMENTATION
    for name in qf.RESERVED_NAMES:
        assert "V(%s)" % name in doc
    assert "C(systemd-)" in doc


def test_examples_show_real_messages():
    lines = user_errors(user(aliases=["MAILER-DAEMON"]))
    assert lines[0].replace("[0]", "[1]", 1) in load_filter("qubemail_base").EXAMPLES
    line = mta_errors(mta_relay_allowed_networks=["192.168.1.7/24"])[0]
    assert line in load_filter("qubemail_mta").EXAMPLES
    base = qf.qubemail_base("mail.example.com", ["example.com"], [user(name="team-join")])
    lines = error_lines(qf.qubemail_lists, [], [{"name": "team"}, {"name": "dev", "subscription": "closd"}], base)
    assert len(lines) == 2
    for line in lines:
        assert line in load_filter("qubemail_lists").EXAMPLES


def test_collect_returns_the_errors_as_data_and_the_exception_carries_them():
    result = qf.qubemail_mta({**DEFAULTS, "mta_catch_all": "nobody-here", "mta_smart_relay_port": 0},
                             base_ok(), collect=True)
    assert result["config"] is None
    assert [(e["field"], e["variable"], e["value"]) for e in result["errors"]] == [
        ("mta_smart_relay_port", "mta_smart_relay_port", "0"), ("mta_catch_all", "mta_catch_all", "'nobody-here'")]
    assert result["errors"][0]["line"] == "mta_smart_relay_port = 0: expected an integer from 1 to 65535"
    with pytest.raises(AnsibleFilterError) as info:
        qf.qubemail_mta({**DEFAULTS, "mta_catch_all": "nobody-here", "mta_smart_relay_port": 0}, base_ok())
    assert info.value.errors == result["errors"]
    assert qf.qubemail_mta(DEFAULTS, base_ok(), collect=True) == {
        "config": qf.qubemail_mta(DEFAULTS, base_ok()), "errors": []}


# --------------------------------------------------------------------------
# qubemail_base: happy path
# --------------------------------------------------------------------------

def test_base_normalises_exactly():
    assert base_ok() == {
        "hostname": "mail.example.com",
        "domains": ["example.com", "example.org"],
        "primary_domain": "example.com",
        "mail_names": ["example.com", "example.org", "mail.example.com"],
        "users": [
            {"name": "alice", "full_name": "Alice Liddell", "password_hash": SHA512,
             "password": None, "aliases": ["a+b", "alice.l"], "send_as": []},
            {"name": "bob", "full_name": "", "password_hash": None,
             "password": "s3cret", "aliases": ["info", "sales"], "send_as": []},
            {"name": "carol", "full_name": "", "password_hash": YESCRYPT,
             "password": None, "aliases": [], "send_as": []},
        ],
        "sender_logins": sorted([f"{local}@{domain}", owner] for local, owner in (
            ("a+b", "alice"), ("alice", "alice"), ("alice.l", "alice"), ("bob", "bob"), ("carol", "carol"),
            ("info", "bob"), ("sales", "bob")) for domain in ("example.com", "example.org")),
    }


def test_base_is_stable_whatever_the_user_order():
    users = users_ok()
    reordered = [users[2], users[0], users[1]]
    assert qf.qubemail_base("mail.example.com", ["example.com", "example.org"], reordered) == \
        qf.qubemail_base("mail.example.com", ["example.com", "example.org"], users)


def test_base_does_not_modify_its_input():
    users = users_ok()
    before = copy.deepcopy(users)
    qf.qubemail_base("mail.example.com", ["example.com"], users)
    assert users == before


@pytest.mark.parametrize("users", [[], None])
def test_base_accepts_no_users(users):
    assert qf.qubemail_base("mail.example.com", ["example.com"], users)["users"] == []


@pytest.mark.parametrize("password_hash", [SHA512, SHA256, YESCRYPT, BCRYPT_2B, BCRYPT_2Y,
                                           "$6$rounds=5000$" + SHA512[3:]])
def test_base_accepts_supported_hash_schemes(password_hash):
    result = qf.qubemail_base("mail.example.com", ["example.com"],
                              [{"name": "alice", "password_hash": password_hash}])
    assert result["users"][0]["password_hash"] == password_hash


def test_base_accepts_boundary_lengths():
    name = "a" * 32
    alias = "b" * 64
    label = "c" * 63
    hostname = ".".join([label] * 3 + ["d" * 61])  # 253 characters
    assert len(hostname) == 253
    result = qf.qubemail_base(hostname, [label + ".com"],
                              [{"name": name, "password": "x", "aliases": [alias]}])
    assert result["hostname"] == hostname
    assert result["users"][0]["name"] == name
    assert result["users"][0]["aliases"] == [alias]


def test_base_accepts_names_with_inner_dots_dashes_and_digits():
    result = qf.qubemail_base("mx-1.mail.example.com", ["sub-1.example.com"],
                              [{"name": "j.doe-2_x", "password": "x", "aliases": ["0day", "info.de"]}])
    assert result["users"][0]["name"] == "j.doe-2_x"


# --------------------------------------------------------------------------
# qubemail_base: hostname and domains
# --------------------------------------------------------------------------

@pytest.mark.parametrize("hostname, fragment", [
    ("mail", "single label"),
    ("mail.example.com.", "trailing dot"),
    ("-mail.example.com", "label '-mail' is invalid"),
    ("mail-.example.com", "label 'mail-' is invalid"),
    ("mail..example.com", "label '' is invalid"),
    ("mail_1.example.com", "label 'mail_1' is invalid"),
    ("x" * 64 + ".example.com", "is invalid"),
    (".".join(["a" * 63] * 4), "at most 253"),
    ("192.168.1.1", "not an IP address"),
    ("", "is empty"),
])
def test_hostname_errors(hostname, fragment):
    lines = base_errors(hostname=hostname)
    assert_reported(lines, "qubemail_hostname", repr(hostname[:30]).rstrip("'"), fragment)


@pytest.mark.parametrize("hostname", [None, 42, ["mail.example.com"]])
def test_hostname_must_be_a_string(hostname):
    lines = base_errors(hostname=hostname)
    assert_reported(lines, "qubemail_hostname = ", str(hostname).split(",")[0].strip("[]'"), "(a string)")


@pytest.mark.parametrize("domains", [[], None, "example.com"])
def test_domains_must_be_a_non_empty_list(domains):
    lines = error_lines(qf.qubemail_base, "mail.example.com", domains, [])
    assert_reported(lines, "qubemail_domains = ", repr(domains), "non-empty list")


def test_domain_item_errors():
    lines = base_errors(domains=["example.com", "bad_domain.com", "localhost", 7])
    assert_reported(lines, "qubemail_domains[1]", "'bad_domain.com'", "label 'bad_domain' is invalid")
    assert_reported(lines, "qubemail_domains[2]", "'localhost'", "single label")
    assert_reported(lines, "qubemail_domains[3]", "7", "(a string)")


def test_duplicate_domains_name_both_indexes_case_insensitively():
    lines = base_errors(domains=["example.com", "example.org", "EXAMPLE.com"])
    assert_reported(lines, "qubemail_domains[2]", "'EXAMPLE.com'", "duplicate of qubemail_domains[0]")


# --------------------------------------------------------------------------
# qubemail_base: users
# --------------------------------------------------------------------------

@pytest.mark.parametrize("users", [{"name": "alice"}, "alice"])
def test_users_must_be_a_list(users):
    lines = base_errors(users=users)
    assert_reported(lines, "qubemail_users = ", "alice" if isinstance(users, str) else "'name'",
                    "expected a list")


@pytest.mark.parametrize("item, shown", [("alice", "'alice'"), (["alice"], "['alice']"), (None, "None")])
def test_user_item_must_be_a_dict(item, shown):
    lines = user_errors(item)
    assert_reported(lines, "qubemail_users[0] = ", shown, "expected a dict")


def test_unknown_user_key_is_reported_with_a_suggestion():
    lines = user_errors(user(), user(name="erin", alias=["x"], pasword="y"))
    assert_reported(lines, "qubemail_users[1]", "'alias'", "unknown key", "did you mean 'aliases'?")
    assert_reported(lines, "qubemail_users[1]", "'pasword'", "did you mean 'password'?")


def test_missing_name():
    lines = user_errors({"password": "x"})
    assert_reported(lines, "qubemail_users[0].name", "missing")


@pytest.mark.parametrize("name", ["Alice", "1alice", "alice.", "alice-", "a" * 33, "al ice",
                                  "alice@example.com", "", "_alice"])
def test_bad_user_names(name):
    lines = user_errors(user(), user(name=name))
    assert_reported(lines, "qubemail_users[1].name", repr(name), "expected a user name matching")


def test_user_name_must_be_a_string():
    lines = user_errors(user(name=1000))
    assert_reported(lines, "qubemail_users[0].name", "1000", "(a string)")


@pytest.mark.parametrize("name", ["root", "postmaster", "mailer-daemon", "abuse", "nobody", "www-data",
                                  "postfix", "dovecot", "dovenull", "admin", "operator", "noc",
                                  "security", "usenet", "uucp", "systemd-network", "systemd-timesync"])
def test_reserved_user_names(name):
    lines = user_errors(user(name=name))
    assert_reported(lines, "qubemail_users[0].name", repr(name), "reserved")


def test_duplicate_user_names_name_both_indexes():
    lines = user_errors(user(name="alice"), user(name="bob"), user(name="alice"))
    assert_reported(lines, "qubemail_users[2].name", "'alice'", "duplicate", "qubemail_users[0].name")


def test_duplicate_user_name_detected_even_if_first_entry_has_other_errors():
    lines = user_errors(user(name="alice", password=""), user(name="alice"))
    assert_reported(lines, "qubemail_users[1].name", "'alice'", "qubemail_users[0].name")


@pytest.mark.parametrize("full_name", ["Alice: admin", "Alice\nLiddell", "Alice\tL", "bell\x07"])
def test_full_name_rejects_gecos_breakers(full_name):
    lines = user_errors(user(full_name=full_name))
    assert_reported(lines, "qubemail_users[0].full_name", repr(full_name), "GECOS")


def test_full_name_must_be_a_string():
    lines = user_errors(user(full_name=["Alice"]))
    assert_reported(lines, "qubemail_users[0].full_name", "['Alice']", "expected a string")


@pytest.mark.parametrize("password_hash, shown, fragment", [
    ("{SHA512-CRYPT}" + SHA512, "'{SHA512-CRYPT}'", "without a {SCHEME} prefix"),
    ("$1$abcdefgh$0123456789012345678901", "'$1$'", "expected a crypt(3) hash"),
    ("$2a$12$" + BCRYPT_2B[7:], "'$2a$'", "expected a crypt(3) hash"),
    (SHA512[:-1], "'$6$'", "not a well-formed $6$ hash"),
    (SHA256 + "x", "'$5$'", "not a well-formed $5$ hash"),
    ("$2b$03$" + BCRYPT_2B[7:], "'$2b$'", "not a well-formed $2b$ hash"),
])
def test_bad_password_hashes_show_only_the_scheme(password_hash, shown, fragment):
    lines = user_errors(user(password=None, password_hash=password_hash))
    line = assert_reported(lines, "qubemail_users[0].password_hash", shown, "(redacted)", fragment)
    assert password_hash[6:] not in line


def test_plain_text_in_password_hash_is_not_echoed():
    lines = user_errors(user(password=None, password_hash="hunter2"))
    line = assert_reported(lines, "qubemail_users[0].password_hash",
                           "<redacted string of 7 characters>", "put plain text in 'password'")
    assert "hunter2" not in "\n".join(lines)
    assert line


@pytest.mark.parametrize("password, shown", [("", "<redacted string of 0 characters>"),
                                             (123456, "<redacted int>"),
                                             (["x"], "<redacted list>")])
def test_bad_passwords_are_redacted(password, shown):
    lines = user_errors(user(password=password))
    assert_reported(lines, "qubemail_users[0].password", shown, "non-empty string")
    if password:
        assert "123456" not in "\n".join(lines)


def test_password_and_hash_are_mutually_exclusive():
    lines = user_errors(user(password_hash=SHA512), user(name="erin", password=None))
    assert_reported(lines, "qubemail_users[0]", "both 'password_hash' and 'password'")
    assert_reported(lines, "qubemail_users[1]", "neither 'password_hash' nor 'password'")
    assert "pw" not in "\n".join(lines).replace("password", "")


def test_aliases_must_be_a_list():
    lines = user_errors(user(aliases="info"))
    assert_reported(lines, "qubemail_users[0].aliases", "'info'", "expected a list")


@pytest.mark.parametrize("alias", ["Bad Alias!", "-info", ".info", "x" * 65, "in@fo", ""])
def test_bad_alias_format(alias):
    lines = user_errors(user(aliases=["ok", alias]))
    assert_reported(lines, "qubemail_users[0].aliases[1]", repr(alias)[:20], "expected a local part")


def test_alias_must_be_a_string():
    lines = user_errors(user(aliases=[42]))
    assert_reported(lines, "qubemail_users[0].aliases[0]", "42", "(a string)")


@pytest.mark.parametrize("alias", ["MAILER-DAEMON", "Postmaster", "root", "abuse", "systemd-journal"])
def test_reserved_aliases_are_compared_case_insensitively(alias):
    lines = user_errors(user(aliases=[alias]))
    assert_reported(lines, "qubemail_users[0].aliases[0]", repr(alias), "reserved", "mta_aliases")


def test_alias_clashing_with_a_user_name():
    lines = user_errors(user(name="alice", aliases=["Bob"]), user(name="bob"))
    assert_reported(lines, "qubemail_users[0].aliases[0]", "'Bob'", "clashes with the user name 'bob'")


def test_alias_clashing_with_own_user_name():
    lines = user_errors(user(name="alice", aliases=["alice"]))
    assert_reported(lines, "qubemail_users[0].aliases[0]", "'alice'", "clashes with the user name")


def test_alias_shared_by_two_users_names_both():
    lines = user_errors(user(name="alice", aliases=["sales"]), user(name="bob", aliases=["x", "SALES"]))
    assert_reported(lines, "qubemail_users[1].aliases[1]", "'SALES'", "user 'bob'", "user 'alice'",
                    "qubemail_users[0].aliases[0]")


def test_all_errors_are_reported_at_once():
    lines = error_lines(qf.qubemail_base, "mail", ["example.com", "example.com"], [
        user(name="root", alias=["x"]),
        user(name="bob", password=None, password_hash="{SHA512-CRYPT}x", aliases=["MAILER-DAEMON"]),
    ])
    assert len(lines) == 6
    assert lines[0].startswith("qubemail_hostname")
    assert lines[1].startswith("qubemail_domains[1]")


# --------------------------------------------------------------------------
# qubemail_mta: happy path
# --------------------------------------------------------------------------

MTA_SETTINGS = {
    "mta_smtp_enabled": True,
    "mta_relay_allowed_networks": ["192.168.1.0/24", "2001:DB8::/32", "10.0.0.5", "::1",
                                   "192.168.1.0/24", "[2001:db8:1::]/48", "127.0.0.0/8"],
    "mta_smart_relay_host": "Relay.ISP.example.net",
    "mta_smart_relay_port": 587,
    "mta_max_message_size_kb": 10240,
    "mta_masquerade_domain": "Example.COM",
    "mta_catch_all": "carol",
    "mta_denied_hosts": ["203.0.113.0/24", "Spam.Example.NET", "2001:db8:dead::/48", "198.51.100.7",
                         "203.0.113.0/24", "spam.example.net"],
    "mta_aliases": {
        "root": ["alice"],
        "Team": ["alice", "Bob", "friend@Elsewhere.EXAMPLE", "bob"],
        "all": ["team", "info"],
        "abuse": ["alice"],
    },
    "some_other_role_variable": "ignored",
}


def test_mta_normalises_exactly():
    assert mta(MTA_SETTINGS, base_ok()) == {
        "smtp_enabled": True,
        "mynetworks": ["127.0.0.0/8", "[::1]/128", "192.168.1.0/24", "[2001:db8::]/32",
                       "10.0.0.5/32", "[2001:db8:1::]/48"],
        "relayhost": "[relay.isp.example.net]:587",
        "message_size_limit": 10485760,
        "masquerade_domain": "example.com",
        "catch_all": "carol",
        "denied_networks": ["203.0.113.0/24", "2001:db8:dead::/48", "198.51.100.7/32"],
        "denied_hostnames": ["spam.example.net"],
        "transports": [],
        "aliases": [
            {"name": "a+b", "targets": ["alice"]},
            {"name": "abuse", "targets": ["alice"]},
            {"name": "alice.l", "targets": ["alice"]},
            {"name": "all", "targets": ["team", "info"]},
            {"name": "hostmaster", "targets": ["postmaster"]},
            {"name": "info", "targets": ["bob"]},
            {"name": "mailer-daemon", "targets": ["postmaster"]},
            {"name": "postmaster", "targets": ["root"]},
            {"name": "root", "targets": ["alice"]},
            {"name": "sales", "targets": ["bob"]},
            {"name": "team", "targets": ["alice", "bob", "friend@elsewhere.example"]},
            {"name": "webmaster", "targets": ["postmaster"]},
        ],
        "relay_policy_services": [],
        "submission_policy_services": [],
        "alias_maps_extra": [],
        "internal_recipients": [],
        "main_cf_extra": [],
        "submission_services": SUBMISSION_SERVICES,
        "sender_domains": ["example.com", "example.org", "mail.example.com"],
        "milters": [],
        "dovecot_delivery": False,
    }


#: master.cf's submission services with both ports on (the defaults).
LOGIN_REQUIRED = ["smtpd_tls_security_level=encrypt", "smtpd_sasl_auth_enable=yes",
                  "smtpd_relay_restrictions=$qubemail_submission_relay_restrictions",
                  "smtpd_sender_restrictions=reject_authenticated_sender_login_mismatch"]
SUBMISSION_SERVICES = [
    {"listen": "submission", "name": "submission", "options": ["syslog_name=postfix/submission"] + LOGIN_REQUIRED},
    {"listen": "submissions", "name": "submissions",
     "options": ["syslog_name=postfix/submissions", "smtpd_tls_wrappermode=yes"] + LOGIN_REQUIRED},
]


@pytest.mark.parametrize("port_587, port_465, listens", [
    (True, True, ["submission", "submissions"]),
    (False, True, ["127.0.0.1:submission", "submissions"]),
    (True, False, ["submission"]),
    (False, False, ["127.0.0.1:submission"]),
])
def test_mta_submission_ports_and_the_loopback_one_webmail_needs(port_587, port_465, listens):
    services = mta({"mta_submission_enabled": port_587, "mta_submissions_enabled": port_465},
                   base_ok())["submission_services"]
    assert [service["listen"] for service in services] == listens
    assert all(set(LOGIN_REQUIRED) <= set(service["options"]) for service in services)


def test_send_as_grants_are_shared_and_merged_with_aliases():
    users = users_ok()
    users[1]["send_as"] = ["Sales@Example.com", "ceo@partner.example", "sales@example.com"]
    users[2]["send_as"] = ["ceo@partner.example"]
    logins = dict(qf.qubemail_base("mail.example.com", ["example.com"], users)["sender_logins"])
    assert logins["sales@example.com"] == "alice,bob"
    assert logins["ceo@partner.example"] == "alice,carol"
    assert logins["carol@example.com"] == "carol"
    assert "sales@example.org" not in logins


@pytest.mark.parametrize("send_as, shown", [
    (["not-an-address"], "'not-an-address'"),
    (["a@b@example.com"], "'a@b@example.com'"),
    (["bob@-bad-.example"], "'bob@-bad-.example'"),
])
def test_send_as_must_be_addresses(send_as, shown):
    lines = user_errors({"name": "alice", "password": "x", "send_as": send_as})
    assert_reported(lines, "qubemail_users[0].send_as[0]", shown, "address")


def test_send_as_must_be_a_list():
    lines = user_errors({"name": "alice", "password": "x", "send_as": "sales@example.com"})
    assert_reported(lines, "qubemail_users[0].send_as", "'sales@example.com'", "list")


def test_mta_defaults_for_missing_keys():
    base = qf.qubemail_base("mail.example.com", ["example.com"], [])
    assert mta({}, base) == {
        "smtp_enabled": True,
        "mynetworks": ["127.0.0.0/8", "[::1]/128"],
        "relayhost": "",
        "message_size_limit": 25 * 1024 * 1024,
        "masquerade_domain": "",
        "catch_all": "",
        "denied_networks": [],
        "denied_hostnames": [],
        "transports": [],
        "aliases": [
            {"name": "abuse", "targets": ["postmaster"]},
            {"name": "hostmaster", "targets": ["postmaster"]},
            {"name": "mailer-daemon", "targets": ["postmaster"]},
            {"name": "postmaster", "targets": ["root"]},
            {"name": "webmaster", "targets": ["postmaster"]},
        ],
        "relay_policy_services": [],
        "submission_policy_services": [],
        "alias_maps_extra": [],
        "internal_recipients": [],
        "main_cf_extra": [],
        "submission_services": SUBMISSION_SERVICES,
        "sender_domains": ["example.com", "mail.example.com"],
        "milters": [],
        "dovecot_delivery": False,
    }


def test_mta_transports_are_sorted_routes():
    result = mta({"mta_transports": {"Partner.example": "smtp:[mx.partner.example]:2525",
                                                 "a.example": "relay:[10.0.0.1]"}}, base_ok())
    assert result["transports"] == [["a.example", "relay:[10.0.0.1]"],
                                    ["partner.example", "smtp:[mx.partner.example]:2525"]]


@pytest.mark.parametrize("routes, field, value, fragment", [
    ({"partner": "smtp:[mx]"}, "mta_transports['partner']", "'partner'", "fully qualified"),
    ({"p.example": "smtp [mx]"}, "mta_transports['p.example']", "'smtp [mx]'", "transport:nexthop"),
    ({"p.example": 25}, "mta_transports['p.example']", "25", "transport:nexthop"),
    (["p.example"], "mta_transports", "['p.example']", "mapping of domain"),
])
def test_mta_transport_errors(routes, field, value, fragment):
    lines = mta_errors(mta_transports=routes)
    assert_reported(lines, field, value, fragment)


def test_mta_blank_values_mean_off_and_zero_means_unlimited():
    result = mta({
        "mta_smtp_enabled": False, "mta_relay_allowed_networks": None, "mta_smart_relay_host": None,
        "mta_max_message_size_kb": 0, "mta_masquerade_domain": None, "mta_catch_all": None,
        "mta_denied_hosts": None, "mta_aliases": None,
    }, base_ok())
    assert (result["smtp_enabled"], result["mynetworks"], result["relayhost"], result["message_size_limit"],
            result["masquerade_domain"], result["catch_all"], result["denied_networks"]) == \
        (False, ["127.0.0.0/8", "[::1]/128"], "", 0, "", "", [])


@pytest.mark.parametrize("host, port, expected", [
    ("192.0.2.25", 25, "[192.0.2.25]:25"),
    ("2001:db8::1", 2525, "[ipv6:2001:db8::1]:2525"),
    ("[2001:DB8::1]", 65535, "[ipv6:2001:db8::1]:65535"),
    ("smtp.example.net", 1, "[smtp.example.net]:1"),
])
def test_mta_relayhost(host, port, expected):
    settings = {"mta_smart_relay_host": host, "mta_smart_relay_port": port}
    assert mta(settings, base_ok())["relayhost"] == expected


@pytest.mark.parametrize("network, expected", [("10.0.0.0/8", "10.0.0.0/8"),
                                               ("2001:db8::/32", "[2001:db8::]/32"),
                                               ("2001:db8::5", "[2001:db8::5]/128")])
def test_mta_widest_allowed_relay_networks(network, expected):
    result = mta({"mta_relay_allowed_networks": [network]}, base_ok())
    assert result["mynetworks"][2:] == [expected]


def test_mta_catch_all_address_and_reserved_alias_keys():
    result = mta({"mta_catch_all": "Catch.All@Example.ORG",
                              "mta_aliases": {"postmaster": ["alice"], "security": ["postmaster"]}},
                             base_ok())
    assert result["catch_all"] == "Catch.All@example.org"
    aliases = {a["name"]: a["targets"] for a in result["aliases"]}
    assert aliases["postmaster"] == ["alice"]
    assert aliases["security"] == ["postmaster"]
    assert aliases["abuse"] == ["postmaster"]


def test_mta_root_may_keep_a_copy_of_its_own_mail():
    result = mta({"mta_aliases": {"root": ["root", "alice"]}}, base_ok())
    assert {"name": "root", "targets": ["root", "alice"]} in result["aliases"]


def test_mta_rejects_input_that_is_not_base_output():
    with pytest.raises(AnsibleFilterError, match="output of qubemail_base"):
        mta({}, {"users": [{"login": "x"}]})


def test_mta_settings_must_be_a_dict_of_every_variable():
    with pytest.raises(AnsibleFilterError, match="expected a dict of the role's variables"):
        qf.qubemail_mta(["mta_smtp_enabled"], base_ok())
    with pytest.raises(AnsibleFilterError, match="the settings lack mta_catch_all"):
        qf.qubemail_mta({k: v for k, v in DEFAULTS.items() if k != "mta_catch_all"}, base_ok())


# --------------------------------------------------------------------------
# qubemail_mta: errors
# --------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["maybe", "1", 1, None])
def test_smtp_enabled_must_be_a_bool(value):
    lines = mta_errors(mta_smtp_enabled=value)
    assert_reported(lines, "mta_smtp_enabled", repr(value), "expected a boolean")


@pytest.mark.parametrize("network, fragment", [
    ("192.168.1.7/24", "host bits are set; did you mean '192.168.1.0/24'?"),
    ("2001:db8::1/32", "did you mean '2001:db8::/32'?"),
    ("10.0.0.0/7", "wider than /8; allowing it to relay would make an open relay"),
    ("0.0.0.0/0", "open relay"),
    ("2001:db8::/31", "wider than /32"),
    ("::/0", "open relay"),
    ("192.168.1.300", "expected an IPv4/IPv6 address or CIDR network"),
    ("my-lan", "expected an IPv4/IPv6 address"),
    ("10.0.0.0/33", "expected an IPv4/IPv6 address"),
    ("fe80::1%eth0", "zone"),
])
def test_relay_network_errors(network, fragment):
    lines = mta_errors(mta_relay_allowed_networks=["10.1.0.0/16", network])
    assert_reported(lines, "mta_relay_allowed_networks[1]", repr(network), fragment)


def test_relay_networks_must_be_a_list_of_strings():
    assert_reported(mta_errors(mta_relay_allowed_networks="10.0.0.0/8"),
                    "mta_relay_allowed_networks = ", "'10.0.0.0/8'", "expected a list")
    assert_reported(mta_errors(mta_relay_allowed_networks=[167772160]),
                    "mta_relay_allowed_networks[0]", "167772160", "expected an IPv4/IPv6")


@pytest.mark.parametrize("host, fragment", [
    ("relay", "single label"),
    ("relay.example.net:587", "without a port"),
    ("999.1.1.1", "single IP address"),
    (True, "a host name or an IP address"),
])
def test_smart_relay_host_errors(host, fragment):
    lines = mta_errors(mta_smart_relay_host=host)
    assert_reported(lines, "mta_smart_relay_host", repr(host), fragment)


@pytest.mark.parametrize("port, fragment", [(0, "from 1 to 65535"), (65536, "from 1 to 65535"),
                                            ("25x", "not a string"), (True, "not a boolean"),
                                            ("70000", "from 1 to 65535"),
                                            (None, "from 1 to 65535"), (25.0, "not a float")])
def test_smart_relay_port_errors(port, fragment):
    lines = mta_errors(mta_smart_relay_host="relay.example.net", mta_smart_relay_port=port)
    assert_reported(lines, "mta_smart_relay_port", repr(port), fragment)


@pytest.mark.parametrize("size, expected", [(0, 0), ("0", 0), (1, 1024), ("25600", 26214400)])
def test_max_message_size_zero_is_unlimited(size, expected):
    assert mta({"mta_max_message_size_kb": size}, base_ok())["message_size_limit"] == expected


@pytest.mark.parametrize("size", ["", None])
def test_max_message_size_blank_is_not_unlimited(size):
    # The Qube's blank field meant unlimited; here unlimited must be an explicit 0.
    lines = mta_errors(mta_max_message_size_kb=size)
    assert_reported(lines, "mta_max_message_size_kb", repr(size), "0 for unlimited", "not taken as unlimited")


@pytest.mark.parametrize("size, fragment", [(-1, "positive integer"), (0.0, "not a float"),
                                            ("-10", "not a string"), ("ten", "not a string"), ("1e4", "not a string"),
                                            (True, "not a boolean"), (False, "not a boolean"),
                                            (1.5, "not a float")])
def test_max_message_size_errors(size, fragment):
    lines = mta_errors(mta_max_message_size_kb=size)
    assert_reported(lines, "mta_max_message_size_kb", repr(size), fragment, "kilobytes")


@pytest.mark.parametrize("domain", ["example", "exa mple.com", "example.com.", 5])
def test_masquerade_domain_errors(domain):
    lines = mta_errors(mta_masquerade_domain=domain)
    assert_reported(lines, "mta_masquerade_domain", repr(domain), "'' or a domain name")


@pytest.mark.parametrize("value, fragment", [
    ("zed", "a user defined in qubemail_users"),
    ("info", "a user defined in qubemail_users"),
    ("Carol", "a user defined in qubemail_users"),
    ("a..b@example.com", "not a simple dot-atom"),
    ("a@b@example.com", "local@domain"),
    ("catch@localhost", "domain 'localhost'"),
    (["carol"], "a user defined"),
])
def test_catch_all_errors(value, fragment):
    lines = mta_errors(mta_catch_all=value)
    assert_reported(lines, "mta_catch_all", repr(value), fragment)


@pytest.mark.parametrize("host, fragment", [
    ("203.0.113.9/24", "did you mean '203.0.113.0/24'?"),
    ("2001:db8::1/48", "did you mean '2001:db8::/48'?"),
    ("bad_host.example.com", "host/domain name"),
    ("spammer", "single label"),
    (None, "host/domain name"),
])
def test_denied_hosts_errors(host, fragment):
    lines = mta_errors(mta_denied_hosts=["192.0.2.0/24", host])
    assert_reported(lines, "mta_denied_hosts[1]", repr(host), fragment)


def test_mta_aliases_must_be_a_dict():
    lines = mta_errors(mta_aliases=["postmaster"])
    assert_reported(lines, "mta_aliases = ", "['postmaster']", "expected a dict")


@pytest.mark.parametrize("key", ["Bad Key", "-list", "x" * 65])
def test_mta_alias_bad_local_part(key):
    lines = mta_errors(mta_aliases={key: ["alice"]})
    assert_reported(lines, "mta_aliases[%r]" % key, repr(key)[:30], "expected a local part")


@pytest.mark.parametrize("targets, shown", [([], "[]"), ("alice", "'alice'"), (None, "None")])
def test_mta_alias_needs_a_non_empty_target_list(targets, shown):
    lines = mta_errors(mta_aliases={"team": targets})
    assert_reported(lines, "mta_aliases['team']", shown, "non-empty list of targets")


def test_mta_alias_unknown_local_target():
    lines = mta_errors(mta_aliases={"team": ["alice", "nosuchuser", 7]})
    assert_reported(lines, "mta_aliases['team'][1]", "'nosuchuser'", "unknown local target")
    assert_reported(lines, "mta_aliases['team'][2]", "7", "unknown local target")


def test_mta_alias_bad_external_address():
    lines = mta_errors(mta_aliases={"team": ["friend@", "x@nodot"]})
    assert_reported(lines, "mta_aliases['team'][0]", "'friend@'", "local@domain")
    assert_reported(lines, "mta_aliases['team'][1]", "'x@nodot'", "domain 'nodot'")


def test_mta_alias_key_clashes_with_user_name():
    lines = mta_errors(mta_aliases={"Alice": ["bob"]})
    assert_reported(lines, "mta_aliases['Alice']", "'Alice'", "clashes with the user name 'alice'")


def test_mta_alias_key_clashes_with_user_alias():
    lines = mta_errors(mta_aliases={"sales": ["alice"]})
    assert_reported(lines, "mta_aliases['sales']", "'sales'", "alias of user 'bob'")


def test_mta_alias_keys_are_unique_case_insensitively():
    lines = mta_errors(mta_aliases={"Team": ["alice"], "team": ["bob"]})
    assert_reported(lines, "mta_aliases['team']", "'team'", "duplicate of mta_aliases['Team']")


@pytest.mark.parametrize("name, targets", [("team", ["team"]), ("postmaster", ["Postmaster"]),
                                           ("root", ["root"])])
def test_mta_alias_mapping_only_to_itself(name, targets):
    lines = mta_errors(mta_aliases={name: targets})
    assert_reported(lines, "mta_aliases[%r]" % name, repr(targets), "maps only to itself")


def test_mta_alias_loops_are_reported():
    lines = mta_errors(mta_aliases={"loop1": ["loop2"], "loop2": ["loop1"], "root": ["postmaster"]})
    assert_reported(lines, "mta_aliases['loop1']", "['loop2']", "loop1 -> loop2 -> loop1")
    assert_reported(lines, "mta_aliases['loop2']", "['loop1']", "loop2 -> loop1 -> loop2")
    assert_reported(lines, "mta_aliases['root']", "['postmaster']", "root -> postmaster -> root")


def test_mta_alias_loop_with_an_exit_is_fine():
    result = mta({"mta_aliases": {"a": ["b"], "b": ["a", "alice"]}}, base_ok())
    assert {"name": "a", "targets": ["b"]} in result["aliases"]


def test_mta_reports_every_error_in_one_message():
    lines = mta_errors(mta_smtp_enabled="maybe", mta_relay_allowed_networks=["0.0.0.0/0"],
                       mta_smart_relay_port="port 25", mta_max_message_size_kb=-1, mta_catch_all="zed",
                       mta_aliases={"bob": ["alice"], "x": []})
    assert [line.split(" ")[0] for line in lines] == [
        "mta_smtp_enabled", "mta_relay_allowed_networks[0]", "mta_smart_relay_port",
        "mta_max_message_size_kb", "mta_catch_all", "mta_aliases['bob']", "mta_aliases['x']",
    ]


# --------------------------------------------------------------------------
# qubemail_pop_before_smtp
# --------------------------------------------------------------------------

def test_mta_asks_the_relay_policy_on_submission_only_when_told():
    services = {"mta_relay_policy_services": ["unix:private/pop-before-smtp"]}
    assert mta(services, base_ok())["submission_policy_services"] == []
    assert mta({**services, "mta_submission_relay_policy": True}, base_ok())["submission_policy_services"] == \
        ["unix:private/pop-before-smtp"]
    assert mta_errors(mta_submission_relay_policy="maybe") == [
        "mta_submission_relay_policy = 'maybe': expected a boolean (true or false)"]


def test_mta_milters_scan_every_listener_and_mark_submission_as_outgoing():
    config = mta({"mta_milters": ["unix:/rspamd/milter.sock"], "mta_dovecot_delivery": True}, base_ok())
    assert config["milters"] == ["unix:/rspamd/milter.sock"] and config["dovecot_delivery"] is True
    for service in config["submission_services"]:
        assert "milter_macro_daemon_name=ORIGINATING" in service["options"]
    assert not any("milter" in option for service in mta({}, base_ok())["submission_services"]
                   for option in service["options"])


@pytest.mark.parametrize("milter", ["unix:private/rspamd", "rspamd.sock", "inet:127.0.0.1", "unix:/a b"])
def test_mta_refuses_a_milter_postfix_cannot_reach(milter):
    assert mta_errors(mta_milters=[milter]) == [
        "mta_milters[0] = %r: expected a Postfix milter, unix:/rspamd/milter.sock or inet:127.0.0.1:PORT" % milter]


@pytest.mark.parametrize("reader", ["Rspamd", "a b", "x" * 33, 7, None])
def test_pop_before_smtp_refuses_a_grants_reader_that_is_no_user_name(reader):
    assert pop_errors(pop_before_smtp_grants_reader=reader) == [
        "pop_before_smtp_grants_reader = %r: expected a system user's name, e.g. _rspamd, or ''" % (reader,)]


def test_pop_before_smtp_grants_reader_is_kept():
    assert pop_before_smtp({"pop_before_smtp_grants_reader": "_rspamd"})["grants_reader"] == "_rspamd"


def test_pop_before_smtp_normalises_exactly():
    assert pop_before_smtp({
        "pop_before_smtp_enabled": True,
        "pop_before_smtp_ttl": 600,
        "pop_before_smtp_never_authorize": ["0.0.0.0/0", "[2001:db8::]/32", "2001:DB8::/32",
                                            "192.0.2.1", "::/0"],
        "unrelated": 1,
    }) == {"enabled": True, "ttl": 600,
           "never_authorize": ["0.0.0.0/0", "2001:db8::/32", "192.0.2.1/32", "::/0"],
           "protocols": ["pop3"], "report_listen": "127.0.0.1:10032", "sweep_interval": 30,
           "bind_sender": True, "submission": True, "grants_reader": ""}


@pytest.mark.parametrize("enabled, ttl, expected", [
    ("true", "120", (True, 120)), ("no", "900", (False, 900)), ("Yes", 60, (True, 60)),
])
def test_extra_vars_strings_are_taken_as_they_spell(enabled, ttl, expected):
    # `-e pop_before_smtp_enabled=true -e pop_before_smtp_ttl=120` gives strings.
    result = pop_before_smtp({"pop_before_smtp_enabled": enabled, "pop_before_smtp_ttl": ttl})
    assert (result["enabled"], result["ttl"]) == expected


def test_pop_before_smtp_defaults():
    assert pop_before_smtp({}) == {"enabled": False, "ttl": 900, "never_authorize": [], "protocols": ["pop3"],
                                   "report_listen": "127.0.0.1:10032", "sweep_interval": 30,
           "bind_sender": True, "submission": True, "grants_reader": ""}


@pytest.mark.parametrize("value", ["enabled", 0, None])
def test_pop_before_smtp_enabled_must_be_a_bool(value):
    lines = pop_errors(pop_before_smtp_enabled=value)
    assert_reported(lines, "pop_before_smtp_enabled", repr(value), "expected a boolean")


@pytest.mark.parametrize("ttl, fragment", [(0, "positive integer"), (-900, "positive integer"),
                                           ("15m", "not a string"), ("0", "positive integer"),
                                           (" 900", "not a string"), (True, "not a boolean"),
                                           (None, "positive integer")])
def test_pop_before_smtp_ttl_errors(ttl, fragment):
    lines = pop_errors(pop_before_smtp_ttl=ttl)
    assert_reported(lines, "pop_before_smtp_ttl", repr(ttl), fragment, "seconds")


@pytest.mark.parametrize("network, fragment", [("10.1.2.3/8", "did you mean '10.0.0.0/8'?"),
                                               ("not-a-net", "expected an IPv4/IPv6"),
                                               (8, "expected an IPv4/IPv6")])
def test_pop_before_smtp_never_authorize_errors(network, fragment):
    lines = pop_errors(pop_before_smtp_never_authorize=["10.0.0.0/8", network])
    assert_reported(lines, "pop_before_smtp_never_authorize[1]", repr(network), fragment)


def test_pop_before_smtp_never_authorize_must_be_a_list():
    lines = pop_errors(pop_before_smtp_never_authorize="10.0.0.0/8")
    assert_reported(lines, "pop_before_smtp_never_authorize = ", "'10.0.0.0/8'", "expected a list")


def test_pop_before_smtp_settings_must_be_a_dict():
    with pytest.raises(AnsibleFilterError, match="qubemail_pop_before_smtp: expected a dict"):
        qf.qubemail_pop_before_smtp(None)


# --------------------------------------------------------------------------
# qubemail_lists: happy path
# --------------------------------------------------------------------------
# base_ok(): users alice (aliases a+b, alice.l), bob (info, sales), carol;
# domains example.com (primary) and example.org.

def family(name):
    return [
        {"name": name + "-request", "target": name + "+help"},
        {"name": name + "-owner", "target": name + "+owner"},
        {"name": "owner-" + name, "target": name + "+owner"},
        {"name": name + "-bounces", "target": name + "+bounces-help"},
        {"name": name + "-join", "target": name + "+subscribe"},
        {"name": name + "-subscribe", "target": name + "+subscribe"},
        {"name": name + "-leave", "target": name + "+unsubscribe"},
        {"name": name + "-unsubscribe", "target": name + "+unsubscribe"},
    ]


GROUPS = [
    {"name": "Staff", "members": ["carol", "alice", "Alice", "bob@example.org"],
     "list": {"description": "Everyone at the office", "moderators": ["alice"], "posting": "moderated",
              "max_message_size_kb": "2048", "reply_to_list": "yes", "subject_prefix": "[Staff] ",
              "archive": True, "archive_retention_days": 365}},
]
LISTS = [
    {"name": "friends", "members": ["alice", "Pal@Elsewhere.NET", "pal@elsewhere.net", "Bob@Example.COM",
                                    "staff@example.org", "x.y+z@mail.example.net"],
     "owners": ["carol@example.org", "boss@elsewhere.net"], "posting": "any", "subscription": "open",
     "description": None, "subject_prefix": ""},
]


def lists_ok(groups=None, lists=None, mta_aliases=None):
    return qf.qubemail_lists(copy.deepcopy(GROUPS) if groups is None else groups,
                             copy.deepcopy(LISTS) if lists is None else lists, base_ok(), mta_aliases)


def list_errors(groups=(), lists=(), mta_aliases=None, base=None):
    return error_lines(qf.qubemail_lists, list(groups), list(lists), base or base_ok(), mta_aliases)


def one_list(**fields):
    """The only list built from one qubemail_lists item."""
    fields.setdefault("name", "notices")
    return qf.qubemail_lists([], [fields], base_ok())[0]


def test_lists_normalise_exactly():
    assert lists_ok() == [
        {"name": "friends", "kind": "list", "address": "friends@example.com", "domain": "example.com",
         "description": "",
         "members": ["alice@example.com", "bob@example.com", "pal@elsewhere.net", "staff@example.org",
                     "x.y+z@mail.example.net"],
         "local_members": ["alice", "bob"],
         "moderators": [], "owners": ["boss@elsewhere.net", "carol@example.com"],
         "posting": "any", "subscription": "open", "max_message_size": 0, "reply_to_list": False,
         "subject_prefix": "", "archive": False, "archive_retention_days": 0,
         "aliases": family("friends")},
        {"name": "staff", "kind": "group", "address": "staff@example.com", "domain": "example.com",
         "description": "Everyone at the office",
         "members": ["alice@example.com", "bob@example.com", "carol@example.com"],
         "local_members": ["alice", "bob", "carol"],
         "moderators": ["alice@example.com"], "owners": ["alice@example.com"],
         "posting": "moderated", "subscription": "closed", "max_message_size": 2097152, "reply_to_list": True,
         "subject_prefix": "[Staff] ", "archive": True, "archive_retention_days": 365,
         "aliases": family("staff")},
    ]


def test_alias_family_constant_matches_the_output():
    assert [(pattern % "x", "x+" + command) for pattern, command in qf.LIST_ALIAS_FAMILY] == \
        [(a["name"], a["target"]) for a in family("x")]
    assert {"name": "staff", "target": "staff"} not in lists_ok()[1]["aliases"]


def test_group_list_defaults():
    result = qf.qubemail_lists([{"name": "sales-team", "members": ["bob"]}], [], base_ok())
    assert result == [{
        "name": "sales-team", "kind": "group", "address": "sales-team@example.com", "domain": "example.com",
        "description": "", "members": ["bob@example.com"], "local_members": ["bob"],
        "moderators": [], "owners": ["postmaster@example.com"], "posting": "members", "subscription": "closed",
        "max_message_size": 0, "reply_to_list": False, "subject_prefix": "[sales-team]", "archive": False,
        "archive_retention_days": 0,
        "aliases": family("sales-team"),
    }]


def test_independent_list_defaults():
    result = one_list(members=["ext@elsewhere.net"])
    assert (result["subscription"], result["posting"], result["archive"], result["subject_prefix"],
            result["owners"], result["description"], result["max_message_size"], result["reply_to_list"],
            result["archive_retention_days"]) == \
        ("confirm", "members", False, "[notices]", ["postmaster@example.com"], "", 0, False, 0)


def test_null_settings_take_the_defaults():
    defaults = one_list()
    nulls = one_list(**{key: None for key in qf.LIST_SETTING_KEYS}, members=None)
    assert nulls == defaults


def test_owners_default_to_the_moderators():
    result = one_list(moderators=["carol", "mod@elsewhere.net"], owners=[])
    assert result["owners"] == ["carol@example.com", "mod@elsewhere.net"]


def test_moderators_and_owners_may_be_aliases_and_lists():
    result = qf.qubemail_lists([{"name": "staff"}], [{"name": "notices", "moderators": ["info", "Root"],
                                                      "owners": ["postmaster", "staff@example.org", "a+b"]}],
                               base_ok(), {"listadmins": ["alice"]})
    notices = result[0]
    assert notices["moderators"] == ["info@example.com", "root@example.com"]
    assert notices["owners"] == ["a+b@example.com", "postmaster@example.com", "staff@example.org"]


def test_empty_group_still_gets_its_list():
    result = qf.qubemail_lists([{"name": "empty"}, {"name": "void", "members": []}], None, base_ok())
    assert [(r["name"], r["kind"], r["members"]) for r in result] == [("empty", "group", []), ("void", "group", [])]


def test_no_groups_and_no_lists():
    assert qf.qubemail_lists(None, None, base_ok()) == []


def test_lists_may_contain_lists():
    result = qf.qubemail_lists(
        [{"name": "staff", "members": ["alice"]}],
        [{"name": "all", "members": ["staff@example.com", "Friends@Example.ORG", "carol"]},
         {"name": "friends", "members": ["ext@elsewhere.net"]}],
        base_ok())
    everyone = result[0]
    assert everyone["name"] == "all"
    assert everyone["members"] == ["carol@example.com", "friends@example.org", "staff@example.com"]
    assert everyone["local_members"] == ["carol"]


def test_list_names_are_lower_cased_and_may_have_digits_dashes_underscores():
    assert one_list(name="2024_Board-Room")["address"] == "2024_board-room@example.com"
    assert one_list(name="x" * 41)["name"] == "x" * 41


@pytest.mark.parametrize("size, expected", [(1, 1024), ("10240", 10485760), ("", 0)])
def test_list_max_message_size_in_bytes(size, expected):
    assert one_list(max_message_size_kb=size)["max_message_size"] == expected


@pytest.mark.parametrize("value, expected", [(True, True), ("no", False), ("Yes", True), ("off", False)])
def test_list_booleans_accept_extra_vars_words(value, expected):
    result = one_list(archive=value, reply_to_list=value)
    assert (result["archive"], result["reply_to_list"]) == (expected, expected)


def test_archive_retention_without_archive_is_allowed():
    result = one_list(archive_retention_days="30")
    assert (result["archive"], result["archive_retention_days"]) == (False, 30)


@pytest.mark.parametrize("posting, subscription", [("Any", "OPEN"), (" moderated ", "Closed")])
def test_posting_and_subscription_are_case_insensitive(posting, subscription):
    result = one_list(posting=posting, subscription=subscription, moderators=["alice"])
    assert (result["posting"], result["subscription"]) == (posting.strip().lower(), subscription.lower())


def test_lists_are_stable_whatever_the_input_order():
    groups = [{"name": "b-group", "members": ["carol", "alice"]}, {"name": "a-group", "members": ["bob"]}]
    lists = [{"name": "zz", "members": ["x@elsewhere.net", "alice", "a-group@example.com"],
              "moderators": ["m2@elsewhere.net", "bob"]},
             {"name": "aa", "members": ["carol", "y@elsewhere.net"]}]
    expected = qf.qubemail_lists(groups, lists, base_ok())
    assert [r["name"] for r in expected] == ["a-group", "aa", "b-group", "zz"]
    reordered_lists = [dict(lists[1]), dict(lists[0], members=lists[0]["members"][::-1],
                                            moderators=lists[0]["moderators"][::-1])]
    reordered_groups = [groups[1], dict(groups[0], members=groups[0]["members"][::-1])]
    assert qf.qubemail_lists(reordered_groups, reordered_lists, base_ok()) == expected


def test_lists_do_not_modify_their_input():
    groups, lists = copy.deepcopy(GROUPS), copy.deepcopy(LISTS)
    qf.qubemail_lists(groups, lists, base_ok(), {"team": ["alice"]})
    assert (groups, lists) == (GROUPS, LISTS)


def test_lists_reject_input_that_is_not_base_output():
    with pytest.raises(AnsibleFilterError, match="qubemail_lists: the third argument must be the output of "
                                                 "qubemail_base"):
        qf.qubemail_lists([], [], {"users": []})


# --------------------------------------------------------------------------
# qubemail_lists: errors
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name, fragment", [
    ("sales.eu", "no dots"), ("-sales", "matching"), ("_x", "matching"), ("sales+eu", "matching"),
    ("x" * 42, "matching"), ("", "matching"), ("sales team", "matching"), ("ünïcode", "matching"),
])
def test_bad_list_names(name, fragment):
    lines = list_errors(lists=[{"name": "ok"}, {"name": name}])
    assert_reported(lines, "qubemail_lists[1].name", repr(name)[:20], fragment)


def test_bad_group_name_mentions_the_maildir_folder():
    lines = list_errors(groups=[{"name": "dev.team"}])
    assert_reported(lines, "qubemail_groups[0].name", "'dev.team'", "no dots", "'Mailing Lists/NAME'")


@pytest.mark.parametrize("name", [42, None, ["x"]])
def test_list_name_must_be_a_string(name):
    lines = list_errors(lists=[{"name": name}])
    assert_reported(lines, "qubemail_lists[0].name", repr(name), "(a string)")


def test_missing_list_and_group_names():
    lines = list_errors(groups=[{"members": ["alice"]}], lists=[{"members": []}])
    assert_reported(lines, "qubemail_groups[0].name", "missing; every group needs a name")
    assert_reported(lines, "qubemail_lists[0].name", "missing; every list needs a name")


@pytest.mark.parametrize("variable", ["groups", "lists"])
def test_groups_and_lists_must_be_lists_of_dicts(variable):
    lines = error_lines(qf.qubemail_lists, *({"groups": ("staff", []), "lists": ([], {"name": "x"})}[variable]),
                        base_ok())
    assert_reported(lines, "qubemail_%s = " % variable, "staff" if variable == "groups" else "'name'",
                    "expected a list")
    lines = list_errors(**{variable: ["staff"]})
    assert_reported(lines, "qubemail_%s[0] = " % variable, "'staff'", "expected a dict with at least 'name'")


def test_group_list_settings_must_be_a_dict():
    lines = list_errors(groups=[{"name": "staff", "list": "archive"}])
    assert_reported(lines, "qubemail_groups[0].list = ", "'archive'", "expected a dict of list settings")


def test_unknown_keys_are_reported_with_a_suggestion():
    lines = list_errors(groups=[{"name": "staff", "member": ["alice"], "list": {"archiv": True, "members": []}}],
                        lists=[{"name": "notices", "moderator": ["alice"], "subject": "x"}])
    assert_reported(lines, "qubemail_groups[0]:", "'member'", "unknown key", "did you mean 'members'?")
    assert_reported(lines, "qubemail_groups[0].list:", "'archiv'", "did you mean 'archive'?")
    assert_reported(lines, "qubemail_groups[0].list:", "'members'", "unknown key", "allowed keys are description")
    assert_reported(lines, "qubemail_lists[0]:", "'moderator'", "did you mean 'moderators'?")
    assert_reported(lines, "qubemail_lists[0]:", "'subject'", "did you mean 'subject_prefix'?")


def test_duplicate_group_names_name_both():
    lines = list_errors(groups=[{"name": "staff"}, {"name": "dev"}, {"name": "Staff"}])
    assert_reported(lines, "qubemail_groups[2].name", "'Staff'", "duplicate group name, also qubemail_groups[0].name")


def test_duplicate_list_names_name_both():
    lines = list_errors(lists=[{"name": "notices"}, {"name": "NOTICES"}])
    assert_reported(lines, "qubemail_lists[1].name", "'NOTICES'", "duplicate list name, also qubemail_lists[0].name")


def test_list_with_the_name_of_a_group():
    lines = list_errors(groups=[{"name": "staff"}], lists=[{"name": "staff", "archive": True}])
    assert_reported(lines, "qubemail_lists[0].name", "'staff'", "group 'staff' (qubemail_groups[0].name)",
                    "put its settings under qubemail_groups[0].list")


@pytest.mark.parametrize("name", ["postmaster", "Postmaster", "MAILER-DAEMON", "root", "list", "mlarchive",
                                  "MLmmj", "systemd-network"])
def test_reserved_list_names_case_insensitive(name):
    lines = list_errors(lists=[{"name": name}])
    assert_reported(lines, "qubemail_lists[0].name", repr(name), "%r is a reserved name" % name.lower())


def test_family_alias_that_is_reserved():
    lines = list_errors(groups=[{"name": "systemd"}])
    line = assert_reported(lines, "qubemail_groups[0].name", "'systemd'", "its aliases 'systemd-request'",
                           "'systemd-unsubscribe' are reserved names")
    assert "owner-systemd" not in line
    assert len(lines) == 1


@pytest.mark.parametrize("name, fragment", [
    ("alice", "'alice' clashes with the user name 'alice'"),
    ("Info", "'info' clashes with an alias of user 'bob' in qubemail_users"),
    ("team", "'team' clashes with the site alias mta_aliases['Team']"),
])
def test_list_name_clashes(name, fragment):
    lines = list_errors(lists=[{"name": name}], mta_aliases={"Team": ["alice"]})
    assert_reported(lines, "qubemail_lists[0].name", repr(name), fragment)


def test_family_alias_clashes_with_a_user_name():
    base = qf.qubemail_base("mail.example.com", ["example.com"], [user(name="team-join")])
    lines = list_errors(lists=[{"name": "team"}], base=base)
    assert_reported(lines, "qubemail_lists[0].name", "'team'",
                    "its alias 'team-join' clashes with the user name 'team-join'")


def test_family_alias_clashes_with_a_user_alias_and_a_site_alias():
    lines = list_errors(groups=[{"name": "alice"}], lists=[{"name": "dev"}],
                        mta_aliases={"owner-dev": ["bob"]})
    assert_reported(lines, "qubemail_lists[0].name", "'dev'",
                    "its alias 'owner-dev' clashes with the site alias mta_aliases['owner-dev']")
    base = qf.qubemail_base("mail.example.com", ["example.com"], [user(aliases=["ops-leave"])])
    lines = list_errors(groups=[{"name": "ops"}], base=base)
    assert_reported(lines, "qubemail_groups[0].name", "'ops'",
                    "its alias 'ops-leave' clashes with an alias of user 'dave'")


def test_list_name_clashes_with_another_lists_alias_naming_both():
    lines = list_errors(groups=[{"name": "team"}], lists=[{"name": "team-join"}])
    assert_reported(lines, "qubemail_lists[0].name", "'team-join'",
                    "'team-join' is also an alias of group 'team' (qubemail_groups[0].name)")
    lines = list_errors(groups=[{"name": "team-join"}], lists=[{"name": "team"}])
    assert_reported(lines, "qubemail_lists[0].name", "'team'",
                    "its alias 'team-join' clashes with group 'team-join' (qubemail_groups[0].name)")


def test_two_lists_sharing_a_family_alias():
    lines = list_errors(lists=[{"name": "x-owner"}, {"name": "owner-x"}])
    assert_reported(lines, "qubemail_lists[1].name", "'owner-x'",
                    "its alias 'owner-x-owner' is also an alias of list 'x-owner' (qubemail_lists[0].name)")


def test_alias_with_the_list_name_and_an_extension_would_capture_commands():
    lines = list_errors(lists=[{"name": "dev"}], mta_aliases={"dev+help": ["alice"]})
    assert_reported(lines, "qubemail_lists[0].name", "'dev'", "the site alias mta_aliases['dev+help']",
                    "would capture the list command address 'dev+help'")
    lines = list_errors(lists=[{"name": "a"}])
    assert_reported(lines, "qubemail_lists[0].name", "'a'", "an alias of user 'alice' in qubemail_users",
                    "would capture the list command address 'a+b'")


@pytest.mark.parametrize("member, fragment", [
    ("zed", "unknown user 'zed'"),
    ("info", "unknown user 'info'; group members must be users defined in qubemail_users "
             "('info' is an alias of user 'bob': write 'bob')"),
    ("zed@example.org", "unknown user 'zed'"),
    ("friend@elsewhere.net", "a group holds users only"),
    ("notices@example.com", "unknown user 'notices'"),
    ("bad@", "local@domain"),
    (7, "expected a user name"),
])
def test_group_member_errors(member, fragment):
    lines = list_errors(groups=[{"name": "staff", "members": ["alice", member]}], lists=[{"name": "notices"}])
    assert_reported(lines, "qubemail_groups[0].members[1]", repr(member), fragment)


@pytest.mark.parametrize("member, fragment", [
    ("zed", "unknown local member 'zed'"),
    ("Zed@Example.ORG", "unknown local member 'zed'"),
    ("alice+lists@example.com", "unknown local member 'alice+lists'"),
    ("info@example.com", "'info' is an alias of user 'bob': write 'bob'"),
    ("postmaster@example.com", "unknown local member 'postmaster'"),
    ("notices-join@example.com", "unknown local member 'notices-join'"),
    ("other", "to make list 'other' a member write 'other@example.com'"),
    ("a..b@elsewhere.net", "not a simple dot-atom"),
    ("friend@localhost", "domain 'localhost'"),
    ("a@b@elsewhere.net", "local@domain"),
    (None, "expected a user name or an address local@domain"),
])
def test_list_member_errors(member, fragment):
    lines = list_errors(lists=[{"name": "notices", "members": ["alice", member]}, {"name": "other"}])
    assert_reported(lines, "qubemail_lists[0].members[1]", repr(member), fragment)


@pytest.mark.parametrize("key", ["members", "moderators", "owners"])
def test_recipient_lists_must_be_lists(key):
    lines = list_errors(lists=[{"name": "notices", key: "alice"}])
    assert_reported(lines, "qubemail_lists[0].%s = " % key, "'alice'", "expected a list")


@pytest.mark.parametrize("key", ["moderators", "owners"])
@pytest.mark.parametrize("entry, fragment", [
    ("zed", "unknown local recipient 'zed'"),
    ("nobody@example.org", "unknown local recipient 'nobody'"),
    ("bad address@elsewhere.net", "not a simple dot-atom"),
    ("x@nodot", "domain 'nodot'"),
    (3, "expected a user name or an address"),
])
def test_moderator_and_owner_errors(key, entry, fragment):
    lines = list_errors(groups=[{"name": "staff", "list": {key: ["alice", entry]}}])
    assert_reported(lines, "qubemail_groups[0].list.%s[1]" % key, repr(entry), fragment)


@pytest.mark.parametrize("moderators", [None, []])
def test_moderated_posting_needs_moderators(moderators):
    lines = list_errors(lists=[{"name": "notices", "posting": "moderated", "moderators": moderators}])
    assert_reported(lines, "qubemail_lists[0].posting", "'moderated'",
                    "needs at least one moderator in qubemail_lists[0].moderators")


@pytest.mark.parametrize("key, value, fragment", [
    ("posting", "moderate", "expected one of 'members', 'any', 'moderated' (did you mean 'moderated'?)"),
    ("posting", "everyone", "expected one of 'members', 'any', 'moderated'"),
    ("posting", True, "expected one of 'members', 'any', 'moderated'"),
    ("subscription", "confirmed", "expected one of 'confirm', 'open', 'closed' (did you mean 'confirm'?)"),
    ("subscription", "private", "expected one of 'confirm', 'open', 'closed'"),
])
def test_unknown_posting_and_subscription_values(key, value, fragment):
    lines = list_errors(groups=[{"name": "staff", "list": {key: value}}], lists=[{"name": "notices", key: value}])
    assert_reported(lines, "qubemail_groups[0].list.%s" % key, repr(value), fragment)
    assert_reported(lines, "qubemail_lists[0].%s" % key, repr(value), fragment)


@pytest.mark.parametrize("key, value, fragment", [
    ("max_message_size_kb", 0, "positive integer (kilobytes) or '' for unlimited"),
    ("max_message_size_kb", "-5", "not a string"),
    ("max_message_size_kb", "10MB", "not a string"),
    ("max_message_size_kb", True, "not a boolean"),
    ("max_message_size_kb", 1.5, "not a float"),
    ("archive_retention_days", 0, "positive integer (days) or '' to keep forever"),
    ("archive_retention_days", -1, "positive integer"),
    ("archive_retention_days", "1y", "not a string"),
    ("archive_retention_days", False, "not a boolean"),
    ("reply_to_list", "maybe", "expected a boolean"),
    ("reply_to_list", 1, "expected a boolean"),
    ("archive", "enabled", "expected a boolean"),
    ("archive", 0, "expected a boolean"),
])
def test_bad_list_setting_values(key, value, fragment):
    lines = list_errors(lists=[{"name": "notices", key: value}])
    assert_reported(lines, "qubemail_lists[0].%s" % key, repr(value), fragment)


@pytest.mark.parametrize("key, value, fragment", [
    ("description", "line one\nline two", "one-line string without newlines or other control characters"),
    ("description", "bell\x07", "control characters"),
    ("description", ["x"], "one-line string"),
    ("subject_prefix", "[notices]\r\nBcc: x@evil.example", "one-line string"),
    ("subject_prefix", "\t[notices]", "control characters"),
    ("subject_prefix", "[%s]" % ("n" * 63), "is 65 characters long; at most 64 allowed"),
    ("subject_prefix", 5, "one-line string"),
])
def test_bad_description_and_subject_prefix(key, value, fragment):
    lines = list_errors(lists=[{"name": "notices", key: value}])
    assert_reported(lines, "qubemail_lists[0].%s" % key, repr(value)[:30], fragment)


def test_subject_prefix_of_64_characters_is_accepted():
    assert one_list(subject_prefix="p" * 64)["subject_prefix"] == "p" * 64


def test_list_cannot_be_its_own_member():
    lines = list_errors(lists=[{"name": "notices", "members": ["Notices@Example.ORG"]}])
    assert_reported(lines, "qubemail_lists[0].members[0]", "'Notices@Example.ORG'",
                    "is the address of list 'notices' itself; a list cannot be its own member")


def test_lists_may_contain_each_other():
    # The loop guard stops a post that comes back; the configuration is valid.
    result = qf.qubemail_lists([{"name": "staff", "members": ["alice"]}],
                               [{"name": "la", "members": ["staff@example.com", "lb@example.com"]},
                                {"name": "lb", "members": ["la@example.com", "ext@elsewhere.net"]}],
                               base_ok())
    by_name = {entry["name"]: entry for entry in result}
    assert by_name["la"]["members"] == ["lb@example.com", "staff@example.com"]
    assert by_name["lb"]["members"] == ["ext@elsewhere.net", "la@example.com"]


def test_a_site_alias_mlarchive_is_allowed():
    # The archive account receives no mail (archives are filed from mlmmj's own archive).
    lists = qf.qubemail_lists([], [{"name": "notices", "archive": True}], base_ok(), {"mlarchive": ["alice"]})
    assert lists[0]["archive"] is True


def test_lists_mta_aliases_must_be_a_dict():
    lines = list_errors(lists=[{"name": "notices"}], mta_aliases=["team"])
    assert_reported(lines, "mta_aliases = ", "['team']", "expected a dict")


@pytest.mark.parametrize("name", ["mlarchive", "mlmmj"])
def test_list_accounts_are_reserved_user_names(name):
    lines = user_errors(user(name=name))
    assert_reported(lines, "qubemail_users[0].name", repr(name), "reserved")


def test_lists_report_every_error_in_one_message():
    lines = list_errors(groups=[{"name": "staff", "members": ["zed"], "list": {"archive": "maybe"}},
                                {"name": "staff"}],
                        lists=[{"name": "bad.name"}, {"name": "root", "posting": "moderated"},
                               {"name": "notices", "members": ["x@"], "max_message_size_kb": 0}])
    assert [line.split(" ")[0].rstrip(":") for line in lines] == [
        "qubemail_groups[1].name", "qubemail_lists[0].name", "qubemail_lists[1].name",
        "qubemail_groups[0].members[0]", "qubemail_groups[0].list.archive",
        "qubemail_lists[1].posting", "qubemail_lists[2].members[0]", "qubemail_lists[2].max_message_size_kb",
    ]


# --------------------------------------------------------------------------
# qubemail_list_acl
# --------------------------------------------------------------------------

def acl_lists():
    return qf.qubemail_lists(
        [{"name": "staff", "members": ["alice", "bob"], "list": {"archive": True}},
         {"name": "quiet", "members": ["carol"]}],
        [{"name": "friends", "members": ["carol", "pal@elsewhere.net", "staff@example.com"], "archive": "yes"},
         {"name": "empty", "archive": True}],
        base_ok())


def test_list_acl_from_local_members_only():
    assert qf.qubemail_list_acl(acl_lists()) == [
        {"mailbox": "Mailing Lists/empty", "users": []},
        {"mailbox": "Mailing Lists/friends", "users": ["carol"]},
        {"mailbox": "Mailing Lists/staff", "users": ["alice", "bob"]},
    ]


def test_list_acl_adds_local_self_subscribers():
    subscribers = {
        "friends": ["carol@example.com", "Alice@Example.ORG", "bob+lists@example.com", "pal@elsewhere.net",
                    "mlarchive+friends@example.com", "staff@example.com", "zed@example.com", "bad", 42],
        "staff": "alice@example.com\nbob@example.com\ncarol@example.com\n",
        "quiet": ["alice@example.com"],
        "unknown": ["alice@example.com"],
    }
    acl = qf.qubemail_list_acl(acl_lists(), subscribers, ["example.com", "Example.ORG"],
                               ["alice", "bob", "carol"])
    assert acl == [
        {"mailbox": "Mailing Lists/empty", "users": []},
        {"mailbox": "Mailing Lists/friends", "users": ["alice", "bob", "carol"]},
        {"mailbox": "Mailing Lists/staff", "users": ["alice", "bob", "carol"]},
    ]


def test_list_acl_needs_domains_for_secondary_domain_subscribers():
    acl = qf.qubemail_list_acl(acl_lists(), {"empty": ["alice@example.org", "bob@example.com"]})
    assert acl[0] == {"mailbox": "Mailing Lists/empty", "users": ["bob"]}


def test_list_acl_users_filter_accepts_base_users():
    subscribers = {"empty": ["zed@example.com", "carol@example.com", "friends@example.com"]}
    assert qf.qubemail_list_acl(acl_lists(), subscribers)[0]["users"] == ["carol", "zed"]
    assert qf.qubemail_list_acl(acl_lists(), subscribers, None, base_ok()["users"])[0]["users"] == ["carol"]


def test_list_acl_follows_the_archive_prefix():
    # lists_archive_prefix is a role variable: the ACL must name the same folders.
    acl = qf.qubemail_list_acl(acl_lists(), prefix="Archives/")
    assert [entry["mailbox"] for entry in acl] == [entry["mailbox"].replace("Mailing Lists/", "Archives/")
                                                   for entry in qf.qubemail_list_acl(acl_lists())]
    assert all(entry["mailbox"].startswith("Archives/") for entry in acl) and acl


def test_list_acl_never_includes_the_archive_account():
    lists = acl_lists()
    lists[0]["local_members"] = ["mlarchive"]
    acl = qf.qubemail_list_acl(lists, {"empty": ["mlarchive@example.com"]}, None, ["mlarchive"])
    assert acl[0]["users"] == []


def test_list_acl_is_stable_whatever_the_order():
    lists = acl_lists()
    subscribers = {"friends": ["bob@example.com", "alice@example.com", "bob@example.com"]}
    assert qf.qubemail_list_acl(lists[::-1], subscribers) == qf.qubemail_list_acl(lists, subscribers)
    assert qf.qubemail_list_acl(lists, subscribers)[1]["users"] == ["alice", "bob", "carol"]


def test_list_acl_rejects_bad_arguments():
    with pytest.raises(AnsibleFilterError, match="qubemail_list_acl: the first argument must be the output of "
                                                 "qubemail_lists"):
        qf.qubemail_list_acl([{"name": "x"}])
    with pytest.raises(AnsibleFilterError, match="subscribers must be a dict"):
        qf.qubemail_list_acl(acl_lists(), ["alice@example.com"])


def test_examples_describe_real_list_output():
    base = qf.qubemail_base("mail.example.com", ["example.com", "example.org"],
                            [user(name="alice"), user(name="bob")])
    result = qf.qubemail_lists([{"name": "sales", "members": ["alice"], "list": {"archive": True}}],
                               [{"name": "friends", "members": ["alice", "Pal@Elsewhere.NET", "sales@example.org"],
                                 "reply_to_list": "yes"}], base)
    example = yaml.safe_load("\n".join(
        line[3:] for line in load_filter("qubemail_lists").EXAMPLES.splitlines()
        if line.startswith("#   - {name: friends") or line.startswith("#      ")).replace("...]}", "]}"))
    friends = dict(result[0], aliases=result[0]["aliases"][:2])
    assert example == [friends]
    acl = qf.qubemail_list_acl(result, {"sales": ["alice@example.com", "bob+lists@example.org"]},
                               base["domains"], base["users"])
    assert acl == [{"mailbox": "Mailing Lists/sales", "users": ["alice", "bob"]}]


# --------------------------------------------------------------------------
# qubemail_webmail and qubemail_php_string
# --------------------------------------------------------------------------

def webmail_errors(**settings):
    return error_lines(qf.qubemail_webmail, {**DEFAULTS, **settings})


def test_webmail_defaults_are_off_and_local():
    assert webmail({}) == {
        "enabled": False, "https_port": 443, "http_port": 80, "hsts_max_age": 63072000,
        "product_name": "Qube WebMail", "language": "en_US", "session_lifetime": 30, "max_upload_mb": 10,
        "imap_host": "127.0.0.1:143", "imap_starttls": False, "smtp_host": "tls://127.0.0.1:587",
        "max_message_size": "14M", "autoconfig": True,
    }


def test_webmail_accepts_extra_vars_strings():
    # `-e webmail_enabled=true -e webmail_https_port=8443` gives strings.
    result = webmail({"webmail_enabled": "true", "webmail_https_port": "8443", "webmail_http_port": "0"})
    assert (result["enabled"], result["https_port"], result["http_port"]) == (True, 8443, 0)


def test_webmail_uses_starttls_when_dovecot_refuses_plaintext_on_loopback():
    assert webmail({"pop_plaintext_auth_from_loopback": False})["imap_host"] == "tls://127.0.0.1:143"


@pytest.mark.parametrize("port", [25, 110, 143, 993, 995, 10025, 10031, 10032])
def test_webmail_ports_leave_the_mail_services_alone(port):
    taken = "is a port of the mail services (25, 110, 143, 993, 995, 10025, 10031, 10032); choose another"
    assert webmail_errors(webmail_https_port=port) == ["webmail_https_port = %d: %s" % (port, taken)]
    assert webmail_errors(webmail_http_port=port) == ["webmail_http_port = %d: %s" % (port, taken)]


def test_webmail_port_check_follows_the_loopback_listener():
    assert webmail({"mta_loopback_port": 0, "webmail_https_port": 10025})["https_port"] == 10025
    assert webmail({"mta_loopback_port": 0, "webmail_http_port": 0})["http_port"] == 0
    assert webmail_errors(mta_loopback_port=8443, webmail_https_port=8443)[0].startswith("webmail_https_port = 8443")


@pytest.mark.parametrize("field, value, expected", [
    ("webmail_enabled", "maybe", "webmail_enabled = 'maybe': expected a boolean (true or false)"),
    ("webmail_https_port", 0, "webmail_https_port = 0: expected an integer from 1 to 65535"),
    ("webmail_https_port", 70000, "webmail_https_port = 70000: expected an integer from 1 to 65535"),
    ("webmail_http_port", 443, "webmail_http_port = 443: must differ from webmail_https_port "
                               "(use 0 to answer no plain HTTP)"),
    ("webmail_http_port", -1, "webmail_http_port = -1: expected an integer from 0 to 65535 "
                              "(0: nothing listens for plain HTTP)"),
    ("webmail_hsts_max_age", True, "webmail_hsts_max_age = True: expected an integer of at least 0 "
                                   "(seconds; 0: no Strict-Transport-Security header), not a boolean"),
    ("webmail_product_name", "Qube\nWebMail", "webmail_product_name = 'Qube\\nWebMail': expected a one-line "
                                              "string without newlines or other control characters"),
    ("webmail_product_name", "  ", "webmail_product_name = '  ': must not be empty"),
    ("webmail_product_name", "x" * 65, "webmail_product_name = '%s': is 65 characters long; at most 64 allowed"
     % ("x" * 65)),
    ("webmail_language", "English", "webmail_language = 'English': expected a Roundcube language code such as "
                                    "en_US, de_DE or fr_FR"),
    ("webmail_language", "en_US'; system('id')", None),
    ("webmail_session_lifetime", 0, "webmail_session_lifetime = 0: expected an integer from 1 to 1440 (minutes)"),
    ("webmail_max_upload_mb", "10M", "webmail_max_upload_mb = '10M': expected an integer from 1 to 2048 (MiB), "
                                     "not a string"),
    ("webmail_autoconfig", "yes please", None),
])
def test_webmail_bad_values_name_the_field(field, value, expected):
    lines = webmail_errors(**{field: value})
    assert len(lines) == 1 and lines[0].startswith(field + " = ")
    if expected:
        assert lines == [expected]


def test_webmail_reports_every_problem_at_once():
    lines = webmail_errors(webmail_enabled="perhaps", webmail_https_port="https", webmail_language="")
    assert [line.split(" = ")[0] for line in lines] == ["webmail_enabled", "webmail_https_port", "webmail_language"]


@pytest.mark.parametrize("value, literal", [
    ("Qube WebMail", "'Qube WebMail'"),
    ("it's", "'it\\'s'"),
    ("back\\slash", "'back\\\\slash'"),
    ("$config['x'] = 1; ?>", "'$config[\\'x\\'] = 1; ?>'"),
])
def test_php_string_quotes_without_interpolation(value, literal):
    assert qf.qubemail_php_string(value) == literal


def test_php_string_refuses_non_strings():
    with pytest.raises(qf.AnsibleFilterError, match="qubemail_php_string: expected a string"):
        qf.qubemail_php_string(42)
