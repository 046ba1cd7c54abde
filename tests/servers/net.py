"""Loopback helpers shared by the server fixtures (usable outside pytest too)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bind 0, then released for the server to take)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: each socket stays bound until all are picked, so the kernel
    cannot hand the same port out twice (one port for Pebble's management API and DNS once broke a run)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def wait_port(port: int, timeout: float) -> bool:
    """True once something accepts connections on 127.0.0.1:port, False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        time.sleep(0.02)
    return False


def pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until ``src`` ends, then half-close ``dst`` (one direction of a relay)."""
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def accept_in_threads(listener: socket.socket, handle: Callable[[socket.socket], None]) -> threading.Thread:
    """Accept on ``listener`` until it is closed, each connection handled on its own daemon thread."""

    def loop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread
