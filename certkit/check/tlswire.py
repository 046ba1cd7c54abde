"""The wire side of the protocol probes: hand-built ClientHellos and the server's first flight, read raw.

:func:`build_hello`, :func:`build_tls13_hello` and :func:`build_sslv2_hello`
write the ClientHellos :mod:`certkit.check.tlsfacts` sends;
:func:`read_flight` and :func:`read_sslv2_answer` read the answer up to
ServerHelloDone (or an alert, or the end) into a :class:`Flight`, and
:func:`exchange` does one probe connection (SMTP up to STARTTLS, then the
raw hello). The version, suite, group and alert numbers live here too.
Wire formats: RFC 5246 7.4, RFC 6066 8 (status_request), RFC 5746,
RFC 4492 5.4 (ServerKeyExchange), RFC 6101 (SSL 3.0), SSL 2.0 draft 2.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from certkit.check import hello, probes
from certkit.check.session import SessionError
from certkit.check.target import Target

SSL2, SSL3, TLS10, TLS11, TLS12, TLS13 = 0x0002, 0x0300, 0x0301, 0x0302, 0x0303, 0x0304
VERSION_NAMES = {SSL2: "SSL 2.0", SSL3: "SSL 3.0", TLS10: "TLS 1.0", TLS11: "TLS 1.1", TLS12: "TLS 1.2",
                 TLS13: "TLS 1.3"}
FALLBACK_SCSV = 0x5600
DOWNGRADE_FROM_TLS13 = b"DOWNGRD\x01"  # last 8 bytes of a TLS 1.3 server's TLS 1.2 ServerHello.random

ECDHE_SUITES = [0xC02B, 0xC02C, 0xC02F, 0xC030, 0xCCA8, 0xCCA9, 0xC023, 0xC024, 0xC027, 0xC028,
                0xC009, 0xC00A, 0xC013, 0xC014, 0xC012, 0xC011, 0xC008, 0xC007]
DHE_SUITES = [0x009E, 0x009F, 0xCCAA, 0x00A2, 0x00A3, 0x0067, 0x006B, 0x0033, 0x0039, 0x0032, 0x0038,
              0x0016, 0x0013]
RSA_SUITES = [0x009C, 0x009D, 0x003C, 0x003D, 0x002F, 0x0035, 0x000A, 0x0005, 0x0004]
BROAD_SUITES = ECDHE_SUITES + DHE_SUITES + RSA_SUITES
# IANA names (without TLS_) of the broad suites an SSL 3.0 server may pick; hello.WEAK_SUITES has the weak ones.
SUITE_NAMES = {
    0xC009: "ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 0xC00A: "ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC013: "ECDHE_RSA_WITH_AES_128_CBC_SHA", 0xC014: "ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0x0033: "DHE_RSA_WITH_AES_128_CBC_SHA", 0x0039: "DHE_RSA_WITH_AES_256_CBC_SHA",
    0x0032: "DHE_DSS_WITH_AES_128_CBC_SHA", 0x0038: "DHE_DSS_WITH_AES_256_CBC_SHA",
    0x002F: "RSA_WITH_AES_128_CBC_SHA", 0x0035: "RSA_WITH_AES_256_CBC_SHA",
}

# Named groups (RFC 8422 5.1.1, RFC 7027, RFC 8446): name and size in bits.
CURVES: dict[int, tuple[str, int]] = {
    0x000F: ("secp160k1", 160), 0x0010: ("secp160r1", 160), 0x0011: ("secp160r2", 160),
    0x0012: ("secp192k1", 192), 0x0013: ("secp192r1", 192), 0x0014: ("secp224k1", 224),
    0x0015: ("secp224r1", 224), 0x0016: ("secp256k1", 256), 0x0017: ("P-256", 256), 0x0018: ("P-384", 384),
    0x0019: ("P-521", 521), 0x001A: ("brainpoolP256r1", 256), 0x001B: ("brainpoolP384r1", 384),
    0x001C: ("brainpoolP512r1", 512), 0x001D: ("x25519", 256), 0x001E: ("x448", 448),
}
MODERN_GROUPS = [0x001D, 0x0017, 0x0018, 0x0019, 0x001E]
SMALL_GROUPS = [0x000F, 0x0010, 0x0011, 0x0012, 0x0013, 0x0014, 0x0015]
ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 40: "handshake_failure",
          47: "illegal_parameter", 50: "decode_error", 70: "protocol_version", 71: "insufficient_security",
          80: "internal_error", 86: "inappropriate_fallback", 112: "unrecognized_name",
          116: "certificate_required"}
PROTOCOL_VERSION_ALERT, INAPPROPRIATE_FALLBACK_ALERT = 70, 86
_HANDSHAKE, _ALERT = 22, 21
_MAX_RECORD = 16384 + 2048
_MAX_FLIGHT = 256 * 1024  # a first flight with a long chain is ~10 KiB; more is not a TLS server



@dataclass
class Flight:
    """What the server sent in answer to one ClientHello.

    ``suite`` is set once a ServerHello was read; otherwise ``refusal`` says
    how the server refused (``alert`` holds a TLS alert number), and
    ``no_answer`` marks a timeout or a failure before TLS (no verdict).
    """

    refusal: str = ""
    alert: int | None = None
    no_answer: bool = False
    version: int | None = None
    random: bytes = b""
    suite: int | None = None
    compression: int = 0
    extensions: dict[int, bytes] = field(default_factory=dict)
    ocsp: bytes | None = None
    key_exchange: bytes | None = None

    @property
    def accepted(self) -> bool:
        return self.suite is not None


def version_name(version: int | None) -> str:
    return VERSION_NAMES.get(version or 0, f"version 0x{version or 0:04X}")


def _sni(server_name: str | None) -> bytes:
    if not server_name:
        return b""
    name = server_name.encode("ascii", "replace")
    entry = b"\x00" + struct.pack("!H", len(name)) + name
    return hello._ext(0x0000, struct.pack("!H", len(entry)) + entry)


def build_hello(version: int, suites: list[int], server_name: str | None, *, groups: list[int] | None = None,
                deflate: bool = False, status_request: bool = False) -> bytes:
    """One record holding a ClientHello (TLS 1.2 extensions unless ``version`` is SSL 3.0)."""
    body = struct.pack("!H", version) + os.urandom(32) + b"\x00" + hello._u16_list(suites)
    body += b"\x02\x01\x00" if deflate else b"\x01\x00"  # compression methods: DEFLATE, null
    if version > SSL3:
        extensions = _sni(server_name) + hello._ext(0x000A, hello._u16_list(groups or MODERN_GROUPS))
        extensions += hello._ext(0x000B, b"\x01\x00")
        sigalgs = [0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0201, 0x0203, 0x0402]
        extensions += hello._ext(0x000D, hello._u16_list(sigalgs))
        if status_request:  # OCSP, no responder ids, no request extensions (RFC 6066 8)
            extensions += hello._ext(0x0005, b"\x01\x00\x00\x00\x00")
        extensions += hello._ext(0xFF01, b"\x00")
        body += struct.pack("!H", len(extensions)) + extensions
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return struct.pack("!BHH", _HANDSHAKE, min(version, TLS10), len(handshake)) + handshake


def build_tls13_hello(server_name: str | None) -> bytes:
    """A TLS 1.3-only ClientHello (RFC 8446 4.1.2): any 32 bytes are a valid X25519 key share."""
    body = struct.pack("!H", TLS12) + os.urandom(32) + b"\x20" + os.urandom(32)
    body += hello._u16_list([0x1301, 0x1302, 0x1303]) + b"\x01\x00"
    share = struct.pack("!HH", 0x001D, 32) + os.urandom(32)
    sigalgs = [0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0807]
    extensions = (_sni(server_name) + hello._ext(0x000A, hello._u16_list(MODERN_GROUPS))
                  + hello._ext(0x000D, hello._u16_list(sigalgs)) + hello._ext(0x002B, b"\x02\x03\x04")
                  + hello._ext(0x0033, struct.pack("!H", len(share)) + share))
    body += struct.pack("!H", len(extensions)) + extensions
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return struct.pack("!BHH", _HANDSHAKE, TLS10, len(handshake)) + handshake


def build_sslv2_hello() -> bytes:
    """An SSL 2.0 CLIENT-HELLO offering the seven SSL 2.0 cipher kinds (as testssl.sh does)."""
    kinds = bytes.fromhex("010080020080030080040080050080060040" "0700c0")
    challenge = os.urandom(16)
    msg = b"\x01" + struct.pack("!HHHH", SSL2, len(kinds), 0, len(challenge)) + kinds + challenge
    return struct.pack("!H", 0x8000 | len(msg)) + msg


def _parse_server_hello(flight: Flight, body: bytes) -> bool:
    """Fill the ServerHello fields; True when it chose TLS 1.3 (the rest of the flight is encrypted)."""
    flight.version = int.from_bytes(body[0:2], "big")
    flight.random = body[2:34]
    pos = 35 + body[34]
    flight.suite = int.from_bytes(body[pos:pos + 2], "big")
    flight.compression = body[pos + 2]
    pos += 3
    if len(body) >= pos + 2:
        end = min(len(body), pos + 2 + int.from_bytes(body[pos:pos + 2], "big"))
        pos += 2
        while pos + 4 <= end:
            kind, length = struct.unpack("!HH", body[pos:pos + 4])
            flight.extensions[kind] = body[pos + 4:pos + 4 + length]
            pos += 4 + length
    if flight.extensions.get(0x002B, b"") == TLS13.to_bytes(2, "big"):
        flight.version = TLS13  # RFC 8446 4.2.1: the real version is in supported_versions
        return True
    return False


def _take_message(flight: Flight, kind: int, body: bytes) -> bool:
    """Record one handshake message of the first flight; True when the flight is complete."""
    if kind == 2:
        return _parse_server_hello(flight, body)
    if not flight.accepted:
        flight.refusal = f"the server answered handshake type {kind}, not a ServerHello"
        return True
    # Certificate (11) is skipped: chain-order and key-usage read the main handshake's chain.
    if kind == 22 and body[:1] == b"\x01":  # CertificateStatus, type ocsp
        flight.ocsp = body[4:4 + int.from_bytes(body[1:4], "big")]
    elif kind == 12:
        flight.key_exchange = body
    return kind == 14  # ServerHelloDone


def _finish(flight: Flight, why: str, alert: int | None = None) -> Flight:
    if not flight.accepted:  # after a ServerHello the verdict stands, whatever follows
        flight.refusal, flight.alert = why, alert
    return flight


def read_flight(sock: socket.socket, timeout: float) -> Flight:
    """Read the server's first flight (to ServerHelloDone), an alert or the end, within ``timeout``."""
    deadline = time.monotonic() + timeout
    flight, pending, total = Flight(), bytearray(), 0
    try:
        while total <= _MAX_FLIGHT:
            header = hello._read_exact(sock, 5, deadline)
            if header is None:
                return _finish(flight, "the server closed the connection")
            kind, _, length = struct.unpack("!BHH", header)
            payload = hello._read_exact(sock, length, deadline) if length <= _MAX_RECORD else b""
            if not payload:
                return _finish(flight, "the server answered something that is not TLS")
            total += length
            if kind == _ALERT:
                alert = payload[1] if len(payload) > 1 else -1
                return _finish(flight, f"TLS alert {ALERTS.get(alert, alert)}", alert)
            if kind != _HANDSHAKE:
                return _finish(flight, f"the server answered TLS record type {kind}, not a handshake")
            pending += payload
            while len(pending) >= 4 and len(pending) >= 4 + int.from_bytes(pending[1:4], "big"):
                size = 4 + int.from_bytes(pending[1:4], "big")
                message_kind, message = pending[0], bytes(pending[4:size])
                del pending[:size]
                if _take_message(flight, message_kind, message):
                    return flight
        return _finish(flight, "the server's first flight is implausibly long")
    except TimeoutError:
        flight = _finish(flight, f"no answer within {timeout:g} s")
        flight.no_answer = not flight.accepted
        return flight
    except (IndexError, struct.error):
        return _finish(flight, "the server's handshake message is malformed")
    except OSError as exc:
        return _finish(flight, f"the connection failed ({exc.strerror or exc})")


def read_sslv2_answer(sock: socket.socket, timeout: float) -> Flight:
    """An SSL 2.0 SERVER-HELLO naming at least one cipher kind means SSL 2.0 is accepted."""
    deadline = time.monotonic() + timeout
    try:
        header = hello._read_exact(sock, 2, deadline)
        if header is None:
            return Flight(refusal="the server closed the connection")
        if not header[0] & 0x80:  # a TLS record (an alert, usually): not SSL 2.0
            return Flight(refusal="the server answered in TLS, not SSL 2.0")
        body = hello._read_exact(sock, ((header[0] & 0x7F) << 8) | header[1], deadline)
        if not body or body[0] != 4:
            return Flight(refusal="the server answered no SSL 2.0 SERVER-HELLO")
        kinds = int.from_bytes(body[7:9], "big") // 3
        if kinds == 0:
            return Flight(refusal="SSL 2.0 SERVER-HELLO without a cipher kind")
        return Flight(version=SSL2, suite=int.from_bytes(body[11 + int.from_bytes(body[5:7], "big"):][:3], "big"))
    except TimeoutError:
        return Flight(refusal=f"no answer within {timeout:g} s", no_answer=True)
    except OSError as exc:
        return Flight(refusal=f"the connection failed ({exc.strerror or exc})")


def exchange(target: Target, timeout: float, helo: str, payload: bytes,
              read: Callable[[socket.socket, float], Flight]) -> Flight:
    """One probe connection: SMTP up to STARTTLS, send ``payload``, read the answer."""
    try:
        session = probes.reach_tls(target, timeout, helo)
    except SessionError as exc:
        return Flight(refusal=exc.message, no_answer=True)
    if session is None or session.sock is None:
        return Flight(refusal="STARTTLS not available on the probe connection", no_answer=True)
    try:
        session.sock.settimeout(timeout)
        session.sock.sendall(payload)
        return read(session.sock, timeout)
    except OSError as exc:
        return Flight(refusal=f"the connection failed ({exc.strerror or exc})", no_answer=True)
    finally:
        session.close()


def key_exchange_kind(suite: int | None) -> str:
    if suite in ECDHE_SUITES:
        return "ECDHE"
    if suite in DHE_SUITES:
        return "DHE"
    return "RSA" if suite in RSA_SUITES else ""


def dh_prime_bits(key_exchange: bytes) -> int:
    """Size of the DH prime p in a DHE ServerKeyExchange (RFC 5246 7.4.3: p, g, Ys as 16-bit-length vectors)."""
    length = int.from_bytes(key_exchange[0:2], "big")
    return int.from_bytes(key_exchange[2:2 + length], "big").bit_length()


def ecdhe_curve(key_exchange: bytes) -> int | None:
    """The named curve of an ECDHE ServerKeyExchange (RFC 8422 5.4: curve_type 3 = named_curve)."""
    if len(key_exchange) >= 3 and key_exchange[0] == 3:
        return int.from_bytes(key_exchange[1:3], "big")
    return None



__all__ = [
    "BROAD_SUITES", "CURVES", "DHE_SUITES", "ECDHE_SUITES", "Flight", "build_hello", "build_sslv2_hello",
    "build_tls13_hello", "dh_prime_bits", "ecdhe_curve", "exchange", "key_exchange_kind", "read_flight",
    "read_sslv2_answer", "version_name",
]
