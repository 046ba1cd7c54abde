"""The checklist: one audit of one endpoint.

The main session follows what a careful telnet user would type (banner,
EHLO, plaintext probes, STARTTLS, a verified handshake, EHLO again, a relay
attempt, AUTH, a test message) and records it as the transcript. The TLS
version, weak-suite and STARTTLS-injection probes run on their own
connections in parallel threads; the raw-hello protocol probes
(:mod:`certkit.check.tlsfacts`) share one thread, one connection at a time.
Every check has a stable id (docs/check.md).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from certkit.check import certinfo, chainfacts, clientcert, probes, tlsfacts
from certkit.check import chain as chain_check
from certkit.check.certinfo import CertFacts
from certkit.check.report import FAIL, PASS, SKIP, UNKNOWN, WARN, CheckReport, CheckResult
from certkit.check.session import REDACTED, Reply, SessionError, SmtpSession, peer_chain_der
from certkit.check.suites import BROAD_CIPHERS, list_accepted, may_be_suites, suite_verdict
from certkit.check.target import Target
from certkit.check.target_budget import FIX_DEADLINE, Budget, applied, connection_limit, deadline_fails

ORDER = [
    "connect", "banner", "ehlo", "starttls-offered", "auth-before-tls", "plaintext-auth-refused",
    "plaintext-mail-refused", "starttls", "tls-handshake", "client-cert-required", "chain-trust", "chain-complete",
    "name-match", "expected-cert",
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
DEADLINE_FACTOR = 3  # default --deadline: this many --timeout periods for the whole target

PROBE_FROM = "certkit-probe@example.com"  # RFC 2606 reserved names: never a real mailbox
RELAY_RCPT = "certkit-relay-probe@example.net"


@dataclass
class CheckOptions:
    """What to check and how.

    Attributes:
        name: expected host name (default: the URL host).
        cafile: trust anchors file instead of the system store.
        expected_pem: the pinned certificate (PEM, leaf first): trust anchor and equality check.
        auth_user / password: credentials for the AUTH check (password never shown).
        send_test, mail_from, rcpt_to: send one test message.
        timeout: seconds for each step.
        strict: RSA 2048 becomes a WARN.
        quick: only the main session up to EHLO after TLS (deploy verification, fleet sweeps);
            AUTH and --send-test still run when asked for.
        insecure_auth: send credentials and the test message even over a connection whose
            certificate failed a CERT_GATE check (reported as a WARN).
        helo: the EHLO name certkit uses.
        parallel_probes: run side probes in threads (off in fleet workers).
        deadline: seconds for the whole target, probes included (None: DEADLINE_FACTOR x timeout).
        max_connections: connections open to the target at the same time, at most.
        now: the clock (tests).
        client_cert / client_key: a client certificate (and its key file) presented when the server asks.
    """

    name: str | None = None
    cafile: str | None = None
    expected_pem: bytes | None = None
    auth_user: str | None = None
    password: str | None = None
    send_test: bool = False
    mail_from: str | None = None
    rcpt_to: str | None = None
    timeout: float = 10.0
    strict: bool = False
    quick: bool = False
    insecure_auth: bool = False
    helo: str = ""
    parallel_probes: bool = True
    deadline: float | None = None
    max_connections: int = 2
    now: Callable[[], dt.datetime] | None = None
    client_cert: str | None = None
    client_key: str | None = None
    _ctx: ssl.SSLContext | None = field(default=None, repr=False)
    _anchors: frozenset[str] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def helo_name(self) -> str:
        if not self.helo:
            host = socket.gethostname()
            self.helo = host if "." in host else "certkit-check.localdomain"
        return self.helo

    def expected_der(self) -> bytes | None:
        """DER of the pinned leaf (the first certificate of ``expected_pem``)."""
        if not self.expected_pem:
            return None
        first = self.expected_pem.decode("ascii", "replace").split("-----END CERTIFICATE-----")[0]
        first = first[first.find("-----BEGIN CERTIFICATE-----"):]
        return ssl.PEM_cert_to_DER_cert(first.strip() + "\n-----END CERTIFICATE-----\n")

    def client_pair(self) -> tuple[str, str] | None:
        """(certificate file, key file) to present, or None; the key may sit in the certificate file."""
        if not self.client_cert:
            return None
        return self.client_cert, self.client_key or self.client_cert

    def anchor_names(self) -> frozenset[str]:
        """Subjects of the trust anchors chain-complete accepts: --cafile, else the system store. Read once."""
        with self._lock:
            if self._anchors is None:
                if self.cafile:
                    with open(self.cafile, encoding="ascii", errors="replace") as handle:
                        ders = chain_check.pem_certificates(handle.read())
                else:
                    ders = chain_check.system_anchor_ders()
                self._anchors = chain_check.anchor_subjects(ders)
            return self._anchors

    def trust_label(self) -> str:
        if self.cafile:
            return f"--cafile {self.cafile}"
        if self.expected_pem:
            return "the pinned certificate"
        return "the system trust store"

    def new_budget(self) -> Budget:
        """A fresh deadline and connection budget for one target, its watchdog armed."""
        seconds = self.deadline if self.deadline is not None else DEADLINE_FACTOR * self.timeout
        budget = Budget(seconds, self.max_connections)
        budget.start()
        return budget

    def broad_verify_context(self) -> ssl.SSLContext:
        """The strict context's trust and checks, every TLS 1.2 suite offered (issue 11.5; rare: not cached)."""
        ctx = replace(self, _ctx=None).verify_context()
        ctx.set_ciphers(BROAD_CIPHERS)
        return ctx

    def verify_context(self) -> ssl.SSLContext:
        """The strict context: chain verification (names are matched by certkit, SAN only). Built once."""
        with self._lock:
            if self._ctx is None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # TLS >= 1.2, CERT_REQUIRED
                ctx.check_hostname = False  # certinfo.name_matches: SAN only, never the CN
                if self.cafile:
                    ctx.load_verify_locations(cafile=self.cafile)
                elif self.expected_pem:
                    ctx.load_verify_locations(cadata=self.expected_pem.decode("ascii", "replace"))
                    # The pinned leaf itself is the trust anchor, CA-issued or self-signed.
                    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
                else:
                    ctx.load_default_certs()
                if self.client_cert:
                    ctx.load_cert_chain(*(self.client_pair() or ()))
                self._ctx = ctx
            return self._ctx


class _Stop(Exception):
    """The main session cannot go on (its FAIL is already recorded)."""


class _NoSharedSuite(Exception):
    """The strict handshake failed in a way a broader suite list may get past (issue 11.5)."""

    def __init__(self, error: SessionError) -> None:
        super().__init__(error.message)
        self.error = error


def _fail_step(report: CheckReport, check_id: str, exc: SessionError) -> _Stop:
    report.add(check_id, FAIL, exc.message, FIX_DEADLINE if exc.deadline else FIX.get(check_id, ""))
    return _Stop(check_id, exc.kind)


def audit(target: Target, opts: CheckOptions, transcript: list[str] | None = None) -> CheckReport:
    """Run every check on one endpoint and return the report (never raises for server behaviour).

    ``transcript`` receives the session lines as they happen (a list the
    caller can print live, or show after an interrupt); default a new list.
    """
    started = time.perf_counter()
    report = CheckReport(target.url, transcript=transcript if transcript is not None else [])
    helo = opts.helo_name()

    # Main session, side probes and retries share one budget: the deadline and the connection cap.
    budget = opts.new_budget()
    side: list[CheckResult] = []
    threads: list[threading.Thread] = []
    if not opts.quick:
        jobs: list[Callable[[], CheckResult]] = [
            lambda: probes.probe_old_tls(target, opts.timeout, helo, ssl.TLSVersion.TLSv1, "tls10-refused",
                                         "TLS 1.0", opts.client_pair()),
            lambda: probes.probe_old_tls(target, opts.timeout, helo, ssl.TLSVersion.TLSv1_1, "tls11-refused",
                                         "TLS 1.1", opts.client_pair()),
            lambda: probes.probe_weak_ciphers(target, opts.timeout, helo),
            lambda: probes.probe_injection(target, opts.timeout, helo, opts.client_pair()),
            *tlsfacts.CoverageProbe(target, opts.timeout, helo).jobs(),  # issue 11: one thread's connections
        ]
        if opts.parallel_probes:
            budget.main_running = True  # the main session's slot is kept for it
            for job in jobs:
                t = threading.Thread(target=lambda j=job: side.append(_probe_within(j, budget)), daemon=True)
                t.start()
                threads.append(t)
        else:
            threads = []
            side_jobs = jobs
    stopped, timed_out = "", False
    try:
        with applied(budget):
            _main_session(target, opts, report)
    except _Stop as stop:
        stopped, timed_out = str(stop.args[0]), stop.args[1:] == ("timeout",)
        report.skip(applicable(target, opts), budget.message() if budget.expired() else f"{stopped} failed")
    finally:
        budget.main_finished()
    handshake = report.get("tls-handshake")
    # A server refusing for want of a client certificate does speak TLS: its probe answers still count.
    cert_stop = stopped == "client-cert-required"
    tls_ok = (handshake is not None and handshake.status == PASS) or cert_stop
    if not opts.quick:
        # A probe proves something only where the main handshake worked or failed for a reason of its own
        # (TLS 1.0 only); after a timeout it would only wait as long again (issue 10.11).
        useful = tls_ok or (stopped == "tls-handshake" and not timed_out)
        if opts.parallel_probes:
            if not useful:
                budget.cancel_probes()
            _join(threads, budget)
        elif useful:
            side.extend(_probe_within(job, budget) for job in side_jobs)
        why = budget.message() if budget.expired() else f"{stopped or 'tls-handshake'} failed"
        for result in side:
            # Without a working handshake a probe's "refused" proves nothing: keep only what it found wrong
            # (a server that speaks nothing but TLS 1.0 fails the main handshake and the TLS 1.0 probe).
            if cert_stop and probes.inconclusive_without_client_cert(result):
                result = CheckResult(result.id, UNKNOWN, "unknown: a server that wants a client certificate refuses "
                                     f"this probe anyway (saw: {result.detail}); rerun with --client-cert")
            elif not tls_ok and result.status != FAIL:
                result = CheckResult(result.id, SKIP, f"not run: {why}")
            report.checks.append(result)
        report.skip(["tls10-refused", "tls11-refused", "weak-ciphers-refused", "starttls-injection",
                     *tlsfacts.PROBE_IDS], why)
    rank = {cid: i for i, cid in enumerate(ORDER)}
    report.checks.sort(key=lambda c: rank.get(c.id, len(ORDER)))
    _after_run(target, opts, report, budget)
    report.elapsed_ms = round((time.perf_counter() - started) * 1000)
    return report


def _after_run(target: Target, opts: CheckOptions, report: CheckReport, budget: Budget) -> None:
    """What the budget saw becomes checks (in ORDER); the deadline watchdog is disarmed."""
    with applied(budget):
        _name_legacy_suites(target, opts, report)
    budget.stop()
    connection_limit(report, budget)
    deadline_fails(report, budget)
    rank = {cid: i for i, cid in enumerate(ORDER)}
    report.checks.sort(key=lambda c: rank.get(c.id, len(ORDER)))


def _probe_within(job: Callable[[], CheckResult], budget: Budget) -> CheckResult:
    """Run a side probe; what it says after the deadline cut it proves nothing but a FAIL it saw (SKIP)."""
    with applied(budget):
        result = job()
    if budget.expired() and result.status != FAIL:
        return CheckResult(result.id, SKIP, f"not run: {budget.message()}")
    return result


def _join(threads: list[threading.Thread], budget: Budget) -> None:
    """Wait for the probe threads; the deadline watchdog has interrupted their sockets by then."""
    for t in threads:
        left = budget.remaining()
        t.join(None if left == float("inf") else max(0.0, left) + 1.0)


def _name_legacy_suites(target: Target, opts: CheckOptions, report: CheckReport) -> None:
    """cipher-policy found legacy suites only: list every one the server accepts (issue 11.5)."""
    policy = report.get("cipher-policy")
    if policy is None or opts.quick:
        return
    result = list_accepted(target, opts.timeout, opts.helo_name())
    if result is not None:
        report.add(result.id, result.status, result.detail, result.fix)


def applicable(target: Target, opts: CheckOptions) -> list[str]:
    """The main-session check ids this run would report (SKIP candidates after a failure)."""
    ids = ["connect", "banner"]
    if not target.implicit_tls:
        ids += ["ehlo", "starttls-offered", "auth-before-tls"]
        if not opts.quick:
            ids += ["plaintext-auth-refused"] + (["plaintext-mail-refused"] if target.submission else [])
        ids.append("starttls")
    ids += ["tls-handshake", "chain-trust", "chain-complete", "name-match"]
    if opts.expected_pem:
        ids.append("expected-cert")
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


def _main_session(target: Target, opts: CheckOptions, report: CheckReport) -> None:
    session = SmtpSession(target.host, target.port, opts.timeout, report.transcript, main=True)
    broad = False
    try:
        try:
            tls = _open_live(target, opts, report, session, verified=True)
        except _NoSharedSuite as strict:
            session.close()
            session.note(f"*  strict handshake failed ({strict.error.message}); reconnecting with legacy suites "
                         "offered too, to see the certificate")
            session = SmtpSession(target.host, target.port, opts.timeout, report.transcript, main=True)
            broad = True
            tls = _open_broad(target, opts, report, session, strict.error)
        if tls is None:  # certificate refused: look at it over an unverified connection
            session.close()
            session.note("*  certificate not accepted; reconnecting without verification to inspect it")
            session = SmtpSession(target.host, target.port, opts.timeout, report.transcript, main=True)
            tls = _open_live(target, opts, report, session, verified=False, broad=broad)
            assert tls is not None
        chain = peer_chain_der(tls)
        try:
            facts = certinfo.from_der(chain[0], len(chain))
        except (ValueError, IndexError) as exc:
            # OpenSSL took this certificate in the handshake: not reading it is certkit's limit (issue 11.10).
            report.skip(applicable(target, opts), f"certkit cannot read the served certificate ({exc}); OpenSSL "
                        "accepted it: inspect it with openssl s_client -showcerts")
            raise _Stop("certificate", "unreadable") from exc
        session.note(f"*  TLS {tls.version()} {(tls.cipher() or ('?',))[0]}")
        for line in facts.summary_lines():
            session.note(f"*  {line}")
        report.certificate = facts.to_json()
        _chain_complete(opts, report, chain)
        _certificate_checks(target, opts, report, facts)
        for result in chainfacts.certificate_findings(chain, facts.key_kind):
            report.add(result.id, result.status, result.detail, result.fix)
        _after_tls(target, opts, report, session)
        if opts.client_cert and report.get("client-cert-required") is None:
            _client_cert_offered(target, opts, report)
        session.quit()
    finally:
        session.close()


def _open_broad(target: Target, opts: CheckOptions, report: CheckReport, session: SmtpSession,
                strict: SessionError) -> ssl.SSLSocket | None:
    """The verified handshake again, every TLS 1.2 suite offered; when it fails too, the strict failure stands."""
    try:
        return _open_live(target, opts, report, session, verified=True, broad=True)
    except _Stop as exc:
        if exc.args[:1] != ("tls-handshake",):
            raise  # a verdict of its own (the banner on reconnect, a client certificate demanded...)
        report.add("tls-handshake", FAIL, f"{strict.message} (also with legacy suites offered)", FIX["tls-handshake"])
        raise _Stop("tls-handshake", strict.kind) from exc


def _open_live(target: Target, opts: CheckOptions, report: CheckReport, session: SmtpSession,
               verified: bool, broad: bool = False) -> ssl.SSLSocket | None:
    """:func:`_open`, returning the session's own TLS socket: a 421 retry on smtps:// made a new one."""
    tls = _open(target, opts, report, session, verified, broad)
    if tls is None:
        return None
    tls = session.tls or tls
    if broad:
        _legacy_handshake(report, tls)
    return tls


def _legacy_handshake(report: CheckReport, tls: ssl.SSLSocket) -> None:
    """The handshake worked only with legacy suites: say so, and judge the suite (audit() lists them all)."""
    handshake = report.get("tls-handshake")
    if handshake is not None and handshake.status == PASS:
        report.add("tls-handshake", PASS, f"{handshake.detail} (only with legacy suites offered: see cipher-policy)")
    result = suite_verdict((tls.cipher() or ("?",))[0])
    report.add(result.id, result.status, result.detail, result.fix)


def _open(target: Target, opts: CheckOptions, report: CheckReport, session: SmtpSession,
          verified: bool, broad: bool = False) -> ssl.SSLSocket | None:
    """Connect, greet, STARTTLS (or implicit TLS), handshake. None: the certificate was refused.

    ``broad``: offer every TLS 1.2 suite (the strict handshake shared none); the plaintext checks are recorded.
    """
    first = verified and not broad  # on a reconnect, the plaintext checks are already recorded
    try:
        session.connect()
    except SessionError as exc:
        raise _fail_step(report, "connect", exc) from exc
    if first:
        report.add("connect", PASS, f"TCP connection to {target.host} port {target.port}")
    if target.implicit_tls:
        tls = _handshake(target, opts, report, session, verified, broad)
        if tls is None:
            return None
        try:
            _banner(report, session, first)
        except _Stop as stop:  # TLS 1.3: a missing client certificate shows on the first read (alert 116)
            cause = stop.__cause__
            if isinstance(cause, SessionError) and (cert_stop := _client_cert_refused(target, opts, report, cause)):
                report.checks = [c for c in report.checks if c.id != "banner"]
                raise cert_stop from cause
            raise
        return tls
    _banner(report, session, first)
    try:
        ehlo = session.command(f"EHLO {opts.helo_name()}")
    except SessionError as exc:
        raise _fail_step(report, "ehlo", exc) from exc
    if ehlo.code != 250:
        report.add("ehlo", FAIL, f"EHLO refused: {ehlo.first}", FIX["ehlo"])
        raise _Stop("ehlo")
    kw = ehlo.ehlo_keywords()
    if first:
        report.add("ehlo", PASS, f"EHLO accepted ({len(kw)} extensions)")
        starttls = "STARTTLS" in kw
        if starttls:
            report.add("starttls-offered", PASS, "STARTTLS offered")
        else:
            report.add("starttls-offered", FAIL, "STARTTLS is not offered: everything, passwords included, "
                       "would cross the network in clear", FIX["starttls-offered"])
        mechs = _auth_mechs(kw)
        if mechs:
            # Without STARTTLS every client login is in clear: a FAIL on any port (issue 11.1).
            status = FAIL if target.submission or not starttls else WARN
            report.add("auth-before-tls", status, f"AUTH {' '.join(mechs)} offered before TLS: clients may send "
                       "passwords in clear", FIX["auth-before-tls"])
        else:  # Dovecot's "250-AUTH " with no mechanism is no offer (issue 11.2)
            report.add("auth-before-tls", PASS, "AUTH not offered before TLS")
        if not starttls:
            _no_starttls(target, opts, report, session)
        if not opts.quick and not _plaintext_probes(target, report, session):
            # The server hung up on a refused probe (or said 421): a fresh connection for STARTTLS.
            session.close()
            session.note("*  the server closed the connection; reconnecting for STARTTLS")
            try:
                session.connect()
            except SessionError as exc:
                raise _fail_step(report, "connect", exc) from exc
            _banner(report, session, False)
            try:
                session.command(f"EHLO {opts.helo_name()}")
            except SessionError as exc:
                raise _fail_step(report, "ehlo", exc) from exc
    try:
        reply = session.command("STARTTLS")
    except SessionError as exc:
        raise _fail_step(report, "starttls", exc) from exc
    if reply.code != 220:
        report.add("starttls", FAIL, f"STARTTLS answered {reply.first}", FIX["starttls"])
        raise _Stop("starttls")
    if first:
        report.add("starttls", PASS, f"STARTTLS accepted ({reply.first})")
    return _handshake(target, opts, report, session, verified, broad)


def _auth_mechs(kw: dict[str, str]) -> list[str]:
    """The AUTH mechanisms an EHLO offers ([] for none, also for an empty "AUTH" line)."""
    return kw.get("AUTH", "").upper().split()


def _no_starttls(target: Target, opts: CheckOptions, report: CheckReport, session: SmtpSession) -> None:
    """No TLS to come: run what can run in clear, so plaintext AUTH and an open relay get reported (issue 11.1)."""
    if not opts.quick:
        try:
            if _plaintext_probes(target, report, session):  # dummy credentials only, never the real ones
                _relay_probe(report, session)
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
    raise _Stop("starttls-offered")


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
            raise _Stop("banner") from exc
        raise _fail_step(report, "banner", exc) from exc
    if banner.code != 220:
        report.add("banner", FAIL, f"greeting is {banner.first}, not 220", FIX["banner"])
        raise _Stop("banner")
    if record:
        report.add("banner", PASS, f"220 greeting: {banner.text[:80]}")


def _handshake(target: Target, opts: CheckOptions, report: CheckReport, session: SmtpSession,
               verified: bool, broad: bool = False) -> ssl.SSLSocket | None:
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
            raise _NoSharedSuite(exc) from exc
        if exc.kind == "verify" and verified:
            if opts.expected_pem and not opts.cafile:
                # Neutral: expected-cert says whether it is the pinned one (an expired pin is; issue 11 item 11).
                detail = f"does not verify with the pinned certificate as trust anchor: {exc.verify_message}"
            else:
                detail = f"not trusted by {opts.trust_label()}: {exc.verify_message}"
            report.add("chain-trust", FAIL, detail, FIX["chain-trust"])
            return None
        if (cert_stop := _client_cert_refused(target, opts, report, exc)) is not None:
            raise cert_stop from exc
        raise _fail_step(report, "tls-handshake", exc) from exc
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
            raise _fail_step(report, "plaintext-auth-refused", exc) from exc
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
            raise _fail_step(report, "plaintext-mail-refused", exc) from exc
        report.add("plaintext-mail-refused", PASS, "MAIL before TLS refused by closing the connection")
        return False
    if reply.code == 250:
        report.add("plaintext-mail-refused", FAIL, "MAIL FROM accepted before TLS on the submission port",
                   FIX["plaintext-mail-refused"])
    else:
        report.add("plaintext-mail-refused", PASS, f"MAIL before TLS refused: {reply.first}")
    return reply.code != 421


def _certificate_checks(target: Target, opts: CheckOptions, report: CheckReport, facts: CertFacts) -> None:
    name = opts.name or target.host
    served = ", ".join(facts.names) or "none"
    if certinfo.name_matches(name, facts.dns_names, facts.ip_names):
        report.add("name-match", PASS, f"{name} matches the certificate's SAN ({served})")
    else:
        report.add("name-match", FAIL, f"{name} is not among the certificate's SAN names ({served}); the subject "
                   "CN is not used (RFC 6125)", FIX["name-match"])
    expected = opts.expected_der()
    if expected is not None:
        import hashlib

        want = hashlib.sha256(expected).hexdigest()
        if expected == facts.der:
            report.add("expected-cert", PASS, f"served the expected certificate (sha256 {want[:16]}...)")
        else:
            report.add("expected-cert", FAIL, f"served sha256 {facts.sha256[:16]}... ({facts.subject}, until "
                       f"{facts.not_after:%Y-%m-%d}), expected sha256 {want[:16]}...", FIX["expected-cert"])
    _key_checks(opts, report, facts)
    now = opts.now() if opts.now else dt.datetime.now(dt.timezone.utc)
    lifetime = (facts.not_after - facts.not_before).total_seconds()
    left = (facts.not_after - now).total_seconds()
    days = left / 86400
    until = f"{facts.not_after:%Y-%m-%d %H:%M} UTC"
    if now < facts.not_before:
        report.add("time-left", FAIL, f"not valid before {facts.not_before:%Y-%m-%d %H:%M} UTC", FIX["time-left"])
    elif left <= 0:
        report.add("time-left", FAIL, f"EXPIRED on {until}", FIX["time-left"])
    elif left < 48 * 3600:
        report.add("time-left", FAIL, f"expires in {left / 3600:.0f} hours ({until})", FIX["time-left"])
    elif lifetime > 0 and left < lifetime / 3:
        report.add("time-left", WARN, f"{days:.0f} days left, under a third of its lifetime (until {until})",
                   FIX["time-left"])
    else:
        share = f", {100 * left / lifetime:.0f}% of its lifetime" if lifetime > 0 else ""
        report.add("time-left", PASS, f"{days:.0f} days left (until {until}{share})")


def _key_checks(opts: CheckOptions, report: CheckReport, facts: CertFacts) -> None:
    bits, kind = facts.key_bits or 0, facts.key_kind
    if kind == "rsa" and bits < 2048:
        report.add("key-strength", FAIL, f"RSA {bits} bits: breakable, refused by current clients",
                   FIX["key-strength"])
    elif kind == "rsa" and bits == 2048 and opts.strict:
        report.add("key-strength", WARN, "RSA 2048 bits (--strict asks for 3072+ or ECDSA)", FIX["key-strength"])
    elif kind == "dsa" or (kind == "ec" and bits < 256):
        report.add("key-strength", FAIL, f"{facts.key}: too weak", FIX["key-strength"])
    else:
        report.add("key-strength", PASS, f"{facts.key}")
    sig = (facts.signature_hash or "").lower()
    if sig in ("sha1", "md5", "md2", "md4") or "sha1" in sig or "md5" in sig:
        report.add("signature-hash", FAIL, f"signed with {sig.upper()}: forgeable, refused by current clients",
                   FIX["signature-hash"])
    else:
        report.add("signature-hash", PASS, f"signed with {sig.upper() or facts.key}")
    if facts.eku is None:
        report.add("eku-server-auth", PASS, "no extended key usage (valid for any purpose)")
    elif "serverAuth" in facts.eku or "anyExtendedKeyUsage" in facts.eku:
        report.add("eku-server-auth", PASS, "serverAuth extended key usage present")
    else:
        report.add("eku-server-auth", FAIL, f"extended key usage {', '.join(facts.eku)} lacks serverAuth",
                   FIX["eku-server-auth"])


def _after_tls(target: Target, opts: CheckOptions, report: CheckReport, session: SmtpSession) -> None:
    step = "ehlo-after-tls"
    try:
        ehlo = session.command(f"EHLO {opts.helo_name()}")
        _ehlo_after_tls(target, opts, report, ehlo)
        if not opts.quick:
            step = "relay-refused"
            _relay_probe(report, session)
        wants_auth = opts.auth_user is not None and opts.password is not None
        if not (wants_auth or opts.send_test):
            return
        bad = [c for c in CERT_GATE if (r := report.get(c)) is not None and r.status == FAIL]
        if bad and not opts.insecure_auth:
            # This peer may be a man in the middle: it gets neither the password nor the message (issue 10.1).
            why = f"the certificate failed {', '.join(bad)} (--insecure-auth overrides)"
            if wants_auth:
                report.add("auth", SKIP, f"credentials withheld: {why}")
            if opts.send_test:
                report.add("send-test", SKIP, f"{'credentials' if wants_auth else 'test message'} withheld: {why}")
            return
        authenticated = False
        if wants_auth:
            step = "auth"
            authenticated = _auth(opts, report, session, _auth_mechs(ehlo.ehlo_keywords()))
            if not authenticated and not opts.client_cert:
                _client_cert_behind_auth(target, opts, report)
            if bad:
                _warn_insecure(report, "auth", "credentials were sent", bad)
        if opts.send_test:
            step = "send-test"
            _send_test(opts, report, session, authenticated)
            if bad:
                _warn_insecure(report, "send-test", "the test message was sent", bad)
    except SessionError as exc:  # a late step failed; earlier results stand
        if step == "ehlo-after-tls" and (cert_stop := _client_cert_refused(target, opts, report, exc)) is not None:
            raise cert_stop from exc
        raise _fail_step(report, step, exc) from exc


def _chain_complete(opts: CheckOptions, report: CheckReport, served: list[bytes]) -> None:
    """chain-complete: the served chain must lead to a trust anchor, whatever --expect pins (issue 11.4)."""
    where = f"--cafile {opts.cafile}" if opts.cafile else "the system trust store"
    trusted = report.get("chain-trust")
    if not opts.cafile and not opts.expected_pem and trusted is not None and trusted.status == PASS:
        # OpenSSL just built the path to the system store: no need to read the store again (~50 ms).
        report.add("chain-complete", PASS, f"the served chain leads to a trust anchor in {where}")
        return
    result = chain_check.judge(served, opts.anchor_names, where)
    report.add(result.id, result.status, result.detail, result.fix)


def _client_cert_refused(target: Target, opts: CheckOptions, report: CheckReport,
                         exc: SessionError) -> _Stop | None:
    """A _Stop (client-cert-required FAIL recorded) when ``exc`` is a refusal over the client certificate."""
    result = clientcert.judge_refusal(target, opts.timeout, opts.helo_name(), exc, opts.client_cert)
    if result is None:
        return None
    report.add(result.id, result.status, result.detail, result.fix)
    return _Stop("client-cert-required")


def _client_cert_behind_auth(target: Target, opts: CheckOptions, report: CheckReport) -> None:
    """AUTH refused after TLS: say so when the server asked for a client certificate."""
    refused = report.get("auth")
    result = clientcert.judge_refused_auth(target, opts.timeout, opts.helo_name(), refused.detail if refused else "")
    if result is not None:
        report.add(result.id, result.status, result.detail, result.fix)


def _client_cert_offered(target: Target, opts: CheckOptions, report: CheckReport) -> None:
    """--client-cert was given and the session went through: say whether the server asked for it."""
    result = clientcert.judge_offered(target, opts.timeout, opts.helo_name(), opts.client_cert or "")
    report.add(result.id, result.status, result.detail)


def _warn_insecure(report: CheckReport, check_id: str, what: str, bad: list[str]) -> None:
    """--insecure-auth: a PASS becomes a loud WARN, a FAIL keeps its status but says the same."""
    result = report.get(check_id)
    if result is None:
        return
    status = FAIL if result.status == FAIL else WARN
    report.add(check_id, status, f"INSECURE: {what} despite the failed {', '.join(bad)} (--insecure-auth): "
               f"{result.detail}", "drop --insecure-auth once the certificate checks pass; change the password if "
               "this server may not be yours")


def _ehlo_after_tls(target: Target, opts: CheckOptions, report: CheckReport, ehlo: Reply) -> None:
    if ehlo.code != 250:
        report.add("ehlo-after-tls", FAIL, f"EHLO after TLS refused: {ehlo.first}", FIX["ehlo-after-tls"])
        raise _Stop("ehlo-after-tls")
    kw = ehlo.ehlo_keywords()
    problems = []
    if "STARTTLS" in kw:
        problems.append("STARTTLS offered again (RFC 3207 4.2 forbids it)")
    if target.submission and not _auth_mechs(kw):
        problems.append("AUTH not offered: clients cannot log in to submit")
    if problems:
        report.add("ehlo-after-tls", FAIL, "; ".join(problems), FIX["ehlo-after-tls"])
    else:
        auth = f"AUTH {' '.join(_auth_mechs(kw))}" if _auth_mechs(kw) else "no AUTH"
        report.add("ehlo-after-tls", PASS, f"{auth}, no STARTTLS")


def _relay_probe(report: CheckReport, session: SmtpSession) -> None:
    mail = session.command(f"MAIL FROM:<{PROBE_FROM}>")
    if mail.code >= 500:
        report.add("relay-refused", PASS, f"MAIL without AUTH refused: {mail.first}")
        return
    if mail.code != 250:
        report.add("relay-refused", WARN, f"MAIL without AUTH answered {mail.first}; relay not tested",
                   FIX["relay-refused"])
        session.command("RSET")
        return
    rcpt = session.command(f"RCPT TO:<{RELAY_RCPT}>")
    session.command("RSET")
    if rcpt.code >= 500:
        report.add("relay-refused", PASS, f"relay to {RELAY_RCPT} without AUTH refused: {rcpt.first}")
    elif rcpt.code >= 400:
        report.add("relay-refused", WARN, f"relay without AUTH answered {rcpt.first} (temporary, not a clear "
                   "refusal)", FIX["relay-refused"])
    else:
        report.add("relay-refused", FAIL, f"OPEN RELAY: RCPT TO:<{RELAY_RCPT}> accepted without AUTH "
                   f"({rcpt.first})", FIX["relay-refused"])


def _auth(opts: CheckOptions, report: CheckReport, session: SmtpSession, mechs: list[str]) -> bool:
    user, password = opts.auth_user or "", opts.password or ""
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    # Longest first: the PLAIN token contains neither, but the base64 forms must go before the raw password.
    session.secrets.extend(sorted({token, base64.b64encode(password.encode()).decode(), password},
                                  key=len, reverse=True))
    if "PLAIN" in mechs or not mechs:
        reply = session.command(f"AUTH PLAIN {token}", shown=f"AUTH PLAIN {REDACTED}")
        if reply.code == 334:
            reply = session.command(token, shown=REDACTED)
    elif "LOGIN" in mechs:
        reply = session.command("AUTH LOGIN")
        if reply.code == 334:
            reply = session.command(base64.b64encode(user.encode()).decode(), shown=REDACTED)
        if reply.code == 334:
            reply = session.command(base64.b64encode(password.encode()).decode(), shown=REDACTED)
    else:
        report.add("auth", FAIL, f"no PLAIN or LOGIN among AUTH mechanisms {' '.join(mechs)}", FIX["auth"])
        return False
    if reply.code == 235:
        report.add("auth", PASS, f"logged in as {user}")
        return True
    report.add("auth", FAIL, f"AUTH as {user} refused: {session.redact(reply.first)}", FIX["auth"])
    return False


def _send_test(opts: CheckOptions, report: CheckReport, session: SmtpSession, authenticated: bool) -> None:
    from email.utils import formatdate, make_msgid

    sender, rcpt = opts.mail_from or "", opts.rcpt_to or ""
    domain = sender.rpartition("@")[2] or "certkit.invalid"
    for cmd, wanted in ((f"MAIL FROM:<{sender}>", (250,)), (f"RCPT TO:<{rcpt}>", (250, 251)), ("DATA", (354,))):
        reply = session.command(cmd)
        if reply.code not in wanted:  # e.g. a 250 to DATA: sending the body would desynchronise the session
            session.command("RSET")
            why = "" if authenticated else " (not authenticated: pass --auth-user and --password-file)"
            report.add("send-test", FAIL, f"{cmd.split(':')[0]} refused: {reply.first}{why}", FIX["send-test"])
            return
    body = (
        f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: certkit check test message\r\n"
        f"Date: {formatdate(usegmt=True)}\r\nMessage-ID: {make_msgid('certkit', domain=domain)}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Test message from certkit check: submission to {session.host} port {session.port} works.\r\n"
    )
    session.send_raw(body.encode() + b".\r\n", f"<message: {len(body)} bytes>\n.")
    reply = session.read_reply("reply to the message")
    if reply.code == 250:
        report.add("send-test", PASS, f"message queued: {reply.first}")
    else:
        report.add("send-test", FAIL, f"message refused: {reply.first}", FIX["send-test"])


__all__ = ["ORDER", "SKIP", "CheckOptions", "audit"]
