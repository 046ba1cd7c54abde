"""Reading a secret (a password, an EAB key) from a file: bounded, one clean line.

Secrets never go on argv; they come from files like these (or a prompt).
"""

from __future__ import annotations

from certkit import journal
from certkit.errors import UsageError

# A password or key is a line, not a file: reading more than this is a mistake (or /dev/zero).
SECRET_FILE_MAX = 4096


def read_secret_file(path: str, what: str) -> str:
    """First line of a secret file (trailing newline dropped); exit 2 when unreadable or not a clean line.

    At most SECRET_FILE_MAX bytes are read, so a device or a huge file cannot
    hang certkit or fill its memory; NUL and control characters are refused
    (a PFX password with a NUL makes a file nothing can open).
    """
    fix = "write it as plain UTF-8 text on the first line of a small file"
    try:
        with open(path, "rb") as handle:
            data = handle.read(SECRET_FILE_MAX + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path}: {exc.strerror or exc}",
                         "pass a readable file") from exc
    if len(data) > SECRET_FILE_MAX:
        raise UsageError(f"the {what} file {path} is larger than {SECRET_FILE_MAX} bytes (is it the right file?)",
                         fix)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"the {what} file {path} is not text (UTF-8 expected)", fix) from None
    if not text:
        raise UsageError(f"the {what} file {path} is empty", "put the secret on its first line")
    first, _, _ = text.partition("\n")
    first = first.removesuffix("\r")
    if not first:
        raise UsageError(f"the {what} file {path} starts with a blank line (the secret must be on line 1)",
                         "remove the blank line(s) before the secret")
    if "\x00" in first:
        raise UsageError(f"the {what} file {path} contains a NUL byte on its first line",
                         fix)
    bad = next((c for c in first if (ord(c) < 0x20 and c != "\t") or 0x7f <= ord(c) <= 0x9f), None)
    if bad is not None:
        raise UsageError(f"the {what} file {path} contains the control character {bad!r} on its first line "
                         f"(at position {first.index(bad) + 1})", fix)
    journal.mask(first)  # should it ever be printed, the log file still does not keep it
    return first
