#!/usr/bin/env python3
"""Refresh docs/img/webmail-archive.png from the demo (`make demo` first):
alice's view of the team list's archive in WebMail, the thread's first
message open. Usage: .venv/bin/python scripts/webmail-screenshot.py [URL]"""

import pathlib
import sys

PROJECT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests" / "clients"))
from webmail import WebMail, browser  # noqa: E402

SUBJECT = "[team] Welcome to the team list"


def main():
    url = sys.argv[1] if len(sys.argv) > 1 else "https://127.0.0.1:8443/"
    out = PROJECT / "docs" / "img" / "webmail-archive.png"
    with browser() as driver:
        mail = WebMail(driver, url)
        if not mail.login("alice", "alice-demo-pw"):
            raise SystemExit(f"login failed: {mail.login_error()}")
        mail.open_folder("Mailing Lists/team", SUBJECT)
        mail.read(SUBJECT)
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    print(out)


if __name__ == "__main__":
    main()
