"""What concurrent renewals share: servers that deploy targets edit, the trust store, http-01 ports.

Lineages renew in parallel threads; two of them must never edit one
Postfix ``main.cf`` (or rebuild the OS trust store) at the same time, and
their ACME orders share one standalone http-01 responder per address.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

from certkit.errors import CertkitError
from certkit.settings import LineageSettings

# Deploy targets that edit one server's configuration and reload it: their lineages take turns.
SERIAL_TARGETS = ("postfix", "iis", "exchange", "aiosmtpd")


def shared_resources(settings: LineageSettings) -> list[str]:
    """Things this lineage's renewal changes that another lineage's may change too.

    A deploy target in SERIAL_TARGETS edits one server's configuration and
    reloads it; ``--trust`` rewrites the OS trust store. (ACME needs no entry: ``certkit.acme.obtain`` is thread-safe
    and shares one http-01 responder per address and port.) Sorted, so locks
    are always taken in the same order (no deadlock).
    """
    keys = {f"deploy:{t.target}" for t in settings.deploy if t.target in SERIAL_TARGETS}
    if settings.trust and not settings.is_acme:
        keys.add("trust-store")  # one OS trust store, rebuilt by one update-ca-certificates at a time
    return sorted(keys)


def hold_http01_listeners(lineages: Sequence[LineageSettings], stack: contextlib.ExitStack) -> None:
    """Keep each standalone http-01 responder the due lineages use open for the whole run.

    Orders share one responder per address and port (certkit.acme.http01),
    which stops when its last user releases it; between two orders it would
    otherwise close and re-bind, and a new order starting while the old
    socket is still closing cannot bind the port. Holding one reference for
    the run avoids both the race and the re-binding. A port that cannot be
    bound is left alone: each lineage then reports the reason itself.
    """
    wanted: set[tuple[str, int]] = set()
    for settings in lineages:
        acme = settings.acme
        if acme is not None and acme.challenge == "http-01" and not acme.webroot:
            wanted.add((acme.http_address or "", int(acme.http_port)))
    if not wanted:
        return
    from certkit.acme import http01

    for address, port in sorted(wanted):
        try:
            responder = http01.acquire(address, port)
        except CertkitError:
            continue
        stack.callback(http01.release, responder)


class ResourceLocks:
    """One lock per shared resource name, taken in sorted order (no deadlock)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    @contextlib.contextmanager
    def hold(self, keys: Sequence[str]) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for key in keys:
                with self._guard:
                    lock = self._locks.setdefault(key, threading.Lock())
                stack.enter_context(lock)
            yield
