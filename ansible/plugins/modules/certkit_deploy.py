#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: certkit maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# certkit.mail.certkit_deploy: put a lineage's live certificate into servers and prove it.

from __future__ import annotations

DOCUMENTATION = r"""
module: certkit_deploy
short_description: Deploy a certkit lineage to Postfix, certkit smtpd (aiosmtpd), IIS, Exchange or a script
description:
  - Runs C(certkit deploy LINEAGE --to TARGET ...) on the managed host. certkit then checks every
    I(verify) URL, rolls back on failure and remembers the targets, so renewals deploy the same way.
  - Idempotent - when every target (with the same options) and every I(verify) URL is already
    remembered by the lineage and each I(verify) URL serves the live certificate now, nothing is run
    and the task reports C(changed=false).
  - Check mode reports whether a deploy would run.
version_added: "0.1.0"
author:
  - certkit maintainers (@certkit)
extends_documentation_fragment:
  - certkit.mail.common
options:
  lineage:
    description: The lineage to deploy.
    type: str
    required: true
  to:
    description:
      - Deploy targets - C(postfix), C(aiosmtpd), C(iis), C(exchange) or C(script:PATH).
    type: list
    elements: str
    required: true
  verify:
    description:
      - URLs (C(submission://host:587), C(smtps://host:465), ...) that must serve the new certificate.
    type: list
    elements: str
    default: []
  postfix_config_dir:
    description: postfix - the configuration directory (certkit's default is C(/etc/postfix)).
    type: path
  setup_submission:
    description: postfix - also create or update the submission service (587, STARTTLS, AUTH after TLS).
    type: bool
    default: false
  submission_listen:
    description: postfix - C([ADDR:]PORT) of the submission service (default 587).
    type: str
  pid_file:
    description: aiosmtpd - the PID file of the running certkit smtpd.
    type: path
  no_rollback:
    description: On failure keep the new version live instead of restoring the previous one.
    type: bool
    default: false
  force:
    description: Deploy even when nothing seems to have changed.
    type: bool
    default: false
seealso:
  - module: certkit.mail.certkit_issue
  - module: certkit.mail.certkit_check
"""

EXAMPLES = r"""
- name: Postfix with a submission service on 587
  certkit.mail.certkit_deploy:
    lineage: mail.example.com
    to: [postfix]
    setup_submission: true
    verify: ["submission://mail.example.com:587"]

- name: A running certkit smtpd picks up the new certificate without a restart
  certkit.mail.certkit_deploy:
    lineage: mail.example.com
    to: [aiosmtpd]
    pid_file: /run/certkit-smtpd.pid
"""

RETURN = r"""
deployed:
  description: What C(certkit deploy --json) printed (name, version, targets, hooks, verified); empty when nothing ran.
  returned: always
  type: dict
  sample:
    name: mail.example.com
    version: 2
    targets: [postfix]
    verified: [{target: "submission://mail.example.com:587", ok: true, detail: "serves version 2"}]
reason:
  description: Why the deploy ran, or why it was not needed.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.certkit.mail.plugins.module_utils.certkit import COMMON_ARGS, Certkit

# module option -> (target, certkit option name in the lineage's remembered target)
TARGET_OPTIONS = {
    "postfix_config_dir": ("postfix", "config_dir"),
    "setup_submission": ("postfix", "setup_submission"),
    "submission_listen": ("postfix", "submission_listen"),
    "pid_file": ("aiosmtpd", "pid_file"),
}


def target_name(spec):
    return spec.split(":", 1)[0] if not spec.startswith("script:") else spec


def missing_targets(remembered, params):
    """The requested targets (or their options) the lineage does not remember yet."""
    known = {t["target"]: t.get("options") or {} for t in remembered.get("targets") or []}
    missing = []
    for spec in params["to"]:
        name = target_name(spec)
        if name not in known:
            missing.append(spec)
            continue
        for option, (kind, key) in TARGET_OPTIONS.items():
            value = params.get(option)
            if kind == name and value not in (None, False, "") and str(known[name].get(key)) != str(value):
                missing.append("%s (%s)" % (spec, key))
    return missing


def stale_urls(certkit, lineage, urls):
    """The verify URLs that do not serve the lineage's live certificate now."""
    stale = []
    for url in urls:
        rc, _out, _err = certkit.run(["check", url, "--expect", lineage, "--quick", "--no-record", "--json"])
        if rc != 0:
            stale.append(url)
    return stale


def deploy_args(params):
    args = ["deploy", params["lineage"], "--json"]
    for spec in params["to"]:
        args += ["--to", spec]
    for url in params["verify"]:
        args += ["--verify", url]
    for option in TARGET_OPTIONS:
        value = params.get(option)
        if value is True:
            args.append("--" + option.replace("_", "-"))
        elif value not in (None, False, ""):
            args += ["--" + option.replace("_", "-"), str(value)]
    if params["no_rollback"]:
        args.append("--no-rollback")
    return args


def main():
    module = AnsibleModule(
        argument_spec=dict(
            COMMON_ARGS,
            lineage=dict(type="str", required=True),
            to=dict(type="list", elements="str", required=True),
            verify=dict(type="list", elements="str", default=[]),
            postfix_config_dir=dict(type="path"),
            setup_submission=dict(type="bool", default=False),
            submission_listen=dict(type="str"),
            pid_file=dict(type="path"),
            no_rollback=dict(type="bool", default=False),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    certkit = Certkit(module)
    dummy_rc, remembered = certkit.json(["targets", params["lineage"], "--json"])
    why = []
    if params["force"]:
        why.append("force=true")
    missing = missing_targets(remembered, params)
    if missing:
        why.append("not deployed yet to " + ", ".join(missing))
    new_urls = [u for u in params["verify"] if u not in (remembered.get("verify") or [])]
    if new_urls:
        why.append("not verified yet at " + ", ".join(new_urls))
    if not why:
        stale = stale_urls(certkit, params["lineage"], params["verify"])
        if stale:
            why.append("the live certificate is not served at " + ", ".join(stale))
    if not why:
        module.exit_json(changed=False, deployed={}, reason="already deployed and served")
    if module.check_mode:
        module.exit_json(changed=True, deployed={}, reason="; ".join(why))
    dummy_rc, outcome = certkit.json(deploy_args(params))
    module.exit_json(changed=True, deployed=outcome, reason="; ".join(why))


if __name__ == "__main__":
    main()
