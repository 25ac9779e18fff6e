"""Authenticated submission (587 STARTTLS, 465 TLS): logins checked by
Dovecot through a socket only Postfix can reach, AUTH only under TLS, and
each user sending only as the addresses that are theirs (qubemail_users:
name and aliases at every domain, send_as; the lists they own)."""

import shlex

import pytest

from conftest import EXTERNAL, PASSWORDS, rcpt_codes, sink_subjects, subjects, unique_subject, wait_for

AUTH_SOCKET = "/var/spool/postfix/private/auth"


def submit(probe, user, to, mail_from, port=587, password=None, subject=None, data=True):
    """A session as `user`'s mail program: TLS, AUTH PLAIN, MAIL, RCPT (DATA)."""
    tls = ["--ssl"] if port == 465 else ["--starttls"]
    return probe("--port", port, "smtp", *tls, "--login", user, "--password", password or PASSWORDS[user],
                 "--from", mail_from, "--to", to, "--subject", subject or unique_subject("submission"),
                 *([] if data else ["--no-data"]))


def _arrives(probe, user, subject):
    return wait_for(lambda: subject in subjects(probe.imap(user)["messages"]), timeout=30)


@pytest.mark.parametrize("port", [587, 465])
def test_a_logged_in_user_sends_to_a_user_and_out(probe, client, port):
    inside, outside = unique_subject(f"in via {port}"), unique_subject(f"out via {port}")
    reply = submit(probe, "alice", "bob@qube.test", "alice@qube.test", port, subject=inside)
    assert reply["auth"][0] == 235, reply
    assert reply["data"][0] == 250, reply
    reply = submit(probe, "alice", EXTERNAL, "alice@qube.test", port, subject=outside)
    assert reply["data"][0] == 250, reply
    assert _arrives(probe, "bob", inside)
    assert wait_for(lambda: outside in sink_subjects(client), timeout=30)


def test_auth_is_offered_only_after_starttls(probe):
    plain = probe("--port", 587, "smtp", "--from", "alice@qube.test", "--to", "bob@qube.test", "--no-data")
    assert "AUTH" not in plain["ehlo_text"].upper().split(), plain["ehlo_text"]
    # without TLS nothing is accepted on 587, not even mail to a user
    assert plain["mail"][0] == 530 and "STARTTLS" in plain["mail"][1], plain
    secured = probe("--port", 587, "smtp", "--starttls", "--from", "alice@qube.test", "--to", "bob@qube.test",
                    "--no-data")
    assert "AUTH PLAIN LOGIN" in secured["ehlo_text"], secured["ehlo_text"]
    # port 25 never offers AUTH, with or without TLS
    inbound = probe("smtp", "--starttls", "--to", "bob@qube.test", "--no-data")
    assert "AUTH" not in inbound["ehlo_text"].upper(), inbound["ehlo_text"]


@pytest.mark.parametrize("port", [587, 465])
def test_submission_without_a_login_is_refused(probe, port, no_grant):
    tls = ["--ssl"] if port == 465 else ["--starttls"]
    reply = probe("--port", port, "smtp", *tls, "--from", "probe@client.test", "--to", "bob@qube.test", "--no-data")
    assert rcpt_codes(reply) == [530], reply
    assert "Authentication required" in reply["rcpt"][0][2]


def test_wrong_password_is_refused_and_sends_nothing(probe):
    reply = submit(probe, "alice", EXTERNAL, "alice@qube.test", password="wrong", data=False)
    assert reply["auth"][0] == 535, reply
    assert rcpt_codes(reply) == [530], reply


@pytest.mark.parametrize("user, sender", [
    ("alice", "alice@qube-alias.test"),   # her name at the other domain
    ("alice", "sales@qube.test"),         # her alias
    ("alice", "Sales@Qube-Alias.test"),   # her alias at the other domain, any case
    ("alice", "alice+news@qube.test"),    # an address extension of her own
    ("bob", "office@qube.test"),          # granted by send_as
    ("bob", "announce@qube-alias.test"),  # the list he owns, at either domain
])
def test_a_user_may_send_as_each_address_of_theirs(probe, user, sender):
    subject = unique_subject(f"{user} as {sender}")
    reply = submit(probe, user, "carol@qube.test", sender, subject=subject)
    assert rcpt_codes(reply) == [250], reply
    assert _arrives(probe, "carol", subject)


@pytest.mark.parametrize("user, sender", [
    ("carol", "bob@qube.test"),           # another user
    ("carol", "sales@qube.test"),         # another user's alias
    ("alice", "office@qube.test"),        # a site alias she receives but was not granted
    ("alice", "ceo@bigbank.example"),     # anyone else's
    ("alice", "postmaster@qube.test"),
    ("alice", "announce@qube.test"),      # a list she is a member of, not an owner
])
def test_a_user_may_not_send_as_anyone_else(probe, user, sender):
    reply = submit(probe, user, "carol@qube.test", sender, data=False)
    assert reply["auth"][0] == 235, reply
    assert rcpt_codes(reply) == [553], reply
    assert f"not owned by user {user}" in reply["rcpt"][0][2], reply


def test_a_login_as_name_at_domain_is_the_same_user(probe):
    subject = unique_subject("logged in as alice@qube-alias.test")
    reply = probe("--port", 587, "smtp", "--starttls", "--login", "alice@qube-alias.test",
                  "--password", PASSWORDS["alice"], "--from", "alice@qube.test", "--to", "carol@qube.test",
                  "--subject", subject)
    assert reply["auth"][0] == 235 and rcpt_codes(reply) == [250], reply
    assert _arrives(probe, "carol", subject)


def test_only_postfix_can_reach_the_login_socket(appliance):
    socket = appliance.file(AUTH_SOCKET)
    assert socket.is_socket and socket.user == "postfix" and socket.group == "postfix"
    assert socket.mode == 0o660
    # Another local account (nobody) cannot even reach it to try passwords.
    attempt = appliance.run("runuser -u nobody -- python3 -c " + shlex.quote(
        "import socket; s = socket.socket(socket.AF_UNIX); s.connect(%r)" % AUTH_SOCKET))
    assert attempt.rc != 0 and "PermissionError" in attempt.stderr, attempt.stderr
    # while root can, and Dovecot's auth service answers there
    handshake = appliance.run("python3 -c " + shlex.quote(
        "import socket; s = socket.socket(socket.AF_UNIX); s.connect(%r);"
        " s.sendall(b'VERSION\\t1\\t2\\nCPID\\t1\\n'); s.settimeout(5); data = b''\n"
        "while b'DONE' not in data:\n    data += s.recv(4096) or b'DONE'\nprint(data.decode())" % AUTH_SOCKET))
    assert handshake.rc == 0 and "MECH\tPLAIN" in handshake.stdout, handshake.stdout + handshake.stderr
