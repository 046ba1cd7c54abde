"""dns-01 waits and hints (issue 13) against a real Pebble and its DNS (pebble-challtestsrv).

A hook that never publishes used to mean a silent 180 s wait, and a failed
dns-01 validation was answered with advice about port 80.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from certkit.acme import dnswait
from certkit.acme.dns01 import TxtRecord
from certkit.cli import cli
from certkit.errors import AcmeError
from certkit.progress import CLEAR_LINE, StatusLine
from certkit.store import Store
from tests.servers.pebble import PebbleServer

pytestmark = [pytest.mark.pebble, pytest.mark.integration]


def acme_args(server: PebbleServer, *extra: str) -> list[str]:
    return ["--acme", "--server", server.directory_url, "--ca-bundle", str(server.ca_bundle), "--agree-tos", *extra]


def write_hook(tmp_path: Path, server: PebbleServer) -> tuple[str, Path, Path]:
    """A dns-01 hook that logs each call; it publishes at challtestsrv unless the file `silent` exists.

    Returns (command, log, silent-flag path)."""
    log, silent = tmp_path / "hook.log", tmp_path / "silent"
    hook = tmp_path / "hook.py"
    hook.write_text(f"""
import json, os, urllib.request
env = os.environ
action, name, value = env["CERTKIT_DNS_ACTION"], env["CERTKIT_DNS_NAME"], env["CERTKIT_DNS_VALUE"]
with open({str(log)!r}, "a") as fh:
    fh.write(json.dumps([action, name, value]) + "\\n")
if not os.path.exists({str(silent)!r}):
    path, body = ("/set-txt", {{"host": name + ".", "value": value}}) if action == "present" else \\
        ("/clear-txt", {{"host": name + "."}})
    req = urllib.request.Request({server.challtest_url!r} + path, data=json.dumps(body).encode(), method="POST")
    urllib.request.urlopen(req).read()
""")
    return f"{sys.executable} {hook}", log, silent


def issue(home: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--home", str(home), "issue", *args])


def presented(log: Path) -> list[tuple[str, str]]:
    return [(name, value) for action, name, value in map(json.loads, log.read_text().splitlines())
            if action == "present"]


def test_hook_that_never_publishes_fails_naming_record_value_and_server(pebble: PebbleServer, home: Path,
                                                                         tmp_path: Path) -> None:
    hook, log, silent = write_hook(tmp_path, pebble)
    silent.touch()
    resolver = f"127.0.0.1:{pebble.dns_port}"
    result = issue(home, "--cn", "silent.example", *acme_args(pebble, "--dns-hook", hook, "--dns-resolver", resolver,
                                                              "--dns-wait", "2"))
    assert result.exit_code == 1, result.output
    [(name, value)] = presented(log)
    out = result.output
    assert f"did not appear at {resolver} within 2 s" in out
    assert f'_acme-challenge.silent.example TXT "{value}"' in out  # the record and the value expected
    assert f"{resolver} answered nothing (no TXT record of that name)" in out  # the server and its answer
    assert "dns-01: waiting for 1 of 1 TXT record name(s)" in out  # the progress line (plain: not a terminal)
    assert "port 80" not in out and "--dns-wait" in out and "Traceback" not in out
    assert [json.loads(line)[0] for line in log.read_text().splitlines()] == ["present", "cleanup"]
    assert Store(home).names() == []


def test_other_values_at_the_resolver_are_shown(pebble: PebbleServer, home: Path, tmp_path: Path) -> None:
    hook, _log, silent = write_hook(tmp_path, pebble)
    silent.touch()
    pebble.set_txt("_acme-challenge.stale.example", "stale-value-from-last-time")
    try:
        result = issue(home, "--cn", "stale.example",
                       *acme_args(pebble, "--dns-hook", hook, "--dns-resolver", f"127.0.0.1:{pebble.dns_port}",
                                  "--dns-wait", "1"))
    finally:
        pebble.clear_txt("_acme-challenge.stale.example")
    assert result.exit_code == 1, result.output
    assert 'answered other values: "stale-value-from-last-time"' in result.output


def test_failed_dns01_validation_gives_the_dns01_hint(pebble: PebbleServer, home: Path, tmp_path: Path) -> None:
    """No resolver to wait on: Pebble itself finds no TXT record and refuses; the hint is about dns-01."""
    hook, _log, silent = write_hook(tmp_path, pebble)
    silent.touch()
    result = issue(home, "--cn", "novalue.example", *acme_args(pebble, "--dns-hook", hook))
    assert result.exit_code == 1, result.output
    out = result.output
    assert "could not validate this name (dns-01)" in out and "novalue.example" in out
    assert "TXT record" in out and "--dns-hook" in out and "--dns-resolver authoritative" in out
    assert "port 80" not in out and "--webroot" not in out


def test_failed_http01_validation_keeps_the_port_80_hint(pebble: PebbleServer, home: Path) -> None:
    from tests.servers.net import free_port

    result = issue(home, "--cn", "web-fail.example", *acme_args(pebble, "--http-port", str(free_port()),
                                                                "--http-address", "127.0.0.1"))
    assert result.exit_code == 1, result.output
    assert "(http-01)" in result.output and "port 80" in result.output and "TXT" not in result.output


def test_dns_wait_is_remembered_and_renew_uses_it(pebble: PebbleServer, home: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    hook, _log, silent = write_hook(tmp_path, pebble)
    result = issue(home, "--cn", "remember.example",
                   *acme_args(pebble, "--dns-hook", hook, "--dns-resolver", f"127.0.0.1:{pebble.dns_port}",
                              "--dns-wait", "1.5"))
    assert result.exit_code == 0, result.output
    assert "dns-01: 1 TXT record name(s) visible at 127.0.0.1:" in result.output
    acme = Store(home).load_settings("remember.example").acme
    assert acme is not None and acme.dns_wait == 1.5
    silent.touch()  # the next run's hook publishes nothing: renew must give up after the remembered 1.5 s
    # Pebble reuses half of the valid authorizations of an account (PEBBLE_AUTHZREUSE): another
    # account (another e-mail) gets none, so renew really meets the dns-01 challenge again.
    store = Store(home)
    settings = store.load_settings("remember.example")
    assert settings.acme is not None
    settings.acme.email = "renewal@remember.example"
    with store.lock():
        store.save_settings(settings)
    monkeypatch.setenv("CERTKIT_DNS_WAIT", "600")  # the lineage's own setting wins over the environment
    renewed = CliRunner().invoke(cli, ["--home", str(home), "renew", "--force", "remember.example"])
    assert renewed.exit_code == 1, renewed.output
    assert "within 1.5 s" in renewed.output and "_acme-challenge.remember.example" in renewed.output
    assert Store(home).live_version("remember.example") == 1


def test_env_dns_wait_applies_when_the_lineage_has_none(pebble: PebbleServer, home: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    hook, _log, silent = write_hook(tmp_path, pebble)
    silent.touch()
    monkeypatch.setenv("CERTKIT_DNS_WAIT", "1")
    result = issue(home, "--cn", "envwait.example",
                   *acme_args(pebble, "--dns-hook", hook, "--dns-resolver", f"127.0.0.1:{pebble.dns_port}"))
    assert result.exit_code == 1 and "within 1 s" in result.output, result.output
    monkeypatch.setenv("CERTKIT_DNS_WAIT", "0")  # 0: no polling - the CA is asked at once (and refuses)
    result = issue(home, "--cn", "envwait.example",
                   *acme_args(pebble, "--dns-hook", hook, "--dns-resolver", f"127.0.0.1:{pebble.dns_port}"))
    assert result.exit_code == 1 and "could not validate this name (dns-01)" in result.output, result.output
    assert "dns-01: waiting" not in result.output


def test_status_line_on_a_terminal_is_rewritten_then_erased(pebble: PebbleServer) -> None:
    raw: list[str] = []
    lines: list[str] = []
    record = TxtRecord("tty.example", "_acme-challenge.tty.example", "expected-value")
    with pytest.raises(AcmeError) as failed:
        dnswait.wait_visible(f"127.0.0.1:{pebble.dns_port}", [record], 0.6,
                             progress=StatusLine(lines.append, raw.append))
    assert "_acme-challenge.tty.example" in failed.value.message
    assert raw[0].startswith(CLEAR_LINE + "dns-01: waiting for 1 of 1")
    assert len(raw) >= 3 and raw[-1] == CLEAR_LINE and lines == []  # several rewrites, then erased: nothing left
    pebble.set_txt(record.name, record.value)
    try:
        raw.clear()
        dnswait.wait_visible(f"127.0.0.1:{pebble.dns_port}", [record], 5, progress=StatusLine(lines.append, raw.append))
    finally:
        pebble.clear_txt(record.name)
    assert lines and lines[-1].startswith("dns-01: 1 TXT record name(s) visible at 127.0.0.1:")


def test_on_a_terminal_the_wait_is_one_line_erased_before_the_error(pebble: PebbleServer, home: Path,
                                                                     tmp_path: Path) -> None:
    import os

    from tests.servers.processes import run_with_stderr_on_a_terminal

    hook, _log, silent = write_hook(tmp_path, pebble)
    silent.touch()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "CERTKIT_HOME": str(home)}
    code, out, err = run_with_stderr_on_a_terminal(
        [sys.executable, "-m", "certkit", "issue", "--cn", "pty.example",
         *acme_args(pebble, "--dns-hook", hook, "--dns-resolver", f"127.0.0.1:{pebble.dns_port}", "--dns-wait", "1")],
        env, timeout=60)
    assert code == 1
    assert err.count(b"\r\x1b[Kdns-01: waiting for 1 of 1") >= 2  # rewritten in place, not one line per poll
    assert b"\r\x1b[Kerror: the dns-01 TXT record(s) did not appear" in err  # erased before the error
    assert b"dns-01: waiting" not in out  # nothing of it on stdout
