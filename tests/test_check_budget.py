"""`certkit check` under hostile and limiting servers (issue 10 item 11; issue 11 items 5, 8, 10).

Every server is a real process or a real listener, none of them written with
certkit code: a slow asyncio server process (tests/servers/slow.py), aiosmtpd
with a per-IP connection limit (tests/servers/limited.py), aiosmtpd offering
only legacy suites, aiosmtpd serving a certificate certkit's DER reader
refuses. No wall-clock bounds: the assertions are on the FAIL/SKIP lines,
exit codes and connections counted by the servers.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certkit.check import CheckOptions, CheckReport, check_url
from certkit.check.certinfo import from_der
from certkit.check.der import parse_certificate
from tests.conftest import skip_or_fail
from tests.servers.barrier import barrier_servers
from tests.servers.limited import limited_aiosmtpd
from tests.servers.slow import slow_servers
from tests.servers.zoo import NAME, Leaf, ZooPki, aiosmtpd_server, server_context

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _quiet_aiosmtpd() -> Iterator[None]:
    """aiosmtpd logs a traceback for every handshake a probe refuses on purpose."""
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    yield


def certkit_check(*args: str) -> subprocess.CompletedProcess[str]:
    """A real `python -m certkit check` process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "certkit", "check", *args], capture_output=True, text=True,
                          env=env, cwd=str(ROOT), timeout=120)


def audit(url: str, pki: ZooPki, **kw: Any) -> CheckReport:
    kw.setdefault("cafile", str(pki.ca_file))
    kw.setdefault("name", NAME)
    kw.setdefault("timeout", 3.0)
    return check_url(url, CheckOptions(**kw))


def not_passed(report: CheckReport) -> dict[str, str]:
    return {c.id: f"{c.status}: {c.detail}" for c in report.checks if c.status != "PASS"}


# ----- issue 10.11: one deadline for the whole target ---------------------------------
def test_slow_server_is_cut_at_the_deadline(zoo_pki: ZooPki) -> None:
    """Every reply 0.6 s late (more than --timeout/2): each step passes its own timeout, the whole run cannot."""
    leaf = zoo_pki.leaf("hostile", key="rsa2048")
    with slow_servers(delay=0.6, cert=leaf.cert, key=leaf.key) as ports:
        proc = certkit_check(f"submission://127.0.0.1:{ports[0]}", "--cafile", str(zoo_pki.ca_file),
                             "--name", NAME, "--timeout", "1", "--deadline", "2.5")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    cut = [ln for ln in lines if ln.startswith("FAIL") and "deadline of 2.5 s reached during the" in ln]
    assert len(cut) == 1, proc.stdout  # the step in progress when the deadline came
    skipped = [ln for ln in lines if ln.startswith("SKIP")]
    assert skipped and all("(deadline of 2.5 s reached)" in ln for ln in skipped), proc.stdout
    assert "time-left" in skipped[0] and "starttls-injection" in skipped[0]  # certificate and probes: cut
    assert "larger --deadline" in proc.stdout  # the fix under the FAIL line
    assert "Traceback" not in proc.stderr


def test_fleet_of_stalled_targets_reports_every_target(zoo_pki: ZooPki) -> None:
    """Targets that accept STARTTLS and never speak TLS: each ends at its handshake, its probes are not run."""
    with slow_servers(6, stall_tls=True) as ports:
        targets = "".join(f"submission://127.0.0.1:{p}\n" for p in ports)
        proc = subprocess.run(
            [sys.executable, "-m", "certkit", "check", "--targets", "-", "--concurrency", "3", "--timeout", "1",
             "--deadline", "5", "--json", "--cafile", str(zoo_pki.ca_file)],
            input=targets, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)),
            cwd=str(ROOT), timeout=120)
    assert proc.returncode == 1, proc.stderr
    reports = json.loads(proc.stdout)
    assert [r["target"] for r in reports] == targets.split()
    for report in reports:
        checks = {c["id"]: c for c in report["checks"]}
        assert checks["tls-handshake"]["status"] == "FAIL"
        assert checks["tls-handshake"]["detail"] == "TLS handshake not done within 1 s"
        for probe in ("tls10-refused", "tls11-refused", "weak-ciphers-refused", "starttls-injection"):
            assert checks[probe] == {"id": probe, "status": "SKIP", "detail": "not run: tls-handshake failed"}


def test_fleet_of_slow_targets_ends_each_at_its_deadline(zoo_pki: ZooPki) -> None:
    """In a fleet (probes in turn, after the main session) every slow target still ends at its own deadline."""
    leaf = zoo_pki.leaf("hostile", key="rsa2048")
    with slow_servers(3, delay=0.6, cert=leaf.cert, key=leaf.key) as ports:
        proc = certkit_check(*(f"submission://127.0.0.1:{p}" for p in ports), "--concurrency", "3", "--timeout", "1",
                             "--deadline", "2", "--json", "--cafile", str(zoo_pki.ca_file), "--name", NAME)
    assert proc.returncode == 1, proc.stderr
    reports = json.loads(proc.stdout)
    assert len(reports) == 3
    for report in reports:
        cut = [c for c in report["checks"] if c["status"] == "FAIL"]
        assert len(cut) == 1 and cut[0]["detail"].startswith("deadline of 2 s reached during the "), cut
        skipped = {c["detail"] for c in report["checks"] if c["status"] == "SKIP"}
        assert skipped == {"not run: deadline of 2 s reached"}, skipped


def test_fleet_checks_targets_at_the_same_time() -> None:
    """Four listeners greet only once all four have a client: every banner PASSes only if checked together."""
    with barrier_servers(4) as ports:
        proc = subprocess.run(
            [sys.executable, "-m", "certkit", "check", "--targets", "-", "--concurrency", "4", "--timeout", "20",
             "--json"],
            input="".join(f"smtp://127.0.0.1:{p}\n" for p in ports), capture_output=True, text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=str(ROOT), timeout=120)
    reports = json.loads(proc.stdout)
    assert len(reports) == 4
    for report in reports:
        assert {c["id"]: c["status"] for c in report["checks"]}["banner"] == "PASS", report


# ----- issue 11.8: a small connection budget, 421 retried -----------------------------
def test_per_ip_limit_is_never_exceeded(zoo_pki: ZooPki) -> None:
    """aiosmtpd allowing 2 connections per IP: the default budget (2) never meets a 421."""
    with limited_aiosmtpd(server_context(zoo_pki.leaf("good")), limit=2) as (port, stats):
        report = audit(f"submission://127.0.0.1:{port}", zoo_pki)
    assert report.ok, not_passed(report)
    assert report.get("connection-limit") is None and stats.refused == 0
    assert 1 <= stats.most <= 2, stats.most  # the server never saw more than --max-connections from the check


def test_one_connection_at_a_time(zoo_pki: ZooPki) -> None:
    """--max-connections 1 against a server allowing one: the probes wait for the main session, no 421."""
    with limited_aiosmtpd(server_context(zoo_pki.leaf("good")), limit=1) as (port, stats):
        report = audit(f"submission://127.0.0.1:{port}", zoo_pki, max_connections=1)
    assert report.ok and report.get("connection-limit") is None, not_passed(report)
    assert stats.most == 1 and stats.refused == 0
    assert report.get("starttls-injection").status == "PASS"  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [["--deadline", "0"], ["--deadline", "soon"], ["--max-connections", "0"]])
def test_bad_budget_options_are_usage_errors(bad: list[str]) -> None:
    proc = certkit_check("smtp://127.0.0.1:25", *bad)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert bad[0] in proc.stderr


def test_421_is_a_connection_limit_not_a_broken_banner(zoo_pki: ZooPki) -> None:
    """Two other clients at the same address fill the server's limit of 2: the check's first connection
    meets a 421 for certain; one of them leaves when it does, so the retry gets in."""
    with limited_aiosmtpd(server_context(zoo_pki.leaf("good")), limit=2) as (port, stats):
        others = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        for other in others:
            assert other.recv(100).startswith(b"220")
        stats.on_refusal = others[0].close
        # A generous deadline: a dozen connections take turns in the one slot left, with 421 pauses between.
        report = audit(f"submission://127.0.0.1:{port}", zoo_pki, timeout=10.0)
        others[1].close()
    assert stats.refused >= 1
    assert stats.most <= 3  # the two others plus the one refused attempt: the check never piled on
    limit = report.get("connection-limit")
    assert limit is not None and limit.status == "WARN", not_passed(report)
    assert "421 4.7.0 too many connections" in limit.detail
    assert report.ok and report.get("banner").status == "PASS", not_passed(report)  # type: ignore[union-attr]
    for probe in ("tls10-refused", "tls11-refused", "weak-ciphers-refused", "starttls-injection"):
        assert probe not in not_passed(report), not_passed(report)  # every probe got its answer


def test_421_inside_implicit_tls_is_retried(zoo_pki: ZooPki) -> None:
    """On smtps:// the 421 comes inside TLS: the retry redoes the handshake before reading the greeting.

    Two other clients fill the limit; one leaves when the server refuses certkit, so the retry gets in.
    """
    ctx = server_context(zoo_pki.leaf("good"))
    client_ctx = ssl.create_default_context(cafile=str(zoo_pki.ca_file))
    with limited_aiosmtpd(ctx, limit=2, implicit_tls=True) as (port, stats):
        others = [client_ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=NAME)
                  for _ in range(2)]
        for other in others:
            assert other.recv(100).startswith(b"220")
        stats.on_refusal = others[0].close
        report = audit(f"smtps://127.0.0.1:{port}", zoo_pki, timeout=10.0)
        others[1].close()
    assert stats.refused == 1
    assert report.ok and report.get("connection-limit") is not None, not_passed(report)
    assert "'421 4.7.0 too many connections from your address' 1 time(s)" in \
        report.get("connection-limit").detail  # type: ignore[union-attr]
    assert report.get("banner").status == "PASS"  # type: ignore[union-attr]


# ----- issue 11.5: legacy suites only -----------------------------------------------
def legacy_context(leaf: Leaf, suite: str) -> ssl.SSLContext:
    """aiosmtpd's TLS: TLS 1.2 with one suite Python's default client list leaves out."""
    ctx = server_context(leaf)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(suite)
    return ctx


def s_client(port: int, pki: ZooPki, suite: str) -> str:
    if not shutil.which("openssl"):
        skip_or_fail("openssl not installed (the independent cross-check)")
    proc = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}",
                           "-CAfile", str(pki.ca_file), "-tls1_2", "-cipher", suite, "-servername", NAME],
                          input="QUIT\n", capture_output=True, text=True, timeout=20)
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("suite", ["AES128-SHA", "ECDHE-RSA-AES128-SHA"])
def test_legacy_suite_server_with_expired_leaf(zoo_pki: ZooPki, suite: str) -> None:
    leaf = zoo_pki.leaf("expired-rsa", key="rsa2048", days_before=400, days_after=-1)
    with aiosmtpd_server(legacy_context(leaf, suite)) as port:
        report = audit(f"submission://127.0.0.1:{port}", zoo_pki)
        peer = s_client(port, zoo_pki, suite)
    problems = not_passed(report)
    assert {"cipher-policy", "chain-trust", "time-left"} <= set(report.failed), problems
    for judged in ("tls-handshake", "name-match", "key-strength", "signature-hash", "eku-server-auth",
                   "ehlo-after-tls", "relay-refused"):  # the certificate was judged, the session went on
        assert judged not in problems, problems
    assert problems["cipher-policy"].startswith(f"FAIL: the server shares no suite with a modern client; it accepts "
                                                f"only {suite} (")
    assert "CBC with SHA-1 MAC" in problems["cipher-policy"]
    assert ("static RSA" in problems["cipher-policy"]) == (suite == "AES128-SHA")
    assert "(perhaps more" not in problems["cipher-policy"]  # every accepted suite was listed
    assert problems["time-left"].startswith("FAIL: EXPIRED on")
    assert "certificate has expired" in problems["chain-trust"]
    handshake = report.get("tls-handshake")
    assert handshake is not None and handshake.status == "PASS" and suite in handshake.detail
    # openssl s_client agrees: it connects with that suite and finds the leaf expired, on the same date
    assert f"Cipher is {suite}" in peer and "Verify return code: 10 (certificate has expired)" in peer
    not_after = dt.datetime.strptime(report.certificate["not_after"], "%Y-%m-%dT%H:%M:%SZ")
    assert f"notAfter={not_after:%b} {not_after.day:>2} {not_after:%H:%M:%S %Y} GMT" in peer
    assert f"EXPIRED on {not_after:%Y-%m-%d %H:%M} UTC" in problems["time-left"]


def test_modern_server_has_no_cipher_policy_line(zoo_pki: ZooPki) -> None:
    """cipher-policy is reported only when the strict handshake shared no suite; a modern server passes as before."""
    with aiosmtpd_server(server_context(zoo_pki.leaf("good"))) as port:
        report = audit(f"submission://127.0.0.1:{port}", zoo_pki)
    assert report.ok and report.get("cipher-policy") is None, not_passed(report)
    assert not any("legacy suites" in line for line in report.transcript)


# ----- issue 11.10: a certificate our DER reader refuses ---------------------------
def odd_leaf(pki: ZooPki) -> Leaf:
    """A CA-issued leaf whose SAN also holds an iPAddress with a netmask (8 bytes), as name constraints do."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    sans = [x509.DNSName(NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
            .issuer_name(pki.ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(pki.ca_key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    path, key_path = pki.root / "odd-san.pem", pki.root / "odd-san.key"
    path.write_bytes(pem)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Leaf(path, key_path, pem)


def test_certificate_our_der_reader_refuses(zoo_pki: ZooPki) -> None:
    leaf = odd_leaf(zoo_pki)
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_pem.decode())
    with pytest.raises(ValueError):
        parse_certificate(der)  # the premise: certkit's own reader cannot read it, cryptography can
    with aiosmtpd_server(server_context(leaf)) as port:
        report = audit(f"submission://127.0.0.1:{port}", zoo_pki)
    assert report.ok, not_passed(report)
    assert report.certificate["names"] == [NAME, "127.0.0.1", "10.0.0.0/8"]
    assert report.certificate["key"] == "ec256" and report.certificate["signature_hash"] == "sha256"


def test_unreadable_certificate_names_both_readers() -> None:
    with pytest.raises(ValueError, match="cryptography"):
        from_der(b"\x30\x03\x02\x01\x01")
