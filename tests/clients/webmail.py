"""A real browser on WebMail: Debian's Chromium, headless, driven by Selenium
through Debian's chromedriver (nothing is downloaded). Used by the molecule
lists scenario's browser tests, bench/webmail_bench.py and
scripts/webmail-screenshot.py.

Element ids are Roundcube 1.6's (elastic skin): the login form's
rcmloginuser / rcmloginpwd / rcmloginsubmit, the folder pane #mailboxlist
whose links carry the IMAP folder name in rel="...", the message list
#messagelist and the preview frame #messagecontframe."""

import contextlib
import shutil

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-sync", "--disable-background-networking", "--disable-component-update",
    # The appliance's certificate is self-signed.
    "--ignore-certificate-errors", "--window-size=1280,800",
]


@contextlib.contextmanager
def browser():
    """A fresh headless Chromium session (no cookies, no cache)."""
    if not shutil.which(CHROMEDRIVER):
        raise RuntimeError(f"{CHROMEDRIVER} is missing: run scripts/host-setup.sh (apt chromium-driver)")
    options = webdriver.ChromeOptions()
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


class WebMail:
    """One user's WebMail session in `driver`."""

    def __init__(self, driver, url, timeout=30):
        self.driver = driver
        self.url = url
        self.timeout = timeout
        # Pages replace their elements while loading: look again.
        self.wait = WebDriverWait(driver, timeout, ignored_exceptions=[StaleElementReferenceException])

    def login(self, user, password):
        """Submit the login form; True once the folder pane shows, False on
        Roundcube's login error."""
        self.driver.get(self.url)
        self.wait.until(EC.element_to_be_clickable((By.ID, "rcmloginuser"))).send_keys(user)
        self.driver.find_element(By.ID, "rcmloginpwd").send_keys(password)
        self.driver.find_element(By.ID, "rcmloginsubmit").click()
        self.wait.until(lambda d: d.find_elements(By.ID, "mailboxlist") or self.login_error())
        return bool(self.driver.find_elements(By.ID, "mailboxlist"))

    def login_error(self):
        """The text of the login error message, if one is shown."""
        try:
            shown = self.driver.find_elements(By.CSS_SELECTOR, "#messagestack .error, #messagestack div")
            return " ".join(e.text for e in shown if e.text).strip()
        except StaleElementReferenceException:  # the page is changing
            return ""

    def folders(self):
        """IMAP names of the folders in the left pane, e.g. 'Mailing Lists/sales'."""
        self.wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#mailboxlist a[rel]")))
        return [a.get_attribute("rel") for a in self.driver.find_elements(By.CSS_SELECTOR, "#mailboxlist a[rel]")]

    def folder_pane_text(self):
        return self.driver.find_element(By.ID, "mailboxlist").text

    def open_folder(self, name, expect_subject=None):
        """Click folder `name`; wait until `expect_subject` is in the message
        list, or else until Roundcube has listed the folder's first page."""
        link = f'#mailboxlist a[rel="{name}"]'
        self.wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, link))).click()
        if expect_subject:
            self.wait.until(EC.text_to_be_present_in_element((By.ID, "messagelist"), expect_subject))
        else:
            self.wait.until(lambda d: d.execute_script(
                "return rcmail.env.mailbox == arguments[0] && !rcmail.busy"
                " && rcmail.message_list.rowcount > 0", name))

    def thread_mode(self):
        """True when the message list is in thread view (Roundcube's own flag)."""
        return self.driver.execute_script("return rcmail.env.threading") is True

    def list_footer(self):
        """The pager text, e.g. 'Threads 1 to 1 of 1'."""
        return self.driver.find_element(By.CSS_SELECTOR, "#layout-list .pagenav-text, #rcmcountdisplay").text

    def subjects(self):
        return [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, "#messagelist td.subject span.subject")]

    def thread_parents(self):
        """{subject: subject of its parent in the thread, or None for a thread's
        first message} for the listed messages, from Roundcube's own list
        (rcmail.message_list.rows), collapsed threads included."""
        rows = self.driver.execute_script(
            "var out = {}, rows = rcmail.message_list.rows;"
            " for (var uid in rows) out[uid] = [$(rows[uid].obj).find('td.subject span.subject').text().trim(),"
            " rows[uid].parent_uid ? String(rows[uid].parent_uid) : null];"
            " return out;")
        return {subject: rows[parent][0] if parent in rows else None for subject, parent in rows.values()}

    def read(self, subject):
        """Open the message with `subject` in the preview; return its body text."""
        rows = self.driver.find_elements(By.CSS_SELECTOR, "#messagelist tbody tr")
        row = next(r for r in rows if subject in r.text)
        row.find_element(By.CSS_SELECTOR, "td.subject").click()
        self.wait.until(EC.frame_to_be_available_and_switch_to_it((By.ID, "messagecontframe")))
        try:
            body = self.wait.until(EC.visibility_of_element_located((By.ID, "messagebody")))
            return body.text
        finally:
            self.driver.switch_to.default_content()

    # Roundcube's answer when the send action finds no compose session of
    # that id in the PHP session ("Invalid compose ID" in its error log): the
    # message was not handed to SMTP. Seen once in CI, on a compose page
    # opened while the machine was loaded right after a converge.
    NO_COMPOSE_SESSION = "An internal error occurred"

    def send(self, to, subject, body, forged_from=None):
        """Compose and send a message; return Roundcube's status line.
        `forged_from` replaces the identity in the form's _from field, as a
        hand-made POST to the send action would (the page offers no way).
        A send that Roundcube refused for a lost compose session is composed
        once more; any other answer is returned as it is."""
        text = self._send_once(to, subject, body, forged_from)
        if text.startswith(self.NO_COMPOSE_SESSION):
            text = self._send_once(to, subject, body, forged_from)
        return text

    def page_state(self):
        """What the browser shows, for a failure message: address, title,
        Roundcube's toasts and the start of the page's text."""
        try:
            return self.driver.execute_script(
                "var s = document.querySelector('#messagestack');"
                " return 'url=' + location.href + ' title=' + document.title"
                " + ' ready=' + document.readyState"
                " + ' busy=' + (window.rcmail ? rcmail.busy : 'no rcmail')"
                " + ' toasts=' + (s ? s.innerText.trim() : '')"
                " + ' text=' + (document.body ? document.body.innerText.slice(0, 300) : '');")
        except WebDriverException as error:
            return f"(page unreadable: {error.msg})"

    def _compose(self):
        """Open a compose page; return its recipient field once usable.
        The page builds its editor in the browser after PHP's page: on a
        loaded machine (CI converging other scenarios) that took more than
        30 s once, so it gets three times the usual wait. A page that is
        still not usable then (seen once in CI, state unknown) is loaded
        once more, and what it showed is kept for the failure message."""
        recipients = (By.CSS_SELECTOR, "#compose_to .recipient-input input")
        seen = []
        for _ in range(2):
            self.driver.get(self.url + "?_task=mail&_action=compose")
            try:
                return WebDriverWait(self.driver, 3 * self.timeout,
                                     ignored_exceptions=[StaleElementReferenceException]).until(
                    EC.element_to_be_clickable(recipients))
            except TimeoutException:
                seen.append(self.page_state())
                print(f"WebMail compose page not usable after {3 * self.timeout} s: {seen[-1]}")
        raise AssertionError("WebMail's compose page never became usable: " + " | ".join(seen))

    def _send_once(self, to, subject, body, forged_from):
        self._compose().send_keys(to + ", ")
        if forged_from:
            self.driver.execute_script(
                "var f = document.querySelector('[name=_from]'), o = document.createElement('option');"
                " o.value = o.text = arguments[0];"
                " if (f.tagName == 'SELECT') { f.appendChild(o); } f.value = arguments[0];", forged_from)
        self.driver.find_element(By.ID, "compose-subject").send_keys(subject)
        self.driver.find_element(By.ID, "composebody").send_keys(body)
        self.driver.find_element(By.CSS_SELECTOR, "button.send").click()
        # Text and class are read in one script: Roundcube replaces and
        # removes its toasts by itself, so an element found in one call can
        # be gone (stale) in the next.
        text, classes = self.wait.until(lambda d: d.execute_script(
            "var e = document.querySelector('#messagestack .confirmation, #messagestack .error');"
            " return e && e.offsetParent !== null ? [e.innerText.trim(), e.className] : null;"))
        if "confirmation" in classes.split():
            # Once sent, Roundcube leaves the compose page by itself, 500 ms
            # later (app.js sent_successfully). Wait for that, or the next
            # page this session opens (another compose) is replaced by it.
            WebDriverWait(self.driver, self.timeout, ignored_exceptions=[WebDriverException]).until(
                lambda d: d.execute_script("return document.readyState == 'complete' && window.rcmail"
                                           " && rcmail.env.action != 'compose' && !rcmail.busy"))
        return text

    def identities(self):
        """The addresses of the identities on the Settings > Identities page."""
        self.driver.get(self.url + "?_task=settings&_action=identities")
        self.wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#identities-table tbody tr")))
        return [row.text for row in self.driver.find_elements(By.CSS_SELECTOR, "#identities-table tbody tr")]

    def logged_out(self):
        return bool(self.driver.find_elements(By.ID, "rcmloginuser"))

