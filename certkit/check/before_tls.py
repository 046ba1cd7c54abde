"""The main session up to a verified handshake: connect, greet, EHLO, plaintext probes, STARTTLS, TLS.

What a careful telnet user types before TLS, recorded as checks: connect,
banner, ehlo, starttls-offered, auth-before-tls, the plaintext AUTH/MAIL
probes, starttls, then the handshake (tls-handshake, chain-trust). It also
owns the reconnects the audit makes: with legacy suites offered when the
strict handshake shares none (issue 11.5), and without verification to
inspect a refused certificate.
"""

from __future__ import annotations

import base64
import ipaddress
import ssl
from dataclasses import dataclass

from certkit.check import certinfo, probes
from certkit.check.after_tls import relay_probe
from certkit.check.checklist import FIX, PROBE_FROM, Stop, applicable, auth_mechs, client_cert_refused, fail_step
from certkit.check.options import CheckOptions
from certkit.check.report import FAIL, PASS, SKIP, WARN, CheckReport
from certkit.check.session import REDACTED, Reply, SessionError, SmtpSession
from certkit.check.suites import may_be_suites, suite_verdict
from certkit.check.target import Target


@dataclass(frozen=True)
class Leg:
    """One connection of the main session: where it goes, what it records into, how it verifies.

    ``verified``: the strict (or, with ``broad``, the broad) verifying context; False to inspect a refused
    certificate. ``broad``: every TLS 1.2 suite offered, the strict handshake having shared none (issue 11.5).
    """

    target: Target
    opts: CheckOptions
    report: CheckReport
    session: SmtpSession
    verified: bool = True
    broad: bool = False

    @property
    def first(self) -> bool:
        """The first connection records the plaintext checks; a reconnect finds them recorded."""
        return self.verified and not self.broad


class NoSharedSuite(Exception):
    """The strict handshake failed in a way a broader suite list may get past (issue 11.5)."""

    def __init__(self, error: SessionError) -> None:
        super().__init__(error.message)
        self.error = error


def open_broad(leg: Leg, strict: SessionError) -> ssl.SSLSocket | None:
    """The verified handshake again, every TLS 1.2 suite offered; when it fails too, the strict failure stands."""
    try:
        return open_live(leg)
    except Stop as exc:
        if exc.args[:1] != ("tls-handshake",):
            raise  # a verdict of its own (the banner on reconnect, a client certificate demanded...)
        leg.report.add("tls-handshake", FAIL, f"{strict.message} (also with legacy suites offered)",
                       FIX["tls-handshake"])
        raise Stop("tls-handshake", strict.kind) from exc


def open_live(leg: Leg) -> ssl.SSLSocket | None:
    """:func:`_open`, returning the session's own TLS socket: a 421 retry on smtps:// made a new one."""
    tls = _open(leg)
    if tls is None:
        return None
    tls = leg.session.tls or tls
    if leg.broad:
        _legacy_handshake(leg.report, tls)
    return tls


def _legacy_handshake(report: CheckReport, tls: ssl.SSLSocket) -> None:
    """The handshake worked only with legacy suites: say so, and judge the suite (audit() lists them all)."""
    handshake = report.get("tls-handshake")
    if handshake is not None and handshake.status == PASS:
        report.add("tls-handshake", PASS, f"{handshake.detail} (only with legacy suites offered: see cipher-policy)")
    result = suite_verdict((tls.cipher() or ("?",))[0])
    report.add(result.id, result.status, result.detail, result.fix)


def _open(leg: Leg) -> ssl.SSLSocket | None:
    """Connect, greet, STARTTLS (or implicit TLS), handshake. None: the certificate was refused.

    On a reconnect (``leg.first`` False) the plaintext checks are already recorded.
    """
    _connect(leg.report, leg.session)
    if leg.first:
        leg.report.add("connect", PASS, f"TCP connection to {leg.target.host} port {leg.target.port}")
    if leg.target.implicit_tls:
        return _open_implicit(leg)
    _banner(leg.report, leg.session, leg.first)
    keywords = _ehlo(leg)
    if leg.first:
        _plaintext_checks(leg, keywords)
    _starttls(leg.report, leg.session, leg.first)
    return _handshake(leg)


def _connect(report: CheckReport, session: SmtpSession) -> None:
    try:
        session.connect()
    except SessionError as exc:
        raise fail_step(report, "connect", exc) from exc


def _open_implicit(leg: Leg) -> ssl.SSLSocket | None:
    """smtps://: the handshake first, then the banner over TLS."""
    tls = _handshake(leg)
    if tls is None:
        return None
    try:
        _banner(leg.report, leg.session, leg.first)
    except Stop as stop:  # TLS 1.3: a missing client certificate shows on the first read (alert 116)
        cause = stop.__cause__
        if isinstance(cause, SessionError) and (cert_stop := client_cert_refused(leg.target, leg.opts, leg.report,
                                                                                 cause)):
            leg.report.checks = [c for c in leg.report.checks if c.id != "banner"]
            raise cert_stop from cause
        raise
    return tls


def _ehlo(leg: Leg) -> dict[str, str]:
    """EHLO before TLS; the extensions it offers."""
    try:
        ehlo = leg.session.command(f"EHLO {leg.opts.helo_name()}")
    except SessionError as exc:
        raise fail_step(leg.report, "ehlo", exc) from exc
    if ehlo.code != 250:
        leg.report.add("ehlo", FAIL, f"EHLO refused: {ehlo.first}", FIX["ehlo"])
        raise Stop("ehlo")
    return ehlo.ehlo_keywords()


def _plaintext_checks(leg: Leg, kw: dict[str, str]) -> None:
    """First connection: what EHLO offers in clear, then the plaintext probes (reconnecting if they cost it)."""
    report = leg.report
    report.add("ehlo", PASS, f"EHLO accepted ({len(kw)} extensions)")
    starttls = "STARTTLS" in kw
    if starttls:
        report.add("starttls-offered", PASS, "STARTTLS offered")
    else:
        report.add("starttls-offered", FAIL, "STARTTLS is not offered: everything, passwords included, "
                   "would cross the network in clear", FIX["starttls-offered"])
    mechs = auth_mechs(kw)
    if mechs:
        # Without STARTTLS every client login is in clear: a FAIL on any port (issue 11.1).
        status = FAIL if leg.target.submission or not starttls else WARN
        report.add("auth-before-tls", status, f"AUTH {' '.join(mechs)} offered before TLS: clients may send "
                   "passwords in clear", FIX["auth-before-tls"])
    else:  # Dovecot's "250-AUTH " with no mechanism is no offer (issue 11.2)
        report.add("auth-before-tls", PASS, "AUTH not offered before TLS")
    if not starttls:
        _no_starttls(leg.target, leg.opts, report, leg.session)
    if not leg.opts.quick and not _plaintext_probes(leg.target, report, leg.session):
        _reconnect_for_starttls(leg)


def _reconnect_for_starttls(leg: Leg) -> None:
    """The server hung up on a refused probe (or said 421): a fresh connection for STARTTLS."""
    session = leg.session
    session.close()
    session.note("*  the server closed the connection; reconnecting for STARTTLS")
    _connect(leg.report, session)
    _banner(leg.report, session, False)
    try:
        session.command(f"EHLO {leg.opts.helo_name()}")
    except SessionError as exc:
        raise fail_step(leg.report, "ehlo", exc) from exc


def _starttls(report: CheckReport, session: SmtpSession, record: bool) -> None:
    try:
        reply = session.command("STARTTLS")
    except SessionError as exc:
        raise fail_step(report, "starttls", exc) from exc
    _judge_reply(report, "starttls", reply, f"STARTTLS answered {reply.first}", f"STARTTLS accepted ({reply.first})",
                 record)


def _no_starttls(target: Target, opts: CheckOptions, report: CheckReport, session: SmtpSession) -> None:
    """No TLS to come: run what can run in clear, so plaintext AUTH and an open relay get reported (issue 11.1)."""
    if not opts.quick:
        try:
            if _plaintext_probes(target, report, session):  # dummy credentials only, never the real ones
                relay_probe(report, session)
            else:
                report.skip(["relay-refused"], "the server closed the connection")
        except SessionError as exc:
            report.add("relay-refused", FAIL, exc.message, FIX["relay-refused"])
    withheld = ["auth", "send-test"]
    for check_id in withheld:
        if check_id in applicable(target, opts):
            report.add(check_id, SKIP, "credentials withheld: STARTTLS is not offered, they would cross in clear"
                       if check_id == "auth" else "test message withheld: STARTTLS is not offered")
    report.skip([i for i in applicable(target, opts) if i not in ("connect", "banner", "ehlo")], "no STARTTLS")
    raise Stop("starttls-offered")


def _banner(report: CheckReport, session: SmtpSession, record: bool) -> None:
    try:
        banner = session.read_reply("banner")
    except SessionError as exc:
        if exc.kind == "timeout" and session.tls is None:
            # Silence on a plain connection is what an implicit-TLS port does: it waits for a ClientHello.
            host = f"[{session.host}]" if ":" in session.host else session.host
            report.add("banner", FAIL, exc.message,
                       f"a port that speaks implicit TLS (465) waits for the client to start TLS: "
                       f"try smtps://{host}:{session.port}; else {FIX['banner']}")
            raise Stop("banner") from exc
        raise fail_step(report, "banner", exc) from exc
    _judge_reply(report, "banner", banner, f"greeting is {banner.first}, not 220", f"220 greeting: {banner.text[:80]}",
                 record)


def _judge_reply(report: CheckReport, check_id: str, reply: Reply, refused: str, accepted: str, record: bool) -> None:
    """A 220 passes ``check_id`` (recorded when ``record``); anything else FAILs it and stops the session."""
    if reply.code != 220:
        report.add(check_id, FAIL, refused, FIX[check_id])
        raise Stop(check_id)
    if record:
        report.add(check_id, PASS, accepted)


def _handshake(leg: Leg) -> ssl.SSLSocket | None:
    """The TLS handshake (tls-handshake, chain-trust); None: the certificate was refused (chain-trust FAIL)."""
    target, opts, report, session, verified, broad = (leg.target, leg.opts, leg.report, leg.session, leg.verified,
                                                      leg.broad)
    name = opts.name or target.host
    sni: str | None = certinfo.normalise_name(name)
    if _is_ip(sni):
        sni = None  # RFC 6066 3: no IP literals in SNI
    ctx = opts.verify_context() if verified else probes.probe_context(None, client_cert=opts.client_pair())
    if not verified:
        ctx.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    elif broad:
        ctx = opts.broad_verify_context()
    try:
        tls = session.start_tls(ctx, sni)
    except SessionError as exc:
        if verified and not broad and may_be_suites(exc):  # never a "verify" failure: the chain is judged later
            raise NoSharedSuite(exc) from exc
        if exc.kind == "verify" and verified:
            if opts.expected_pem and not opts.cafile:
                # Neutral: expected-cert says whether it is the pinned one (an expired pin is; issue 11 item 11).
                detail = f"does not verify with the pinned certificate as trust anchor: {exc.verify_message}"
            else:
                detail = f"not trusted by {opts.trust_label()}: {exc.verify_message}"
            report.add("chain-trust", FAIL, detail, FIX["chain-trust"])
            return None
        if (cert_stop := client_cert_refused(target, opts, report, exc)) is not None:
            raise cert_stop from exc
        raise fail_step(report, "tls-handshake", exc) from exc
    version, cipher = tls.version() or "?", (tls.cipher() or ("?",))[0]
    if version in ("TLSv1", "TLSv1.1", "SSLv3"):
        report.add("tls-handshake", FAIL, f"negotiated {version} {cipher}", probes.FIX_OLD_TLS)
    else:
        report.add("tls-handshake", PASS, f"{version} {cipher}")
    if verified and opts.expected_pem and not opts.cafile:
        # Identity only: the pin is the anchor here; chain-complete judges the chain itself (issue 11.4).
        report.add("chain-trust", PASS, "the served certificate verifies with the pinned certificate as trust anchor")
    elif verified:
        report.add("chain-trust", PASS, f"certificate chain verified against {opts.trust_label()}")
    return tls


def _is_ip(text: str | None) -> bool:
    try:
        ipaddress.ip_address(text or "")
    except ValueError:
        return False
    return True


def _plaintext_probes(target: Target, report: CheckReport, session: SmtpSession) -> bool:
    """Before TLS: dummy AUTH PLAIN and (submission) MAIL FROM must be refused.

    Returns False when the server closed the connection (or announced it with 421).
    """
    dummy = base64.b64encode(b"\0certkit-probe\0not-a-password").decode()
    try:
        reply = session.command(f"AUTH PLAIN {dummy}", shown=f"AUTH PLAIN {REDACTED}")
        if reply.code == 334:  # no initial-response support: cancel (RFC 4954 4)
            reply = session.command("*")
    except SessionError as exc:
        if exc.kind != "closed":
            raise fail_step(report, "plaintext-auth-refused", exc) from exc
        report.add("plaintext-auth-refused", PASS, "AUTH before TLS refused by closing the connection")
        report.skip(["plaintext-mail-refused"] if target.submission else [], "the server closed the connection")
        return False
    if reply.code == 235:
        report.add("plaintext-auth-refused", FAIL, "dummy credentials were ACCEPTED without TLS",
                   FIX["plaintext-auth-refused"])
    elif reply.code == 535:
        report.add("plaintext-auth-refused", FAIL, f"credentials are checked without TLS ({reply.first}): a real "
                   "password would have crossed the network in clear", FIX["plaintext-auth-refused"])
    elif 400 <= reply.code < 500 and reply.code != 421:
        report.add("plaintext-auth-refused", WARN, f"temporary answer to AUTH before TLS: {reply.first}",
                   FIX["plaintext-auth-refused"])
    else:
        report.add("plaintext-auth-refused", PASS, f"AUTH before TLS refused: {reply.first}")
    if reply.code == 421:
        report.skip(["plaintext-mail-refused"] if target.submission else [], "the server closed the connection")
        return False
    if not target.submission:
        return True
    try:
        reply = session.command(f"MAIL FROM:<{PROBE_FROM}>")
        if reply.code == 250:
            session.command("RSET")
    except SessionError as exc:
        if exc.kind != "closed":
            raise fail_step(report, "plaintext-mail-refused", exc) from exc
        report.add("plaintext-mail-refused", PASS, "MAIL before TLS refused by closing the connection")
        return False
    if reply.code == 250:
        report.add("plaintext-mail-refused", FAIL, "MAIL FROM accepted before TLS on the submission port",
                   FIX["plaintext-mail-refused"])
    else:
        report.add("plaintext-mail-refused", PASS, f"MAIL before TLS refused: {reply.first}")
    return reply.code != 421


__all__ = ["Leg", "NoSharedSuite", "open_broad", "open_live"]
