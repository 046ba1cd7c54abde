"""`certkit smtpd`: a reference SMTP submission server on aiosmtpd.

Policy (the contract's `smtpd`, RFC 6409 submission + RFC 3207 STARTTLS):

* submission listener: STARTTLS offered and required - every command but
  EHLO/NOOP/STARTTLS/QUIT gets ``530 Must issue a STARTTLS command first``;
* AUTH PLAIN and LOGIN (RFC 4954) are offered only inside TLS, and MAIL,
  RCPT and DATA need a successful AUTH (``530 5.7.0``): no relay without AUTH;
* optional implicit-TLS listener (``--smtps-listen``, RFC 8314);
* the certificate comes from a certkit lineage through
  :class:`certkit.tlsreload.ReloadableTLS` and is reloaded for new
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certkit import smtpd_users, tlsreload
from certkit.errors import CertkitError, OperationError, UsageError

Log = Callable[[str], None]


def stderr_log(line: str) -> None:
    """One timestamped line on stderr (the server's only log sink)."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
    sys.stderr.write(f"{stamp} certkit-smtpd: {line}\n")
    sys.stderr.flush()


def parse_hostport(text: str, what: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``PORT`` -> (host, port); exit 2 when malformed."""
    host, port_text = default_host, text
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    try:
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise UsageError(f"{what} {text!r} is not HOST:PORT", f"write e.g. {what} 127.0.0.1:587") from None
    return host or default_host, port


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
    """aiosmtpd handler: logs TLS and delivers DATA."""

    def __init__(self, cfg: ServerConfig, users: Users, delivery: Delivery) -> None:
        self.cfg, self.users, self.delivery = cfg, users, delivery

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        """aiosmtpd authenticator: PLAIN/LOGIN against the users file."""
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", errors="replace")
        password = auth_data.password.decode("utf-8", errors="replace")
        ok = smtpd_users.verify(self.users.table, user, password)
        self.cfg.log(f"{_peer(session)} AUTH {mechanism} {_printable(user)} {'ok' if ok else 'FAILED'}")
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

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
    peer = getattr(session, "peer", None)
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


def _smtp_classes() -> tuple[type, type]:
    """The two aiosmtpd SMTP subclasses (built lazily: aiosmtpd is imported here)."""
    from aiosmtpd.smtp import SMTP

    class SubmissionSMTP(SMTP):
        """Tracks connections for a clean shutdown and logs them."""

        def __init__(self, *args: Any, registry: set[Any], log: Log, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._registry, self._log = registry, log

        def connection_made(self, transport: Any) -> None:
            first = self.transport is None
            super().connection_made(transport)
            if first:
                self._registry.add(self)
                self._log(f"{_peer(self.session)} connected")

        def connection_lost(self, error: Exception | None) -> None:
            self._registry.discard(self)
            super().connection_lost(error)

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
            what = "STARTTLS failed" if type(error).__name__ == "TLSSetupException" else "session error"
            self._log(f"{_peer(self.session)} {what}: {reason}")
            return "451 4.3.0 Error: internal server error, try again later"

    class ImplicitTLSSMTP(SubmissionSMTP):
        """The SMTPS listener: TLS from the first byte (RFC 8314).

        aiosmtpd 1.4.6 only counts a connection as TLS after its own STARTTLS
        (``_tls_protocol``), so over implicit TLS it hides AUTH and refuses it
        with 538 (aiosmtpd issues #281, #274). The connection here is TLS by
        construction - asyncio finished the handshake before connection_made -
        so we record that the same way STARTTLS would.
        """

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is None:  # never expected: the listener is created with ssl=
                transport.close()
                return
            self._tls_protocol = getattr(transport, "_ssl_protocol", None) or transport
            assert self.session is not None
            self.session.ssl = {"ssl_object": ssl_object, "cipher": ssl_object.cipher(),
                                "peercert": None, "sslcontext": ssl_object.context}
            self._log(f"{_peer(self.session)} implicit TLS {ssl_object.version()} {ssl_object.cipher()[0]}")

    return SubmissionSMTP, ImplicitTLSSMTP


async def serve(cfg: ServerConfig, ready: Callable[[], None] | None = None) -> None:
    """Run the server until SIGTERM/SIGINT (or the task is cancelled)."""
    import logging

    # aiosmtpd logs every command at INFO on "mail.log"; our own lines are enough.
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    # aiosmtpd itself sets the deprecated Session.login_data after each AUTH
    # and warns about it on stderr; nothing for an operator to act on.
    warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
    submission_cls, implicit_cls = _smtp_classes()
    users = Users(cfg.users_file, cfg.log)
    delivery = Delivery(cfg)
    handler = Handler(cfg, users, delivery)
    registry: set[Any] = set()
    loop = asyncio.get_running_loop()
    ident = "certkit smtpd"

    def submission_factory() -> Any:
        return submission_cls(handler, registry=registry, log=cfg.log, hostname=cfg.hostname, ident=ident,
                              tls_context=cfg.tls.context, require_starttls=True,
                              auth_required=True, auth_require_tls=True,
                              authenticator=handler.authenticate)

    def implicit_factory() -> Any:
        return implicit_cls(handler, registry=registry, log=cfg.log, hostname=cfg.hostname, ident=ident,
                            tls_context=None, auth_required=True, auth_require_tls=True,
                            authenticator=handler.authenticate)

    if cfg.pid_file is not None:
        tlsreload.check_pid_file_free(cfg.pid_file)
    servers = [await _listen(loop, submission_factory, cfg.listen, None)]
    if cfg.smtps_listen is not None:
        servers.append(await _listen(loop, implicit_factory, cfg.smtps_listen, cfg.tls.context))
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
    where = [f"submission {_fmt(servers[0])} (STARTTLS required, AUTH after TLS)"]
    if len(servers) > 1:
        where.append(f"smtps {_fmt(servers[1])} (implicit TLS)")
    served = cfg.tls.served
    cfg.log(f"listening on {', '.join(where)}; delivering to {delivery.describe()}; "
            f"serving {', '.join(served.names) or '?'} sha256 {served.sha256} until {served.not_after}; "
            f"{len(users.table)} user(s)")
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        started = time.monotonic()
        open_connections = len(registry)
        for server in servers:
            server.close()
        for proto in list(registry):
            if proto.transport is not None:
                proto.transport.close()
        for server in servers:
            await server.wait_closed()
        if cfg.pid_file is not None:
            tlsreload.remove_pid_file(cfg.pid_file)
        for signame in ("SIGTERM", "SIGINT", "SIGHUP"):
            if hasattr(signal, signame):
                loop.remove_signal_handler(getattr(signal, signame))
        cfg.log(f"stopped ({open_connections} open connection(s) closed in {time.monotonic() - started:.3f} s)")


async def _listen(loop: Any, factory: Callable[[], Any], addr: tuple[str, int], ctx: ssl.SSLContext | None) -> Any:
    try:
        return await loop.create_server(factory, addr[0], addr[1], ssl=ctx, reuse_address=True,
                                         ssl_handshake_timeout=30 if ctx else None)
    except OSError as exc:
        raise OperationError(f"cannot listen on {addr[0]}:{addr[1]}: {exc.strerror or exc}",
                             "choose a free port, or run as root for ports below 1024") from exc


def _fmt(server: Any) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run(cfg: ServerConfig) -> None:
    """Run the server in this process until it is told to stop."""
    asyncio.run(serve(cfg))
