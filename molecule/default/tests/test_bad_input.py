"""Bad inventory input stops the play before any task changes the host,
with one error line per bad field naming the field and the value; so does
a value the validation cannot read (undefined, or vaulted without the
vault password)."""

import hashlib
import subprocess

import pytest
from conftest import APPLIANCE
from probe import recap_changed, run_site

testinfra_hosts = [f"docker://{APPLIANCE}"]

WATCHED = ["/etc/mailname", "/etc/postfix/main.cf", "/etc/aliases", "/etc/dovecot/dovecot.conf",
           "/etc/dovecot/qubemail-users", "/etc/pop-before-smtp/pop-before-smtp.conf"]

USERS = [
    {"name": "alice", "password": "pw", "aliases": ["MAILER-DAEMON"]},
    {"name": "alice", "password": "pw"},
    {"name": "dave", "password": "pw", "aliases": ["alice"]},
]
CASES = {
    # Users and POP-before-SMTP wrong at once: both reported in one run.
    "users": ({"qubemail_users": USERS, "pop_before_smtp_enabled": True, "pop_before_smtp_ttl": -5,
               "pop_before_smtp_never_authorize": ["192.168.1.7/24"]},
              ["qubemail_users[0].aliases[0] = 'MAILER-DAEMON'",
               "qubemail_users[1].name = 'alice'",
               "qubemail_users[2].aliases[0] = 'alice'",
               "pop_before_smtp_ttl = -5",
               "pop_before_smtp_never_authorize[0] = '192.168.1.7/24'"]),
    # Email settings are checked against valid users.
    "email settings": ({"qubemail_users": [{"name": "alice", "password": "pw"}],
                        "mta_relay_allowed_networks": ["0.0.0.0/0", "10.1.2.3/33"],
                        "mta_catch_all": "not an address@", "mta_smart_relay_port": 0},
                       ["mta_relay_allowed_networks[0] = '0.0.0.0/0'",
                        "mta_relay_allowed_networks[1] = '10.1.2.3/33'",
                        "mta_catch_all = 'not an address@'",
                        "mta_smart_relay_port = 0"]),
    # WebMail settings, one of them a port of the mail services.
    "webmail": ({"qubemail_users": [{"name": "alice", "password": "pw"}],
                 "webmail_enabled": True, "webmail_https_port": 25, "webmail_language": "English"},
                ["webmail_https_port = 25", "webmail_language = 'English'"]),
    # One bad value for each role, and a misspelt name: all reported, by the
    # checks that run before any role (argument specs and the roles' filters).
    "every role": ({"qubemail_tls_dir": "etc/qubemail/tls", "mta_main_cf_extra": {"mynetworks": "0.0.0.0/0"},
                    "pop_tls_min_protocol": "TLSv1.1", "pop_before_smtp_sweep_interval": 0,
                    "lists_spool": "/var/spool/my lists", "webmail_session_lifetime": 0,
                    "acme_directory_url": "http://acme.example.net/directory", "fail2ban_findtime": 5,
                    "mta_relay_alowed_networks": ["10.0.0.0/8"]},
                   ["qubemail_tls_dir = 'etc/qubemail/tls': expected an absolute path",
                    "mta_main_cf_extra['mynetworks'] = 'mynetworks': is set by the role itself",
                    "pop_tls_min_protocol = 'TLSv1.1': expected a string, one of 'TLSv1.2', 'TLSv1.3'",
                    "pop_before_smtp_sweep_interval = 0: expected an integer from 1 to 86399 (seconds)",
                    "lists_spool = '/var/spool/my lists': expected an absolute path",
                    "webmail_session_lifetime = 0: expected an integer from 1 to 1440 (minutes)",
                    "acme_directory_url = 'http://acme.example.net/directory': expected the https:// URL of an "
                    "ACME directory, such as https://acme-v02.api.letsencrypt.org/directory",
                    "fail2ban_findtime = 5: expected an integer from 10 to 86400 (seconds)",
                    "mta_relay_alowed_networks: is not a variable of any qubemail role "
                    "(did you mean 'mta_relay_allowed_networks'?)"]),
    # The example inventory's placeholders left in place.
    "placeholders": ({"qubemail_users": [{"name": "alice", "password": "change-me-and-vault-me"}],
                      "qubemail_domains": ["qube.test", "example.org"],
                      "mta_relay_allowed_networks": ["198.51.100.0/24"]},
                     ["qubemail_users[0].password = <redacted string of 22 characters>: the example inventory's "
                      "placeholder secret",
                      "qubemail_domains[1] = 'example.org': under example.org, reserved for documentation",
                      "mta_relay_allowed_networks[0] = '198.51.100.0/24': in 198.51.100.0/24, a documentation "
                      "network"]),
}


def changes_nothing(host, run, before, expected_lines):
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "invalid inventory, nothing was changed" in out, out[-3000:]
    for expected in expected_lines:
        assert expected in out, f"{expected!r} missing from:\n{out[-3000:]}"
    assert recap_changed(out) == 0, out[out.rindex("PLAY RECAP"):]
    assert digest(host) == before


def digest(host):
    return {path: hashlib.sha256(host.file(path).content).hexdigest() for path in WATCHED}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_changes_nothing_and_names_every_field(host, case):
    bad, expected_lines = CASES[case]
    before = digest(host)
    run, _ = run_site(APPLIANCE,
                      {"qubemail_hostname": "mail.qube.test", "qubemail_domains": ["qube.test"], **bad})
    changes_nothing(host, run, before, expected_lines)


def vaulted(tmp_path, secret):
    """`secret` as an inline !vault value, encrypted with a password the test then withholds."""
    (tmp_path / "vault-pass").write_text("not-given-to-the-play\n")
    out = subprocess.run(["ansible-vault", "encrypt_string", "--vault-password-file", str(tmp_path / "vault-pass"),
                          secret], capture_output=True, text=True, check=True).stdout
    return out.split("!vault |", 1)[1].strip().splitlines()


@pytest.mark.parametrize("way", ["undefined variable", "vault password missing"])
def test_a_value_validation_cannot_read_stops_the_play(host, tmp_path, way):
    # A new host name, so that a play that went on would change /etc/mailname.
    good = {"qubemail_hostname": "mail2.qube.test", "qubemail_domains": ["qube.test"]}
    if way == "undefined variable":
        extra, args, expected = {**good, "mta_catch_all": "{{ nosuchvar }}"}, (), "'nosuchvar' is undefined"
    else:
        lines = "".join(f"        {line.strip()}\n" for line in vaulted(tmp_path, "alices-password"))
        (tmp_path / "users.yml").write_text(f"qubemail_users:\n  - name: alice\n    password: !vault |\n{lines}")
        extra, args, expected = good, ("-e", f"@{tmp_path / 'users.yml'}"), "no vault secrets"
    before = digest(host)
    run, _ = run_site(APPLIANCE, extra, args=args)
    changes_nothing(host, run, before, [expected])

