"""playbooks/library/qubemail_dns_check: each record of a snippet against what a resolver answers."""

from __future__ import annotations

import dns.exception
import dns.rdatatype
import dns.resolver
import pytest

from conftest import load_module

check = load_module("playbooks/library/qubemail_dns_check.py", "qubemail_dns_check")

SNIPPET = """$ORIGIN example.com.
$TTL 3600
@ IN MX 10 mail.example.com.
@ IN TXT "v=spf1 mx -all"
mail._domainkey IN TXT ( "v=DKIM1; k=rsa; "
\t"p=ABC" ) ;
_dmarc IN TXT "v=DMARC1; p=quarantine"
"""


class Answer(list):
    pass


class FakeResolver:
    """Answers from a dict {(name, type): [rdata text]}; a name listed as None times out."""

    def __init__(self, data):
        self.data = data

    def resolve(self, name, rdtype, raise_on_no_answer=False):
        key = (str(name), dns.rdatatype.to_text(rdtype))
        if key not in self.data:
            raise dns.resolver.NXDOMAIN()
        if self.data[key] is None:
            raise dns.exception.Timeout()
        return Answer(type("R", (), {"to_text": lambda self, t=t: t})() for t in self.data[key])


def states(records):
    return {(r["name"], r["type"]): r["state"] for r in records}


def test_present_missing_and_different():
    resolver = FakeResolver({
        ("example.com.", "MX"): ["10 MAIL.example.com."],  # names compare without case
        ("example.com.", "TXT"): ['"v=spf1 a -all"'],
        ("_dmarc.example.com.", "TXT"): ['"v=DMARC1;" " p=quarantine"'],  # split strings: the same text
    })
    records = check.check({"example.com": SNIPPET}, resolver)
    assert states(records) == {
        ("example.com.", "MX"): "present",
        ("example.com.", "TXT"): "different",
        ("mail._domainkey.example.com.", "TXT"): "missing",
        ("_dmarc.example.com.", "TXT"): "present",
    }
    lines = check.lines(records)
    assert 'different TXT   example.com. "v=spf1 mx -all"  (DNS: "v=spf1 a -all")' in lines
    assert any(line.startswith("missing   TXT   mail._domainkey.example.com. ") and line.endswith("(DNS: nothing)")
               for line in lines), lines


def test_no_answer_is_missing_and_says_so():
    resolver = FakeResolver({("example.com.", "MX"): None})
    record = [r for r in check.check({"example.com.": SNIPPET}, resolver) if r["type"] == "MX"][0]
    assert record["state"] == "missing" and record["found"] == ["(no answer from DNS)"]


def test_a_broken_snippet_is_an_error():
    with pytest.raises(dns.exception.DNSException):
        check.check({"example.com": "@ IN MX mail\n"}, FakeResolver({}))
