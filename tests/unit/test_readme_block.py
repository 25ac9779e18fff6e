"""The README block molecule/ssh runs as written: found after its marker,
continuations joined, comments stripped, as /bin/sh would read it."""

import pytest

from conftest import ROOT, load_module

readme = load_module("molecule/ssh/tests/readme.py", "ssh_readme")


@pytest.mark.parametrize("line, code", [
    ("make controller   # once: the venv", "make controller   "),
    ("# a whole-line comment", ""),
    ("echo a#b", "echo a#b"),
    ("echo 'not # a comment' # one", "echo 'not # a comment' "),
    ('echo "not # either" \\# nor this', 'echo "not # either" \\# nor this'),
])
def test_strip_comment(line, code):
    assert readme.strip_comment(line) == code


def test_block_after_the_marker_joins_continuations():
    text = f"""intro
{readme.MARKER}
```sh
first   # comment
$EDITOR a \\
        b     # comment after the continuation
```
```sh
not this
```
"""
    assert readme.readme_commands(text) == ["first", "$EDITOR a         b"]


def test_the_marker_must_be_followed_by_the_block():
    with pytest.raises(ValueError):
        readme.readme_commands(f"{readme.MARKER}\nsome text\n```sh\nls\n```\n")


def test_the_readme_block_ends_with_the_site_playbook():
    commands = readme.readme_commands((ROOT / "README.md").read_text())
    assert commands[0] == "make controller"
    assert any(c.startswith("$EDITOR ") for c in commands)
    assert "playbooks/site.yml" in commands[-1] and "--check" not in commands[-1]
