"""http-01 (RFC 8555 section 8.3): the standalone responder and the webroot writer.

Standalone: one :class:`Responder` per (address, port) in the process, shared
by every concurrent order and reference-counted - a renewal run that
re-issues 50 lineages at once cannot bind port 80 fifty times. It serves only
``/.well-known/acme-challenge/<token>`` for tokens currently registered, and
stops instantly: its loop waits on the listening socket and a wake-up pipe
instead of ``socketserver.serve_forever``'s 0.5 s poll (measured.md: that
poll was most of a Pebble issuance).

Webroot: writes ``<DIR>/.well-known/acme-challenge/<token>`` for another web
server to serve, and removes the files (and any folders it created) afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from certkit.errors import AcmeError, UsageError

PREFIX = "/.well-known/acme-challenge/"

_registry_lock = threading.Lock()
_responders: dict[tuple[str, int], Responder] = {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, tokens: dict[str, bytes],
                 tokens_lock: threading.Lock) -> None:
        self.address_family = family
        self.tokens = tokens
        self.tokens_lock = tokens_lock
        super().__init__(address, _Handler, bind_and_activate=False)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):  # dual stack where the OS allows it
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "certkit-http01"
    sys_version = ""
    timeout = 10  # a client that connects and says nothing must not hold a thread forever

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        body = None
        if path.startswith(PREFIX):
            with self.server.tokens_lock:
                body = self.server.tokens.get(path[len(PREFIX):])
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.send_error(404)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # validation requests are not worth a line on the user's terminal


class Responder:
    """A running http-01 listener on one (address, port); see :func:`acquire`."""

    def __init__(self, address: str, port: int) -> None:
        self.address, self.port = address, port
        self.tokens: dict[str, bytes] = {}
        self.tokens_lock = threading.Lock()
        self.users = 0
        self._server = _bind(address, port, self.tokens, self.tokens_lock)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._loop, name=f"certkit-http01-{port}", daemon=True)
        self._thread.start()

    @property
    def bound_port(self) -> int:
        return int(self._server.server_address[1])

    def add(self, token: str, key_authorization: str) -> None:
        with self.tokens_lock:
            self.tokens[token] = key_authorization.encode("ascii")

    def remove(self, token: str) -> None:
        with self.tokens_lock:
            self.tokens.pop(token, None)

    def _loop(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._server.socket, selectors.EVENT_READ, "accept")
            sel.register(self._wake_r, selectors.EVENT_READ, "wake")
            while True:
                for sel_key, _ in sel.select():
                    if sel_key.data == "wake":
                        return
                    # The one-request step of serve_forever (accept, then a handler thread).
                    self._server._handle_request_noblock()  # type: ignore[attr-defined]

    def close(self) -> None:
        """Stop at once: wake the loop, join it, close the socket."""
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        self._server.server_close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


def _bind(address: str, port: int, tokens: dict[str, bytes], lock: threading.Lock) -> _Server:
    if address in ("", "*"):
        candidates = [("::", socket.AF_INET6), ("0.0.0.0", socket.AF_INET)]  # noqa: S104 - all interfaces on purpose
    elif ":" in address:
        candidates = [(address.strip("[]"), socket.AF_INET6)]
    else:
        candidates = [(address, socket.AF_INET)]
    last: OSError | None = None
    for host, family in candidates:
        try:
            return _Server((host, port), family, tokens, lock)
        except OSError as exc:
            last = exc
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                break
    assert last is not None
    where = f"{address or '*'}:{port}"
    if last.errno == errno.EADDRINUSE:
        raise AcmeError(f"cannot listen on {where} for the http-01 challenge: another program uses the port",
                        "stop that web server for a moment, or give certkit its document root with "
                        "--webroot DIR, or use --challenge dns-01") from last
    if last.errno == errno.EACCES:
        raise AcmeError(f"cannot listen on {where} for the http-01 challenge: permission denied",
                        "run as root (ports below 1024), use --webroot DIR of your web server, "
                        "or --http-port with a port forwarded from 80") from last
    raise UsageError(f"cannot listen on {where} for the http-01 challenge: {last.strerror or last}",
                     "check --http-address and --http-port") from last


def acquire(address: str, port: int) -> Responder:
    """The shared responder for (address, port), started if needed; pair with :func:`release`."""
    with _registry_lock:
        responder = _responders.get((address, port))
        if responder is None:
            responder = Responder(address, port)
            _responders[(address, port)] = responder
        responder.users += 1
        return responder


def release(responder: Responder) -> None:
    """Drop one user; the last one stops the listener."""
    # Close while holding the lock: a thread acquiring the same port right
    # after would otherwise try to bind while this socket is still open.
    with _registry_lock:
        responder.users -= 1
        if responder.users > 0:
            return
        _responders.pop((responder.address, responder.port), None)
        responder.close()


class Webroot:
    """Token files under a web server's document root."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise UsageError(f"--webroot {root} is not a folder",
                             "pass the document root your web server serves for the names on port 80")
        self.folder = self.root / ".well-known" / "acme-challenge"
        self.created: list[Path] = []
        self.files: list[Path] = []

    def add(self, token: str, key_authorization: str) -> None:
        from certkit.atomicfile import atomic_write

        for folder in (self.root / ".well-known", self.folder):
            if not folder.is_dir():
                try:
                    folder.mkdir(mode=0o755)
                except OSError as exc:
                    raise UsageError(f"cannot create {folder}: {exc.strerror}",
                                     "run certkit as a user who may write the web root") from exc
                os.chmod(folder, 0o755)  # noqa: S103 - the web server user must traverse it, whatever the umask
                self.created.append(folder)
        path = self.folder / token
        try:
            atomic_write(path, key_authorization.encode("ascii"), 0o644)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}",
                             "run certkit as a user who may write the web root") from exc
        self.files.append(path)

    def cleanup(self) -> None:
        for path in self.files:
            with contextlib.suppress(OSError):
                path.unlink()
        for folder in reversed(self.created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: other tokens or files stay
        self.files.clear()
        self.created.clear()
