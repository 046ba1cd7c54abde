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
wait as long), so a silent server costs one timeout, not five. This
module owns the probe sequence and the verdicts; the hellos and the reading
of the answers are :mod:`certkit.check.tlswire`.
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Callable

from certkit.check import hello
from certkit.check.report import FAIL, PASS, SKIP, WARN, CheckResult
from certkit.check.target import Target
from certkit.check.tlswire import (
    BROAD_SUITES,
    CURVES,
    DHE_SUITES,
    DOWNGRADE_FROM_TLS13,
    ECDHE_SUITES,
    FALLBACK_SCSV,
    INAPPROPRIATE_FALLBACK_ALERT,
    PROTOCOL_VERSION_ALERT,
    SMALL_GROUPS,
    SSL3,
    SUITE_NAMES,
    TLS12,
    TLS13,
    Flight,
    build_hello,
    build_sslv2_hello,
    build_tls13_hello,
    dh_prime_bits,
    ecdhe_curve,
    exchange,
    key_exchange_kind,
    read_flight,
    read_sslv2_answer,
    version_name,
)

PROBE_IDS = ["sslv2-refused", "sslv3-refused", "fallback-scsv", "dh-params", "renegotiation", "tls-compression",
             "ocsp-stapling"]

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
        flight = exchange(self.target, self.timeout, self.helo, payload, read)
        if flight.no_answer:
            self._stalled = f"an earlier probe got no answer ({flight.refusal})"
        return flight

    def run(self) -> list[CheckResult]:
        """Every probe, in connection order; one CheckResult per id in PROBE_IDS."""
        facts = self._send(build_hello(TLS12, BROAD_SUITES, self.sni, deflate=True, status_request=True))
        tls13_only = facts.alert == PROTOCOL_VERSION_ALERT
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
        if answer.alert == INAPPROPRIATE_FALLBACK_ALERT:
            return CheckResult(check_id, PASS, f"{asked} was refused with inappropriate_fallback (RFC 7507); the "
                               f"server's best is {version_name(best)}")
        if answer.no_answer:
            return CheckResult(check_id, WARN, f"could not probe: {asked} got {answer.refusal}")
        # Refused without the alert (asyncio servers just close): did the SCSV cause it, or the version?
        if answer.alert == PROTOCOL_VERSION_ALERT:
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
        kex, ske = key_exchange_kind(flight.suite), flight.key_exchange or b""
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
