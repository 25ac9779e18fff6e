"""The README's commands, followed as written on a fresh host over SSH as a
sudo account: what each did, and what it left on the host."""

import json
import re
import subprocess

from conftest import command, readme

# What the example's placeholders look like: none may reach the playbook.
PLACEHOLDER = re.compile(r"example\.(com|org|net)|\.example\b|192\.0\.2\.|198\.51\.100\.|203\.0\.113\."
                         r"|2001:db8:|change-me-and-vault-me|\$6\$qubeexample2026\$")
BECOME_AND_VAULT = ["BECOME password:", "Vault password:"]


def test_every_command_succeeds_asking_only_its_prompts(record):
    asked = {c["command"]: c["prompts"] for c in record["commands"]}
    failed = [(c["command"], c["rc"], c["error"], c["output"][-3000:]) for c in record["commands"] if c["rc"] != 0]
    assert not failed
    assert record["complete"]
    encrypt = command(record, "ansible-vault encrypt")
    assert encrypt["prompts"] == ["New Vault password:", "Confirm New Vault password:"], asked
    playbooks = [c for c in record["commands"] if "ansible-playbook" in c["command"]]
    assert len(playbooks) == 4, asked  # bootstrap, --check, the run, the run again
    assert all(c["prompts"] == BECOME_AND_VAULT for c in playbooks), asked
    others = [c for c in record["commands"] if "ansible-" not in c["command"]]
    assert all(c["prompts"] == [] for c in others), asked


def test_make_controller_finds_the_venv_ready(record):
    run = command(record, "make controller")
    assert run["rc"] == 0
    assert "ready:" in run["output"] and "creating" not in run["output"], run["output"]


def test_no_placeholder_reaches_the_playbook_and_the_vault_is_encrypted(scenario, converged):
    office = scenario.tree / "inventory" / "office"
    vault = office / "group_vars" / "qubemail" / "vault.yml"
    assert vault.read_text().startswith("$ANSIBLE_VAULT;"), "vault.yml is not encrypted"
    password_file = scenario.run_dir / "vault-password"
    password_file.write_text(readme.VAULT_PASSWORD + "\n")
    password_file.chmod(0o600)
    # Every key and string of the inventory as Ansible reads it, vault included.
    listing = subprocess.run([str(scenario.tree / ".venv" / "bin" / "ansible-inventory"), "-i", str(office), "--list",
                              "--vault-password-file", str(password_file)],
                             capture_output=True, text=True, cwd=scenario.tree, env=scenario.env(), check=True)
    inventory = json.loads(listing.stdout)
    strings = list(_strings(inventory))
    assert readme.HOSTNAME in inventory["qubemail"]["hosts"]
    assert readme.ALICE_HASH in strings and readme.PASSWORDS["bob"] in strings
    assert [s for s in strings if PLACEHOLDER.search(s)] == []


def _strings(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_bootstrap_installs_python_on_the_fresh_host(scenario, record):
    run = command(record, "bootstrap.yml")
    assert run["before"]["python3"] is None, "prepare left Python on the host"
    assert run["rc"] == 0, run["output"][-3000:]
    assert run["recap"][readme.HOSTNAME]["changed"] >= 1, run["recap"]
    assert run["after"]["python3"] == "/usr/bin/python3"


def test_check_diff_shows_changes_and_makes_none(record):
    run = command(record, "--check")
    assert run["rc"] == 0, run["output"][-3000:]
    result = run["recap"][readme.HOSTNAME]
    assert result["failed"] == 0 and result["unreachable"] == 0
    assert result["changed"] > 0  # what would change on a host not yet converged
    assert run["before"] == run["after"]  # packages, /etc, main.cf: untouched
    assert run["after"]["main.cf"] is None


def test_the_run_converges_the_host(record):
    run = command(record, "site.yml")
    assert "--check" not in run["command"]
    assert run["rc"] == 0, run["output"][-3000:]
    result = run["recap"][readme.HOSTNAME]
    assert result["failed"] == 0 and result["changed"] > 0
    assert run["before"]["main.cf"] is None and run["after"]["main.cf"] is not None


def test_the_last_command_again_changes_nothing(record):
    """The scenario's idempotence proof (molecule.yml)."""
    run = command(record, "site.yml", again=True)
    assert run["command"] == record["commands"][-2]["command"]
    assert run["rc"] == 0, run["output"][-3000:]
    assert run["recap"][readme.HOSTNAME]["changed"] == 0, [
        line for line in run["output"].splitlines() if line.startswith("changed:")]
    assert run["before"] == run["after"]


def test_become_is_sudo_with_the_admins_password(scenario, appliance, converged):
    # sudo logged the playbooks' commands as admin's, run as root.
    journal = appliance.run("journalctl --no-pager -o cat _COMM=sudo").stdout
    assert re.search(rf"(?m)^ *{scenario.admin} : .*USER=root ; COMMAND=", journal), journal[-2000:]
    assert "incorrect password" not in journal
    # Without -K the same bootstrap command stops: sudo wants the password.
    bootstrap = command(converged, "bootstrap.yml")["command"]
    without = " ".join(word for word in bootstrap.split() if word != "-K")
    run = readme.run_on_terminal(without, scenario.tree, scenario.env(), scenario.answers(), readme.TIMEOUT_OTHER)
    assert run["rc"] != 0 and run["prompts"] == ["Vault password:"]
    assert "Missing sudo password" in run["output"], run["output"][-3000:]
