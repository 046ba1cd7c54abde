"""The cipher policy of a server that shares no suite with a strict, modern client (issue 11 item 5).

Python's default client list (ECDHE/DHE with AES-GCM, ChaCha20 or SHA-2 CBC,
TLS 1.3) leaves out the SHA-1-MAC CBC suites and static-RSA key exchange. A
TLS 1.2 server offering only those fails certkit's strict handshake while
`openssl s_client` and swaks connect, so certkit then retries with
:data:`BROAD_CIPHERS` to see and judge the certificate, and reports the
suites themselves as the ``cipher-policy`` check: which ones the server
accepts (hand-built ClientHellos, :mod:`certkit.check.hello`, one suite
removed per round as testssl.sh does) and why they are a problem.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from functools import lru_cache

from certkit.check import hello
from certkit.check.probes import reach_tls
from certkit.check.report import FAIL, WARN, CheckResult
from certkit.check.session import SessionError
from certkit.check.target import Target

CHECK_ID = "cipher-policy"
# Every TLS 1.2 suite an OpenSSL client may still offer at security level 2, except the
# pre-shared-key/SRP ones no mail server uses; weak ones (RC4, 3DES...) are not in the library anyway.
BROAD_CIPHERS = "ALL:!aNULL:!eNULL:!PSK:!SRP:@SECLEVEL=2"
MAX_LISTED = 8  # suites named in the detail (and ClientHello rounds spent naming them)
# Reasons a strict handshake failure is not about suites: retrying with more suites cannot help.
_NOT_SUITES = ("UNSUPPORTED_PROTOCOL", "PROTOCOL_VERSION", "WRONG_VERSION_NUMBER", "RECORD_LAYER", "HTTP_REQUEST")

FIX_CIPHERS = (
    "offer ECDHE with AES-GCM or ChaCha20 (and TLS 1.3): Postfix smtpd_tls_mandatory_ciphers = medium or high "
    "without a restrictive tls_*_cipherlist; OpenSSL servers: ECDHE+AESGCM:ECDHE+CHACHA20; Windows: enable "
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 in the SSL Cipher Suite Order (IISCrypto 'Best Practices'); "
    "aiosmtpd: leave ssl.create_default_context()'s suites alone"
)


@dataclass(frozen=True)
class Suite:
    """One TLS 1.2 cipher suite as the local OpenSSL describes it."""

    iana: int
    name: str  # OpenSSL name, as it goes into a server's cipher list
    static_rsa: bool  # RSA key transport: no forward secrecy (RFC 9325 4.1)
    cbc_sha1: bool  # CBC with an HMAC-SHA1 record MAC (RFC 9325 4.2: not recommended)

    @property
    def why(self) -> str:
        reasons = (["static RSA: no forward secrecy"] if self.static_rsa else []) + \
                  (["CBC with SHA-1 MAC"] if self.cbc_sha1 else [])
        return ", ".join(reasons) or "not offered by modern clients"


def may_be_suites(error: SessionError) -> bool:
    """Could a strict handshake failure be for lack of a shared suite (so a broad retry may work)?"""
    return error.kind == "tls" and not any(word in error.message.upper() for word in _NOT_SUITES)


@lru_cache(maxsize=1)
def _known() -> dict[int, Suite]:
    """Suites of the broad list, by IANA number (Python's ssl describes each one)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_ciphers(BROAD_CIPHERS)
    out = {}
    for info in ctx.get_ciphers():
        if info.get("protocol") == "TLSv1.3":
            continue
        iana = int(info["id"]) & 0xFFFF
        out[iana] = Suite(iana, str(info["name"]), info.get("kea") == "kx-rsa",
                          not info.get("aead") and info.get("digest") == "sha1")
    return out


@lru_cache(maxsize=1)
def legacy_suites() -> list[int]:
    """The broad list minus what a strict client offers: the suites the retry added."""
    strict = {int(info["id"]) & 0xFFFF for info in ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).get_ciphers()}
    return [iana for iana in _known() if iana not in strict]


def by_name(name: str) -> Suite:
    """The suite an SSLSocket negotiated (``tls.cipher()[0]``, an OpenSSL name)."""
    for suite in _known().values():
        if suite.name == name:
            return suite
    return Suite(0, name, False, False)


def suite_verdict(negotiated: str) -> CheckResult:
    """The verdict from the one suite a handshake negotiated (an OpenSSL name), before the full listing."""
    return verdict([by_name(negotiated)], complete=False)


def verdict(accepted: list[Suite], complete: bool) -> CheckResult:
    """FAIL when every suite the server shares with certkit is static RSA or CBC-SHA1, else WARN."""
    names = ", ".join(f"{s.name} ({s.why})" for s in accepted[:MAX_LISTED])
    more = "" if complete else " (perhaps more: the listing was cut short)"
    common = (f"the server shares no suite with a modern client; it accepts only {names}{more}: clients limited "
              "to current defaults (Python, OpenSSL at security level 2 without legacy suites) cannot connect")
    if all(s.static_rsa or s.cbc_sha1 for s in accepted):
        return CheckResult(CHECK_ID, FAIL, common, FIX_CIPHERS)
    return CheckResult(CHECK_ID, WARN, common, FIX_CIPHERS)


def list_accepted(target: Target, timeout: float, helo: str) -> CheckResult | None:
    """Name the legacy suites the server accepts, in its order of preference (None: none could be named)."""
    offered = list(legacy_suites())
    accepted: list[Suite] = []
    complete = True
    while offered and len(accepted) < MAX_LISTED:
        try:
            session = reach_tls(target, timeout, helo)
        except SessionError:
            complete = False
            break
        if session is None or session.sock is None:
            complete = False
            break
        try:
            answer = hello.offer(session.sock, offered, None if target.host_is_ip else target.host, timeout)
        finally:
            session.close()
        if not answer.accepted or answer.suite not in offered:
            complete = complete and not answer.timed_out
            break
        offered.remove(answer.suite)
        accepted.append(_known()[answer.suite])
    return verdict(accepted, complete) if accepted else None
