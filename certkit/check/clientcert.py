"""`client-cert-required`: does the server ask for a client certificate?

Python's ssl module does not say whether the server sent a
CertificateRequest, so the evidence is gathered two ways:

- TLS 1.3: the server's alert 116 certificate_required (RFC 8446 6.2),
  which arrives on the first read after the handshake;
- TLS 1.2: the CertificateRequest itself (RFC 5246 7.4.4) travels in clear
  between the server's Certificate and ServerHelloDone, so a hand-built
  ClientHello (certkit.check.hello) on a fresh connection shows it without
  completing a handshake or holding a certificate. It runs only when the
  main session already points that way (a refused handshake, an AUTH
  refused after TLS) or when ``--client-cert`` was given.
"""

from __future__ import annotations

import socket
import struct
import time

from certkit.check import hello, probes
from certkit.check.report import FAIL, PASS, CheckResult
from certkit.check.session import SessionError
from certkit.check.target import Target

# Suites every TLS 1.2 server shares with some client: ECDHE and RSA key exchange, AES-GCM/CBC, ChaCha20.
COMMON_SUITES = [0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0x009E, 0x009F, 0xC009, 0xC013, 0xC00A,
                 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
_HANDSHAKE = 22
FIX_CLIENT_CERT = ("if unintended, stop requiring client certificates (Postfix smtpd_tls_req_ccert = no; Dovecot "
                   "ssl_verify_client_cert = no, auth_ssl_require_client_cert = no; aiosmtpd: ctx.verify_mode = "
                   "ssl.CERT_NONE); if intended, check with --client-cert F --client-key F")
_CERTIFICATE_REQUEST, _SERVER_HELLO_DONE = 13, 14
_MAX_FLIGHT = 256 * 1024  # a long chain fits; a server streaming garbage does not


def read_first_flight(sock: socket.socket, timeout: float) -> bool | None:
    """Read the server's TLS 1.2 flight after a ClientHello: True when it holds a CertificateRequest.

    False: the flight ended (ServerHelloDone) without one. None: no TLS 1.2
    flight came (an alert - e.g. a TLS 1.3-only server -, a close, a timeout).
    """
    deadline = time.monotonic() + timeout
    messages = bytearray()
    received = 0
    try:
        while received < _MAX_FLIGHT:
            header = hello._read_exact(sock, 5, deadline)
            if header is None:
                return None
            kind, _version, length = struct.unpack("!BHH", header)
            payload = hello._read_exact(sock, length, deadline)
            if payload is None or kind != _HANDSHAKE:
                return None
            received += 5 + length
            messages += payload
            while len(messages) >= 4:
                size = 4 + int.from_bytes(messages[1:4], "big")
                if messages[0] == _CERTIFICATE_REQUEST:
                    return True
                if messages[0] == _SERVER_HELLO_DONE:
                    return False
                if len(messages) < size:
                    break
                del messages[:size]
    except (TimeoutError, OSError):
        return None
    return None


def certificate_requested(target: Target, timeout: float, helo: str) -> bool | None:
    """On a fresh connection: does the server's TLS 1.2 handshake ask for a client certificate?

    None when it cannot be told (STARTTLS refused, no TLS 1.2, a timeout).
    """
    try:
        session = probes.reach_tls(target, timeout, helo)
    except SessionError:
        return None
    if session is None or session.sock is None:
        return None
    try:
        sock = session.sock
        sock.settimeout(timeout)
        sock.sendall(hello.client_hello(COMMON_SUITES, None if target.host_is_ip else target.host))
        return read_first_flight(sock, timeout)
    except OSError:
        return None
    finally:
        session.close()


def judge_refusal(target: Target, timeout: float, helo: str, exc: SessionError,
                  client_cert: str | None) -> CheckResult | None:
    """client-cert-required FAIL when ``exc`` (a failed handshake or first read inside TLS) is the
    server refusing for want of a (valid) client certificate; None when it is something else.

    Evidence: an alert about the client certificate (TLS 1.3: 116 certificate_required), or - for
    servers that just close, as asyncio's TLS (aiosmtpd) does - a CertificateRequest in the TLS 1.2 flight.
    """
    if exc.kind not in ("tls", "closed"):
        return None
    cause = exc.__cause__ or exc
    reason = str(getattr(cause, "reason", "") or exc.message)
    if exc.kind == "tls" and probes.client_cert_refusal(cause):
        evidence = f"TLS alert {reason}"
    elif certificate_requested(target, timeout, helo):
        evidence = f"{reason}, after the server's CertificateRequest"
    else:
        return None
    if client_cert:
        detail = f"the server refused the client certificate {client_cert} ({evidence})"
    else:
        detail = (f"the server requires a client certificate ({evidence}): clients without one cannot connect, "
                  "and the rest of the session could not be audited")
    return CheckResult("client-cert-required", FAIL, detail, FIX_CLIENT_CERT)


def judge_refused_auth(target: Target, timeout: float, helo: str, auth_detail: str) -> CheckResult | None:
    """AUTH refused after TLS and no certificate given: FAIL when the server asks for one (Dovecot's
    auth_ssl_require_client_cert completes the handshake, then refuses every login)."""
    if not certificate_requested(target, timeout, helo):
        return None
    return CheckResult("client-cert-required", FAIL, "the server asks for a client certificate and refused AUTH "
                       f"without one ({auth_detail or 'AUTH refused'})", FIX_CLIENT_CERT)


def judge_offered(target: Target, timeout: float, helo: str, client_cert: str) -> CheckResult:
    """--client-cert was given and the session went through: say whether the server asked for it."""
    asked = certificate_requested(target, timeout, helo)
    given = f"the client certificate {client_cert}"
    if asked:
        return CheckResult("client-cert-required", PASS, f"the server asks for a client certificate; {given} was "
                           "accepted")
    if asked is False:
        return CheckResult("client-cert-required", PASS, f"the server does not ask for a client certificate "
                           f"({given} was not needed)")
    return CheckResult("client-cert-required", PASS, f"{given} was offered and the session went through (whether "
                       "the server asks for one is not visible over TLS 1.3)")
