"""`certkit smtpd`: a reference SMTP submission server on aiosmtpd.

Policy (the contract's `smtpd`, RFC 6409 submission + RFC 3207 STARTTLS):

* submission listener: STARTTLS offered and required - every command but
  EHLO/NOOP/STARTTLS/QUIT gets ``530 Must issue a STARTTLS command first``;
* AUTH PLAIN and LOGIN (RFC 4954) are offered only inside TLS, and MAIL,
  RCPT and DATA need a successful AUTH (``530 5.7.0``): no relay without AUTH;
* optional implicit-TLS listener (``--smtps-listen``, RFC 8314);
* the certificate comes from a certkit lineage through
  :class:`certkit.smtpd.tlsreload.ReloadableTLS` and is reloaded for new
  connections on SIGHUP (``certkit deploy --to aiosmtpd``) without a restart;
  SIGTERM/SIGINT stop it cleanly;
* one log line per event on stderr, never a password.

aiosmtpd (and with it asyncio's SSL machinery) is imported inside the
functions here, so `certkit --help` stays light.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import smtplib
import ssl
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certkit import hostport
from certkit.errors import CertkitError, OperationError, UsageError
from certkit.smtpd import limits as smtpd_limits
from certkit.smtpd import tlsreload
from certkit.smtpd import users as smtpd_users

Log = Callable[[str], None]


def stderr_log(line: str) -> None:
    """One timestamped line on stderr (the server's only log sink)."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
    sys.stderr.write(f"{stamp} certkit-smtpd: {line}\n")
    sys.stderr.flush()


def parse_hostport(text: str, what: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``PORT`` -> (host, port); exit 2 when malformed."""
    try:
        return hostport.parse(text, default_host=default_host, allow_zero=True)
    except hostport.HostPortError as exc:
        raise UsageError(f"{what} {text!r} is not HOST:PORT ({exc})", f"write e.g. {what} 127.0.0.1:587") from None


@dataclass
class ServerConfig:
    """Everything `certkit smtpd` needs to run."""

    listen: tuple[str, int]
    users_file: Path
    tls: Any  # tlsreload.ReloadableTLS (Any keeps the dataclass import-light for tests)
    maildir: Path | None = None
    relay: tuple[str, int] | None = None
    smtps_listen: tuple[str, int] | None = None
    pid_file: Path | None = None
    hostname: str = "localhost"
    relay_timeout: float = 30.0
    limits: smtpd_limits.Limits = field(default_factory=smtpd_limits.Limits)
    log: Log = stderr_log


class Users:
    """The users file, re-read on reload."""

    def __init__(self, path: Path, log: Log) -> None:
        self.path, self.log = path, log
        self.table = smtpd_users.load_users(path)
        if not self.table:
            raise UsageError(f"users file {path} has no users",
                             f"add one: certkit smtpd adduser {path} USER")

    def reload(self) -> None:
        """Re-read the file; a broken file is reported and the previous users stay."""
        try:
            self.table = smtpd_users.load_users(self.path)
        except CertkitError as exc:
            self.log(f"users file NOT reloaded, keeping {len(self.table)} user(s): {exc}")
            return
        self.log(f"users file reloaded: {len(self.table)} user(s)")


class Delivery:
    """Where accepted mail goes: a Maildir (mailbox module) or a smarthost."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        if cfg.maildir is not None:
            import mailbox

            try:
                # Maildir(create=True) only creates a missing folder; an existing
                # empty one still needs tmp/new/cur.
                for sub in ("", "tmp", "new", "cur"):
                    (cfg.maildir / sub).mkdir(mode=0o700, exist_ok=True)
                self.box: Any = mailbox.Maildir(str(cfg.maildir), create=False)
            except OSError as exc:
                raise UsageError(f"cannot use {cfg.maildir} as a Maildir: {exc.strerror}",
                                 "choose a writable folder") from exc

    def describe(self) -> str:
        if self.cfg.maildir is not None:
            return f"maildir {self.cfg.maildir}"
        assert self.cfg.relay is not None
        return f"relay {self.cfg.relay[0]}:{self.cfg.relay[1]}"

    def deliver(self, mail_from: str, rcpts: list[str], data: bytes) -> str:
        """Store or forward one message (blocking; run in a thread). Returns an SMTP reply."""
        if self.cfg.maildir is not None:
            # Maildir files hold the message with LF line ends, as local
            # delivery agents write them; SMTP carries CRLF.
            stored = f"Return-Path: <{mail_from}>\r\n".encode() + data
            try:
                key = self.box.add(stored.replace(b"\r\n", b"\n"))
            except OSError as exc:
                self.cfg.log(f"cannot store a message in {self.cfg.maildir}: {exc}")
                return "451 4.3.0 cannot store the message now, try again later"
            return f"250 2.0.0 Ok: queued as {key}"
        assert self.cfg.relay is not None
        host, port = self.cfg.relay
        try:
            with smtplib.SMTP(host, port, local_hostname=self.cfg.hostname, timeout=self.cfg.relay_timeout) as smtp:
                smtp.ehlo()
                if smtp.has_extn("starttls"):
                    # The smarthost's certificate is verified against the system
                    # trust store; a relay over TLS must not be downgradable.
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                smtp.sendmail(mail_from, rcpts, data)
        except smtplib.SMTPRecipientsRefused as exc:
            code, msg = next(iter(exc.recipients.values()))
            return f"{code} {_one_line(msg)}" if code >= 500 else "451 4.4.0 relay refused recipients"
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                return f"{exc.smtp_code} {_one_line(exc.smtp_error)}"
            return f"451 4.4.0 relay temporarily failed ({exc.smtp_code})"
        except (OSError, smtplib.SMTPException) as exc:
            self.cfg.log(f"relay to {host}:{port} failed: {exc}")
            return "451 4.4.0 relay host unavailable, try again later"
        return "250 2.0.0 Ok: relayed"


class Handler:
    """aiosmtpd handler: checks passwords off the event loop, logs TLS and delivers DATA."""

    def __init__(self, cfg: ServerConfig, users: Users, delivery: Delivery, hasher: Executor) -> None:
        self.cfg, self.users, self.delivery, self.hasher = cfg, users, delivery, hasher

    async def verify(self, login: bytes, password: bytes) -> bool:
        """True when the users file accepts ``login``/``password``.

        scrypt costs tens of milliseconds and 16 MiB by design; run on the
        event loop, 32 brute-force connections delayed every other client's
        EHLO by seconds, so it runs in its own small thread pool.
        """
        user = login.decode("utf-8", errors="replace")
        secret = password.decode("utf-8", errors="replace")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.hasher, smtpd_users.verify, self.users.table, user, secret)

    def handle_STARTTLS(self, server: Any, session: Any, envelope: Any) -> bool:  # noqa: N802 - aiosmtpd hook name
        ssl_object = (session.ssl or {}).get("ssl_object")
        version = ssl_object.version() if ssl_object else "?"
        cipher = ssl_object.cipher()[0] if ssl_object else "?"
        self.cfg.log(f"{_peer(session)} STARTTLS ok {version} {cipher}")
        return True

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        login_bytes = getattr(getattr(session, "auth_data", None), "login", None)
        login = login_bytes.decode(errors="replace") if isinstance(login_bytes, bytes) else "?"
        received = (
            f"Received: from {_printable(session.host_name or 'unknown')} ({session.peer[0]})\r\n"
            f"\tby {self.cfg.hostname} (certkit smtpd) with ESMTPSA;\r\n"
            f"\t{dt.datetime.now(dt.timezone.utc).strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
        ).encode()
        content = envelope.original_content or envelope.content
        data = received + content  # Return-Path is added only at final delivery (RFC 5321 4.4)
        reply = await asyncio.get_running_loop().run_in_executor(
            None, self.delivery.deliver, envelope.mail_from, list(envelope.rcpt_tos), data)
        self.cfg.log(f"{_peer(session)} user {_printable(login)} from <{_printable(envelope.mail_from)}> "
                     f"to {len(envelope.rcpt_tos)} recipient(s), {len(content)} bytes: {reply}")
        return reply


def _one_line(text: bytes | str) -> str:
    """A smarthost's (maybe multi-line) reply text as one reply line: smtplib joins the lines of a
    multi-line reply with LF, and passed on as is that would break the client's reply framing."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return " ".join(_printable(line.strip()) for line in text.splitlines() if line.strip()) or "rejected"


def _peer(session: Any) -> str:
    return _fmt_peer(getattr(session, "peer", None))


def _fmt_peer(peer: Any) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"


def _user(login: bytes) -> str:
    return _printable(login.decode("utf-8", errors="replace"))


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


TOO_MANY_CONNECTIONS = b"421 4.7.0 Too many connections, try again later\r\n"
TOO_MANY_FAILURES = "421 4.7.0 Too many failed AUTH attempts"  # also the banner for a blocked address
AUTHZID_REFUSED = "535 5.7.8 Authorization identity must be empty or the user name"


def _smtp_classes() -> tuple[type, type]:
    """The two aiosmtpd SMTP subclasses (built lazily: aiosmtpd is imported here)."""
    import binascii
    from base64 import b64decode

    from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword, TLSSetupException, syntax

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
                self._defences.refusals.refused(key, "auth-blocked", f"{_fmt_peer(peer)} refused: {key} is over "
                                                f"--auth-failures-per-ip {self._defences.limits.auth_failures_per_ip}")
                return self._turn_away(transport, TOO_MANY_FAILURES.encode() + b"\r\n")
            reason = self._defences.gate.admit(key)
            if reason is not None:
                self._defences.refusals.refused(key, "connections", f"{_fmt_peer(peer)} refused: {reason}")
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
                self._log(f"{_peer(self.session)} connected")

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
                self._log(f"{_peer(self.session)} {caller_method} refused: not authenticated")
            return needed

        async def handle_exception(self, error: Exception) -> str:
            # aiosmtpd's default logs a multi-line traceback for every failed
            # handshake (e.g. a client offering only TLS 1.0); one line is enough.
            cause = error.__cause__ or error
            reason = getattr(cause, "reason", None) or f"{type(cause).__name__}: {cause}"
            what = "STARTTLS failed" if isinstance(error, TLSSetupException) else "session error"
            self._log(f"{_peer(self.session)} {what}: {reason}")
            return "451 4.3.0 Error: internal server error, try again later"

        # --- AUTH (RFC 4954): hashed off the loop, failures slowed, counted, cut off ---

        @syntax("AUTH <mechanism>")
        async def smtp_AUTH(self, arg: str) -> None:  # noqa: N802 - aiosmtpd command name
            key = self._slot or "?"
            if self._defences.failures.blocked(key):
                wait = self._defences.failures.retry_after(key)
                self._defences.refusals.refused(
                    key, "auth-blocked", f"{_peer(self.session)} AUTH refused: {key} is over "
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
                self._log(f"{_peer(self.session)} AUTH {mechanism} {_user(login)} ok")
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
            line = f"{_peer(self.session)} AUTH {mechanism} {_user(login)} FAILED" + (f" ({why})" if why else "")
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
            self._log(f"{_peer(self.session)} implicit TLS {ssl_object.version()} {ssl_object.cipher()[0]}")

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
                self._log(f"{_fmt_peer(raw.get_extra_info('peername'))} implicit TLS failed: {why}")
                self._release()
                return
            self.connection_made(tls)

        def shut(self) -> None:
            if self._handshake is not None and not self._handshake.done():
                self._handshake.cancel()
                self._release()
            super().shut()

    return SubmissionSMTP, ImplicitTLSSMTP


async def serve(cfg: ServerConfig, ready: Callable[[], None] | None = None) -> None:
    """Run the server until SIGTERM/SIGINT (or the task is cancelled)."""
    import logging

    # aiosmtpd logs every command at INFO on "mail.log"; our own lines are enough.
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    # aiosmtpd itself sets the deprecated Session.login_data after each AUTH
    # and warns about it on stderr; nothing for an operator to act on.
    warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
    users = Users(cfg.users_file, cfg.log)
    delivery = Delivery(cfg)
    defences = smtpd_limits.Defences(cfg.limits, cfg.log)
    handler = Handler(cfg, users, delivery, defences.hasher)
    registry: set[Any] = set()
    submission_factory, implicit_factory = _factories(cfg, handler, registry, defences)
    loop = asyncio.get_running_loop()
    if cfg.pid_file is not None:
        tlsreload.check_pid_file_free(cfg.pid_file)
    # Both listeners are plain TCP: the smtps one starts TLS itself once a
    # connection is within the caps (ImplicitTLSSMTP).
    servers = [await _listen(loop, submission_factory, cfg.listen)]
    if cfg.smtps_listen is not None:
        servers.append(await _listen(loop, implicit_factory, cfg.smtps_listen))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
        except NotImplementedError:  # Windows event loops: Ctrl+C raises KeyboardInterrupt instead
            pass
    if hasattr(signal, "SIGHUP"):
        tlsreload.install_reload_signal(cfg.tls, loop=loop, pid_file=cfg.pid_file, log=cfg.log,
                                        also=users.reload)
    if cfg.pid_file is not None:
        tlsreload.write_pid_file(cfg.pid_file)
    _log_listening(cfg, servers, delivery, users)
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        await _shutdown(cfg, loop, servers, registry)
        defences.close()


def _factories(cfg: ServerConfig, handler: Handler, registry: set[Any],
               defences: smtpd_limits.Defences) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """Protocol factories for the submission and the smtps listener."""
    submission_cls, implicit_cls = _smtp_classes()
    common: dict[str, Any] = {"registry": registry, "log": cfg.log, "defences": defences,
                              "hostname": cfg.hostname, "ident": "certkit smtpd",
                              "auth_required": True, "auth_require_tls": True}

    def submission_factory() -> Any:
        return submission_cls(handler, tls_context=cfg.tls.context, require_starttls=True, **common)

    def implicit_factory() -> Any:
        return implicit_cls(handler, tls_context=None, implicit_tls=cfg.tls.context, **common)

    return submission_factory, implicit_factory


def _log_listening(cfg: ServerConfig, servers: list[Any], delivery: Delivery, users: Users) -> None:
    where = [f"submission {_fmt(servers[0])} (STARTTLS required, AUTH after TLS)"]
    if len(servers) > 1:
        where.append(f"smtps {_fmt(servers[1])} (implicit TLS)")
    served = cfg.tls.served
    limits = cfg.limits
    cfg.log(f"listening on {', '.join(where)}; delivering to {delivery.describe()}; "
            f"serving {', '.join(served.names) or '?'} sha256 {served.sha256} until {served.not_after}; "
            f"{len(users.table)} user(s); limits: {limits.max_connections} connections, "
            f"{limits.max_per_ip} per IP, TLS handshake {limits.handshake_timeout:g} s, "
            f"{limits.auth_failures_per_ip} failed AUTH per IP per {limits.auth_window:g} s")


async def _shutdown(cfg: ServerConfig, loop: Any, servers: list[Any], registry: set[Any]) -> None:
    started = time.monotonic()
    open_connections = len(registry)
    for server in servers:
        server.close()
    for proto in list(registry):
        proto.shut()
    for server in servers:
        await server.wait_closed()
    if cfg.pid_file is not None:
        tlsreload.remove_pid_file(cfg.pid_file)
    for signame in ("SIGTERM", "SIGINT", "SIGHUP"):
        if hasattr(signal, signame):
            loop.remove_signal_handler(getattr(signal, signame))
    cfg.log(f"stopped ({open_connections} open connection(s) closed in {time.monotonic() - started:.3f} s)")


async def _listen(loop: Any, factory: Callable[[], Any], addr: tuple[str, int]) -> Any:
    try:
        return await loop.create_server(factory, addr[0], addr[1], reuse_address=True)
    except OSError as exc:
        raise OperationError(f"cannot listen on {addr[0]}:{addr[1]}: {exc.strerror or exc}",
                             "choose a free port, or run as root for ports below 1024") from exc


def _fmt(server: Any) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run(cfg: ServerConfig) -> None:
    """Run the server in this process until it is told to stop."""
    asyncio.run(serve(cfg))
