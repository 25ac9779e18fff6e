#!/usr/bin/env python3
"""Benchmark of authenticated submission against a converged appliance
(`bench/run.sh submission` brings it up from molecule/default). Prints
figures; asserts nothing.

A Python client in the client container (standard library only, as a mail
program would do it) measures, for each message, a whole session:

  latency      connect, TLS (465: from the first byte; 587: STARTTLS), AUTH
               PLAIN, one message to a local user, QUIT; p50/p99 over N
  throughput   messages/s with C clients in parallel, each doing the same

The sender check's own cost on a relayed RCPT is bench/pop_before_smtp_sender_check.py.
"""

import argparse
import json
import subprocess

CLIENT = "qubemail-client"
SERVER = "172.30.0.10"
USER, PASSWORD, DOMAIN = "alice", "alice-test-pw", "qube.test"
TO = f"carol@{DOMAIN}"

# Runs in the client container: argv = server port count parallel user password to domain.
CLIENT_SCRIPT = r'''
import json, smtplib, ssl, sys, threading, time
server, port, count, parallel, user, password, to, domain = sys.argv[1:9]
port, count, parallel = int(port), int(count), int(parallel)
context = ssl.create_default_context()
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the self-signed certificate
message = ("From: <%s@%s>\r\nTo: <%s>\r\nSubject: submission bench\r\n\r\nbench\r\n" % (user, domain, to))

def one():
    start = time.perf_counter()
    if port == 465:
        smtp = smtplib.SMTP_SSL(server, port, context=context, timeout=30)
    else:
        smtp = smtplib.SMTP(server, port, timeout=30)
        smtp.starttls(context=context)
    smtp.login(user, password)
    refused = smtp.sendmail(user + "@" + domain, [to], message)
    smtp.quit()
    if refused:
        raise RuntimeError(refused)
    return (time.perf_counter() - start) * 1000

latencies, errors, lock = [], [], threading.Lock()

def worker(n):
    for _ in range(n):
        try:
            value = one()
            with lock:
                latencies.append(value)
        except Exception as exc:
            with lock:
                errors.append(repr(exc))

start = time.perf_counter()
threads = [threading.Thread(target=worker, args=(count // parallel,)) for _ in range(parallel)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"latencies": latencies, "errors": errors[:5], "failed": len(errors),
                  "seconds": time.perf_counter() - start}))
'''


def run(port, count, parallel):
    out = subprocess.run(["docker", "exec", "-i", CLIENT, "python3", "-", SERVER, str(port), str(count),
                          str(parallel), USER, PASSWORD, TO, DOMAIN],
                         input=CLIENT_SCRIPT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    run(465, 5, 1)  # warm up: Postfix's processes, Dovecot's auth cache
    print(f"submission, one client, {args.messages} sessions each (connect, TLS, AUTH PLAIN, one message, QUIT):")
    for port, label in ((465, "465 (TLS)"), (587, "587 (STARTTLS)")):
        result = run(port, args.messages, 1)
        lat = result["latencies"]
        print(f"  {label:15s} p50 {pct(lat, 50):6.1f} ms  p99 {pct(lat, 99):6.1f} ms  max {max(lat):6.1f} ms"
              f"  failed {result['failed']} {result['errors']}")
    result = run(587, args.messages, args.parallel)
    lat = result["latencies"]
    print(f"submission on 587, {args.parallel} clients in parallel, {len(lat)} messages in {result['seconds']:.1f} s:"
          f" {len(lat) / result['seconds']:.1f} messages/s, p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms,"
          f" failed {result['failed']} {result['errors']}")


if __name__ == "__main__":
    main()
