"""The state directory's lock: one mutating certkit process at a time (contract).

``.lock`` holds the holder's pid. It is opened with O_NOFOLLOW and only
used when it is our own regular file, because it is truncated and written:
a symlink planted there would make root overwrite whatever it points at.
Re-entrant within a process (threads of one renewal run share it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from certkit.errors import LockError, OperationError, UsageError
from certkit.polling import Backoff

POLL_SECONDS = 0.05


class StateLock:
    """``path``'s advisory lock; a second process waits ``wait`` seconds, then LockError."""

    def __init__(self, path: Path, wait: float) -> None:
        self.path = path
        self.wait = wait
        self._depth = 0
        self._fd: int | None = None
        self._mutex = threading.RLock()

    def is_held(self) -> bool:
        return self._depth > 0

    @contextlib.contextmanager
    def held(self, before_first: Callable[[], None]) -> Iterator[None]:
        """Hold the lock; ``before_first`` runs (under the mutex) before it is taken from outside."""
        with self._mutex:
            if self._depth == 0:
                before_first()
                self._acquire()
            self._depth += 1
        try:
            yield
        finally:
            with self._mutex:
                self._depth -= 1
                if self._depth == 0:
                    self._release()

    def _acquire(self) -> None:
        fd = self._open()
        backoff = Backoff(deadline=time.monotonic() + self.wait, first=POLL_SECONDS, growth=1.0)
        while True:
            try:
                _try_lock(fd)
                break
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN, errno.EDEADLK):
                    os.close(fd)
                    raise
                if not backoff.wait():
                    holder = _read_pid(fd)
                    os.close(fd)
                    raise LockError(
                        f"another certkit process{f' (pid {holder})' if holder else ''} is working on "
                        f"{self.path.parent}; waited {self.wait:g} s",
                        "let it finish and run the command again",
                    ) from None
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _open(self) -> int:
        """Open the lock file without following a symlink; refuse anything but our own regular file."""
        path = self.path
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP or path.is_symlink():
                raise UsageError(
                    f"the lock file {path} is a symlink - refusing to write through it",
                    f"remove it (rm {path}) and check who created it; certkit makes its own",
                ) from None
            raise OperationError(f"cannot open the lock file {path}: {exc.strerror}",
                                 "check the state directory's permissions") from exc
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (hasattr(os, "geteuid") and st.st_uid not in (0, os.geteuid())):
            os.close(fd)
            raise UsageError(
                f"the lock file {path} is not a regular file owned by root or this user",
                f"remove it (rm {path}) and check who created it; certkit makes its own",
            )
        return fd

    def _release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                _unlock(self._fd)
            os.close(self._fd)
            self._fd = None


def _try_lock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


def _read_pid(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 32).decode(errors="replace").strip()
    except OSError:
        return ""

