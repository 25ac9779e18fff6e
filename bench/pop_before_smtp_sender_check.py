#!/usr/bin/env python3
"""What the sender check (bind_sender) adds to one policy decision.

The daemon's own decision function, in this process, without sockets: the
same relayed-RCPT requests (a granted client, its user's own sender; and
an ungranted client) decided with bind_sender off and on, best of five
rounds each. Prints microseconds per decision and the difference against
the goal (< 1 ms added). Asserts nothing.

    bench/pop_before_smtp_sender_check.py [--grants 100000] [--decisions 200000]
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from pop_before_smtp_policy import REPO_DAEMON, build_pool, granted_ip  # noqa: E402

GOAL_ADDED_MS = 1.0


def load_daemon():
    spec = importlib.util.spec_from_file_location("pop_before_smtp", REPO_DAEMON)
    module = importlib.util.module_from_spec(spec)
    sys.modules["pop_before_smtp"] = module
    spec.loader.exec_module(module)
    return module


def decider(pbs, tmp: Path, grants: int, bind: bool):
    """A daemon (not started) with `grants` grants, user{i} on granted_ip(i)."""
    senders = tmp / "senders"
    if not senders.exists():
        senders.write_text("".join(f"user{i}@example.org\tuser{i}\n" for i in range(grants)))
    cfg = pbs.load_config(None, {
        "sockets": "bind", "policy_listen": "127.0.0.1:0", "report_listen": "127.0.0.1:0", "report_users": "",
        "grants_listen": "", "admin_socket": str(tmp / "admin.sock"), "state_file": str(tmp / f"journal-{bind}"),
        "token_file": str(tmp / "token"), "ttl": "900", "never_authorize": "", "protocols": "pop3",
        "sweep_interval": "30", "bind_sender": "yes" if bind else "no", "senders_file": str(senders)},
        default_path=str(tmp / "absent.conf"))
    daemon = pbs.Daemon(cfg, b"token")
    daemon.store.journal = None  # decisions only: nothing written
    for i in range(grants):
        daemon.store.grant(granted_ip(i), f"user{i}", "bench")
    return daemon


def per_decision_us(daemon, pool, decisions: int) -> tuple[float, int]:
    best, wrong = float("inf"), 0
    now = time.time()
    for _ in range(5):
        wrong = 0
        t0 = time.perf_counter()
        for n in range(decisions):
            req, expected = pool[n % len(pool)]
            wrong += daemon.policy_decide(req, now) != expected
        best = min(best, (time.perf_counter() - t0) / decisions * 1e6)
    return best, wrong


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grants", type=int, default=100_000)
    p.add_argument("--decisions", type=int, default=200_000)
    args = p.parse_args()
    pbs = load_daemon()
    pbs.setup_logging(open("/dev/null", "w"))  # the audit lines are not what is measured
    pool = build_pool(args.grants, 0.5)
    with tempfile.TemporaryDirectory(prefix="pbs-sender-") as tmp:
        figures = {}
        for bind in (False, True):
            us, wrong = per_decision_us(decider(pbs, Path(tmp), args.grants, bind), pool, args.decisions)
            figures[bind] = us
            print(f"bind_sender {'yes' if bind else 'no '}: {us:6.2f} us per decision "
                  f"({args.decisions} decisions, 50% granted, {args.grants} grants and senders), wrong {wrong}")
    added = (figures[True] - figures[False]) / 1000
    verdict = "PASS" if added < GOAL_ADDED_MS else "MISS"
    print(f"the sender check adds {added * 1000:.2f} us per decision [goal < {GOAL_ADDED_MS:g} ms: {verdict}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
