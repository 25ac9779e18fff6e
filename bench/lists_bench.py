#!/usr/bin/env python3
"""Benchmarks of the lists role against molecule/lists' containers (bench/run.sh
lists brings them up). Prints figures; asserts nothing.

  fan-out    one post to a list of N external members (10 000): time from the
             post's acceptance until mlmmj has handed every copy to Postfix's
             queue (sum of nrcpt of the list's queue entries in the journal).
             The author is ann@reject.example (the scenario's DNS says
             p=reject), so each copy is DKIM-signed, ARC-sealed and has its
             From: rewritten after a DMARC lookup: the costliest list copy.
             Also the RSS of rspamd and Redis before and right after.
  converge   ansible-playbook with L lists x M members (200 x 50): first run
             and re-run (changed=0 expected), wall-clock time
"""

import argparse
import json
import pathlib
import re
import subprocess
import sys
import time

APPLIANCE, CLIENT = "qubemail-lists-appliance", "qubemail-lists-client"
SERVER = "172.30.1.10"
PROJECT = pathlib.Path(__file__).resolve().parents[1]
SCENARIO_VARS = PROJECT / "molecule/lists/group_vars"
sys.path.insert(0, str(PROJECT / "tests" / "integration"))
from probe import recap_changed, run_site  # noqa: E402


def sh(container, *cmd):
    return subprocess.run(["docker", "exec", container, *cmd], capture_output=True, text=True, check=True).stdout


def converge(extra_vars):
    run, elapsed = run_site(APPLIANCE, extra_vars, SCENARIO_VARS)
    if run.returncode != 0:
        raise SystemExit(run.stdout[-3000:] + run.stderr[-2000:])
    return elapsed, recap_changed(run.stdout)


def rss_mb(process):
    out = subprocess.run(["docker", "exec", APPLIANCE, "ps", "-C", process, "-o", "rss="],
                         capture_output=True, text=True).stdout
    return sum(int(kb) for kb in out.split()) / 1024


def fan_out(members):
    lists = [{"name": "bigfan", "members": [f"m{i:05d}@external.test" for i in range(members)], "posting": "any"}]
    converge({"qubemail_lists": lists})
    rest = {"rspamd": rss_mb("rspamd"), "redis": rss_mb("redis-server")}
    since = sh(APPLIANCE, "date", "+%Y-%m-%d %H:%M:%S").strip()
    t0 = time.time()
    out = json.loads(sh(CLIENT, "mailprobe", "--server", SERVER, "smtp", "--from", "ann@reject.example",
                        "--header", "From: Ann Poster <ann@reject.example>",
                        "--to", "bigfan@qube.test", "--subject", "fan-out"))
    assert out["data"][0] == 250, out
    accepted = time.time()
    queued, last = 0, accepted
    while queued < members and time.time() - accepted < 600:
        time.sleep(0.5)
        log = sh(APPLIANCE, "journalctl", "-u", "postfix@-", "--since", since, "-o", "short-unix", "--no-pager",
                 "--grep", "from=<bigfan\\+bounces-")
        entries = re.findall(r"^(\d+\.\d+) .*nrcpt=(\d+)", log, re.M)
        queued = sum(int(n) for _, n in entries)
        if entries:
            last = float(entries[-1][0])
    load = {"rspamd": rss_mb("rspamd"), "redis": rss_mb("redis-server")}
    print(f"fan-out: 1 post to {members} external members: all {queued} copies queued "
          f"{last - accepted:.1f} s after the post was accepted (post took {accepted - t0:.2f} s)   goal: < 10 s")
    print("memory (RSS, MB): rspamd %.0f at rest, %.0f after; Redis %.0f at rest, %.0f after"
          % (rest["rspamd"], load["rspamd"], rest["redis"], load["redis"]))


def converge_time(lists, members):
    big = [{"name": f"bench{i:03d}", "members": [f"u{i:03d}x{j:02d}@external.test" for j in range(members)]}
           for i in range(lists)]
    first, changed_first = converge({"qubemail_lists": big})
    again, changed_again = converge({"qubemail_lists": big})
    print(f"converge with {lists} lists x {members} members: first run {first:.1f} s (changed={changed_first}), "
          f"re-run {again:.1f} s (changed={changed_again})   goal: re-run < 60 s, changed=0")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--lists", type=int, default=200)
    parser.add_argument("--list-members", type=int, default=50)
    parser.add_argument("--skip", action="append", default=[], choices=["fan-out", "converge"])
    args = parser.parse_args()
    if "fan-out" not in args.skip:
        fan_out(args.members)
    if "converge" not in args.skip:
        converge_time(args.lists, args.list_members)


if __name__ == "__main__":
    main()
