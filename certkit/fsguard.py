"""Trust rules for files certkit reads or runs with privilege.

certkit usually runs as root and acts on what it finds in its state
directory: settings name deploy scripts, hook folders hold executables, the
smtpd users file decides who may log in. A file another local user can write
is therefore a way for that user to act as root. The rules follow OpenSSH's
StrictModes and sudo: when running as root, a path (and the folder holding
it) must be owned by root (or the user certkit runs as) and must not be
writable by group or others. Refusals are usage errors (exit 2) that carry
the ``chown``/``chmod`` that fixes them.

This module imports nothing above :mod:`certkit.errors`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from certkit.errors import UsageError

# Characters that must never reach a file name, a settings file, a unit file or
# a cron line: C0 controls, DEL and the C1 range (a newline in --home once
# injected an extra cron line).
_CONTROL = {chr(c) for c in range(0x20)} | {chr(0x7F)} | {chr(c) for c in range(0x80, 0xA0)}


def reject_control_chars(text: str, what: str) -> str:
    """Return ``text`` unchanged, or raise UsageError if it holds a control character.

    Args:
        text: the value as given (a name, a path, an option).
        what: how the user knows it, e.g. ``"--home"`` or ``"lineage name"``.
    """
    bad = sorted({ch for ch in text if ch in _CONTROL})
    if bad:
        shown = ", ".join(repr(ch) for ch in bad)
        raise UsageError(
            f"{what} {text!r} contains control characters ({shown})",
            "remove them (a newline or tab is never part of a name or path)",
        )
    return text


def strict_mode() -> bool:
    """True when certkit must not trust paths other users control (running as root on POSIX)."""
    return os.name != "nt" and hasattr(os, "geteuid") and os.geteuid() == 0


def _trusted_uids() -> set[int]:
    return {0, os.geteuid()}


def check_trusted(path: Path | str, what: str, *, follow: bool = False, sticky_ok: bool = False) -> None:
    """Refuse ``path`` if, running as root, another user could have written it.

    A missing path is accepted (certkit will create it itself). Nothing is
    checked unless :func:`strict_mode` is on. The path is examined with
    ``lstat`` (a symlink is judged as itself and must also be trusted),
    unless ``follow`` is set.

    Args:
        path: the file or folder.
        what: how the message names it, e.g. ``"state directory"``.
        follow: judge the target of a symlink instead of the link.
        sticky_ok: accept a world-writable folder with the sticky bit (``/tmp``):
            others cannot rename or remove what root created in it.

    Raises:
        UsageError: owned by another user, or writable by group/others.
    """
    if not strict_mode():
        return
    p = Path(path)
    try:
        st = p.stat() if follow else p.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"cannot examine {what} {p}: {exc.strerror}", "check the path and its permissions") from None
    if stat.S_ISLNK(st.st_mode):
        # A symlink's own mode bits mean nothing; its owner does.
        if st.st_uid not in _trusted_uids():
            raise UsageError(
                f"{what} {p} is a symlink owned by uid {st.st_uid}, not root",
                f"remove it (rm {p}) or check who created it",
            )
        return
    if st.st_uid not in _trusted_uids():
        raise UsageError(
            f"{what} {p} is owned by uid {st.st_uid}, not root: another user could make root run or "
            "trust what it holds",
            f"if it is yours, chown root:root {p}",
        )
    if sticky_ok and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
        return
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UsageError(
            f"{what} {p} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})",
            f"chmod go-w {p}",
        )


def check_trusted_chain(path: Path | str, what: str, stop_at: Path | str | None = None) -> None:
    """:func:`check_trusted` for ``path`` and each folder above it up to ``stop_at``.

    A folder that other users can write lets them rename the file inside it
    away and put their own in its place, so the folders count too. Without
    ``stop_at`` only the immediate parent is checked (``/tmp`` itself is
    sticky and world-writable; the rule is about the path certkit owns).
    """
    p = Path(path).absolute()
    check_trusted(p, what)
    parent = p.parent
    stop = Path(stop_at).absolute() if stop_at is not None else parent
    while True:
        check_trusted(parent, f"folder of the {what}", follow=True, sticky_ok=True)
        if parent == stop or parent.parent == parent:
            return
        parent = parent.parent
