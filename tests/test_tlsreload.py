"""ReloadableTLS in process: new handshakes get the new certificate, old connections keep theirs."""

from __future__ import annotations

import shutil
import smtplib
import socket
import ssl
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509 as cx509

from certkit import keys, names
from certkit import x509 as cx
from certkit.errors import OperationError, UsageError
from certkit.smtpd import tlsreload
from tests.servers.net import free_port


def write_pair(folder: Path, cn: str) -> tuple[Path, str]:
    """A combined key+cert PEM for ``cn``; returns (path, sha256)."""
    key = keys.generate("ec256")
    cert = cx.self_signed(key, [names.parse_name(cn), names.parse_name("127.0.0.1")], 2)
    path = folder / f"{cn}.pem"
    path.write_bytes(keys.to_pem(key) + cx.to_pem(cert))
    return path, cx.sha256_fingerprint(cert)


def client_context(**kw: object) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def served_sha256(smtp: smtplib.SMTP) -> str:
    der = smtp.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
    return cx.sha256_fingerprint(cx509.load_der_x509_certificate(der))


def tls11_client() -> ssl.SSLContext:
    """A client that offers only TLS 1.0/1.1 (as old Outlook/SChannel did)."""
    import warnings

    ctx = client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


@pytest.fixture
def pair_dir(tmp_path: Path) -> Path:
    return tmp_path


def test_reload_serves_new_cert_to_new_connections_only(pair_dir: Path) -> None:
    live = pair_dir / "live.pem"
    a, sha_a = write_pair(pair_dir, "a.test")
    b, sha_b = write_pair(pair_dir, "b.test")
    shutil.copy(a, live)
    tls = tlsreload.ReloadableTLS.from_files(live)
    assert tls.served.sha256 == sha_a
    assert tls.context.get_ca_certs() == []  # the dispatcher itself never holds a certificate
    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port, tls_context=tls.context, require_starttls=True)
    controller.start()
    try:
        old = smtplib.SMTP("127.0.0.1", port, timeout=5)
        old.starttls(context=client_context())
        assert served_sha256(old) == sha_a
        dispatcher = tls.context
        shutil.copy(b, live)
        served = tls.reload()
        assert served.sha256 == sha_b and tls.reloads == 1
        assert tls.context is dispatcher  # the server keeps the same object
        new = smtplib.SMTP("127.0.0.1", port, timeout=5)
        new.starttls(context=client_context())
        assert served_sha256(new) == sha_b
        # The connection made before the reload is untouched and still works.
        assert old.noop()[0] == 250
        assert served_sha256(old) == sha_a
        # With SNI the same swap happens.
        for conn in (old, new):
            conn.quit()
    finally:
        controller.stop()


def test_failed_reload_keeps_previous_context(pair_dir: Path) -> None:
    live = pair_dir / "live.pem"
    a, sha_a = write_pair(pair_dir, "a.test")
    shutil.copy(a, live)
    tls = tlsreload.ReloadableTLS.from_files(live)
    before = tls.current
    live.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(OperationError, match="cannot load the certificate"):
        tls.reload()
    assert tls.current is before and tls.served.sha256 == sha_a and tls.reloads == 0


def test_mismatched_key_is_refused(pair_dir: Path) -> None:
    a, _ = write_pair(pair_dir, "a.test")
    b, _ = write_pair(pair_dir, "b.test")
    mixed = pair_dir / "mixed.pem"
    key_a = a.read_text().split("-----BEGIN CERTIFICATE-----")[0]
    cert_b = "-----BEGIN CERTIFICATE-----" + b.read_text().split("-----BEGIN CERTIFICATE-----")[1]
    mixed.write_text(key_a + cert_b)
    with pytest.raises(OperationError):
        tlsreload.ReloadableTLS.from_files(mixed)


def test_missing_file_is_a_usage_error(pair_dir: Path) -> None:
    with pytest.raises(UsageError):
        tlsreload.ReloadableTLS.from_files(pair_dir / "nope.pem")


def test_tls11_refused_tls12_accepted(pair_dir: Path) -> None:
    a, _ = write_pair(pair_dir, "a.test")
    tls = tlsreload.ReloadableTLS.from_files(a)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    import threading

    def serve(n: int) -> None:
        for _ in range(n):
            conn, _addr = listener.accept()
            try:
                with tls.context.wrap_socket(conn, server_side=True) as tconn:
                    tconn.recv(1)
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, args=(2,), daemon=True)
    thread.start()
    old = tls11_client()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            old.wrap_socket(raw).do_handshake()
    tls12 = client_context(minimum_version=ssl.TLSVersion.TLSv1_2, maximum_version=ssl.TLSVersion.TLSv1_2)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with tls12.wrap_socket(raw) as conn:
            assert conn.version() == "TLSv1.2"
            conn.sendall(b"x")
    thread.join(5)
    listener.close()


def test_lineage_source_reads_the_immutable_version_file(home: Path) -> None:
    from certkit import issuing
    from certkit.settings import LineageSettings
    from certkit.store import Store

    store = Store(home)
    issuing.issue(store, LineageSettings(name="mx.test", domains=["mx.test"], key_type="ec256"), echo=lambda _: None)
    tls = tlsreload.ReloadableTLS.from_lineage(home, "mx.test")
    assert "/versions/0001/" in tls.served.certfile
    issuing.issue(store, LineageSettings(name="mx.test", domains=["mx.test"], key_type="ec256"), echo=lambda _: None)
    assert "/versions/0002/" in tls.reload().certfile
    with pytest.raises(UsageError):
        tlsreload.ReloadableTLS.from_lineage(home, "nope.test")


def test_status_file_round_trip(pair_dir: Path) -> None:
    a, sha_a = write_pair(pair_dir, "a.test")
    tls = tlsreload.ReloadableTLS.from_files(a)
    pid_file = pair_dir / "x.pid"
    tlsreload.write_pid_file(pid_file)
    tlsreload.write_status(pid_file, tls, None)
    status = tlsreload.read_status(pid_file)
    assert status is not None and status["sha256"] == sha_a and status["reloads"] == 0 and status["error"] is None
    tlsreload.remove_pid_file(pid_file)
    assert not pid_file.exists() and tlsreload.read_status(pid_file) is None


APP = """
import signal, sys, threading
from aiosmtpd.controller import Controller
from certkit.smtpd.tlsreload import ReloadableTLS, install_reload_signal, write_pid_file

class Handler:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

home, port, pid_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tls = ReloadableTLS.from_lineage(home, "app.test")
controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=tls.context,
                        require_starttls=True)
controller.start()
write_pid_file(pid_file)
install_reload_signal(tls, pid_file=pid_file)
print("ready", flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait(60)
controller.stop()
"""


@pytest.mark.integration  # a second or more of real processes
def test_any_aiosmtpd_app_reloads_through_deploy(tmp_path: Path) -> None:
    """The documented two-line integration: a Controller app + certkit deploy --to aiosmtpd."""
    import subprocess
    import sys

    from certkit.deploy import aiosmtpd as deploy_aiosmtpd
    from tests.servers.smtpd import child_env, issue_lineage
    from tests.test_smtpd import deploy_ctx, live_sha256

    home = tmp_path / "home"
    issue_lineage(home, "app.test")
    port = free_port()
    pid_file = tmp_path / "app.pid"
    proc = subprocess.Popen([sys.executable, "-c", APP, str(home), str(port), str(pid_file)],
                            stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        first = live_sha256(home, "app.test")
        conn = smtplib.SMTP("127.0.0.1", port, timeout=5)
        conn.starttls(context=client_context())
        assert served_sha256(conn) == first
        issue_lineage(home, "app.test")
        deploy_aiosmtpd.deploy(deploy_ctx(home, "app.test", pid_file))
        fresh = smtplib.SMTP("127.0.0.1", port, timeout=5)
        fresh.starttls(context=client_context())
        assert served_sha256(fresh) == live_sha256(home, "app.test") != first
        assert served_sha256(conn) == first and conn.noop()[0] == 250
        for c in (conn, fresh):
            c.quit()
    finally:
        proc.terminate()
        proc.wait(10)
