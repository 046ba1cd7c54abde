"""`certkit smtpd` as a real subprocess on loopback ports.

``start_smtpd()`` works outside pytest too (benchmarks, manual runs)::

    from tests.servers.smtpd import start_smtpd
    srv = start_smtpd(home, "mail.test", workdir)
    ... srv.port, srv.smtps_port, srv.user, srv.password ...
    srv.stop()

The servers listen on port 0 (the kernel picks a free port, no race); the
ports are read back from the server's "listening on" log line.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
USER = "alice@example.test"
PASSWORD = "correct horse battery staple"  # test-only credential
_LISTEN_RE = re.compile(r"listening on submission [\d.]+:(\d+)([^;]*);")
_SMTPS_RE = re.compile(r"smtps [\d.]+:(\d+)")


@dataclass
class SmtpdServer:
    """A running `certkit smtpd` and the files it uses."""

    proc: subprocess.Popen[bytes]
    home: Path
    lineage: str
    workdir: Path
    port: int
    smtps_port: int | None
    pid_file: Path
    users_file: Path
    password_file: Path
    maildir: Path
    log_file: Path
    user: str = USER
    password: str = PASSWORD
    argv: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait_log(self, needle: str, timeout: float = 10.0) -> str:
        """Wait until ``needle`` appears in the server log; return the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if needle in text:
                return text
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"{needle!r} not in the smtpd log:\n{self.log()}")

    def hup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, and return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def certkit_argv(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "certkit", "--home", str(home), *args]


def child_env(code: Path = REPO) -> dict[str, str]:
    """The environment for a certkit child process that imports certkit from ``code``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(code) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def issue_lineage(home: Path, name: str = "mail.test", *extra: str) -> None:
    """A self-signed lineage for ``name`` (plus 127.0.0.1) in ``home``."""
    subprocess.run(certkit_argv(home, "issue", "--cn", name, "--san", "127.0.0.1", "--key", "ec256", *extra),
                   check=True, capture_output=True, env=child_env())


def start_smtpd(home: Path, lineage: str, workdir: Path, *, smtps: bool = True,
                relay: str | None = None, extra: tuple[str, ...] = (), timeout: float = 15.0,
                auth_delay: str | None = "0.01", code: Path = REPO) -> SmtpdServer:
    """Start `certkit smtpd` for ``lineage`` with one user; wait until it listens.

    Failed AUTH is answered after ``auth_delay`` seconds (doubling), short by
    default so tests stay fast (None: the server's default); ``extra`` may set
    any other option. ``code`` is the source tree to run (benchmarks compare
    an older checkout).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    password_file = workdir / "password"
    password_file.write_text(PASSWORD + "\n")
    users_file = workdir / "users"
    if not users_file.exists():
        subprocess.run(certkit_argv(home, "smtpd", "adduser", str(users_file), USER,
                                    "--password-file", str(password_file)),
                       check=True, capture_output=True, env=child_env())
    maildir = workdir / "Maildir"
    pid_file = workdir / "smtpd.pid"
    log_file = workdir / "smtpd.log"
    argv = certkit_argv(home, "smtpd", "--listen", "127.0.0.1:0", "--cert", lineage, "--users", str(users_file),
                        "--pid-file", str(pid_file), *extra)
    if auth_delay is not None:
        argv += ["--auth-delay", auth_delay]
    argv += ["--relay", relay] if relay else ["--maildir", str(maildir)]
    if smtps:
        argv += ["--smtps-listen", "127.0.0.1:0"]
    with open(log_file, "wb") as log:
        # cwd: `python -m` puts the current folder first on sys.path, before PYTHONPATH.
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env(code), cwd=workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = _LISTEN_RE.search(log_file.read_text(errors="replace"))
        if match:
            smtps_match = _SMTPS_RE.search(match.group(2))
            return SmtpdServer(proc, home, lineage, workdir, int(match.group(1)),
                               int(smtps_match.group(1)) if smtps_match else None,
                               pid_file, users_file, password_file, maildir, log_file, argv=argv)
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"certkit smtpd did not start:\n{log_file.read_text(errors='replace')}")


@pytest.fixture
def smtpd_server(tmp_path: Path) -> Iterator[SmtpdServer]:
    """A running `certkit smtpd` (submission + smtps) for lineage mail.test in a fresh home."""
    home = tmp_path / "home"
    issue_lineage(home)
    srv = start_smtpd(home, "mail.test", tmp_path / "smtpd")
    try:
        yield srv
    finally:
        srv.stop()


class LineClient:
    """A line-level SMTP client on a raw socket, so every reply, 421 and EOF is visible.

    Used by the attack tests and bench/smtpd_attack.py; ``source_ip`` binds
    another loopback address (127.0.0.2) to stand for another client.
    """

    def __init__(self, port: int, source_ip: str = "127.0.0.1", timeout: float = 20.0) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source_ip, 0))
        self.buffer = b""

    def reply(self) -> str:
        """The next (possibly multi-line) reply, '' at EOF."""
        lines: list[str] = []
        while True:
            while b"\r\n" not in self.buffer:
                try:
                    chunk = self.sock.recv(4096)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    return "\n".join(lines)
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line.decode())
            if len(line) < 4 or line[3:4] != b"-":
                return "\n".join(lines)

    def cmd(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def starttls(self) -> None:
        """Banner, EHLO, STARTTLS (certificate not verified: tests check it elsewhere), EHLO."""
        assert self.reply().startswith("220")
        assert self.cmd("EHLO client.test").startswith("250")
        assert self.cmd("STARTTLS").startswith("220")
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock)
        assert self.cmd("EHLO client.test").startswith("250")

    def at_eof(self) -> bool:
        """True when the server closed the connection (nothing more to read)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True

    def close(self) -> None:
        self.sock.close()


def auth_plain(user: str, password: str, authzid: str = "") -> str:
    """The AUTH PLAIN command line (RFC 4616: authzid NUL user NUL password)."""
    return "AUTH PLAIN " + base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()
