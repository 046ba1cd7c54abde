"""Errors read as sentences: no nested exception reprs, and a bug is one line plus the log, not a traceback."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from certkit.cli import cli
from tests.servers.net import free_port, wait_port


@pytest.fixture
def untrusted_https(tmp_path: Path) -> Iterator[int]:
    """A real HTTPS server (openssl s_server -www) whose certificate nobody trusts."""
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1", "-days", "2"],
                   check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert),
                               "-key", str(key), "-www", "-quiet"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_port(port, 10), "openssl s_server did not start"
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def issue_acme(home: Path, url: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "x.example.org", "--acme",
                                      "--server", url, "--agree-tos"])
    return result.exit_code, result.output


@pytest.mark.integration
def test_an_untrusted_acme_server_is_named_in_words(tmp_path: Path, untrusted_https: int) -> None:
    code, output = issue_acme(tmp_path / "home", f"https://127.0.0.1:{untrusted_https}/dir")
    assert code == 1
    assert "certificate verify failed: self-signed certificate - check the URL, or pass --ca-bundle" in output
    assert "SSLError(" not in output and "_ssl.c" not in output and "Traceback" not in output


@pytest.mark.unit
def test_an_unreachable_acme_server_says_connection_refused(tmp_path: Path) -> None:
    code, output = issue_acme(tmp_path / "home", f"https://127.0.0.1:{free_port()}/dir")
    assert code == 1
    assert "cannot reach the ACME server" in output and ": Connection refused - check the URL" in output
    assert "Errno" not in output and "HTTPSConnectionPool" not in output


@pytest.mark.unit
def test_a_bug_is_one_error_line_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from certkit.cli import records

    def broken(*_args: object) -> None:
        raise ZeroDivisionError("division by zero")

    CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "issue", "--cn", "a.example.org"])
    monkeypatch.setattr(records, "record", broken)
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "show", "a.example.org"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: unexpected ZeroDivisionError: division by zero - this is a bug in certkit; please report it with "
        "the end of HOME/logs/certkit.log (certkit -v shows the traceback)"]
