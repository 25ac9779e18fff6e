"""SMTP smuggling (CVE-2023-51764, postfix.org/smtp-smuggling.html): bytes
sent exactly as an attacker would, from the client container (not in
mynetworks), with mailprobe's raw mode. The server's own replies say how many
messages it queued; the mailbox then shows what was delivered."""

import pytest

from conftest import CLIENT, subjects, unique_subject, wait_for

testinfra_hosts = [f"docker://{CLIENT}"]

EHLO = r"1:EHLO client.test\r\n"
ENVELOPE = r"3:MAIL FROM:<probe@client.test>\r\nRCPT TO:<carol@qube.test>\r\nDATA\r\n"


def queued(replies):
    return [text for code, text in replies if code == 250 and "queued as" in text]


@pytest.mark.parametrize("ending", [r"\n.\r\n", r"\r\n.\n", r"\n.\n"],
                         ids=["LF.CRLF", "CRLF.LF", "LF.LF"])
def test_smuggled_second_message_stays_inside_the_first(probe, ending):
    first, second = unique_subject("smuggle carrier"), unique_subject("smuggled ceo")
    payload = (
        rf"From: <probe@client.test>\r\nTo: <carol@qube.test>\r\nSubject: {first}\r\n\r\n"
        rf"carrier text{ending}"
        r"MAIL FROM:<ceo@bigbank.example>\r\nRCPT TO:<carol@qube.test>\r\nDATA\r\n"
        rf"From: ceo@bigbank.example\r\nTo: carol@qube.test\r\nSubject: {second}\r\n\r\n"
        r"Please wire the money today.\r\n.\r\nQUIT\r\n"
    )
    # One write for everything after DATA's 354, then read until the server
    # closes: every byte has been processed when this returns.
    reply = probe("raw", "--step", EHLO, "--step", ENVELOPE, "--step", "eof:" + payload)
    assert "error" not in reply, reply
    assert [code for code, _ in reply["steps"][1]] == [250, 250, 354], reply
    after_data = reply["steps"][2]
    assert len(queued(after_data)) == 1, after_data
    assert [code for code, _ in after_data] == [250, 221], after_data

    def delivered():
        messages = probe.pop3("carol")["messages"]
        return [m for m in messages if m["subject"] in (first, second)]
    messages = wait_for(delivered, timeout=30)
    # The one queued message is the carrier; the "second message" is its text.
    assert [m["subject"] for m in messages] == [first], messages
    assert "ceo@bigbank.example" in messages[0]["body"]
    assert second not in subjects(probe.pop3("carol")["messages"])


def test_message_text_sent_before_the_354_is_refused(probe):
    # The pipelined form: DATA and its text in one write, without waiting for
    # 354 (RFC 2920 makes DATA the last command of a group). Postfix
    # disconnects (smtpd_forbid_unauth_pipelining) and queues nothing.
    subject = unique_subject("pipelined text")
    reply = probe("raw", "--step", EHLO, "--step",
                  r"eof:MAIL FROM:<probe@client.test>\r\nRCPT TO:<carol@qube.test>\r\nDATA\r\n"
                  rf"Subject: {subject}\r\n\r\ntoo early\r\n.\r\nQUIT\r\n")
    assert "error" not in reply and reply["closed"], reply
    replies = reply["steps"][1]
    assert queued(replies) == [], replies
    assert replies[-1][0] == 554 and "synchronization" in replies[-1][1], replies
    # The server is still fine: the same message the right way arrives.
    assert probe.send("carol@qube.test", subject=subject)["data"][0] == 250
    assert wait_for(lambda: subject in subjects(probe.pop3("carol")["messages"]), timeout=30)
