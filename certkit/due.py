"""When a certificate is due for renewal: pure functions of dates.

Due when less than 1/3 of the lifetime is left (1/2 for lifetimes under 10
days, so a 6-day certificate is renewed with 3 days to spare), or earlier
when the ACME server's renewal info (ARI, RFC 9773) suggests a window.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

SHORT_LIFETIME = dt.timedelta(days=10)
# RFC 9773 section 4.3: without a Retry-After, clients poll "periodically"; twice a day
# matches the timer, so every scheduled run on an ACME lineage checks once.
ARI_RECHECK = dt.timedelta(hours=6)


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
    """Whether the certificate is due at ``now`` (see :func:`renew_after`)."""
    return now >= renew_after(not_before, not_after, ari_window)


def explain(
    not_before: dt.datetime,
    not_after: dt.datetime,
    now: dt.datetime,
    ari_window: dict[str, Any] | None = None,
) -> tuple[bool, str]:
    """Whether the certificate is due at ``now``, and why, in words for the log.

    Returns:
        ``(due, reason)``; the reason names the rule that decided.
    """
    lifetime = not_after - not_before
    left = not_after - now
    by_lifetime = renew_after(not_before, not_after)
    ari_start = parse_time((ari_window or {}).get("start"))
    if now >= not_after:
        return True, f"expired on {iso(not_after)}"
    share = "1/2" if lifetime < SHORT_LIFETIME else "1/3"
    if now >= by_lifetime:
        return True, f"{_days(left)} of {_days(lifetime)} days left, under {share} of the lifetime"
    if ari_start is not None and now >= ari_start:
        return True, f"the CA's renewal window (ARI) opened on {iso(ari_start)}"
    when = renew_after(not_before, not_after, ari_window)
    return False, f"{_days(left)} days left; due from {iso(when)}"


def ari_check_due(ari: dict[str, Any] | None, now: dt.datetime) -> bool:
    """Whether the stored ARI window should be fetched again (RFC 9773 section 4.3).

    The server's Retry-After, stored as ``retry_after`` (a moment), says
    when; without one, a window checked more than :data:`ARI_RECHECK` ago
    (or never) is stale.
    """
    if not ari:
        return True
    next_check = parse_time(ari.get("retry_after"))
    if next_check is not None:
        return now >= next_check
    checked = parse_time(ari.get("checked"))
    return checked is None or now >= checked + ARI_RECHECK


def parse_time(value: Any) -> dt.datetime | None:
    """An ISO 8601 string (``Z`` or offset; naive means UTC) as an aware datetime, else None."""
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _days(delta: dt.timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.1f}" if abs(days) < 10 else f"{days:.0f}"


def iso(moment: dt.datetime) -> str:
    """ISO 8601 in UTC with a Z, seconds precision (the JSON record's form)."""
    return moment.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
