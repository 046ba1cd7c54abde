"""Servers running leaves from a private CA: `certkit check --cafile CA` and `swaks --tls-verify` with the CA.

A client that trusts only the exported CA file must accept certkit smtpd
and a private Postfix serving CA-issued leaves, keep accepting them after a
renewal with no change on the client, and, with the bundle exported during a
rotation, accept leaves from the old and the new generation. A client holding
another CA must not: every positive check has its negative.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from certkit.cli import cli
from tests.conftest import skip_or_fail
from tests.servers.postfix import PostfixInstance
from tests.servers.smtpd import start_smtpd

CA = "corp"


def ok(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.stdout + result.stderr
    return result.stdout


def check(url: str, name: str, cafile: Path) -> tuple[int, dict[str, str]]:
    result = CliRunner().invoke(cli, ["check", url, "--name", name, "--cafile", str(cafile), "--json",
                                      "--timeout", "5"], catch_exceptions=False)
    doc = json.loads(result.stdout)
    return result.exit_code, {c["id"]: c["status"] for c in doc["checks"]}


def swaks(port: int, cafile: Path) -> subprocess.CompletedProcess[str]:
    if not shutil.which("swaks"):
        skip_or_fail("swaks not installed (the independent client)")
    return subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--helo", "client.test", "-tls",
                           "--tls-verify", "--tls-ca-path", str(cafile), "--quit-after", "TLS", "--timeout", "10"],
                          capture_output=True, text=True, timeout=60)


def assert_trusted(port: int, name: str, cafile: Path, stranger: Path) -> None:
    """check and swaks with ``cafile`` pass; with another CA (``stranger``) both fail."""
    code, statuses = check(f"submission://127.0.0.1:{port}", name, cafile)
    assert code == 0 and statuses["chain-trust"] == "PASS", statuses
    res = swaks(port, cafile)
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-500:]
    code, statuses = check(f"submission://127.0.0.1:{port}", name, stranger)
    assert code == 1 and statuses["chain-trust"] == "FAIL", statuses
    assert swaks(port, stranger).returncode != 0


@pytest.fixture
def pki(home: Path, tmp_path: Path) -> tuple[Path, Path]:
    """CA `corp` (corp.example, 127.0.0.0/8) exported to corp.pem, and a stranger CA's file."""
    ok("ca", "create", CA, "--permit", "corp.example", "--permit-ip", "127.0.0.0/8", "--key", "ec256")
    ok("ca", "create", "stranger", "--permit", "corp.example", "--key", "ec256")
    cafile, stranger = tmp_path / "corp.pem", tmp_path / "stranger.pem"
    ok("ca", "export", CA, "--format", "pem", "--out", str(cafile))
    ok("ca", "export", "stranger", "--format", "pem", "--out", str(stranger))
    return cafile, stranger


def test_smtpd_with_a_ca_leaf_through_renewal_and_rotation(home: Path, tmp_path: Path,
                                                           pki: tuple[Path, Path]) -> None:
    cafile, stranger = pki
    name = "mail.corp.example"
    ok("issue", "--cn", name, "--san", "127.0.0.1", "--ca", CA, "--key", "ec256")
    srv = start_smtpd(home, name, tmp_path / "smtpd", smtps=False)
    try:
        assert_trusted(srv.port, name, cafile, stranger)
        ok("deploy", name, "--to", "aiosmtpd", "--pid-file", str(srv.pid_file))
        first = json.loads(ok("show", name, "--json"))["serial"]
        # a renewal: a new leaf from the same CA, served after the remembered deploy; the client is unchanged
        ok("renew", "--force", name)
        assert json.loads(ok("show", name, "--json"))["serial"] != first
        assert_trusted(srv.port, name, cafile, stranger)
        # a rotation: clients get the bundle (old + new) and trust leaves from both generations
        ok("ca", "rotate", CA)
        bundle = tmp_path / "bundle.pem"
        ok("ca", "export", CA, "--format", "pem", "--out", str(bundle))
        assert_trusted(srv.port, name, bundle, stranger)  # still the G1 leaf
        ok("renew", "--force", name)
        assert json.loads(ok("show", name, "--json"))["issuer_ca_generation"] == 2
        assert_trusted(srv.port, name, bundle, stranger)  # now the G2 leaf
        code, statuses = check(f"submission://127.0.0.1:{srv.port}", name, cafile)  # G1 alone no longer does
        assert code == 1 and statuses["chain-trust"] == "FAIL"
    finally:
        srv.stop()


@pytest.mark.postfix
@pytest.mark.slow
def test_postfix_with_a_ca_leaf_and_its_renewal(postfix: PostfixInstance, home: Path,
                                                pki: tuple[Path, Path]) -> None:
    cafile, stranger = pki
    name = "mx.corp.example"
    ok("issue", "--cn", name, "--san", "127.0.0.1", "--ca", CA, "--key", "ec256")
    ok("deploy", name, "--to", "postfix", "--postfix-config-dir", str(postfix.config_dir), "--setup-submission",
       "--submission-listen", postfix.submission_listen)
    assert_trusted(postfix.submission_port, name, cafile, stranger)
    before = json.loads(ok("show", name, "--json"))["sha256"]
    ok("renew", "--force", name)  # re-deploys to Postfix (remembered), from the same CA
    after = json.loads(ok("show", name, "--json"))
    assert after["sha256"] != before and after["issuer_ca"] == CA
    assert_trusted(postfix.submission_port, name, cafile, stranger)
