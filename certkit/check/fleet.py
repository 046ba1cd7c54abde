"""Many targets at once: bounded concurrency, results in input order, memory flat.

Threads, not asyncio: the work is blocking socket I/O and TLS handshakes
(OpenSSL releases the GIL), and the single-target path stays free of the
asyncio import. At most ``window`` targets are in flight or waiting to be
printed, so memory does not grow with the number of targets; a slow target
at the head only delays printing, never reorders it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from certkit.check.checks import audit
from certkit.check.options import CheckOptions
from certkit.check.report import CheckReport
from certkit.check.target import Target, parse_target


@dataclass(frozen=True)
class Job:
    """One target of a fleet run, with its own options (a --targets line's name=, expect=, cafile=).

    ``options`` None means the run's options; given, they are used as they are, so make them with
    :func:`fleet_options` (no parallel probes in a fleet worker) and share them between lines
    that ask for the same trust, so their verify context is built once.
    """

    target: Target
    options: CheckOptions | None = None
    line: int | None = None  # reported in the JSON ("line")


def fleet_options(options: CheckOptions) -> CheckOptions:
    """``options`` for fleet workers: one thread per target, probes in turn, the verify context built."""
    opts = replace(options, parallel_probes=False)  # one thread per target; probes run in turn
    opts._ctx = options._ctx  # share the verify context (SSLContext is thread-safe)
    opts.verify_context()
    opts.helo_name()
    return opts


def _audit_job(job: Job, opts: CheckOptions) -> CheckReport:
    report = audit(job.target, job.options or opts)
    report.line = job.line
    return report


def run_many(
    urls: Iterable[str | Job],
    options: CheckOptions,
    concurrency: int,
    emit: Callable[[CheckReport], None],
) -> tuple[int, int]:
    """Check every URL (or :class:`Job`) with up to ``concurrency`` at a time; ``emit`` each report in
    input order.

    Returns:
        (number checked, number with a FAIL).
    """
    opts = fleet_options(options)
    window = 2 * concurrency + 2  # in flight plus finished-but-not-yet-printed
    pending: deque[Future[CheckReport]] = deque()
    total = failed = 0

    def drain_one() -> None:
        nonlocal total, failed
        report = pending.popleft().result()
        total += 1
        failed += 0 if report.ok else 1
        emit(report)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="certkit-check") as pool:
        for url in urls:
            job = Job(parse_target(url)) if isinstance(url, str) else url
            pending.append(pool.submit(_audit_job, job, opts))
            while len(pending) >= window or (pending and pending[0].done()):
                drain_one()
        while pending:
            drain_one()
    return total, failed
