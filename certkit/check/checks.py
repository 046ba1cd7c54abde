"""The audit of one endpoint: the main session and the side probes, run within one budget.

:func:`audit` owns the orchestration. The main session follows what a
careful telnet user would type - the steps before TLS are
:mod:`certkit.check.before_tls`, the certificate checks
:mod:`certkit.check.certchecks`, EHLO again, relay, AUTH and the test message
:mod:`certkit.check.after_tls` - and records it as the transcript. The TLS
version, weak-suite and STARTTLS-injection probes run on their own
connections in parallel threads; the raw-hello protocol probes
(:mod:`certkit.check.tlsfacts`) share one thread, one connection at a time.
Results are sorted in :data:`~certkit.check.checklist.ORDER`; every check
has a stable id (docs/check.md).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable

from certkit.check import certinfo, chainfacts, dane, probes, tlsfacts
from certkit.check.after_tls import after_tls, client_cert_offered
from certkit.check.before_tls import Leg, NoSharedSuite, open_broad, open_live
from certkit.check.certchecks import certificate_checks, chain_complete
from certkit.check.checklist import ORDER, Stop, applicable
from certkit.check.options import CheckOptions
from certkit.check.report import FAIL, PASS, SKIP, UNKNOWN, CheckReport, CheckResult
from certkit.check.session import SmtpSession, peer_chain_der
from certkit.check.suites import list_accepted
from certkit.check.target import Target
from certkit.check.target_budget import Budget, applied, connection_limit, deadline_fails


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
    side = _SideProbes(target, opts, helo, budget)
    stopped, timed_out = _run_main(target, opts, report, budget)
    handshake = report.get("tls-handshake")
    # A server refusing for want of a client certificate does speak TLS: its probe answers still count.
    cert_stop = stopped == "client-cert-required"
    tls_ok = (handshake is not None and handshake.status == PASS) or cert_stop
    if not opts.quick:
        # A probe proves something only where the main handshake worked or failed for a reason of its own
        # (TLS 1.0 only); after a timeout it would only wait as long again (issue 10.11).
        useful = tls_ok or (stopped == "tls-handshake" and not timed_out)
        results = side.finish(useful)
        why = budget.message() if budget.expired() else f"{stopped or 'tls-handshake'} failed"
        _record_probes(report, results, tls_ok, cert_stop, why)
        report.skip(["tls10-refused", "tls11-refused", "weak-ciphers-refused", "starttls-injection",
                     *tlsfacts.PROBE_IDS], why)
    rank = {cid: i for i, cid in enumerate(ORDER)}
    report.checks.sort(key=lambda c: rank.get(c.id, len(ORDER)))
    _after_run(target, opts, report, budget)
    report.elapsed_ms = round((time.perf_counter() - started) * 1000)
    return report


class _SideProbes:
    """The side probes of one audit: in threads beside the main session, or after it (parallel_probes off)."""

    def __init__(self, target: Target, opts: CheckOptions, helo: str, budget: Budget) -> None:
        self.parallel, self.budget = opts.parallel_probes, budget
        self.results: list[CheckResult] = []
        self.threads: list[threading.Thread] = []
        self.jobs: list[Callable[[], CheckResult]] = [] if opts.quick else [
            lambda: probes.probe_old_tls(target, opts.timeout, helo, ssl.TLSVersion.TLSv1, "tls10-refused",
                                         "TLS 1.0", opts.client_pair()),
            lambda: probes.probe_old_tls(target, opts.timeout, helo, ssl.TLSVersion.TLSv1_1, "tls11-refused",
                                         "TLS 1.1", opts.client_pair()),
            lambda: probes.probe_weak_ciphers(target, opts.timeout, helo),
            lambda: probes.probe_injection(target, opts.timeout, helo, opts.client_pair()),
            *tlsfacts.CoverageProbe(target, opts.timeout, helo).jobs(),  # issue 11: one thread's connections
        ]
        if self.jobs and self.parallel:
            budget.main_running = True  # the main session's slot is kept for it
            for job in self.jobs:
                t = threading.Thread(target=lambda j=job: self.results.append(_probe_within(j, budget)), daemon=True)
                t.start()
                self.threads.append(t)

    def finish(self, useful: bool) -> list[CheckResult]:
        """The probes' results: the threads joined (cancelled first when not ``useful``), or the probes run now."""
        if self.parallel:
            if not useful:
                self.budget.cancel_probes()
            _join(self.threads, self.budget)
        elif useful:
            self.results.extend(_probe_within(job, self.budget) for job in self.jobs)
        return self.results


def _run_main(target: Target, opts: CheckOptions, report: CheckReport, budget: Budget) -> tuple[str, bool]:
    """The main session within the budget: (the check it stopped at, or "", and whether a timeout stopped it)."""
    stopped, timed_out = "", False
    try:
        with applied(budget):
            _main_session(target, opts, report)
    except Stop as stop:
        stopped, timed_out = str(stop.args[0]), stop.args[1:] == ("timeout",)
        report.skip(applicable(target, opts), budget.message() if budget.expired() else f"{stopped} failed")
    finally:
        budget.main_finished()
    return stopped, timed_out


def _record_probes(report: CheckReport, results: list[CheckResult], tls_ok: bool, cert_stop: bool, why: str) -> None:
    """The side probes' results into the report, judged by how far the main session got."""
    for result in results:
        # Without a working handshake a probe's "refused" proves nothing: keep only what it found wrong
        # (a server that speaks nothing but TLS 1.0 fails the main handshake and the TLS 1.0 probe).
        if cert_stop and probes.inconclusive_without_client_cert(result):
            result = CheckResult(result.id, UNKNOWN, "unknown: a server that wants a client certificate refuses "
                                 f"this probe anyway (saw: {result.detail}); rerun with --client-cert")
        elif not tls_ok and result.status != FAIL:
            result = CheckResult(result.id, SKIP, f"not run: {why}")
        report.checks.append(result)


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


def _main_session(target: Target, opts: CheckOptions, report: CheckReport) -> None:
    session = SmtpSession(target.host, target.port, opts.timeout, report.transcript, main=True)
    broad = False
    try:
        try:
            tls = open_live(Leg(target, opts, report, session))
        except NoSharedSuite as strict:
            session.close()
            session.note(f"*  strict handshake failed ({strict.error.message}); reconnecting with legacy suites "
                         "offered too, to see the certificate")
            session = SmtpSession(target.host, target.port, opts.timeout, report.transcript, main=True)
            broad = True
            tls = open_broad(Leg(target, opts, report, session, broad=True), strict.error)
        if tls is None:  # certificate refused: look at it over an unverified connection
            session.close()
            session.note("*  certificate not accepted; reconnecting without verification to inspect it")
            session = SmtpSession(target.host, target.port, opts.timeout, report.transcript, main=True)
            tls = open_live(Leg(target, opts, report, session, verified=False, broad=broad))
            assert tls is not None
        chain = peer_chain_der(tls)
        try:
            facts = certinfo.from_der(chain[0], len(chain))
        except (ValueError, IndexError) as exc:
            # OpenSSL took this certificate in the handshake: not reading it is certkit's limit (issue 11.10).
            report.skip(applicable(target, opts), f"certkit cannot read the served certificate ({exc}); OpenSSL "
                        "accepted it: inspect it with openssl s_client -showcerts")
            raise Stop("certificate", "unreadable") from exc
        session.note(f"*  TLS {tls.version()} {(tls.cipher() or ('?',))[0]}")
        for line in facts.summary_lines():
            session.note(f"*  {line}")
        report.certificate = facts.to_json()
        chain_complete(opts, report, chain)
        if opts.dane is not None:  # before the PKIX checks: DANE stands on its own (RFC 7672 section 3)
            report.checks.append(dane.check(opts.name or target.host, target.port, chain, opts.dane))
        certificate_checks(target, opts, report, facts)
        for result in chainfacts.certificate_findings(chain, facts.key_kind):
            report.add(result.id, result.status, result.detail, result.fix)
        after_tls(target, opts, report, session)
        if opts.client_cert and report.get("client-cert-required") is None:
            client_cert_offered(target, opts, report)
        session.quit()
    finally:
        session.close()


__all__ = ["ORDER", "SKIP", "CheckOptions", "audit"]
