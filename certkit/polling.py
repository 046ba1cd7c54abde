"""Polling with a growing backoff, Retry-After and a deadline: every wait-until loop in certkit.

The ``acme`` library sleeps a fixed second between polls
(``ClientV2.poll_authorizations``, ``poll_finalization``); against a fast CA
(Pebble validates in milliseconds) that second dominates an issuance. Here
the first poll comes after ~50 ms and the interval grows by 1.6x up to a
cap; a server's Retry-After (RFC 8555 section 7.5.1/7.4) replaces the next
interval, capped so that a confused server cannot stall us forever.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass, field

FIRST_INTERVAL = 0.05
GROWTH = 1.6
MAX_INTERVAL = 3.0
MAX_RETRY_AFTER = 60.0


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date, RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, when.timestamp() - now())


@dataclass
class Backoff:
    """Intervals for one polling loop; ``sleep`` and ``clock`` are injectable for tests."""

    deadline: float  # absolute, in ``clock`` seconds
    first: float = FIRST_INTERVAL
    growth: float = GROWTH
    cap: float = MAX_INTERVAL
    retry_after_cap: float = MAX_RETRY_AFTER
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _next: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._next = self.first

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def wait(self, retry_after: float | None = None) -> bool:
        """Sleep before the next poll; False (without sleeping past it) when the deadline has come."""
        interval = self._next
        if retry_after is not None:
            interval = min(max(retry_after, 0.0), self.retry_after_cap)
        left = self.remaining()
        if left <= 0:
            return False
        self.sleep(min(interval, left))
        self._next = min(self._next * self.growth, self.cap)
        return True
