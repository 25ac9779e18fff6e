"""fail2ban: an address that keeps failing to log in (submission, POP3,
IMAP) is turned away on every port, other clients go on, loopback is never
banned, and the ban ends (fail2ban_bantime: 60 in the scenario's
inventory). The guesser is one of the client's ATTACKER_IPS, a different
one for each test: fail2ban may still be reading one test's failures (on
Debian 12 Dovecot logs each failure twice, and the dovecot jail reads
both) when the next begins, and what it counts for one address never
reaches another. Each test lifts its bans before and after, so it passes
alone and in any order."""

import concurrent.futures
import shlex

import pytest

from conftest import ATTACKER_IPS, OTHER_CLIENT_IP, PASSWORDS, grants, journal, wait_for

JAILS = ("postfix-sasl", "dovecot")
MAXRETRY = 10  # fail2ban_maxretry's default


@pytest.fixture
def attacker(appliance, request):
    """The test's own guessing address (indirect parameter), banned by no
    jail before and after the test: lifted in fail2ban and gone from
    nftables' sets (fail2ban 1.0, Debian 12, may answer before its action
    has run)."""
    address = request.param

    def unban():
        for jail in JAILS:
            appliance.run(f"fail2ban-client set {jail} unbanip {address}")
        assert wait_for(lambda: unbanned(appliance, address), timeout=30), nft_bans(appliance)
    unban()
    yield address
    unban()
    appliance.run(f"pop-before-smtp revoke {address}")


def guesser(index):
    return pytest.mark.parametrize("attacker", [ATTACKER_IPS[index]], indirect=True)


def guess(probe, source, service, password="guess", user="alice", timeout=45):
    """One login as `user` from `source`. Dovecot delays the answers to an
    address that keeps failing (auth_penalty, up to 15 s, on top of the 2 s
    failure delay, and remembered across tests), hence the wait;
    a banned address is turned away at once."""
    if service == "submission":
        return probe("--source", source, "--timeout", timeout, "--port", 587, "smtp", "--starttls", "--login", user,
                     "--password", password, "--from", f"{user}@qube.test", "--to", "bob@qube.test", "--no-data")
    return probe("--source", source, "--timeout", timeout, service, "--user", user, "--password", password)


def guesses(probe, source, services):
    with concurrent.futures.ThreadPoolExecutor(len(services)) as pool:
        return list(pool.map(lambda service: guess(probe, source, service), services))


def nft_bans(appliance):
    return appliance.run("nft list table inet f2b-table").stdout


def unbanned(appliance, address):
    """In no jail's nftables set (none at all before the first ban)."""
    return address not in nft_bans(appliance)


def dropped(reply):
    """The banned address's connection was turned away (nftables rejects it)."""
    return any(word in reply.get("error", "") for word in ("Connection refused", "timed out"))


def banned(appliance, since, jail, address):
    return f"[{jail}] Ban {address}" in journal(appliance, since, "fail2ban")


@guesser(0)
def test_guessing_on_submission_bans_the_address_on_every_port(appliance, probe, since, attacker):
    replies = guesses(probe, attacker, ["submission"] * MAXRETRY)
    assert all(reply.get("auth", [None])[0] == 535 for reply in replies), replies
    assert wait_for(lambda: banned(appliance, since, "postfix-sasl", attacker), timeout=30)
    # Dropped everywhere: the right password over POP3 neither logs in nor
    # unlocks relay by POP-before-SMTP.
    pop = guess(probe, attacker, "pop3", password=PASSWORDS["alice"], timeout=3)
    assert dropped(pop), pop
    assert attacker not in grants(appliance)
    # Another address of the same client goes on.
    other = guess(probe, OTHER_CLIENT_IP, "submission", password=PASSWORDS["alice"])
    assert other["auth"][0] == 235, other


@guesser(1)
def test_guessing_on_pop3_and_imap_bans_the_address(appliance, probe, since, attacker):
    # Dovecot's words for a failed login differ between 2.3 (Debian 12) and
    # 2.4 (Debian 13); the dovecot jail reads both.
    replies = guesses(probe, attacker, ["pop3", "imap"] * (MAXRETRY // 2))
    assert all("Authentication failed" in reply.get("error", "") for reply in replies), replies
    assert wait_for(lambda: banned(appliance, since, "dovecot", attacker), timeout=30)
    submission = guess(probe, attacker, "submission", password=PASSWORDS["alice"], timeout=3)
    assert dropped(submission), submission


@guesser(2)
def test_the_ban_ends_on_time(appliance, probe, since, attacker):
    replies = guesses(probe, attacker, ["submission"] * MAXRETRY)
    assert all(reply.get("auth", [None])[0] == 535 for reply in replies), replies
    assert wait_for(lambda: banned(appliance, since, "postfix-sasl", attacker), timeout=30)
    # Every jail's ban ends: on Debian 12 Dovecot 2.3 also logs the
    # submission failures ("Password mismatch"), so the dovecot jail bans
    # the address as well, a moment later.
    assert wait_for(lambda: f"[postfix-sasl] Unban {attacker}" in journal(appliance, since, "fail2ban"),
                    timeout=90, interval=2)
    assert wait_for(lambda: unbanned(appliance, attacker), timeout=90, interval=2), nft_bans(appliance)
    reply = guess(probe, attacker, "submission", password=PASSWORDS["alice"])
    assert reply["auth"][0] == 235, reply


def test_loopback_is_never_banned(appliance, since):
    # WebMail's logins to IMAP come from 127.0.0.1: its users' wrong
    # passwords must not ban WebMail itself.
    script = ("import imaplib, ssl\n"
              "for _ in range(%d):\n"
              "    imap = imaplib.IMAP4('127.0.0.1', 143)\n"
              "    imap.starttls(ssl._create_unverified_context())\n"
              "    try:\n"
              "        imap.login('alice', 'guess')\n"
              "    except imaplib.IMAP4.error:\n"
              "        pass\n"
              "    imap.logout()\n" % (MAXRETRY + 2))
    appliance.check_output(f"python3 -c {shlex.quote(script)}")
    # fail2ban read the failures and said why it does not count them.
    assert wait_for(lambda: "[dovecot] Ignore 127.0.0.1 by " in journal(appliance, since, "fail2ban"), timeout=30)
    assert "Ban 127.0.0.1" not in journal(appliance, since, "fail2ban")
    assert "127.0.0.1" not in appliance.check_output("fail2ban-client status dovecot")
