"""Text from clients and servers made safe for one log line or one reply line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Log = Callable[[str], None]


def one_line(text: bytes | str) -> str:
    """A smarthost's (maybe multi-line) reply text as one reply line: smtplib joins the lines of a
    multi-line reply with LF, and passed on as is that would break the client's reply framing."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return " ".join(printable(line.strip()) for line in text.splitlines() if line.strip()) or "rejected"


def peer(session: Any) -> str:
    return fmt_peer(getattr(session, "peer", None))


def fmt_peer(peer: Any) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"


def user(login: bytes) -> str:
    return printable(login.decode("utf-8", errors="replace"))


def printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:200]
