"""The renewal run: decide which lineages are due, re-issue them, record the outcome.

Every due lineage goes through :func:`certkit.issuing.issue` again with its
stored settings (same names, key type, source, deploy targets and
verifications, rollback on failure), so a renewal is exactly a re-issue.

Safety, in the order things can go wrong:

- Two runs at once: the whole run holds the state lock, so a second certkit
  process waits ``Store.lock_wait`` seconds and exits 1 naming the holder.
- kill -9 mid-run: a version is complete or absent and ``live`` flips in one
  rename (store.py), so the live key and certificate always match. Before a
  lineage is touched its state gets a ``renewing`` marker naming the live
  version; the next run finds the marker and finishes the job - it re-runs
  the deploy targets when the new version already went live, or issues
  again when it did not.
- One lineage failing (CA refuses, hook fails, verification fails after
  rollback) is recorded in its ``last_renewal`` and the others still run.

Lineages are renewed concurrently by a bounded thread pool. The store lock
is re-entrant within the process and each lineage is handled by one thread,
so threads never write the same files; ACME orders are thread-safe (one
shared account and http-01 responder); what lineages do share - a server
config edited by a deploy target - is guarded by a per-resource lock
(:func:`shared_resources`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from certkit import x509 as cx
from certkit.callbacks import Clock, Echo
from certkit.clock import iso as clock_iso
from certkit.clock import utc_now
from certkit.errors import CertkitError, HeldBack
from certkit.renew import due
from certkit.renew.ari import AriFetcher, fetch_ari, needs_ari_check, refresh_ari
from certkit.renew.report import Decision, LineageResult, RenewReport, summary_line
from certkit.renew.resources import ResourceLocks, hold_http01_listeners, shared_resources
from certkit.settings import DeployTarget, LineageSettings
from certkit.store import Store

if TYPE_CHECKING:
    from typing_extensions import Unpack

IssueFn = Callable[..., Any]

DEFAULT_CONCURRENCY = 8
JITTER_MAX = 480.0  # seconds; certbot sleeps up to 8 minutes for the same reason (spread load on the CA)


def decide(store: Store, name: str, now: dt.datetime, force: bool = False) -> Decision:
    """Whether ``name`` is due at ``now``, from its live certificate and stored ARI window."""
    state = store.load_state(name)
    marker = store.unfinished(name)
    version = store.live_version(name)
    if marker is not None:
        started = marker.get("time", "an earlier run")
        by = marker.get("by", "renew")
        return Decision(name, True, f"finishing the {by} started at {started} (interrupted or not deployed)",
                        resume_from=marker.get("from_version"), resume_version=marker.get("version"))
    if version is None:
        return Decision(name, True, "no live version (an earlier issue did not finish)")
    cert = cx.read_leaf(store.live_paths(name).cert)
    if cert is None:  # missing, empty or damaged by hand or by a disk: issue a good one
        return Decision(name, True, "the live certificate is missing or unreadable")
    nb, na = cx.not_before(cert), cx.not_after(cert)
    ari = state.get("ari") if isinstance(state.get("ari"), dict) else None
    when = due.renew_after(nb, na, ari)
    revoked = due.revocation(state, cx.serial_hex(cert))
    if revoked is not None:  # a revoked certificate is replaced whatever its dates say
        return Decision(name, True, f"revoked on {revoked.get('time')} ({revoked.get('reason')})", when)
    is_due, reason = due.explain(nb, na, now, ari)
    if force:
        return Decision(name, True, "forced (--force); " + reason, when)
    return Decision(name, is_due, reason, when)


def read_settings(store: Store, names: Sequence[str]) -> tuple[dict[str, LineageSettings], dict[str, str]]:
    """Each lineage's settings, read once for the run, and those whose settings.toml is damaged or mistyped."""
    settings: dict[str, LineageSettings] = {}
    problems: dict[str, str] = {}
    for name in names:
        try:
            settings[name] = store.load_settings(name)
        except CertkitError as exc:
            problems[name] = str(exc)
    return settings, problems


# ----- running -------------------------------------------------------------

@dataclass(frozen=True)
class RenewalRun:
    """How one renewal run goes, and the seams tests swap so they neither wait nor depend on today.

    Attributes:
        force: renew even when not due.
        skip_dane_wait: make a DANE lineage's next key live without waiting for its TLSA record (warns).
        dry_run: run each due lineage's order to the end (the CA's staging directory where it
            has one) and keep nothing: no file is written, no target deployed.
        jitter: sleep a random time up to ``jitter_max`` seconds first, but
            only when some lineage is due or needs an ARI check (no CA is
            contacted otherwise, so there is no load to spread).
        concurrency: at most this many lineages renew at the same time.
        echo: progress lines from the issue pipeline (prefixed with the lineage).
        report_line: the one-line summary per lineage, printed as each finishes.
        clock, sleep, rng: the time now, the wait, the random source.
        issue_fn: the issue pipeline (default :func:`certkit.issuing.issue`).
        ari_fetcher: asks the CA for a renewal window (default :func:`fetch_ari`).
    """

    force: bool = False
    skip_dane_wait: bool = False
    dry_run: bool = False
    jitter: bool = False
    jitter_max: float = JITTER_MAX
    concurrency: int = DEFAULT_CONCURRENCY
    report_line: Echo | None = None
    echo: Echo = print
    clock: Clock = utc_now
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random | None = None
    issue_fn: IssueFn | None = None
    ari_fetcher: AriFetcher = fetch_ari


class RenewalOptions(TypedDict, total=False):
    """The fields of :class:`RenewalRun`, as keywords of :func:`run`."""

    force: bool
    skip_dane_wait: bool
    dry_run: bool
    jitter: bool
    jitter_max: float
    concurrency: int
    echo: Echo
    report_line: Echo | None
    clock: Clock
    sleep: Callable[[float], None]
    rng: random.Random | None
    issue_fn: IssueFn | None
    ari_fetcher: AriFetcher


class _Output:
    """Progress and summary lines from many threads, written one whole line at a time."""

    def __init__(self, renewal: RenewalRun) -> None:
        self._lock = threading.Lock()
        self._echo = renewal.echo
        self._report_line = renewal.report_line
        self._order: list[str] = []  # due lineages, in run order: their summaries come out in it
        self._waiting: dict[str, LineageResult] = {}

    def say(self, line: str) -> None:
        with self._lock:
            self._echo(line)

    def expect(self, names: Sequence[str]) -> None:
        """Summaries of ``names`` are printed in this order, each as soon as those before it are done."""
        with self._lock:
            self._order = list(names)

    def summary(self, result: LineageResult) -> None:
        if self._report_line is None:
            return
        with self._lock:
            if result.name not in self._order:
                self._report_line(summary_line(result))
                return
            self._waiting[result.name] = result
            while self._order and self._order[0] in self._waiting:
                self._report_line(summary_line(self._waiting.pop(self._order.pop(0))))


@dataclass
class _Session:
    """What every lineage's renewal in one run shares."""

    store: Store
    renewal: RenewalRun
    pipeline: IssueFn
    out: _Output
    locks: ResourceLocks = field(default_factory=ResourceLocks)


def run(store: Store, names: Sequence[str] = (), **options: Unpack[RenewalOptions]) -> RenewReport:
    """Renew every due lineage (all of them, or ``names``).

    The keywords are the fields of :class:`RenewalRun`; :func:`run_renewal`
    takes one directly.

    Raises:
        NotFoundError: a named lineage does not exist (exit 2).
        LockError: another certkit process held the lock for too long (exit 1).
    """
    return run_renewal(store, names, RenewalRun(**options))


def run_renewal(store: Store, names: Sequence[str], renewal: RenewalRun) -> RenewReport:
    """:func:`run` with its settings in one :class:`RenewalRun`."""
    if renewal.issue_fn is None:
        from certkit.issuing import issue

        pipeline: IssueFn = issue
    else:
        pipeline = renewal.issue_fn
    wanted = list(dict.fromkeys(names)) or store.names()
    for name in wanted:
        store.require(name)
    session = _Session(store, renewal, pipeline, _Output(renewal))
    _wait_jitter(session, wanted)
    report = RenewReport(dry_run=renewal.dry_run)
    lock = contextlib.nullcontext() if renewal.dry_run else store.lock()
    with lock:
        now = renewal.clock()
        settings, problems = read_settings(store, wanted)
        _refresh_stale_windows(session, settings, now)
        results: dict[str, LineageResult] = {}
        for name, problem in problems.items():
            # A lineage whose settings cannot be read would never renew again: say so every run.
            results[name] = LineageResult(name, "failed", "its settings cannot be read", None, problem)
            session.out.summary(results[name])
        decisions = {name: decide(store, name, now, renewal.force) for name in wanted if name not in results}
        todo = _report_undue(session, decisions, results)
        if todo:
            results.update(_renew_due(session, [decisions[n] for n in todo], settings))
    report.results = [results[n] for n in wanted]
    return report


def _wait_jitter(session: _Session, wanted: Sequence[str]) -> None:
    """--jitter: wait a random time before contacting the CA, when this run will contact it at all."""
    store, renewal = session.store, session.renewal
    if not (renewal.jitter and not renewal.dry_run and renewal.jitter_max > 0):
        return
    # Before the state lock: a quick look of its own (settings are read again once the lock is held).
    now = renewal.clock()
    if any(decide(store, n, now, renewal.force).due or needs_ari_check(store, n, now) for n in wanted):
        delay = (renewal.rng or random.Random()).uniform(0, renewal.jitter_max)
        session.out.say(f"waiting {delay:.0f} s before contacting the CA (--jitter)")
        renewal.sleep(delay)


def _refresh_stale_windows(session: _Session, settings: dict[str, LineageSettings], now: dt.datetime) -> None:
    """Ask the CA again for every renewal window (ARI) that is due a check, in parallel."""
    store, renewal = session.store, session.renewal
    if renewal.dry_run or renewal.force:
        return
    stale = [name for name, lineage in settings.items() if needs_ari_check(store, name, now, lineage)]
    if stale:  # one or two HTTPS requests each: ask in parallel
        def refresh(name: str) -> None:
            refresh_ari(store, name, now, renewal.ari_fetcher, session.out.say, renewal.rng, settings[name])

        with ThreadPoolExecutor(max_workers=max(1, min(renewal.concurrency, len(stale)))) as pool:
            list(pool.map(refresh, stale))


def _report_undue(session: _Session, decisions: dict[str, Decision],
                  results: dict[str, LineageResult]) -> list[str]:
    """Record (and print) the lineages that are not due, or only due in a dry run; the ones to renew."""
    todo: list[str] = []
    for name, d in decisions.items():
        if not d.due:
            results[name] = LineageResult(name, "not_due", d.reason,
                                          renew_after=clock_iso(d.renew_after) if d.renew_after else None)
            session.out.summary(results[name])
        else:
            todo.append(name)
    return todo


def _renew_due(session: _Session, due_now: list[Decision],
               settings: dict[str, LineageSettings]) -> dict[str, LineageResult]:
    """Renew the due lineages, up to ``concurrency`` at a time; summaries in name order as they complete."""
    one = dry_run_one if session.renewal.dry_run else renew_one

    def work(decision: Decision) -> LineageResult:
        result = one(session, decision, settings[decision.name])
        session.out.summary(result)
        return result

    session.out.expect([d.name for d in due_now])  # a stable order in the journal, however threads finish
    workers = max(1, min(session.renewal.concurrency, len(due_now)))
    with contextlib.ExitStack() as listeners:
        if workers == 1:
            return {d.name: work(d) for d in due_now}
        hold_http01_listeners([settings[d.name] for d in due_now], listeners)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="certkit-renew") as pool:
            return {d.name: result for d, result in zip(due_now, pool.map(work, due_now), strict=True)}


@dataclass
class _Attempt:
    """One lineage's renewal as it goes: the version it ended with, and the error if it failed."""

    from_version: int | None
    version: int | None = None
    error: str | None = None
    held_back: bool = False


def renew_one(session: _Session, decision: Decision, settings: LineageSettings) -> LineageResult:
    """Renew one due lineage and record the outcome in its ``last_renewal`` (never raises CertkitError)."""
    store, name = session.store, decision.name
    started = time.monotonic()
    attempt = _Attempt(from_version=decision.resume_from)
    try:
        _renew_locked(session, decision, settings, attempt)
    except CertkitError as exc:
        attempt.error, attempt.held_back = str(exc), isinstance(exc, HeldBack)
    except Exception as exc:  # a bug; one lineage's bug must not stop the others' renewals
        attempt.error = f"unexpected {type(exc).__name__}: {exc}"
        session.out.say(f"{name}: " + "".join(traceback.format_exception(exc)).rstrip())
    elapsed = time.monotonic() - started
    if attempt.error is not None:
        attempt.version = store.live_version(name)
    error = _record_renewal(session, name, attempt)
    if error is not None:
        status = "held_back" if attempt.held_back and error == attempt.error else "failed"
        return LineageResult(name, status, decision.reason, attempt.version, error, elapsed=elapsed)
    return _renewed(store, decision, attempt.version, elapsed)


def dry_run_one(session: _Session, decision: Decision, settings: LineageSettings) -> LineageResult:
    """A due lineage's renewal up to the new certificate, which is discarded: nothing written, nothing deployed."""
    from certkit.issuing import dry_run

    started = time.monotonic()
    try:
        made = dry_run(session.store, settings, echo=lambda line: session.out.say(f"{decision.name}: {line}"))
    except CertkitError as exc:
        return LineageResult(decision.name, "failed", decision.reason, error=str(exc),
                             elapsed=time.monotonic() - started)
    not_after = clock_iso(cx.not_after(cx.load_chain(made.cert_pem)[0]))
    where = "a self-signed one" if made.source == "self-signed" else f"from {made.source}"
    return LineageResult(decision.name, "due", f"{decision.reason}; test certificate {where} discarded",
                         not_after=not_after, elapsed=time.monotonic() - started)


def _renew_locked(session: _Session, decision: Decision, settings: LineageSettings, attempt: _Attempt) -> None:
    """Under the state lock and the lineage's shared-resource locks: finish an owed deploy, or issue again."""
    store, name = session.store, decision.name
    say = session.out.say

    def echo(line: str) -> None:
        for part in str(line).splitlines() or [""]:
            say(f"{name}: {part}")

    with store.lock(), session.locks.hold(shared_resources(settings)):
        live = store.live_version(name)
        if live is not None and _only_deploy_owed(decision, live):
            # The new version went live before the interruption: only its deploy is unfinished.
            from certkit.issuing import run_deploy

            marker = store.unfinished(name) or {}
            run_deploy(store, settings, decision.resume_from, owed_targets(marker),
                       [str(u) for u in marker.get("verify") or []], echo)
            store.clear_unfinished(name)
            attempt.version = live
            return
        old_ari = store.load_state(name).get("ari")
        attempt.from_version = live
        store.mark_unfinished(name, "renew", None, live, clock_iso(session.renewal.clock()))
        extra = {"skip_dane_wait": True} if session.renewal.skip_dane_wait and settings.dane is not None else {}
        attempt.version = session.pipeline(store, settings, echo=echo, **extra).version
        if old_ari and store.load_state(name).get("ari") == old_ari:
            # The window belonged to the replaced certificate; the CA gave none for the new
            # one, so forget it (the next run asks again) rather than renew again at once.
            store.update_state(name, ari=None)


def _record_renewal(session: _Session, name: str, attempt: _Attempt) -> str | None:
    """Write ``last_renewal`` and clear the marker unless a deploy is still owed; the error, if any."""
    store, error, version = session.store, attempt.error, attempt.version
    when = clock_iso(session.renewal.clock())
    record = {"time": when, "ok": error is None, "error": error, "version": version}
    # Done, or failed with the previous version restored: nothing left to finish. A failure that
    # left a new version live (its rollback failed too) keeps the marker, so the next run deploys again.
    from_version = attempt.from_version
    unfinished = error is not None and from_version is not None and version not in (None, from_version)
    try:
        with store.lock():
            if not unfinished:
                store.clear_unfinished(name)
            store.update_state(name, last_renewal=_with_history(store.load_state(name).get("last_renewal"), record))
    except (CertkitError, OSError) as exc:
        error = error or f"cannot record the renewal: {exc}"
    return error


def _with_history(previous: Any, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` plus ``last_success`` (time of the last successful renewal) and ``consecutive_failures``."""
    before = previous if isinstance(previous, dict) else {}
    if record["ok"]:
        return {**record, "last_success": record["time"], "consecutive_failures": 0}
    earlier = int(before.get("consecutive_failures") or (0 if before.get("ok", True) else 1))
    last_success = before.get("last_success") or (before.get("time") if before.get("ok") else None)
    return {**record, "last_success": last_success, "consecutive_failures": earlier + 1}


def _renewed(store: Store, decision: Decision, version: int | None, elapsed: float) -> LineageResult:
    """The result of a successful renewal, with the new certificate's expiry and next renewal time."""
    name = decision.name
    not_after = renew_after = None
    with contextlib.suppress(Exception):
        cert = cx.load_chain(store.live_paths(name).cert.read_bytes())[0]
        not_after = clock_iso(cx.not_after(cert))
        ari = store.load_state(name).get("ari")
        renew_after = clock_iso(due.renew_after(cx.not_before(cert), cx.not_after(cert),
                                              ari if isinstance(ari, dict) else None))
    return LineageResult(name, "renewed", decision.reason, version, None, not_after, renew_after, elapsed)


def owed_targets(marker: dict[str, Any]) -> list[DeployTarget]:
    """The deploy targets an interrupted run was given (a damaged entry is skipped)."""
    return [DeployTarget(str(t["target"]), dict(t.get("options") or {}))
            for t in marker.get("targets") or [] if isinstance(t, dict) and isinstance(t.get("target"), str)]


def _only_deploy_owed(decision: Decision, live: int) -> bool:
    """Whether an interrupted run already made its new version live, so only the deploy is left."""
    if decision.resume_version is not None:
        return live == decision.resume_version and live != decision.resume_from
    # A marker from an older certkit records only the version it started from.
    return decision.resume_from is not None and live != decision.resume_from
