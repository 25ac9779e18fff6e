"""Unit tests for roles/lists/files: the list address pipe (size mark) and the archive importer."""
import json
import os
import pwd
from pathlib import Path

import pytest

from conftest import load_module

FILES = Path(__file__).resolve().parents[2] / "roles/lists/files"


receive = load_module("roles/lists/files/qubemail-list-receive")
archive = load_module("roles/lists/files/qubemail-list-archive")

POST = b"From: a@example.com\nSubject: hi\n\nbody\nX-Qubemail-Oversize: in the body stays\n"


def test_small_post_passes_unchanged():
    assert receive.mark(POST, 10_000) == POST
    assert receive.mark(POST, 0) == POST


def test_oversized_post_is_marked():
    out = receive.mark(POST, 10)
    assert out == b"X-Qubemail-Oversize: %d bytes, list limit 10\n" % len(POST) + POST


def test_a_forged_mark_is_removed_with_its_continuation_lines():
    forged = b"X-QUBEMAIL-OVERSIZE: yes\n\tfolded\nFrom: a@example.com\nSubject: hi\n\nbody\nX-Qubemail-Oversize: in the body stays\n"
    assert receive.mark(forged, 0) == POST
    assert receive.mark(forged, 10).count(b"X-Qubemail-Oversize:") == 2  # ours + the body line


def test_a_message_without_body_is_kept():
    assert receive.mark(b"Subject: x\n", 0) == b"Subject: x\n"


@pytest.fixture
def spool(tmp_path, monkeypatch):
    (tmp_path / "spool/team/archive").mkdir(parents=True)
    (tmp_path / "spool/team/requeue").mkdir()
    (tmp_path / "state").mkdir()
    delivered, failing = [], set()

    def deliver(path, folder, account):
        if os.path.basename(path) in failing:
            return 75
        delivered.append((os.path.basename(path), folder, Path(path).read_bytes()))
        return 0
    monkeypatch.setattr(archive, "deliver", deliver)
    account = pwd.getpwuid(os.getuid())

    def run():
        return archive.archive_list("team", str(tmp_path / "spool"), str(tmp_path / "state"), "Mailing Lists",
                                    account)
    run.dir, run.delivered, run.failing, run.state = tmp_path / "spool/team", delivered, failing, tmp_path / "state"
    return run


def post(spool, index):
    (spool.dir / "archive" / str(index)).write_bytes(b"Subject: %d\n\npost\n" % index)


def test_each_post_is_filed_once_in_order_then_removed(spool):
    for index in (10, 9, 2):
        post(spool, index)
    assert spool() is True
    assert [(i, f) for i, f, _ in spool.delivered] == [("2", "Mailing Lists/team"), ("9", "Mailing Lists/team"),
                                                        ("10", "Mailing Lists/team")]
    assert list((spool.dir / "archive").iterdir()) == []
    assert spool() is True and len(spool.delivered) == 3


def test_a_requeued_post_is_kept_for_mlmmj_but_filed_once(spool):
    post(spool, 1)
    (spool.dir / "requeue/1").mkdir()
    spool()
    spool()
    assert len(spool.delivered) == 1 and (spool.dir / "archive/1").exists()
    assert json.loads((spool.state / "team.archived").read_text()) == ["1"]
    (spool.dir / "requeue/1").rmdir()  # mlmmj-maintd resent it
    spool()
    assert len(spool.delivered) == 1 and not (spool.dir / "archive/1").exists()
    assert json.loads((spool.state / "team.archived").read_text()) == []


def test_a_failed_delivery_keeps_the_post_for_the_next_run(spool):
    post(spool, 1)
    post(spool, 2)
    spool.failing.add("2")
    assert spool() is False
    assert [i for i, _, _ in spool.delivered] == ["1"] and (spool.dir / "archive/2").exists()
    spool.failing.clear()
    assert spool() is True
    assert [i for i, _, _ in spool.delivered] == ["1", "2"] and list((spool.dir / "archive").iterdir()) == []


def test_only_numbered_files_are_posts(spool):
    (spool.dir / "archive/.tmp").write_text("x")
    post(spool, 3)
    spool()
    assert [i for i, _, _ in spool.delivered] == ["3"] and (spool.dir / "archive/.tmp").exists()


def test_bad_list_names_are_refused():
    with pytest.raises(SystemExit):
        archive.main(["--spool", "/x", "--state", "/y", "--folder-prefix", "P", "../etc"])
