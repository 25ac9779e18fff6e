"""Mail through the host the README converged, with real SMTP, POP3 and
IMAP sessions from this machine (tests/clients/mailprobe.py)."""

from conftest import rcpt_codes, readme, subjects, unique_subject, wait_for

DOMAIN = readme.DOMAINS[0]


def _arrives(reader, user, subject, protocol):
    def check():
        reply = reader.pop3(user) if protocol == "pop3" else reader.imap(user)
        assert reply["login"], reply
        return subject in subjects(reply["messages"])
    return wait_for(check, timeout=60)


def test_mail_to_office_users_arrives_over_pop3_and_imap(outsider, reader):
    # alice logs in with the password of the vault's hash, bob with the vault's plain one.
    subject = unique_subject("hello office")
    reply = outsider.send([f"alice@{DOMAIN}", f"bob@{readme.DOMAINS[1]}"], mail_from="friend@elsewhere.test",
                          subject=subject)
    assert rcpt_codes(reply) == [250, 250], reply
    assert reply["data"][0] == 250, reply
    # From the controller's address, which has no reverse DNS name, to a
    # sender domain that does not resolve: rspamd may score it over
    # rspamd_junk_score (8.3 in CI: RDNS_NONE, HFILTER_HOSTNAME_UNKNOWN...)
    # and file it in Junk, which POP3 does not show. So: in the inbox or in
    # Junk, read over IMAP, and POP3 logs in with the vault's password.
    assert reader.pop3("alice")["login"] is True
    for user in ("alice", "bob"):
        assert wait_for(lambda: any(subject in subjects(reader.imap(user, mailbox=box)["messages"])
                                    for box in ("INBOX", "Junk")), timeout=60), user


def test_relay_from_outside_the_office_network_is_refused(outsider):
    reply = outsider.send("friend@elsewhere.test", "--no-data", mail_from="traveller@elsewhere.test")
    assert rcpt_codes(reply) == [554], reply
    assert "Relay access denied" in reply["rcpt"][0][2]
    # and as one of our users: refused as a sender that is not theirs to use
    reply = outsider.send("friend@elsewhere.test", "--no-data", mail_from=f"alice@{DOMAIN}")
    assert rcpt_codes(reply) == [553], reply


def test_a_pop3_login_opens_relay_for_its_address(reader):
    assert reader.pop3("bob")["login"] is True
    reply = reader.send("friend@elsewhere.test", "--no-data", mail_from=f"bob@{DOMAIN}")
    assert rcpt_codes(reply) == [250], reply


def test_webmail_answers_over_https(outsider):
    reply = outsider("https", "--host", readme.HOSTNAME)
    assert reply.get("status") == 200, reply
    assert "roundcube" in reply["body"].lower()
