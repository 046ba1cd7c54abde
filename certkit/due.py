"""When a certificate is due for renewal: pure functions of dates.

Due when less than 1/3 of the lifetime is left (1/2 for lifetimes under 10
days, so a 6-day certificate is renewed with 3 days to spare), or earlier
when the ACME server's renewal info (ARI, RFC 9773) suggests a window.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

SHORT_LIFETIME = dt.timedelta(days=10)


def renew_after(
    not_before: dt.datetime,
    not_after: dt.datetime,
    ari_window: dict[str, Any] | None = None,
) -> dt.datetime:
    """The moment from which the certificate is due.

    Args:
        not_before, not_after: the certificate's validity (aware datetimes).
        ari_window: stored ARI ``{"start": iso, "end": iso}``, if any; its
            start wins when it is earlier than the lifetime rule.
    """
    lifetime = not_after - not_before
    share_left = 0.5 if lifetime < SHORT_LIFETIME else 1 / 3
    due = not_after - lifetime * share_left
    if ari_window and ari_window.get("start"):
        try:
            start = dt.datetime.fromisoformat(str(ari_window["start"]).replace("Z", "+00:00"))
        except ValueError:
            return due
        if start.tzinfo is None:
            start = start.replace(tzinfo=dt.timezone.utc)
        due = min(due, start)
    return due


def is_due(
    not_before: dt.datetime,
    not_after: dt.datetime,
    now: dt.datetime,
    ari_window: dict[str, Any] | None = None,
) -> bool:
    return now >= renew_after(not_before, not_after, ari_window)


def iso(moment: dt.datetime) -> str:
    """ISO 8601 in UTC with a Z, seconds precision (the JSON record's form)."""
    return moment.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
