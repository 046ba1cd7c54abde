# -*- coding: utf-8 -*-
# Copyright: certkit maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Options every certkit.mail module takes.

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  executable:
    description:
      - The certkit command on the managed host.
      - A path, or a command line split like a shell would, for example
        C(/opt/certkit/bin/python -m certkit) when certkit lives in its own virtual environment.
      - Ansible does not pass the controller's C(PYTHONPATH) to the managed host, so point this at
        an installed C(certkit) or a wrapper that sets up its environment.
    type: str
    default: certkit
  home:
    description:
      - The certkit state directory on the managed host (C(certkit --home)).
      - Default is certkit's own, C(/etc/certkit) when the module runs as root.
    type: path
"""
