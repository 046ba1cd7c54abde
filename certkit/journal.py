"""The log file: what a command printed and did, so a failed 3 a.m. renewal can be read the next morning.

The command line tees everything it prints (stdout and stderr) and the debug
details of ``logging.getLogger("certkit")`` (ACME requests, programs run) into
``HOME/logs/certkit.log``. Nothing is written until the command first locks
the state directory (:func:`attach`, from the Store): read-only commands
(list, show, check) leave no log and create no home; until then lines wait in
memory. ``-v`` also prints the debug details on standard error.

No secrets: certkit never prints one, and as a second guard every value read
through :mod:`certkit.secretfile` or held in a secret variable is masked.
At MAX_BYTES the file moves to ``certkit.log.1`` (up to ``.5``).

A reader that goes away (``certkit issue | head -1``) silences the output but
not the work: the command finishes, the log keeps every line.
"""

from __future__ import annotations

import io
import os
import stat
import sys
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from certkit import envvars

if TYPE_CHECKING:
    import logging

MAX_BYTES = 1 << 20
BACKUPS = 5
BUFFERED_LINES = 5000  # kept in memory before the home is known
LOG_NAME = "certkit.log"


class _Journal:
    def __init__(self) -> None:
        self.started = False
        self.verbose = 0
        self.pending: deque[str] = deque(maxlen=BUFFERED_LINES)
        self.fd: int | None = None
        self.home: Path | None = None
        self.secrets: set[str] = set()

    def record(self, tag: str, text: str) -> None:
        if not self.started:
            return
        for secret in self.secrets:
            text = text.replace(secret, "********")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = f"{stamp} [{os.getpid()}] {tag}: {text}\n"
        if self.fd is None:
            self.pending.append(line)
            return
        try:
            os.write(self.fd, line.encode("utf-8", "replace"))
        except OSError:  # a full disk must not stop a renewal
            self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


_journal = _Journal()


class _Tee(io.TextIOBase):
    """A text stream that writes through to ``inner`` and records every finished line."""

    def __init__(self, inner: TextIO, tag: str) -> None:
        self.inner = inner
        self.tag = tag
        self.partial = ""

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError("text stream")
        try:
            self.inner.write(text)
        except BrokenPipeError:
            self._reader_gone()
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            _journal.record(self.tag, line.rstrip("\r").replace("\r", " "))
        return len(text)

    def flush(self) -> None:
        try:
            self.inner.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        # `certkit issue | head -1`: the reader left. Keep working; write the rest nowhere.
        with open(os.devnull, "w") as sink:
            os.dup2(sink.fileno(), self.inner.fileno())

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.inner.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self.inner.errors

    @property
    def buffer(self) -> Any:
        return self.inner.buffer


class _DebugHandler:
    """``logging`` records of the ``certkit`` logger into the journal (and stderr with -v).

    Built on first use (:func:`logger`): ``certkit --version`` never imports logging.
    """

    installed = False

    @classmethod
    def install(cls) -> None:
        import logging

        if cls.installed:
            return
        cls.installed = True

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                message = record.getMessage()
                _journal.record("debug", message)
                if _journal.verbose:
                    inner = sys.stderr.inner if isinstance(sys.stderr, _Tee) else sys.stderr
                    try:
                        inner.write(f"debug: {message}\n")
                    except (OSError, ValueError):
                        pass

        log = logging.getLogger("certkit")
        log.setLevel(logging.DEBUG)
        log.addHandler(Handler())
        log.propagate = False


def logger() -> logging.Logger:
    """The ``certkit`` logger whose debug lines reach the log file (and stderr with -v)."""
    import logging

    if _journal.started:
        _DebugHandler.install()
    return logging.getLogger("certkit")


def start(argv: list[str]) -> None:
    """Begin the journal of one command (the command line calls this once, first)."""
    if _journal.started:
        return
    _journal.started = True
    for name in envvars.SECRET_ENV:
        mask(os.environ.get(name, ""))
    sys.stdout = _Tee(sys.stdout, "out")
    sys.stderr = _Tee(sys.stderr, "err")
    if "logging" in sys.modules:  # a module already holds the logger (library use, then main())
        _DebugHandler.install()
    _journal.record("command", "certkit " + " ".join(argv))


def set_verbose(level: int) -> None:
    _journal.verbose = level


def mask(secret: str) -> None:
    """Never write ``secret`` to the log (values of secret files and variables)."""
    if len(secret) >= 3:  # shorter values would mask ordinary words
        _journal.secrets.add(secret)


def attach(home: Path) -> None:
    """Open ``home/logs/certkit.log`` and write the lines so far (a warning on stderr when it cannot).

    The home has been checked by then (owned by us, not writable by others);
    the log folder is made 0700 and the file opened without following links,
    so nobody can point root's appends at another file.
    """
    if not _journal.started or _journal.home == home:
        return
    _journal.close()
    problem = _open_log(home / "logs")
    if problem:
        print(f"warning: {problem}", file=sys.stderr)
        return
    while _journal.pending and _journal.fd is not None:
        line = _journal.pending.popleft()
        try:
            os.write(_journal.fd, line.encode("utf-8", "replace"))
        except OSError:
            _journal.close()


def _open_log(logs: Path) -> str | None:
    """Open the log file under ``logs`` into the journal; why not, when it cannot."""
    try:
        if not logs.is_dir():
            logs.mkdir(mode=0o700)
            os.chmod(logs, 0o700)
        info = os.lstat(logs)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            return f"{logs} is not a folder of ours that only we can write; no log written"
        _rotate(logs / LOG_NAME)
        fd = os.open(logs / LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        return f"cannot write the log file {logs / LOG_NAME}: {exc.strerror or exc}"
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        return f"{logs / LOG_NAME} is not a regular file of ours; no log written"
    os.fchmod(fd, 0o600)
    _journal.fd, _journal.home = fd, logs.parent
    return None


def _rotate(path: Path) -> None:
    try:
        if path.lstat().st_size < MAX_BYTES:
            return
    except FileNotFoundError:
        return
    for n in range(BACKUPS - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{n + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))


def finish(code: object) -> None:
    """Write the command's exit status and close the log."""
    status = 0 if code is None else code if isinstance(code, int) else 1
    _journal.record("exit", str(status))
    _journal.close()
