"""aiosmtpd with a per-IP connection limit, as Haraka's ``limit`` plugin does: 421 past N at once.

No certkit code: stock aiosmtpd (STARTTLS required, AUTH after TLS) whose
protocol greets a connection over the limit with ``421 4.7.0`` and hangs up.
The server counts a connection as gone once the client has closed it (TCP
state CLOSE_WAIT), not when its event loop gets round to it, so its count is
what the client really had open and the test can assert on it exactly.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.servers.net import free_port

_TCP_ESTABLISHED = 1


@dataclass
class LimitStats:
    """What the server saw: the most connections open at once from one IP, and how many got 421."""

    limit: int
    most: int = 0
    refused: int = 0
    live: dict[str, list[Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_refusal: Callable[[], None] | None = None  # called after each 421 (a test frees a slot there)


def _established(transport: Any) -> bool:
    sock = transport.get_extra_info("socket")
    if sock is None or transport.is_closing():
        return False
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except OSError:
        return False
    return bool(struct.unpack("B", info[:1])[0] == _TCP_ESTABLISHED)


def _count_in(stats: LimitStats, ip: str, transport: Any) -> bool:
    """Register a new connection; False when it is over the limit."""
    with stats.lock:
        live = [t for t in stats.live.get(ip, []) if _established(t)] + [transport]
        stats.live[ip] = live
        stats.most = max(stats.most, len(live))
        if len(live) <= stats.limit:
            return True
        stats.refused += 1
    if stats.on_refusal is not None:
        stats.on_refusal()
    return False


@contextlib.contextmanager
def limited_aiosmtpd(ctx: ssl.SSLContext, limit: int = 2, *,
                     implicit_tls: bool = False) -> Iterator[tuple[int, LimitStats]]:
    """Start the server on a free port (STARTTLS, or TLS from the first byte); yields (port, stats)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, AuthResult

    stats = LimitStats(limit)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 2.0.0 Message accepted"

    class LimitedSMTP(SMTP):
        counted: Any = None
        refused = False

        def connection_made(self, transport: Any) -> None:
            if self.counted is None:  # the first call; STARTTLS calls it again with the TLS transport
                self.counted = transport
                ip = transport.get_extra_info("peername")[0]
                if not _count_in(stats, ip, transport):
                    self.refused = True
                    transport.write(b"421 4.7.0 too many connections from your address\r\n")
                    transport.close()
                    return
            super().connection_made(transport)

        def connection_lost(self, error: Exception | None) -> None:
            with stats.lock:
                for live in stats.live.values():
                    if self.counted in live:
                        live.remove(self.counted)
            if not self.refused:
                super().connection_lost(error)

        def eof_received(self) -> bool | None:
            return None if self.refused else super().eof_received()

    class LimitedController(Controller):
        def factory(self) -> SMTP:
            return LimitedSMTP(self.handler, **self.SMTP_kwargs)

    def no_auth(*_: Any) -> AuthResult:
        return AuthResult(success=False, handled=False)

    port = free_port()
    tls: dict[str, Any] = {"ssl_context": ctx} if implicit_tls else {"tls_context": ctx, "require_starttls": True}
    ctrl = LimitedController(Handler(), hostname="127.0.0.1", port=port, ready_timeout=10,
                             server_hostname="limited.example.test", authenticator=no_auth, auth_required=True,
                             auth_require_tls=not implicit_tls, **tls)
    ctrl.start()
    try:
        yield port, stats
    finally:
        ctrl.stop()
