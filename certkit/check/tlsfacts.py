"""Protocol facts from hand-built ClientHellos: what testssl.sh and internet.nl check beyond cipher suites.

Like :mod:`certkit.check.hello`, every probe writes its ClientHello on a
plain socket after STARTTLS and reads only the server's first flight
(ServerHello ... ServerHelloDone); no handshake is completed. Five
connections, one after the other on one thread (servers that limit
connections per IP see one at a time):

1. a broad TLS 1.2 hello offering DEFLATE, status_request and
   renegotiation_info: compression, secure renegotiation (RFC 5746), a
   stapled OCSP response, the ECDHE curve or DHE group, and (from the
   ServerHello random, RFC 8446 4.1.3) whether the server also speaks TLS 1.3;
2. DHE suites plus ECDHE with only sub-256-bit curves: the DH group that
   clients without RFC 7919 get, and whether a small curve is accepted;
3. one version below the server's best, carrying TLS_FALLBACK_SCSV (RFC 7507);
4. an SSL 3.0 hello; 5. an SSL 2.0 CLIENT-HELLO.

A probe that gets no answer within the timeout stops the rest (each would
wait as long), so a silent server costs one timeout, not five.
Wire formats: RFC 5246 7.4, RFC 6066 8 (status_request), RFC 5746,
RFC 4492 5.4 (ServerKeyExchange), RFC 6101 (SSL 3.0), SSL 2.0 draft 2.
"""

from __future__ import annotations

import functools
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from certkit.check import hello, probes
from certkit.check.report import FAIL, PASS, SKIP, WARN, CheckResult
from certkit.check.session import SessionError
from certkit.check.target import Target

PROBE_IDS = ["sslv2-refused", "sslv3-refused", "fallback-scsv", "dh-params", "renegotiation", "tls-compression",
             "ocsp-stapling"]

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
_PROTOCOL_VERSION, _INAPPROPRIATE_FALLBACK = 70, 86
_HANDSHAKE, _ALERT = 22, 21
_MAX_RECORD = 16384 + 2048
_MAX_FLIGHT = 256 * 1024  # a first flight with a long chain is ~10 KiB; more is not a TLS server

FIX_SSL = ("turn SSL 2.0/3.0 off: Postfix smtpd_tls_protocols = >=TLSv1.2; Windows: disable them under "
           "SCHANNEL\\Protocols (IISCrypto); current OpenSSL cannot speak them at all - upgrade the server")
FIX_FALLBACK = ("keep the TLS library current (OpenSSL refuses TLS_FALLBACK_SCSV downgrades since 1.0.1j); with "
                "only TLS 1.2+ enabled a forced downgrade cannot go below TLS 1.2")
FIX_DH = ("use DH groups of 2048 bits or more, or drop DHE suites: Postfix >= 3.7 on OpenSSL 3 - leave "
          "smtpd_tls_dh1024_param_file empty (OpenSSL picks a 2048-bit group), older Postfix - a file from "
          "`openssl dhparam 2048`; Windows: SCHANNEL\\KeyExchangeAlgorithms\\Diffie-Hellman ServerMinKeyBitLength = "
          "2048; aiosmtpd: ctx.load_dh_params(dh2048.pem); curves: Postfix tls_eecdh_auto_curves = X25519 "
          "prime256v1 secp384r1")
FIX_RENEGOTIATION = ("upgrade the TLS library: every release since 2010 supports RFC 5746 secure renegotiation "
                     "(OpenSSL >= 0.9.8m); see CVE-2009-3555")
FIX_COMPRESSION = ("turn TLS compression off (CRIME): Postfix tls_ssl_options = NO_COMPRESSION; OpenSSL "
                   "SSL_OP_NO_COMPRESSION (the default since 1.1.0)")


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


def _exchange(target: Target, timeout: float, helo: str, payload: bytes,
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


def _kex(suite: int | None) -> str:
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


class CoverageProbe:
    """The issue 11 protocol probes for one endpoint, run once and shared by the checklist's jobs.

    Each job returns the result of one check id; the first job to run does
    every connection (sequentially), the others wait for it.
    """

    def __init__(self, target: Target, timeout: float, helo: str) -> None:
        self.target, self.timeout, self.helo = target, timeout, helo
        self.sni = None if target.host_is_ip else target.host
        self._lock = threading.Lock()
        self._results: dict[str, CheckResult] | None = None
        self._stalled = ""

    def jobs(self) -> list[Callable[[], CheckResult]]:
        return [functools.partial(self.result, check_id) for check_id in PROBE_IDS]

    def result(self, check_id: str) -> CheckResult:
        with self._lock:
            if self._results is None:
                self._results = {r.id: r for r in self.run()}
            return self._results[check_id]

    def _send(self, payload: bytes, read: Callable[[socket.socket, float], Flight] = read_flight) -> Flight:
        if self._stalled:  # an earlier probe waited a whole timeout: this one would too
            return Flight(refusal=f"not probed: {self._stalled}", no_answer=True)
        flight = _exchange(self.target, self.timeout, self.helo, payload, read)
        if flight.no_answer:
            self._stalled = f"an earlier probe got no answer ({flight.refusal})"
        return flight

    def run(self) -> list[CheckResult]:
        """Every probe, in connection order; one CheckResult per id in PROBE_IDS."""
        facts = self._send(build_hello(TLS12, BROAD_SUITES, self.sni, deflate=True, status_request=True))
        tls13_only = facts.alert == _PROTOCOL_VERSION
        if not (facts.accepted or facts.no_answer or tls13_only):  # refused without saying why (asyncio closes)
            tls13_only = self._send(build_tls13_hello(self.sni)).version == TLS13
        dhe = Flight(refusal="not probed (TLS 1.3 only)")
        if not tls13_only and not facts.no_answer:
            dhe = self._send(build_hello(TLS12, DHE_SUITES + ECDHE_SUITES, self.sni, groups=SMALL_GROUPS))
        results = [
            self._fallback(facts, tls13_only),
            dh_params_result(facts, dhe, tls13_only),
            renegotiation_result(facts, tls13_only),
            compression_result(facts, tls13_only),
            ocsp_result(facts, tls13_only),
        ]
        sslv3 = self._send(build_hello(SSL3, [s for s in BROAD_SUITES if s not in (0xCCA8, 0xCCA9, 0xCCAA)], None))
        results.append(sslv3_result(sslv3))
        results.append(sslv2_result(self._send(build_sslv2_hello(), read_sslv2_answer)))
        return results

    def _fallback(self, facts: Flight, tls13_only: bool) -> CheckResult:
        check_id = "fallback-scsv"
        if tls13_only:
            return CheckResult(check_id, SKIP, "not run: the server speaks only TLS 1.3 (nothing to fall back to)")
        if not facts.accepted:
            return CheckResult(check_id, WARN, f"could not probe: a TLS 1.2 hello got {facts.refusal}")
        best = TLS13 if facts.random.endswith(DOWNGRADE_FROM_TLS13) else facts.version or TLS12
        lower = best - 1
        if lower < SSL3:
            return CheckResult(check_id, SKIP, f"not run: the server's best is {version_name(best)}")
        answer = self._send(build_hello(lower, [*BROAD_SUITES, FALLBACK_SCSV], self.sni))
        asked = f"a {version_name(lower)} hello carrying TLS_FALLBACK_SCSV"
        if answer.accepted:
            return CheckResult(check_id, WARN, f"the server accepted {asked} although it speaks {version_name(best)}: "
                               "a forced downgrade goes unnoticed (RFC 7507)", FIX_FALLBACK)
        if answer.alert == _INAPPROPRIATE_FALLBACK:
            return CheckResult(check_id, PASS, f"{asked} was refused with inappropriate_fallback (RFC 7507); the "
                               f"server's best is {version_name(best)}")
        if answer.no_answer:
            return CheckResult(check_id, WARN, f"could not probe: {asked} got {answer.refusal}")
        # Refused without the alert (asyncio servers just close): did the SCSV cause it, or the version?
        if answer.alert == _PROTOCOL_VERSION:
            lower_ok = False
        elif lower == facts.version:
            lower_ok = True
        else:
            lower_ok = self._send(build_hello(lower, BROAD_SUITES, self.sni)).accepted
        if not lower_ok:
            return CheckResult(check_id, SKIP, f"not run: the server speaks only {version_name(best)} and up "
                               f"({version_name(lower)} refused with or without the SCSV)")
        return CheckResult(check_id, PASS, f"{asked} was refused ({answer.refusal}) while a {version_name(lower)} "
                           f"hello without it is accepted; the server's best is {version_name(best)}")


def _no_verdict(check_id: str, flight: Flight) -> CheckResult:
    return CheckResult(check_id, WARN, f"could not probe: a TLS 1.2 hello got {flight.refusal}")


def dh_params_result(facts: Flight, dhe: Flight, tls13_only: bool) -> CheckResult:
    """FAIL for a DH group under 2048 bits or a curve under 256 bits; otherwise list what was negotiated."""
    check_id = "dh-params"
    if tls13_only:
        return CheckResult(check_id, PASS, "TLS 1.3 only: every TLS 1.3 group is >= 2048-bit DH or >= 256-bit EC")
    if not facts.accepted and facts.no_answer:
        return _no_verdict(check_id, facts)
    curves: list[str] = []
    problems: list[str] = []
    dh_bits: list[int] = []
    for flight in (facts, dhe):
        kex, ske = _kex(flight.suite), flight.key_exchange or b""
        if kex == "DHE" and ske:
            dh_bits.append(dh_prime_bits(ske))
        elif kex == "ECDHE" and (curve := ecdhe_curve(ske)) is not None:
            name, bits = CURVES.get(curve, (f"curve 0x{curve:04X}", 0))
            curves.append(name)
            if bits < 256:
                problems.append(f"ECDHE with {name} ({bits or 'unknown'} bits) accepted: curves under 256 bits "
                                "are breakable")
    if dh_bits and min(dh_bits) < 2048:
        problems.insert(0, f"DHE with a {min(dh_bits)}-bit group (under 2048 bits: Logjam class, RFC 7919)")
    seen = [f"ECDHE {', '.join(dict.fromkeys(curves))}" if curves else "no ECDHE",
            f"DHE {max(dh_bits)} bits" if dh_bits else "no DHE suite accepted"]
    if problems:
        return CheckResult(check_id, FAIL, "; ".join(problems), FIX_DH)
    if dhe.no_answer:
        return CheckResult(check_id, WARN, f"{seen[0]}; DHE could not be probed ({dhe.refusal})")
    return CheckResult(check_id, PASS, f"{seen[0]}; {seen[1]}; curves under 256 bits refused")


def renegotiation_result(facts: Flight, tls13_only: bool) -> CheckResult:
    """Secure renegotiation (RFC 5746): the ServerHello must answer renegotiation_info."""
    check_id = "renegotiation"
    if tls13_only:
        return CheckResult(check_id, PASS, "TLS 1.3 only: TLS 1.3 has no renegotiation")
    if not facts.accepted:
        return _no_verdict(check_id, facts)
    if 0xFF01 in facts.extensions:
        return CheckResult(check_id, PASS, "secure renegotiation (RFC 5746 renegotiation_info in the ServerHello); "
                           "client-initiated renegotiation not tested")
    return CheckResult(check_id, FAIL, f"no renegotiation_info in the {version_name(facts.version)} ServerHello: no "
                       "secure renegotiation (RFC 5746, CVE-2009-3555 session splicing)", FIX_RENEGOTIATION)


def compression_result(facts: Flight, tls13_only: bool) -> CheckResult:
    check_id = "tls-compression"
    if tls13_only:
        return CheckResult(check_id, PASS, "TLS 1.3 only: TLS 1.3 has no compression")
    if not facts.accepted:
        return _no_verdict(check_id, facts)
    if facts.compression != 0:
        method = "DEFLATE" if facts.compression == 1 else f"method {facts.compression}"
        return CheckResult(check_id, FAIL, f"the server chose TLS compression ({method}): CRIME, CVE-2012-4929",
                           FIX_COMPRESSION)
    return CheckResult(check_id, PASS, "no TLS compression (DEFLATE offered, null chosen)")


def ocsp_result(facts: Flight, tls13_only: bool) -> CheckResult:
    """Informational: a stapled OCSP response is a PASS, its absence a note that never fails."""
    check_id = "ocsp-stapling"
    if tls13_only:
        return CheckResult(check_id, PASS, "note: not probed (TLS 1.3 only: the stapled status travels encrypted)")
    if not facts.accepted:
        return _no_verdict(check_id, facts)
    if facts.ocsp:
        return CheckResult(check_id, PASS, f"OCSP response stapled ({_ocsp_status(facts.ocsp)}, "
                           f"{len(facts.ocsp)} bytes)")
    return CheckResult(check_id, PASS, "note: no OCSP response stapled (informational: clients ask the CA's "
                       "responder or do without)")


def _ocsp_status(response: bytes) -> str:
    """OCSPResponse.responseStatus (RFC 6960 4.2.1), the first element of the outer SEQUENCE."""
    names = {0: "successful", 1: "malformedRequest", 2: "internalError", 3: "tryLater", 5: "sigRequired",
             6: "unauthorized"}
    from certkit.check.der import _children, _tlv

    try:
        _, start, end = _tlv(response, 0, len(response))
        tag, s, e = _children(response, start, end)[0]
    except (ValueError, IndexError):
        return "unreadable"
    if tag != 0x0A or e - s != 1:
        return "unreadable"
    return names.get(response[s], f"status {response[s]}")


def sslv3_result(answer: Flight) -> CheckResult:
    check_id = "sslv3-refused"
    if answer.accepted and answer.version == SSL3:
        suite = answer.suite or 0
        name = SUITE_NAMES.get(suite) or hello.WEAK_SUITES.get(suite) or f"suite 0x{suite:04X}"
        return CheckResult(check_id, FAIL, f"the server accepted SSL 3.0 ({name}): POODLE, RFC 7568 forbids it",
                           FIX_SSL)
    if answer.no_answer:
        return CheckResult(check_id, WARN, f"could not probe SSL 3.0: {answer.refusal}")
    if answer.accepted:
        return CheckResult(check_id, PASS, f"SSL 3.0 not negotiated (answered with {version_name(answer.version)})")
    return CheckResult(check_id, PASS, f"SSL 3.0 refused ({answer.refusal})")


def sslv2_result(answer: Flight) -> CheckResult:
    check_id = "sslv2-refused"
    if answer.accepted:
        return CheckResult(check_id, FAIL, "the server accepted an SSL 2.0 CLIENT-HELLO: DROWN, RFC 6176 forbids "
                           "SSL 2.0", FIX_SSL)
    if answer.no_answer:
        return CheckResult(check_id, WARN, f"could not probe SSL 2.0: {answer.refusal}")
    return CheckResult(check_id, PASS, f"SSL 2.0 refused ({answer.refusal})")
