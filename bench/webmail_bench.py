#!/usr/bin/env python3
"""WebMail benchmark against molecule/lists' containers (bench/run.sh webmail
brings them up). Prints figures; asserts nothing.

  archive page   a member's time to the first archive page with N messages
                 (10 000, in threads of 5) in "Mailing Lists/sales": from
                 submitting the login form in headless Chromium until the
                 thread list of the archive is rendered. The first run after
                 the messages are filed is reported apart (Dovecot builds its
                 cache for THREAD then); the others are fresh browser sessions.
"""

import argparse
import pathlib
import statistics
import subprocess
import sys
import time

PROJECT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests" / "clients"))
from webmail import WebMail, browser  # noqa: E402

APPLIANCE = "qubemail-lists-appliance"
URL = "https://172.30.1.10/"
USER, PASSWORD = "alice", "alice-test-pw"
ARCHIVE = "Mailing Lists/sales"
FOLDER = "/var/lib/qubemail/lists/.sales"

# Files the messages into the archive's Maildir as dovecot-lda would (owner
# mlarchive, group mllists), then lets Dovecot index them once.
FILL = r"""
import os, pwd, grp, sys, time, email.utils
count, per_thread, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
uid, gid = pwd.getpwnam("mlarchive").pw_uid, grp.getgrnam("mllists").gr_gid
now = int(time.time()) - count * 60
for i in range(count):
    thread, n = divmod(i, per_thread)
    root = f"<bench-{thread:05d}.0@qube.test>"
    mid = f"<bench-{thread:05d}.{n}@qube.test>"
    refs = f"In-Reply-To: {root}\nReferences: {root}\n" if n else ""
    subject = ("Re: " if n else "") + f"[sales] Archive thread {thread:05d}"
    text = (f"From: Alice Tester <alice@qube.test>\nTo: sales@qube.test\nSubject: {subject}\n"
            f"Date: {email.utils.formatdate(now + i * 60)}\nMessage-ID: {mid}\n{refs}"
            f"List-Id: Sales team <sales.qube.test>\n\nMessage {n} of thread {thread}.\n" + "Body text. " * 40 + "\n")
    name = f"{now + i * 60}.B{i}.bench,S={len(text)}:2,"
    path = os.path.join(folder, "cur", name)
    with open(path, "w") as f:
        f.write(text)
    os.chown(path, uid, gid)
    os.chmod(path, 0o660)
"""


def sh(*cmd):
    return subprocess.run(["docker", "exec", APPLIANCE, *cmd], capture_output=True, text=True, check=True).stdout


def archive_size():
    out = sh("doveadm", "-f", "flow", "mailbox", "status", "-u", USER, "messages", ARCHIVE)
    return int(out.split("messages=")[1])


def fill(count, per_thread):
    have = archive_size()
    if have >= count:
        return have
    sh("python3", "-c", FILL, str(count - have), str(per_thread), FOLDER)
    return archive_size()  # Dovecot syncs the Maildir and indexes the new files here


def first_page():
    """Seconds from login submit to the folder pane, and to the archive's first page."""
    with browser() as driver:
        mail = WebMail(driver, URL, timeout=120)
        start = time.monotonic()
        assert mail.login(USER, PASSWORD), mail.login_error()
        logged_in = time.monotonic() - start
        mail.open_folder(ARCHIVE)
        return logged_in, time.monotonic() - start, mail.list_footer()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--per-thread", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    t0 = time.monotonic()
    total = fill(args.messages, args.per_thread)
    print(f"archive: {total} messages in {ARCHIVE} (filed and indexed in {time.monotonic() - t0:.1f} s)")
    login, cold, footer = first_page()
    print(f"first archive page, first visit: {cold:.2f} s (login {login:.2f} s)   [{footer}]")
    runs = [first_page() for _ in range(args.runs)]
    pages = sorted(r[1] for r in runs)
    print(f"first archive page, {args.runs} fresh sessions: median {statistics.median(pages):.2f} s, "
          f"max {pages[-1]:.2f} s (login median {statistics.median(r[0] for r in runs):.2f} s)")


if __name__ == "__main__":
    main()
