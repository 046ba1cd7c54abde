"""Time as certkit writes and reads it: UTC, ISO 8601 with a ``Z``, seconds precision.

One format everywhere (JSON records, state.json, hook variables, logs), so
a script never has to handle both ``Z`` and ``+00:00``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def utc_now() -> dt.datetime:
    """The real clock (what injected ``clock`` parameters default to)."""
    return dt.datetime.now(dt.timezone.utc)


def iso(moment: dt.datetime) -> str:
    """``2026-12-02T13:51:03Z``: UTC, seconds precision."""
    return moment.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def now_iso() -> str:
    return iso(utc_now())


def parse_time(value: Any) -> dt.datetime | None:
    """An ISO 8601 string (``Z`` or offset; naive means UTC) as an aware datetime, else None."""
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
