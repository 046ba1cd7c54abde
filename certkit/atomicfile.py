"""Writing a file so that readers see the old content or the new, never a mix or a gap."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from certkit.errors import FileWriteError


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (POSIX; a no-op on Windows)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temp file, fsync and ``os.replace``.

    The temp file is created with ``mode`` already set, so a private file is
    never readable by others, not even for an instant.

    Raises:
        FileWriteError: the file could not be written (exit 1, path and reason).
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)  # umask may have narrowed/widened it
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fsync_dir(path.parent)
    except OSError as exc:
        if isinstance(exc, FileWriteError):
            raise
        error = FileWriteError(
            f"cannot write {path}: {exc.strerror or exc}",
            "check that the folder exists and is writable and that the disk has space",
        )
        error.errno, error.strerror, error.filename = exc.errno, exc.strerror, str(path)
        raise error from exc
