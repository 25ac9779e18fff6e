"""The default maximum message size (this scenario leaves
mta_max_message_size_kb unset): 25 MB, refused during the SMTP dialogue."""

from probe import rcpt_codes, unique_subject, wait_for

LIMIT = 25 * 1024 * 1024


def send_big(probe, size, subject):
    """A message of about `size` bytes to dave, from outside. The SMTP client
    waits up to 2 minutes for each reply: rspamd scans the whole message
    before Postfix answers DATA (mailprobe's 15 s is short for 25 MB on a busy machine)."""
    return probe("--timeout", 120, "smtp", "--from", "probe@client.test", "--to", "dave@qube.test",
                 "--size", size, "--subject", subject)


def test_default_size_limit_is_25_mb(probe, appliance):
    # A just-too-big message: the server reads it all, then answers 552.
    big = unique_subject("just over 25 MB")
    reply = send_big(probe, LIMIT + 64 * 1024, big)
    assert rcpt_codes(reply) == [250], reply
    assert reply["data"][0] == 552 and reply["data"][1].startswith("5.3.4"), reply
    assert "SIZE 26214400" in reply["ehlo_text"], reply

    # A message just under it is accepted and delivered whole.
    small = unique_subject("just under 25 MB")
    reply = send_big(probe, LIMIT - 256 * 1024, small)
    assert reply["data"][0] == 250, reply
    search = f"doveadm -f flow fetch -u dave 'size.virtual hdr.subject' mailbox INBOX header Subject '{small}'"
    try:
        fetched = wait_for(lambda: appliance.check_output(search), timeout=60)
        assert fetched and int(fetched.split("size.virtual=")[1].split()[0]) > LIMIT - 300 * 1024, fetched
    finally:
        # Keep dave's mailbox small for the other tests that read all of it.
        appliance.run(f"doveadm expunge -u dave mailbox INBOX header Subject '{small}'")
    # The refused one was answered 552, so it was never queued: the one
    # delivered above is the only one with either subject.
    assert not appliance.check_output(
        f"doveadm search -u dave mailbox INBOX header Subject '{big}'")
