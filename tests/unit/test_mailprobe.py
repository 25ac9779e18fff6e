"""Unit tests for tests/clients/mailprobe.py: the headers of the messages it sends."""
import email
import email.policy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))
from mailprobe import _message  # noqa: E402


def headers(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_own_headers_by_default():
    message = headers(_message("a@client.test", "b@qube.test", "hi"))
    assert message["From"].addresses[0].addr_spec == "a@client.test"
    assert message["Subject"] == "hi"
    assert len(message.get_all("Message-ID")) == 1


def test_a_given_header_replaces_mailprobes_own():
    # One Message-ID, the given one: Dovecot threads by the first, so a
    # second one after mailprobe's left replies unlinked (docs/DESIGN.md).
    message = headers(_message("a@client.test", "b@qube.test", "hi", extra_headers=["message-id: <t.1@client.test>"]))
    assert message.get_all("Message-ID") == ["<t.1@client.test>"]


def test_other_given_headers_are_added():
    message = headers(_message("a@client.test", "b@qube.test", "Re: hi",
                               extra_headers=["In-Reply-To: <t.1@client.test>", "References: <t.1@client.test>"]))
    assert message["In-Reply-To"] == message["References"] == "<t.1@client.test>"
    assert len(message.get_all("Message-ID")) == 1


def test_omitted_header_is_left_out():
    assert headers(_message("a@client.test", "b@qube.test", "hi", omit=["From"]))["From"] is None
