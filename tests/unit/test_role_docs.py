"""Each role's meta/argument_specs.yml is the one definition of its variables:
defaults/main.yml and the README's variables table are what
scripts/role-docs.py makes of it, every option is documented, and every
default passes its own spec (type, elements, choices)."""

import importlib.util
import pathlib
import shutil

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("role_docs", ROOT / "scripts" / "role-docs.py")
role_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(role_docs)

ROLES = role_docs.roles()
ROLE_NAMES = [role.name for role in ROLES]


def options(role):
    return role_docs.load_spec(role)["options"]


def without_docs(option_spec):
    """An option's spec as ArgumentSpecValidator takes it: no description."""
    out = {k: v for k, v in option_spec.items() if k != "description"}
    if "options" in out:
        out["options"] = {name: without_docs(sub) for name, sub in out["options"].items()}
    return out


def test_every_role_is_covered():
    assert set(ROLE_NAMES) == {p.name for p in ROOT.glob("roles/*") if p.is_dir()}, "a role without argument specs"
    assert len(ROLES) >= 6


@pytest.mark.parametrize("role", ROLES, ids=ROLE_NAMES)
def test_generated_files_are_current(role):
    for path, text in role_docs.outputs(role).items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(ROOT)} differs from what meta/argument_specs.yml makes: run `make docs`")


@pytest.mark.parametrize("role", ROLES, ids=ROLE_NAMES)
def test_defaults_file_holds_exactly_the_spec_defaults(role):
    defaults = yaml.safe_load((role / "defaults/main.yml").read_text(encoding="utf-8"))
    assert defaults == {name: option["default"] for name, option in options(role).items()}
    assert list(defaults) == list(options(role))


@pytest.mark.parametrize("role", ROLES, ids=ROLE_NAMES)
def test_every_option_has_type_default_and_summary(role):
    for name, option in options(role).items():
        assert name.startswith(role.name + "_"), f"{name}: a role's variables start with its name"
        missing = {"type", "default", "description"} - set(option)
        assert not missing, f"{role.name}: {name} has no {', '.join(sorted(missing))}"
        summary = role_docs.summary(option)
        assert summary and "\n" not in summary and summary.endswith("."), (
            f"{name}: the description's first paragraph is a one-line sentence")
        if option["type"] == "list":
            assert "elements" in option, f"{name}: a list says what its elements are"


@pytest.mark.parametrize("role", ROLES, ids=ROLE_NAMES)
def test_every_default_satisfies_its_spec(role):
    specs = {name: without_docs(option) for name, option in options(role).items()}
    # A default computed from other variables (a Jinja string) is checked
    # where it is used, not here.
    values = {name: option["default"] for name, option in options(role).items()
              if not (isinstance(option["default"], str) and "{{" in option["default"])}
    result = ArgumentSpecValidator(specs).validate(values)
    assert not result.error_messages, f"{role.name}: {result.error_messages}"


def test_validator_catches_a_default_outside_its_choices():
    """The check above can fail."""
    specs = {"x_protocols": {"type": "list", "elements": "str", "choices": ["pop3", "imap"]},
             "x_ttl": {"type": "int"}}
    result = ArgumentSpecValidator(specs).validate({"x_protocols": ["smtp"], "x_ttl": "fifteen"})
    assert len(result.error_messages) == 2


def test_check_reports_a_changed_default_and_a_stale_readme_row(tmp_path):
    """The generator's comparison (used by the tests above and `make lint`)
    notices a hand-edited default and a README row left behind."""
    role = tmp_path / "roles" / "pop_before_smtp"
    for part in ("meta", "defaults"):
        shutil.copytree(ROOT / "roles/pop_before_smtp" / part, role / part)
    shutil.copy(ROOT / "roles/pop_before_smtp/README.md", role / "README.md")
    assert role_docs.stale(tmp_path) == {}

    defaults = role / "defaults/main.yml"
    defaults.write_text(defaults.read_text().replace("pop_before_smtp_ttl: 900", "pop_before_smtp_ttl: 901"))
    assert list(role_docs.stale(tmp_path)) == [defaults]

    spec_file = role / "meta/argument_specs.yml"
    spec_file.write_text(spec_file.read_text().replace("default: 900", "default: 901"))
    assert list(role_docs.stale(tmp_path)) == [role / "README.md"]
    assert "| `pop_before_smtp_ttl` | int | `901` |" in role_docs.stale(tmp_path)[role / "README.md"]


def test_readme_without_markers_is_an_error():
    with pytest.raises(ValueError, match="no <!-- variables"):
        role_docs.render_readme("# Role\n", {"options": {}})


def test_defaults_render_jinja_and_nested_values():
    text = role_docs.render_defaults({"options": {
        "x_host": {"type": "str", "default": "{{ qubemail_hostname }}", "description": "Computed."},
        "x_map": {"type": "dict", "default": {"a": [1, "b c"], "e": ""}, "description": ["Map.", "More."]}}})
    assert yaml.safe_load(text) == {"x_host": "{{ qubemail_hostname }}", "x_map": {"a": [1, "b c"], "e": ""}}
    assert 'x_host: "{{ qubemail_hostname }}"\n' in text
    assert "# Map. More.\nx_map:\n  a:\n    - 1\n    - b c\n  e: \"\"\n" in text


# The example sets this to what every role's default is too: a placeholder the
# playbook refuses, there so that the admin sees it must be replaced.
RESTATED_ON_PURPOSE = {"qubemail_hostname"}


@pytest.mark.parametrize("path", ["inventory/example/group_vars/qubemail/settings.yml",
                                  "inventory/demo/group_vars/qubemail.yml"])
def test_shipped_inventories_do_not_restate_defaults(path):
    """A setting the inventory gives is one it changes; the defaults live in
    the specs (and the README tables), not in copies here."""
    defaults = {name: option["default"] for role in ROLES for name, option in options(role).items()}
    given = yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))
    restated = sorted(name for name, value in given.items()
                      if name in defaults and value == defaults[name] and name not in RESTATED_ON_PURPOSE)
    assert not restated, f"{path} restates defaults, comment them out: {restated}"
