"""Issue 11 item 11: the session streams on a terminal, Ctrl-C shows what was said, silence suggests smtps://.

The servers are raw sockets driven by the test, so each step happens only
when the test allows it: a transcript line can only be seen "before the
end" if certkit really printed it as it happened.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.processes import run_with_stderr_on_a_terminal
from tests.servers.zoo import ZooPki, server_context

GUARD = 30.0  # failure guard only: how long a read may wait before the test gives up
HOLD = 120.0  # the server holds a reply this long unless released: longer than certkit's --timeout below


class HeldServer:
    """Accepts one client, sends the banner, then holds every reply until ``release`` is set."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.got_ehlo = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.sendall(b"220 held.example ESMTP\r\n")
            conn.settimeout(GUARD)
            with contextlib.suppress(OSError):
                conn.recv(1024)  # EHLO
                self.got_ehlo.set()
                self.release.wait(HOLD)
                conn.sendall(b"250 held.example\r\n")
                conn.recv(1024)

    def close(self) -> None:
        self.release.set()
        self.listener.close()


@pytest.fixture
def held() -> Iterator[HeldServer]:
    server = HeldServer()
    yield server
    server.close()


def certkit_check(*args: str) -> list[str]:
    return [sys.executable, "-m", "certkit", "check", *args]


def test_transcript_streams_on_a_terminal(held: HeldServer) -> None:
    main, child = pty.openpty()
    proc = subprocess.Popen(certkit_check(f"smtp://127.0.0.1:{held.port}", "--quick", "--timeout", "60"),
                            stdin=child, stdout=child, stderr=child, close_fds=True)
    os.close(child)
    seen = b""
    try:
        while b"S: 220 held.example" not in seen:
            ready, _, _ = select.select([main], [], [], GUARD)
            assert ready, f"nothing on the terminal while the server holds its EHLO reply: {seen!r}"
            seen += os.read(main, 4096)
        # The banner is on the screen while the server still holds the EHLO reply (certkit waits up to
        # 60 s for it, longer than GUARD): it streamed.
        assert not held.release.is_set() and proc.poll() is None
    finally:
        held.release.set()
        proc.wait(GUARD)
        os.close(main)


def test_ctrl_c_prints_the_partial_session(held: HeldServer) -> None:
    # --quick: one connection only (the held server accepts one; side probes would race for it).
    proc = subprocess.Popen(certkit_check(f"smtp://127.0.0.1:{held.port}", "--quick", "--timeout", "20"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert held.got_ehlo.wait(GUARD)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=GUARD)
    assert proc.returncode == 130
    assert b"S: 220 held.example ESMTP" in out and b"C: EHLO" in out
    assert b"interrupted" in err and b"Traceback" not in err


def test_silent_port_suggests_implicit_tls(tmp_path: Path) -> None:
    """A real TLS listener (what port 465 runs) checked as STARTTLS: the fix names smtps://."""
    pki = ZooPki(tmp_path)
    leaf = pki.leaf("tls.example")
    context: ssl.SSLContext = server_context(leaf)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            conn.settimeout(GUARD)
            with context.wrap_socket(conn, server_side=True) as tls:  # waits for a ClientHello, says nothing
                tls.recv(1)

    threading.Thread(target=serve, daemon=True).start()
    try:
        done = subprocess.run(certkit_check(f"submission://127.0.0.1:{port}", "--quick", "--timeout", "0.5"),
                              capture_output=True, text=True, timeout=GUARD)
    finally:
        listener.close()
    assert done.returncode == 1
    assert "FAIL  banner" in done.stdout
    assert f"try smtps://127.0.0.1:{port}" in done.stdout


def test_fleet_progress_line_is_erased_and_a_totals_line_ends_the_run() -> None:
    """Issue 13: `\\r[46 checked, 1 failed]` was never cleared and garbled what followed it."""
    closed = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    urls = [f"smtp://127.0.0.1:{s.getsockname()[1]}" for s in closed]
    for s in closed:
        s.close()  # nothing listens: each target fails fast at connect
    code, out, err = run_with_stderr_on_a_terminal(certkit_check(*urls, "--quick", "--timeout", "2"), timeout=GUARD)
    assert code == 1
    # Each progress line is erased before the next output; the error line starts on a clean line.
    assert b"[2 checked, 2 failed]\r\x1b[Kerror: 2 target(s) FAILED" in err
    assert out.decode().rstrip().endswith("2 target(s) checked, 2 FAILED")


def test_adduser_refuses_an_empty_password_at_the_prompt(tmp_path: Path) -> None:
    """Issue 13: an empty answer used to re-prompt silently; now it is named (exit 2)."""
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "smtpd", "adduser", str(tmp_path / "users"), "alice"],
                            stdin=child, stdout=child, stderr=child, close_fds=True)
    os.close(child)
    seen = b""
    for prompt in (b"Password for alice:", b"Repeat for confirmation:"):
        while prompt not in seen:
            ready, _, _ = select.select([main], [], [], GUARD)
            assert ready, seen
            seen += os.read(main, 1024)
        os.write(main, b"\n")  # an empty answer
    assert proc.wait(GUARD) == 2
    with contextlib.suppress(OSError):
        while select.select([main], [], [], 1)[0]:
            chunk = os.read(main, 1024)
            if not chunk:
                break
            seen += chunk
    os.close(main)
    assert b"an empty password was typed" in seen
    assert not (tmp_path / "users").exists()


@pytest.mark.parametrize("no_color", [False, True])
def test_status_words_are_coloured_on_a_terminal_unless_no_color(no_color: bool) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    url = f"smtp://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()  # nothing listens: connect FAILs, the rest SKIPs
    main, child = pty.openpty()
    env = dict(os.environ, NO_COLOR="1") if no_color else {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    proc = subprocess.Popen(certkit_check(url, "--quick", "--timeout", "2"), stdin=child, stdout=child,
                            stderr=child, env=env, close_fds=True)
    os.close(child)
    seen = b""
    with contextlib.suppress(OSError):
        while select.select([main], [], [], GUARD)[0]:
            chunk = os.read(main, 4096)
            if not chunk:
                break
            seen += chunk
    os.close(main)
    assert proc.wait(GUARD) == 1
    assert b"FAIL" in seen
    assert (b"\x1b[" in seen.split(b"error:")[0]) is not no_color, seen
