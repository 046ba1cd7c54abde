"""Hand-built TLS ClientHellos: ask a server whether it accepts suites this OpenSSL cannot offer.

Debian's OpenSSL 3 (and the one Python links) can no longer offer RC4,
3DES, DES or EXPORT suites at all, so a probe through :mod:`ssl` would
report "refused" for a server that happily negotiates RC4. Like testssl.sh,
certkit writes the ClientHello itself on a plain socket and reads only the
server's first answer: a ServerHello naming the chosen suite (accepted) or
an alert / a closed connection (refused). No handshake is completed, so no
cipher has to be implemented here.

Wire format: RFC 5246 7.4.1.2 (ClientHello), 7.4.1.3 (ServerHello), 6.2.1
(records). Only standard-library code; nothing here imports above
:mod:`certkit.check`.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass

# IANA cipher suite values, grouped by why they are unacceptable.
WEAK_SUITES: dict[int, str] = {
    # RC4 (RFC 7465 forbids it)
    0x0004: "RSA_WITH_RC4_128_MD5", 0x0005: "RSA_WITH_RC4_128_SHA",
    0xC011: "ECDHE_RSA_WITH_RC4_128_SHA", 0xC007: "ECDHE_ECDSA_WITH_RC4_128_SHA",
    # 3DES (64-bit block: SWEET32, CVE-2016-2183)
    0x000A: "RSA_WITH_3DES_EDE_CBC_SHA", 0x0016: "DHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0x0013: "DHE_DSS_WITH_3DES_EDE_CBC_SHA", 0xC012: "ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0xC008: "ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA",
    # single DES, IDEA, SEED
    0x0009: "RSA_WITH_DES_CBC_SHA", 0x0015: "DHE_RSA_WITH_DES_CBC_SHA", 0x0012: "DHE_DSS_WITH_DES_CBC_SHA",
    0x0007: "RSA_WITH_IDEA_CBC_SHA", 0x0096: "RSA_WITH_SEED_CBC_SHA",
    # EXPORT (40/56-bit: FREAK, Logjam)
    0x0003: "RSA_EXPORT_WITH_RC4_40_MD5", 0x0006: "RSA_EXPORT_WITH_RC2_CBC_40_MD5",
    0x0008: "RSA_EXPORT_WITH_DES40_CBC_SHA", 0x0014: "DHE_RSA_EXPORT_WITH_DES40_CBC_SHA",
    0x0011: "DHE_DSS_EXPORT_WITH_DES40_CBC_SHA",
    # NULL encryption
    0x0001: "RSA_WITH_NULL_MD5", 0x0002: "RSA_WITH_NULL_SHA", 0x003B: "RSA_WITH_NULL_SHA256",
    0xC010: "ECDHE_RSA_WITH_NULL_SHA", 0xC006: "ECDHE_ECDSA_WITH_NULL_SHA",
    # anonymous (no server authentication)
    0x0018: "DH_anon_WITH_RC4_128_MD5", 0x001B: "DH_anon_WITH_3DES_EDE_CBC_SHA",
    0x0034: "DH_anon_WITH_AES_128_CBC_SHA", 0x003A: "DH_anon_WITH_AES_256_CBC_SHA",
    0x00A6: "DH_anon_WITH_AES_128_GCM_SHA256", 0xC015: "ECDH_anon_WITH_NULL_SHA",
    0xC017: "ECDH_anon_WITH_3DES_EDE_CBC_SHA", 0xC018: "ECDH_anon_WITH_AES_128_CBC_SHA",
    0xC019: "ECDH_anon_WITH_AES_256_CBC_SHA",
}

TLS12 = 0x0303
SSL3 = 0x0300
_HANDSHAKE, _ALERT = 22, 21
_SERVER_HELLO = 2
_MAX_RECORD = 16384 + 2048


@dataclass(frozen=True)
class HelloAnswer:
    """What the server answered a ClientHello with.

    ``suite`` is the chosen suite (accepted), else None with ``refusal``
    saying how it refused (an alert, a closed connection, a timeout).
    """

    suite: int | None
    version: int | None
    refusal: str

    @property
    def accepted(self) -> bool:
        return self.suite is not None

    @property
    def timed_out(self) -> bool:
        return self.suite is None and self.refusal.startswith("no answer")

    @property
    def suite_name(self) -> str:
        if self.suite is None:
            return ""
        return WEAK_SUITES.get(self.suite, f"0x{self.suite:04X}")


def _ext(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body)) + body


def _u16_list(values: list[int]) -> bytes:
    return struct.pack("!H", 2 * len(values)) + b"".join(struct.pack("!H", v) for v in values)


def client_hello(suites: list[int], server_name: str | None, version: int = TLS12) -> bytes:
    """One TLS record holding a ClientHello that offers exactly ``suites``.

    Extensions (SNI, groups, point formats, signature algorithms, secure
    renegotiation) are those any TLS 1.2 client sends, so servers that
    insist on them still answer; SSLv3 hellos carry none.
    """
    body = struct.pack("!H", version) + os.urandom(32) + b"\x00"  # version, random, empty session id
    body += _u16_list(suites)
    body += b"\x01\x00"  # compression: null only
    if version > SSL3:
        extensions = b""
        if server_name:
            name = server_name.encode("ascii", "replace")
            entry = b"\x00" + struct.pack("!H", len(name)) + name
            extensions += _ext(0x0000, struct.pack("!H", len(entry)) + entry)
        groups = [0x001D, 0x0017, 0x0018, 0x0019, 0x0100, 0x0101]  # x25519, P-256/384/521, ffdhe2048/3072
        extensions += _ext(0x000A, _u16_list(groups))
        extensions += _ext(0x000B, b"\x01\x00")
        sigalgs = [0x0401, 0x0501, 0x0601, 0x0403, 0x0503, 0x0804, 0x0805, 0x0201, 0x0203, 0x0402]
        extensions += _ext(0x000D, _u16_list(sigalgs))
        extensions += _ext(0xFF01, b"\x00")
        body += struct.pack("!H", len(extensions)) + extensions
    handshake = bytes([1]) + len(body).to_bytes(3, "big") + body
    # Record version 0x0301 is what real clients put on the first record (RFC 5246 appendix E.1).
    return struct.pack("!BHH", _HANDSHAKE, min(version, 0x0301), len(handshake)) + handshake


def _read_exact(sock: socket.socket, count: int, deadline: float) -> bytes | None:
    data = bytearray()
    while len(data) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def read_server_answer(sock: socket.socket, timeout: float) -> HelloAnswer:
    """Read records until the ServerHello (or an alert, or the end) and say what it means."""
    deadline = time.monotonic() + timeout
    handshake = bytearray()
    try:
        while True:
            header = _read_exact(sock, 5, deadline)
            if header is None:
                return HelloAnswer(None, None, "the server closed the connection")
            kind, _version, length = struct.unpack("!BHH", header)
            if length > _MAX_RECORD:
                return HelloAnswer(None, None, "the server answered something that is not TLS")
            payload = _read_exact(sock, length, deadline)
            if payload is None:
                return HelloAnswer(None, None, "the server closed the connection")
            if kind == _ALERT:
                description = payload[1] if len(payload) > 1 else -1
                return HelloAnswer(None, None, f"the server answered with TLS alert {description}")
            if kind != _HANDSHAKE:
                return HelloAnswer(None, None, f"the server answered TLS record type {kind}, not a ServerHello")
            handshake += payload
            if len(handshake) < 4:
                continue
            if handshake[0] != _SERVER_HELLO:
                return HelloAnswer(None, None, f"the server answered handshake type {handshake[0]}, not a ServerHello")
            need = 4 + int.from_bytes(handshake[1:4], "big")
            if len(handshake) < min(need, 4 + 2 + 32 + 1 + 32 + 2):
                continue
            version = int.from_bytes(handshake[4:6], "big")
            sid_len = handshake[38]
            offset = 39 + sid_len
            if len(handshake) < offset + 2:
                continue
            return HelloAnswer(int.from_bytes(handshake[offset:offset + 2], "big"), version, "")
    except TimeoutError:
        return HelloAnswer(None, None, f"no answer to the ClientHello within {timeout:g} s")
    except OSError as exc:
        return HelloAnswer(None, None, f"the connection failed ({exc.strerror or exc})")


def offer(sock: socket.socket, suites: list[int], server_name: str | None, timeout: float,
          version: int = TLS12) -> HelloAnswer:
    """Send a ClientHello offering ``suites`` on a connected plain socket and read the answer."""
    try:
        sock.settimeout(timeout)
        sock.sendall(client_hello(suites, server_name, version))
    except OSError as exc:
        return HelloAnswer(None, None, f"the connection failed ({exc.strerror or exc})")
    return read_server_answer(sock, timeout)
