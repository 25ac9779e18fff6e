"""WebMail in a real browser (Debian's headless Chromium driven by Selenium,
on the machine running molecule): list members read their archives under
"Mailing Lists", everyone else sees no such folder. Each test makes what
it needs (the archived thread, bob leaving sales: conftest.py), so any test
passes alone and in any order."""

import pathlib
import re
import shlex
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import pytest
from conftest import APPLIANCE_IP, DOMAIN, PASSWORDS, converge, journal
from probe import rcpt_codes, subjects, wait_for

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "clients"))
from mailprobe import tls_context  # noqa: E402
from webmail import WebMail, browser  # noqa: E402

testinfra_hosts = ["docker://qubemail-lists-appliance"]

URL = f"https://{APPLIANCE_IP}/"
ARCHIVE = "Mailing Lists/sales"
# Screenshots for a human to look at when a test fails (or to refresh docs/img/).
SHOTS = pathlib.Path(__file__).resolve().parents[3] / ".cache" / "webmail"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None


def fetch(url):
    """(status, headers) of a GET without following redirects."""
    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=tls_context()))
    try:
        with opener.open(url, timeout=15) as reply:
            return reply.status, reply.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


@pytest.fixture(scope="module")
def thread(probe):
    """A post to sales and a reply to it, both in the archive."""
    tag = uuid.uuid4().hex[:8]
    first = f"<{tag}.1@client.test>"
    subject = f"Office move {tag}"
    body = f"The office moves on Friday ({tag}). Boxes are in the hall."

    def archived(count):
        found = [s for s in subjects(probe.imap("alice", mailbox=ARCHIVE).get("messages", [])) if tag in s]
        return found if len(found) == count else None

    reply = probe.send(f"sales@{DOMAIN}", "--header", f"Message-ID: {first}", "--body", body,
                       mail_from=f"alice@{DOMAIN}", subject=subject, login="alice")
    assert rcpt_codes(reply) == [250], reply
    # The reply once the post is filed, as a person would reply to it. Not
    # needed for threading: Dovecot links a reply filed before its parent too.
    assert wait_for(lambda: archived(1), timeout=40), "the post did not reach the sales archive"
    reply = probe.send(f"sales@{DOMAIN}", "--header", f"In-Reply-To: {first}", "--header", f"References: {first}",
                       "--body", "Thanks, I will bring tape.", mail_from=f"alice@{DOMAIN}",
                       subject=f"Re: {subject}", login="alice")
    assert rcpt_codes(reply) == [250], reply
    assert wait_for(lambda: archived(2), timeout=40), "the reply did not reach the sales archive"
    return {"subject": subject, "body": body}


@pytest.fixture
def session(request):
    with browser() as driver:
        yield WebMail(driver, URL)
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / f"{request.node.name}.png"))


def test_member_reads_the_archived_thread(session, thread):
    assert session.login("alice", PASSWORDS["alice"]), session.login_error()
    assert ARCHIVE in session.folders()
    assert "Mailing Lists" in session.folder_pane_text()
    session.open_folder(ARCHIVE, thread["subject"])
    assert session.thread_mode()
    assert session.list_footer().startswith("Threads")
    # The thread: the post and the reply (subject prefixed by the list).
    assert [s for s in session.subjects() if thread["subject"] in s] == [
        f"[sales] {thread['subject']}", f"[sales] Re: {thread['subject']}"]
    # ... as one thread: the reply is the post's child in Roundcube's list,
    # not a thread of its own that happens to be listed after it
    # (docs/DESIGN.md, WebMail: "Threads").
    parents = session.thread_parents()
    assert parents[f"[sales] Re: {thread['subject']}"] == f"[sales] {thread['subject']}", parents
    assert thread["body"] in session.read(f"[sales] {thread['subject']}")


def test_user_sends_mail_through_webmail(session, probe):
    subject = f"Lunch {uuid.uuid4().hex[:8]}"
    assert session.login("alice", PASSWORDS["alice"]), session.login_error()
    assert session.send(f"carol@{DOMAIN}", subject, "Sent from WebMail.") == "Message sent successfully."
    found = wait_for(lambda: [m for m in probe.imap("carol")["messages"] if m["subject"] == subject], timeout=30)
    assert found, "the message sent from WebMail did not arrive"
    assert f"alice@{DOMAIN}" in found[0]["from"]
    assert subject in subjects(probe.imap("alice", mailbox="Sent")["messages"])


def test_identities_are_only_the_users_own_address(session):
    # identities_level 3: Roundcube makes the one identity at the first
    # login and offers no way to add or edit one.
    assert session.login("carol", PASSWORDS["carol"]), session.login_error()
    identities = session.identities()
    assert len(identities) == 1 and f"carol@{DOMAIN}" in identities[0], identities


@pytest.mark.parametrize("forged", [f"bob@{DOMAIN}", "CEO <ceo@bigbank.example>"])
def test_webmail_cannot_send_as_someone_else(appliance, session, probe, since, forged):
    # A user may send only as herself: WebMail logs in to submission as
    # her, and Postfix refuses any other envelope sender.
    subject = f"Forged {uuid.uuid4().hex[:8]}"
    assert session.login("carol", PASSWORDS["carol"]), session.login_error()
    status = session.send(f"alice@{DOMAIN}", subject, "Sent as someone else?", forged_from=forged)
    assert status.startswith("SMTP Error (553)"), status
    address = forged.split("<")[-1].rstrip(">")
    refusal = f"553 5.7.1 <{address}>: Sender address rejected: not owned by user carol"
    assert wait_for(lambda: refusal in journal(appliance, since), timeout=15)
    assert subject not in subjects(probe.imap("alice")["messages"])


def test_non_member_has_no_mailing_lists(session, thread):
    assert session.login("carol", PASSWORDS["carol"]), session.login_error()
    folders = session.folders()
    assert "INBOX" in folders
    assert not [f for f in folders if f.startswith("Mailing Lists")]
    assert "Mailing Lists" not in session.folder_pane_text()


def test_former_member_no_longer_sees_the_archive(session, thread, bob_left_sales):
    # bob had the archive subscribed; after he left, it shows nothing.
    assert session.login("bob", PASSWORDS["bob"]), session.login_error()
    assert "INBOX" in session.folders()
    assert not [f for f in session.folders() if f.startswith("Mailing Lists")]


def test_guessing_the_archive_name_shows_nothing(session, thread):
    mbox = urllib.request.quote(ARCHIVE, safe="")
    show = URL + f"?_task=mail&_action=show&_uid=1&_mbox={mbox}"
    # A member opens the archive's first message by its URL...
    with browser() as driver:
        member = WebMail(driver, URL)
        assert member.login("alice", PASSWORDS["alice"]), member.login_error()
        driver.get(show)
        assert member.wait.until(lambda d: d.find_elements("id", "messagebody"))
    # ...a non-member who types the same URLs gets nothing.
    assert session.login("carol", PASSWORDS["carol"]), session.login_error()
    session.driver.get(show)
    assert not session.driver.find_elements("id", "messagebody")
    assert thread["body"] not in session.driver.page_source
    session.driver.get(URL + f"?_task=mail&_mbox={mbox}")
    session.wait.until(lambda d: d.execute_script(
        "return document.readyState == 'complete' && window.rcmail && rcmail.env.mailbox && !rcmail.busy"))
    assert session.driver.execute_script("return rcmail.message_list.rowcount") == 0
    assert thread["subject"] not in session.driver.find_element("id", "messagelist").text


def test_wrong_password_is_refused(session):
    assert not session.login("alice", "not-alices-password")
    assert session.login_error() == "Login failed."
    assert session.logged_out()


# Roundcube's login form by hand (its page's request token, its cookie), as
# a password guesser would post it, in a new session each time; prints each
# answer's HTTP status. After 3 in a minute Roundcube refuses the rest by
# itself (login_rate_limit, "error: 4"): fail2ban counts those too. The
# name guessed is nobody's, so Roundcube's limit holds up no other test.
GUESS_WEBMAIL = r"""
jar=$(mktemp); trap 'rm -f "$jar"' EXIT
for _ in $(seq "$3"); do
  : > "$jar"
  token=$(curl -sk --interface "$1" -c "$jar" -b "$jar" "$2" | sed -n 's/.*name="_token" value="\([^"]*\)".*/\1/p' | head -n 1)
  curl -sk --interface "$1" -c "$jar" -b "$jar" -o /dev/null -w '%{http_code}\n' \
    --data-urlencode _task=login --data-urlencode _action=login --data-urlencode _timezone=UTC \
    --data-urlencode _user=mallory --data-urlencode _pass=guess --data-urlencode "_token=$token" "$2?_task=login"
done
"""
GUESSER_IP = "172.30.1.60"  # the client's second address (prepare.yml)


def test_guessing_webmail_passwords_bans_the_guesser(appliance, client, since):
    # Roundcube logs each failed login with the browser's address (its
    # own IMAP login comes from loopback, which is never banned).
    try:
        codes = client.check_output(f"bash -c {shlex.quote(GUESS_WEBMAIL)} guess {GUESSER_IP} {URL} 10").split()
        # Roundcube answers a failed login with its login page (401 since 1.5).
        assert len(codes) == 10 and set(codes) <= {"200", "401"}, codes
        assert wait_for(lambda: f"[roundcube-auth] Ban {GUESSER_IP}" in journal(appliance, since, "fail2ban"),
                        timeout=30)
        banned = client.run(f"curl -sk --interface {GUESSER_IP} --max-time 3 -o /dev/null {URL}")
        assert banned.rc in (7, 28), banned  # could not connect / timed out
        assert client.check_output(f"curl -sk --max-time 10 -o /dev/null -w '%{{http_code}}' {URL}") == "200"
    finally:
        appliance.run(f"fail2ban-client set roundcube-auth unbanip {GUESSER_IP}")


def test_plain_http_only_redirects_to_https():
    status, headers = fetch(f"http://{APPLIANCE_IP}/?_task=mail")
    assert status == 301
    assert headers["Location"] == "https://mail.qube.test/?_task=mail"
    # Plain HTTP to the HTTPS port gets no page either.
    status, _ = fetch(f"http://{APPLIANCE_IP}:443/")
    assert status == 400


def test_https_session_cookie_is_secure():
    status, headers = fetch(URL)
    assert status == 200
    cookie = headers["Set-Cookie"]
    assert re.search(r"\bsecure\b", cookie, re.I) and re.search(r"\bhttponly\b", cookie, re.I)
    assert "samesite=lax" in cookie.lower()
    assert headers["Server"] == "Apache"  # no version


def test_installer_and_internals_are_not_served():
    for path in ["installer/", "config/config.inc.php", "logs/", "temp/", "SQL/"]:
        status, _ = fetch(URL + path)
        assert status in (403, 404), path


def des_key(appliance):
    return re.findall(r"^\$config\['des_key'\] = '([^']*)';",
                      appliance.file("/etc/roundcube/config.inc.php").content_string, re.M)


def test_secret_is_per_host_and_kept(appliance):
    config = appliance.file("/etc/roundcube/config.inc.php")
    assert config.user == "root" and config.group == "www-data" and config.mode == 0o640
    key = des_key(appliance)
    assert len(key) == 1 and len(key[0]) == 24 and key[0] != "rcmail-!24ByteDESkey*Str"
    # Made on the host, not taken from the repository.
    project = pathlib.Path(__file__).resolve().parents[3]
    files = subprocess.run(["git", "-C", str(project), "ls-files", "-z"], capture_output=True, check=True).stdout
    tracked = [project / name for name in files.decode().split("\0") if name]
    assert not [p for p in tracked if p.is_file() and key[0].encode() in p.read_bytes()]


def test_webmail_with_imap_and_smtp_off_and_tls_required(appliance, probe, session):
    # Qube toggles off: IMAP and SMTP closed to the network, plaintext
    # passwords refused even on loopback. WebMail keeps working on loopback.
    variant = {"pop_imap_enabled": False, "mta_smtp_enabled": False, "pop_plaintext_auth_from_loopback": False,
               "mta_submission_enabled": False, "mta_submissions_enabled": False}
    subject = f"Toggles off {uuid.uuid4().hex[:8]}"
    try:
        converge(variant)
        for port in (25, 143, 587):
            assert not appliance.socket(f"tcp://0.0.0.0:{port}").is_listening
            assert appliance.socket(f"tcp://127.0.0.1:{port}").is_listening
        assert not appliance.socket("tcp://0.0.0.0:465").is_listening
        assert not probe.imap("alice")["login"]
        assert session.login("alice", PASSWORDS["alice"]), session.login_error()
        assert session.send(f"carol@{DOMAIN}", subject, "IMAP and SMTP are off.") == "Message sent successfully."
        # Postfix's checks still apply: the archive's delivery address is
        # not reachable from WebMail.
        refused = session.send(f"mlarchive+sales@{DOMAIN}", f"forged {subject}", "Into the archive?")
        assert refused.startswith("SMTP Error (554)"), refused
    finally:
        converge({})
    assert wait_for(lambda: [m for m in probe.imap("carol")["messages"] if m["subject"] == subject], timeout=30)
    archived = subjects(probe.imap("alice", mailbox=ARCHIVE)["messages"])
    assert not [s for s in archived if subject in s]


def test_turning_webmail_off_and_on_again(appliance, probe, session):
    key = des_key(appliance)
    converge({"webmail_enabled": False})
    assert not appliance.service("apache2").is_running
    assert not appliance.service("apache2").is_enabled
    with pytest.raises(urllib.error.URLError):
        fetch(URL)
    # Mail itself is untouched.
    assert probe.imap("alice")["login"]
    converge({})
    assert appliance.service("apache2").is_running and appliance.service("apache2").is_enabled
    assert des_key(appliance) == key, "the secret changed"
    assert session.login("alice", PASSWORDS["alice"]), session.login_error()


def test_a_new_certificate_reaches_webmail_and_imap(appliance, tmp_path):
    # Last: the appliance keeps this certificate afterwards.
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=mail.qube.test", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    run = converge({"qubemail_tls_certificate": cert.read_text(), "qubemail_tls_private_key": key.read_text()})
    assert "RUNNING HANDLER [webmail : Reload Apache for the new certificate]" in run.stdout
    wanted = ssl.PEM_cert_to_DER_cert(cert.read_text())
    for port in (443, 993):
        served = wait_for(lambda: ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((APPLIANCE_IP, port)))
                          == wanted, timeout=15)
        assert served, f"port {port} still serves the old certificate"
