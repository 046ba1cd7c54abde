"""A reloadable server-side TLS context for aiosmtpd (or any asyncio server).

An ``ssl.SSLContext`` that is in use must not be reconfigured: calling
``load_cert_chain`` on it while handshakes run races with them, and a
certificate/key pair loaded in two steps can be seen half-changed. So every
reload builds a NEW context and swaps it in; connections that finished
their handshake keep the one they started with.

The swap works through one stable *dispatcher* context that the server is
given once (``tls_context=`` for STARTTLS in aiosmtpd, ``ssl=`` for an
implicit-TLS listener). It holds the TLS policy (TLS >= 1.2, no
renegotiation) and no certificate; its ``sni_callback`` runs at the start of
every handshake - with server_name None when the client sent no SNI, which
OpenSSL >= 1.1.1 (required by Python >= 3.10) always does - and points the
connection at the newest loaded context (``SSL_set_SSL_CTX``). An aiosmtpd
application therefore needs two lines::

    tls = ReloadableTLS.from_files("/etc/certkit/lineages/mx/live/combined.pem")
    controller = Controller(handler, tls_context=tls.context, require_starttls=True)
    install_reload_signal(tls, pid_file="/run/myapp.pid")   # SIGHUP -> tls.reload()

``install_reload_signal`` also implements the acknowledgement protocol that
`certkit deploy --to aiosmtpd --pid-file F` relies on: after each reload the
process rewrites ``F.status`` (JSON: pid, reloads, sha256 of the served
certificate, error), so the deploying side knows the new certificate is
served, or why not.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import ssl
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from certkit import clock
from certkit.errors import OperationError, UsageError

# (certificate file, key file or None when the key is in the certificate file)
Source = Callable[[], tuple[str, str | None]]


@dataclass(frozen=True)
class Served:
    """What a loaded context serves."""

    sha256: str
    not_after: str
    names: list[str]
    certfile: str
    loaded_at: str


def new_server_context(minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2) -> ssl.SSLContext:
    """A server context with certkit's TLS policy and no certificate.

    TLS 1.2 is the floor (RFC 8996 deprecates 1.0/1.1); renegotiation is off
    (TLS 1.2 client-initiated renegotiation is a DoS vector and would let a
    connection re-handshake against a different context).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = minimum
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    # aiosmtpd warns when a server context verifies clients; submission clients
    # authenticate with AUTH, not certificates.
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def lineage_source(home: Path | str, name: str) -> Source:
    """A Source reading a lineage's live ``combined.pem`` (key + fullchain).

    The ``live`` link is resolved first, so the file read is the immutable
    version file: a deploy switching versions meanwhile can never hand us a
    key from one version and a certificate from another.
    """
    from certkit.store import Store

    store = Store(home)
    store.require(name)

    def source() -> tuple[str, str | None]:
        combined = store.live_paths(name).combined
        if not combined.exists():
            raise UsageError(f"lineage {name} has no live certificate ({combined} is missing)",
                             f"issue one first: certkit issue --cn {name}")
        return os.path.realpath(combined), None

    return source


class ReloadableTLS:
    """A stable dispatcher context plus the newest loaded certificate context."""

    def __init__(self, source: Source, minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2) -> None:
        """Load the certificate once; raise UsageError/OperationError when it cannot be loaded.

        Args:
            source: returns the (certificate file, key file or None) to load.
            minimum: the lowest TLS version accepted.
        """
        self._source = source
        self._minimum = minimum
        self._lock = threading.Lock()
        self.reloads = 0
        self._current, self._served = self._load()
        self._dispatcher = new_server_context(minimum)
        self._dispatcher.sni_callback = self._pick_context

    @classmethod
    def from_files(cls, certfile: str | Path, keyfile: str | Path | None = None) -> ReloadableTLS:
        """Load from PEM files (the key may live in ``certfile``, as in combined.pem)."""
        pair = (str(certfile), str(keyfile) if keyfile else None)
        return cls(lambda: pair)

    @classmethod
    def from_lineage(cls, home: Path | str, name: str) -> ReloadableTLS:
        """Load a certkit lineage's live certificate (see lineage_source)."""
        return cls(lineage_source(home, name))

    @property
    def context(self) -> ssl.SSLContext:
        """The context to hand to the server, once; it never changes."""
        return self._dispatcher

    @property
    def current(self) -> ssl.SSLContext:
        """The newest loaded context (for servers that build one context per connection)."""
        return self._current

    @property
    def served(self) -> Served:
        return self._served

    def reload(self) -> Served:
        """Load the source again into a new context and use it for new handshakes.

        On failure the previous context stays in use and the error is raised.
        """
        ctx, served = self._load()
        with self._lock:
            self._current, self._served = ctx, served
            self.reloads += 1
        return served

    def _pick_context(self, ssl_obj: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        # Runs inside each handshake; assigning .context is SSL_set_SSL_CTX:
        # the certificate and key switch, the dispatcher's policy stays.
        ssl_obj.context = self._current

    def _load(self) -> tuple[ssl.SSLContext, Served]:
        certfile, keyfile = self._source()
        for _attempt in range(3):
            before = _read(certfile)
            ctx = new_server_context(self._minimum)
            try:
                ctx.load_cert_chain(certfile, keyfile)
            except FileNotFoundError as exc:
                raise UsageError(f"cannot load {exc.filename or certfile}: file not found",
                                 "point at an existing PEM file") from exc
            except (ssl.SSLError, OSError) as exc:
                raise OperationError(f"cannot load the certificate {certfile}: {exc}",
                                     "check that the file holds a certificate and its matching key") from exc
            # A file replaced between our read and OpenSSL's would make the
            # reported fingerprint lie; read again and retry when it changed.
            if _read(certfile) == before:
                return ctx, _describe(before, certfile)
        raise OperationError(f"{certfile} kept changing while it was loaded",
                             "replace it atomically (write a temp file, then rename)")


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", "point at a readable PEM file") from exc


def _describe(pem: bytes, certfile: str) -> Served:
    from cryptography import x509

    from certkit import x509 as cx

    try:
        leaf = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise OperationError(f"{certfile} holds no readable certificate", "check the file") from exc
    return Served(
        sha256=cx.sha256_fingerprint(leaf),
        not_after=clock.iso(cx.not_after(leaf)),
        names=cx.dns_names(leaf),
        certfile=certfile,
        loaded_at=clock.now_iso(),
    )


# ---------------------------------------------------------------- pid/status protocol

def status_path(pid_file: str | Path) -> Path:
    """Where a server with ``pid_file`` acknowledges reloads."""
    pid_file = Path(pid_file)
    return pid_file.with_name(pid_file.name + ".status")


def write_status(pid_file: str | Path, tls: ReloadableTLS, error: str | None = None) -> None:
    """Record what is served now (and the last reload error) next to the pid file."""
    from certkit.atomicfile import atomic_write

    data = {"pid": os.getpid(), "reloads": tls.reloads, "error": error,
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
            **asdict(tls.served)}
    atomic_write(status_path(pid_file), json.dumps(data, indent=1).encode(), 0o644)


def read_status(pid_file: str | Path) -> dict[str, Any] | None:
    """The status a server wrote next to ``pid_file``, None when absent or unreadable."""
    try:
        data = json.loads(status_path(pid_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_pid_file_free(pid_file: str | Path) -> None:
    """Refuse to start when ``pid_file`` names another running process (exit 1)."""
    try:
        pid = int(Path(pid_file).read_text().strip())
    except (OSError, ValueError):
        return
    if pid == os.getpid():
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # stale: the server died without cleaning up
    except PermissionError:
        pass  # alive, owned by someone else
    raise OperationError(f"pid file {pid_file} names process {pid}, which is running",
                         "stop that server first, or give this one another --pid-file")


def write_pid_file(pid_file: str | Path) -> None:
    from certkit.atomicfile import atomic_write

    atomic_write(Path(pid_file), f"{os.getpid()}\n".encode(), 0o644)


def remove_pid_file(pid_file: str | Path) -> None:
    """Remove the pid and status files if they are still ours."""
    try:
        if Path(pid_file).read_text().strip() != str(os.getpid()):
            return
    except (OSError, ValueError):  # gone, or replaced by something that is not ours
        return
    for path in (Path(pid_file), status_path(pid_file)):
        try:
            path.unlink()
        except OSError:
            pass


def install_reload_signal(
    tls: ReloadableTLS,
    *,
    loop: Any = None,
    pid_file: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    also: Callable[[], None] | None = None,
) -> Callable[[], None]:
    """Reload ``tls`` on SIGHUP (POSIX), acknowledging in the status file.

    Call it from the main thread. With ``loop`` (an asyncio loop running in
    the main thread) the handler runs inside that loop; without it (e.g. an
    aiosmtpd ``Controller``, whose loop runs in another thread) a plain
    ``signal.signal`` handler runs in the main thread - the swap is a single
    reference assignment, so the server thread sees either context whole.

    Args:
        tls: the context to reload.
        loop: the running asyncio event loop, if it runs in the main thread.
        pid_file: when given, the status file next to it is rewritten after
            every reload attempt (success or failure) and once now.
        log: receives one line per reload.
        also: called before each reload (e.g. re-read a users file).

    Returns:
        The reload function itself (call it to reload without a signal).
    """
    if not hasattr(signal, "SIGHUP"):
        raise UsageError("reloading on SIGHUP needs a POSIX system", "restart the server to load a new certificate")

    def on_hup() -> None:
        error = None
        try:
            if also is not None:
                also()
            served = tls.reload()
            if log:
                log(f"reload ok: serving sha256 {served.sha256} until {served.not_after} "
                    f"for new connections")
        except Exception as exc:
            error = str(exc)
            if log:
                log(f"reload FAILED, still serving sha256 {tls.served.sha256}: {error}")
            tls.reloads += 1  # count the attempt so the deploying side sees an answer
        if pid_file is not None:
            write_status(pid_file, tls, error)

    if loop is not None:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    else:
        signal.signal(signal.SIGHUP, lambda _signum, _frame: on_hup())
    if pid_file is not None:
        write_status(pid_file, tls)
    return on_hup
