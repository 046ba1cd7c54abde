"""A telnet-style SMTP client session with a transcript and a deadline on every step.

Only the standard library (socket, ssl) is used, so `certkit check` starts
fast. Every step - connect, banner, each reply, the TLS handshake - gets its
own deadline of ``timeout`` seconds, enforced across partial reads, so a
server that drips one byte a second cannot stretch a step. Replies are size
limited so a server talking garbage cannot fill memory.

Failures surface as :class:`SessionError` with a ``kind`` ("connect",
"timeout", "closed", "garbage", "tls", "verify") that the checklist turns
into FAIL lines.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass

from certkit.check import target_budget as budgets

MAX_LINE = 4096  # RFC 5321 4.5.3.1.5 reply line limit is 512; be lenient, but bounded
MAX_LINES = 200
REDACTED = "<redacted>"
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class SessionError(Exception):
    """A step of the SMTP session failed.

    Attributes:
        kind: connect, timeout, closed, garbage, tls or verify.
        step: what was being done ("banner", "reply to EHLO", "TLS handshake").
        deadline: the target's overall deadline cut the step (kind is then "timeout").
    """

    def __init__(self, kind: str, step: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.step = step
        self.message = message
        self.verify_message = ""
        self.deadline = False


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: code and its text lines (without the code prefix)."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def first(self) -> str:
        return f"{self.code} {self.lines[0] if self.lines else ''}".strip()

    def ehlo_keywords(self) -> dict[str, str]:
        """EHLO extensions (upper-case keyword -> parameters), greeting line excluded."""
        out: dict[str, str] = {}
        for line in self.lines[1:]:
            word, _, params = line.strip().partition(" ")
            if word:
                out[word.upper()] = params
        return out


def _printable(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    if text.isprintable():  # the usual case, without a per-character loop
        return text
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


class SmtpSession:
    """One TCP connection to an SMTP server, plain or TLS.

    Args:
        host: host name or IP.
        port: TCP port.
        timeout: seconds allowed for each step.
        transcript: list the S:/C: lines are appended to (None: no transcript).
        main: the audit's main session (it gets a connection slot before side probes).
        budget: deadline and connection slots shared with the other connections to the target
            (default: the current audit's, see certkit.check.target_budget).
    """

    def __init__(self, host: str, port: int, timeout: float, transcript: list[str] | None = None, *,
                 main: bool = False, budget: budgets.Budget | None = None) -> None:
        self.budget = budget if budget is not None else budgets.current()
        self.main = main
        self._slot = False
        self._retrying = False
        self._tls_setup: tuple[ssl.SSLContext, str | None] | None = None  # to redo an implicit-TLS handshake
        self.host = host
        self.port = port
        self.timeout = timeout
        self.transcript = transcript
        self.sock: socket.socket | None = None
        self.tls: ssl.SSLSocket | None = None
        self._buf = bytearray()
        self.secrets: list[str] = []  # see redact()

    # ----- transcript ----------------------------------------------------
    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced by <redacted>.

        A server may echo what it got (a 535 quoting the AUTH data); its
        replies reach the transcript and check details, so they are scrubbed too.
        """
        for secret in self.secrets:
            if secret and secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def note(self, line: str) -> None:
        """Add a line to the transcript (handshake summaries, remarks), secrets redacted."""
        if self.transcript is not None:
            self.transcript.append(self.redact(line) if self.secrets else line)

    # ----- connection ------------------------------------------------------
    def connect(self) -> None:
        """Open the TCP connection within the timeout."""
        self.close()
        self._buf.clear()
        self._take_slot()
        deadline = self._step_end()
        addresses = self._resolve()
        error: OSError | None = None
        for address in addresses:  # every address of the name, in resolver order, as create_connection does
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                self.sock = socket.create_connection((address, self.port), timeout=remaining)
                break
            except OSError as exc:
                error = exc
        if self.sock is None:
            if error is None or isinstance(error, TimeoutError):
                raise self._timeout_error("connect", f"no TCP connection within {self.timeout:g} s") from error
            raise SessionError("connect", "connect", f"cannot connect: {error.strerror or error}") from error
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.note(f"*  connected to {self.host} port {self.port}")

    def _resolve(self) -> list[str]:
        """The address to connect to; the name lookup is bounded by the timeout too.

        getaddrinfo() has no timeout of its own and a dead resolver can block it
        for 20 s or more, so a lookup runs in a helper thread that is abandoned
        when the step's time is up.
        """
        try:
            ipaddress.ip_address(self.host)
            return [self.host]
        except ValueError:
            pass
        import threading

        found: list[str] = []  # addresses, de-duplicated below
        failed: list[OSError | UnicodeError] = []

        def lookup() -> None:
            try:
                infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
                found.extend(str(info[4][0]) for info in infos)
            except (OSError, UnicodeError) as exc:  # UnicodeError: the idna codec refuses the name
                failed.append(exc)

        worker = threading.Thread(target=lookup, daemon=True)
        worker.start()
        worker.join(max(0.0, self._step_end() - time.monotonic()))
        if worker.is_alive():
            raise self._timeout_error("connect", f"name lookup of {self.host} took more than {self.timeout:g} s")
        if failed or not found:
            why = (getattr(failed[0], "strerror", None) or str(failed[0])) if failed else "no address"
            raise SessionError("connect", "connect", f"cannot resolve {self.host}: {why}")
        return list(dict.fromkeys(found))

    def close(self) -> None:
        """Close without ceremony (QUIT is the caller's choice)."""
        for s in (self.tls, self.sock):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self.tls = self.sock = None
        self._give_slot()

    # ----- budget (certkit.check.target_budget) -------------------------------------
    def _take_slot(self) -> None:
        if self.budget is None:
            return
        if not self.budget.acquire(self.main):
            raise self._timeout_error("connect", "")
        self._slot = True
        self.budget.watch(self)

    def _give_slot(self) -> None:
        if self.budget is not None and self._slot:
            self._slot = False
            self.budget.unwatch(self)
            self.budget.release(self.main)

    def interrupt(self) -> None:
        """Unblock a read or handshake in progress (the deadline watchdog calls this)."""
        for s in (self.tls, self.sock):
            if s is not None:
                budgets.shutdown_quietly(s)

    def _step_end(self) -> float:
        """When the current step must end: ``timeout`` from now, or the overall deadline if sooner."""
        if self.budget is None:
            return time.monotonic() + self.timeout
        return self.budget.step_end(self.timeout)

    def _step_timeout(self, step: str) -> float:
        """Seconds left for ``step`` (a socket timeout); SessionError when the deadline has passed."""
        left = self._step_end() - time.monotonic()
        if left <= 0:
            raise self._timeout_error(step, "")
        return left

    def _cut(self) -> bool:
        return self.budget is not None and self.budget.cut(self.main)

    def _timeout_error(self, step: str, message: str) -> SessionError:
        """A timeout; when the overall deadline caused it (or interrupted the socket), it says so."""
        if self._cut() or not message:
            err = SessionError("timeout", step, self.budget.message(step) if self.budget else message)
            err.deadline = True
            return err
        return SessionError("timeout", step, message)

    def __enter__(self) -> SmtpSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _active(self) -> socket.socket:
        s = self.tls or self.sock
        if s is None:
            raise SessionError("closed", "send", "not connected")
        return s

    # ----- I/O -------------------------------------------------------------
    def send(self, line: str, shown: str | None = None) -> None:
        """Send one command line (CRLF added); ``shown`` replaces it in the transcript (secrets)."""
        self.send_raw((line + "\r\n").encode("utf-8"), shown if shown is not None else line)

    def send_raw(self, data: bytes, shown: str) -> None:
        """Send bytes as they are; the transcript shows ``shown`` (one C: line per text line)."""
        for text in shown.split("\n"):
            self.note(f"C: {text}")
        s = self._active
        try:
            s.settimeout(self._step_timeout("send"))
            s.sendall(data)
            self._quickack()
        except TimeoutError as exc:
            raise self._timeout_error("send", f"could not send within {self.timeout:g} s") from exc
        except (OSError, ssl.SSLError) as exc:
            if self._cut():
                raise self._timeout_error("send", "") from exc
            raise SessionError("closed", "send", f"connection lost while sending: {exc}") from exc

    def _quickack(self) -> None:
        # ACK the server's data at once (Linux). Otherwise a server that wrote
        # TLS 1.3 session tickets and then its reply, without TCP_NODELAY, holds
        # the reply back (Nagle) until our delayed ACK fires: 40 ms per exchange.
        s = self.tls or self.sock
        if _QUICKACK is not None and s is not None:
            try:
                s.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                pass

    def _fill(self, deadline: float, step: str) -> None:
        s = self._active
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._timeout_error(step, f"no complete {step} within {self.timeout:g} s")
        try:
            s.settimeout(remaining)
            chunk = s.recv(16384)
        except TimeoutError as exc:
            raise self._timeout_error(step, f"no complete {step} within {self.timeout:g} s") from exc
        except (ssl.SSLError, OSError) as exc:
            if not self._cut():
                raise self._read_error(step, exc) from exc
            raise self._timeout_error(step, "") from exc
        if not chunk:
            if self._cut():
                raise self._timeout_error(step, "")
            raise SessionError("closed", step, f"the server closed the connection instead of sending the {step}")
        self._buf += chunk

    @staticmethod
    def _read_error(step: str, exc: OSError) -> SessionError:
        if isinstance(exc, ssl.SSLError):
            return SessionError("tls", step, f"TLS error while reading {step}: {exc.reason or exc}")
        return SessionError("closed", step, f"connection lost while reading {step}: {exc.strerror or exc}")

    def _readline(self, deadline: float, step: str) -> bytes:
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[: end + 1])
                del self._buf[: end + 1]
                return line.rstrip(b"\r\n")
            if len(self._buf) > MAX_LINE:
                raise SessionError("garbage", step, f"{step}: a line longer than {MAX_LINE} bytes")
            self._fill(deadline, step)

    def read_reply(self, step: str = "reply") -> Reply:
        """Read one (possibly multi-line) reply within the timeout.

        Raises:
            SessionError: timeout, connection closed, or text that is not an SMTP reply.
        """
        deadline = self._step_end()
        code: int | None = None
        texts: list[str] = []
        while True:
            raw = self._readline(deadline, step)
            shown = _printable(raw)
            self.note(f"S: {shown}")
            if len(raw) < 3 or not raw[:3].isdigit() or (len(raw) > 3 and raw[3:4] not in (b" ", b"-")):
                raise SessionError("garbage", step, f"{step} is not an SMTP reply: {shown[:80]!r}")
            line_code = int(raw[:3])
            if code is None:
                code = line_code
            elif line_code != code:
                raise SessionError("garbage", step, f"{step} mixes reply codes {code} and {line_code}")
            texts.append(shown[4:])
            if len(raw) == 3 or raw[3:4] == b" ":
                if code == 421 and step == "banner" and self.budget is not None and not self._retrying:
                    return self._retry_after_421(Reply(code, tuple(texts)))
                return Reply(code, tuple(texts))
            if len(texts) >= MAX_LINES:
                raise SessionError("garbage", step, f"{step} has more than {MAX_LINES} lines")

    def _retry_after_421(self, reply: Reply) -> Reply:
        """A 421 greeting: the server limits connections (issue 11.8). Pause, reconnect, greet again.

        The budget lowers its connection cap to what the server allowed; the
        retries stop at MAX_RETRIES or at the deadline, whichever comes first.
        """
        assert self.budget is not None
        for attempt in range(budgets.MAX_RETRIES):
            if reply.code != 421:
                break
            implicit_tls = self.tls is not None and self._tls_setup is not None  # smtps: greeting inside TLS
            pause = self.budget.saw_refusal(reply.first, attempt)
            self.note(f"*  the server limits connections ({reply.first}); retrying in {pause:g} s")
            self.close()
            if not self.budget.pause(pause):
                raise self._timeout_error("banner", "")
            self.connect()
            if implicit_tls and self._tls_setup is not None:
                self.start_tls(*self._tls_setup)
            self._retrying = True
            try:
                reply = self.read_reply("banner")
            finally:
                self._retrying = False
        return reply

    def command(self, line: str, shown: str | None = None, step: str | None = None) -> Reply:
        """Send a command and read its reply."""
        self.send(line, shown)
        return self.read_reply(step or f"reply to {(shown or line).split(' ')[0]}")

    def pending(self) -> bytes:
        """Bytes already received but not consumed (must be empty before STARTTLS's handshake)."""
        return bytes(self._buf)

    # ----- TLS ---------------------------------------------------------------
    def start_tls(self, context: ssl.SSLContext, server_hostname: str | None) -> ssl.SSLSocket:
        """Run the TLS handshake on the connection within the timeout.

        Raises:
            SessionError: kind "verify" when the certificate was refused
                (``verify_message`` says why), "tls" for other handshake failures.
        """
        if self.sock is None:
            raise SessionError("closed", "TLS handshake", "not connected")
        self._tls_setup = (context, server_hostname)
        # Plaintext bytes received before the handshake would be mistaken for
        # TLS records; RFC 3207 forbids the server to send any (CVE-2011-1575 class).
        self._buf.clear()
        try:
            tls = context.wrap_socket(self.sock, server_hostname=server_hostname, do_handshake_on_connect=False)
        except (ssl.SSLError, ValueError, OSError) as exc:
            raise SessionError("tls", "TLS handshake", f"cannot start TLS: {exc}") from exc
        self.sock = None
        self.tls = tls
        try:
            tls.settimeout(self._step_timeout("TLS handshake"))
            tls.do_handshake()
            self._quickack()
        except ssl.SSLCertVerificationError as exc:
            err = SessionError("verify", "TLS handshake", f"certificate refused: {exc.verify_message}")
            err.verify_message = str(exc.verify_message or exc.reason or exc)
            raise err from exc
        except TimeoutError as exc:
            raise self._timeout_error("TLS handshake", f"TLS handshake not done within {self.timeout:g} s") from exc
        except (ssl.SSLError, OSError) as exc:
            if self._cut():
                raise self._timeout_error("TLS handshake", "") from exc
            if not isinstance(exc, ssl.SSLError):
                raise SessionError("closed", "TLS handshake", f"connection lost during the TLS handshake: {exc}") \
                    from exc
            raise SessionError("tls", "TLS handshake", f"TLS handshake failed: {exc.reason or exc}") from exc
        return tls

    def quit(self) -> None:
        """Send QUIT and read the reply, ignoring failures (the audit is over)."""
        try:
            self.command("QUIT")
        except SessionError:
            pass


def peer_chain_der(tls: ssl.SSLSocket) -> list[bytes]:
    """The certificates the server sent, leaf first, DER (empty when unavailable).

    Python 3.13 has ``get_unverified_chain()``; 3.10-3.12 have it on the
    private ``_sslobj``. The leaf alone is always available.
    """
    getter = getattr(tls, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    if getter is not None:
        try:
            chain = getter() or []
            out = []
            for cert in chain:
                data = cert.public_bytes(ssl._ssl.ENCODING_DER) if hasattr(cert, "public_bytes") else cert  # type: ignore[attr-defined]
                out.append(bytes(data))
            if out:
                return out
        except (ssl.SSLError, ValueError, AttributeError, TypeError):
            pass
    leaf = tls.getpeercert(binary_form=True)
    return [leaf] if leaf else []
