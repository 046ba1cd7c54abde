"""Where the state directory lives by default, and how Windows protects it."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    """The contract's default state directory for this user and platform."""
    if os.name == "nt":
        return Path(os.environ.get("ProgramData", r"C:\ProgramData")) / "certkit"
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/etc/certkit")
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "certkit"


def windows_acl_argv(folder: Path) -> list[str]:
    """icacls command restricting ``folder`` to Administrators and SYSTEM (inherited below).

    Well-known SIDs, not names, so it works on every Windows language
    (S-1-5-32-544 = BUILTIN\\Administrators, S-1-5-18 = LocalSystem).
    """
    return ["icacls", str(folder), "/inheritance:r",
            "/grant:r", "*S-1-5-32-544:(OI)(CI)F", "/grant:r", "*S-1-5-18:(OI)(CI)F"]
