# -*- coding: utf-8 -*-
"""The qubemail_acme filter: settings of the ACME role, checked."""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError
from ansible_collections.qubemail.appliance.plugins.plugin_utils.checks import (
    Errors,
    check_address,
    check_bool,
    check_domain,
    check_list,
    mta_sts_served,
    settings_of,
)

DOCUMENTATION = r"""
name: qubemail_acme
short_description: Settings of the ACME role, checked, and the certbot request they make
version_added: 1.0.0
author: qubemail project
extends_documentation_fragment:
  - qubemail.appliance.validation
description:
  - Checks the C(acme_*) variables (roles/acme/meta/argument_specs.yml) and works out the names of the one
    certificate (the host name, C(autoconfig.) and C(autodiscover.) of each domain, C(mta-sts.) of each domain
    where WebMail serves the MTA-STS policy, the extra names), how the
    http-01 challenge is answered (C(webroot) through WebMail's Apache when it serves plain HTTP on port 80,
    else certbot's own C(standalone) server on port 80) and the certbot command that obtains it.
  - ACME and a certificate in the inventory (C(qubemail_tls_certificate)) exclude each other.
options:
  _input:
    description: >-
      Every variable of the acme role, and C(qubemail_tls_certificate), C(dns_mta_sts_mode), C(webmail_enabled),
      C(webmail_http_port),
      C(webmail_https_port).
    type: dict
    required: true
  base:
    description: The output of P(qubemail_base#filter) (host name and domains).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: ACME settings
  ansible.builtin.set_fact:
    acme_config: "{{ qubemail_settings | qubemail_acme(qubemail_base) }}"
"""

RETURN = r"""
_value:
  description:
    - "A dict with C(enabled) (bool), C(directory_url), C(email), C(names) (the host name first, then sorted),
      C(authenticator) (V(webroot) or V(standalone)), C(webroot) (a path), C(certonly) (certbot's argv) and
      C(request) (the text the role keeps on the host: a different one asks for a new certificate)."
    - With O(collect), C({config, errors}) as P(qubemail_base#filter) documents.
  type: dict
"""

#: The variables qubemail_acme reads (defaults: roles/acme/meta/argument_specs.yml, and
#: roles/qubemail, roles/webmail and roles/dns for the last five).
ACME_SETTINGS = (
    "acme_enabled", "acme_directory_url", "acme_email", "acme_autoconfig_names", "acme_extra_names",
    "qubemail_tls_certificate", "webmail_enabled", "webmail_http_port", "webmail_https_port", "dns_mta_sts_mode",
)
#: An ACME directory: https only (RFC 8555 section 6.1), a host and an optional port and path.
DIRECTORY_URL_RE = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[!$&'()*+,;=:@%/A-Za-z0-9._~-]*)?$")
#: Let's Encrypt allows 100 names on one certificate.
MAX_NAMES = 100
#: Where certbot's webroot authenticator writes the challenges, and Apache serves them from.
WEBROOT = "/var/lib/qubemail/acme"
#: The hook certbot runs after it obtained a certificate (roles/acme/templates/acme-deploy.j2).
DEPLOY_HOOK = "/usr/local/lib/qubemail/acme-deploy"
#: certbot's name for the one certificate: /etc/letsencrypt/live/qubemail/.
CERT_NAME = "qubemail"


def _names(errors, base, s):
    hostname, domains = base["hostname"], list(base["domains"])
    names = [hostname]
    if check_bool(errors, "acme_autoconfig_names", s["acme_autoconfig_names"]):
        names += ["%s.%s" % (prefix, domain) for domain in domains for prefix in ("autoconfig", "autodiscover")]
    if mta_sts_served(s) is None:  # its policy is fetched from https://mta-sts.DOMAIN/
        names += ["mta-sts.%s" % domain for domain in domains]
    extra = s["acme_extra_names"]
    for index, name in enumerate(check_list(errors, "acme_extra_names", extra)):
        name = check_domain(errors, "acme_extra_names[%d]" % index, name)
        if name:
            names.append(name)
    names = [hostname] + sorted(set(names) - {hostname})
    if len(names) > MAX_NAMES:
        errors.add("acme_extra_names", extra,
                   "the certificate would have %d names; an ACME certificate takes at most %d"
                   % (len(names), MAX_NAMES))
    return names


def qubemail_acme(settings, base, collect=False):
    """Validate the ACME settings and derive certbot's request.

    Returns ``{"enabled", "directory_url", "email", "names", "authenticator",
    "webroot", "certonly", "request"}``.
    """
    errors = Errors()
    s = settings_of(settings, ACME_SETTINGS, "qubemail_acme")
    try:
        primary = base["primary_domain"]
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError("qubemail_acme: the second argument must be the output of qubemail_base (%s)" % exc)
    enabled = check_bool(errors, "acme_enabled", s["acme_enabled"])
    url = s["acme_directory_url"]
    if not isinstance(url, str) or not DIRECTORY_URL_RE.match(url):
        errors.add("acme_directory_url", url, "expected the https:// URL of an ACME directory, such as "
                   "https://acme-v02.api.letsencrypt.org/directory")
    email = s["acme_email"]
    if email == "":
        email = "postmaster@" + primary
    else:
        email = check_address(errors, "acme_email", email)
    names = _names(errors, base, s)
    webmail = check_bool(errors, "webmail_enabled", s["webmail_enabled"])
    http_port, https_port = s["webmail_http_port"], s["webmail_https_port"]
    authenticator = "webroot" if webmail and http_port == 80 else "standalone"
    if enabled and s["qubemail_tls_certificate"] not in ("", None):
        errors.add("acme_enabled", s["acme_enabled"],
                   "ACME makes the certificate: leave qubemail_tls_certificate (and its key) empty, "
                   "or turn acme_enabled off")
    if enabled and webmail and https_port == 80:
        errors.add("webmail_https_port", https_port,
                   "is the port the ACME http-01 challenge needs (acme_enabled); choose another")
    if errors.items:
        return errors.result(None, collect)
    certonly = [
        "certbot", "certonly", "--non-interactive", "--agree-tos", "--no-eff-email",
        "--email", email, "--server", url, "--cert-name", CERT_NAME,
        # The key stays across renewals: clients and TLSA records that pinned it keep working.
        "--key-type", "rsa", "--rsa-key-size", "3072", "--reuse-key",
        "--deploy-hook", DEPLOY_HOOK, "--force-renewal", "--preferred-challenges", "http",
    ]
    certonly += (["--webroot", "--webroot-path", WEBROOT] if authenticator == "webroot" else ["--standalone"])
    certonly += ["--domains", ",".join(names)]
    request = "".join("%s %s\n" % pair for pair in (
        ("server", url), ("names", " ".join(names)), ("authenticator", authenticator), ("key", "rsa 3072"),
    ))
    return errors.result({
        "enabled": enabled, "directory_url": url, "email": email, "names": names,
        "authenticator": authenticator, "webroot": WEBROOT, "certonly": certonly, "request": request,
    }, collect)


class FilterModule:
    """The qubemail_acme filter."""

    def filters(self):
        return {"qubemail_acme": qubemail_acme}
