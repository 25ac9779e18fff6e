"""Mailing lists end to end, with real SMTP and IMAP sessions: group lists,
independent lists with external members, policies, archive, loop guard,
and membership following the inventory.

Each test makes what it needs (its own posts, subscriptions and inventory
changes, undone afterwards), so any test passes alone and in any order. A
test that asserts that something did not happen first waits for the list
engine's answer to the message (the members' copies, the moderation request,
the discarded copy in mlmmj's queue/discarded, mlmmj's own log line) and for
nothing to be left in flight for the address (settled)."""

import json
import re
import shlex
import uuid

import pytest
from conftest import DOMAIN, header, journal, subscribers, unsubscribed
from probe import rcpt_codes, subjects, unique_subject, wait_for

testinfra_hosts = ["docker://qubemail-lists-appliance"]


def inbox(probe, user):
    reply = probe.imap(user)
    assert reply["login"], reply
    return reply["messages"]


def arrived(probe, user, subject, timeout=40):
    """The message with `subject` once it is in the user's INBOX, else None."""
    found = wait_for(lambda: [m for m in inbox(probe, user) if subject in m["subject"]], timeout=timeout)
    return found[0] if found else None


def settled(appliance, *users):
    """Wait until the list engine is idle (no mlmmj-process or mlmmj-send
    running) and Postfix holds nothing for `users`: whatever was handed over
    for them has been delivered by then."""
    addresses = [u if "@" in u else f"{u}@{DOMAIN}" for u in users]

    def idle():
        busy = appliance.run("pgrep -x mlmmj-process || pgrep -x mlmmj-send || pgrep -f [q]ubemail-list-receive")
        return busy.rc == 1 and not any(queued_for(appliance, a) for a in addresses)
    assert wait_for(idle, timeout=60), f"mail still in flight for {addresses}"


def absent(probe, appliance, user, subject):
    """True if `subject` is not in the user's INBOX once nothing is in flight
    for them. Only meaningful after the engine's answer was seen."""
    settled(appliance, user)
    return not [m for m in inbox(probe, user) if subject in m["subject"]]


def discarded(appliance, list_name, subject, timeout=40):
    """The copies of `subject` that mlmmj discarded for `list_name` (its
    access rules move them to queue/discarded), once there is one."""
    spool = f"/var/spool/mlmmj/{list_name}/queue/discarded"
    return wait_for(lambda: appliance.run(f"grep -lsF {shlex.quote(subject)} -r {spool}").stdout.split(),
                    timeout=timeout)


def post(probe, sender, list_name, subject, *extra):
    # as the member's mail program does: logged in, on submission
    reply = probe.send(f"{list_name}@{DOMAIN}", *extra, mail_from=f"{sender}@{DOMAIN}", subject=subject, login=sender)
    assert rcpt_codes(reply) == [250], reply
    return reply


# The postmaster's mail (root's Maildir: the lists' owners default to
# postmaster@): decoded Subject, Reply-To, the original recipient, and the
# headers of an attached message (a held post in a moderation request).
POSTMASTER_DUMP = r"""
import email, email.policy, json, pathlib
out = []
for path in sorted(pathlib.Path('/root/Maildir/new').glob('*')):
    m = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    attached = [p.get_content() for p in m.walk() if p.get_content_type() == 'message/rfc822']
    out.append({'subject': str(m['Subject'] or ''), 'reply_to': str(m['Reply-To'] or ''),
                'to': str(m['X-Original-To'] or m['Delivered-To'] or ''),
                'attached': [[k, str(v)] for a in attached for k, v in a.items()]})
print(json.dumps(out))
"""


def postmaster_mail(appliance, text):
    """The postmaster's messages whose Subject contains `text`, once there is one, else []."""
    def found():
        mail = json.loads(appliance.check_output("python3 -c %s", POSTMASTER_DUMP))
        return [m for m in mail if text in m["subject"]]
    return wait_for(found, timeout=40) or []


def queued_for(appliance, address):
    """Messages in Postfix's queue with `address` among their recipients."""
    out = appliance.check_output("postqueue -j")
    return [q for q in map(json.loads, out.splitlines())
            if any(r["address"] == address for r in q["recipients"])]


def as_nobody(appliance, command):
    return appliance.run("runuser -u nobody -- " + command)


# SMTP to the loopback listener (the list engine's re-injection port), run
# inside the appliance: argv = port, recipient, subject.
LOOPBACK_SEND = r"""
import smtplib, sys
port, rcpt, subject = sys.argv[1:]
msg = f"From: nobody@qube.test\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nforged archive entry\r\n"
with smtplib.SMTP("127.0.0.1", int(port)) as smtp:
    smtp.sendmail("nobody@qube.test", [rcpt], msg)
"""


def test_every_group_and_list_has_a_list(appliance):
    for name in ["sales", "staff", "friends", "partners", "open", "modlist", "small", "loopa", "loopb"]:
        assert appliance.file(f"/var/spool/mlmmj/{name}/control/listaddress").content_string.strip() == f"{name}@{DOMAIN}"
    assert subscribers(appliance, "sales") >= {f"alice@{DOMAIN}", f"bob@{DOMAIN}"}


def test_group_post_reaches_members_with_list_headers(probe, appliance):
    subject = unique_subject("quarterly numbers")
    post(probe, "alice", "sales", subject)
    for user in ["alice", "bob"]:
        message = arrived(probe, user, subject)
        assert message, f"{user} did not get the sales post"
        assert message["subject"].startswith("[sales]")
        assert header(message, "List-Id") == [f"Sales team <sales.{DOMAIN}>"]
        assert header(message, "List-Post") == [f"<mailto:sales@{DOMAIN}>"]
        assert header(message, "List-Unsubscribe") == [f"<mailto:sales+unsubscribe@{DOMAIN}>"]
        assert header(message, "List-Subscribe") == [f"<mailto:sales+subscribe@{DOMAIN}>"]
        assert header(message, "List-Help") == [f"<mailto:sales+help@{DOMAIN}>"]
        assert header(message, "List-Owner") == [f"<mailto:sales+owner@{DOMAIN}>"]
        # Bounces go to the list, never to the poster.
        assert header(message, "Return-Path")[0].startswith(f"<sales+bounces-")
    # One delivery for all members (VERP by Postfix): theirs arrived, carol's
    # would have been handed over with them.
    assert absent(probe, appliance, "carol", subject)


def test_post_without_from_header_is_not_lost(probe):
    # Some scripts send bare messages; Postfix adds From: from the envelope.
    subject = unique_subject("no from header")
    post(probe, "alice", "sales", subject, "--omit-header", "From")
    message = arrived(probe, "bob", subject)
    assert message, "the post without From: was dropped"
    assert f"alice@{DOMAIN}" in message["from"]


def test_list_post_reaches_external_members(probe, sink):
    subject = unique_subject("friends news")
    post(probe, "alice", "friends", subject)
    assert arrived(probe, "alice", subject)

    def delivered():
        found = [m for m in sink() if subject in (header(m, "Subject") or [""])[0]]
        return found if len(found) >= 2 else None
    found = wait_for(delivered, timeout=40)
    assert found, "external members did not get the post"
    rcpts = sorted(header(m, "X-RcptTo")[0] for m in found)
    assert rcpts == ["ext1@external.test", "ext2@external.test"]
    for message in found:
        assert header(message, "X-MailFrom")[0].startswith(f"friends+bounces-")
        assert header(message, "List-Id") == [f"Friends of the office <friends.{DOMAIN}>"]


# Each copy as the external member got it, checked by python3-dkim with the
# list domain's record (as DNS would serve it) on the external host: its
# DKIM signature and its ARC chain, and the From: and Reply-To: it shows.
SINK_DKIM = r"""
import dkim, email, json, pathlib, re, sys
subject, record = sys.argv[1], sys.argv[2].encode()
out = []
for path in sorted(pathlib.Path('/var/spool/sink/new').glob('*')):
    raw = path.read_bytes()
    message = email.message_from_bytes(raw)
    if subject not in str(message['Subject']):
        continue
    signature = re.sub(r'\s+', '', str(message['DKIM-Signature'] or ''))
    tags = dict(t.split('=', 1) for t in signature.split(';') if '=' in t)
    arc = dkim.arc_verify(raw, dnsfunc=lambda name, timeout=5: record)[0]
    out.append({'rcpt': message['X-RcptTo'], 'd': tags.get('d'), 'h': tags.get('h', '').lower().split(':'),
                'verified': dkim.verify(raw, dnsfunc=lambda name, timeout=5: record),
                'arc': arc.decode() if arc else None, 'seals': len(message.get_all('ARC-Seal') or []),
                'aar': ' '.join(str(message['ARC-Authentication-Results'] or '').split()),
                'from': str(message['From']), 'reply_to': str(message['Reply-To'] or '')})
print(json.dumps(out))
"""


def signed_copies(appliance, external, subject, rcpts):
    """The external members' copies of `subject` once all of `rcpts` have one
    (SINK_DKIM's view of each), else fails."""
    text = appliance.check_output(f"cat /var/lib/qubemail/dkim/{DOMAIN}.mail.txt")
    record = "".join(re.findall(r'"([^"]*)"', text))

    def copies():
        found = json.loads(external.check_output(f"python3 -c {shlex.quote(SINK_DKIM)} "
                                                 f"{shlex.quote(subject)} {shlex.quote(record)}"))
        return found if len(found) >= len(rcpts) else None
    found = wait_for(copies, timeout=40)
    assert found and sorted(copy["rcpt"] for copy in found) == sorted(rcpts), found
    for copy in found:
        assert copy["verified"] is True and copy["d"] == DOMAIN, copy
    return found


def test_each_list_copy_is_signed_and_sealed_by_the_lists_domain(probe, appliance, external):
    subject = unique_subject("signed friends news")
    post(probe, "alice", "friends", subject)
    for copy in signed_copies(appliance, external, subject, ["ext1@external.test", "ext2@external.test"]):
        # The list's own headers are signed: a changed List-Id or
        # List-Unsubscribe breaks the signature (RFC 8058 section 4).
        assert {"from", "subject", "list-id", "list-unsubscribe", "list-post"} <= set(copy["h"]), copy
        # The list's seal over the post's own verdicts (the seal the post
        # got as it came in, then the list's): a chain that verifies.
        assert copy["arc"] == "pass" and copy["seals"] >= 1, copy
        assert copy["from"] == f"<alice@{DOMAIN}>", copy  # our own domain: aligned, never rewritten


def post_from_outside(probe, author, list_name, subject):
    """A post to `list_name` by `author` (an address of an external domain
    whose SPF lets the client send), as the author's own provider would hand it over."""
    reply = probe.send(f"{list_name}@{DOMAIN}", "--header", f"From: Ann Poster <{author}>",
                       mail_from=author, subject=subject)
    assert rcpt_codes(reply) == [250] and reply["data"][0] == 250, reply


def test_a_strict_dmarc_posters_from_is_the_lists_in_its_copies(probe, appliance, external):
    # reject.example publishes p=reject: a copy with its From: but the list's
    # signature would be refused by the members' providers.
    subject = unique_subject("strict poster")
    post_from_outside(probe, "ann@reject.example", "partners", subject)
    (copy,) = signed_copies(appliance, external, subject, ["ext3@external.test"])
    assert copy["from"] == f'"Ann Poster via partners" <partners@{DOMAIN}>', copy
    assert copy["reply_to"] == "<ann@reject.example>", copy
    assert "from" in copy["h"], copy  # the new From: is the signed one
    # One seal, the list's (a post to a list is not sealed as it arrives: the
    # list's changes would break that seal), over the verdicts the post
    # arrived with: its SPF and DMARC pass for reject.example.
    assert copy["arc"] == "pass" and copy["seals"] == 1, copy
    assert "spf=pass" in copy["aar"] and "dmarc=pass (policy=reject) header.from=reject.example" in copy["aar"], copy
    member = arrived(probe, "bob", subject)  # local members get the same copy
    assert member and f"partners@{DOMAIN}" in member["from"], member


def test_a_relaxed_dmarc_posters_from_is_left_alone(probe, appliance, external):
    subject = unique_subject("relaxed poster")
    post_from_outside(probe, "ann@none.example", "partners", subject)
    (copy,) = signed_copies(appliance, external, subject, ["ext3@external.test"])
    assert copy["from"] == "Ann Poster <ann@none.example>" and copy["reply_to"] == "", copy
    assert copy["arc"] == "pass" and copy["seals"] == 1, copy
    assert "dmarc=pass (policy=none) header.from=none.example" in copy["aar"], copy


def test_strangers_post_is_held_and_never_reflected_to_the_forged_sender(probe, appliance, sink):
    # Backscatter: a stranger posts to the members-only list as someone else.
    # The post waits for the list's owner (no moderators: postmaster); the
    # forged address gets nothing, neither a refusal nor the post.
    victim = f"victim-{uuid.uuid4().hex[:8]}@external.test"
    subject = unique_subject("buy now")
    reply = probe.send(f"friends@{DOMAIN}", "--body", "SPAM-CONTENT", mail_from=victim, subject=subject)
    assert rcpt_codes(reply) == [250], reply
    request = postmaster_mail(appliance, f"Please moderate friends@{DOMAIN}: {subject}")
    assert request, "the owner got no moderation request for the stranger's post"
    assert "friends+release-" in request[0]["reply_to"]
    assert ["From", victim] in request[0]["attached"]
    # mlmmj queues any notice to the poster before the moderators' request:
    # once the request is here and nothing is queued for the victim, nothing
    # was sent to them.
    assert wait_for(lambda: not queued_for(appliance, victim), timeout=30)
    assert not [m for m in sink() if header(m, "X-RcptTo") == [victim]], "the forged sender got mail"
    assert not [m for m in inbox(probe, "alice") if subject in m["subject"]], "the held post went out"


def test_a_stranger_forging_a_members_from_cannot_post(probe):
    # The reproduction: mlmmj checks only From:, so a stranger who
    # forges a member's From: would reach every member and the archive.
    # rspamd refuses it during SMTP (our domain in From:, no signature of ours).
    subject = unique_subject("forged member")
    reply = probe.send(f"sales@{DOMAIN}", "--header", f"From: Alice <alice@{DOMAIN}>",
                       mail_from="stranger@outside.example", subject=subject)
    assert rcpt_codes(reply) == [250], reply
    assert 550 <= reply["data"][0] < 560 and "Forged sender" in reply["data"][1], reply


def test_moderated_post_waits_for_the_moderator(probe, appliance):
    subject = unique_subject("needs approval")
    post(probe, "bob", "modlist", subject)
    request = arrived(probe, "carol", subject)
    assert request, "the moderator got no moderation request"
    release = header(request, "Reply-To")[0]
    assert "modlist+release-" in release
    # mlmmj's answer: the post waits in its moderation queue, and went to no member.
    cookie = release.split("modlist+release-")[1].split("@")[0]
    assert subject in appliance.file(f"/var/spool/mlmmj/modlist/moderation/{cookie}").content_string
    assert absent(probe, appliance, "alice", subject)
    address = release.strip("<>").split("<")[-1].rstrip(">")
    reply = probe.send(address, mail_from=f"carol@{DOMAIN}", subject="Re: " + request["subject"], login="carol")
    assert rcpt_codes(reply) == [250]
    assert arrived(probe, "alice", subject), "the approved post did not reach the members"


def test_oversize_post_is_held_for_the_moderators_not_refused_to_the_poster(probe, appliance):
    subject = unique_subject("huge attachment")
    post(probe, "alice", "small", subject, "--size", 60 * 1024)
    request = postmaster_mail(appliance, f"Please moderate small@{DOMAIN}: {subject}")
    assert request, "the oversize post was not held for the owner"
    assert [v for k, v in request[0]["attached"] if k == "X-Qubemail-Oversize"], request[0]["attached"]
    assert not [m for m in inbox(probe, "alice") if "denied" in m["subject"] and subject in m["subject"]]
    assert not [m for m in inbox(probe, "bob") if subject in m["subject"]]
    # Released by the owner, it reaches the members: nothing is lost.
    release = request[0]["reply_to"].strip("<>")
    # alice, the admin, answers as postmaster (her send_as)
    assert rcpt_codes(probe.send(release, mail_from=f"postmaster@{DOMAIN}", subject="Re: release",
                                 login="alice")) == [250]
    assert arrived(probe, "bob", subject), "the released post did not reach the members"


def test_a_forged_oversize_mark_is_not_trusted(probe):
    # The header that holds a post is set by the appliance only.
    subject = unique_subject("small but marked")
    post(probe, "alice", "small", subject, "--header", "X-Qubemail-Oversize: 1 bytes")
    message = arrived(probe, "bob", subject)
    assert message, "a post with a forged mark was held or lost"
    assert not header(message, "X-Qubemail-Oversize")


def test_reply_to_list(probe):
    subject = unique_subject("reply here")
    post(probe, "bob", "small", subject)
    message = arrived(probe, "alice", subject)
    assert message and header(message, "Reply-To") == [f"small@{DOMAIN}"]


def test_self_subscription_on_an_open_list(probe, appliance):
    assert f"dave@{DOMAIN}" not in unsubscribed(appliance, "open", f"dave@{DOMAIN}")
    reply = probe.send(f"open-join@{DOMAIN}", mail_from=f"dave@{DOMAIN}", subject="subscribe", login="dave")
    assert rcpt_codes(reply) == [250]
    assert wait_for(lambda: f"dave@{DOMAIN}" in subscribers(appliance, "open"), timeout=30)
    subject = unique_subject("open news")
    post(probe, "bob", "open", subject)
    assert arrived(probe, "dave", subject)


def confirmations(probe, user, list_name):
    """The Reply-To addresses of the subscription confirmation requests in the user's INBOX."""
    return {v for m in inbox(probe, user) for v in header(m, "Reply-To") if f"{list_name}+confsub-" in v}


def test_subscription_to_a_confirm_list_waits_for_the_confirmation(probe, appliance):
    assert f"carol@{DOMAIN}" not in unsubscribed(appliance, "friends", f"carol@{DOMAIN}")
    earlier = confirmations(probe, "carol", "friends")
    reply = probe.send(f"friends-subscribe@{DOMAIN}", mail_from=f"carol@{DOMAIN}", subject="subscribe",
                       login="carol")
    assert rcpt_codes(reply) == [250]
    request = wait_for(lambda: [m for m in inbox(probe, "carol")
                                if any("friends+confsub-" in v and v not in earlier for v in header(m, "Reply-To"))],
                       timeout=30)
    assert request, "carol got no confirmation request"
    assert f"carol@{DOMAIN}" not in subscribers(appliance, "friends")
    confirm = header(request[0], "Reply-To")[0].strip("<>")
    assert rcpt_codes(probe.send(confirm, mail_from=f"carol@{DOMAIN}", subject="confirm", login="carol")) == [250]
    assert wait_for(lambda: f"carol@{DOMAIN}" in subscribers(appliance, "friends"), timeout=30)


def test_self_subscription_is_refused_on_a_closed_group_list(probe, appliance, since):
    assert f"dave@{DOMAIN}" not in subscribers(appliance, "sales")
    reply = probe.send(f"sales-join@{DOMAIN}", mail_from=f"dave@{DOMAIN}", subject="subscribe", login="dave")
    assert rcpt_codes(reply) == [250]
    # mlmmj's answer: it logs the refusal (and mails no one); 1.5 says "a
    # subscription closed list" where 1.3 says "a closed list".
    refusal = re.compile(r"A subscribe request was sent to a (subscription )?closed list\. Ignoring mail")
    assert wait_for(lambda: refusal.search(journal(appliance, since)), timeout=30), journal(appliance, since)[-3000:]
    settled(appliance, "dave")
    assert f"dave@{DOMAIN}" not in subscribers(appliance, "sales")


def test_looping_message_is_not_sent_again(probe, appliance, since):
    # alice gets loopa's post through loopb, a member of loopa; loopb's copy
    # to loopa, a member of loopb, comes back to loopa and must stop there:
    # Postfix's local(8) bounces it (its Delivered-To: loopa) to the list's
    # owner, or mlmmj's access rules discard it (its X-Loop).
    subject = unique_subject("loop")
    post(probe, "alice", "loopa", subject)
    assert arrived(probe, "alice", subject)

    def stopped():
        bounced = f"status=bounced (mail forwarding loop for loopa@{DOMAIN})" in journal(appliance, since)
        return bounced or discarded(appliance, "loopa", subject, timeout=0)
    assert wait_for(stopped, timeout=40), "the copy that came back to loopa was neither bounced nor discarded"
    settled(appliance, "alice", "loopa", "loopb")
    copies = [m for m in inbox(probe, "alice") if subject in m["subject"]]
    assert len(copies) == 1, [m["subject"] for m in copies]


def test_message_carrying_the_lists_own_list_id_is_not_exploded(probe, appliance):
    # A copy that comes back (e.g. from an external list or an auto-forward).
    subject = unique_subject("came back")
    post(probe, "alice", "open", subject, "--header", f"List-Id: <open.{DOMAIN}>")
    assert discarded(appliance, "open", subject), "mlmmj did not discard the post"
    assert absent(probe, appliance, "bob", subject)
    other = unique_subject("fresh")
    post(probe, "alice", "open", other, "--header", f"List-Id: <elsewhere.example>")
    assert arrived(probe, "bob", other)


def test_archive_off_stores_nothing(appliance):
    assert not appliance.file("/var/lib/qubemail/lists/.staff").exists
    assert appliance.file("/var/spool/mlmmj/staff/control/noarchive").exists  # mlmmj keeps no copy
    argv = appliance.check_output("systemctl show -p ExecStart --value qubemail-list-archive.service")
    words = argv.split("argv[]=", 1)[1].split(" ; ", 1)[0].split()  # "{ path=… ; argv[]=… LIST… ; …"
    assert "sales" in words and "staff" not in words, argv


def test_archive_on_is_readable_by_members_only(probe, appliance):
    subject = unique_subject("for the record")
    post(probe, "bob", "sales", subject)
    archive = wait_for(lambda: (r := probe.imap("alice", mailbox="Mailing Lists/sales"))
                       and any(subject in s for s in subjects(r.get("messages", []))) and r, timeout=40)
    assert archive, "the post is not in alice's Mailing Lists/sales"
    assert "Mailing Lists/sales" in archive["mailboxes"]
    # Subscribed for WebMail, which lists subscribed folders only.
    assert "Mailing Lists/sales" in archive["subscribed"]
    assert archive["status"] == "OK"
    outsider = probe.imap("carol", mailbox="Mailing Lists/sales")
    assert outsider["login"]
    assert not any(name.startswith("Mailing Lists") for name in outsider["mailboxes"] + outsider["subscribed"])
    assert outsider["status"] != "OK", "STATUS told a non-member about the archive"
    assert outsider["select"] != "OK" and not outsider["messages"]
    # Filed from mlmmj's own archive, which then holds nothing; no address is subscribed for it.
    assert wait_for(lambda: not appliance.check_output("ls -A /var/spool/mlmmj/sales/archive"), timeout=20)
    assert not [a for a in subscribers(appliance, "sales") if a.startswith("mlarchive")]


def test_a_burst_of_posts_is_all_archived(probe, appliance):
    # Posts sent while the archiver is filing earlier ones: a systemd path unit
    # dropped those events, and such a post waited for the next one. Each must
    # be filed at once, well before the archiver's one-minute safety look.
    tag = unique_subject("burst")
    for i in range(12):
        post(probe, "alice", "sales", f"{tag} #{i}")

    def filed():
        archived = " ".join(subjects(probe.imap("alice", mailbox="Mailing Lists/sales").get("messages", [])))
        return all(f"{tag} #{i}" in archived for i in range(12))

    assert wait_for(filed, timeout=40), "some posts of the burst were not archived within 40 s"
    assert appliance.service("qubemail-list-archive").is_running
    assert wait_for(lambda: not appliance.check_output("ls -A /var/spool/mlmmj/sales/archive"), timeout=20)


def test_local_accounts_cannot_file_mail_into_an_archive(probe, appliance):
    # As nobody, to the archive account's addresses through the list engine's
    # loopback listener and through sendmail: the mail goes to the
    # postmaster, the archive has only the list's posts.
    subjects_sent = []
    for port_or_sendmail, rcpt in [(10025, f"mlarchive+sales@{DOMAIN}"), (10025, f"mlarchive@{DOMAIN}"),
                                   ("sendmail", f"mlarchive+sales@{DOMAIN}")]:
        subject = unique_subject(f"forged via {port_or_sendmail}")
        if port_or_sendmail == "sendmail":
            message = shlex.quote(f"Subject: {subject}\n\nforged archive entry\n")
            cmd = "sh -c " + shlex.quote(f"printf %s {message} | /usr/sbin/sendmail -f nobody@{DOMAIN} {rcpt}")
        else:
            cmd = f"python3 -c {shlex.quote(LOOPBACK_SEND)} {port_or_sendmail} {rcpt} {shlex.quote(subject)}"
        result = as_nobody(appliance, cmd)
        assert result.rc == 0, result.stderr
        subjects_sent.append(subject)
    for subject in subjects_sent:
        assert postmaster_mail(appliance, subject), f"{subject!r} was not delivered to the postmaster"
    archived = subjects(probe.imap("alice", mailbox="Mailing Lists/sales")["messages"])
    assert not [s for s in archived if "forged via" in s], archived
    assert all(s.startswith("[sales]") for s in archived), archived


def test_the_list_spool_and_the_archives_are_private(appliance):
    # Posts, held posts, queues and member addresses: nothing another local
    # account may read, list or write (only the list names in aliases and
    # names, the DNS records to publish and the MTA-STS policy, which are public).
    readable = as_nobody(appliance, "find /var/spool/mlmmj /var/lib/qubemail -readable")
    public = {"/var/spool/mlmmj", "/var/lib/qubemail", "/var/lib/qubemail/lists-aliases",
              "/var/lib/qubemail/lists-aliases/aliases", "/var/lib/qubemail/lists-aliases/aliases.db",
              "/var/lib/qubemail/lists-aliases/names", "/var/lib/qubemail/dns", "/var/lib/qubemail/mta-sts",
              "/var/lib/qubemail/mta-sts/.well-known", "/var/lib/qubemail/mta-sts/.well-known/mta-sts.txt", f"/var/lib/qubemail/dns/{DOMAIN}.zone"}
    assert set(readable.stdout.split()) <= public, readable.stdout
    for path in ["/var/spool/mlmmj/sales/archive/1", "/var/spool/mlmmj/sales/subscribers.d/x",
                 "/var/lib/qubemail/lists/.sales/new/x"]:
        assert as_nobody(appliance, f"touch {path}").rc != 0, path
    # The helpers are root's: no one else may change what the list pipe or the importer runs.
    for helper in ["qubemail-list-receive", "qubemail-list-archive"]:
        f = appliance.file(f"/usr/local/lib/qubemail/{helper}")
        assert f.user == "root" and f.mode == 0o755


def test_mlmmj_maintenance_finds_nothing_but_lists_in_its_spool(appliance):
    # mlmmj-maintd takes every entry of the spool for a list: the alias table
    # there made mlmmj 1.5 log "Cannot open(.../aliases): Not a directory" at
    # every run. The table lives outside the spool; Postfix reads it there.
    assert appliance.run("find /var/spool/mlmmj -mindepth 1 -maxdepth 1 ! -type d").stdout == ""
    assert "hash:/var/lib/qubemail/lists-aliases/aliases" in appliance.check_output("postconf -h alias_maps")
    before = appliance.check_output("stat -c %Y /var/spool/mlmmj/sales/mlmmj-maintd.lastrun.log 2>/dev/null || echo 0")
    appliance.check_output("sleep 1.1; systemctl start mlmmj-maintd.service")  # oneshot: returns when it is done
    # It did go through the lists (each list's log of the run is new)...
    after = appliance.check_output("stat -c %Y /var/spool/mlmmj/sales/mlmmj-maintd.lastrun.log")
    assert int(after) > int(before)
    # ... and logged no error.
    run = appliance.check_output("systemctl show -p InvocationID --value mlmmj-maintd.service")
    logged = appliance.check_output(f"journalctl _SYSTEMD_INVOCATION_ID={run} --no-pager -o cat")
    assert "Cannot open" not in logged and "error" not in logged.lower(), logged


def test_retention_keeps_posts_younger_than_the_limit(probe, appliance):
    # sales keeps 365 days: running the retention job must keep today's posts.
    subject = unique_subject("kept a year")
    post(probe, "bob", "sales", subject)
    assert wait_for(lambda: any(subject in s for s in subjects(
        probe.imap("alice", mailbox="Mailing Lists/sales").get("messages", []))), timeout=40), "the post was not archived"
    before = probe.imap("alice", mailbox="Mailing Lists/sales")["messages"]
    appliance.check_output("systemctl start qubemail-list-retention.service")
    assert appliance.service("qubemail-list-retention.timer").is_enabled
    after = probe.imap("alice", mailbox="Mailing Lists/sales")["messages"]
    assert subjects(after) == subjects(before)


def test_removing_a_member_or_a_list_follows_the_inventory(probe, appliance, bob_left_sales):
    # bob leaves sales; the staff group (and so its list) is removed.
    assert f"bob@{DOMAIN}" not in subscribers(appliance, "sales")
    subject = unique_subject("after bob left")
    post(probe, "alice", "sales", subject)
    assert arrived(probe, "alice", subject)
    assert absent(probe, appliance, "bob", subject)
    # bob no longer sees the sales archive.
    assert not any(m.startswith("Mailing Lists") for m in probe.imap("bob")["mailboxes"])
    # staff's delivery stopped; its directory (subscribers) is kept.
    reply = probe.send(f"staff@{DOMAIN}", mail_from=f"alice@{DOMAIN}", login="alice")
    assert rcpt_codes(reply) == [550], reply
    assert appliance.file("/var/spool/mlmmj/staff/control/listaddress").exists
