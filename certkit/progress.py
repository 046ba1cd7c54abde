"""One status line for work that takes a while (a fleet check, a dns-01 propagation wait).

On a terminal the line is rewritten in place (carriage return + erase to the
end of the line) and erased when the work is done, so nothing of it is left
between the results; anywhere else (a pipe, a log, cron mail) it becomes a
plain line now and then, since a carriage return would garble a log file.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from certkit.callbacks import Echo

CLEAR_LINE = "\r\033[K"  # carriage return + erase to the end of the line (a terminal only)
PLAIN_EVERY = 10.0  # seconds between plain lines when not on a terminal


class StatusLine:
    """A line that says how a long wait is going.

    Args:
        echo: where whole lines go (the plain lines off a terminal, the final line).
        raw: writes text as is, without a newline: given only for a terminal, it turns on
            the rewrite-in-place mode.
        every: seconds between plain lines (off a terminal); the first update always shows.
        clock: monotonic seconds (tests).
    """

    def __init__(self, echo: Echo, raw: Callable[[str], None] | None = None, *, every: float = PLAIN_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._echo = echo
        self._raw = raw
        self._every = every
        self._clock = clock
        self._shown = False  # terminal: something of ours is on the line now
        self._last: float | None = None  # off a terminal: when the last plain line went out

    @property
    def on_terminal(self) -> bool:
        return self._raw is not None

    def update(self, text: str) -> None:
        """Show ``text`` as the current state (in place, or as a plain line when one is due)."""
        if self._raw is not None:
            self._raw(CLEAR_LINE + text)
            self._shown = True
            return
        now = self._clock()
        if self._last is None or now - self._last >= self._every:
            self._echo(text)
            self._last = now

    def clear(self) -> None:
        """Erase the line on a terminal (before other output, and at the end); nothing elsewhere."""
        if self._raw is not None and self._shown:
            self._raw(CLEAR_LINE)
            self._shown = False

    def done(self, text: str | None = None) -> None:
        """Erase the line and, when given, leave ``text`` as an ordinary line in its place."""
        self.clear()
        if text:
            self._echo(text)
        self._last = None
