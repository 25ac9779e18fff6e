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


@pytest.fixture
def watching(spool, monkeypatch):
    """archive.watch on the spool's list, stopped by SIGTERM (as systemd does) after WAIT seconds at most."""
    import signal
    import threading
    monkeypatch.setattr(archive.Stop, "requested", False)
    monkeypatch.setattr(archive, "RESCAN", 30)  # longer than the test: only an event can file a post
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}

    def run(wait=5):
        timer = threading.Timer(wait, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        try:
            return archive.watch(["team"], str(spool.dir.parent), str(spool.state), "Mailing Lists",
                                 pwd.getpwuid(os.getuid()))
        finally:
            timer.cancel()
            signal.set_wakeup_fd(-1)
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
    return run


def test_watch_files_a_post_sent_just_after_a_look(spool, watching, monkeypatch):
    # The race a path unit loses: mlmmj renames a post after the archiver's last
    # look and before it waits. The watch, set up before the look, sees it.
    post(spool, 1)
    looks = []
    real = archive.archive_list

    def archive_list(*args):
        result = real(*args)
        looks.append(len(spool.delivered))
        if len(looks) == 1:
            (spool.dir / "archive/.2").write_bytes(b"Subject: 2\n\npost\n")
            os.rename(spool.dir / "archive/.2", spool.dir / "archive/2")  # as mlmmj-send does
        if len(spool.delivered) == 2:
            archive.Stop.requested = True
        return result
    monkeypatch.setattr(archive, "archive_list", archive_list)
    assert watching(wait=10) == 0
    assert [i for i, _, _ in spool.delivered] == ["1", "2"] and looks == [1, 2]


def test_watch_stops_between_deliveries_on_sigterm(spool, watching):
    post(spool, 1)
    assert watching(wait=0.5) == 0  # woken from its wait by the signal, long before RESCAN
    assert [i for i, _, _ in spool.delivered] == ["1"]
    assert json.loads((spool.state / "team.archived").read_text()) == []  # filed and removed
