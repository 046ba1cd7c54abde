"""`certkit renew` (click command; the work lives in certkit.renew)."""

from __future__ import annotations

import sys
from typing import Any

import click

from certkit.cli.completion import complete_lineage
from certkit.errors import HeldBack, OperationError


def _err(line: str) -> None:
    click.echo(line, err=True)


class _Printer:
    """Progress to stderr, a summary line per lineage to stdout, and - on a terminal, for several
    lineages - a status line (`[renew: 3 of 50 done, 1 failed]`) erased before every other line."""

    def __init__(self, total: int, quiet: bool, as_json: bool) -> None:
        from certkit.progress import StatusLine

        self.total, self.quiet = total, quiet
        self.done = self.failed = 0
        on_terminal = sys.stderr.isatty() and total > 1 and not quiet and not as_json
        raw = (lambda text: click.echo(text, err=True, nl=False)) if on_terminal else None
        # Off a terminal the status line says nothing: the summary lines already are the progress.
        self.status = StatusLine(lambda _line: None, raw)

    def progress(self, text: str) -> None:
        if not self.quiet:
            self.status.clear()
            _err(text)

    def line(self, text: str) -> None:
        self.done += 1
        self.failed += text.startswith("FAILED")
        if not (self.quiet and text.startswith("not due")):
            self.status.clear()
            click.echo(text)
        if self.done < self.total:
            self.status.update(f"[renew: {self.done} of {self.total} done, {self.failed} failed]")


@click.command("renew")
@click.argument("lineages", nargs=-1, shell_complete=complete_lineage)
@click.option("--force", is_flag=True, help="Renew even when not due (a DANE lineage still waits for its TLSA).")
@click.option("--skip-dane-wait", is_flag=True,
              help="DANE lineages: make the next key live without waiting for its TLSA record (warns; "
                   "DANE clients may refuse mail until the record is visible).")
@click.option("--dry-run", is_flag=True,
              help="Test the renewal of what is due: the whole ACME order (staging CA where there is one), "
                   "nothing stored or deployed.")
@click.option("--jitter", is_flag=True,
              help="Wait a random time first when something is due (for timers; spreads load on the CA).")
@click.option("--jitter-max", type=click.FloatRange(0, 86400), default=None, metavar="SECONDS",
              envvar="CERTKIT_JITTER_MAX", help="Longest --jitter wait (default 480; env CERTKIT_JITTER_MAX).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=None,
              help="Lineages renewed at the same time (default 8).")
@click.option("--quiet", "-q", is_flag=True, help="Print only renewals and failures (for cron, which mails output).")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"renewed": [...], "not_due": [...], "failed": [{"name", "error"}]}.')
@click.pass_context
def renew_command(ctx: click.Context, lineages: tuple[str, ...], force: bool, skip_dane_wait: bool, dry_run: bool,
                  jitter: bool,
                  jitter_max: float | None, concurrency: int | None, quiet: bool, as_json: bool) -> None:
    """Renew due lineages (all, or LINEAGE...), deploy, verify, roll back on failure.

    Due when under 1/3 of the certificate's lifetime is left (1/2 for
    lifetimes under 10 days) or when the CA's renewal window (ARI) has
    opened. One line per lineage; exit 1 when any lineage failed or was
    held back (a DANE lineage whose next key's TLSA record is not yet
    visible for TTL x 2); the others still run and those keep their
    previous certificate.
    """
    from certkit.cli.context import echo_json, store_from
    from certkit.renew import run as renew

    store = store_from(ctx)
    kwargs: dict[str, Any] = {}
    if jitter_max is not None:
        kwargs["jitter_max"] = jitter_max
    if concurrency is not None:
        kwargs["concurrency"] = concurrency
    # --quiet is for cron, which mails any output: progress (the --jitter wait, which an ACME
    # lineage's ARI check triggers every run, deploy steps) is dropped; the summary line of a
    # renewal or failure, which carries the reason, and the final error stay.
    printer = _Printer(len(lineages or store.names()), quiet, as_json)
    try:
        report = renew.run(store, lineages, force=force, skip_dane_wait=skip_dane_wait, dry_run=dry_run,
                           jitter=jitter, echo=printer.progress, report_line=None if as_json else printer.line,
                           **kwargs)
    finally:
        printer.status.done()
    if as_json:
        echo_json(report.to_json())
    elif quiet:
        pass
    elif not report.results:
        click.echo(f"No certificates in {store.home} yet - run `certkit issue --cn HOST`.")
    else:
        counts = [f"{len(report.names('renewed'))} renewed", f"{len(report.names('not_due'))} not due",
                  f"{len(report.failed)} failed"] + ([f"{len(report.held_back)} held back"] if report.held_back else [])
        if dry_run:
            counts.insert(0, f"{len(report.names('due'))} due")
        click.echo(", ".join(counts) + (" (dry run)" if dry_run else ""))
    failed = report.failed
    if report.held_back and not failed:
        held = report.held_back
        raise HeldBack(f"renewal held back for {', '.join(r.name for r in held)}: a DANE key goes live only after "
                       "its TLSA record has been visible for TTL x 2",
                       "each line above says what is missing; the next timer run retries (or "
                       "`certkit renew --skip-dane-wait`, which may cost mail)")
    failed = failed + report.held_back
    if failed:
        names = ", ".join(r.name for r in failed)
        raise OperationError(
            f"renewal failed for {len(failed)} of {len(report.results)} lineage(s): {names}",
            "each line above says which version stays live; fix the cause and run "
            f"`certkit renew {failed[0].name}` (or wait for the next timer run)",
        )
