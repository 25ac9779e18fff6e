"""A list archive tells a non-member nothing, not even that it exists, also
right after a fresh list's first post. A probe once saw a non-member's
STATUS answer OK with the message count when a member had asked STATUS
only (no SELECT) about 5 s after the first post; this is that sequence:
a fresh archived list, its first post, the member's STATUS at 1, 5 and
10 s, then every IMAP command that could leak, as the non-member: each
answer must be the same as for a mailbox that does not exist at all. And
doveadm run by the non-member's local account learns nothing either."""

import re
import time
import uuid

import pytest
import yaml
from conftest import DOMAIN, SCENARIO, converge
from probe import rcpt_codes, unique_subject, wait_for

testinfra_hosts = ["docker://qubemail-lists-appliance"]

LEAKY = ["status", "list", "lsub", "select", "examine", "myrights", "getacl"]
# Dovecot ends a tagged answer with how long it took, "(0.001 + 0.000 secs).",
# or with a third figure when the command waited ("(0.001 + 0.000 + 0.001
# secs)."), which differs between any two answers.
TIMING = re.compile(r" \([0-9.]+(?: \+ [0-9.]+)* secs\)")


@pytest.fixture
def fresh_list():
    """A list that did not exist before, archived, alice its only member;
    the scenario's lists again afterwards (its directory stays, as for any
    list removed from the inventory)."""
    name = f"fresh{uuid.uuid4().hex[:6]}"
    lists = yaml.safe_load((SCENARIO / "group_vars" / "qubemail.yml").read_text())["qubemail_lists"]
    fresh = {"name": name, "members": ["alice"], "posting": "any", "archive": True}
    try:
        converge({"qubemail_lists": [*lists, fresh]}, ["--tags", "lists"])
        yield name
    finally:
        converge({}, ["--tags", "lists"])


def ask(probe, user, mailbox, *commands):
    out = probe("imap-ask", "--user", user, "--password", probe.passwords[user], "--mailbox", mailbox,
                *(arg for c in commands for arg in ("--ask", c)))
    assert out["login"], out
    return out["answers"]


def comparable(data, name):
    """An answer's text with the mailbox's name and the timing taken out."""
    return [TIMING.sub("", d).replace(name, "NAME") for d in data]


def messages(status_answer):
    """MESSAGES n from a STATUS answer, or None when it was refused."""
    _, status, data = status_answer
    if status != "OK":
        return None
    return int(data[0].split("MESSAGES ", 1)[1].split()[0].rstrip(")"))


def doveadm_status(appliance, user, mailbox):
    """doveadm run by `user`'s own local account (root's doveadm is trusted
    and sees every mailbox: its sessions are admin sessions)."""
    result = appliance.run(f"runuser -u {user} -- doveadm mailbox status -u {user} messages '{mailbox}'")
    return result.rc, result.stdout.strip(), result.stderr.strip()


def test_a_non_member_learns_nothing_about_a_fresh_archive(probe, appliance, fresh_list):
    archive, missing = f"Mailing Lists/{fresh_list}", f"Mailing Lists/none{uuid.uuid4().hex[:6]}"
    subject = unique_subject("first post")
    start = time.monotonic()
    assert rcpt_codes(probe.send(f"{fresh_list}@{DOMAIN}", mail_from=f"alice@{DOMAIN}", subject=subject,
                                 login="alice")) == [250]
    for at in (1, 5, 10):  # the member asks STATUS only, at these times after the post
        time.sleep(max(0.0, start + at - time.monotonic()))
        ask(probe, "alice", archive, "status")
    # The archive has the post now: there is something to leak.
    assert wait_for(lambda: messages(ask(probe, "alice", archive, "status")[0]) == 1, timeout=60)

    seen = ask(probe, "dave", archive, *LEAKY)
    expected = ask(probe, "dave", missing, *LEAKY)
    assert [(c, s) for c, s, _ in seen] == [(c, s) for c, s, _ in expected], seen
    for (command, status, data), (_, _, data_missing) in zip(seen, expected):
        assert comparable(data, fresh_list) == comparable(data_missing, missing.split("/")[1]), (command, data)
        assert status != "OK" or data == [], (command, status, data)
    rc, out, err = doveadm_status(appliance, "dave", archive)
    assert rc != 0 and "messages=" not in out, (rc, out, err)
