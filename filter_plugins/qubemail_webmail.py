# -*- coding: utf-8 -*-
"""The qubemail_webmail filter: settings of the WebMail role, checked."""

from __future__ import annotations

import re

from ansible_collections.qubemail.appliance.plugins.plugin_utils.checks import (
    Errors,
    MAIL_PORTS,
    check_bool,
    check_int,
    check_line,
    settings_of,
)

DOCUMENTATION = r"""
name: qubemail_webmail
short_description: Settings of the WebMail role, checked
version_added: 1.0.0
author: qubemail project
extends_documentation_fragment:
  - qubemail.appliance.validation
description:
  - Checks the C(webmail_*) variables (roles/webmail/meta/argument_specs.yml) and works out how Roundcube reaches
    Dovecot from C(pop_plaintext_auth_from_loopback). The web ports may not be those of the mail services
    (25, 110, 143, 993, 995, 10031, 10032, C(mta_loopback_port)).
options:
  _input:
    description: Every variable of the webmail role, and C(mta_loopback_port), C(pop_plaintext_auth_from_loopback).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: WebMail settings
  ansible.builtin.set_fact:
    webmail_config: "{{ qubemail_settings | qubemail_webmail }}"
"""

RETURN = r"""
_value:
  description:
    - "A dict with C(enabled), C(https_port), C(http_port) (V(0) = none), C(hsts_max_age) (V(0) = no header),
      C(product_name), C(language), C(session_lifetime) (minutes), C(max_upload_mb), C(autoconfig) (bool),
      C(max_message_size)
      (Roundcube's limit, the upload size plus base64), C(imap_host) (V(127.0.0.1:143) or V(tls://127.0.0.1:143)),
      C(imap_starttls) (bool) and C(smtp_host) (V(tls://127.0.0.1:587), submission with STARTTLS)."
    - With O(collect), C({config, errors}) as P(qubemail_base#filter) documents.
  type: dict
"""

#: Roundcube language codes: en_US, de, pt_BR, zh_TW, sr_cyrl, ...
#: The variables qubemail_webmail reads (their defaults: roles/webmail/meta/argument_specs.yml,
#: and for the last two roles/mta and roles/pop).
WEBMAIL_SETTINGS = (
    "webmail_enabled", "webmail_https_port", "webmail_http_port", "webmail_hsts_max_age",
    "webmail_product_name", "webmail_language", "webmail_session_lifetime", "webmail_max_upload_mb",
    "webmail_autoconfig", "mta_loopback_port", "pop_plaintext_auth_from_loopback",
)
WEBMAIL_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")

MAX_PRODUCT_NAME = 64

def qubemail_webmail(settings, collect=False):
    """Validate the WebMail settings.

    Returns ``{"enabled", "https_port", "http_port", "hsts_max_age",
    "product_name", "language", "session_lifetime", "max_upload_mb",
    "autoconfig", "imap_host", "smtp_host"}``.  ``http_port`` 0 means nothing answers plain
    HTTP.  ``imap_host`` is plain IMAP on loopback, or STARTTLS
    (``tls://``) when Dovecot refuses plaintext passwords even there;
    ``smtp_host`` is Postfix's submission port on loopback (it stays there
    when submission is off), where the user logs in: Postfix lets them send
    only as their own addresses.
    """
    errors = Errors()
    s = settings_of(settings, WEBMAIL_SETTINGS, "qubemail_webmail")
    result = {
        "enabled": check_bool(errors, "webmail_enabled", s["webmail_enabled"]),
        "https_port": check_int(errors, "webmail_https_port", s["webmail_https_port"], 1, 65535),
        "http_port": check_int(errors, "webmail_http_port", s["webmail_http_port"], 0, 65535,
                                " (0: nothing listens for plain HTTP)"),
        "hsts_max_age": check_int(errors, "webmail_hsts_max_age", s["webmail_hsts_max_age"], 0,
                                   unit=" (seconds; 0: no Strict-Transport-Security header)"),
        "product_name": check_line(errors, "webmail_product_name", s["webmail_product_name"],
                                    MAX_PRODUCT_NAME),
        "language": None,
        "session_lifetime": check_int(errors, "webmail_session_lifetime", s["webmail_session_lifetime"],
                                       1, 24 * 60, " (minutes)"),
        "max_upload_mb": check_int(errors, "webmail_max_upload_mb", s["webmail_max_upload_mb"], 1, 2048,
                                    " (MiB)"),
        "autoconfig": check_bool(errors, "webmail_autoconfig", s["webmail_autoconfig"]),
    }
    language = s["webmail_language"]
    if isinstance(language, str) and WEBMAIL_LANGUAGE_RE.match(language):
        result["language"] = language
    else:
        errors.add("webmail_language", language, "expected a Roundcube language code such as en_US, de_DE or fr_FR")
    if result["product_name"] is not None and not result["product_name"].strip():
        errors.add("webmail_product_name", s["webmail_product_name"], "must not be empty")
    if result["https_port"] is not None and result["https_port"] == result["http_port"]:
        errors.add("webmail_http_port", s["webmail_http_port"],
                   "must differ from webmail_https_port (use 0 to answer no plain HTTP)")
    loopback_port = check_int(errors, "mta_loopback_port", s["mta_loopback_port"], 0, 65535)
    taken = set(MAIL_PORTS) | ({loopback_port} if loopback_port else set())
    for field in ("https_port", "http_port"):
        if result[field] and result[field] in taken:
            errors.add("webmail_" + field, s["webmail_" + field],
                       "is a port of the mail services (%s); choose another"
                       % ", ".join(str(p) for p in sorted(taken)))
    plaintext = check_bool(errors, "pop_plaintext_auth_from_loopback", s["pop_plaintext_auth_from_loopback"])
    result["imap_host"] = "127.0.0.1:143" if plaintext else "tls://127.0.0.1:143"
    result["imap_starttls"] = not plaintext
    result["smtp_host"] = "tls://127.0.0.1:587"
    # Roundcube's own limit: base64 makes a 3-byte attachment 4 bytes in the message.
    if result["max_upload_mb"] is not None:
        result["max_message_size"] = "%dM" % (result["max_upload_mb"] * 4 // 3 + 1)
    return errors.result(result, collect)


class FilterModule:
    """The qubemail_webmail filter."""

    def filters(self):
        return {"qubemail_webmail": qubemail_webmail}
