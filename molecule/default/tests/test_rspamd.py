"""rspamd (roles/rspamd) on the mail path: what a logged-in user sends out is
DKIM-signed (checked by an independent verifier, python3-dkim, on the
client); what a stranger sends in is scored: GTUBE refused, the Junk test
pattern filed in Junk (rspamd_test_patterns in the scenario's inventory),
the rest in the inbox with Authentication-Results; what a POP-before-SMTP
grant's client sends is signed like a logged-in user's, while a stranger
beside it is still scored; a stranger's From: in our domains is refused
unless our own signature is on the message; if rspamd is down,
mail is deferred and arrives once it is back. Only Postfix and root reach
rspamd, and only rspamd reaches Redis and the daemon's grant lookups."""

import re
import shlex

import pytest

from conftest import APPLIANCE_IP, CLIENT_IP, EXTERNAL, OTHER_CLIENT_IP, grants, rcpt_codes, sink_file, sink_subjects, unique_subject, verify_dkim, wait_for

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
# rspamd's test pattern for its "add header" action: filed in Junk.
JUNK_PATTERN = "Y" + GTUBE[1:]
STRANGER = "stranger@outside.test"
SELECTOR = "mail"  # rspamd_dkim_selector's default
KEY_DIR = "/var/lib/qubemail/dkim"
MILTER_SOCKET = "/var/spool/postfix/rspamd/milter.sock"
REDIS_SOCKET = "/run/redis/redis-server.sock"
GRANTS_SOCKET = "/run/pop-before-smtp/grants.sock"  # the daemon's grant lookups, rspamd's alone


def folder_subjects(appliance, user, folder):
    """Subjects of `user`'s messages in `folder` (Dovecot's own view)."""
    result = appliance.run(f"doveadm -f flow fetch -u {user} hdr.subject mailbox {shlex.quote(folder)} all")
    return [line.split("=", 1)[1] for line in result.stdout.splitlines() if "=" in line]


def headers_of(appliance, user, folder, subject):
    return appliance.check_output(
        f"doveadm fetch -u {user} hdr mailbox {shlex.quote(folder)} subject {shlex.quote(subject)}")


def from_outside(probe, to, subject, body="Hello from outside."):
    """A stranger's message on port 25, as another server delivers it."""
    return probe("smtp", "--from", STRANGER, "--to", to, "--subject", subject, "--body", body,
                 "--header", f"From: Stranger <{STRANGER}>")


def dkim_record(appliance, domain):
    """The TXT record the role made for `domain` (DOMAIN.SELECTOR.txt), as DNS would serve it."""
    text = appliance.check_output(f"cat {KEY_DIR}/{domain}.{SELECTOR}.txt")
    return "".join(re.findall(r'"([^"]*)"', text))


@pytest.fixture
def rspamd_stopped(appliance):
    appliance.check_output("systemctl stop rspamd")
    yield
    appliance.check_output("systemctl start rspamd")
    assert wait_for(lambda: appliance.socket(f"unix://{MILTER_SOCKET}").is_listening, timeout=30)


def test_what_a_user_sends_out_is_signed_for_their_domain(appliance, client, probe):
    subject = unique_subject("signed")
    reply = probe.send(EXTERNAL, login="alice", mail_from="alice@qube.test", subject=subject)
    assert reply["data"][0] == 250, reply
    assert wait_for(lambda: subject in sink_subjects(client), timeout=30)
    path = sink_file(client, subject)
    message = client.check_output(f"cat {path}")
    signature = re.search(r"(?ms)^DKIM-Signature:(.*?)\n(?=\S)", message).group(1)
    tags = dict(part.strip().split("=", 1) for part in re.sub(r"\s+", "", signature).split(";") if "=" in part)
    assert (tags["d"], tags["s"], tags["a"]) == ("qube.test", SELECTOR, "rsa-sha256"), tags
    assert {"from", "to", "subject", "message-id"} <= set(tags["h"].lower().split(":")), tags["h"]
    assert verify_dkim(client, path, dkim_record(appliance, "qube.test")).strip() == "True"


def test_a_changed_message_fails_the_independent_check(appliance, client, probe):
    # The verifier can say no: the same kind of message, its subject changed.
    subject = unique_subject("tampered")
    assert probe.send(EXTERNAL, login="bob", mail_from="bob@qube.test", subject=subject)["data"][0] == 250
    assert wait_for(lambda: subject in sink_subjects(client), timeout=30)
    path = sink_file(client, subject)
    client.check_output(f"sed -i 's/^Subject: tampered/Subject: changed/' {path}")
    assert verify_dkim(client, path, dkim_record(appliance, "qube.test")).strip() == "False"


def authentication_results(headers):
    found = re.search(r"(?ms)^Authentication-Results: (.*?)\n(?=\S)", headers)
    return found.group(1) if found else ""


def test_a_pop_before_smtp_grant_is_signed_like_a_users_mail(appliance, client, probe, grant):
    # Port 25, no login: alice's POP3 login granted her client's address.
    subject = unique_subject("signed after POP3")
    reply = probe.send(EXTERNAL, "--header", "From: Alice <alice@qube.test>", mail_from="alice@qube.test",
                       subject=subject)
    assert rcpt_codes(reply) == [250] and reply["data"][0] == 250, reply
    assert wait_for(lambda: subject in sink_subjects(client), timeout=30)
    path = sink_file(client, subject)
    assert verify_dkim(client, path, dkim_record(appliance, "qube.test")).strip() == "True"
    # To a local user: not checked as mail from outside (no SPF/DMARC of
    # a client that is no domain's server) and not scored as spam.
    local = unique_subject("local after POP3")
    assert probe.send("carol@qube.test", "--header", "From: Alice <alice@qube.test>", mail_from="alice@qube.test",
                      subject=local)["data"][0] == 250
    assert wait_for(lambda: local in folder_subjects(appliance, "carol", "INBOX"), timeout=30)
    headers = headers_of(appliance, "carol", "INBOX", local)
    assert "spf=" not in authentication_results(headers) and "dmarc=" not in authentication_results(headers), headers
    assert "DKIM-Signature:" in headers and not re.search(r"(?m)^X-Spam: Yes", headers), headers


def test_a_stranger_beside_a_grant_is_still_checked(appliance, probe, grant):
    assert CLIENT_IP in grants(appliance)
    subject = unique_subject("stranger beside a grant")
    reply = probe("--source", OTHER_CLIENT_IP, "smtp", "--from", STRANGER, "--to", "carol@qube.test",
                  "--subject", subject, "--header", f"From: Stranger <{STRANGER}>")
    assert reply["data"][0] == 250, reply
    # Its address has no reverse DNS in the testbed: it scores as spam
    # (HFILTER_*, RDNS_NONE), which is the point, so it may be in Junk.
    folder = wait_for(lambda: next((f for f in ("INBOX", "Junk") if subject in folder_subjects(appliance, "carol", f)),
                                   None), timeout=30)
    assert folder, "the stranger's message never arrived"
    headers = headers_of(appliance, "carol", folder, subject)
    assert "spf=" in authentication_results(headers) and "dmarc=" in authentication_results(headers), headers
    assert "DKIM-Signature:" not in headers and "QUBEMAIL_POP_GRANT" not in headers


# Sends the message file argv[1] as it is, from argv[2] to argv[3], to the
# appliance's port 25 (argv[4]): a server outside handing back our mail.
RESEND = r"""
import smtplib, sys
path, sender, rcpt, server = sys.argv[1:]
with smtplib.SMTP(server, 25, local_hostname="client.test", timeout=30) as smtp:
    try:
        smtp.sendmail(sender, [rcpt], open(path, "rb").read())
        print("250")
    except smtplib.SMTPDataError as e:
        print(e.smtp_code, e.smtp_error.decode())
"""


def test_a_stranger_forging_our_domain_in_from_is_refused(probe):
    # The reproduction, into a user's inbox: the envelope is the
    # stranger's own, only the From: header claims one of our users.
    for claimed in ("Bob <bob@qube.test>", "The boss <ceo@qube-alias.test>", "root@mail.qube.test"):
        reply = probe.send("carol@qube.test", "--header", f"From: {claimed}", mail_from=STRANGER,
                           subject=unique_subject("forged"))
        assert rcpt_codes(reply) == [250], reply
        code, text = reply["data"][0], reply["data"][1]
        assert 550 <= code < 560 and "Forged sender" in text, (claimed, reply)


def test_our_signed_mail_coming_back_from_outside_is_taken(appliance, client, probe):
    # A user's signed message, handed back from outside unchanged (a list
    # elsewhere, a forward): our signature proves it, so it is not forged.
    subject = unique_subject("comes back")
    assert probe.send(EXTERNAL, login="alice", mail_from="alice@qube.test", subject=subject)["data"][0] == 250
    assert wait_for(lambda: subject in sink_subjects(client), timeout=30)
    path = sink_file(client, subject)
    reply = client.check_output(f"python3 -c {shlex.quote(RESEND)} {path} list@elsewhere.test carol@qube.test "
                                f"{APPLIANCE_IP}")
    assert reply.strip() == "250", reply
    assert wait_for(lambda: subject in folder_subjects(appliance, "carol", "INBOX"), timeout=30)
    # Changed on the way, the signature no longer holds: refused as forged.
    client.check_output(f"sed -i 's/^Subject: comes back/Subject: changed back/' {path}")
    reply = client.check_output(f"python3 -c {shlex.quote(RESEND)} {path} list@elsewhere.test carol@qube.test "
                                f"{APPLIANCE_IP}")
    assert reply.startswith("55") and "Forged sender" in reply, reply


def test_the_keys_are_2048_bit_and_only_rspamd_reads_them(appliance):
    for domain in ("qube.test", "qube-alias.test"):
        key = appliance.file(f"{KEY_DIR}/{domain}.{SELECTOR}.key")
        assert (key.user, key.group, key.mode) == ("root", "_rspamd", 0o640)
        assert "(2048 bit" in appliance.check_output(f"openssl pkey -in {key.path} -noout -text | head -1")
        assert "v=DKIM1" in dkim_record(appliance, domain)
    directory = appliance.file(KEY_DIR)
    assert (directory.user, directory.group, directory.mode) == ("root", "_rspamd", 0o750)


def test_gtube_from_outside_is_refused_during_smtp(probe):
    reply = from_outside(probe, "alice@qube.test", unique_subject("gtube"), body=GTUBE)
    assert reply["data"][0] == 554 and reply["data"][1].startswith("5.7.1 "), reply


def test_mail_that_scores_as_spam_goes_to_junk(appliance, probe):
    subject = unique_subject("junk")
    reply = from_outside(probe, "bob@qube.test", subject, body=JUNK_PATTERN)
    assert reply["data"][0] == 250, reply
    assert wait_for(lambda: subject in folder_subjects(appliance, "bob", "Junk"), timeout=30)
    assert subject not in folder_subjects(appliance, "bob", "INBOX")
    assert re.search(r"(?m)^X-Spam: Yes", headers_of(appliance, "bob", "Junk", subject))


def test_mail_from_outside_is_checked_and_not_signed(appliance, probe):
    subject = unique_subject("checked")
    assert from_outside(probe, "carol@qube.test", subject)["data"][0] == 250
    assert wait_for(lambda: subject in folder_subjects(appliance, "carol", "INBOX"), timeout=30)
    headers = headers_of(appliance, "carol", "INBOX", subject)
    results = authentication_results(headers)
    assert results.startswith("mail.qube.test;"), headers
    assert "spf=" in results and "dmarc=" in results, results
    assert "DKIM-Signature:" not in headers
    # Sealed as it came in (ARC, for the recipient's domain): the first link
    # of the chain a list copy or a forward carries on.
    assert re.search(r"(?m)^ARC-Seal: i=1; s=mail; d=qube\.test; .*cv=none", headers), headers
    assert not re.search(r"(?m)^X-Spam: Yes", headers)


def test_while_rspamd_is_down_mail_is_deferred_then_delivered(appliance, probe, rspamd_stopped):
    subject = unique_subject("deferred")
    reply = from_outside(probe, "alice@qube.test", subject)
    # Postfix answers 451 4.7.1 (milter_default_action = tempfail): the
    # sending server keeps the message and retries.
    codes = [(reply.get("mail") or [None])[0]] + rcpt_codes(reply) + [(reply.get("data") or [None])[0]]
    assert any(code is not None and 400 <= code < 500 for code in codes), reply
    assert (reply.get("data") or [None])[0] != 250, reply
    local = unique_subject("local while down")
    appliance.check_output(f"printf 'Subject: {local}\\n\\nqueued\\n' | sendmail alice")
    appliance.check_output("systemctl start rspamd")
    assert wait_for(lambda: appliance.socket(f"unix://{MILTER_SOCKET}").is_listening, timeout=30)
    # The retry is delivered, and so is what waited in the queue.
    assert from_outside(probe, "alice@qube.test", subject)["data"][0] == 250
    assert wait_for(lambda: subject in folder_subjects(appliance, "alice", "INBOX"), timeout=30)
    assert wait_for(lambda: local in folder_subjects(appliance, "alice", "INBOX"), timeout=150, interval=3)


def test_only_postfix_reaches_the_milter_and_only_rspamd_reaches_redis_and_the_grants(appliance):
    for path in (MILTER_SOCKET, REDIS_SOCKET, GRANTS_SOCKET):
        attempt = appliance.run("runuser -u nobody -- python3 -c " + shlex.quote(
            "import socket; s = socket.socket(socket.AF_UNIX); s.connect(%r)" % path))
        assert attempt.rc != 0 and "PermissionError" in attempt.stderr, (path, attempt.stderr)
    # The milter's directory keeps them out: Postfix's group may enter it.
    directory = appliance.file(MILTER_SOCKET.rsplit("/", 1)[0])
    assert (directory.user, directory.group, directory.mode) == ("_rspamd", "postfix", 0o750)
    assert appliance.file(MILTER_SOCKET).is_socket
    # Neither listens on a TCP port (rspamd's 11332-11335, Redis's 6379):
    # rspamd's HTTP scanner there would sign what any local account sends it.
    listening = appliance.check_output("ss -Hltn | awk '{print $4}'").split()
    assert not [address for address in listening
                if address.rsplit(":", 1)[-1] in {"11332", "11333", "11334", "11335", "6379"}], listening
    # rspamd's controller answers root on its unix socket.
    assert "Messages scanned" in appliance.check_output("rspamc -h /run/rspamd/controller.sock stat")

