"""The qubemail_senders filter: users own their addresses, a list's owners
among the users own the list's address at every domain."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from conftest import all_filters, load_filter
from test_filter_qubemail import base_ok

qf = all_filters()
senders = load_filter("qubemail_senders").qubemail_senders


def lists(*entries):
    return qf.qubemail_lists([], list(entries), base_ok())


def test_without_lists_the_table_is_the_users_own():
    assert senders(base_ok(), []) == base_ok()["sender_logins"]


def test_a_user_owner_may_send_as_the_list_at_every_domain():
    table = dict(senders(base_ok(), lists({"name": "notices", "members": ["alice"], "owners": ["bob", "carol"]})))
    assert table["notices@example.com"] == table["notices@example.org"] == "bob,carol"
    # Members that do not own the list do not become its senders.
    assert "alice" not in table["notices@example.com"]


def test_an_owner_named_by_alias_or_address_is_its_user():
    table = dict(senders(base_ok(), lists({"name": "notices", "owners": ["sales", "Alice.L@example.org"]})))
    assert table["notices@example.com"] == "alice,bob"


def test_external_owners_and_the_default_postmaster_own_nothing():
    table = dict(senders(base_ok(), lists({"name": "notices", "owners": ["someone@partner.example"]},
                                          {"name": "misc"})))
    assert "notices@example.com" not in table and "misc@example.com" not in table
    assert table == dict(base_ok()["sender_logins"])


def test_an_owner_keeps_their_own_addresses():
    table = dict(senders(base_ok(), lists({"name": "notices", "owners": ["bob"]})))
    assert table["bob@example.com"] == "bob" and table["sales@example.org"] == "bob"


def test_wrong_arguments_are_a_usage_error():
    with pytest.raises(AnsibleFilterError,
                       match="qubemail_senders: the first argument must be the output of qubemail_base"):
        senders({"users": []}, [])
    with pytest.raises(AnsibleFilterError, match="qubemail_senders: expected the outputs"):
        senders(base_ok(), [{"name": "x"}])
