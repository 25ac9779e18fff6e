"""A certificate from an ACME CA (roles/acme): pebble on the client
(prepare.yml) issues it to Debian 12's certbot at the first converge, the
appliance keeps it across the upgrade, Debian 13's certbot renews it, and a
renewal that fails leaves it in use and mails postmaster. Clients check it
against pebble's root, by the host name, on every TLS port."""

import json
import textwrap

from conftest import APPLIANCE_IP, CLIENT, DOMAIN, HOSTNAME, wait_for
from probe import subjects

testinfra_hosts = [f"docker://{CLIENT}"]

LIVE = "/etc/letsencrypt/live/qubemail"
FAILED_SUBJECT = f"[{HOSTNAME}] the certificate was not renewed"
# certbot.service as the timer starts it, but renewing now (pebble's
# certificates are years from expiry).
FORCE = "/run/systemd/system/certbot.service.d/zz-test-force.conf"

# Run on the client: each port's certificate, verified against pebble's root for HOSTNAME.
SERVED = textwrap.dedent("""
    import json, smtplib, socket, ssl, sys
    context = ssl.create_default_context(cafile=sys.argv[2])
    def peer(sock):
        return context.wrap_socket(sock, server_hostname=sys.argv[3]).getpeercert()
    out = {}
    for port in (993, 995, 465, 443, 587):
        try:
            if port == 587:
                smtp = smtplib.SMTP(sys.argv[1], port, timeout=20)
                smtp._host = sys.argv[3]  # starttls() checks the name smtplib connected to
                smtp.starttls(context=context)
                cert = smtp.sock.getpeercert()
                smtp.quit()
            else:
                cert = peer(socket.create_connection((sys.argv[1], port), timeout=20))
            out[port] = {"serial": cert["serialNumber"],
                         "names": sorted(v for k, v in cert["subjectAltName"] if k == "DNS")}
        except Exception as exc:
            out[port] = {"error": repr(exc)}
    print(json.dumps(out))
""")


def served(host, root):
    """{port: {serial, names} or {error}} as the client sees them."""
    out = host.check_output(f"python3 - {APPLIANCE_IP} {root} {HOSTNAME} <<'EOF'\n{SERVED}\nEOF")
    return {int(port): cert for port, cert in json.loads(out).items()}


def one_certificate(certs):
    """The serial every port serves; fails with what each served otherwise."""
    serials = {cert.get("serial") for cert in certs.values()}
    assert len(serials) == 1 and None not in serials, certs
    return serials.pop()


def key_digest(appliance):
    return appliance.check_output(f"openssl pkey -in {LIVE}/privkey.pem -pubout | sha256sum")


def renew(appliance):
    """certbot.service now, forced; its exit status (systemctl waits for the oneshot)."""
    appliance.check_output(f"mkdir -p {FORCE.rsplit('/', 1)[0]} && printf '%s\\n' '[Service]' 'ExecStart='"
                           f" 'ExecStart=/usr/bin/certbot -q renew --no-random-sleep-on-renew --force-renewal'"
                           f" > {FORCE} && systemctl daemon-reload")
    try:
        return appliance.run("systemctl start certbot.service").rc
    finally:
        appliance.run(f"rm -f {FORCE}; systemctl daemon-reload")


def test_every_tls_port_serves_the_acme_certificate_kept_across_the_upgrade(upgraded, host, pebble_root):
    certs = served(host, pebble_root)
    serial = one_certificate(certs)
    # mta-sts.DOMAIN: WebMail serves the MTA-STS policy there (roles/dns).
    assert certs[993]["names"] == sorted([HOSTNAME, f"autoconfig.{DOMAIN}", f"autodiscover.{DOMAIN}",
                                          f"mta-sts.{DOMAIN}"])
    # Obtained on Debian 12 (the first converge), not asked for again by the upgrade's runs.
    before, after = upgraded["before"]["certificate"], upgraded["after"]["certificate"]
    # openssl 3.0 (Debian 12) prints "CN = Pebble ...", 3.5 (13) "CN=Pebble ...".
    assert "Pebble" in before and before.replace(" ", "") == after.replace(" ", ""), (before, after)
    assert int(before.split("serial=", 1)[1].split()[0], 16) == int(serial, 16)


def test_plain_http_redirects_everything_but_the_challenges(upgraded, host):
    def status(path):
        return host.check_output(f"python3 -c 'import http.client as h; c = h.HTTPConnection(\"{APPLIANCE_IP}\", 80,"
                                 f" timeout=20); c.request(\"GET\", \"{path}\", headers={{\"Host\": \"{HOSTNAME}\"}});"
                                 f" r = c.getresponse(); print(r.status, r.getheader(\"Location\"))'")
    assert status("/.well-known/acme-challenge/no-such-token").startswith("404 ")
    assert status("/?_task=mail") == f"301 https://{HOSTNAME}/?_task=mail"


def test_a_renewal_puts_the_new_certificate_into_use_with_the_same_key(upgraded, host, appliance, pebble_root):
    old, key = one_certificate(served(host, pebble_root)), key_digest(appliance)
    assert renew(appliance) == 0, appliance.run("journalctl -q -n 40 -u certbot.service").stdout
    # systemctl reload returns before each service has read the new files.
    assert wait_for(lambda: one_certificate(served(host, pebble_root)) != old, timeout=30)
    assert key_digest(appliance) == key


def test_a_failed_renewal_keeps_the_certificate_and_mails_postmaster(upgraded, host, appliance, pebble_root, probe):
    old = one_certificate(served(host, pebble_root))
    mails = sum(FAILED_SUBJECT in s for s in subjects(probe.imap("carol")["messages"]))
    host.check_output("systemctl stop acme-dns")  # pebble cannot find the appliance
    try:
        assert renew(appliance) != 0
    finally:
        host.check_output("systemctl start acme-dns")
    assert appliance.run("systemctl is-failed certbot.service").stdout.strip() == "failed"
    assert wait_for(lambda: sum(FAILED_SUBJECT in s for s in subjects(probe.imap("carol")["messages"])) == mails + 1,
                    timeout=60), appliance.run("journalctl -q -n 40 -u qubemail-acme-failed").stdout
    assert one_certificate(served(host, pebble_root)) == old
    appliance.run("systemctl reset-failed certbot.service")
