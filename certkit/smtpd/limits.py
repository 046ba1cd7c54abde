"""What `certkit smtpd` allows one client and all clients together.

The server (:mod:`certkit.smtpd.server`) asks these objects before it spends memory
or CPU on a client:

* :class:`ConnectionGate` - concurrent connections, in total and per client
  (a stalled TLS handshake costs about 300 KiB, so the caps bound memory);
* :class:`FailureTable` - failed AUTH attempts per client within a window
  (a brute forcer that reconnects after each 421 still runs out of guesses);
* :class:`RefusalLog` - one log line per refusal kind and client per
  window, so a flood cannot flood the log too;
* :class:`Defences` - the above for one server, with the thread pool that
  checks passwords off the event loop and the memory hand-back after a
  burst of closed connections.

A "client" is its IP address; IPv6 clients are grouped by /64, the
smallest block an end site is usually given (RFC 6177), else an attacker
with one IPv6 subnet would have 2^64 addresses to rotate through.
The clock is injected so tests need not wait.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

Clock = Callable[[], float]
# Bounds the failure table when many addresses fail (spoofing is impossible
# over TCP, but a botnet has many addresses): oldest entries are dropped first.
MAX_TRACKED_CLIENTS = 10_000
TRIM_AFTER_CLOSES = 64  # closed connections before memory is collected and handed back


@dataclass(frozen=True)
class Limits:
    """The defences of one `certkit smtpd`, as set on its command line."""

    max_connections: int = 200
    max_per_ip: int = 20
    handshake_timeout: float = 10.0
    idle_timeout: float = 300.0  # RFC 5321 4.5.3.2: servers wait at least 5 minutes
    auth_failures_per_connection: int = 3
    auth_failures_per_ip: int = 10
    auth_window: float = 300.0
    auth_delay: float = 0.5

    def delay_after(self, failures: int) -> float:
        """Seconds to wait before answering failure number ``failures`` (1, 2, 3...): doubling."""
        return self.auth_delay * float(2 ** (max(failures, 1) - 1))


def client_key(ip: str) -> str:
    """The address limits count against: the IPv4 address, or the IPv6 /64."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


class ConnectionGate:
    """Counts open connections; refuses past the global or the per-client cap."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.total = 0
        self.per_client: dict[str, int] = {}

    def admit(self, key: str) -> str | None:
        """Take a slot for ``key``; None when admitted, else why not."""
        if self.total >= self.limits.max_connections:
            return f"{self.limits.max_connections} connections already open (--max-connections)"
        if self.per_client.get(key, 0) >= self.limits.max_per_ip:
            return f"{self.limits.max_per_ip} connections already open from {key} (--max-per-ip)"
        self.total += 1
        self.per_client[key] = self.per_client.get(key, 0) + 1
        return None

    def release(self, key: str) -> None:
        """Give back the slot :meth:`admit` took."""
        self.total -= 1
        left = self.per_client.get(key, 1) - 1
        if left > 0:
            self.per_client[key] = left
        else:
            self.per_client.pop(key, None)


class FailureTable:
    """Failed AUTH attempts per client within a sliding window."""

    def __init__(self, limits: Limits, clock: Clock = time.monotonic) -> None:
        self.limits, self.clock = limits, clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        horizon = self.clock() - self.limits.auth_window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def blocked(self, key: str) -> bool:
        """True when ``key`` has used up its failures for the current window."""
        limit = self.limits.auth_failures_per_ip
        return limit > 0 and len(self._recent(key)) >= limit

    def record(self, key: str) -> int:
        """Count one failure; return how many ``key`` has now within the window."""
        times = self._recent(key)
        if key not in self._failures:
            if len(self._failures) >= MAX_TRACKED_CLIENTS:
                self._failures.pop(next(iter(self._failures)))
            self._failures[key] = times
        times.append(self.clock())
        return len(times)

    def retry_after(self, key: str) -> int:
        """Whole seconds until the oldest counted failure of ``key`` leaves the window."""
        times = self._recent(key)
        if not times:
            return 0
        return max(1, int(times[0] + self.limits.auth_window - self.clock() + 0.999))


class RefusalLog:
    """Logs the first refusal of a kind per client, then at most one summary line per window."""

    def __init__(self, log: Callable[[str], None], window: float = 60.0, clock: Clock = time.monotonic) -> None:
        self.log, self.window, self.clock = log, window, clock
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def refused(self, key: str, kind: str, line: str) -> None:
        """Log ``line`` unless the same ``kind`` for ``key`` was logged within the window."""
        now = self.clock()
        last = self._last.get((key, kind))
        if last is not None and now - last[0] < self.window:
            self._last[(key, kind)] = (last[0], last[1] + 1)
            return
        if len(self._last) >= MAX_TRACKED_CLIENTS:
            self._last.pop(next(iter(self._last)))
        suppressed = last[1] if last is not None else 0
        more = f" ({suppressed} more refused since the last line)" if suppressed else ""
        self._last[(key, kind)] = (now, 0)
        self.log(line + more)


class Defences:
    """What every connection of one server shares: the limits, their counters and the hash pool."""

    def __init__(self, limits: Limits, log: Callable[[str], None]) -> None:
        self.limits = limits
        self.gate = ConnectionGate(limits)
        self.failures = FailureTable(limits)
        self.refusals = RefusalLog(log)
        # Half the cores at most: the event loop keeps a core for EHLO, TLS
        # and delivery however many AUTH attempts are queued.
        workers = max(1, min(4, (os.cpu_count() or 2) // 2))
        self.hasher = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="certkit-smtpd-auth")
        self._malloc_trim = _malloc_trim()
        self._closed_since_trim = 0
        self._trim_pending = False

    def release(self, key: str) -> None:
        """A connection closed: free its slot, and after a burst of closes the memory they used."""
        self.gate.release(key)
        self._closed_since_trim += 1
        if self._closed_since_trim >= TRIM_AFTER_CLOSES and not self._trim_pending:
            self._trim_pending = True
            asyncio.get_running_loop().call_later(1.0, self._give_memory_back)

    def _give_memory_back(self) -> None:
        # A TLS connection is ~300 KiB in reference cycles (asyncio's SSL
        # protocol and transport, aiosmtpd's session) that only the cyclic GC
        # frees, into a heap glibc seldom shrinks: after 3000 stalled
        # handshakes closed the server stayed at ~1 GB. Collect, then trim.
        self._trim_pending, self._closed_since_trim = False, 0
        gc.collect()
        if self._malloc_trim is not None:
            self._malloc_trim(0)

    def close(self) -> None:
        self.hasher.shutdown(wait=False, cancel_futures=True)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None (another C library or system: nothing to do)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim
