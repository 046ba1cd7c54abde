"""A zoo of SMTP servers for `certkit check`, each right or wrong in one way.

Two kinds:
- :class:`ZooServer`: a small hand-written threaded SMTP server whose
  :class:`Behaviour` flags break exactly one thing (no STARTTLS, AUTH before
  TLS, injection-vulnerable buffer, silent, garbage, drop, broken TLS...).
  Certificate faults come from the certificate it is given.
- aiosmtpd servers (:func:`aiosmtpd_server`): the reference "right" server
  and an open relay.

Certificates come from :class:`ZooPki` (a private CA + leaves, made with
cryptography; the SHA-1 one with the openssl command, which cryptography
refuses to produce). Every server listens on 127.0.0.1, port 0.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.servers.net import free_port as _free_port

NAME = "mail.example.test"
USER, PASSWORD = "alice", "s3cret-pass"


# ----- certificates ------------------------------------------------------
def _key_pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Leaf:
    """A server certificate: files on disk plus the PEM bytes."""

    cert: Path
    key: Path
    cert_pem: bytes


class ZooPki:
    """A private CA and the zoo's leaf certificates under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certkit zoo CA")])
        self.ca = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_file = root / "ca.pem"
        self.ca_file.write_bytes(_pem(self.ca))
        (root / "ca.key").write_bytes(_key_pem(self.ca_key))
        self._cache: dict[str, Leaf] = {}

    def leaf(
        self,
        label: str,
        names: tuple[str, ...] = (NAME, "127.0.0.1"),
        *,
        cn: str | None = NAME,
        key: str = "ec256",
        days_before: float = 1,
        days_after: float = 90,
        self_signed: bool = False,
        eku: tuple[x509.ObjectIdentifier, ...] | None = (ExtendedKeyUsageOID.SERVER_AUTH,),
    ) -> Leaf:
        """A leaf certificate (cached by label)."""
        if label in self._cache:
            return self._cache[label]
        import ipaddress

        priv: Any = (rsa.generate_private_key(65537, int(key[3:])) if key.startswith("rsa")
                     else ec.generate_private_key(ec.SECP256R1()))
        now = dt.datetime.now(dt.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
        issuer = subject if self_signed else self.ca.subject
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(priv.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=days_before))
            .not_valid_after(now + dt.timedelta(days=days_after))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if names:
            sans: list[x509.GeneralName] = []
            for n in names:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(n)))
                except ValueError:
                    sans.append(x509.DNSName(n))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        cert = builder.sign(priv if self_signed else self.ca_key, hashes.SHA256())
        leaf = self._write(label, _key_pem(priv), _pem(cert))
        self._cache[label] = leaf
        return leaf

    def sha1_leaf(self) -> Leaf:
        """A CA-issued leaf signed with SHA-1 (made by the openssl command)."""
        if "sha1" in self._cache:
            return self._cache["sha1"]
        d = self.root
        subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "sha1.key"),
                        "-subj", f"/CN={NAME}", "-out", str(d / "sha1.csr")], check=True, capture_output=True)
        ext = d / "sha1.ext"
        ext.write_text(f"subjectAltName=DNS:{NAME},IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        subprocess.run(["openssl", "x509", "-req", "-sha1", "-in", str(d / "sha1.csr"), "-CA", str(self.ca_file),
                        "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "60", "-extfile", str(ext),
                        "-out", str(d / "sha1.pem")], check=True, capture_output=True)
        leaf = Leaf(d / "sha1.pem", d / "sha1.key", (d / "sha1.pem").read_bytes())
        self._cache["sha1"] = leaf
        return leaf

    def _write(self, label: str, key_pem: bytes, cert_pem: bytes) -> Leaf:
        cert, key = self.root / f"{label}.pem", self.root / f"{label}.key"
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        key.chmod(0o600)
        return Leaf(cert, key, cert_pem)


def server_context(leaf: Leaf, *, min_version: ssl.TLSVersion | None = None, weak: bool = False) -> ssl.SSLContext:
    """A server-side context for ``leaf``; ``min_version``/``weak`` open it to old TLS or weak suites."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if min_version is not None:
            ctx.minimum_version = min_version
    # SECLEVEL=0 lets the zoo serve RSA-1024, SHA-1 and old protocols at all (measured.md).
    ctx.set_ciphers("ALL:aNULL:eNULL:@SECLEVEL=0" if weak else "DEFAULT:@SECLEVEL=0")
    ctx.load_cert_chain(str(leaf.cert), str(leaf.key))
    return ctx


# ----- the hand-written server ---------------------------------------------
@dataclass
class Behaviour:
    """How a ZooServer behaves; the defaults make a correct submission server."""

    tls: ssl.SSLContext | None = None
    implicit_tls: bool = False
    greeting: bytes | None = b"220 zoo.example.test ESMTP ready\r\n"  # None: stay silent
    garbage: bool = False
    drip: bool = False  # greeting one byte every 0.2 s (a per-read timeout alone would never fire)
    drop: bool = False
    offer_starttls: bool = True
    auth_before_tls: bool = False
    require_tls_for_mail: bool = True
    injection_vulnerable: bool = False
    break_tls: bool = False
    reoffer_starttls: bool = False
    offer_auth_after_tls: bool = True
    open_relay: bool = False
    hang_up_before_tls: bool = False  # refuse AUTH/MAIL before TLS with 421 and close
    data_250: bool = False  # answer DATA with 250 instead of 354 (a broken or hostile server)
    echo_auth: bool = False  # a failed AUTH's 535 quotes what the client sent (some servers log-echo it)
    starttls_busy: bool = False  # advertise STARTTLS but answer it 454 (temporary), as an overloaded server does
    users: dict[str, str] = field(default_factory=lambda: {USER: PASSWORD})
    messages: list[bytes] = field(default_factory=list)


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock: Any = sock
        self.buf = bytearray()
        self.tls = False
        self.authed = False

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def readline(self) -> bytes | None:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self.buf += chunk
        line, _, rest = bytes(self.buf).partition(b"\n")
        self.buf = bytearray(rest)
        return line.rstrip(b"\r")


class ZooServer:
    """A threaded SMTP server on 127.0.0.1 with one :class:`Behaviour`."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.b = behaviour
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self._open: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self._open.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.close()
        for conn in list(self._open):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(30)
        try:
            self._dialogue(_Conn(sock))
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            self._open.discard(sock)

    def _dialogue(self, c: _Conn) -> None:
        b = self.b
        if b.drop:
            return
        if b.greeting is None:  # silent: hold the connection open until the client gives up
            while c.sock.recv(4096):
                pass
            return
        if b.garbage:
            c.sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            while c.sock.recv(4096):
                pass
            return
        if b.drip:
            for byte in b.greeting:
                c.sock.sendall(bytes([byte]))
                time.sleep(0.2)
        if b.implicit_tls:
            assert b.tls is not None
            c.sock = b.tls.wrap_socket(c.sock, server_side=True)
            c.tls = True
        c.sock.sendall(b.greeting)
        while True:
            raw = c.readline()
            if raw is None:
                return
            line = raw.decode("utf-8", "replace")
            verb = line.split(" ", 1)[0].upper()
            arg = line[len(verb):].strip()
            if verb in ("EHLO", "HELO"):
                self._ehlo(c, verb)
            elif verb == "STARTTLS":
                if c.tls or not b.offer_starttls or b.tls is None:
                    c.send("503 5.5.1 TLS not available\r\n" if not c.tls else "503 5.5.1 Already in TLS\r\n")
                    continue
                if b.starttls_busy:
                    c.send("454 4.7.0 TLS not available due to temporary reason\r\n")
                    continue
                c.send("220 2.0.0 Ready to start TLS\r\n")
                if b.break_tls:
                    c.sock.sendall(b"\x00\x01this is not TLS\r\n" * 4)
                    return
                if not b.injection_vulnerable:
                    c.buf.clear()  # RFC 3207 / CVE-2011-0411: forget plaintext input
                c.sock = b.tls.wrap_socket(c.sock, server_side=True)
                c.tls = True
                c.authed = False
            elif verb == "AUTH":
                self._auth(c, arg)
            elif verb == "MAIL":
                if b.require_tls_for_mail and not c.tls:
                    c.send("530 5.7.0 Must issue a STARTTLS command first\r\n")
                else:
                    c.send("250 2.1.0 Ok\r\n")
            elif verb == "RCPT":
                if c.authed or b.open_relay:
                    c.send("250 2.1.5 Ok\r\n")
                else:
                    c.send("554 5.7.1 Relay access denied\r\n")
            elif verb == "DATA" and b.data_250:
                c.send("250 2.0.0 Ok\r\n")
            elif verb == "DATA":
                c.send("354 End data with <CR><LF>.<CR><LF>\r\n")
                data = bytearray()
                while True:
                    part = c.readline()
                    if part is None:
                        return
                    if part == b".":
                        break
                    data += part + b"\r\n"
                b.messages.append(bytes(data))
                c.send("250 2.0.0 Ok: queued as ZOO123\r\n")
            elif verb in ("RSET", "NOOP"):
                c.send("250 2.0.0 Ok\r\n")
            elif verb == "QUIT":
                c.send("221 2.0.0 Bye\r\n")
                return
            else:
                c.send("502 5.5.2 Error: command not recognized\r\n")

    def _ehlo(self, c: _Conn, verb: str) -> None:
        b = self.b
        if verb == "HELO":
            c.send("250 zoo.example.test\r\n")
            return
        ext = ["PIPELINING", "SIZE 10240000", "8BITMIME"]
        if b.offer_starttls and b.tls is not None and (not c.tls or b.reoffer_starttls):
            ext.append("STARTTLS")
        if (c.tls and b.offer_auth_after_tls) or b.auth_before_tls:
            ext.append("AUTH PLAIN LOGIN")
        lines = ["zoo.example.test", *ext]
        c.send("".join(f"250{'-' if i < len(lines) - 1 else ' '}{t}\r\n" for i, t in enumerate(lines)))

    def _auth(self, c: _Conn, arg: str) -> None:
        b = self.b
        if not c.tls and b.hang_up_before_tls:
            c.send("421 4.7.0 Must issue a STARTTLS command first; closing\r\n")
            raise ConnectionAbortedError("hung up")
        if not c.tls and not b.auth_before_tls:
            c.send("538 5.7.11 Encryption required for requested authentication mechanism\r\n")
            return
        mech, _, initial = arg.partition(" ")
        if mech.upper() != "PLAIN":
            c.send("504 5.5.4 Unrecognized authentication type\r\n")
            return
        if not initial:
            c.send("334 \r\n")
            raw = c.readline()
            initial = (raw or b"").decode()
        try:
            _, user, password = base64.b64decode(initial).decode().split("\0")
        except ValueError:
            c.send("501 5.5.2 Cannot decode response\r\n")
            return
        if b.users.get(user) == password:
            c.authed = True
            c.send("235 2.7.0 Authentication successful\r\n")
        elif b.echo_auth:
            c.send(f"535-5.7.8 authentication failed for {initial}\r\n535 5.7.8 password {password!r} wrong\r\n")
        else:
            c.send("535 5.7.8 Error: authentication failed\r\n")


# ----- aiosmtpd servers ------------------------------------------------------
@contextlib.contextmanager
def aiosmtpd_server(ctx: ssl.SSLContext, *, open_relay: bool = False) -> Iterator[int]:
    """aiosmtpd on a free port: STARTTLS required, AUTH only after TLS, AUTH required
    (the reference right server) - or, with ``open_relay``, accepting any mail without AUTH."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 2.0.0 Message accepted"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == USER.encode() and data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)

    port = _free_port()
    kwargs: dict[str, Any] = {"tls_context": ctx, "require_starttls": True}
    if not open_relay:
        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)
    ctrl = Controller(Handler(), hostname="127.0.0.1", port=port, server_hostname="zoo-aiosmtpd.example.test",
                      ready_timeout=10, **kwargs)
    ctrl.start()
    try:
        yield port
    finally:
        ctrl.stop()


# ----- fixtures -----------------------------------------------------------------
@pytest.fixture(scope="session")
def zoo_pki(tmp_path_factory: pytest.TempPathFactory) -> ZooPki:
    """The zoo's private CA and leaf certificates (made once per test session)."""
    return ZooPki(tmp_path_factory.mktemp("zoo-pki"))


@pytest.fixture
def zoo() -> Iterator[Callable[..., ZooServer]]:
    """Factory: ``zoo(Behaviour(...))`` starts a ZooServer, stopped after the test."""
    servers: list[ZooServer] = []

    def start(behaviour: Behaviour | None = None, **changes: Any) -> ZooServer:
        server = ZooServer(replace(behaviour or Behaviour(), **changes))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
