"""SMTP listeners that greet only once every one of them has a client: a proof of concurrency.

Each of ``count`` listeners accepts a connection and waits at a shared
barrier before sending its 220 greeting (then hangs up after EHLO). A
client that checks them one after another never gets a greeting - the
first waits for clients that never come - so "every banner PASSed" proves,
without a clock, that the targets were checked at the same time.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


def _serve(listener: socket.socket, barrier: threading.Barrier) -> None:
    with contextlib.suppress(OSError):
        conn, _ = listener.accept()
        with conn:
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                return
            conn.sendall(b"220 barrier.example.test ESMTP\r\n")
            conn.settimeout(10)
            conn.recv(1024)
            conn.sendall(b"421 4.3.2 closing\r\n")


@contextlib.contextmanager
def barrier_servers(count: int, wait: float = 30.0) -> Iterator[list[int]]:
    """``count`` listeners on 127.0.0.1; the barrier gives up after ``wait`` seconds. Yields the ports."""
    barrier = threading.Barrier(count, timeout=wait)
    listeners = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        listeners.append(sock)
    threads = [threading.Thread(target=_serve, args=(s, barrier), daemon=True) for s in listeners]
    for t in threads:
        t.start()
    try:
        yield [int(s.getsockname()[1]) for s in listeners]
    finally:
        barrier.abort()
        for s in listeners:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept()
            s.close()
