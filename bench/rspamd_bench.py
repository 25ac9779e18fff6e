#!/usr/bin/env python3
"""Benchmark of rspamd on the inbound mail path, against a converged
appliance (`bench/run.sh rspamd` brings it up from molecule/default). Prints
figures; asserts nothing.

  inbound      messages/s end to end: a stranger's server on port 25 (C
               connections in parallel, standard library smtplib in the
               client container) until every message is in the user's
               Maildir, with rspamd as milter and without it (the bench
               empties smtpd_milters for that run and puts them back)
  scan time    p50/p99 of rspamd's own "time:" for the scans of that run
  memory       RSS of rspamd's processes and of Redis, at rest and right
               after the inbound run
"""

import argparse
import json
import re
import subprocess
import time

APPLIANCE, CLIENT = "qubemail-appliance", "qubemail-client"
SERVER = "172.30.0.10"
USER = "bob"
TO = f"{USER}@qube.test"

# Runs in the client container: argv = server count parallel to tag.
CLIENT_SCRIPT = r'''
import json, smtplib, sys, threading, time
server, count, parallel, to, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
errors, lock = [], threading.Lock()

def worker(n, w):
    smtp = smtplib.SMTP(server, 25, timeout=60)
    smtp.ehlo("bench.outside.test")
    for i in range(n):
        message = ("From: Sender <sender@outside.test>\r\nTo: <%s>\r\nSubject: %s %d-%d\r\n"
                   "Message-ID: <%s.%d.%d@outside.test>\r\nDate: Thu, 03 Dec 2026 12:00:00 +0000\r\n\r\n"
                   "An ordinary message from outside, some words of text.\r\n" % (to, tag, w, i, tag, w, i))
        try:
            refused = smtp.sendmail("sender@outside.test", [to], message)
            if refused:
                raise RuntimeError(refused)
        except Exception as exc:
            with lock:
                errors.append(repr(exc))
    smtp.quit()

start = time.perf_counter()
threads = [threading.Thread(target=worker, args=(count // parallel, w)) for w in range(parallel)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"seconds": time.perf_counter() - start, "failed": len(errors), "errors": errors[:3]}))
'''


def sh(container, script, check=True):
    out = subprocess.run(["docker", "exec", container, "sh", "-c", script], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"{container}: {script}: {out.stderr.strip()}")
    return out.stdout


def delivered(tag):
    """Messages of this run in the user's Maildir (inbox and Junk)."""
    return int(sh(APPLIANCE, f"grep -rl -F 'Subject: {tag} ' /home/{USER}/Maildir | wc -l").strip() or 0)


def rss_mb(process):
    out = sh(APPLIANCE, f"ps -C {process} -o rss= || true", check=False)
    return sum(int(value) for value in out.split()) / 1024


def scan_times(since):
    log = sh(APPLIANCE, f"journalctl -u rspamd --since @{since} --no-pager -o cat")
    return sorted(float(ms) for ms in re.findall(r"rspamd_task_write_log: .*? time: ([0-9.]+)ms", log))


def pct(values, p):
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))] if values else float("nan")


def inbound(count, parallel):
    tag = f"rspamdbench{time.time_ns()}"
    start = time.monotonic()
    out = subprocess.run(["docker", "exec", "-i", CLIENT, "python3", "-", SERVER, str(count), str(parallel), TO, tag],
                         input=CLIENT_SCRIPT, capture_output=True, text=True, check=True)
    sent = json.loads(out.stdout)
    deadline = time.monotonic() + 600
    while delivered(tag) < count - sent["failed"] and time.monotonic() < deadline:
        time.sleep(0.5)
    seconds = time.monotonic() - start
    return {"sent": count, "failed": sent["failed"], "errors": sent["errors"], "delivered": delivered(tag),
            "accept_seconds": sent["seconds"], "seconds": seconds, "per_second": delivered(tag) / seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()

    rest = {"rspamd": rss_mb("rspamd"), "redis": rss_mb("redis-server")}
    print(f"memory at rest: rspamd {rest['rspamd']:.1f} MB, Redis {rest['redis']:.1f} MB")

    since = int(time.time())
    with_rspamd = inbound(args.count, args.parallel)
    times = scan_times(since)
    load = {"rspamd": rss_mb("rspamd"), "redis": rss_mb("redis-server")}
    print(f"inbound with rspamd: {with_rspamd['per_second']:.1f} messages/s end to end "
          f"({with_rspamd['delivered']}/{with_rspamd['sent']} delivered in {with_rspamd['seconds']:.1f} s, "
          f"accepted in {with_rspamd['accept_seconds']:.1f} s, {with_rspamd['failed']} refused)")
    print(f"scan time: p50 {pct(times, 50):.1f} ms, p99 {pct(times, 99):.1f} ms over {len(times)} scans")
    print(f"memory after the run: rspamd {load['rspamd']:.1f} MB, Redis {load['redis']:.1f} MB")

    milters = sh(APPLIANCE, "postconf -h smtpd_milters").strip()
    sh(APPLIANCE, "postconf -e smtpd_milters= && postfix reload")
    try:
        without = inbound(args.count, args.parallel)
    finally:
        sh(APPLIANCE, f"postconf -e 'smtpd_milters={milters}' && postfix reload")
    print(f"inbound without rspamd: {without['per_second']:.1f} messages/s end to end "
          f"({without['delivered']}/{without['sent']} delivered in {without['seconds']:.1f} s)")
    if with_rspamd["errors"] or without["errors"]:
        print("errors:", with_rspamd["errors"] + without["errors"])


if __name__ == "__main__":
    main()
