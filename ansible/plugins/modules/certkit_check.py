#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: certkit maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# certkit.mail.certkit_check: audit SMTP endpoints; a FAIL fails the host.

from __future__ import annotations

DOCUMENTATION = r"""
module: certkit_check
short_description: Audit SMTP submission endpoints with certkit check; fail the host on a FAIL
description:
  - Runs C(certkit check URL... --json) on the managed host - the STARTTLS session, the served
    certificate (trust, names, expected certificate), TLS versions and ciphers, AUTH and relay policy.
  - The task fails when any check FAILs, with the checks in the result; WARN does not fail it.
  - Never changes anything (C(changed=false)). The results are recorded in the state directory
    for C(certkit metrics) when it exists (see I(record)).
version_added: "0.1.0"
author:
  - certkit maintainers (@certkit)
extends_documentation_fragment:
  - certkit.mail.common
options:
  url:
    description:
      - Endpoints - C(submission://host[:587]), C(smtp://host[:25]), C(smtps://host[:465]) or C(host:port).
    type: list
    elements: str
    required: true
  name:
    description: Name the certificate must carry as a SAN (default the URL's host).
    type: str
  cafile:
    description: Trust anchors (PEM) instead of the managed host's system store.
    type: path
  expect:
    description:
      - The certificate that must be served - a lineage name (its live certificate) or a certificate file.
    type: str
  timeout:
    description: Seconds allowed for each step of the session.
    type: float
    default: 10
  quick:
    description: Only the session up to EHLO after TLS (certificate and STARTTLS), no side probes.
    type: bool
    default: false
  strict:
    description: Also WARN on RSA 2048 keys.
    type: bool
    default: false
  auth_user:
    description: Log in as this user after TLS (needs I(password_file)).
    type: str
  password_file:
    description: File on the managed host whose first line is the password (never the password itself).
    type: path
  record:
    description:
      - Keep the results for C(certkit metrics). Default - when the state directory exists.
    type: bool
  transcript:
    description:
      - Return each endpoint's telnet-style session (the C(S:) and C(C:) lines) in C(reports).
    type: bool
    default: false
seealso:
  - module: certkit.mail.certkit_deploy
"""

EXAMPLES = r"""
- name: The submission service serves the lineage's certificate and refuses AUTH before TLS
  certkit.mail.certkit_check:
    url: submission://mail.example.com:587
    expect: mail.example.com
"""

RETURN = r"""
checks:
  description:
    - Every check of every endpoint, in order; each has C(target), C(id), C(status)
      (PASS, WARN, FAIL, SKIP, UNKNOWN), C(detail) and, on FAIL or WARN, C(fix).
  returned: always
  type: list
  elements: dict
  sample:
    - {target: "submission://mail.example.com:587", id: starttls-offered, status: PASS, detail: "STARTTLS advertised"}
reports:
  description: One C(certkit check --json) report per endpoint (target, ok, checks, certificate, elapsed_ms).
  returned: always
  type: list
  elements: dict
failed_checks:
  description: C(target id) of every FAILed check.
  returned: always
  type: list
  elements: str
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.certkit.mail.plugins.module_utils.certkit import COMMON_ARGS, Certkit


def check_args(params):
    args = ["check"] + list(params["url"]) + ["--json", "--timeout", str(params["timeout"])]
    for option in ("name", "cafile", "expect", "auth_user", "password_file"):
        if params.get(option):
            args += ["--" + option.replace("_", "-"), params[option]]
    for flag in ("quick", "strict"):
        if params[flag]:
            args.append("--" + flag)
    if params["record"] is not None:
        args.append("--record" if params["record"] else "--no-record")
    return args


def main():
    module = AnsibleModule(
        argument_spec=dict(
            COMMON_ARGS,
            url=dict(type="list", elements="str", required=True),
            name=dict(type="str"),
            cafile=dict(type="path"),
            expect=dict(type="str"),
            timeout=dict(type="float", default=10),
            quick=dict(type="bool", default=False),
            strict=dict(type="bool", default=False),
            auth_user=dict(type="str"),
            password_file=dict(type="path", no_log=False),
            record=dict(type="bool"),
            transcript=dict(type="bool", default=False),
        ),
        required_together=[["auth_user", "password_file"]],
        supports_check_mode=True,
    )
    params = module.params
    certkit = Certkit(module)
    args = check_args(params)
    rc, out, err = certkit.run(args)
    if rc not in (0, 1):
        certkit.fail(args, rc, out, err)
    try:
        parsed = json.loads(out)
    except ValueError:
        certkit.fail(args, rc, out, err)
    reports = parsed if isinstance(parsed, list) else [parsed]
    checks, failed = [], []
    for report in reports:
        if not params["transcript"]:
            report.pop("transcript", None)
        for item in report.get("checks", []):
            checks.append(dict(item, target=report.get("target")))
            if item.get("status") == "FAIL":
                failed.append("%s %s" % (report.get("target"), item.get("id")))
    result = dict(changed=False, checks=checks, reports=reports, failed_checks=failed)
    if failed:
        module.fail_json(msg="certkit check: %d check(s) FAILED: %s" % (len(failed), ", ".join(failed)), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
