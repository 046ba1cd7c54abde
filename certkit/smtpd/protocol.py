"""The aiosmtpd protocol classes of `certkit smtpd`: what one client connection may do.

``SubmissionSMTP`` admits a connection within the caps (421 past them),
bounds the STARTTLS handshake, offers AUTH PLAIN/LOGIN only inside TLS,
checks passwords in the hash pool with a growing delay per failure and
cuts a guesser off after a few; ``ImplicitTLSSMTP`` does the same for the
smtps port, starting TLS itself once the connection is admitted.

This module imports aiosmtpd at its top: server.py imports it only when
it serves, so `certkit --help` stays light.
"""

from __future__ import annotations

import asyncio
import binascii
import ssl
from base64 import b64decode
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword, TLSSetupException, syntax

from certkit.smtpd import limits as smtpd_limits
from certkit.smtpd import logtext
from certkit.smtpd.logtext import Log

TOO_MANY_CONNECTIONS = b"421 4.7.0 Too many connections, try again later\r\n"
TOO_MANY_FAILURES = "421 4.7.0 Too many failed AUTH attempts"  # also the banner for a blocked address
AUTHZID_REFUSED = "535 5.7.8 Authorization identity must be empty or the user name"


class SubmissionSMTP(SMTP):
    """Admits connections within the caps, bounds the STARTTLS handshake, logs."""

    plain_refusals = True  # a 421 before closing (the smtps listener cannot send one)

    def __init__(self, *args: Any, registry: set[Any], log: Log, defences: smtpd_limits.Defences,
                 **kwargs: Any) -> None:
        super().__init__(*args, timeout=defences.limits.idle_timeout, **kwargs)
        self._registry, self._log, self._defences = registry, log, defences
        self._slot: str | None = None  # client key holding a ConnectionGate slot
        self._admitted = False
        self._auth_failures = 0

    def _admit(self, transport: Any) -> bool:
        """Take a connection slot, or answer 421 (plain listener) and close."""
        peer = transport.get_extra_info("peername")
        ip = peer[0] if isinstance(peer, tuple) and peer else "?"
        key = smtpd_limits.client_key(ip)
        if self._defences.failures.blocked(key):
            # It could not log in anyway: spare the TLS handshake and the hash.
            self._defences.refusals.refused(key, "auth-blocked", f"{logtext.fmt_peer(peer)} refused: {key} is over "
                                            f"--auth-failures-per-ip {self._defences.limits.auth_failures_per_ip}")
            return self._turn_away(transport, TOO_MANY_FAILURES.encode() + b"\r\n")
        reason = self._defences.gate.admit(key)
        if reason is not None:
            self._defences.refusals.refused(key, "connections", f"{logtext.fmt_peer(peer)} refused: {reason}")
            return self._turn_away(transport, TOO_MANY_CONNECTIONS)
        self._slot, self._admitted = key, True
        self._registry.add(self)
        return True

    def _turn_away(self, transport: Any, reply: bytes) -> bool:
        if self.plain_refusals:
            transport.write(reply)
        transport.close()
        return False

    def connection_made(self, transport: Any) -> None:
        first = self.transport is None
        if first and not self._admitted and not self._admit(transport):
            return
        super().connection_made(transport)
        if first:
            self._log(f"{logtext.peer(self.session)} connected")

    def connection_lost(self, error: Exception | None) -> None:
        if not self._admitted:
            return  # refused at the door: aiosmtpd never saw it
        self._release()
        if self.session is not None:
            super().connection_lost(error)

    def _release(self) -> None:
        self._registry.discard(self)
        if self._slot is not None:
            self._defences.release(self._slot)
            self._slot = None

    def shut(self) -> None:
        """Close this connection (server shutdown)."""
        if self.transport is not None:
            self.transport.close()

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:  # noqa: N802 - aiosmtpd command name
        # aiosmtpd leaves the handshake to asyncio's 60 s default; a client
        # that says STARTTLS and then nothing held ~300 KiB for that long.
        limit = self._defences.limits.handshake_timeout
        try:
            await asyncio.wait_for(super().smtp_STARTTLS(arg), limit)
        except asyncio.TimeoutError:
            raise TLSSetupException() from ConnectionAbortedError(f"no TLS handshake within {limit:g} s")

    async def check_auth_needed(self, caller_method: str) -> bool:
        needed = bool(await super().check_auth_needed(caller_method))
        if needed:
            self._log(f"{logtext.peer(self.session)} {caller_method} refused: not authenticated")
        return needed

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default logs a multi-line traceback for every failed
        # handshake (e.g. a client offering only TLS 1.0); one line is enough.
        cause = error.__cause__ or error
        reason = getattr(cause, "reason", None) or f"{type(cause).__name__}: {cause}"
        what = "STARTTLS failed" if isinstance(error, TLSSetupException) else "session error"
        self._log(f"{logtext.peer(self.session)} {what}: {reason}")
        return "451 4.3.0 Error: internal server error, try again later"

    # --- AUTH (RFC 4954): hashed off the loop, failures slowed, counted, cut off ---

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:  # noqa: N802 - aiosmtpd command name
        key = self._slot or "?"
        if self._defences.failures.blocked(key):
            wait = self._defences.failures.retry_after(key)
            self._defences.refusals.refused(
                key, "auth-blocked", f"{logtext.peer(self.session)} AUTH refused: {key} is over "
                f"--auth-failures-per-ip {self._defences.limits.auth_failures_per_ip} for {wait} more s")
            await self._cut_off()
            return
        await super().smtp_AUTH(arg)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> Any:  # noqa: N802 - aiosmtpd mechanism name
        blob = await self._client_blob(args, "")
        if blob is None:
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\0")
        if len(parts) != 3:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        authzid, login, password = parts
        # RFC 4616: the authorisation identity is who the client acts as; we
        # have no "log in as someone else" rights, so only the user itself.
        if authzid and authzid != login:
            return await self._failed("PLAIN", login, "authorization identity differs from the user",
                                      AUTHZID_REFUSED)
        return await self._check("PLAIN", login, password)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> Any:  # noqa: N802 - aiosmtpd mechanism name
        login = await self._client_blob(args, self.AuthLoginUsernameChallenge)
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await self._client_blob(["LOGIN"], self.AuthLoginPasswordChallenge)
        if password is None:
            return AuthResult(success=False, handled=True)
        return await self._check("LOGIN", login, password)

    async def _client_blob(self, args: list[str], challenge: str) -> bytes | None:
        """The client's base64 answer (on the AUTH line, else after a 334 challenge); None once refused."""
        if len(args) == 1:
            answer = await self.challenge_auth(challenge)
            return None if answer is MISSING else bytes(answer)  # challenge_auth already replied 501
        try:
            return b64decode(args[1].encode(), validate=True)
        except (binascii.Error, ValueError):
            await self.push("501 5.5.2 Can't decode base64")
            return None

    async def _check(self, mechanism: str, login: bytes, password: bytes) -> Any:
        if await self.event_handler.verify(login, password):
            self._log(f"{logtext.peer(self.session)} AUTH {mechanism} {logtext.user(login)} ok")
            # The password is not kept in the session: only the login is used later.
            return AuthResult(success=True, handled=False, auth_data=LoginPassword(login, b""))
        return await self._failed(mechanism, login)

    async def _failed(self, mechanism: str, login: bytes, why: str = "", reply: str | None = None) -> Any:
        """A failed attempt: counted per connection and per client, answered after a growing delay."""
        limits = self._defences.limits
        self._auth_failures += 1
        key = self._slot or "?"
        from_client = self._defences.failures.record(key)
        await asyncio.sleep(limits.delay_after(self._auth_failures))
        line = (f"{logtext.peer(self.session)} AUTH {mechanism} {logtext.user(login)} FAILED"
                + (f" ({why})" if why else ""))
        per_ip, per_connection = limits.auth_failures_per_ip, limits.auth_failures_per_connection
        if per_ip and from_client == per_ip:
            self._log(f"{line}; {key} reached --auth-failures-per-ip {per_ip}: "
                      f"further AUTH refused for {limits.auth_window:g} s; disconnected")
        elif per_ip and from_client > per_ip:  # guesses already in flight when the limit was reached
            self._log(f"{line}; {key} is over --auth-failures-per-ip; disconnected")
        elif per_connection and self._auth_failures >= per_connection:
            self._log(f"{line}; {self._auth_failures} failures on this connection; disconnected")
        else:
            self._log(line)
            return AuthResult(success=False, handled=False, message=reply)
        await self._cut_off()
        return AuthResult(success=False, handled=True)

    async def _cut_off(self) -> None:
        await self.push(TOO_MANY_FAILURES)
        if self.transport is not None:
            self.transport.close()

class ImplicitTLSSMTP(SubmissionSMTP):
    """The SMTPS listener: TLS from the first byte (RFC 8314).

    The listener is plain TCP and the handshake is started here with
    ``loop.start_tls``, so a connection is counted against the caps
    before it costs a TLS state, and the handshake has its own deadline.
    Over the caps the connection is closed without a reply (a TLS client
    could not read a plain 421).

    aiosmtpd 1.4.6 only counts a connection as TLS after its own STARTTLS
    (``_tls_protocol``), so over implicit TLS it hides AUTH and refuses it
    with 538 (aiosmtpd issues #281, #274). The connection here is TLS by
    construction, so we record that the same way STARTTLS would.
    """

    plain_refusals = False

    def __init__(self, *args: Any, implicit_tls: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._implicit_tls = implicit_tls
        self._handshake: asyncio.Task[None] | None = None

    def connection_made(self, transport: Any) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:  # the TCP connection: admit it, then shake hands
            if self._admit(transport):
                transport.pause_reading()  # no ClientHello bytes into the SMTP reader
                self._handshake = self.loop.create_task(self._start_tls(transport))
            return
        super().connection_made(transport)
        self._tls_protocol = getattr(transport, "_ssl_protocol", None) or transport
        assert self.session is not None
        self.session.ssl = {"ssl_object": ssl_object, "cipher": ssl_object.cipher(),
                            "peercert": None, "sslcontext": ssl_object.context}
        self._log(f"{logtext.peer(self.session)} implicit TLS {ssl_object.version()} {ssl_object.cipher()[0]}")

    async def _start_tls(self, raw: Any) -> None:
        limit = self._defences.limits.handshake_timeout
        try:
            tls = await self.loop.start_tls(raw, self, self._implicit_tls, server_side=True,
                                            ssl_handshake_timeout=limit)
        except (OSError, asyncio.TimeoutError) as exc:
            # start_tls closed the socket; asyncio never calls connection_lost
            # for a connection whose handshake did not finish.
            why = f"no TLS handshake within {limit:g} s" if isinstance(exc, ConnectionAbortedError) else (
                getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}")
            self._log(f"{logtext.fmt_peer(raw.get_extra_info('peername'))} implicit TLS failed: {why}")
            self._release()
            return
        self.connection_made(tls)

    def shut(self) -> None:
        if self._handshake is not None and not self._handshake.done():
            self._handshake.cancel()
            self._release()
        super().shut()
