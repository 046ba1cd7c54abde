"""Side probes on their own connections: old TLS versions, weak suites, STARTTLS injection.

Each probe opens a fresh connection (no transcript), gets to the point where
TLS starts and tries one thing. A probe that cannot run (the server drops
the connection early, this OpenSSL cannot offer the protocol) gives a WARN
saying so, never a false PASS.
"""

from __future__ import annotations

import ssl
import warnings

from certkit.check import hello
from certkit.check.report import FAIL, PASS, UNKNOWN, WARN, CheckResult
from certkit.check.session import Reply, SessionError, SmtpSession
from certkit.check.target import Target

# Suites this OpenSSL can still offer that no server should accept: anonymous
# (no authentication, trivially MITMed), NULL (no encryption), plus the
# classic weak families when the library still has them (RFC 7465 RC4,
# RFC 8996 era 3DES/DES/EXPORT).
WEAK_CIPHERS = "aNULL:eNULL:EXPORT:DES:3DES:RC4:MD5:SEED:IDEA:@SECLEVEL=0"
_CLIENT_SIDE = ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE", "NO_SUITABLE")
# OpenSSL reasons that say the server refused the protocol version itself (alert 70, or no common version).
_VERSION_REFUSALS = ("PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "WRONG_VERSION_NUMBER", "VERSION_TOO_LOW")
# Alerts a server sends about the client's certificate: 116 certificate_required (RFC 8446 6.2), 42 bad_certificate,
# 45 certificate_expired, 46 certificate_unknown, 48 unknown_ca, 49 access_denied.
CLIENT_CERT_ALERTS = ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "CERTIFICATE_EXPIRED", "CERTIFICATE_UNKNOWN",
                      "UNKNOWN_CA", "ACCESS_DENIED", "CERTIFICATE_REVOKED", "UNSUPPORTED_CERTIFICATE")

FIX_OLD_TLS = (
    "allow TLS 1.2+ only: Postfix smtpd_tls_protocols = >=TLSv1.2 (and smtpd_tls_mandatory_protocols); "
    "Windows: disable TLS 1.0/1.1 under SCHANNEL\\Protocols (IISCrypto); aiosmtpd: "
    "context.minimum_version = ssl.TLSVersion.TLSv1_2"
)
FIX_WEAK = (
    "drop weak suites: Postfix smtpd_tls_exclude_ciphers = aNULL, eNULL, EXPORT, DES, RC4, MD5, 3DES "
    "(tls_medium_cipherlist default); Windows: remove them from the SSL Cipher Suite Order policy; "
    "aiosmtpd: context.set_ciphers('ECDHE+AESGCM:ECDHE+CHACHA20')"
)
_INJECTION_REJECTED = "the server rejected the injected bytes or dropped the connection"
_INJECTION_EVIDENCE = ("the pipelined NOOP was discarded", "pipelined STARTTLS refused", "not applicable")
FIX_INJECTION = (
    "upgrade the server: it must discard input buffered before the TLS handshake (Postfix >= 2.8.4, "
    "aiosmtpd >= 1.4.6); see CVE-2011-0411"
)


def probe_context(version: ssl.TLSVersion | None = None, ciphers: str = "DEFAULT:@SECLEVEL=0",
                  client_cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    """An unverified client context able to offer old protocols and weak suites.

    ``client_cert`` (certificate file, key file) is presented when the server asks for one.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if client_cert is not None:
        ctx.load_cert_chain(*client_cert)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1/TLSv1_1 are what we probe for
        if version is not None:
            ctx.minimum_version = version
            ctx.maximum_version = version
        else:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ciphers)
    return ctx


def greeted(session: SmtpSession, helo: str) -> Reply:
    """The 220 banner and EHLO on a fresh probe connection: the EHLO reply (SessionError without a 220)."""
    if session.read_reply("banner").code != 220:
        raise SessionError("garbage", "banner", "no 220 greeting")
    return session.command(f"EHLO {helo}")


def reach_tls(target: Target, timeout: float, helo: str) -> SmtpSession | None:
    """A connected session at the point where the TLS handshake starts.

    Returns None when STARTTLS is not offered or not accepted on this connection (the
    main session reports the server's STARTTLS; the probe then could not run).

    Raises:
        SessionError: the server failed before TLS could start.
    """
    session = SmtpSession(target.host, target.port, timeout)
    try:
        session.connect()
        if target.implicit_tls:
            return session
        ehlo = greeted(session, helo)
        if ehlo.code != 250 or "STARTTLS" not in ehlo.ehlo_keywords():
            session.close()
            return None
        reply = session.command("STARTTLS")
        if reply.code != 220:
            session.close()
            return None
        return session
    except SessionError:
        session.close()
        raise


def _client_side(exc: BaseException) -> bool:
    reason = str(getattr(exc, "reason", "") or exc).upper()
    return any(word in reason for word in _CLIENT_SIDE)


def probe_old_tls(target: Target, timeout: float, helo: str, version: ssl.TLSVersion, check_id: str,
                  label: str, client_cert: tuple[str, str] | None = None) -> CheckResult:
    """Does the server complete a handshake limited to ``version`` (TLS 1.0 or 1.1)?"""
    try:
        ctx = probe_context(version, client_cert=client_cert)
    except (ssl.SSLError, ValueError) as exc:
        return CheckResult(check_id, WARN, f"cannot probe {label}: this OpenSSL cannot offer it ({exc})")
    return _try_handshake(target, timeout, helo, ctx, check_id, label, FIX_OLD_TLS)


def probe_weak_ciphers(target: Target, timeout: float, helo: str) -> CheckResult:
    """Does the server accept weak suites (TLS <= 1.2)?

    Two probes: a handshake through this OpenSSL with what it can still
    offer (anonymous, NULL), then a hand-built ClientHello offering RC4,
    3DES, DES, EXPORT, NULL and anonymous suites (:mod:`certkit.check.hello`),
    so the verdict does not depend on how the local OpenSSL was built.
    """
    try:
        ctx = probe_context(None, WEAK_CIPHERS)
    except (ssl.SSLError, ValueError):
        ctx = None
    result = None
    if ctx is not None:
        result = _try_handshake(target, timeout, helo, ctx, "weak-ciphers-refused", "weak cipher suites", FIX_WEAK)
        if result.status == FAIL:
            return result
    raw = _probe_weak_raw(target, timeout, helo)
    if raw.status == WARN and result is not None and result.status == PASS:
        # The OpenSSL probe's verdict stands for what it could offer; say what is unknown.
        return CheckResult("weak-ciphers-refused", WARN, f"{result.detail}; RC4/3DES/EXPORT {raw.detail}")
    return raw


def _probe_weak_raw(target: Target, timeout: float, helo: str) -> CheckResult:
    check_id = "weak-ciphers-refused"
    try:
        session = reach_tls(target, timeout, helo)
    except SessionError as exc:
        return CheckResult(check_id, WARN, f"could not be probed: {exc.message}")
    if session is None or session.sock is None:
        return CheckResult(check_id, WARN, "could not be probed: STARTTLS not available on the probe connection")
    try:
        answer = hello.offer(session.sock, list(hello.WEAK_SUITES), None if target.host_is_ip else target.host,
                             timeout)
    finally:
        session.close()
    if answer.accepted:
        name = answer.suite_name
        return CheckResult(check_id, FAIL, f"the server accepted {name}{_why_weak(name)}", FIX_WEAK)
    if answer.timed_out:
        return CheckResult(check_id, WARN, f"could not be probed: {answer.refusal}")
    return CheckResult(check_id, PASS, f"RC4, 3DES, DES, EXPORT, NULL and anonymous suites refused ({answer.refusal})")


def _try_handshake(target: Target, timeout: float, helo: str, ctx: ssl.SSLContext, check_id: str,
                   label: str, fix: str) -> CheckResult:
    try:
        session = reach_tls(target, timeout, helo)
    except SessionError as exc:
        return CheckResult(check_id, WARN, f"could not probe {label}: {exc.message}")
    if session is None:  # the probe never got to offer anything: no verdict, never a PASS
        return CheckResult(check_id, WARN, f"could not probe {label}: STARTTLS not available on the probe connection")
    try:
        sni = None if target.host_is_ip else target.host
        tls = session.start_tls(ctx, sni)
        version, cipher = tls.version(), (tls.cipher() or ("?",))[0]
        return CheckResult(check_id, FAIL, f"the server accepted {label}: {version} {cipher}{_why_weak(cipher)}",
                           fix)
    except SessionError as exc:
        if exc.kind == "timeout":
            return CheckResult(check_id, WARN, f"could not probe {label}: {exc.message}")
        if _client_side(exc.__cause__ or exc):
            return CheckResult(check_id, WARN, f"cannot probe {label}: this OpenSSL cannot offer it")
        if client_cert_refusal(exc.__cause__ or exc):
            return CheckResult(check_id, UNKNOWN, f"unknown: the server refused the {label} handshake over the client "
                               f"certificate ({exc.message.split(': ', 1)[-1]}), not the version")
        return CheckResult(check_id, PASS, f"{label} refused ({exc.message.split(': ', 1)[-1]})")
    finally:
        session.close()


def _why_weak(cipher: str) -> str:
    """Why a suite is weak; ``cipher`` is an OpenSSL name (ADH-AES128-SHA) or an IANA one (DH_anon_WITH_...)."""
    if cipher.startswith(("ADH", "AECDH")) or "anon" in cipher.lower():
        return " (anonymous: no server authentication, open to interception)"
    if "NULL" in cipher:
        return " (NULL: no encryption)"
    if "RC4" in cipher:
        return " (RC4: broken, RFC 7465)"
    if "3DES" in cipher or "DES-CBC3" in cipher:
        return " (3DES: 64-bit blocks, SWEET32)"
    if any(word in cipher for word in ("DES", "EXP", "MD5", "IDEA", "SEED")):
        return " (broken cipher)"
    return ""


def refused_for_version(result: CheckResult) -> bool:
    """Did a version probe's server refuse because of the protocol version (alert 70 and kin)?

    Only such a refusal proves TLS 1.0/1.1 is off; a handshake failure after a
    client certificate request proves nothing about the version (issue 11.7).
    """
    detail = result.detail.upper()
    return any(word in detail for word in _VERSION_REFUSALS)


def inconclusive_without_client_cert(result: CheckResult) -> bool:
    """A probe PASS that a server refusing every client without a certificate gives as well (issue 11.7)."""
    if result.status != PASS:
        return False
    if result.id in ("tls10-refused", "tls11-refused"):
        return not refused_for_version(result)
    # Only a 221 first, or a refused pipelined STARTTLS, is evidence; a dropped session is not, here.
    return result.id == "starttls-injection" and not result.detail.startswith(_INJECTION_EVIDENCE)


def client_cert_refusal(exc: BaseException) -> bool:
    """Is this TLS error the server's refusal for want of a (valid) client certificate?"""
    reason = str(getattr(exc, "reason", "") or exc).upper()
    return any(word in reason for word in CLIENT_CERT_ALERTS)


def probe_injection(target: Target, timeout: float, helo: str,
                    client_cert: tuple[str, str] | None = None) -> CheckResult:
    """STARTTLS command injection (CVE-2011-0411): is a command pipelined after STARTTLS answered inside TLS?

    ``STARTTLS\\r\\nNOOP\\r\\n`` goes out in one segment. After the handshake
    certkit sends QUIT: a safe server's first TLS reply is QUIT's 221; a
    vulnerable one first answers the plaintext NOOP. The handshake runs at the
    highest version both sides speak (a TLS 1.3-only server is probed too); a
    server that aborts the handshake because the NOOP bytes are not TLS, or
    drops the connection, executed nothing: safe.
    """
    check_id = "starttls-injection"
    if target.implicit_tls:
        return CheckResult(check_id, PASS, "not applicable: implicit TLS has no STARTTLS")
    session = SmtpSession(target.host, target.port, timeout)
    try:
        session.connect()
        ehlo = greeted(session, helo)
        if "STARTTLS" not in ehlo.ehlo_keywords():
            return CheckResult(check_id, WARN, "could not probe: STARTTLS not offered on the probe connection")
        session.send_raw(b"STARTTLS\r\nNOOP\r\n", "STARTTLS\nNOOP")
        reply = session.read_reply("reply to STARTTLS")
        if reply.code >= 500:  # refusing a pipelined STARTTLS outright is a defence in itself
            return CheckResult(check_id, PASS, f"pipelined STARTTLS refused: {reply.first}")
        if reply.code != 220:
            return CheckResult(check_id, WARN, f"could not probe: STARTTLS answered {reply.first}")
        if session.pending():
            return CheckResult(check_id, WARN, "the server answered the pipelined NOOP in plaintext after 220")
        return _injection_after_220(session, target, client_cert)
    except SessionError as exc:
        return CheckResult(check_id, WARN, f"could not probe: {exc.message}")
    finally:
        session.close()


def _injection_after_220(session: SmtpSession, target: Target, client_cert: tuple[str, str] | None) -> CheckResult:
    """The TLS half of the injection probe: handshake at the best version, then QUIT."""
    check_id = "starttls-injection"
    ctx = probe_context(client_cert=client_cert)
    ctx.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    try:
        session.start_tls(ctx, None if target.host_is_ip else target.host)
    except SessionError as exc:
        cause = exc.__cause__ or exc
        if exc.kind == "timeout" or _client_side(cause):
            return CheckResult(check_id, WARN, f"could not probe: {exc.message}")
        if client_cert_refusal(cause):
            return _injection_unknown()
        reason = exc.message.split(": ", 1)[-1]
        return CheckResult(check_id, PASS, f"{_INJECTION_REJECTED} ({reason}): nothing sent before TLS was executed")
    try:
        first = session.command("QUIT")
    except SessionError as exc:
        if exc.kind == "tls" and client_cert_refusal(exc.__cause__ or exc):
            return _injection_unknown()
        if exc.kind in ("closed", "tls"):
            return CheckResult(check_id, PASS, "no reply inside TLS to the pipelined command")
        return CheckResult(check_id, WARN, f"could not probe: {exc.message}")
    if first.code == 221:
        return CheckResult(check_id, PASS, "the pipelined NOOP was discarded (first TLS reply is QUIT's 221)")
    return CheckResult(
        check_id, FAIL,
        f"the server answered a command sent before TLS inside TLS ({first.first}): CVE-2011-0411 class",
        FIX_INJECTION,
    )


def _injection_unknown() -> CheckResult:
    return CheckResult("starttls-injection", UNKNOWN, "unknown: the server ended the TLS session for want of a "
                       "client certificate before any reply (pass --client-cert and --client-key)")
