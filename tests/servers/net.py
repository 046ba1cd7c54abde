"""Loopback helpers shared by the server fixtures (usable outside pytest too)."""

from __future__ import annotations

import contextlib
import socket
import time


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bind 0, then released for the server to take)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float) -> bool:
    """True once something accepts connections on 127.0.0.1:port, False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        time.sleep(0.02)
    return False
