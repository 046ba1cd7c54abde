"""The checklist's vocabulary: check ids, their order, fix hints and how a step stops the session.

:data:`ORDER` is the order of the report (docs/check.md names every id),
:data:`FIX` the hint shown under a FAIL or WARN, :func:`applicable` the
main-session ids one run reports. :class:`Stop` ends the main session once
its FAIL is recorded (:func:`fail_step`, :func:`client_cert_refused`); the
small EHLO helper :func:`auth_mechs` is shared by the steps before and after TLS.
"""

from __future__ import annotations

from certkit.check import chain as chain_check
from certkit.check import clientcert
from certkit.check.options import CheckOptions
from certkit.check.report import FAIL, CheckReport
from certkit.check.session import SessionError
from certkit.check.target import Target
from certkit.check.target_budget import FIX_DEADLINE

ORDER = [
    "connect", "banner", "ehlo", "starttls-offered", "auth-before-tls", "plaintext-auth-refused",
    "plaintext-mail-refused", "starttls", "tls-handshake", "client-cert-required", "chain-trust", "chain-complete",
    "name-match", "expected-cert", "dane-tlsa", "mta-sts-policy",
    "sslv2-refused", "sslv3-refused", "tls10-refused", "tls11-refused", "fallback-scsv", "weak-ciphers-refused",
    "dh-params", "renegotiation", "tls-compression", "starttls-injection", "key-strength",
    "signature-hash", "eku-server-auth", "key-usage", "chain-order", "ocsp-stapling", "time-left",
    "ehlo-after-tls", "relay-refused", "auth", "send-test",
]
# Shown only when they happen: a 421 greeting (issue 11.8), a server sharing no modern suite (issue 11.5).
ORDER.insert(ORDER.index("ehlo"), "connection-limit")
ORDER.insert(ORDER.index("tls-handshake") + 1, "cipher-policy")
# Checks that need the main session to have reached TLS.
AFTER_TLS = ["tls-handshake", "chain-trust", "chain-complete", "name-match", "expected-cert", "key-strength",
             "signature-hash", "eku-server-auth", "key-usage", "chain-order", "time-left", "ehlo-after-tls",
             "relay-refused", "auth", "send-test"]
# A FAIL here means the peer may not be the server we meant: no password or message goes to it (issue 10.1).
CERT_GATE = ["tls-handshake", "chain-trust", "name-match", "expected-cert"]

FIX = {
    "connect": "check the host, port and firewall; is the service listening (ss -ltnp)?",
    "banner": "the server must greet with 220 (RFC 5321 4.3.1); check the service is an SMTP server and not overloaded",
    "ehlo": "the server must accept EHLO (RFC 5321 4.1.1.1)",
    "starttls-offered": "enable STARTTLS: Postfix smtpd_tls_cert_file/smtpd_tls_key_file + smtpd_tls_security_level "
                        "(may on 25, encrypt on 587); Exchange: Enable-ExchangeCertificate -Services SMTP; "
                        "aiosmtpd: SMTP(..., tls_context=ctx, require_starttls=True)",
    "auth-before-tls": "offer AUTH only after TLS: Postfix smtpd_tls_auth_only = yes; Exchange receive connector "
                       "-AuthMechanism Tls,BasicAuthRequireTLS; aiosmtpd: auth_require_tls=True",
    "plaintext-auth-refused": "refuse AUTH before TLS: Postfix smtpd_tls_auth_only = yes; Exchange "
                              "BasicAuthRequireTLS; aiosmtpd: auth_require_tls=True",
    "plaintext-mail-refused": "require TLS on submission: Postfix master.cf submission -o smtpd_tls_security_level="
                              "encrypt; Exchange RequireTLS $true; aiosmtpd: require_starttls=True",
    "starttls": "STARTTLS must answer 220 (RFC 3207); check the certificate and key files load (server log)",
    "tls-handshake": "check the server's certificate/key files and TLS settings in its log; "
                     "Postfix: smtpd_tls_loglevel = 1",
    "chain-complete": chain_check.FIX_CHAIN,
    "client-cert-required": clientcert.FIX_CLIENT_CERT,
    "chain-trust": "serve the full chain (Postfix smtpd_tls_chain_files = privkey.pem, fullchain.pem), use a CA "
                   "clients trust, or check with --cafile/--expect for a private or self-signed certificate",
    "name-match": "issue the certificate with the host name clients use as a SAN: certkit issue --cn HOST "
                  "(--name sets the name certkit checks)",
    "expected-cert": "deploy the certificate: certkit deploy LINEAGE --to postfix|iis|exchange|aiosmtpd, "
                     "then reload the server",
    "key-strength": "re-issue with a stronger key: certkit issue --cn HOST --key rsa3072 (or ec256)",
    "signature-hash": "re-issue: certkit signs with SHA-256 (certkit issue --cn HOST)",
    "eku-server-auth": "re-issue with the serverAuth extended key usage (certkit issue adds it)",
    "time-left": "renew now: certkit renew LINEAGE --force (and certkit timer install)",
    "ehlo-after-tls": "after TLS offer AUTH and not STARTTLS again (RFC 3207 4.2): Postfix smtpd_sasl_auth_enable"
                      " = yes on submission; aiosmtpd: an authenticator and auth_require_tls=True",
    "relay-refused": "refuse relaying without AUTH: Postfix smtpd_relay_restrictions = permit_sasl_authenticated, "
                     "reject_unauth_destination (submission: smtpd_client_restrictions = permit_sasl_authenticated,"
                     "reject); Exchange: remove anonymous relay permissions; aiosmtpd: auth_required=True",
    "auth": "check the user name and password, and that the SASL backend runs (Postfix: Dovecot auth socket)",
    "send-test": "read the server's reply above; the message was not accepted",
}

PROBE_FROM = "certkit-probe@example.com"  # RFC 2606 reserved names: never a real mailbox
RELAY_RCPT = "certkit-relay-probe@example.net"


class Stop(Exception):
    """The main session cannot go on (its FAIL is already recorded)."""


def fail_step(report: CheckReport, check_id: str, exc: SessionError) -> Stop:
    report.add(check_id, FAIL, exc.message, FIX_DEADLINE if exc.deadline else FIX.get(check_id, ""))
    return Stop(check_id, exc.kind)


def applicable(target: Target, opts: CheckOptions) -> list[str]:
    """The main-session check ids this run would report (SKIP candidates after a failure)."""
    ids = ["connect", "banner"]
    if not target.implicit_tls:
        ids += ["ehlo", "starttls-offered", "auth-before-tls"]
        if not opts.quick:
            ids += ["plaintext-auth-refused"] + (["plaintext-mail-refused"] if target.submission else [])
        ids.append("starttls")
    ids += ["tls-handshake", "chain-trust", "chain-complete", "name-match"]
    if opts.expected_pem or opts.expected_sha256:
        ids.append("expected-cert")
    if opts.dane is not None:
        ids.append("dane-tlsa")
    ids += ["key-strength", "signature-hash", "eku-server-auth", "key-usage", "chain-order", "time-left",
            "ehlo-after-tls"]
    if not opts.quick:
        ids.append("relay-refused")
    # Asked for explicitly: run (or report) them even with --quick (issue 11.9).
    if opts.auth_user is not None and opts.password is not None:
        ids.append("auth")
    if opts.send_test:
        ids.append("send-test")
    return ids


def auth_mechs(kw: dict[str, str]) -> list[str]:
    """The AUTH mechanisms an EHLO offers ([] for none, also for an empty "AUTH" line)."""
    return kw.get("AUTH", "").upper().split()


def client_cert_refused(target: Target, opts: CheckOptions, report: CheckReport,
                         exc: SessionError) -> Stop | None:
    """A Stop (client-cert-required FAIL recorded) when ``exc`` is a refusal over the client certificate."""
    result = clientcert.judge_refusal(target, opts.timeout, opts.helo_name(), exc, opts.client_cert)
    if result is None:
        return None
    report.add(result.id, result.status, result.detail, result.fix)
    return Stop("client-cert-required")


__all__ = ["AFTER_TLS", "CERT_GATE", "FIX", "ORDER", "PROBE_FROM", "RELAY_RCPT", "Stop", "applicable", "auth_mechs",
           "client_cert_refused", "fail_step"]
