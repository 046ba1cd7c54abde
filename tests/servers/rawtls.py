"""A scripted TLS first flight behind STARTTLS: what no maintained TLS library will still do.

OpenSSL 3, tlslite-ng and Python's ssl can no longer be made to choose TLS
compression, leave out the RFC 5746 renegotiation_info, speak SSL 2.0 or
ignore TLS_FALLBACK_SCSV - yet servers that do are still met on the
internet. This server answers any ClientHello with a ServerHello built
from its :class:`Script`, the leaf certificate and ServerHelloDone (or an
SSL 2.0 SERVER-HELLO), then waits for the client to hang up. It never
completes a handshake: certkit's probes, like testssl.sh's, read only the
first flight. Listens on 127.0.0.1, port 0.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from tests.servers.net import accept_in_threads
from tests.servers.zoo import Leaf


@dataclass(frozen=True)
class Script:
    """How the scripted server answers; the defaults are a plain TLS 1.2 server that ignores the SCSV."""

    compression: int = 0  # 1 = DEFLATE, chosen when the client offers it
    secure_renegotiation: bool = True
    sslv2: bool = False
    max_version: int = 0x0303
    suite: int = 0x002F  # RSA_WITH_AES_128_CBC_SHA when offered, else the client's first real suite
    silent: bool = False  # after STARTTLS, read the ClientHello and never answer (a hostile server)


def _read_exact(conn: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise ConnectionError("client left")
        data += chunk
    return data


def _smtp_until_starttls(conn: socket.socket) -> bool:
    reader = conn.makefile("rb")
    conn.sendall(b"220 raw.example.test ESMTP scripted\r\n")
    while True:
        line = reader.readline().strip().upper()
        if not line or line == b"QUIT":
            return False
        if line.startswith(b"EHLO"):
            conn.sendall(b"250-raw.example.test\r\n250 STARTTLS\r\n")
        elif line == b"STARTTLS":
            conn.sendall(b"220 2.0.0 ready\r\n")
            return True
        else:
            conn.sendall(b"502 5.5.2 no\r\n")


def _client_hello(body: bytes) -> tuple[int, list[int], bytes, set[int]]:
    """(version, suites, compression methods, extension types) of a ClientHello body."""
    version = int.from_bytes(body[0:2], "big")
    pos = 35 + body[34]
    n = int.from_bytes(body[pos:pos + 2], "big")
    suites = [int.from_bytes(body[pos + 2 + i:pos + 4 + i], "big") for i in range(0, n, 2)]
    pos += 2 + n
    methods = body[pos + 1:pos + 1 + body[pos]]
    pos += 1 + body[pos]
    kinds: set[int] = set()
    end = pos + 2 + int.from_bytes(body[pos:pos + 2], "big") if len(body) >= pos + 2 else pos
    pos += 2
    while pos + 4 <= end:
        kind, length = struct.unpack("!HH", body[pos:pos + 4])
        kinds.add(kind)
        pos += 4 + length
    return version, suites, methods, kinds


def _message(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def _tls_flight(script: Script, leaf_der: bytes, hello: bytes) -> bytes:
    version, suites, methods, kinds = _client_hello(hello)
    version = min(version, script.max_version)
    real = [s for s in suites if s not in (0x00FF, 0x5600)]
    suite = script.suite if script.suite in suites else real[0]
    compression = script.compression if script.compression in methods else 0
    extensions = b""
    if script.secure_renegotiation and (0xFF01 in kinds or 0x00FF in suites):
        extensions = b"\xff\x01\x00\x01\x00"
    server_hello = struct.pack("!H", version) + os.urandom(32) + b"\x00" + struct.pack("!HB", suite, compression)
    if extensions:
        server_hello += struct.pack("!H", len(extensions)) + extensions
    entry = len(leaf_der).to_bytes(3, "big") + leaf_der
    flight = _message(2, server_hello) + _message(11, len(entry).to_bytes(3, "big") + entry) + _message(14, b"")
    return struct.pack("!BHH", 22, version, len(flight)) + flight


def _sslv2_flight(leaf_der: bytes) -> bytes:
    connection_id = os.urandom(16)
    body = (b"\x04\x00\x01" + struct.pack("!HHHH", 0x0002, len(leaf_der), 3, len(connection_id)) + leaf_der
            + bytes.fromhex("010080") + connection_id)
    return struct.pack("!H", 0x8000 | len(body)) + body


def _serve(conn: socket.socket, script: Script, leaf_der: bytes) -> None:
    conn.settimeout(30)
    if not _smtp_until_starttls(conn):
        return
    first = _read_exact(conn, 2)
    if script.silent:
        pass
    elif first[0] & 0x80:  # SSL 2.0 CLIENT-HELLO
        _read_exact(conn, (first[0] & 0x7F) << 8 | first[1])
        if not script.sslv2:
            return  # what a TLS-only server does with it: hang up
        conn.sendall(_sslv2_flight(leaf_der))
    else:
        header = first + _read_exact(conn, 3)
        record = _read_exact(conn, int.from_bytes(header[3:5], "big"))
        conn.sendall(_tls_flight(script, leaf_der, record[4:]))
    while conn.recv(4096):  # until the client hangs up
        pass


@contextlib.contextmanager
def scripted_tls_server(leaf: Leaf, script: Script) -> Iterator[int]:
    """Serve the scripted first flight behind STARTTLS; yields the port."""
    leaf_der = ssl.PEM_cert_to_DER_cert(leaf.cert_pem.decode())
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def handle(conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError), conn:
            _serve(conn, script, leaf_der)

    thread = accept_in_threads(listener, handle)
    try:
        yield int(listener.getsockname()[1])
    finally:
        with contextlib.suppress(OSError):  # wakes the blocked accept() (close alone does not)
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(timeout=5)
