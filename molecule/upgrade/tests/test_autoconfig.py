"""Mail programs set themselves up (webmail_autoconfig): the client asks
autoconfig.DOMAIN (Thunderbird) or autodiscover.DOMAIN (Outlook) over HTTPS,
checks the ACME certificate against pebble's root by those names, and then
logs in and sends with nothing but the answer. Every name resolves to the
appliance, as the test network's DNS (prepare.yml) says."""

import uuid

import pytest
from conftest import DOMAIN, HOSTNAME, PASSWORDS, wait_for
from probe import subjects


@pytest.mark.parametrize("kind", ["thunderbird", "outlook"])
def test_a_client_configured_from_the_answer_alone_logs_in_and_sends(upgraded, probe, pebble_root, kind):
    subject = f"autoconfig {kind} {uuid.uuid4().hex[:8]}"
    out = probe("autoconfig", "--kind", kind, "--email", f"alice@{DOMAIN}", "--password", PASSWORDS["alice"],
                "--to", f"carol@{DOMAIN}", "--subject", subject, "--cafile", pebble_root)
    assert "error" not in out, out
    assert out["http"][0] == 200 and "xml" in out["http"][1], out["http"]
    # TLS from the first byte first (RFC 8314); the login is the address's local part.
    assert [(s["type"], s["hostname"], s["port"], s["socket"], s["username"]) for s in out["incoming"]] == [
        ("imap", HOSTNAME, 993, "SSL", "alice"), ("pop3", HOSTNAME, 995, "SSL", "alice")]
    assert [(s["port"], s["socket"]) for s in out["outgoing"]] == [(465, "SSL"), (587, "STARTTLS")]
    assert out["login"] is True and out["sent"] is True
    assert wait_for(lambda: subject in subjects(probe.imap("carol")["messages"]), timeout=30)


def test_the_autoconfig_names_serve_the_settings_and_nothing_else(upgraded, probe):
    def get(name, path):
        out = probe("https", "--host", name, "--path", path)
        return out["status"], out["body"]

    status, xml = get(f"autoconfig.{DOMAIN}", "/mail/config-v1.1.xml")
    assert status == 200 and f"<domain>{DOMAIN}</domain>" in xml, (status, xml)
    # Thunderbird's second place, on the host name too.
    assert get(HOSTNAME, "/.well-known/autoconfig/mail/config-v1.1.xml") == (200, xml)
    # No WebMail, no directory listing, no PHP source under these names.
    for path in ("/", "/?_task=mail", "/autodiscover.php", "/config-v1.1.xml"):
        status, body = get(f"autoconfig.{DOMAIN}", path)
        assert status in (403, 404) and "roundcube" not in body.lower() and "<?php" not in body, (path, status)
    status, answer = get(f"autodiscover.{DOMAIN}", "/Autodiscover/Autodiscover.xml")
    assert status == 200 and "<?php" not in answer and "<LoginName>" not in answer, answer
