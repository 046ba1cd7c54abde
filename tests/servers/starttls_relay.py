"""A STARTTLS front for a TLS server that speaks no SMTP (`openssl s_server`).

`openssl s_server` can do what no SMTP server in the suite can - staple
an OCSP response (`-status_file`), for one - but it has no STARTTLS. This
front speaks the SMTP part (banner, EHLO offering STARTTLS, STARTTLS) and
then relays the raw bytes both ways to the TLS server, so the handshake a
client sees is the real OpenSSL server's. Listens on 127.0.0.1, port 0.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from tests.servers.net import accept_in_threads, free_port, pipe, wait_port


def _front(client: socket.socket, backend_port: int) -> None:
    client.settimeout(30)
    reader = client.makefile("rb")
    client.sendall(b"220 relay.example.test ESMTP\r\n")
    while True:
        line = reader.readline().strip().upper()
        if not line or line == b"QUIT":
            return
        if line.startswith(b"EHLO"):
            client.sendall(b"250-relay.example.test\r\n250 STARTTLS\r\n")
        elif line == b"STARTTLS":
            client.sendall(b"220 2.0.0 ready\r\n")
            break
        else:
            client.sendall(b"502 5.5.2 no\r\n")
    with socket.create_connection(("127.0.0.1", backend_port), timeout=30) as upstream:
        back = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
        back.start()
        pipe(client, upstream)
        back.join(timeout=30)


@contextlib.contextmanager
def s_server_behind_starttls(cert: Path, key: Path, *extra: str) -> Iterator[int]:
    """Run `openssl s_server -cert CERT -key KEY EXTRA...` behind a STARTTLS front; yields the front's port."""
    backend = free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{backend}", "-cert", str(cert),
                               "-key", str(key), "-quiet", *extra],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def handle(conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError), conn:
            _front(conn, backend)

    try:
        if not wait_port(backend, 10):
            raise RuntimeError("openssl s_server did not start listening")
        accept_in_threads(listener, handle)
        yield int(listener.getsockname()[1])
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        server.terminate()
        server.wait(timeout=10)
