# -*- coding: utf-8 -*-
# Copyright: certkit maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running certkit on the managed host and reading its JSON (shared by the certkit.mail modules)."""

from __future__ import annotations

import json
import shlex

COMMON_ARGS = dict(
    executable=dict(type="str", default="certkit"),
    home=dict(type="path"),
)


class Certkit:
    """The certkit command line for one module run (executable + --home)."""

    def __init__(self, module):
        self.module = module
        self.base = shlex.split(module.params["executable"])
        if not self.base:
            module.fail_json(msg="executable is empty: give the certkit command on the managed host")
        if module.params.get("home"):
            self.base += ["--home", module.params["home"]]

    def run(self, args):
        """(rc, stdout, stderr) of certkit with ``args``; never fails the module itself."""
        return self.module.run_command(self.base + list(args), environ_update={"NO_COLOR": "1"})

    def fail(self, args, rc, out, err, **extra):
        lines = [line for line in (err or "").splitlines() if line.strip()]
        why = lines[-1] if lines else "no message"
        self.module.fail_json(msg="certkit %s failed (exit %d): %s" % (args[0], rc, why), rc=rc,
                              cmd=" ".join(shlex.quote(a) for a in self.base + list(args)),
                              stdout=out, stderr=err, **extra)

    def json(self, args, ok_rcs=(0,)):
        """certkit's JSON output of ``args`` (the module fails on another exit code or unreadable output)."""
        rc, out, err = self.run(args)
        if rc not in ok_rcs:
            self.fail(args, rc, out, err)
        try:
            return rc, json.loads(out)
        except ValueError:
            self.fail(args, rc, out, err + "\n(the output was not JSON: is `executable` certkit?)")
        return rc, None  # not reached: fail_json exits


def lineage_name_for(first_name):
    """certkit's default lineage name for a first certificate name (certkit.store.lineage_name_for)."""
    if first_name.startswith("*."):
        return "wildcard." + first_name[2:]
    if ":" in first_name:
        return "ipv6-" + first_name.replace(":", "-")
    return first_name
