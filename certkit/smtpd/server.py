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
from certkit.smtpd import logtext, tlsreload
from certkit.smtpd import users as smtpd_users
from certkit.smtpd.logtext import Log


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
            return f"{code} {logtext.one_line(msg)}" if code >= 500 else "451 4.4.0 relay refused recipients"
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                return f"{exc.smtp_code} {logtext.one_line(exc.smtp_error)}"
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
        self.cfg.log(f"{logtext.peer(session)} STARTTLS ok {version} {cipher}")
        return True

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        login_bytes = getattr(getattr(session, "auth_data", None), "login", None)
        login = login_bytes.decode(errors="replace") if isinstance(login_bytes, bytes) else "?"
        received = (
            f"Received: from {logtext.printable(session.host_name or 'unknown')} ({session.peer[0]})\r\n"
            f"\tby {self.cfg.hostname} (certkit smtpd) with ESMTPSA;\r\n"
            f"\t{dt.datetime.now(dt.timezone.utc).strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
        ).encode()
        content = envelope.original_content or envelope.content
        data = received + content  # Return-Path is added only at final delivery (RFC 5321 4.4)
        reply = await asyncio.get_running_loop().run_in_executor(
            None, self.delivery.deliver, envelope.mail_from, list(envelope.rcpt_tos), data)
        self.cfg.log(f"{logtext.peer(session)} user {logtext.printable(login)} "
                     f"from <{logtext.printable(envelope.mail_from)}> "
                     f"to {len(envelope.rcpt_tos)} recipient(s), {len(content)} bytes: {reply}")
        return reply




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
    from certkit.smtpd.protocol import ImplicitTLSSMTP, SubmissionSMTP  # imports aiosmtpd

    submission_cls, implicit_cls = SubmissionSMTP, ImplicitTLSSMTP
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
