"""The qubemail_fail2ban filter: jails, addresses never banned, and bad input."""

from __future__ import annotations

import pytest

from conftest import load_filter, role_defaults
from test_filter_qubemail import error_lines

fail2ban = load_filter("qubemail_fail2ban")


def settings(**changes):
    values = {name: value for name, value in role_defaults().items() if name in fail2ban.FAIL2BAN_SETTINGS}
    values.update(changes)
    return values


def test_the_defaults_ban_for_an_hour_after_ten_failures_in_ten_minutes():
    config = fail2ban.qubemail_fail2ban(settings())
    assert config["enabled"] is True
    assert (config["maxretry"], config["findtime"], config["bantime"]) == (10, 600, 3600)
    assert config["ignoreip"] == ["127.0.0.0/8", "::1"]


def test_submission_and_dovecot_are_jailed_and_webmail_only_when_it_is_on():
    names = [jail["name"] for jail in fail2ban.qubemail_fail2ban(settings(webmail_enabled=False))["jails"]]
    assert names == ["postfix-sasl", "dovecot"]
    jails = fail2ban.qubemail_fail2ban(settings(webmail_enabled=True))["jails"]
    assert [jail["name"] for jail in jails] == ["postfix-sasl", "dovecot", "roundcube-auth"]
    # Postfix's smtpd processes run in postfix@-.service on Debian 12 and 13.
    assert "_SYSTEMD_UNIT=postfix@-.service" in jails[0]["filter"] and "mode=auth" in jails[0]["filter"]


def test_ignored_networks_follow_loopback_once_each():
    config = fail2ban.qubemail_fail2ban(settings(fail2ban_ignore=["198.51.100.0/24", "2001:db8::/32",
                                                                  "198.51.100.0/24", "127.0.0.0/8"]))
    assert config["ignoreip"] == ["127.0.0.0/8", "::1", "198.51.100.0/24", "2001:db8::/32"]


def test_the_relay_allowed_networks_are_never_banned():
    config = fail2ban.qubemail_fail2ban(settings(mta_relay_allowed_networks=["192.168.1.0/24"],
                                                 fail2ban_ignore=["203.0.113.7", "192.168.1.0/24"]))
    assert config["ignoreip"] == ["127.0.0.0/8", "::1", "192.168.1.0/24", "203.0.113.7/32"]


def test_extra_vars_as_strings_are_read_as_numbers():
    assert fail2ban.qubemail_fail2ban(settings(fail2ban_maxretry="3"))["maxretry"] == 3


@pytest.mark.parametrize("changes, line", [
    ({"fail2ban_maxretry": 0}, "fail2ban_maxretry = 0: expected an integer from 1 to 1000 (failed logins)"),
    ({"fail2ban_findtime": 5}, "fail2ban_findtime = 5: expected an integer from 10 to 86400 (seconds)"),
    ({"fail2ban_bantime": -1}, "fail2ban_bantime = -1: expected an integer from 10 to 31536000 (seconds)"),
    ({"fail2ban_bantime": True}, "fail2ban_bantime = True: expected an integer from 10 to 31536000 (seconds), "
                                 "not a boolean"),
    ({"fail2ban_enabled": "maybe"}, "fail2ban_enabled = 'maybe': expected a boolean (true or false)"),
    ({"fail2ban_ignore": ["198.51.100.1/24"]}, "fail2ban_ignore[0] = '198.51.100.1/24': host bits are set; "
                                               "did you mean '198.51.100.0/24'?"),
    ({"fail2ban_ignore": "198.51.100.0/24"}, "fail2ban_ignore = '198.51.100.0/24': expected a list"),
])
def test_bad_input_names_the_field(changes, line):
    assert error_lines(fail2ban.qubemail_fail2ban, settings(**changes)) == [line]


def test_too_many_ignored_addresses_are_refused():
    many = ["198.51.100.%d" % n for n in range(101)]
    lines = error_lines(fail2ban.qubemail_fail2ban, settings(fail2ban_ignore=many))
    assert len(lines) == 1 and lines[0].startswith("fail2ban_ignore = ") and "at most 100" in lines[0]


def test_all_errors_show_at_once():
    lines = error_lines(fail2ban.qubemail_fail2ban, settings(fail2ban_maxretry=0, fail2ban_findtime=0))
    assert [line.split(" = ")[0] for line in lines] == ["fail2ban_maxretry", "fail2ban_findtime"]
