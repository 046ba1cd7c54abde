"""Issue 11 "coverage to add": what testssl.sh and internet.nl check for a STARTTLS endpoint.

Every check id is proven against a real server configured for the case:
aiosmtpd on Python's OpenSSL (good server, DHE with a 1024-bit group,
chains served out of order or with a duplicate, an EC leaf with
keyEncipherment, TLS 1.2 only, TLS 1.3 only), a private Postfix 3.7,
openssl s_server behind a STARTTLS front (a stapled OCSP response, the
fallback alert), tlslite-ng (SSL 3.0, secp224r1), and a scripted first
flight (tests/servers/rawtls.py) for what no maintained TLS library still
does: compression, no RFC 5746, SSL 2.0, ignoring TLS_FALLBACK_SCSV.
openssl s_client is the cross-check where it can see the same fact;
testssl.sh in the slow tests.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certkit.check import CheckOptions, CheckReport, check_url, tlsfacts
from certkit.check.report import CheckResult
from certkit.check.target import parse_target
from tests.conftest import skip_or_fail
from tests.servers.postfix import PostfixInstance
from tests.servers.rawtls import Script, scripted_tls_server
from tests.servers.zoo import NAME, Behaviour, Leaf, ZooPki, ZooServer, aiosmtpd_server, server_context

NEW_IDS = [*tlsfacts.PROBE_IDS, "chain-order", "key-usage"]


# ----- certificates: zoo CA -> intermediate -> leaf ---------------------------------
@dataclass
class Issued:
    cert: x509.Certificate
    key: Any

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _issue(subject: str, issuer: Issued | None, issuer_cert: x509.Certificate, issuer_key: Any, *,
           ca: bool, key: Any, usage: dict[str, bool]) -> Issued:
    now = dt.datetime.now(dt.timezone.utc)
    flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                           "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"), False)
    flags.update(usage)
    builder = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=60))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(**flags), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if not ca:
        builder = (builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    return Issued(builder.sign(issuer_key, hashes.SHA256()), key)


@pytest.fixture(scope="module")
def intermediate(zoo_pki: ZooPki) -> Issued:
    return _issue("certkit zoo intermediate", None, zoo_pki.ca, zoo_pki.ca_key, ca=True,
                  key=ec.generate_private_key(ec.SECP256R1()), usage={"key_cert_sign": True, "crl_sign": True})


def _leaf(intermediate: Issued, key: Any, **usage: bool) -> Issued:
    return _issue(NAME, intermediate, intermediate.cert, intermediate.key, ca=False, key=key, usage=usage)


def _context(tmp_path: Path, leaf: Issued, served: list[bytes], *, ciphers: str = "DEFAULT",
             minimum: ssl.TLSVersion | None = None, maximum: ssl.TLSVersion | None = None,
             dh_bits: int | None = None) -> ssl.SSLContext:
    """A server context serving ``leaf`` followed by ``served`` exactly in that order (load_cert_chain keeps it)."""
    chain, key = tmp_path / "served.pem", tmp_path / "leaf.key"
    chain.write_bytes(leaf.pem + b"".join(served))
    key.write_bytes(leaf.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    ctx.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    ctx.load_cert_chain(str(chain), str(key))
    if dh_bits:
        params = tmp_path / f"dh{dh_bits}.pem"
        subprocess.run(["openssl", "dhparam", "-dsaparam", "-out", str(params), str(dh_bits)], check=True,
                       capture_output=True, timeout=60)
        ctx.load_dh_params(str(params))
    return ctx



def _audit(port: int, pki: ZooPki, *, quick: bool = False) -> CheckReport:
    return check_url(f"submission://127.0.0.1:{port}",
                     CheckOptions(name=NAME, cafile=str(pki.ca_file), timeout=5, quick=quick, helo="probe.test"))


def _statuses(report: CheckReport) -> dict[str, str]:
    return {c.id: c.status for c in report.checks}


def _probe(port: int, timeout: float = 5) -> dict[str, CheckResult]:
    """The raw-hello probes alone (for servers whose main handshake certkit cannot complete)."""
    results = tlsfacts.CoverageProbe(parse_target(f"smtp://127.0.0.1:{port}"), timeout, "probe.test").run()
    return {r.id: r for r in results}


def _s_client(port: int, *args: str) -> str:
    openssl = shutil.which("openssl")
    if openssl is None:
        skip_or_fail("openssl command not installed")
    done = subprocess.run([str(openssl), "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}",
                           "-servername", NAME, *args], input=b"", capture_output=True, timeout=30, check=False)
    return done.stdout.decode("utf-8", "replace")


@pytest.fixture
def good_server(tmp_path: Path, intermediate: Issued) -> Iterator[int]:
    """aiosmtpd, TLS 1.2 + 1.3, ECDHE only, EC leaf (digitalSignature) + intermediate, in order."""
    leaf = _leaf(intermediate, ec.generate_private_key(ec.SECP256R1()), digital_signature=True)
    with aiosmtpd_server(_context(tmp_path, leaf, [intermediate.pem])) as port:
        yield port


# ----- a good modern server: every new check PASSes -----------------------------
def test_good_server_passes_every_new_check(good_server: int, zoo_pki: ZooPki) -> None:
    report = _audit(good_server, zoo_pki)
    statuses = _statuses(report)
    assert {i: statuses.get(i) for i in NEW_IDS} == dict.fromkeys(NEW_IDS, "PASS"), report.checks
    detail = {c.id: c.detail for c in report.checks}
    assert "inappropriate_fallback" in detail["fallback-scsv"] or "without it is accepted" in detail["fallback-scsv"]
    assert "best is TLS 1.3" in detail["fallback-scsv"]
    assert detail["dh-params"].startswith("ECDHE x25519; no DHE suite accepted")
    assert "each issued by the next: CN=mail.example.test <- CN=certkit zoo intermediate" in detail["chain-order"]
    assert detail["key-usage"] == "EC key, keyUsage digitalSignature"
    assert detail["ocsp-stapling"].startswith("note: no OCSP response stapled")
    assert report.ok


def test_s_client_agrees_with_the_good_server_verdicts(good_server: int) -> None:
    out = _s_client(good_server, "-tls1_2", "-status")
    assert "Secure Renegotiation IS supported" in out
    assert "Compression: NONE" in out
    assert "OCSP response: no response sent" in out
    assert "Server Temp Key: X25519" in out


def test_quick_runs_no_extra_probe(good_server: int, zoo_pki: ZooPki) -> None:
    """--quick keeps to the main session: no raw-hello probe runs; chain facts need no connection and stay."""
    statuses = _statuses(_audit(good_server, zoo_pki, quick=True))
    assert not set(tlsfacts.PROBE_IDS) & set(statuses), statuses
    assert statuses["chain-order"] == "PASS" and statuses["key-usage"] == "PASS"


# ----- dh-params ----------------------------------------------------------------
def test_dhe_with_a_1024_bit_group_fails(tmp_path: Path, intermediate: Issued, zoo_pki: ZooPki) -> None:
    leaf = _leaf(intermediate, rsa.generate_private_key(65537, 2048), digital_signature=True,
                 key_encipherment=True)
    ctx = _context(tmp_path, leaf, [intermediate.pem], ciphers="DHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
                   dh_bits=1024)
    with aiosmtpd_server(ctx) as port:
        report = _audit(port, zoo_pki)
        out = _s_client(port, "-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0")
    result = report.get("dh-params")
    assert result is not None and result.status == "FAIL", result
    assert "DHE with a 1024-bit group" in result.detail and "ECDHE x25519" not in result.detail
    assert "Server Temp Key: DH, 1024 bits" in out  # the same group, as OpenSSL sees it


def test_cli_exits_1_with_the_dh_fail_and_its_fix(tmp_path: Path, intermediate: Issued, zoo_pki: ZooPki) -> None:
    from click.testing import CliRunner

    from certkit.cli import cli

    leaf = _leaf(intermediate, rsa.generate_private_key(65537, 2048), digital_signature=True, key_encipherment=True)
    ctx = _context(tmp_path, leaf, [intermediate.pem], ciphers="DHE-RSA-AES128-GCM-SHA256", dh_bits=1024)
    with aiosmtpd_server(ctx) as port:
        res = CliRunner().invoke(cli, ["check", f"submission://127.0.0.1:{port}", "--cafile", str(zoo_pki.ca_file),
                                       "--name", NAME, "--json", "--timeout", "5"], catch_exceptions=False)
    doc = json.loads(res.stdout)
    dh = next(c for c in doc["checks"] if c["id"] == "dh-params")
    assert res.exit_code == 1 and not doc["ok"]
    assert dh["status"] == "FAIL" and "smtpd_tls_dh1024_param_file" in dh["fix"]

def test_dhe_with_a_2048_bit_group_passes(tmp_path: Path, intermediate: Issued, zoo_pki: ZooPki) -> None:
    leaf = _leaf(intermediate, rsa.generate_private_key(65537, 2048), digital_signature=True,
                 key_encipherment=True)
    ctx = _context(tmp_path, leaf, [intermediate.pem], ciphers="DHE-RSA-AES128-GCM-SHA256", dh_bits=2048)
    with aiosmtpd_server(ctx) as port:
        result = _audit(port, zoo_pki).get("dh-params")
    assert result is not None and result.status == "PASS", result
    assert "DHE 2048 bits" in result.detail and "no ECDHE" in result.detail


# ----- one-version servers: fallback-scsv has nothing to test ----------------------
def test_tls12_only_server_skips_fallback(tmp_path: Path, intermediate: Issued, zoo_pki: ZooPki) -> None:
    leaf = _leaf(intermediate, ec.generate_private_key(ec.SECP256R1()), digital_signature=True)
    ctx = _context(tmp_path, leaf, [intermediate.pem], minimum=ssl.TLSVersion.TLSv1_2,
                   maximum=ssl.TLSVersion.TLSv1_2)
    with aiosmtpd_server(ctx) as port:
        report = _audit(port, zoo_pki)
    result = report.get("fallback-scsv")
    assert result is not None and result.status == "SKIP", result
    assert "speaks only TLS 1.2 and up" in result.detail
    assert _statuses(report)["renegotiation"] == "PASS"


def test_tls13_only_server(tmp_path: Path, intermediate: Issued, zoo_pki: ZooPki) -> None:
    """A TLS 1.2 hello is refused (asyncio just closes); a TLS 1.3 hello proves the server is 1.3-only."""
    leaf = _leaf(intermediate, ec.generate_private_key(ec.SECP256R1()), digital_signature=True)
    ctx = _context(tmp_path, leaf, [intermediate.pem], minimum=ssl.TLSVersion.TLSv1_3)
    with aiosmtpd_server(ctx) as port:
        report = _audit(port, zoo_pki)
    statuses = _statuses(report)
    assert statuses["fallback-scsv"] == "SKIP"
    assert {i: statuses[i] for i in ("dh-params", "renegotiation", "tls-compression", "ocsp-stapling",
                                     "sslv2-refused", "sslv3-refused")} == dict.fromkeys(
        ("dh-params", "renegotiation", "tls-compression", "ocsp-stapling", "sslv2-refused", "sslv3-refused"), "PASS")
    renegotiation = report.get("renegotiation")
    assert renegotiation is not None and "TLS 1.3 only" in renegotiation.detail


# ----- chain-order and key-usage ------------------------------------------------------
@pytest.mark.parametrize(("served", "expected"), [
    ("root-then-intermediate", "out of order"),
    ("intermediate-twice", "certificate 3 (CN=certkit zoo intermediate) duplicates certificate 2"),
])
def test_chain_served_wrongly_warns(tmp_path: Path, intermediate: Issued, zoo_pki: ZooPki, served: str,
                                    expected: str) -> None:
    leaf = _leaf(intermediate, ec.generate_private_key(ec.SECP256R1()), digital_signature=True)
    root = zoo_pki.ca_file.read_bytes()
    extra = [root, intermediate.pem] if served == "root-then-intermediate" else [intermediate.pem, intermediate.pem]
    with aiosmtpd_server(_context(tmp_path, leaf, extra)) as port:
        report = _audit(port, zoo_pki, quick=True)
        out = _s_client(port, "-showcerts")
    result = report.get("chain-order")
    assert result is not None and result.status == "WARN", result
    assert expected in result.detail
    subjects = [line.split("s:", 1)[1].strip() for line in out.splitlines() if line.lstrip()[:2].rstrip().isdigit()
                and " s:" in line]
    want = ["CN = certkit zoo CA", "CN = certkit zoo intermediate"] if served == "root-then-intermediate" else \
        ["CN = certkit zoo intermediate", "CN = certkit zoo intermediate"]
    assert subjects == ["CN = mail.example.test", *want]  # s_client saw the same order


def test_ec_leaf_with_key_encipherment_warns(tmp_path: Path, intermediate: Issued, zoo_pki: ZooPki) -> None:
    leaf = _leaf(intermediate, ec.generate_private_key(ec.SECP256R1()), digital_signature=True,
                 key_encipherment=True)
    with aiosmtpd_server(_context(tmp_path, leaf, [intermediate.pem])) as port:
        report = _audit(port, zoo_pki, quick=True)
        served = _s_client(port)
    result = report.get("key-usage")
    assert result is not None and result.status == "WARN", result
    assert "keyEncipherment must not be set for an EC key" in result.detail
    pem = served[served.index("-----BEGIN CERTIFICATE-----"):served.index("-----END CERTIFICATE-----") + 25]
    text = subprocess.run(["openssl", "x509", "-noout", "-text"], input=pem.encode(), capture_output=True,
                          check=True, timeout=30).stdout.decode()
    assert "Digital Signature, Key Encipherment" in text and "id-ecPublicKey" in text


def test_ec_leaf_without_digital_signature_fails(tmp_path: Path, intermediate: Issued, zoo_pki: ZooPki) -> None:
    leaf = _leaf(intermediate, ec.generate_private_key(ec.SECP256R1()), key_agreement=True)
    with aiosmtpd_server(_context(tmp_path, leaf, [intermediate.pem])) as port:
        result = _audit(port, zoo_pki, quick=True).get("key-usage")
    assert result is not None and result.status == "FAIL", result
    assert "keyUsage keyAgreement" in result.detail


# ----- ocsp-stapling (openssl s_server -status_file behind a STARTTLS front) -------------
def _ocsp_response(leaf: Issued, issuer: Issued) -> bytes:
    from cryptography.x509 import ocsp

    now = dt.datetime.now(dt.timezone.utc)
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(cert=leaf.cert, issuer=issuer.cert, algorithm=hashes.SHA1(), cert_status=ocsp.OCSPCertStatus.GOOD,
                      this_update=now - dt.timedelta(hours=1), next_update=now + dt.timedelta(days=1),
                      revocation_time=None, revocation_reason=None)
        .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.cert)
        .sign(issuer.key, hashes.SHA256())
    )
    return response.public_bytes(serialization.Encoding.DER)


def test_stapled_ocsp_response_is_reported(tmp_path: Path, intermediate: Issued) -> None:
    from tests.servers.starttls_relay import s_server_behind_starttls

    leaf = _leaf(intermediate, ec.generate_private_key(ec.SECP256R1()), digital_signature=True)
    _context(tmp_path, leaf, [intermediate.pem])  # writes served.pem (leaf + intermediate) and leaf.key
    status = tmp_path / "ocsp.der"
    status.write_bytes(_ocsp_response(leaf, intermediate))
    with s_server_behind_starttls(tmp_path / "served.pem", tmp_path / "leaf.key", "-status_file", str(status)) as port:
        result = _probe(port)["ocsp-stapling"]
        out = _s_client(port, "-tls1_2", "-status")
    assert result.status == "PASS" and result.detail.startswith("OCSP response stapled (successful"), result
    assert "OCSP Response Status: successful (0x0)" in out and "Cert Status: good" in out


def test_s_client_sees_the_same_fallback_alert(zoo_pki: ZooPki) -> None:
    """openssl s_server (TLS 1.3) answers a TLS 1.2 hello with TLS_FALLBACK_SCSV with alert 86, to both clients."""
    from tests.servers.starttls_relay import s_server_behind_starttls

    leaf = zoo_pki.leaf("good")
    with s_server_behind_starttls(leaf.cert, leaf.key) as port:
        result = _probe(port)["fallback-scsv"]
        openssl = shutil.which("openssl") or "openssl"
        done = subprocess.run([openssl, "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}", "-tls1_2",
                               "-fallback_scsv"], input=b"", capture_output=True, timeout=30, check=False)
    assert result.status == "PASS" and "refused with inappropriate_fallback" in result.detail, result
    assert "alert inappropriate fallback" in done.stderr.decode()

# ----- SSL 3.0 (tlslite-ng) --------------------------------------------------------------
def test_sslv3_accepted_fails(zoo_pki: ZooPki) -> None:
    pytest.importorskip("tlslite")
    from tests.servers.legacy_tls import legacy_tls_server

    with legacy_tls_server(zoo_pki.leaf("rsa-legacy", key="rsa2048"), ["aes128"], min_version=(3, 0)) as port:
        results = _probe(port)
    assert results["sslv3-refused"].status == "FAIL", results["sslv3-refused"]
    assert "accepted SSL 3.0" in results["sslv3-refused"].detail
    # tlslite-ng implements RFC 7507 and RFC 5746: the rest of its flight is right
    assert results["fallback-scsv"].status == "PASS" and "inappropriate_fallback" in results["fallback-scsv"].detail
    assert results["renegotiation"].status == "PASS"


def test_sslv3_refused_by_tlslite_default(zoo_pki: ZooPki) -> None:
    pytest.importorskip("tlslite")
    from tests.servers.legacy_tls import legacy_tls_server

    with legacy_tls_server(zoo_pki.leaf("rsa-legacy", key="rsa2048"), ["aes128"]) as port:
        result = _probe(port)["sslv3-refused"]
    assert result.status == "PASS" and "protocol_version" in result.detail, result


# ----- the scripted first flight: what no maintained library does any more -----------------
@pytest.fixture
def rsa_leaf(zoo_pki: ZooPki) -> Leaf:
    return zoo_pki.leaf("rsa-legacy", key="rsa2048")


def test_missing_secure_renegotiation_fails(rsa_leaf: Leaf) -> None:
    with scripted_tls_server(rsa_leaf, Script(secure_renegotiation=False)) as port:
        result = _probe(port)["renegotiation"]
        out = _s_client(port, "-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0")
    assert result.status == "FAIL" and "RFC 5746" in result.detail, result
    assert "Secure Renegotiation IS NOT supported" in out


def test_tls_compression_fails(rsa_leaf: Leaf) -> None:
    with scripted_tls_server(rsa_leaf, Script(compression=1)) as port:
        results = _probe(port)
    assert results["tls-compression"].status == "FAIL", results["tls-compression"]
    assert "DEFLATE" in results["tls-compression"].detail
    assert results["renegotiation"].status == "PASS"


def test_sslv2_accepted_fails(rsa_leaf: Leaf) -> None:
    with scripted_tls_server(rsa_leaf, Script(sslv2=True)) as port:
        result = _probe(port)["sslv2-refused"]
    assert result.status == "FAIL" and "DROWN" in result.detail, result


def test_fallback_scsv_ignored_warns(rsa_leaf: Leaf) -> None:
    with scripted_tls_server(rsa_leaf, Script()) as port:
        results = _probe(port)
    result = results["fallback-scsv"]
    assert result.status == "WARN" and "accepted a TLS 1.1 hello carrying TLS_FALLBACK_SCSV" in result.detail, result
    assert results["sslv2-refused"].status == "PASS"


def test_silent_server_costs_one_timeout(rsa_leaf: Leaf) -> None:
    """A server that never answers the ClientHello: WARNs, never a FAIL, and later probes do not wait again."""
    with scripted_tls_server(rsa_leaf, Script(silent=True)) as port:
        results = _probe(port, timeout=1)
    assert {r.status for r in results.values()} <= {"WARN", "SKIP"}, results
    assert "not probed: an earlier probe got no answer" in results["sslv3-refused"].detail
    assert "not probed" in results["sslv2-refused"].detail


def test_broken_tls_server_gets_no_false_verdict(zoo: Callable[..., ZooServer], zoo_pki: ZooPki) -> None:
    """Garbage after STARTTLS: the main handshake FAILs and the new probes SKIP - none claims a FAIL it never saw."""
    server = zoo(Behaviour(tls=server_context(zoo_pki.leaf("good")), break_tls=True))
    report = _audit(server.port, zoo_pki)
    statuses = _statuses(report)
    assert statuses["tls-handshake"] == "FAIL"
    assert {statuses[i] for i in tlsfacts.PROBE_IDS} == {"SKIP"}, report.checks


# ----- testssl.sh agrees (slow: about 15 s a server) -----------------------------------
def _testssl(port: int, args: list[str], out: Path) -> dict[str, list[dict[str, str]]]:
    testssl = shutil.which("testssl") or shutil.which("testssl.sh")
    if testssl is None:
        skip_or_fail("testssl.sh not installed (Debian package testssl.sh)")
    subprocess.run([str(testssl), "--nodns", "none", "--quiet", "--color", "0", "--warnings", "off", "--starttls",
                    "smtp", *args, "--jsonfile", str(out), f"127.0.0.1:{port}"], capture_output=True, timeout=300,
                   check=False)
    findings: dict[str, list[dict[str, str]]] = {}
    for item in json.loads(out.read_text()):
        findings.setdefault(item["id"], []).append(item)
    return findings


@pytest.mark.slow
def test_testssl_agrees_on_sslv3_and_the_dh_group(tmp_path: Path, intermediate: Issued, zoo_pki: ZooPki) -> None:
    pytest.importorskip("tlslite")
    from tests.servers.legacy_tls import legacy_tls_server

    with legacy_tls_server(zoo_pki.leaf("rsa-legacy", key="rsa2048"), ["aes128"], min_version=(3, 0)) as port:
        ours = _probe(port)
        theirs = _testssl(port, ["-p"], tmp_path / "sslv3.json")
    assert ours["sslv3-refused"].status == "FAIL" and theirs["SSLv3"][0]["finding"] == "offered"
    assert ours["sslv2-refused"].status == "PASS" and theirs["SSLv2"][0]["finding"] == "not offered"
    leaf = _leaf(intermediate, rsa.generate_private_key(65537, 2048), digital_signature=True, key_encipherment=True)
    ctx = _context(tmp_path, leaf, [intermediate.pem], ciphers="DHE-RSA-AES128-GCM-SHA256", dh_bits=1024)
    with aiosmtpd_server(ctx) as port:
        dh = _probe(port)["dh-params"]
        theirs = _testssl(port, ["-J"], tmp_path / "dh.json")
    assert dh.status == "FAIL" and "1024-bit" in dh.detail
    assert any("1024 bits" in f["finding"] for f in theirs["LOGJAM"]), theirs["LOGJAM"]


@pytest.mark.slow
def test_testssl_agrees_on_a_good_server_and_a_misordered_chain(tmp_path: Path, intermediate: Issued,
                                                                 zoo_pki: ZooPki, good_server: int) -> None:
    ours = _statuses(_audit(good_server, zoo_pki))
    theirs = _testssl(good_server, ["-R", "-C", "-Z", "-S"], tmp_path / "good.json")
    assert ours["renegotiation"] == "PASS" and theirs["secure_renego"][0]["finding"] == "supported"
    assert ours["tls-compression"] == "PASS" and theirs["CRIME_TLS"][0]["finding"].startswith("not vulnerable")
    assert ours["fallback-scsv"] == "PASS" and theirs["fallback_SCSV"][0]["severity"] == "OK"
    assert ours["chain-order"] == "PASS" and theirs["certs_list_ordering_problem"][0]["finding"] == "no"
    assert theirs["OCSP_stapling"][0]["finding"] == "not offered"
    leaf = _leaf(intermediate, ec.generate_private_key(ec.SECP256R1()), digital_signature=True)
    with aiosmtpd_server(_context(tmp_path, leaf, [zoo_pki.ca_file.read_bytes(), intermediate.pem])) as port:
        order = _audit(port, zoo_pki, quick=True).get("chain-order")
        theirs = _testssl(port, ["-S"], tmp_path / "order.json")
    assert order is not None and order.status == "WARN"
    assert theirs["certs_list_ordering_problem"][0]["finding"] == "yes"


# ----- a real Postfix (Debian 3.7, OpenSSL 3) with STARTTLS on its port-25 service ---------------
@pytest.mark.postfix
def test_postfix_passes_every_new_check(postfix: PostfixInstance, tmp_path: Path, intermediate: Issued,
                                        zoo_pki: ZooPki) -> None:
    leaf = _leaf(intermediate, rsa.generate_private_key(65537, 2048), digital_signature=True, key_encipherment=True)
    _context(tmp_path, leaf, [intermediate.pem])  # writes served.pem (leaf + intermediate) and leaf.key
    postfix.postconf("-e", f"smtpd_tls_chain_files = {tmp_path / 'leaf.key'}, {tmp_path / 'served.pem'}",
                     "smtpd_tls_security_level = may")
    postfix.reload()
    port = postfix.smtp_port
    report = check_url(f"smtp://127.0.0.1:{port}", CheckOptions(name=NAME, cafile=str(zoo_pki.ca_file), timeout=5,
                                                               helo="probe.test"))
    statuses = _statuses(report)
    assert statuses.get("tls-handshake") == "PASS", (report.checks, postfix.log())
    assert {i: statuses.get(i) for i in NEW_IDS} == dict.fromkeys(NEW_IDS, "PASS"), report.checks
    detail = {c.id: c.detail for c in report.checks}
    assert "inappropriate_fallback" in detail["fallback-scsv"]  # OpenSSL (unlike asyncio) sends the alert
    assert "DHE 2048 bits" in detail["dh-params"]  # Postfix >= 3.7 leaves DH to OpenSSL: ffdhe2048
    assert detail["key-usage"] == "RSA key, keyUsage digitalSignature, keyEncipherment"
    out = _s_client(port, "-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256")
    assert "Server Temp Key: DH, 2048 bits" in out and "Secure Renegotiation IS supported" in out


def test_small_curve_accepted_fails(zoo_pki: ZooPki) -> None:
    """tlslite-ng still speaks secp224r1 when told to: the small-curve hello gets it, and dh-params FAILs.

    (Debian's OpenSSL refuses secp224r1 on both sides, so s_client cannot cross-check this one.)
    """
    pytest.importorskip("tlslite")
    from tests.servers.legacy_tls import legacy_tls_server

    leaf = zoo_pki.leaf("rsa-legacy", key="rsa2048")
    with legacy_tls_server(leaf, ["aes128gcm"], curves=["secp224r1"]) as port:
        result = _probe(port)["dh-params"]
    assert result.status == "FAIL" and "ECDHE with secp224r1 (224 bits) accepted" in result.detail, result
