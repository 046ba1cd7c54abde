"""When a certificate is due for renewal: pure functions of dates.

Due when less than 1/3 of the lifetime is left (1/2 for lifetimes under 10
days, so a 6-day certificate is renewed with 3 days to spare), or earlier
when the ACME server's renewal info (ARI, RFC 9773) suggests a window.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from certkit.clock import iso, parse_time

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
        ari_window: stored ARI ``{"start", "end"[, "renew_at"]}`` (ISO 8601),
            if any: its chosen moment (:func:`ari_moment`) wins when it is
            earlier than the lifetime rule.
    """
    lifetime = not_after - not_before
    share_left = 0.5 if lifetime < SHORT_LIFETIME else 1 / 3
    due = not_after - lifetime * share_left
    moment = ari_moment(ari_window)
    return min(due, moment) if moment is not None else due


def ari_moment(ari_window: dict[str, Any] | None) -> dt.datetime | None:
    """When the ARI window says to renew: the stored ``renew_at``, else the window's start.

    RFC 9773 section 4.2 asks clients to pick a uniformly random moment
    inside the window (so renewals after a mass-revocation notice do not
    all arrive at its start); :func:`pick_in_window` makes that pick once,
    when the window is stored.
    """
    if not ari_window:
        return None
    start, end = parse_time(ari_window.get("start")), parse_time(ari_window.get("end"))
    chosen = parse_time(ari_window.get("renew_at"))
    if chosen is not None and start is not None and end is not None and start <= chosen <= end:
        return chosen
    return start


def pick_in_window(ari_window: dict[str, Any], fraction: float) -> str | None:
    """``renew_at`` for a window: ``start + fraction * (end - start)`` (ISO 8601), or None."""
    start, end = parse_time(ari_window.get("start")), parse_time(ari_window.get("end"))
    if start is None or end is None or end < start:
        return None
    return iso(start + (end - start) * min(max(fraction, 0.0), 1.0))


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
    ari_at = ari_moment(ari_window)
    if now >= not_after:
        return True, f"expired on {iso(not_after)}"
    share = "1/2" if lifetime < SHORT_LIFETIME else "1/3"
    if now >= by_lifetime:
        return True, f"{_days(left)} of {_days(lifetime)} days left, under {share} of the lifetime"
    if ari_at is not None and now >= ari_at:
        start = parse_time((ari_window or {}).get("start")) or ari_at
        return True, f"inside the CA's renewal window (ARI) since {iso(start)}, renewing from {iso(ari_at)}"
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


def revocation(state: dict[str, Any], serial: str | None) -> dict[str, Any] | None:
    """The ``revoked`` record of a lineage's state when it is about the certificate with ``serial``.

    `certkit revoke` stores the serial it revoked; once `renew` has replaced
    the certificate, the record says nothing about the new one.
    """
    revoked = state.get("revoked")
    if isinstance(revoked, dict) and serial is not None and revoked.get("serial") == serial:
        return revoked
    return None


def _days(delta: dt.timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.1f}" if abs(days) < 10 else f"{days:.0f}"
