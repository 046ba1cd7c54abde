"""`check --targets FILE`: one endpoint a line, each with its own options, so one file describes a fleet.

A line is ``URL [name=HOST] [expect=LINEAGE|CERTFILE|sha256:HEX] [cafile=FILE] [KIND]``:
the keys mean what ``--name``, ``--expect`` and ``--cafile`` mean for a single target (and
replace them for that line); KIND (``starttls``/``smtp``, ``submission``, ``smtps``/``submissions``)
says how to speak to a ``HOST[:PORT]`` the URL scheme does not name. Words are split like a
shell would (quotes for a path with spaces); ``#`` starts a comment; blank lines are skipped.
Relative file paths are read from the list's own folder, so a list works from any directory.
Every error names the file and line (``targets.txt:7: ...``).
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from certkit.check.target import SCHEMES, Target, parse_target
from certkit.errors import UsageError

# KIND word -> URL scheme. "submissions" is RFC 8314's name for implicit-TLS submission (465).
KINDS = {"starttls": "smtp", "smtp": "smtp", "submission": "submission", "smtps": "smtps", "submissions": "smtps"}
KEYS = ("name", "expect", "cafile")
LINE_HELP = ("a line is URL [name=HOST] [expect=LINEAGE|CERTFILE|sha256:HEX] [cafile=FILE] "
             "[starttls|submission|smtps|submissions]")
_PIN = re.compile(r"^(?:sha256:)?((?:[0-9a-f]{2}:?){31}[0-9a-f]{2})$", re.IGNORECASE)


@dataclass(frozen=True)
class TargetLine:
    """One parsed line: where it is, the endpoint, and the options it sets (None: the command line's)."""

    source: str  # the file name as given, or "stdin"
    number: int
    target: Target
    name: str | None = None
    expect: str | None = None  # a lineage name, a file path (made absolute), or "sha256:HEX"
    cafile: str | None = None  # absolute

    @property
    def where(self) -> str:
        return f"{self.source}:{self.number}"


def sha256_pin(text: str) -> str | None:
    """``sha256:HEX`` or 64 hex digits (colons allowed, as `openssl x509 -fingerprint` prints) -> lower hex."""
    match = _PIN.match(text.strip())
    return match.group(1).replace(":", "").lower() if match else None


def _error(where: str, what: str, hint: str | None = LINE_HELP) -> UsageError:
    return UsageError(f"{where}: {what}", hint)


def _target(where: str, url: str, kind: str | None) -> Target:
    try:
        if kind is None:
            return parse_target(url)
        scheme = KINDS[kind]
        if "://" in url:
            given = url.split("://", 1)[0].lower()
            target = parse_target(url)
            if SCHEMES.get(given, (0, ""))[1] != SCHEMES[scheme][1]:
                raise _error(where, f"{kind!r} contradicts the URL's scheme {given}://",
                             f"drop {kind!r}, or write the URL as {scheme}://...")
            return target
        parsed = parse_target(f"{scheme}://{url}")
        return Target(url, parsed.host, parsed.port, parsed.mode)
    except UsageError as exc:
        if exc.message.startswith(where):
            raise
        raise _error(where, exc.message, exc.hint) from None


def _path(base: Path | None, where: str, key: str, value: str) -> str:
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if key == "cafile" and not path.is_file():
        raise _error(where, f"cafile={value}: no such file", "give a PEM file of trusted CA certificates")
    return str(path.absolute())


def _check_name(where: str, value: str) -> str:
    from certkit.names import parse_name

    try:
        ident = parse_name(value)
    except UsageError as exc:
        raise _error(where, f"name={value}: {exc.message}", exc.hint) from None
    if ident.is_wildcard:
        raise _error(where, f"name={value} is a wildcard", "give the host name clients connect to")
    return value


def _expect(base: Path | None, where: str, value: str) -> str:
    pin = sha256_pin(value)
    if pin is not None:
        return f"sha256:{pin}"
    if value.lower().startswith("sha256:"):
        raise _error(where, f"expect={value} is not a SHA-256 fingerprint", "give sha256: and 64 hex digits")
    looks_like_file = "/" in value or "\\" in value or (base is not None and (base / value).is_file())
    return _path(base, where, "expect", value) if looks_like_file else value


def parse_line(text: str, source: str, number: int, base: Path | None = None) -> TargetLine | None:
    """One line of a targets list; None for a blank or comment line. UsageError names ``source:number``."""
    where = f"{source}:{number}"
    try:
        # str.split for the plain lines of a big list (shlex costs ~25 us a line); shlex for quotes and comments.
        words = shlex.split(text, comments=True) if any(ch in text for ch in "'\"\\#") else text.split()
    except ValueError as exc:
        raise _error(where, f"cannot split the line ({exc})", "close the quote") from None
    if not words:
        return None
    url, options = words[0], {}
    kinds = [w.lower() for w in words[1:] if w.lower() in KINDS]
    if len(kinds) > 1:
        raise _error(where, f"two port kinds ({kinds[0]!r} and {kinds[1]!r})", "keep one")
    kind = kinds[0] if kinds else None
    target = _target(where, url, kind)  # the URL first: a line of prose fails on its first word
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if not eq:
            if word.lower() not in KINDS:
                raise _unknown(where, word)
            continue
        key = key.lower()
        if key not in KEYS:
            raise _unknown(where, key)
        if key in options:
            raise _error(where, f"{key}= is given twice", "keep one")
        if not value or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise _error(where, f"{key}= is empty or holds control characters", f"give {key}=VALUE")
        options[key] = value
    return TargetLine(
        source, number, target,
        name=_check_name(where, options["name"]) if "name" in options else None,
        expect=_expect(base, where, options["expect"]) if "expect" in options else None,
        cafile=_path(base, where, "cafile", options["cafile"]) if "cafile" in options else None,
    )


def _unknown(where: str, word: str) -> UsageError:
    close = difflib.get_close_matches(word.lower(), [*KEYS, *KINDS], n=1)
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    return _error(where, f"unknown option {word!r}", suggestion + LINE_HELP)


def read_lines(lines: Iterable[str], source: str, base: Path | None = None) -> Iterator[TargetLine]:
    """Every target line of ``lines`` (1-based numbers), blank and comment lines skipped."""
    for number, text in enumerate(lines, start=1):
        parsed = parse_line(text, source, number, base)
        if parsed is not None:
            yield parsed


__all__ = ["KEYS", "KINDS", "TargetLine", "parse_line", "read_lines", "sha256_pin"]
