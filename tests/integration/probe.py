"""Helpers shared by the molecule scenarios' testinfra tests and the
benches: real mail sessions run from a client container with
tests/clients/mailprobe.py, and re-runs of the site playbook."""

import json
import os
import pathlib
import re
import shlex
import subprocess
import tempfile
import time
import uuid

import testinfra

PROJECT = pathlib.Path(__file__).resolve().parents[2]


def host(name):
    return testinfra.get_host(f"docker://{name}")


class Probe:
    """Runs mailprobe in the client container against `server`; returns its JSON."""

    def __init__(self, client, server, passwords):
        self.client = client
        self.server = server
        self.passwords = passwords

    def __call__(self, *args):
        cmd = f"mailprobe --server {self.server} " + " ".join(shlex.quote(str(a)) for a in args)
        result = self.client.run(cmd)
        assert result.rc == 0, f"{cmd}: {result.stderr}"
        return json.loads(result.stdout)

    def send(self, to, *extra, mail_from="probe@client.test", subject=None, login=None, port=587):
        """An SMTP session to port 25; with `login`, as that user's mail
        program does: submission on `port` (587 STARTTLS, 465 TLS) and AUTH
        with the user's password, `mail_from` defaulting to their address."""
        tos = [to] if isinstance(to, str) else list(to)
        args = ["smtp", "--from", mail_from]
        if login:
            domain = to.rsplit("@", 1)[-1] if isinstance(to, str) else tos[0].rsplit("@", 1)[-1]
            if mail_from == "probe@client.test":
                args[2] = f"{login}@{domain}"
            args = ["--port", str(port)] + args + ["--ssl" if port == 465 else "--starttls",
                                                  "--login", login, "--password", self.passwords[login]]
        for rcpt in tos:
            args += ["--to", rcpt]
        if subject:
            args += ["--subject", subject]
        return self(*args, *extra)

    def pop3(self, user, password=None, tls="stls"):
        return self("pop3", "--user", user, "--password", password or self.passwords[user], "--tls", tls)

    def imap(self, user, password=None, tls="starttls", mailbox="INBOX", read=None):
        """The mailboxes and `mailbox`'s messages with their flags; `read`:
        first read (so \\Seen) the messages whose subject has this text."""
        return self("imap", "--user", user, "--password", password or self.passwords[user],
                    "--tls", tls, "--mailbox", mailbox, *(["--read", read] if read else []))


    def handshake(self, port, cipher, protocol="tls1_2", starttls=None):
        """A TLS handshake with openssl s_client offering only `cipher` (at
        @SECLEVEL=0 OpenSSL 3 offers old and anonymous suites too) and only
        `protocol`. Returns {"ok", "protocol", "cipher", "output"}."""
        cmd = (f"timeout 20 openssl s_client -brief -connect {self.server}:{port} -{protocol}"
               f" -cipher {shlex.quote(cipher)}" + (f" -starttls {starttls}" if starttls else "") + " </dev/null")
        result = self.client.run(cmd)
        output = result.stdout + result.stderr
        fields = dict(re.findall(r"(?m)^(Protocol version|Ciphersuite): (\S+)$", output))
        return {"ok": result.rc == 0 and "CONNECTION ESTABLISHED" in output,
                "protocol": fields.get("Protocol version"), "cipher": fields.get("Ciphersuite"), "output": output}


def unique_subject(label):
    return f"{label} {uuid.uuid4().hex[:12]}"


def rcpt_codes(reply):
    return [code for _, code, _ in reply["rcpt"]]


def wait_for(predicate, timeout=30, interval=0.5):
    """Poll until predicate() is truthy; return its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def subjects(messages):
    return [m["subject"] for m in messages]


def run_site(container, extra_vars, group_vars=None, args=(), playbook="site.yml", env=None):
    """Run playbooks/`playbook` (site.yml) on `container` (docker connection)
    with `extra_vars` and ansible-playbook's `args`; `group_vars` is a
    scenario's group_vars directory, used as the inventory's; `env` adds to
    the environment. Returns (CompletedProcess with text output, seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "hosts.yml").write_text(f"qubemail:\n  hosts:\n    {container}:\n"
                                       "      ansible_connection: community.docker.docker\n")
        if group_vars:
            (tmp / "group_vars").symlink_to(group_vars)
        (tmp / "extra.json").write_text(json.dumps(extra_vars))
        start = time.monotonic()
        run = subprocess.run(["ansible-playbook", "-i", str(tmp / "hosts.yml"), str(PROJECT / "playbooks" / playbook),
                              "-e", f"@{tmp / 'extra.json'}", *args],
                             capture_output=True, text=True, cwd=PROJECT, env={**os.environ, "ANSIBLE_NOCOLOR": "1", **(env or {})})
        return run, time.monotonic() - start


def run_site_scenario(container, scenario, extra_vars):
    """run_site with the inventory of molecule/<scenario> (the group_vars
    directory its molecule.yml links, or the group_vars written there)."""
    import yaml  # the venv has it (ansible); not needed by the clients

    directory = PROJECT / "molecule" / scenario
    config = yaml.safe_load((directory / "molecule.yml").read_text())
    linked = config["provisioner"]["inventory"].get("links", {}).get("group_vars")
    if linked:
        return run_site(container, extra_vars, directory / linked)
    groups = config["provisioner"]["inventory"]["group_vars"]
    with tempfile.TemporaryDirectory() as tmp:
        for group, values in groups.items():  # molecule's $$ escapes a literal $
            text = json.dumps(values).replace("$$", "$")
            (pathlib.Path(tmp) / f"{group}.json").write_text(text)
        return run_site(container, extra_vars, pathlib.Path(tmp))


def recap_changed(output):
    """changed=N of the PLAY RECAP in ansible-playbook's output."""
    return int(re.search(r"changed=(\d+)", output[output.rindex("PLAY RECAP"):]).group(1))
