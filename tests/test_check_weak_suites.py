"""Weak suites that no local OpenSSL can offer: RC4 and 3DES, probed with a hand-built ClientHello.

The servers are tlslite-ng (third-party, pure Python): Debian's OpenSSL
cannot serve RC4/3DES, so neither could our old OpenSSL-based probe ask for
them, and it reported such servers as refusing weak suites. testssl.sh
(which also builds its own ClientHellos) is the independent cross-check.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from certkit.check import hello
from certkit.check.probes import probe_weak_ciphers
from certkit.check.target import parse_target
from tests.conftest import skip_or_fail
from tests.servers.legacy_tls import legacy_tls_server
from tests.servers.zoo import ZooPki, aiosmtpd_server, server_context

pytest.importorskip("tlslite")


@pytest.mark.parametrize(("ciphers", "expected_word"), [(["rc4"], "RC4"), (["3des"], "3DES")])
def test_weak_suite_server_fails(zoo_pki: ZooPki, ciphers: list[str], expected_word: str) -> None:
    leaf = zoo_pki.leaf("rsa-legacy", key="rsa2048")
    with legacy_tls_server(leaf, ciphers) as port:
        result = probe_weak_ciphers(parse_target(f"smtp://127.0.0.1:{port}"), 5, "probe.test")
    assert result.status == "FAIL", result
    assert expected_word in result.detail and "RSA_WITH" in result.detail


def test_modern_server_refuses_the_raw_hello(zoo_pki: ZooPki) -> None:
    """A correct aiosmtpd server (Debian OpenSSL) refuses the weak-only hello (alert or close): PASS."""
    with aiosmtpd_server(server_context(zoo_pki.leaf("good"))) as port:
        result = probe_weak_ciphers(parse_target(f"submission://127.0.0.1:{port}"), 5, "probe.test")
    assert result.status == "PASS", result
    assert "RC4, 3DES" in result.detail and "refused" in result.detail


def test_server_hello_parser_reads_the_chosen_suite(zoo_pki: ZooPki) -> None:
    """The raw hello offering one strong suite gets a ServerHello naming exactly it (parser sanity)."""
    import socket

    with aiosmtpd_server(server_context(zoo_pki.leaf("good"))) as port:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        with sock:
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"220")
            sock.sendall(b"EHLO probe.test\r\n")
            while not reader.readline().startswith(b"250 "):
                pass
            sock.sendall(b"STARTTLS\r\n")
            assert reader.readline().startswith(b"220")
            answer = hello.offer(sock, [0xC02B], None, 5)  # ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    assert answer.accepted and answer.suite == 0xC02B and answer.version == hello.TLS12


@pytest.mark.slow
def test_testssl_agrees_rc4_is_offered(zoo_pki: ZooPki, tmp_path: Path) -> None:
    """testssl.sh, with its own ClientHellos, sees the same RC4 suite certkit names."""
    testssl = shutil.which("testssl") or shutil.which("testssl.sh")
    if testssl is None:
        skip_or_fail("testssl.sh not installed (Debian package testssl.sh)")
    leaf = zoo_pki.leaf("rsa-legacy", key="rsa2048")
    out = tmp_path / "testssl.json"
    with legacy_tls_server(leaf, ["rc4"]) as port:
        subprocess.run([testssl, "--nodns", "none", "--quiet", "--color", "0", "--warnings", "off",
                        "--starttls", "smtp", "--rc4", "--jsonfile", str(out), f"127.0.0.1:{port}"],
                       capture_output=True, timeout=300, check=False)
    findings = {item["id"]: item for item in json.loads(out.read_text())}
    assert findings["RC4"]["severity"] in ("HIGH", "CRITICAL", "MEDIUM"), findings.get("RC4")
    assert "RC4" in findings["RC4"]["finding"]
