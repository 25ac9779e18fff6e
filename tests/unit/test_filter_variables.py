"""qubemail_variables: every role variable against its argument spec, and
misspelt names, before any role runs."""

import pytest

from conftest import load_filter, role_defaults, role_specs

qv = load_filter("qubemail_variables")
SPECS = role_specs()
PREFIXES = ["qubemail_", "mta_", "pop_", "lists_", "webmail_"]


def check(values, defined=()):
    return qv.qubemail_variables(values, SPECS, list(defined), PREFIXES, collect=True)


def lines(values, defined=()):
    return [error["line"] for error in check(values, defined)["errors"]]


def test_missing_names_take_the_spec_default_and_nothing_else_is_added():
    result = check({"mta_catch_all": "carol"})
    assert result["errors"] == []
    assert result["config"] == {**role_defaults(), "mta_catch_all": "carol"}


def test_the_role_defaults_pass_their_own_specs():
    assert check(role_defaults())["errors"] == []


@pytest.mark.parametrize("name, value, line", [
    ("pop_tls_min_protocol", "TLSv13",
     "pop_tls_min_protocol = 'TLSv13': expected a string, one of 'TLSv1.2', 'TLSv1.3' (did you mean 'TLSv1.3'?)"),
    ("pop_before_smtp_protocols", ["pop3", "imapp"],
     "pop_before_smtp_protocols = ['pop3', 'imapp']: expected a list of strings, each one of 'pop3', 'imap' "
     "(did you mean 'imap'?)"),
    ("webmail_https_port", "https", "webmail_https_port = 'https': expected an integer"),
    ("lists_purge_removed", "perhaps", "lists_purge_removed = 'perhaps': expected a boolean (true or false)"),
    ("mta_aliases", ["postmaster"], "mta_aliases = ['postmaster']: expected a dict"),
    ("lists_spool", "var/spool/mlmmj",
     "lists_spool = 'var/spool/mlmmj': expected an absolute path without spaces or control characters"),
    ("pop_users_file", "/etc/dovecot/my users",
     "pop_users_file = '/etc/dovecot/my users': expected an absolute path without spaces or control characters"),
])
def test_a_bad_value_names_the_variable_its_value_and_what_is_expected(name, value, line):
    assert lines({name: value}) == [line]


def test_every_bad_value_is_reported_at_once():
    assert len(lines({"pop_tls_min_protocol": "SSLv3", "webmail_https_port": "x", "lists_spool": "rel"})) == 3


def test_extra_vars_strings_pass_as_ansible_converts_them():
    assert lines({"webmail_https_port": "8443", "pop_imap_enabled": "false", "mta_smtp_enabled": "yes"}) == []


@pytest.mark.parametrize("name, meant", [
    ("mta_relay_alowed_networks", "mta_relay_allowed_networks"),
    ("pop_before_smtp_tll", "pop_before_smtp_ttl"),
    ("webmail_enable", "webmail_enabled"),
    ("qubemail_user", "qubemail_users"),
])
def test_a_misspelt_name_is_reported_with_the_closest_known_one(name, meant):
    [line] = lines({}, defined=[name, "ansible_host", "vault_alice_password"])
    assert line.startswith("%s: is not a variable of any qubemail role (did you mean %r?)" % (name, meant))


def test_a_name_like_nothing_still_is_reported_and_foreign_names_are_left_alone():
    assert lines({}, defined=["lists_zzzzzzzz_qqqq", "vault_x", "my_own_var", "ansible_user"]) == [
        "lists_zzzzzzzz_qqqq: is not a variable of any qubemail role (misspelt?); see the roles' README tables"]


def test_without_collect_the_errors_raise_in_one_message():
    with pytest.raises(qv.AnsibleFilterError) as info:
        qv.qubemail_variables({"webmail_https_port": "x"}, SPECS)
    assert str(info.value).splitlines()[1].strip() == "webmail_https_port = 'x': expected an integer"
    assert info.value.errors[0]["variable"] == "webmail_https_port"


def test_a_spec_without_options_is_a_usage_error():
    with pytest.raises(qv.AnsibleFilterError, match="has no options"):
        qv.qubemail_variables({}, {"mta": {}})
