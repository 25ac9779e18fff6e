"""Unit tests for roles/lists/files: the list address pipe (size mark)."""
import importlib.machinery
import importlib.util
from pathlib import Path

FILES = Path(__file__).resolve().parents[2] / "roles/lists/files"


def load(name):
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), str(FILES / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


receive = load("qubemail-list-receive")

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
