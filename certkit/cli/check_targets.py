"""`certkit check` inputs: --expect (a lineage, a certificate file or a SHA-256 pin) and the --targets list,
whose lines carry their own name=, expect=, cafile= and port kind (certkit.check.targets_file)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from certkit.errors import CertkitError, NotFoundError, UsageError


def load_expected(ctx: click.Context, value: str) -> tuple[bytes, str | None, Any]:
    """(PEM, lineage name or None, store or None) for --expect LINEAGE|CERTFILE."""
    import ssl

    path = Path(value)
    if path.is_file() or "/" in value or "\\" in value:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise NotFoundError(f"cannot read --expect {value}: {exc.strerror or exc}",
                                "give a lineage name or a certificate file") from exc
        if b"-----BEGIN CERTIFICATE-----" not in data:
            # DER_cert_to_PEM_cert wraps any bytes: only a DER SEQUENCE can be a certificate.
            if not data.startswith(b"\x30"):
                raise UsageError(f"--expect {value} holds no certificate", "give a PEM or DER certificate")
            data = ssl.DER_cert_to_PEM_cert(data).encode()
        try:
            ssl.create_default_context(cadata=data.decode("ascii", "replace"))
        except (ValueError, ssl.SSLError) as exc:
            raise UsageError(f"--expect {value} holds no readable certificate", "give a PEM or DER certificate") \
                from exc
        return data, None, None
    from certkit.cli.context import store_from

    store = store_from(ctx)
    if not store.exists(value):
        raise NotFoundError(f"--expect {value}: no such lineage in {store.home} and no such file",
                            "run `certkit list` for lineage names, or give a certificate file")
    paths = store.live_paths(value)
    try:
        return paths.cert.read_bytes(), value, store
    except OSError as exc:
        raise NotFoundError(f"lineage {value} has no live certificate", f"run `certkit issue --name {value} ...`") \
            from exc


def expectation(ctx: click.Context, value: str) -> tuple[bytes | None, str | None, str | None, Any]:
    """(PEM, SHA-256 pin, lineage, store) for an --expect value; a pin needs no file and no lineage."""
    from certkit.check.targets_file import sha256_pin

    pin = sha256_pin(value)
    if pin is not None:
        return None, pin, None, None
    if value.lower().startswith("sha256:"):
        raise UsageError(f"--expect {value} is not a SHA-256 fingerprint", "give sha256: and 64 hex digits")
    pem, lineage, store = load_expected(ctx, value)
    return pem, None, lineage, store


class LineOptions:
    """Each --targets line's CheckOptions: the run's, with what the line sets replaced.

    Lines that ask for the same trust (cafile=, expect=) share one options object, so the verify
    context is built once for them and memory does not grow with the list; name= is a cheap copy.
    """

    def __init__(self, ctx: click.Context, base: Any) -> None:
        from certkit.check.fleet import fleet_options

        self._ctx = ctx
        self.base = fleet_options(base)
        self._by_trust: dict[tuple[str | None, str | None], Any] = {}

    def for_line(self, line: Any) -> Any:
        """The options of a :class:`~certkit.check.targets_file.TargetLine` (errors name its file:line)."""
        try:
            opts = self._trust(line) if (line.expect or line.cafile) else self.base
        except CertkitError as exc:
            raise type(exc)(f"{line.where}: {exc.message}", exc.hint) from None
        return replace(opts, name=line.name) if line.name else opts

    def _trust(self, line: Any) -> Any:
        key = (line.expect, line.cafile)
        if key not in self._by_trust:
            from certkit.check.fleet import fleet_options

            changes: dict[str, Any] = {"_ctx": None, "_anchors": None, "_lock": threading.Lock()}
            if line.cafile:
                changes["cafile"] = line.cafile
            if line.expect:
                pem, pin, _lineage, _store = expectation(self._ctx, line.expect)
                changes.update(expected_pem=pem, expected_sha256=pin)
            try:
                self._by_trust[key] = fleet_options(replace(self.base, **changes))
            except (OSError, ValueError) as exc:
                raise UsageError(f"cannot load trust anchors: {exc}", "check cafile= / expect=") from exc
        return self._by_trust[key]


def file_lines(targets_file: str) -> Iterator[Any]:
    """The TargetLines of a --targets file ('-': stdin, parsed as it arrives)."""
    from certkit.check.targets_file import read_lines

    source = "stdin" if targets_file == "-" else targets_file
    base = None if targets_file == "-" else Path(targets_file).absolute().parent
    try:
        stream = sys.stdin if targets_file == "-" else open(targets_file, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read --targets {targets_file}: {exc.strerror or exc}",
                         "give a readable file with one URL a line") from exc
    try:
        yield from read_lines(stream, source, base)
    except UnicodeDecodeError as exc:
        where = "standard input" if targets_file == "-" else targets_file
        raise UsageError(f"--targets {where} is not UTF-8 text ({exc.reason})",
                         "save the list as UTF-8 (IDN host names are fine), one URL a line") from None
    finally:
        if stream is not sys.stdin:
            stream.close()


def jobs(urls: tuple[str, ...], targets_file: str | None, lines: LineOptions | None) -> Iterator[Any]:
    """Fleet jobs: the URLs of the command line, then every line of the --targets file with its options.

    Without ``lines`` only the URLs and lines are parsed (the check before any connection).
    """
    from certkit.check.fleet import Job
    from certkit.check.target import parse_target

    for url in urls:
        yield Job(parse_target(url))
    if targets_file is None:
        return
    for line in file_lines(targets_file):
        yield Job(line.target, lines.for_line(line) if lines is not None else None, line.number)
