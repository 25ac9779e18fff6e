#!/usr/bin/env python3
"""Benchmarks of POP-before-SMTP against a converged appliance (bench/run.sh
brings it up from molecule/default). Prints figures; asserts nothing.

Runs real clients in the client container (tests/clients/mailprobe.py) and
reads the daemon's state on the appliance with `docker exec`:

  unlock latency   POP3 login -> first relay RCPT accepted, p50/p99 over N logins
  login time       POP3 login (connect, STLS, USER/PASS, QUIT) with the Dovecot
                   hook, without it, and with the daemon stopped
  policy           decisions/s and latency with 100 000 live grants, and the
                   daemon's RSS (bench/pop_before_smtp_policy.py, run on the
                   appliance: the policy port listens on loopback only)
  expiry error     how long past the TTL relay is still accepted
"""

import argparse
import json
import statistics
import subprocess
import threading
import time

APPLIANCE, CLIENT = "qubemail-appliance", "qubemail-client"
SERVER = "172.30.0.10"
CLIENT_IPS = ["172.30.0.20", "172.30.0.50"]
USER, PASSWORD = "alice", "alice-test-pw"
EXTERNAL = "someone@external.test"
HOOK = "/etc/dovecot/qubemail.d/pop-before-smtp.conf"


def sh(container, *cmd, check=True):
    out = subprocess.run(["docker", "exec", container, *cmd], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"{container}: {' '.join(cmd)}: {out.stderr.strip()}")
    return out.stdout


def probe(*args, source=None):
    cmd = ["mailprobe", "--server", SERVER] + (["--source", source] if source else []) + [str(a) for a in args]
    return json.loads(sh(CLIENT, *cmd))


def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def grants():
    return {g["ip"]: g for g in json.loads(sh(APPLIANCE, "pop-before-smtp", "list", "--json"))}


def unlock_latency(count):
    latencies, failed = [], 0
    for _ in range(count):
        sh(APPLIANCE, "pop-before-smtp", "revoke", CLIENT_IPS[0], check=False)
        result = probe("unlock", "--user", USER, "--password", PASSWORD, "--to", EXTERNAL)
        value = result["latencies_ms"][0]
        if value is None:
            failed += 1
        else:
            latencies.append(value)
    print(f"unlock latency (POP3 login -> relay RCPT accepted), {len(latencies)} logins, {failed} never unlocked:")
    print(f"  p50 {pct(latencies, 50):.2f} ms  p99 {pct(latencies, 99):.2f} ms  max {max(latencies):.2f} ms"
          "   goal: p99 < 50 ms")


def login_time(count):
    def measure():
        r = probe("login-time", "--user", USER, "--password", PASSWORD, "--count", count)
        return statistics.median(r["times_ms"]), pct(r["times_ms"], 99)

    with_hook = measure()
    sh(APPLIANCE, "mv", HOOK, "/root/pop-before-smtp.conf.off")
    sh(APPLIANCE, "systemctl", "restart", "dovecot")
    try:
        without = measure()
    finally:
        sh(APPLIANCE, "mv", "/root/pop-before-smtp.conf.off", HOOK)
        sh(APPLIANCE, "systemctl", "restart", "dovecot")
    sh(APPLIANCE, "systemctl", "stop", "pop-before-smtp")
    try:
        daemon_down = measure()
    finally:
        sh(APPLIANCE, "systemctl", "start", "pop-before-smtp")
    print(f"POP3 login time (connect + STLS + USER/PASS + QUIT), {count} logins each:")
    for label, (p50, p99) in (("with the hook", with_hook), ("without it", without),
                              ("hook, daemon stopped", daemon_down)):
        print(f"  {label:22s} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
    print(f"  added by the hook: p50 {with_hook[0] - without[0]:+.2f} ms   goal: < 5 ms")


def policy(extra):
    sh(APPLIANCE, "pop-before-smtp", "flush")
    subprocess.run(["docker", "cp", "bench/pop_before_smtp_policy.py", f"{APPLIANCE}:/tmp/"], check=True)
    pid = sh(APPLIANCE, "systemctl", "show", "-p", "MainPID", "--value", "pop-before-smtp").strip()
    print("policy service (run on the appliance against the live daemon):")
    print(sh(APPLIANCE, "python3", "/tmp/pop_before_smtp_policy.py", "--pid", pid, *extra), end="")
    sh(APPLIANCE, "pop-before-smtp", "flush")


def expiry_error():
    results = {}

    def run(ip):
        results[ip] = probe("expiry", "--user", USER, "--password", PASSWORD, "--to", EXTERNAL, source=ip)

    threads = [threading.Thread(target=run, args=(ip,)) for ip in CLIENT_IPS]
    for t in threads:
        t.start()
    time.sleep(3)
    expires = {ip: grants()[ip]["expires"] for ip in CLIENT_IPS}
    for t in threads:
        t.join()
    print("expiry error (relay polled every 20 ms until refused):")
    for ip in CLIENT_IPS:
        late = results[ip]["last_accepted"] - expires[ip]
        refused = results[ip]["first_refused"] - expires[ip]
        print(f"  {ip}: last accepted {late * 1000:+.0f} ms, first refused {refused * 1000:+.0f} ms"
              " relative to the expiry   goal: <= 1 s past")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--skip", action="append", default=[], choices=["unlock", "login", "policy", "expiry"])
    args, extra = parser.parse_known_args()
    sh(APPLIANCE, "pop-before-smtp", "flush")
    if "unlock" not in args.skip:
        unlock_latency(args.logins)
    if "login" not in args.skip:
        login_time(args.logins)
    if "policy" not in args.skip:
        policy(extra)
    if "expiry" not in args.skip:
        expiry_error()


if __name__ == "__main__":
    main()
