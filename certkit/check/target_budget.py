"""What one target may cost: an overall deadline and a cap on simultaneous connections.

Issue 10 item 11: a server answering every command just under ``--timeout``
made one check take 73 s, because only single steps had a limit. Issue 11
item 8: servers that limit connections per IP (Haraka's ``limit`` plugin)
answered 421 to the fifth parallel connection. A :class:`Budget` is shared
by every connection of one audit (the main session and every side probe):

- ``ends``: no step may run past it. A watchdog shuts down the sockets still
  open when it passes, so even a multi-read TLS handshake ends on time.
- ``capacity``: at most this many connections at once; one slot is kept for
  the main session while it runs, so probes never starve it. A 421
  greeting lowers the capacity to what the server was seen to allow.

Probes open their sessions themselves, deep inside :mod:`certkit.check.probes`;
rather than threading the budget through every probe's arguments, the audit
makes it the current budget of each of its threads (:func:`applied`) and
:class:`certkit.check.session.SmtpSession` picks it up when created.
The findings a budget leaves (``connection-limit``, checks cut by the
deadline) become checklist lines here too. Standard library only.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from certkit.check.report import FAIL, SKIP, WARN, CheckReport

_CURRENT: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("certkit_check_budget", default=None)
FIRST_PAUSE = 0.5  # seconds before retrying after a 421 greeting; doubles per retry
MAX_RETRIES = 3
FIX_DEADLINE = ("the server answers too slowly to finish within --deadline: check its load and its DNS look-ups "
                "(reverse DNS, DNSBL; Postfix smtpd_client_restrictions), or give certkit check a larger --deadline")
FIX_CONNECTION_LIMIT = (
    "nothing to change for mail clients; if many clients share one address (NAT, a webmail host), raise the "
    "per-IP limit (Haraka config/limit.ini [concurrency]; Postfix smtpd_client_connection_count_limit); "
    "certkit check --max-connections 1 avoids the retries"
)


class Interruptible(Protocol):
    main: bool

    def interrupt(self) -> None: ...


@dataclass(frozen=True)
class Refusal:
    """A 421 greeting: what the server said and how many connections certkit had open then."""

    reply: str
    open_connections: int


class Budget:
    """Deadline and connection slots of one target's audit (thread-safe).

    Args:
        seconds: the whole target's deadline (None: no deadline).
        max_connections: connections open at the same time, at most.
        clock / sleep: injectable for tests of the arithmetic.
    """

    def __init__(self, seconds: float | None, max_connections: int, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.seconds = seconds
        self.clock = clock
        self._sleep = sleep
        self.ends = float("inf") if seconds is None else clock() + seconds
        self.capacity = max(1, max_connections)
        self.open = 0
        self.most_open = 0
        self.main_running = False  # a main session is under way (it gets a slot before any probe)
        self._main_holds = False
        self.probes_cancelled = False
        self.refusals: list[Refusal] = []
        self._cond = threading.Condition()
        self._watched: set[Interruptible] = set()
        self._timer: threading.Timer | None = None

    # ----- time ------------------------------------------------------------
    def remaining(self) -> float:
        return self.ends - self.clock()

    def expired(self) -> bool:
        return self.clock() >= self.ends

    def step_end(self, timeout: float) -> float:
        """When a step allowed ``timeout`` seconds must end: its own limit or the deadline."""
        return min(self.clock() + timeout, self.ends)

    def message(self, during: str = "") -> str:
        """The reason every check cut by the deadline gives."""
        if self.probes_cancelled and not self.expired():
            return "probe stopped: the main session already failed"
        text = f"deadline of {self.seconds:g} s reached" if self.seconds is not None else "deadline reached"
        return f"{text} during the {during}" if during else text

    def pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the deadline comes first; False when it did."""
        if self.remaining() <= seconds:
            return False
        self._sleep(seconds)
        return True

    # ----- connection slots -------------------------------------------------
    def acquire(self, main: bool) -> bool:
        """Wait for a connection slot; False when the deadline passes first (or probes were cancelled)."""
        with self._cond:
            while not self._free(main) and not self.cut(main):
                self._cond.wait(min(self.remaining(), 1.0))
            if self.cut(main):
                return False
            self.open += 1
            self.most_open = max(self.most_open, self.open)
            self._main_holds = self._main_holds or main
            return True

    def _free(self, main: bool) -> bool:
        reserved = 1 if self.main_running and not self._main_holds and not main else 0
        return self.open + reserved < self.capacity

    def cut(self, main: bool) -> bool:
        """Must a connection (main session or probe) stop now?"""
        return self.expired() or (self.probes_cancelled and not main)

    def cancel_probes(self) -> None:
        """The main session failed in a way that makes side probes pointless: stop them now."""
        with self._cond:
            self.probes_cancelled = True
            probes = [conn for conn in self._watched if not conn.main]
            self._cond.notify_all()
        for conn in probes:
            conn.interrupt()

    def release(self, main: bool) -> None:
        with self._cond:
            self.open -= 1
            if main:
                self._main_holds = False
            self._cond.notify_all()

    def main_finished(self) -> None:
        """The main session is over: its reserved slot goes to the probes."""
        with self._cond:
            self.main_running = False
            self._cond.notify_all()

    def saw_refusal(self, reply: str, attempt: int) -> float:
        """Record a 421 greeting; lower the capacity to what the server allowed. Returns the pause."""
        with self._cond:
            self.refusals.append(Refusal(reply, self.open))
            self.capacity = max(1, min(self.capacity, self.open - 1))
        return FIRST_PAUSE * (1 << attempt)

    # ----- watchdog ---------------------------------------------------------
    def watch(self, conn: Interruptible) -> None:
        with self._cond:
            self._watched.add(conn)

    def unwatch(self, conn: Interruptible) -> None:
        with self._cond:
            self._watched.discard(conn)

    def start(self) -> None:
        """Arm the watchdog that interrupts every open connection at the deadline."""
        if self.seconds is not None and self._timer is None:
            self._timer = threading.Timer(max(0.0, self.remaining()), self._expire)
            self._timer.daemon = True
            self._timer.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        with self._cond:
            watched = list(self._watched)
            self._cond.notify_all()
        for conn in watched:
            conn.interrupt()


def current() -> Budget | None:
    """The budget of the audit running in this context (None outside an audit)."""
    return _CURRENT.get()


@contextlib.contextmanager
def applied(budget: Budget) -> Iterator[Budget]:
    """Make ``budget`` the current one for sessions created inside the block (in this thread)."""
    token = _CURRENT.set(budget)
    try:
        yield budget
    finally:
        _CURRENT.reset(token)


def shutdown_quietly(sock: socket.socket) -> None:
    """Interrupt a blocked read or handshake on ``sock`` from another thread.

    ``socket.socket.shutdown`` is called on the base class on purpose: on an
    SSLSocket the override would drop the TLS object under the reading thread.
    """
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def deadline_fails(report: CheckReport, budget: Budget) -> None:
    """A run the deadline cut short never passes: with no FAIL so far, the checks it cut become FAILs."""
    cut = f"not run: {budget.message()}"
    if report.ok:
        for c in [c for c in report.checks if c.status == SKIP and c.detail == cut]:
            report.add(c.id, FAIL, f"{budget.message()} before this check was done", FIX_DEADLINE)


def connection_limit(report: CheckReport, budget: Budget) -> None:
    """Report 421 greetings as the server's connection limit, never as a broken banner (issue 11.8)."""
    if not budget.refusals:
        return
    first = budget.refusals[0]
    allowed = min(r.open_connections for r in budget.refusals) - 1
    seen = (f"it allowed {allowed} connection{'s' if allowed != 1 else ''} at a time from this address"
            if allowed > 0 else "it refused even a single connection at times (its count may include connections "
            "just closed, or other clients at this address)")
    report.add("connection-limit", WARN, f"the server answered {first.reply!r} {len(budget.refusals)} time(s), with "
               f"{first.open_connections} certkit connection(s) open: {seen}; certkit paused, retried and went on "
               f"with at most {budget.capacity} at a time", FIX_CONNECTION_LIMIT)
