#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: certkit maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# certkit.mail.certkit_renew: renew the due lineages on the managed host.

from __future__ import annotations

DOCUMENTATION = r"""
module: certkit_renew
short_description: Renew due certkit certificates (and deploy and verify them again)
description:
  - Runs C(certkit renew --json) on the managed host. A lineage is due with a third of its lifetime
    left (or when the CA's renewal window says so); certkit re-issues it from its stored settings,
    re-runs its remembered deploy targets and verifications, and rolls back on failure.
  - C(changed) is true when a lineage was renewed. The task fails when a lineage failed; the others
    are still renewed.
  - In check mode, C(certkit renew --dry-run) reports which lineages are due; nothing is changed.
version_added: "0.1.0"
author:
  - certkit maintainers (@certkit)
extends_documentation_fragment:
  - certkit.mail.common
options:
  lineages:
    description: Lineages to consider (default all).
    type: list
    elements: str
    default: []
  force:
    description: Renew even when not due.
    type: bool
    default: false
seealso:
  - module: certkit.mail.certkit_issue
"""

EXAMPLES = r"""
- name: Renew whatever is due
  certkit.mail.certkit_renew:

- name: Renew one certificate now
  certkit.mail.certkit_renew:
    lineages: [mail.example.com]
    force: true
"""

RETURN = r"""
renewed:
  description: Lineages renewed by this run (in check mode, the ones that are due).
  returned: always
  type: list
  elements: str
not_due:
  description: Lineages not due yet.
  returned: always
  type: list
  elements: str
failed:
  description: Lineages whose renewal failed, each with C(name) and C(error).
  returned: always
  type: list
  elements: dict
lineages:
  description: Per lineage, certkit's details (status, reason, version, not_after, renew_after, elapsed_s).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.certkit.mail.plugins.module_utils.certkit import COMMON_ARGS, Certkit


def main():
    module = AnsibleModule(
        argument_spec=dict(
            COMMON_ARGS,
            lineages=dict(type="list", elements="str", default=[]),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    certkit = Certkit(module)
    args = ["renew", "--json"] + list(params["lineages"])
    if params["force"]:
        args.append("--force")
    if module.check_mode:
        args.append("--dry-run")
    rc, report = certkit.json(args, ok_rcs=(0, 1))
    renewed = report.get("due", []) if module.check_mode else report.get("renewed", [])
    result = dict(changed=bool(renewed), renewed=renewed, not_due=report.get("not_due", []),
                  failed=report.get("failed", []), lineages=report.get("lineages", []))
    if rc != 0 or result["failed"]:
        errors = "; ".join("%s: %s" % (f.get("name"), f.get("error")) for f in result["failed"]) or "see stderr"
        module.fail_json(msg="certkit renew failed for %d lineage(s): %s" % (len(result["failed"]), errors),
                         **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
