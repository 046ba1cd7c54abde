#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: certkit maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# certkit.mail.certkit_issue: a certificate lineage with the wanted names, key and source.

from __future__ import annotations

DOCUMENTATION = r"""
module: certkit_issue
short_description: Issue a certificate with certkit (self-signed or ACME), idempotently
description:
  - Runs C(certkit issue) on the managed host when the lineage does not exist yet, or when its
    names, key type or source differ from the wanted ones (then with C(--expand)), or when
    I(force=true).
  - Otherwise nothing is issued and the task reports C(changed=false); renewing on time is the job
    of M(certkit.mail.certkit_renew) and C(certkit timer install).
  - Supports check mode (reports what would be issued) and diff mode (names, key type, source).
version_added: "0.1.0"
author:
  - certkit maintainers (@certkit)
extends_documentation_fragment:
  - certkit.mail.common
options:
  cn:
    description:
      - The first name of the certificate (also a SAN). DNS name, wildcard, IP address or IDN.
    type: str
    required: true
  san:
    description:
      - More names for the certificate.
    type: list
    elements: str
    default: []
  name:
    description:
      - The lineage name. Default is certkit's, derived from I(cn).
    type: str
  key:
    description:
      - Key type of the certificate.
    type: str
    choices: [rsa2048, rsa3072, rsa4096, ec256, ec384]
    default: rsa2048
  days:
    description:
      - Validity in days of a self-signed certificate (certkit's default is 365).
    type: int
  acme:
    description:
      - ACME settings. Without them the certificate is self-signed.
    type: dict
    suboptions:
      server:
        description:
          - Directory URL, or C(letsencrypt) / C(letsencrypt-staging).
        type: str
        required: true
      email:
        description: Account contact address.
        type: str
      agree_tos:
        description: Agree to the CA's terms of service.
        type: bool
        default: false
      challenge:
        description: The challenge to answer.
        type: str
        choices: [http-01, dns-01]
      http_port:
        description: Port of certkit's own http-01 responder.
        type: int
      http_address:
        description: Address of certkit's own http-01 responder.
        type: str
      webroot:
        description: Write http-01 tokens under this web root instead of answering on a port.
        type: path
      dns_hook:
        description: Command that publishes and removes the dns-01 TXT records.
        type: str
      ca_bundle:
        description: Trust anchors (PEM) for the ACME server's HTTPS.
        type: path
      eab_kid:
        description: External account binding key id.
        type: str
      eab_hmac_key_file:
        description: File holding the external account binding HMAC key (never the key itself).
        type: path
      profile:
        description: ACME certificate profile name.
        type: str
  force:
    description:
      - Issue a new version even when the lineage already has the wanted names, key and source.
    type: bool
    default: false
notes:
  - The module only reads C(certkit show --json) to decide; secrets are passed as file paths only.
seealso:
  - module: certkit.mail.certkit_deploy
  - module: certkit.mail.certkit_renew
"""

EXAMPLES = r"""
- name: A self-signed certificate for the submission server
  certkit.mail.certkit_issue:
    cn: mail.example.com
    san: [smtp.example.com]
    key: ec256

- name: From Let's Encrypt with http-01, certkit in its own virtual environment
  certkit.mail.certkit_issue:
    cn: mail.example.com
    executable: /opt/certkit/bin/certkit
    acme:
      server: letsencrypt
      email: postmaster@example.com
      agree_tos: true
"""

RETURN = r"""
lineage:
  description:
    - The lineage record, as C(certkit show LINEAGE --json) prints it
      (name, domains, source, key_type, serial, not_before, not_after, renew_after, sha256, paths, deploy,
      last_check). In check mode, the current record (or null when the lineage would be created).
  returned: always
  type: dict
  sample:
    name: mail.example.com
    domains: [mail.example.com]
    key_type: ec256
    source: self-signed
    not_after: "2027-12-02T16:00:00Z"
issued:
  description: Whether a new version was made (or, in check mode, would be).
  returned: always
  type: bool
reason:
  description: Why a new version was (or was not) issued.
  returned: always
  type: str
  sample: the lineage does not exist yet
"""

import ipaddress

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.certkit.mail.plugins.module_utils.certkit import COMMON_ARGS, Certkit, lineage_name_for

ACME_ARGS = dict(
    server=dict(type="str", required=True),
    email=dict(type="str"),
    agree_tos=dict(type="bool", default=False),
    challenge=dict(type="str", choices=["http-01", "dns-01"]),
    http_port=dict(type="int"),
    http_address=dict(type="str"),
    webroot=dict(type="path"),
    dns_hook=dict(type="str"),
    ca_bundle=dict(type="path"),
    eab_kid=dict(type="str"),
    eab_hmac_key_file=dict(type="path"),
    profile=dict(type="str"),
)
LETSENCRYPT = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}


def normal_name(name):
    """A name as certkit stores it: IP addresses compressed, DNS names lower-case punycode."""
    try:
        return str(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        pass
    name = name.strip().rstrip(".").lower()
    try:
        return name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        return name


def wanted_domains(params):
    names = [params["cn"]] + list(params["san"] or [])
    out = []
    for name in names:
        norm = normal_name(name)
        if norm not in out:
            out.append(norm)
    return out


def wanted_source(params):
    acme = params.get("acme")
    if not acme:
        return "self-signed"
    return LETSENCRYPT.get(acme["server"], acme["server"])


def differences(record, params):
    """Why the current lineage is not what is wanted (empty: it is)."""
    why = []
    if sorted(normal_name(d) for d in record.get("domains") or []) != sorted(wanted_domains(params)):
        why.append("names differ")
    if record.get("key_type") != params["key"]:
        why.append("key type differs")
    if (record.get("source") == "self-signed") != (wanted_source(params) == "self-signed") or (
            wanted_source(params) != "self-signed" and record.get("source") != wanted_source(params)):
        why.append("source differs")
    if record.get("version") is None:
        why.append("no live version")
    return why


def issue_args(params, lineage, expand):
    args = ["issue", "--cn", params["cn"], "--name", lineage, "--key", params["key"], "--json"]
    for san in params["san"] or []:
        args += ["--san", san]
    if params.get("days"):
        args += ["--days", str(params["days"])]
    if expand:
        args.append("--expand")
    acme = params.get("acme")
    if not acme:
        return args + ["--self-signed"]
    args += ["--acme", "--server", acme["server"]]
    if acme.get("agree_tos"):
        args.append("--agree-tos")
    for key in ("email", "challenge", "http_port", "http_address", "webroot", "dns_hook", "ca_bundle", "eab_kid",
                "eab_hmac_key_file", "profile"):
        if acme.get(key) not in (None, ""):
            args += ["--" + key.replace("_", "-"), str(acme[key])]
    return args


def current_record(certkit, lineage):
    """The lineage's record, or None when it does not exist."""
    rc, out, err = certkit.run(["show", lineage, "--json"])
    if rc == 0:
        import json

        return json.loads(out)
    if rc == 2 and "no lineage named" in err:
        return None
    certkit.fail(["show", lineage, "--json"], rc, out, err)
    return None


def summary(record):
    if not record:
        return {}
    return {"domains": record.get("domains"), "key_type": record.get("key_type"), "source": record.get("source")}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            COMMON_ARGS,
            cn=dict(type="str", required=True),
            san=dict(type="list", elements="str", default=[]),
            name=dict(type="str"),
            key=dict(type="str", default="rsa2048", choices=["rsa2048", "rsa3072", "rsa4096", "ec256", "ec384"]),
            days=dict(type="int"),
            acme=dict(type="dict", options=ACME_ARGS),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    certkit = Certkit(module)
    lineage = params["name"] or lineage_name_for(normal_name(params["cn"]))
    before = current_record(certkit, lineage)
    why = ["the lineage does not exist yet"] if before is None else differences(before, params)
    if params["force"] and not why:
        why = ["force=true"]
    wanted = {"domains": wanted_domains(params), "key_type": params["key"], "source": wanted_source(params)}
    diff = {"before": summary(before), "after": wanted if why else summary(before)}
    if not why:
        module.exit_json(changed=False, issued=False, lineage=before, reason="the lineage is as wanted", diff=diff)
    if module.check_mode:
        module.exit_json(changed=True, issued=True, lineage=before, reason="; ".join(why), diff=diff)
    expand = before is not None and any(w in ("names differ", "key type differs") for w in why)
    dummy_rc, record = certkit.json(issue_args(params, lineage, expand))
    module.exit_json(changed=True, issued=True, lineage=record, reason="; ".join(why), diff=diff)


if __name__ == "__main__":
    main()
