"""`certkit check` (click command; the work lives in certkit.check).

Imports stay light: certkit.check uses only socket/ssl until a certificate
must be parsed in depth, so a check starts about as fast as Python does.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from certkit.errors import CheckFailed, LockError, UsageError


@click.command("check")
@click.argument("urls", nargs=-1, metavar="URL...")
@click.option("--name", default=None, metavar="HOST",
              help="Name the certificate must carry as a SAN (default: the URL host).")
@click.option("--cafile", type=click.Path(dir_okay=False), default=None,
              help="Trust anchors (PEM) instead of the system store, e.g. a private CA.")
@click.option("--expect", default=None, metavar="LINEAGE|CERTFILE|sha256:HEX",
              help="The certificate that must be served (a lineage's live one, a PEM/DER file, or its "
                   "SHA-256 fingerprint); a lineage or file is also the trust anchor unless --cafile is given.")
@click.option("--client-cert", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Client certificate (PEM) to present when the server asks for one.")
@click.option("--client-key", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Private key (PEM) of --client-cert (default: read from the --client-cert file).")
@click.option("--auth-user", default=None, metavar="USER", help="Log in with AUTH as USER after TLS.")
@click.option("--password-file", type=click.Path(dir_okay=False), default=None,
              help="File whose first line is the AUTH password (else a prompt on a terminal).")
@click.option("--insecure-auth", is_flag=True,
              help="Send the password and test message even when the certificate failed trust, name or pin "
                   "checks (a man in the middle would get them).")
@click.option("--send-test", is_flag=True, help="Send one small test message (needs --from and --to).")
@click.option("--from", "mail_from", default=None, metavar="ADDR", help="Envelope and header sender of --send-test.")
@click.option("--to", "rcpt_to", default=None, metavar="ADDR", help="Recipient of --send-test.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (an array for several targets); as --format json.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "prometheus"]), default=None,
              help="Output: text (default), json (as --json) or prometheus (the certkit_check_* series of "
                   "every target, for a fleet check).")
@click.option("--record/--no-record", default=None,
              help="Keep each endpoint's result in the state directory for `certkit metrics` "
                   "[default: when the state directory exists].")
@click.option("--timeout", type=click.FloatRange(0.05, 600), default=10.0, show_default=True, metavar="SECONDS",
              help="Seconds allowed for each step (connect, banner, each reply, handshake).")
@click.option("--deadline", type=click.FloatRange(0.05, 3600), default=None, metavar="SECONDS",
              help="Seconds for the whole of one target, side probes and retries included "
                   "[default: 3 x --timeout]; checks not done by then are reported as cut by it.")
@click.option("--max-connections", type=click.IntRange(1, 64), default=2, show_default=True, metavar="N",
              help="Connections open to one target at the same time (servers limit them per address).")
@click.option("--targets", "targets_file", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="File with one target a line ('-' for stdin; # comments allowed): URL [name=HOST] "
                   "[expect=LINEAGE|CERTFILE|sha256:HEX] [cafile=FILE] [starttls|submission|smtps|submissions], "
                   "the options replacing --name, --expect, --cafile for that line.")
@click.option("--concurrency", type=click.IntRange(1, 1000), default=20, show_default=True, metavar="N",
              help="Targets checked at the same time.")
@click.option("--strict", is_flag=True, help="Also WARN on RSA 2048 keys.")
@click.option("--quick", is_flag=True,
              help="Only the session up to EHLO after TLS (certificate and STARTTLS), no side probes.")
@click.option("--helo", default=None, metavar="NAME", help="Name certkit gives in EHLO.")
@click.option("--dane", is_flag=True,
              help="Also check the TLSA records at _PORT._tcp.HOST (HOST: --name or the URL host) against the "
                   "served chain; DNSSEC required.")
@click.option("--resolver", default=None, metavar="HOST:PORT",
              help="Validating resolver for --dane and --mta-sts (default: the system's first resolver).")
@click.option("--dnssec-anchor", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Validate --dane answers against these DS/DNSKEY records instead of trusting the AD bit.")
@click.option("--mta-sts", "mta_sts", default=None, metavar="DOMAIN",
              help="Check DOMAIN's MTA-STS policy (fetched over validated HTTPS) and that each MX (the URLs, "
                   "else DOMAIN's MX records) is covered and serves a certificate valid for its name.")
@click.option("--policy-url", default=None, metavar="URL",
              help="--mta-sts: fetch the policy from URL instead of https://mta-sts.DOMAIN/.well-known/mta-sts.txt "
                   "(a staging server).")
@click.option("--transcript/--no-transcript", default=None,
              help="Show the S:/C: session (default: on for one target, off for several).")
@click.pass_context
def check_command(ctx: click.Context, /, urls: tuple[str, ...], **opts: Any) -> None:
    """Audit SMTP servers: the STARTTLS session, certificate, TLS versions, AUTH and relay policy.

    URL is smtp://HOST[:25] (STARTTLS), submission://HOST[:587] (STARTTLS +
    submission policy), smtps://HOST[:465] (implicit TLS) or HOST:PORT.
    Exit status 1 when any check FAILs, 2 on bad usage.
    """
    run_check(ctx, urls, opts)


def _read_password(path: str | None, user: str | None) -> str | None:
    if user is None:
        if path:
            raise UsageError("--password-file needs --auth-user", "add --auth-user USER")
        return None
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read --password-file {path}: {exc.strerror or exc}",
                             "give a readable file whose first line is the password") from exc
        except UnicodeDecodeError:  # the message names the file only, never its bytes (from None: no chained bytes)
            raise UsageError(f"--password-file {path} is not UTF-8 text",
                             "save the password as UTF-8 on the file's first line") from None
        lines = text.splitlines()
        if not lines or not lines[0]:
            raise UsageError(f"--password-file {path} is empty", "put the password on its first line")
        return lines[0]
    if sys.stdin.isatty():
        return str(click.prompt(f"Password for {user}", hide_input=True))
    raise UsageError("--auth-user needs a password", "pass --password-file FILE (never the password itself)")


def _check_client_cert(cert: str | None, key: str | None) -> None:
    """--client-cert/--client-key must load as a matching pair: exit 2 with the reason, never a traceback."""
    import ssl

    if cert is None:
        if key is not None:
            raise UsageError("--client-key needs --client-cert", "add --client-cert FILE (the certificate, PEM)")
        return
    for flag, path in (("--client-cert", cert), ("--client-key", key)):
        if path is not None:
            try:
                Path(path).read_bytes()
            except OSError as exc:
                raise UsageError(f"cannot read {flag} {path}: {exc.strerror or exc}",
                                 f"give a readable PEM file to {flag}") from None

    if key is None and b"PRIVATE KEY-----" not in Path(cert).read_bytes():
        raise UsageError(f"--client-cert {cert} holds no private key", "add --client-key FILE (its key, PEM)")

    def no_passphrase() -> bytes:
        raise UsageError(f"the key of --client-cert {cert} is encrypted",
                         "give an unencrypted key file (mode 0600) with --client-key")

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key, password=no_passphrase)
    except ssl.SSLError as exc:
        why = "the key does not match the certificate" if "MISMATCH" in str(exc).upper() else \
            "no PEM certificate and private key could be read"
        raise UsageError(f"--client-cert {cert}{f' / --client-key {key}' if key else ''}: {why}",
                         "give the client certificate and its own private key, both PEM") from None


def run_check(ctx: click.Context, urls: tuple[str, ...], opts: dict[str, Any]) -> None:
    """Validate options, run the checks, print, record, exit."""
    from certkit.check import parse_target
    from certkit.cli import check_dns
    from certkit.cli.check_targets import LineOptions

    if check_dns.mta_sts_only(urls, opts):
        check_dns.run_mta_sts(opts, list(urls), lambda text: click.echo(colour(text)))
        return
    _check_flags(urls, opts)
    fmt = _output_format(opts)
    many = opts["targets_file"] is not None or len(urls) > 1
    _check_targets(urls, None, None)  # the command line's URLs first; the list once its options can load
    _check_command_values(opts)
    _check_name(opts["name"])
    options, lineage, store = _check_options(ctx, opts)
    out = _Output(fmt == "json", many, opts["transcript"] if opts["transcript"] is not None else not many, lineage,
                  source="stdin" if opts["targets_file"] == "-" else opts["targets_file"],
                  fmt=fmt, keep=fmt == "prometheus" or _record_wanted(ctx, opts["record"]))
    if many:
        lines = LineOptions(ctx, options)
        _check_targets(urls, opts["targets_file"], lines)  # each line's expect=/cafile= loads, before any connection
        _run_many(urls, opts, lines, out)
    else:
        live = bool(out.show_transcript) and fmt == "text" and sys.stdout.isatty()
        report = _audit_one(parse_target(urls[0]), options, live)
        if live:
            out.show_transcript = False  # already on the screen
        out.emit(report, 0)
    if fmt == "prometheus":
        from certkit.metrics import endpoint_families
        from certkit.promtext import write

        write(endpoint_families(out.summaries), lambda text: click.echo(text, nl=False))
    if lineage and store is not None:
        _record(store, lineage, out.last)
    if _record_wanted(ctx, opts["record"]):
        _record_endpoints(ctx, out.summaries)
    _raise_failures(out)


def _output_format(opts: dict[str, Any]) -> str:
    """--format, with --json as its json spelling (both given: they must agree)."""
    fmt = opts["fmt"]
    if opts["as_json"] and fmt not in (None, "json"):
        raise UsageError(f"--json and --format {fmt} contradict each other", "give one of them")
    return "json" if opts["as_json"] else (fmt or "text")


def _record_wanted(ctx: click.Context, wanted: bool | None) -> bool:
    """--record / --no-record; by default, record when the state directory exists."""
    from certkit.cli.context import home_from

    return wanted if wanted is not None else home_from(ctx).is_dir()


def _record_endpoints(ctx: click.Context, summaries: dict[str, dict[str, Any]]) -> None:
    """Keep the endpoints' results for `certkit metrics`."""
    if not summaries:
        return
    from certkit import endpoints
    from certkit.cli.context import store_from
    from certkit.clock import utc_now

    store = store_from(ctx)
    store.lock_wait = min(store.lock_wait, 5.0)
    try:
        with store.lock():
            endpoints.record(store, summaries, utc_now())
    except LockError:
        click.echo(f"note: another certkit process holds {store.home}; the results were not recorded", err=True)
    except OSError as exc:
        click.echo(f"note: could not record the results in {store.home}: {exc}", err=True)


def _check_flags(urls: tuple[str, ...], opts: dict[str, Any]) -> None:
    """Targets, --send-test with its addresses, --cafile: given as they must be (exit 2 otherwise)."""
    targets_file = opts["targets_file"]
    if not urls and not targets_file:
        raise UsageError("no target given", "certkit check submission://mail.example.com (or --targets FILE)")
    if targets_file and targets_file != "-" and not Path(targets_file).is_file():
        raise UsageError(f"--targets {targets_file}: no such file", "give a file with one URL a line")
    if opts["send_test"] and not (opts["mail_from"] and opts["rcpt_to"]):
        raise UsageError("--send-test needs --from ADDR and --to ADDR", "add both addresses")
    if not opts["send_test"] and (opts["mail_from"] or opts["rcpt_to"]):
        # Without --send-test nothing is sent: say so rather than let the user believe a message went out.
        raise UsageError("--from and --to are for --send-test, which was not given", "add --send-test to send one")
    if opts["cafile"] and not Path(opts["cafile"]).is_file():
        raise UsageError(f"--cafile {opts['cafile']}: no such file", "give a PEM file of trusted CA certificates")


def _check_targets(urls: tuple[str, ...], targets_file: str | None, lines: Any) -> None:
    """Every URL and --targets line, with its options, is checked before anything runs
    (stdin's are checked as they arrive)."""
    from certkit.cli.check_targets import jobs

    count = 0
    for _job in jobs(urls, targets_file if targets_file != "-" else None, lines):
        count += 1
    if count == 0 and targets_file not in (None, "-"):
        # An empty list would otherwise "pass" with exit 0 having checked nothing.
        raise UsageError(f"--targets {targets_file} lists no target", "put one URL a line in the file")


def _check_command_values(opts: dict[str, Any]) -> None:
    """The values that go into SMTP command lines: a CR or LF would smuggle in a command of the user's own."""
    for flag, key in (("--helo", "helo"), ("--from", "mail_from"), ("--to", "rcpt_to"), ("--auth-user", "auth_user"),
                      ("--name", "name")):
        value = opts[key]
        if value is not None and (not value.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in value)):
            raise UsageError(f"{flag} {value!r} is empty or holds control characters (CR, LF...)",
                             f"give {flag} as plain text on one line")


def _check_name(name: str | None) -> None:
    """--name must be a host name (a malformed name is the user's mistake, not a handshake failure)."""
    if name is None:
        return
    from certkit.names import parse_name

    try:
        ident = parse_name(name)
    except UsageError as exc:
        raise UsageError(f"--name: {exc.message}", exc.hint) from None
    if ident.is_wildcard:
        raise UsageError(f"--name {name} is a wildcard", "give the host name clients connect to")


def _check_options(ctx: click.Context, opts: dict[str, Any]) -> tuple[Any, str | None, Any]:
    """(CheckOptions, --expect's lineage or None, its store or None): client certificate, password, pin and
    trust anchors loaded, or exit 2."""
    from certkit.check import CheckOptions

    _check_client_cert(opts["client_cert"], opts["client_key"])
    password = _read_password(opts["password_file"], opts["auth_user"])
    expected_pem, pin, lineage, store = (None, None, None, None)
    if opts["expect"]:
        from certkit.cli.check_targets import expectation

        expected_pem, pin, lineage, store = expectation(ctx, opts["expect"])
    options = CheckOptions(
        name=opts["name"], cafile=opts["cafile"], expected_pem=expected_pem, expected_sha256=pin,
        auth_user=opts["auth_user"],
        password=password, send_test=opts["send_test"], mail_from=opts["mail_from"], rcpt_to=opts["rcpt_to"],
        timeout=opts["timeout"], strict=opts["strict"], quick=opts["quick"], helo=opts["helo"] or "",
        insecure_auth=opts["insecure_auth"], client_cert=opts["client_cert"], client_key=opts["client_key"],
    )
    options.deadline, options.max_connections = opts["deadline"], opts["max_connections"]
    from certkit.cli.check_dns import dane_options

    options.dane = dane_options(opts)
    try:
        options.verify_context()
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load trust anchors: {exc}", "check --cafile / --expect") from exc
    return options, lineage, store


@dataclass
class _Output:
    """How the reports are printed, and what printing them gathered: the failures, the lineage's result."""

    as_json: bool
    many: bool
    show_transcript: bool
    lineage: str | None
    source: str | None = None  # the --targets file: a line's summary starts with FILE:LINE
    failures: list[tuple[str, list[str]]] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)
    fmt: str = "text"
    keep: bool = False  # keep each target's summary (for --format prometheus or the state directory)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)  # endpoint -> CheckReport.summary()

    def emit(self, report: Any, index: int) -> None:
        from certkit.check import render_text

        many = self.many
        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.keep:  # a few hundred bytes per endpoint, only when they are wanted
            self.summaries[report.target] = report.summary(when)
        if self.fmt == "prometheus":
            pass  # printed once all targets are done: a family's samples must stand together
        elif self.as_json:
            text = json.dumps(report.to_json(), indent=None if many else 2)
            click.echo((("[\n" if index == 0 else ",\n") + text) if many else text, nl=not many)
        elif many and not self.show_transcript:
            lines = render_text(report, transcript=False).splitlines()
            problems = ["  " + ln for ln in lines[:-1] if ln.startswith(("FAIL", "WARN", "UNKNOWN", " "))]
            where = f"{self.source}:{report.line}: " if report.line is not None else ""
            click.echo(colour("\n".join([where + lines[-1], *problems])))
        else:
            click.echo(colour(render_text(report, transcript=bool(self.show_transcript)) + ("\n" if many else "")))
        if not report.ok:
            self.failures.append((report.target, report.failed))
        # The lineage keeps the first failing result, else the last one.
        if self.lineage and (not self.last or self.last["ok"]):
            self.last.update(time=when, target=report.target, ok=report.ok, failed=report.failed)


STATUS_COLOURS = {"PASS": "green", "WARN": "yellow", "FAIL": "red", "SKIP": "bright_black", "UNKNOWN": "magenta"}


def colour(text: str) -> str:
    """Status words coloured on a terminal; plain when piped or with NO_COLOR set (no-color.org)."""
    if os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        return text
    out = []
    for line in text.splitlines(keepends=True):
        word = line.split(" ", 1)[0]
        fg = STATUS_COLOURS.get(word)
        out.append(click.style(word, fg=fg, bold=word == "FAIL") + line[len(word):] if fg else line)
    return "".join(out)


def _run_many(urls: tuple[str, ...], opts: dict[str, Any], lines: Any, out: _Output) -> None:
    """Several targets through the fleet runner, printed in input order (a JSON array with --json)."""
    from certkit.check.fleet import run_many
    from certkit.cli.check_targets import jobs
    from certkit.progress import StatusLine

    # On a terminal only: the running count, rewritten in place and erased before each result and at the end.
    progress = StatusLine(lambda _line: None, lambda text: click.echo(text, err=True, nl=False)) \
        if sys.stderr.isatty() else None
    counter = {"n": 0}

    def emit_many(report: Any) -> None:
        if progress:  # erase the progress line first, so a result never lands in the middle of it
            progress.clear()
        out.emit(report, counter["n"])
        counter["n"] += 1
        if progress:
            progress.update(f"[{counter['n']} checked, {len(out.failures)} failed]")

    try:
        run_many(jobs(urls, opts["targets_file"], lines), lines.base, opts["concurrency"], emit_many)
    finally:
        # Also when a bad line arrives on stdin mid-run: what was printed stays a valid JSON array.
        if progress:
            progress.done()  # leaves nothing behind
        if out.as_json and counter["n"]:
            click.echo("\n]")
    if counter["n"] == 0:
        raise UsageError("no target on standard input", "pipe one URL a line into `certkit check --targets -`")
    if out.fmt == "text":
        click.echo(f"{counter['n']} target(s) checked, {len(out.failures)} FAILED")


def _raise_failures(out: _Output) -> None:
    """Exit 1 (CheckFailed) when any check FAILed."""
    if not out.failures:
        return
    if not out.many:
        target, ids = out.failures[0]
        raise CheckFailed(f"{target}: {len(ids)} check(s) FAILED ({', '.join(ids)})",
                          'see the "fix" of each FAIL check in the JSON output' if out.as_json
                          else "see the certkit_check_failure series above" if out.fmt == "prometheus"
                          else "see the fix under each FAIL line")
    raise CheckFailed(f"{len(out.failures)} target(s) FAILED ({', '.join(t for t, _ in out.failures[:5])}"
                      f"{', ...' if len(out.failures) > 5 else ''})",
                      'see the checks with "status": "FAIL" in the JSON output' if out.as_json
                      else "see the certkit_check_failure series above" if out.fmt == "prometheus"
                      else "see the FAIL lines above")


def _audit_one(target: Any, options: Any, live: bool) -> Any:
    """One target's audit; on a terminal the session streams as it happens, and Ctrl-C shows
    what the server said so far instead of a traceback."""
    from certkit.check import audit
    from certkit.check.report import LiveTranscript

    transcript: list[str] = LiveTranscript(click.echo) if live else []
    try:
        return audit(target, options, transcript)
    except KeyboardInterrupt:
        if not live:
            click.echo("\n".join(transcript))
        click.echo(f"interrupted: {target.url} was not fully checked", err=True)
        raise SystemExit(130) from None


def _record(store: Any, lineage: str, last: dict[str, Any]) -> None:
    """Remember the result in the lineage (skipped when another certkit holds the lock)."""
    if not last:
        return
    store.lock_wait = min(store.lock_wait, 1.0)
    try:
        with store.lock():
            store.update_state(lineage, last_check=dict(last))
    except LockError:
        click.echo(f"note: another certkit process holds {store.home}; the result was not recorded in {lineage}",
                   err=True)
    except OSError as exc:
        click.echo(f"note: could not record the result in {lineage}: {exc}", err=True)
