"""aiosmtpd configured with its own API only - no certkit code - as a Python developer would.

``plain_aiosmtpd(ctx)`` runs ``aiosmtpd.controller.Controller`` with
STARTTLS required, AUTH required and offered only after TLS, on 127.0.0.1
and a free port. The TLS context decides the configuration under test:
:func:`server_tls` builds one serving the full chain or the leaf alone, for
TLS 1.2+ or TLS 1.3 only, with or without requiring a client certificate.

``injection_vulnerable=True`` puts back what aiosmtpd 1.4.6 fixed: input
buffered before the TLS handshake is no longer discarded, so a command
pipelined after STARTTLS is executed and answered inside TLS (the
CVE-2011-0411 class). Nothing else changes.
"""

from __future__ import annotations

import contextlib
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.servers.net import free_port

USER, PASSWORD = "alice", "aiosmtpd-test-pw"  # test-only credential


def server_tls(cert: Path, key: Path, *, tls13_only: bool = False, min_tls10: bool = False,
               max_tls12: bool = False, client_ca: Path | None = None) -> ssl.SSLContext:
    """A server context for ``cert`` (PEM, leaf first, as many CA certificates as it holds)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if tls13_only:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if min_tls10:  # also TLS 1.0/1.1 (needs SECLEVEL=0 on Debian's OpenSSL, measured.md)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the old versions are the point here
            ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if max_tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(client_ca))
    return ctx


@contextlib.contextmanager
def plain_aiosmtpd(ctx: ssl.SSLContext, *, injection_vulnerable: bool = False,
                   implicit_tls: bool = False, port: int | None = None) -> Iterator[int]:
    """Run aiosmtpd with ``ctx`` (STARTTLS, or ``implicit_tls`` as on port 465) on ``port`` (default: a free
    one); yields the port."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 2.0.0 accepted"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == USER.encode() and data.password == PASSWORD.encode()
        return AuthResult(success=ok)

    class BufferKeepingSMTP(SMTP):
        """aiosmtpd before 1.4.6: plaintext read ahead of the handshake survives it."""

        def connection_made(self, transport: Any) -> None:
            kept = bytes(self._reader._buffer) if self._original_transport is not None else b""
            super().connection_made(transport)
            self._reader._buffer.extend(kept)

    class VulnerableController(Controller):
        def factory(self) -> SMTP:
            return BufferKeepingSMTP(self.handler, **self.SMTP_kwargs)

    kind = VulnerableController if injection_vulnerable else Controller
    port = port or free_port()
    # Implicit TLS: aiosmtpd's auth_require_tls only counts STARTTLS and would hide AUTH on a TLS-only port.
    tls: dict[str, Any] = ({"ssl_context": ctx, "auth_require_tls": False} if implicit_tls
                           else {"tls_context": ctx, "require_starttls": True, "auth_require_tls": True})
    controller = kind(Handler(), hostname="127.0.0.1", port=port, server_hostname="plain-aiosmtpd.example.test",
                      ready_timeout=10, authenticator=authenticator, auth_required=True, **tls)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
