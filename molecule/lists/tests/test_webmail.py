"""WebMail in a real browser (Debian's headless Chromium driven by Selenium,
on the machine running molecule): list members read their archives under
"Mailing Lists", everyone else sees no such folder. Runs after
test_lists.py, which leaves sales with alice as its only member (bob left)."""

import pathlib
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import pytest
from conftest import APPLIANCE_IP, PASSWORDS
from probe import rcpt_codes, subjects, wait_for

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests" / "clients"))
from webmail import WebMail, browser  # noqa: E402

testinfra_hosts = ["docker://qubemail-lists-appliance"]

URL = f"https://{APPLIANCE_IP}/"
DOMAIN = "qube.test"
ARCHIVE = "Mailing Lists/sales"
# Screenshots for a human to look at when a test fails (or to refresh docs/img/).
SHOTS = pathlib.Path(__file__).resolve().parents[3] / ".cache" / "webmail"


def no_tls_check():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None


def fetch(url):
    """(status, headers) of a GET without following redirects."""
    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=no_tls_check()))
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
    reply = probe.send(f"sales@{DOMAIN}", "--header", f"Message-ID: {first}", "--body", body,
                       mail_from=f"alice@{DOMAIN}", subject=subject)
    assert rcpt_codes(reply) == [250], reply
    reply = probe.send(f"sales@{DOMAIN}", "--header", f"In-Reply-To: {first}", "--header", f"References: {first}",
                       "--body", "Thanks, I will bring tape.", mail_from=f"alice@{DOMAIN}", subject=f"Re: {subject}")
    assert rcpt_codes(reply) == [250], reply

    def both_archived():
        found = [s for s in subjects(probe.imap("alice", mailbox=ARCHIVE).get("messages", [])) if tag in s]
        return found if len(found) == 2 else None
    assert wait_for(both_archived, timeout=40), "the posts did not reach the sales archive"
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
    assert thread["body"] in session.read(f"[sales] {thread['subject']}")


def test_user_sends_mail_through_webmail(session, probe):
    subject = f"Lunch {uuid.uuid4().hex[:8]}"
    assert session.login("alice", PASSWORDS["alice"]), session.login_error()
    assert session.send(f"carol@{DOMAIN}", subject, "Sent from WebMail.") == "Message sent successfully."
    found = wait_for(lambda: [m for m in probe.imap("carol")["messages"] if m["subject"] == subject], timeout=30)
    assert found, "the message sent from WebMail did not arrive"
    assert f"alice@{DOMAIN}" in found[0]["from"]
    assert subject in subjects(probe.imap("alice", mailbox="Sent")["messages"])


def test_non_member_has_no_mailing_lists(session, thread):
    assert session.login("carol", PASSWORDS["carol"]), session.login_error()
    folders = session.folders()
    assert "INBOX" in folders
    assert not [f for f in folders if f.startswith("Mailing Lists")]
    assert "Mailing Lists" not in session.folder_pane_text()


def test_former_member_no_longer_sees_the_archive(session, thread):
    # bob left sales in test_lists.py; his old subscription shows nothing.
    assert session.login("bob", PASSWORDS["bob"]), session.login_error()
    assert not [f for f in session.folders() if f.startswith("Mailing Lists")]


def test_guessing_the_archive_name_shows_nothing(session, thread):
    assert session.login("carol", PASSWORDS["carol"]), session.login_error()
    session.driver.get(URL + "?_task=mail&_mbox=" + urllib.request.quote(ARCHIVE, safe=""))
    session.wait.until(lambda d: d.find_elements("id", "messagelist"))
    assert thread["subject"] not in session.driver.find_element("id", "messagelist").text
    assert thread["body"] not in session.driver.page_source


def test_wrong_password_is_refused(session):
    assert not session.login("alice", "not-alices-password")
    assert session.login_error() == "Login failed."
    assert session.logged_out()


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


def test_secret_is_per_host_and_kept(appliance):
    config = appliance.file("/etc/roundcube/config.inc.php")
    assert config.user == "root" and config.group == "www-data" and config.mode == 0o640
    key = re.findall(r"^\$config\['des_key'\] = '([^']*)';", config.content_string, re.M)
    assert len(key) == 1 and len(key[0]) == 24 and key[0] != "rcmail-!24ByteDESkey*Str"
    # Made on the host, not taken from the repository.
    project = pathlib.Path(__file__).resolve().parents[3]
    files = subprocess.run(["git", "-C", str(project), "ls-files", "-z"], capture_output=True, check=True).stdout
    tracked = [project / name for name in files.decode().split("\0") if name]
    assert not [p for p in tracked if p.is_file() and key[0].encode() in p.read_bytes()]
