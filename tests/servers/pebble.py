"""Pebble (a small RFC 8555 CA) and pebble-challtestsrv (its DNS), on loopback.

Usable from pytest (the session fixtures below) and from plain scripts such as
``bench/acme/run.py`` and ``bench/renew``::

    from tests.servers.pebble import start_pebble

    server = start_pebble(Path("/tmp/work"), env_overrides={"PEBBLE_WFE_NONCEREJECT": "50"})
    try:
        server.directory_url      # https://127.0.0.1:PORT/dir
        server.ca_bundle          # PEM file trusting Pebble's HTTPS (--ca-bundle, REQUESTS_CA_BUNDLE,
                                  # LEGO_CA_CERTIFICATES)
        server.http_port          # where Pebble's VA fetches http-01 tokens (serve them on 127.0.0.1)
        server.dns_port           # challtestsrv DNS (answers every A query with 127.0.0.1)
        server.mgmt_url           # https://127.0.0.1:MGMT (Pebble's management API)
        server.roots_pem(0)       # issuing root N (bytes); intermediates_pem(N) likewise
        server.set_txt("_acme-challenge.example.com", "value")   # dns-01 records
        server.clear_txt("_acme-challenge.example.com")
        server.eab_keys           # {kid: base64url HMAC key} when started with eab_keys=
    finally:
        server.stop()

``start_pebble(workdir, env_overrides=None, eab_keys=None, eab_required=None)``
picks free loopback ports, writes Pebble's config and its own HTTPS
certificate (a throw-away CA made with ``cryptography``) into ``workdir``, and
starts ``pebble -strict`` with ``PEBBLE_VA_NOSLEEP=1`` (no random validation
delay) and Pebble's default nonce rejection (5 %) left on. Raises
:class:`PebbleUnavailable` when the binaries are missing or do not start.

Fixtures: ``pebble`` (session, the default server), ``pebble_eab`` (external
account binding required; kid ``kid-1``), ``pebble_alt_roots``
(``PEBBLE_ALTERNATE_ROOTS=2``), ``pebble_nonce50``
(``PEBBLE_WFE_NONCEREJECT=50``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers.net import free_ports
from tests.servers.processes import stop_all

START_TIMEOUT = 20.0


class PebbleUnavailable(RuntimeError):
    """Pebble or pebble-challtestsrv is missing or did not start."""



def _write_tls_files(workdir: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a 127.0.0.1/localhost server certificate for Pebble's HTTPS."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certkit test Pebble HTTPS CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file, ca_file = workdir / "pebble-cert.pem", workdir / "pebble-key.pem", workdir / "ca.pem"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return cert_file, key_file, ca_file


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PebbleUnavailable(f"{proc.args[0]} exited: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise PebbleUnavailable(f"{proc.args[0]} did not listen on {port}: {log.read_text(errors='replace')[-2000:]}")


@dataclass
class PebbleServer:
    """A running Pebble + challtestsrv pair (see the module docstring)."""

    workdir: Path
    directory_url: str
    ca_bundle: Path
    http_port: int
    tls_port: int
    dns_port: int
    mgmt_url: str
    challtest_url: str
    eab_keys: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def _mgmt_get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.mgmt_url + path, context=self._ssl(), timeout=10) as resp:
            return bytes(resp.read())

    def roots_pem(self, index: int = 0) -> bytes:
        """PEM of Pebble's issuing root number ``index`` (0 is the default chain's)."""
        return self._mgmt_get(f"/roots/{index}")

    def intermediates_pem(self, index: int = 0) -> bytes:
        """PEM of Pebble's intermediate number ``index``."""
        return self._mgmt_get(f"/intermediates/{index}")

    def _challtest_post(self, path: str, body: Mapping[str, str]) -> None:
        req = urllib.request.Request(self.challtest_url + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def set_txt(self, name: str, value: str) -> None:
        """Make the DNS answer TXT ``value`` for ``name`` (e.g. ``_acme-challenge.example.com``)."""
        self._challtest_post("/set-txt", {"host": name.rstrip(".") + ".", "value": value})

    def clear_txt(self, name: str) -> None:
        """Remove every TXT record of ``name``."""
        self._challtest_post("/clear-txt", {"host": name.rstrip(".") + "."})

    def stop(self) -> None:
        """Stop both processes (idempotent)."""
        stop_all(self.procs)


def start_pebble(
    workdir: Path,
    env_overrides: Mapping[str, str] | None = None,
    eab_keys: Mapping[str, str] | None = None,
    eab_required: bool | None = None,
) -> PebbleServer:
    """Start Pebble and pebble-challtestsrv on free loopback ports (see the module docstring).

    Args:
        workdir: a folder for config, TLS files and logs (created).
        env_overrides: extra PEBBLE_* environment, e.g. ``{"PEBBLE_ALTERNATE_ROOTS": "2"}``.
        eab_keys: ``{kid: base64url HMAC key}``; EAB is then required unless ``eab_required=False``.
        eab_required: force ``externalAccountBindingRequired``.

    Raises:
        PebbleUnavailable: a binary is missing or a process did not start.
    """
    for tool in ("pebble", "pebble-challtestsrv"):
        if shutil.which(tool) is None:
            raise PebbleUnavailable(f"{tool} is not installed (Debian package pebble)")
    workdir.mkdir(parents=True, exist_ok=True)
    cert_file, key_file, ca_file = _write_tls_files(workdir)
    acme_port, mgmt_port, http_port, tls_port, dns_port, challtest_port = free_ports(6)
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{acme_port}",
            "managementListenAddress": f"127.0.0.1:{mgmt_port}",
            "certificate": str(cert_file),
            "privateKey": str(key_file),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(eab_keys) if eab_required is None else eab_required,
            "externalAccountMACKeys": dict(eab_keys or {}),
        }
    }
    (workdir / "pebble-config.json").write_text(json.dumps(config, indent=2))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEBBLE_")}
    env["PEBBLE_VA_NOSLEEP"] = "1"
    env.update(env_overrides or {})
    server = PebbleServer(
        workdir=workdir,
        directory_url=f"https://127.0.0.1:{acme_port}/dir",
        ca_bundle=ca_file,
        http_port=http_port,
        tls_port=tls_port,
        dns_port=dns_port,
        mgmt_url=f"https://127.0.0.1:{mgmt_port}",
        challtest_url=f"http://127.0.0.1:{challtest_port}",
        eab_keys=dict(eab_keys or {}),
    )
    deadline = time.monotonic() + START_TIMEOUT
    try:
        dns_log = workdir / "challtestsrv.log"
        with dns_log.open("wb") as out:
            proc = subprocess.Popen(
                ["pebble-challtestsrv", "-dns01", f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "",
                 "-tlsalpn01", "", "-management", f"127.0.0.1:{challtest_port}",
                 "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        server.procs.append(proc)
        _wait_port(challtest_port, proc, dns_log, deadline)
        pebble_log = workdir / "pebble.log"
        with pebble_log.open("wb") as out:
            proc = subprocess.Popen(
                ["pebble", "-config", str(workdir / "pebble-config.json"), "-strict",
                 "-dnsserver", f"127.0.0.1:{dns_port}"],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        server.procs.append(proc)
        _wait_port(acme_port, proc, pebble_log, deadline)
        _wait_port(mgmt_port, proc, pebble_log, deadline)
    except BaseException:
        server.stop()
        raise
    return server


def random_hmac_key() -> str:
    """A base64url HMAC key as a CA hands out for EAB."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


@contextlib.contextmanager
def _session_pebble(**kwargs: object) -> Iterator[PebbleServer]:
    from tests.conftest import skip_or_fail

    workdir = Path(tempfile.mkdtemp(prefix="certkit-pebble-"))
    try:
        server = start_pebble(workdir, **kwargs)  # type: ignore[arg-type]
    except PebbleUnavailable as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        skip_or_fail(str(exc))
        raise  # not reached: skip_or_fail raises
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def pebble() -> Iterator[PebbleServer]:
    """The default Pebble: -strict, no validation sleep, default 5 % nonce rejection."""
    with _session_pebble() as server:
        yield server


@pytest.fixture(scope="session")
def pebble_eab() -> Iterator[PebbleServer]:
    """A Pebble that requires external account binding (kid ``kid-1``, see ``.eab_keys``)."""
    with _session_pebble(eab_keys={"kid-1": random_hmac_key()}) as server:
        yield server


@pytest.fixture(scope="session")
def pebble_alt_roots() -> Iterator[PebbleServer]:
    """A Pebble offering alternate chains to two more roots (``PEBBLE_ALTERNATE_ROOTS=2``)."""
    with _session_pebble(env_overrides={"PEBBLE_ALTERNATE_ROOTS": "2"}) as server:
        yield server


@pytest.fixture(scope="session")
def pebble_nonce50() -> Iterator[PebbleServer]:
    """A Pebble rejecting half of all nonces (``PEBBLE_WFE_NONCEREJECT=50``)."""
    with _session_pebble(env_overrides={"PEBBLE_WFE_NONCEREJECT": "50"}) as server:
        yield server
