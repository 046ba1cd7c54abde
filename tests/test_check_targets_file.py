"""`check --targets FILE` with per-line options (issue 13): name=, expect=, cafile= and the port kind.

One real `certkit smtpd` (submission with STARTTLS, and smtps) seen through
lines that differ in one option each: every option changes its line's verdict.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from certkit.cli import cli
from certkit.store import Store
from tests.servers.smtpd import SmtpdServer, issue_lineage


def check(home: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--home", str(home), "check", *args])


def failed(doc: dict[str, Any]) -> set[str]:
    return {c["id"] for c in doc["checks"] if c["status"] == "FAIL"}


@pytest.mark.integration
def test_each_line_option_changes_that_lines_verdict(smtpd_server: SmtpdServer, tmp_path: Path) -> None:
    srv = smtpd_server
    issue_lineage(srv.home, "other.test")  # a certificate the server does not serve
    cert_pem = Store(srv.home).live_paths("mail.test").cert.read_bytes()
    folder = tmp_path / "fleet"
    folder.mkdir()
    (folder / "mail.pem").write_bytes(cert_pem)  # relative paths are read from the list's folder
    pin = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem.decode())).hexdigest()
    colon_pin = ":".join(pin[i:i + 2] for i in range(0, 64, 2)).upper()  # as openssl -fingerprint prints it
    sub, smtps = f"127.0.0.1:{srv.port}", f"127.0.0.1:{srv.smtps_port}"
    targets = folder / "targets.txt"
    targets.write_text(f"""# one server, seen seven ways
{sub} submission expect=mail.test
{sub} submission expect=mail.test name=wrong.test   # the name it must carry
{sub} submission expect=other.test

smtps://{smtps} expect=sha256:{pin} cafile=mail.pem
smtps://{smtps} expect={colon_pin}
{smtps} smtps expect=mail.pem
{smtps} expect=mail.pem
""")
    result = check(srv.home, "--targets", str(targets), "--json", "--quick", "--timeout", "1")
    docs = json.loads(result.stdout)
    assert result.exit_code == 1, result.output
    assert [d["line"] for d in docs] == [2, 3, 4, 6, 7, 8, 9]
    assert [d["target"] for d in docs][-2:] == [smtps, smtps]  # the URL as written, the kind aside
    assert [d["ok"] for d in docs] == [True, False, False, True, False, True, False]
    assert failed(docs[1]) == {"name-match"}  # name=: only the name differs from line 2
    assert "expected-cert" in failed(docs[2]) or "chain-trust" in failed(docs[2])  # expect=: another lineage
    assert next(c for c in docs[3]["checks"] if c["id"] == "expected-cert")["status"] == "PASS"  # the pin matches
    assert "chain-trust" in failed(docs[4])  # without cafile= a pin is no trust anchor: the system store is
    assert "connect" not in failed(docs[6]) and failed(docs[6])  # no kind: STARTTLS spoken to an smtps port
    text = check(srv.home, "--targets", str(targets), "--quick", "--timeout", "1")
    assert text.stdout.rstrip().endswith("7 target(s) checked, 4 FAILED")  # the totals line
    assert f"{targets}:3: {sub}: FAILED" in text.stdout  # which line of the list, in text too


@pytest.mark.integration
def test_expect_sha256_on_the_command_line(smtpd_server: SmtpdServer) -> None:
    srv = smtpd_server
    cert_pem = Store(srv.home).live_paths("mail.test").cert.read_bytes()
    pin = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem.decode())).hexdigest()
    ca = Store(srv.home).live_paths("mail.test").cert
    good = check(srv.home, f"smtps://127.0.0.1:{srv.smtps_port}", "--quick", "--cafile", str(ca),
                 "--expect", f"sha256:{pin}")
    assert good.exit_code == 0, good.output
    bad = check(srv.home, f"smtps://127.0.0.1:{srv.smtps_port}", "--quick", "--cafile", str(ca),
                "--expect", "sha256:" + "0" * 64)
    assert bad.exit_code == 1 and "FAIL  expected-cert" in bad.output


@pytest.mark.parametrize(("line", "words"), [
    ("127.0.0.1:2525 nmae=mail.example.com", "TARGETS:3: unknown option 'nmae' - did you mean 'name'?"),
    ("127.0.0.1:2525 submisson", "TARGETS:3: unknown option 'submisson' - did you mean 'submission'?"),
    ("127.0.0.1:2525 name=a.example name=b.example", "TARGETS:3: name= is given twice"),
    ("127.0.0.1:2525 name=*.example.com", "TARGETS:3: name=*.example.com is a wildcard"),
    ("127.0.0.1:2525 name=", "TARGETS:3: name= is empty"),
    ("127.0.0.1:2525 cafile=missing.pem", "TARGETS:3: cafile=missing.pem: no such file"),
    ("127.0.0.1:2525 expect=no-such-lineage", "TARGETS:3: --expect no-such-lineage: no such lineage"),
    ("127.0.0.1:2525 expect=sha256:abcd", "TARGETS:3: expect=sha256:abcd is not a SHA-256 fingerprint"),
    ("submission://127.0.0.1 smtps", "TARGETS:3: 'smtps' contradicts the URL's scheme submission://"),
    ("127.0.0.1:2525 smtps starttls", "TARGETS:3: two port kinds"),
    ("mail.example.com", "TARGETS:3: invalid target 'mail.example.com'"),
    ("127.0.0.1:2525 name='unclosed", "TARGETS:3: cannot split the line"),
])
def test_bad_lines_exit_2_with_file_and_line_before_any_connection(tmp_path: Path, home: Path, line: str,
                                                                   words: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    try:
        targets = tmp_path / "targets.txt"
        targets.write_text(f"# first a good line\n127.0.0.1:{listener.getsockname()[1]}\n{line}\n")
        result = CliRunner().invoke(cli, ["--home", str(home), "check", "--targets", str(targets)])
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected: every line is checked first
    finally:
        listener.close()
    assert result.exit_code == 2, result.output
    assert words.replace("TARGETS", str(targets)) in result.stderr, result.stderr
    assert "Traceback" not in result.output


def test_a_port_kind_gives_a_bare_host_its_port(tmp_path: Path) -> None:
    from certkit.check.targets_file import parse_line

    parsed = parse_line("mail.example.com submission name=smtp.example.com", "t", 1)
    assert parsed is not None and (parsed.target.port, parsed.target.mode) == (587, "submission")
    assert parse_line("  # only a comment", "t", 2) is None and parse_line("", "t", 3) is None
    smtps = parse_line("mail.example.com:2465 submissions", "t", 4)
    assert smtps is not None and (smtps.target.port, smtps.target.mode, smtps.target.url) == \
        (2465, "smtps", "mail.example.com:2465")
    (tmp_path / "my ca.pem").touch()
    quoted = parse_line("smtp://mx.example.com cafile='my ca.pem'  # quotes for a space", "t", 5, base=tmp_path)
    assert quoted is not None and quoted.cafile == str(tmp_path / "my ca.pem")
