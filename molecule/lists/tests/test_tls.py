"""TLS on every port, WebMail's HSTS and what the servers say about
themselves, from the client container: openssl s_client offers one suite or
one protocol version at a time, mailprobe reads greetings and pages.

Each refusal is checked right after a handshake on the same port that must
succeed, so "refused" means the server turned the offer down, not that
nothing was listening."""

import pytest

GOOD = "ECDHE-RSA-AES128-GCM-SHA256"  # Mozilla intermediate
# Ports where a password can be sent: (port, STARTTLS protocol or None).
PASSWORD_PORTS = [(110, "pop3"), (995, None), (143, "imap"), (993, None), (443, None), (587, "smtp"), (465, None)]
PORT_IDS = ["pop3-stls", "pop3s", "imap-starttls", "imaps", "webmail-https", "submission", "submissions"]
REFUSED = [
    ("AES128-SHA@SECLEVEL=0", "tls1_2"),            # plain-RSA key exchange, CBC, SHA-1
    ("ECDHE-RSA-AES128-SHA@SECLEVEL=0", "tls1_2"),  # forward secret, but CBC with SHA-1
    ("DEFAULT@SECLEVEL=0", "tls1_1"),               # TLS 1.1
]
REFUSED_IDS = ["AES128-SHA", "ECDHE-RSA-AES128-SHA", "TLSv1.1"]


def accepted(probe, port, starttls, cipher=GOOD):
    result = probe.handshake(port, cipher, starttls=starttls)
    assert result["ok"] and result["cipher"] == cipher.split("@")[0], result["output"]


@pytest.mark.parametrize("port, starttls", PASSWORD_PORTS, ids=PORT_IDS)
@pytest.mark.parametrize("cipher, protocol", REFUSED, ids=REFUSED_IDS)
def test_password_ports_refuse_weak_tls(probe, port, starttls, cipher, protocol):
    accepted(probe, port, starttls)
    result = probe.handshake(port, cipher, protocol=protocol, starttls=starttls)
    assert not result["ok"], result["output"]


@pytest.mark.parametrize("port, starttls", PASSWORD_PORTS, ids=PORT_IDS)
def test_password_ports_accept_chacha20_and_tls13(probe, port, starttls):
    accepted(probe, port, starttls, "ECDHE-RSA-CHACHA20-POLY1305")
    result = probe.handshake(port, "DEFAULT", protocol="tls1_3", starttls=starttls)
    assert result["ok"] and result["protocol"] == "TLSv1.3", result["output"]


def test_smtp_starttls_refuses_anonymous_ciphers(probe):
    # Port 25 stays opportunistic (broad ciphers, plain-RSA included), but a
    # client must always be able to see whose certificate it got.
    accepted(probe, 25, "smtp")
    accepted(probe, 25, "smtp", "AES128-SHA@SECLEVEL=0")
    result = probe.handshake(25, "aNULL@SECLEVEL=0", starttls="smtp")
    assert not result["ok"], result["output"]


def test_webmail_sends_hsts_and_no_versions(probe):
    page = probe("https", "--path", "/")
    assert page.get("status") == 200, page
    headers = {name.lower(): value for name, value in page["headers"]}
    assert headers.get("strict-transport-security") == "max-age=63072000", headers
    assert headers.get("server") == "Apache" and "x-powered-by" not in headers, headers
    assert 'id="rcmloginuser"' in page["body"]  # the login form, so the page is Roundcube's
    assert "Qube WebMail" in page["body"]
    assert "rcversion" not in page["body"] and "Roundcube Webmail" not in page["body"]
    missing = probe("https", "--path", "/no-such-page")
    assert missing["status"] in (403, 404), missing
    assert "Apache/" not in missing["body"] and "Server at" not in missing["body"], missing["body"]


@pytest.mark.parametrize("port", [25, 110, 143])
def test_greetings_name_no_product(probe, port):
    greeting = probe("--port", port, "raw")["greeting"]
    assert greeting and "mail.qube.test" in greeting[1], greeting
    for word in ("Postfix", "Dovecot", "Debian", "Ubuntu"):
        assert word not in greeting[1], greeting
