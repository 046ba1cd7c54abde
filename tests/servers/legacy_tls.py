"""A STARTTLS server that accepts RC4 or 3DES, which no local OpenSSL can serve.

Debian's OpenSSL 3 has no RC4/3DES left, so this server does TLS with
tlslite-ng (pure Python, PyPI) and its own cipher list: the third-party
peer for certkit's hand-built ClientHello probe. SMTP side: banner, EHLO
offering STARTTLS, STARTTLS, then EHLO/QUIT inside TLS. Listens on
127.0.0.1, port 0.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.servers.zoo import Leaf


def _serve_one(conn: socket.socket, leaf: Leaf, settings_wanted: dict[str, Any]) -> None:
    from tlslite import X509, HandshakeSettings, TLSConnection, X509CertChain, parsePEMKey

    conn.settimeout(10)
    reader = conn.makefile("rb")

    def send(line: str) -> None:
        conn.sendall(line.encode() + b"\r\n")

    send("220 legacy.example.test ESMTP tlslite")
    while True:
        line = reader.readline().strip().upper()
        if not line:
            return
        if line.startswith(b"EHLO"):
            send("250-legacy.example.test")
            send("250 STARTTLS")
        elif line == b"STARTTLS":
            send("220 2.0.0 ready")
            break
        elif line == b"QUIT":
            send("221 bye")
            return
        else:
            send("502 5.5.2 no")
    settings = HandshakeSettings()
    for name, value in settings_wanted.items():  # HandshakeSettings attributes: cipherNames, maxVersion...
        setattr(settings, name, value)
    chain = X509CertChain([X509().parse(leaf.cert_pem.decode())])
    key = parsePEMKey(Path(leaf.key).read_text(), private=True)
    tls = TLSConnection(conn)
    tls.handshakeServer(certChain=chain, privateKey=key, settings=settings)
    buffer = b""
    while True:
        data = tls.recv(1024)
        if not data:
            return
        buffer += data
        while b"\r\n" in buffer:
            line, buffer = buffer.split(b"\r\n", 1)
            if line.upper().startswith(b"EHLO"):
                tls.write(b"250-legacy.example.test\r\n250 AUTH PLAIN\r\n")
            elif line.upper() == b"QUIT":
                tls.write(b"221 bye\r\n")
                tls.close()
                return
            else:
                tls.write(b"502 5.5.2 no\r\n")


@contextlib.contextmanager
def legacy_tls_server(leaf: Leaf, ciphers: list[str], *, min_version: tuple[int, int] = (3, 1),
                      max_version: tuple[int, int] = (3, 3), curves: list[str] | None = None) -> Iterator[int]:
    """Serve STARTTLS with only ``ciphers`` (tlslite names: ``rc4``, ``3des``...); yields the port.

    ``leaf`` must have an RSA key (the RC4/3DES suites offered are RSA key exchange).
    ``min_version``/``max_version`` are tlslite's (major, minor): ``(3, 0)`` is SSL 3.0.
    ``curves``: the ECDHE curves it accepts (tlslite names, ``secp224r1`` included).
    """
    wanted: dict[str, Any] = {"cipherNames": ciphers, "minVersion": min_version, "maxVersion": max_version}
    if curves is not None:
        wanted.update(eccCurves=curves, keyShares=[])  # TLS 1.3 key shares must be among the curves
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_handle, args=(conn,), daemon=True).start()

    def _handle(conn: socket.socket) -> None:
        with contextlib.suppress(Exception), conn:  # a refused handshake is the probe's expected outcome
            _serve_one(conn, leaf, wanted)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        with contextlib.suppress(OSError):  # wakes the blocked accept() (close alone does not)
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(timeout=5)
