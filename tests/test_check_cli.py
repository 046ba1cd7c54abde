"""`certkit check` on the command line: output, exit codes, JSON, fleet mode, lineage recording."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from certkit.cli import cli
from certkit.store import Store
from tests.servers.zoo import NAME, PASSWORD, USER, Behaviour, Leaf, ZooPki, ZooServer, server_context

Zoo = Callable[..., ZooServer]
ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str, home: Path | None = None) -> Any:
    argv = ([f"--home={home}"] if home else []) + ["check", *args]
    return CliRunner().invoke(cli, argv, catch_exceptions=False)


@pytest.fixture
def good(zoo: Zoo, zoo_pki: ZooPki) -> ZooServer:
    return zoo(tls=server_context(zoo_pki.leaf("good")))


def ca_args(pki: ZooPki) -> list[str]:
    return ["--cafile", str(pki.ca_file), "--name", NAME]


def test_text_output_and_exit_0(good: ZooServer, zoo_pki: ZooPki) -> None:
    res = invoke(f"submission://127.0.0.1:{good.port}", *ca_args(zoo_pki))
    assert res.exit_code == 0, res.output
    out = res.output
    assert "S: 220 zoo.example.test ESMTP ready" in out
    assert "C: STARTTLS" in out and "*  TLS TLSv1.3" in out
    assert "PASS  chain-trust" in out
    assert out.rstrip().splitlines()[-1].startswith(f"submission://127.0.0.1:{good.port}: OK")


def test_fail_exits_1_with_the_fix(zoo: Zoo, zoo_pki: ZooPki) -> None:
    srv = zoo(tls=server_context(zoo_pki.leaf("good")), open_relay=True)
    res = invoke(f"submission://127.0.0.1:{srv.port}", *ca_args(zoo_pki))
    assert res.exit_code == 1
    assert "FAIL  relay-refused" in res.output
    assert "fix: refuse relaying without AUTH" in res.output
    assert "relay-refused" in res.stderr and "Traceback" not in res.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["ftp://x"], "unknown scheme"),
        (["mail.example.com"], "needs a port"),
        (["x:99999"], "port"),
        ([], "no target"),
        (["smtp://x", "--send-test"], "--from"),
        (["smtp://x", "--from", "a@example.com", "--to", "b@example.com"], "add --send-test"),
        (["smtp://x", "--password-file", "/nonexistent"], "--auth-user"),
        (["smtp://x", "--expect", "no-such-lineage"], "no such lineage"),
        (["smtp://x", "--expect", "/no/such/file.pem"], "cannot read"),
        (["smtp://x", "--cafile", "/no/such/ca.pem"], "no such file"),
        (["smtp://x", "--timeout", "0"], "timeout"),
        (["--targets", "/no/such/list"], "no such file"),
    ],
)
def test_bad_usage_exits_2(args: list[str], words: str, home: Path) -> None:
    res = invoke(*args, home=home)
    assert res.exit_code == 2, res.output
    assert words in res.output + res.stderr
    assert "Traceback" not in res.output


def test_empty_lists_and_unreadable_pins_exit_2(tmp_path: Path, home: Path) -> None:
    """Checking nothing is not a pass; a pin that is not a certificate is bad input, not a trust error."""
    empty = tmp_path / "targets"
    empty.write_text("# nothing yet\n\n")
    res = invoke("--targets", str(empty))
    assert res.exit_code == 2 and "lists no target" in res.stderr
    res = CliRunner().invoke(cli, ["check", "--json", "--targets", "-"], input="")
    assert res.exit_code == 2 and "no target on standard input" in res.stderr
    for content in (b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"):
        pin = tmp_path / "pin.pem"
        pin.write_bytes(content)
        res = invoke("smtp://127.0.0.1:1", "--expect", str(pin), home=home)
        assert res.exit_code == 2 and f"--expect {pin} holds no" in res.stderr, res.output


def test_undecodable_files_and_unsafe_values_exit_2(tmp_path: Path, home: Path) -> None:
    """Bytes that are not UTF-8, CR/LF that would smuggle SMTP commands, names no server can match: exit 2."""
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\xfa\n")
    cases = [
        (["--auth-user", "u", "--password-file", str(binary)], "is not UTF-8 text"),
        (["--targets", str(binary)], "is not UTF-8 text"),
        (["--helo", "a\r\nRSET"], "--helo 'a\\r\\nRSET' is empty or holds control characters"),
        (["--send-test", "--from", "a@example.com>\r\nRCPT TO:<x@example.net", "--to", "b@example.com"],
         "--from"),
        (["--auth-user", "u\n", "--password-file", str(binary)], "--auth-user"),
        (["--name", "mail..example.com"], "--name: invalid name"),
        (["--name", "*.example.com"], "is a wildcard"),
    ]
    for args, words in cases:
        res = invoke("smtp://127.0.0.1:1", *args, home=home)
        assert res.exit_code == 2 and words in res.stderr, (args, res.output)
        assert "Traceback" not in res.output and "\xff" not in res.output


def test_bad_line_on_stdin_mid_run_keeps_the_json_valid(good: ZooServer, zoo_pki: ZooPki) -> None:
    # --concurrency 1: at most 4 targets pending, so the first ones are printed before the bad line is read.
    stdin = f"127.0.0.1:{good.port}\n" * 6 + "not a url\n"
    res = CliRunner().invoke(cli, ["check", "--targets", "-", "--json", "--quick", "--concurrency", "1",
                                   *ca_args(zoo_pki)], input=stdin)
    assert res.exit_code == 2 and "stdin:7: invalid target 'not'" in res.stderr, res.stderr
    printed = json.loads(res.stdout)  # a closed array of what was printed before the bad line
    assert 1 <= len(printed) <= 6 and {d["target"] for d in printed} == {f"127.0.0.1:{good.port}"}


def test_bad_line_in_targets_file_exits_2_before_checking(tmp_path: Path, good: ZooServer) -> None:
    targets = tmp_path / "targets"
    targets.write_text(f"127.0.0.1:{good.port}\nnot a url\n")
    res = invoke("--targets", str(targets))
    assert res.exit_code == 2 and f"{targets}:2: invalid target 'not'" in res.stderr, res.stderr


@pytest.mark.integration  # a second or more of real processes
def test_json_single_and_several_agree(zoo: Zoo, zoo_pki: ZooPki, good: ZooServer, tmp_path: Path) -> None:
    relay = zoo(tls=server_context(zoo_pki.leaf("good")), open_relay=True)
    silent = zoo(greeting=None)
    urls = [f"smtp://127.0.0.1:{silent.port}", f"127.0.0.1:{good.port}", f"submission://127.0.0.1:{relay.port}"]
    singles = []
    for url in urls:
        res = invoke(url, "--json", "--timeout", "0.5", *ca_args(zoo_pki))
        doc = json.loads(res.stdout)
        assert set(doc) == {"target", "ok", "checks", "certificate", "transcript", "elapsed_ms"}
        assert doc["target"] == url and res.exit_code == (0 if doc["ok"] else 1)
        singles.append(doc)
    targets = tmp_path / "targets.txt"
    targets.write_text("# fleet\n\n" + "\n".join(urls[1:]) + "\n")
    res = invoke(urls[0], "--targets", str(targets), "--json", "--timeout", "0.5", "--concurrency", "3",
                 *ca_args(zoo_pki))
    docs = json.loads(res.stdout)
    assert res.exit_code == 1
    assert [d["target"] for d in docs] == urls  # input order, although the silent one finishes last
    for single, fleet in zip(singles, docs, strict=True):
        assert single["ok"] == fleet["ok"]
        assert [(c["id"], c["status"]) for c in single["checks"]] == [(c["id"], c["status"]) for c in fleet["checks"]]
    assert [d["ok"] for d in docs] == [False, True, False]


def test_several_targets_text_summary(zoo: Zoo, zoo_pki: ZooPki, good: ZooServer) -> None:
    relay = zoo(tls=server_context(zoo_pki.leaf("good")), open_relay=True)
    res = invoke(f"127.0.0.1:{good.port}", f"127.0.0.1:{relay.port}", *ca_args(zoo_pki))
    assert res.exit_code == 1
    lines = res.stdout.splitlines()
    assert lines[0].startswith(f"127.0.0.1:{good.port}: OK")
    assert lines[1].startswith(f"127.0.0.1:{relay.port}: FAILED")
    assert any("FAIL  relay-refused" in ln for ln in lines)
    assert "S: 220" not in res.stdout  # no transcripts for several targets unless --transcript


def test_auth_with_password_file_never_prints_it(good: ZooServer, zoo_pki: ZooPki, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    res = invoke(f"submission://127.0.0.1:{good.port}", "--auth-user", USER, "--password-file", str(pw),
                 "--json", *ca_args(zoo_pki))
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert {"id": "auth", "status": "PASS", "detail": f"logged in as {USER}"} in doc["checks"]
    assert PASSWORD not in res.output


def _issue(home: Path) -> Leaf:
    res = CliRunner().invoke(cli, [f"--home={home}", "issue", "--cn", NAME, "--san", "127.0.0.1", "--key", "ec256"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    paths = Store(home).live_paths(NAME)
    return Leaf(paths.cert, paths.key, paths.cert.read_bytes())


def test_expect_lineage_records_last_check(zoo: Zoo, home: Path) -> None:
    leaf = _issue(home)
    srv = zoo(tls=server_context(leaf))
    url = f"submission://127.0.0.1:{srv.port}"
    res = invoke(url, "--expect", NAME, "--name", NAME, home=home)
    assert res.exit_code == 0, res.output
    assert "PASS  expected-cert" in res.output
    check = Store(home).load_state(NAME)["last_check"]
    assert check["ok"] is True and check["target"] == url and check["failed"] == []
    assert check["time"].endswith("Z")
    # a wrong name fails, and that is recorded too
    res = invoke(url, "--expect", NAME, "--name", "other.example.test", home=home)
    assert res.exit_code == 1
    check = Store(home).load_state(NAME)["last_check"]
    assert check["ok"] is False and check["failed"] == ["name-match"]
    show = CliRunner().invoke(cli, [f"--home={home}", "show", NAME, "--json"])
    assert json.loads(show.stdout)["last_check"]["failed"] == ["name-match"]


def test_expect_certificate_file_pin_mismatch(zoo: Zoo, zoo_pki: ZooPki, home: Path) -> None:
    srv = zoo(tls=server_context(zoo_pki.leaf("good")))
    other = zoo_pki.leaf("other-pin", names=(NAME,))
    res = invoke(f"127.0.0.1:{srv.port}", "--expect", str(other.cert), "--name", NAME, home=home)
    assert res.exit_code == 1
    assert "FAIL  expected-cert" in res.output and "FAIL  chain-trust" in res.output


@pytest.mark.integration  # a second or more of real processes
def test_busy_lock_skips_recording(zoo: Zoo, home: Path) -> None:
    leaf = _issue(home)
    srv = zoo(tls=server_context(leaf))
    holder = Store(home)
    with holder.lock():
        res = invoke(f"127.0.0.1:{srv.port}", "--expect", NAME, "--name", NAME, home=home)
    assert res.exit_code == 0, res.output
    # It gave up on the lock and said so (rather than waiting for it: the result would have been recorded).
    assert f"another certkit process holds {home}; the result was not recorded in {NAME}" in res.stderr
    assert Store(home).load_state(NAME).get("last_check") is None


def test_end_to_end_process_imports_stay_lean(good: ZooServer, zoo_pki: ZooPki) -> None:
    """A real `python -m certkit check` run (whole audit): no acme/josepy/requests/aiosmtpd, not even cryptography."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "certkit", "check",
         f"submission://127.0.0.1:{good.port}", *ca_args(zoo_pki)],
        capture_output=True, text=True, env=env, timeout=60, cwd=str(ROOT),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    for heavy in ("acme", "josepy", "requests", "aiosmtpd", "cryptography", "asyncio"):
        assert heavy not in imported, f"{heavy} imported on the check path"


def test_fleet_is_concurrent_and_bounded(zoo: Zoo, zoo_pki: ZooPki, tmp_path: Path) -> None:
    """Eight silent servers with --timeout 0.5 and --concurrency 8: each ends at its banner, nothing else runs.

    That the targets are checked at the same time is proved without a clock in
    tests/test_check_budget.py (servers that greet only once all have a client).
    """
    servers = [zoo(greeting=None) for _ in range(8)]
    targets = tmp_path / "t"
    targets.write_text("".join(f"smtp://127.0.0.1:{s.port}\n" for s in servers))
    res = invoke("--targets", str(targets), "--timeout", "0.5", "--concurrency", "8", "--json")
    assert res.exit_code == 1
    reports = json.loads(res.stdout)
    assert len(reports) == 8
    for report in reports:
        failed = [c for c in report["checks"] if c["status"] == "FAIL"]
        assert [(c["id"], c["detail"]) for c in failed] == [("banner", "no complete banner within 0.5 s")]
        assert {c["detail"] for c in report["checks"] if c["status"] == "SKIP"} == {"not run: banner failed"}


def test_behaviour_default_is_right(zoo: Zoo, zoo_pki: ZooPki) -> None:
    """Guard for the zoo itself: the default Behaviour is a correct submission server."""
    assert Behaviour().require_tls_for_mail and not Behaviour().open_relay
    srv = zoo(tls=server_context(zoo_pki.leaf("good")))
    res = invoke(f"submission://127.0.0.1:{srv.port}", "--quick", *ca_args(zoo_pki))
    assert res.exit_code == 0


def test_targets_from_stdin(good: ZooServer, zoo_pki: ZooPki) -> None:
    stdin = f"# from a pipe\n127.0.0.1:{good.port}\nsubmission://127.0.0.1:{good.port}\n"
    res = CliRunner().invoke(cli, ["check", "--targets", "-", "--json", "--quick", *ca_args(zoo_pki)], input=stdin,
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert [d["target"] for d in json.loads(res.stdout)] == [f"127.0.0.1:{good.port}",
                                                             f"submission://127.0.0.1:{good.port}"]


def test_not_yet_valid_certificate(zoo: Zoo, zoo_pki: ZooPki) -> None:
    srv = zoo(tls=server_context(zoo_pki.leaf("future", days_before=-2, days_after=90)))
    res = invoke(f"127.0.0.1:{srv.port}", "--json", *ca_args(zoo_pki))
    doc = json.loads(res.stdout)
    failed = {c["id"]: c["detail"] for c in doc["checks"] if c["status"] == "FAIL"}
    assert res.exit_code == 1 and set(failed) == {"chain-trust", "time-left"}
    assert "not valid before" in failed["time-left"] and "not yet valid" in failed["chain-trust"]
