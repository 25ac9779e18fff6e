#!/usr/bin/env python3
"""The README's "Using it on a real host" commands, run as an admin types them.

Reads the ```sh block after the marker comment in README.md (backslash
continuations joined, `#` comments stripped) and runs each command with
/bin/sh from a copy of the working tree, on a pseudo-terminal that answers
the prompts (-K, --ask-vault-pass, ansible-vault encrypt) like a person at
the keyboard. $EDITOR is placeholders.py, beside this file. Then it runs the
last command once more (the scenario's idempotence proof) and writes a
record of every command (output, prompts answered, recap, the host's state
before and after) for the tests.

Run by converge.yml; conftest.py runs it too when no record of the running
host exists. Needs the venv's Python (PyYAML) and a prepared host.
"""

import codecs
import fcntl
import json
import os
import pathlib
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time

import yaml

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
PROJECT = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY") or SCENARIO.parents[1])
MARKER = "<!-- molecule/ssh runs the commands of this block as they are written -->"

# What the admin chooses, and types at the prompts.
VAULT_PASSWORD = "office-vault-pw"
HOSTNAME = "mail.office.test"
DOMAINS = ["office.test", "office-alias.test"]
PASSWORDS = {"alice": "alice-office-pw", "bob": "bob-office-pw"}
# openssl passwd -6 -salt officetestsalt alice-office-pw
ALICE_HASH = "$6$officetestsalt$BtlyHAorfwjOfu2tbocJiuL5z5Wy5VTtnGF1ehE.BmyQ6RPHguadBkfPp62qLZqq6IWyyJmO1wIUWa2X3n4q61"
EXTERNAL_MEMBER = "buyer@customer.test"
# The office network: the upper half of the host's subnet, so that this
# machine (172.30.2.1 and .2) is outside it and may not relay.
RELAY_NETWORK = "172.30.2.128/25"

# Per command; a command still running after this is killed and fails.
TIMEOUT_PLAYBOOK = 900
TIMEOUT_OTHER = 180
# A prompt nobody expected (an SSH password, a host key question): the
# command is stopped as soon as its output has been quiet this long on it.
UNEXPECTED_PROMPT = re.compile(r"(?i)(password|passphrase)[^\n]*:[ \t]*\Z|\(yes/no[^\n]*\)\?[ \t]*\Z")
QUIET_BEFORE_GIVING_UP = 5

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Scenario:
    """The host and this machine's addresses, as molecule.yml defines them."""

    def __init__(self):
        config = yaml.safe_load((SCENARIO / "molecule.yml").read_text())
        platform = config["platforms"][0]
        values = config["provisioner"]["inventory"]["group_vars"]["all"]
        self.container = platform["name"]
        self.address = platform["networks"][0]["ipv4_address"]
        self.gateway = platform["docker_networks"][0]["ipam_config"][0]["gateway"]
        self.second_address = values["ssh_test_second_address"]
        self.admin = values["ssh_test_admin"]
        self.admin_password = values["ssh_test_admin_password"]
        self.ephemeral = pathlib.Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY") or _molecule_ephemeral())
        self.run_dir = self.ephemeral / "readme"
        self.tree = self.run_dir / "tree"
        self.record_file = self.run_dir / "record.json"
        self.key = self.ephemeral / "ssh" / "id_ed25519"
        self.known_hosts = self.ephemeral / "ssh" / "known_hosts"

    def placeholders(self):
        """The example's placeholders and what the admin puts in their place."""
        return {
            "mail.example.com": HOSTNAME,
            "192.0.2.25": self.address,
            "example.com": DOMAINS[0],
            "example.org": DOMAINS[1],
            "buyer@customer.example": EXTERNAL_MEMBER,
            "198.51.100.0/24": RELAY_NETWORK,
            "$6$qubeexample2026$If2Z496.UfyxXmZ4faXfbhPAOcSvf.4sDqZnsKdDUqFUkkHY7jGlHb2DhKl20AxLSH8kBFP/uZ/DDL6qlCF6S.":
                ALICE_HASH,
            "change-me-and-vault-me": PASSWORDS["bob"],
        }

    def answers(self):
        """Prompt -> what is typed. Where one prompt ends another (Vault
        password: in Confirm New Vault password:), the earliest match wins."""
        return {"BECOME password:": self.admin_password, "Vault password:": VAULT_PASSWORD,
                "New Vault password:": VAULT_PASSWORD, "Confirm New Vault password:": VAULT_PASSWORD}

    def env(self):
        """An admin's shell: no molecule or make or venv in the environment,
        EDITOR set, and what an admin keeps in ~/.ssh (the key, the host's
        key) given to Ansible through its environment variables."""
        venv = os.path.realpath(PROJECT / ".venv")
        dropped = ("ANSIBLE_", "MOLECULE_", "PYTEST", "MAKE")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(dropped) and k not in ("MFLAGS", "VENV", "VIRTUAL_ENV", "PYTHONPATH")}
        env["PATH"] = os.pathsep.join(p for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
                                      if not os.path.realpath(p).startswith(venv + os.sep))
        env.setdefault("TERM", "xterm")
        env.update({
            "EDITOR": str(SCENARIO / "tests" / "placeholders.py"),
            "QUBEMAIL_TEST_PLACEHOLDERS": json.dumps(self.placeholders()),
            "ANSIBLE_PRIVATE_KEY_FILE": str(self.key),
            "ANSIBLE_SSH_COMMON_ARGS": f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes",
            # This run's own SSH master connections, never one left by an
            # earlier run to a host of the same address.
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.run_dir / "cp"),
        })
        return env

    def docker(self, script):
        run = subprocess.run(["docker", "exec", self.container, "sh", "-c", script],
                             capture_output=True, text=True, timeout=60)
        return run

    def container_id(self):
        run = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", self.container], capture_output=True, text=True)
        return run.stdout.strip() if run.returncode == 0 else None


def _molecule_ephemeral():
    """Where molecule keeps this scenario's files, for pytest run by hand."""
    from molecule.text import checksum

    return pathlib.Path.home() / ".ansible" / "tmp" / f"molecule.{checksum(PROJECT.name, 4)}.{SCENARIO.name}"


def strip_comment(line):
    """The line without its shell comment: from a `#` that starts a word,
    outside quotes."""
    quote = None
    escaped = False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def readme_commands(text):
    """The commands of the ```sh block right after the marker."""
    after = text[text.index(MARKER) + len(MARKER):]
    match = re.match(r"\s*```sh\n(.*?)^```", after, re.S | re.M)
    if not match:
        raise ValueError(f"README.md: no ```sh block right after {MARKER}")
    commands, pending = [], ""
    for line in match.group(1).splitlines():
        code = strip_comment(line).rstrip()
        if code.endswith("\\"):
            pending += code[:-1]
            continue
        code, pending = (pending + code).strip(), ""
        if code:
            commands.append(code)
    return commands


def copy_tree(source, dest):
    """The working tree's files (tracked, and new ones git does not ignore),
    symlinks kept as links, and .venv linked to the real one."""
    listing = subprocess.run(["git", "-C", str(source), "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], capture_output=True, check=True).stdout
    for name in sorted({os.fsdecode(n) for n in listing.split(b"\0") if n}):
        src, target = source / name, dest / name
        if name == ".venv":
            continue  # a linked venv: git's ".venv/" ignores only a directory
        if not src.is_symlink() and not src.exists():
            continue  # deleted in the working tree
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, target)
    (dest / ".venv").symlink_to(os.path.realpath(source / ".venv"))


def check_venv_ready(tree):
    """`make controller` in the copy must find the linked venv ready: were it
    not, it would rebuild the real venv in place. Same test as
    scripts/controller-setup.sh: made for requirements-controller.txt or for
    requirements.txt (each followed by requirements-controller.txt)."""
    made = (tree / ".venv" / ".requirements.txt")
    controller = (tree / "requirements-controller.txt").read_bytes()
    ready = made.is_file() and made.read_bytes() in (controller + controller,
                                                     (tree / "requirements.txt").read_bytes() + controller)
    if not ready:
        raise RuntimeError(f"{os.path.realpath(tree / '.venv')} was not made from this tree's requirements: "
                           "run `make setup` first")


def run_on_terminal(command, cwd, env, answers, timeout):
    """Run `command` with /bin/sh on a new pseudo-terminal (its controlling
    terminal, as in a login), typing the answer to each known prompt.
    Returns rc, output (colours and carriage returns removed), the prompts
    answered in order, seconds, and an error if it was stopped."""
    start = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes the shell
        try:
            os.chdir(cwd)
            os.execve("/bin/sh", ["/bin/sh", "-c", command], env)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    text, answered, pos, error = "", [], 0, None
    last_output = start
    while True:
        now = time.monotonic()
        if now - start > timeout:
            error = f"timed out after {timeout} s"
            break
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            if now - last_output > QUIET_BEFORE_GIVING_UP and UNEXPECTED_PROMPT.search(text[pos:]):
                error = f"stopped at a prompt nobody expected: {text[pos:].splitlines()[-1]!r}"
                break
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every process left the terminal
            break
        if not chunk:
            break
        last_output = time.monotonic()
        text += decoder.decode(chunk)
        while True:
            hits = [(text.find(p, pos), p) for p in answers if text.find(p, pos) >= 0]
            if not hits:
                break
            at, prompt = min(hits, key=lambda hit: (hit[0], -len(hit[1])))
            os.write(fd, answers[prompt].encode() + b"\n")
            answered.append(prompt)
            pos = at + len(prompt)
    if error:
        _stop(pid)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    output = ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "")
    return {"command": command, "rc": os.waitstatus_to_exitcode(status), "output": output,
            "prompts": answered, "seconds": round(time.monotonic() - start, 1), "error": error}


def _stop(pid):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                return
            time.sleep(0.1)


def recap(output):
    """PLAY RECAP of ansible-playbook's output: {host: {ok: N, changed: N, ...}}."""
    if "PLAY RECAP" not in output:
        return {}
    tail = output[output.rindex("PLAY RECAP"):]
    return {host: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", fields)}
            for host, fields in re.findall(r"(?m)^(\S+)\s+:\s+(ok=.*)$", tail)}


# The host's state, compared before and after each command: its packages, its
# /etc (every path, size, mode, mtime), Postfix's main.cf, its python3.
SNAPSHOT = r"""
echo "packages $(dpkg-query -W -f='${binary:Package} ${Version} ${db:Status-Abbrev}\n' | sort | sha256sum | cut -c1-16)"
echo "etc $(find /etc -xdev -printf '%p %y %s %m %T@\n' 2>/dev/null | sort | sha256sum | cut -c1-16)"
echo "main.cf $(sha256sum /etc/postfix/main.cf 2>/dev/null | cut -c1-16 || true)"
echo "python3 $(command -v python3 || true)"
"""


def snapshot(scenario):
    run = scenario.docker(SNAPSHOT)
    if run.returncode != 0:
        raise RuntimeError(f"{scenario.container}: {run.stderr}")
    return {key: value.strip() or None for key, _, value in (line.partition(" ") for line in run.stdout.splitlines())}


def wait_for_ssh(scenario, timeout=60):
    """The host key, as `ssh-keyscan` gives it, in this run's known_hosts."""
    deadline = time.monotonic() + timeout
    while True:
        scan = subprocess.run(["ssh-keyscan", "-T", "5", scenario.address],
                              capture_output=True, text=True)
        if scan.stdout.strip():
            scenario.known_hosts.write_text(scan.stdout)
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no SSH on {scenario.address}: {scan.stderr}")
        time.sleep(1)


def run_readme(scenario, log=print):
    """The README's block, then its last command again. Returns the record
    (also written to scenario.record_file)."""
    if snapshot(scenario)["python3"]:
        raise RuntimeError(f"{scenario.container} is not a fresh host (it has python3): the README's first run "
                           "needs one (molecule destroy, then create and prepare)")
    shutil.rmtree(scenario.run_dir, ignore_errors=True)
    (scenario.run_dir / "cp").mkdir(parents=True)
    wait_for_ssh(scenario)
    copy_tree(PROJECT, scenario.tree)
    check_venv_ready(scenario.tree)
    commands = readme_commands((scenario.tree / "README.md").read_text())
    env, answers = scenario.env(), scenario.answers()
    record = {"container": scenario.container_id(), "tree": str(scenario.tree), "commands": []}
    for index, command in enumerate(commands + commands[-1:]):
        before = snapshot(scenario)
        timeout = TIMEOUT_PLAYBOOK if "ansible-playbook" in command else TIMEOUT_OTHER
        result = run_on_terminal(command, scenario.tree, env, answers, timeout)
        result.update(again=index == len(commands), before=before, after=snapshot(scenario),
                      recap=recap(result["output"]))
        record["commands"].append(result)
        log(f"{'again: ' if result['again'] else ''}{command}\n    rc={result['rc']} {result['seconds']} s"
            f" prompts={result['prompts']} recap={result['recap']}" + (f" {result['error']}" if result["error"] else ""))
        if result["rc"] != 0:
            log(result["output"][-6000:])
            break
    record["complete"] = len(record["commands"]) == len(commands) + 1 and all(c["rc"] == 0 for c in record["commands"])
    _close_masters(scenario)
    scenario.record_file.write_text(json.dumps(record, indent=1))
    return record


def _close_masters(scenario):
    for socket in (scenario.run_dir / "cp").iterdir():
        subprocess.run(["ssh", "-o", f"ControlPath={socket}", "-O", "exit", scenario.address],
                       capture_output=True, timeout=10)


def recorded_run(scenario):
    """The record of the README run on the running host, made now if there is none."""
    if scenario.record_file.is_file():
        record = json.loads(scenario.record_file.read_text())
        if record["container"] == scenario.container_id():
            return record  # a failed run too: its failure is the finding
    return run_readme(scenario)


def main():
    record = run_readme(Scenario())
    return 0 if record["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
