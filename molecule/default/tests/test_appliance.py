"""The converged appliance: services, listeners, and the generated files."""

import re

import pytest
from conftest import APPLIANCE

testinfra_hosts = [f"docker://{APPLIANCE}"]


@pytest.mark.parametrize("service", ["postfix", "dovecot", "pop-before-smtp"])
def test_service_running_and_enabled(host, service):
    svc = host.service(service)
    assert svc.is_running
    assert svc.is_enabled


@pytest.mark.parametrize("port", [25, 110, 995, 143, 993])
def test_mail_ports_listen_on_all_addresses(host, port):
    assert host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_daemon_sockets_belong_to_systemd_and_only_postfix_opens_the_policy_one(host):
    assert host.socket("tcp://127.0.0.1:10032").is_listening
    assert not host.socket("tcp://0.0.0.0:10032").is_listening
    assert not host.socket("tcp://127.0.0.1:10031").is_listening  # no TCP policy port any more
    for unit in ("policy", "report", "admin"):
        assert host.service(f"pop-before-smtp-{unit}.socket").is_running
        assert host.service(f"pop-before-smtp-{unit}.socket").is_enabled
    policy = host.file("/var/spool/postfix/private/pop-before-smtp")
    assert policy.is_socket and policy.user == "postfix" and policy.mode == 0o600
    admin = host.file("/run/pop-before-smtp/admin.sock")
    assert admin.is_socket and admin.user == "root" and admin.mode == 0o600


def test_daemon_runs_unprivileged(host):
    pid = host.check_output("systemctl show -p MainPID --value pop-before-smtp")
    status = host.file(f"/proc/{pid}/status").content_string
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert uid == str(host.user("pop-before-smtp").uid)
    assert uid != "0"


def test_relay_networks_are_loopback_only(host):
    mynetworks = host.check_output("postconf -h mynetworks").split()
    assert mynetworks == ["127.0.0.0/8", "[::1]/128"]


def test_relay_restrictions_ask_the_daemon_before_refusing(host):
    restrictions = " ".join(host.check_output("postconf -h smtpd_relay_restrictions").split())
    assert restrictions == (
        "permit_mynetworks, permit_auth_destination, check_policy_service "
        "{ unix:private/pop-before-smtp, timeout=2s, default_action=DUNNO, policy_context=relay }, "
        "reject_unauth_destination")


def test_generated_files_carry_a_banner_and_no_timestamp(host):
    for path in ["/etc/postfix/main.cf", "/etc/aliases", "/etc/dovecot/dovecot.conf"]:
        content = host.file(path).content_string
        assert "Ansible managed" in content.splitlines()[0], path
        # No date of any year (ISO or ctime style), no "modified on" line.
        assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b|\b\d\d:\d\d:\d\d\b", content), path
        assert "modified on" not in content, path


def test_aliases_come_from_the_inventory(host):
    aliases = host.file("/etc/aliases").content_string
    assert "sales: alice" in aliases
    assert "office: alice, bob" in aliases


def test_token_and_key_are_private(host):
    assert host.file("/etc/pop-before-smtp/token").mode == 0o640
    assert host.file("/etc/qubemail/tls/key.pem").mode == 0o600
