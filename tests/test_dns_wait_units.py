"""dns-01 wait options and the status line, without servers (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from certkit.acme import dnswait
from certkit.cli import cli
from certkit.errors import UsageError
from certkit.progress import CLEAR_LINE, StatusLine
from certkit.settings import LineageSettings

NOWHERE = ["--acme", "--server", "https://127.0.0.1:1/dir", "--agree-tos", "--dns-hook", "true"]


def issue(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "wait.example", *NOWHERE, *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "abc", "3601", ""])
def test_bad_dns_wait_exit_2(home: Path, value: str) -> None:
    code, out = issue(home, "--dns-resolver", "127.0.0.1:53", "--dns-wait", value)
    assert code == 2, out
    assert "--dns-wait" in out and "Traceback" not in out


def test_dns_wait_needs_somewhere_to_look(home: Path) -> None:
    code, out = issue(home, "--dns-wait", "30")
    assert code == 2 and "--dns-wait needs --dns-resolver" in out and "authoritative" in out, out


def test_dns_wait_zero_still_needs_acme(home: Path) -> None:
    result = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "x.example", "--dns-wait", "0"])
    assert result.exit_code == 2 and "--dns-wait needs --acme" in result.output, result.output


def test_dns_resolver_is_for_dns01(home: Path) -> None:
    result = CliRunner().invoke(cli, ["--home", str(home), "issue", "--cn", "x.example", "--acme", "--server",
                                      "https://127.0.0.1:1/dir", "--challenge", "http-01",
                                      "--dns-resolver", "127.0.0.1"])
    assert result.exit_code == 2 and "--dns-resolver is for --challenge dns-01" in result.output, result.output


@pytest.mark.parametrize("spec", ["authoritative@", "authoritative@nohost.invalid:99999", "1.2.3.4:port"])
def test_bad_dns_resolver_exit_2(home: Path, spec: str) -> None:
    code, out = issue(home, "--dns-resolver", spec)
    assert code == 2 and "--dns-resolver" in out, out


def test_bad_env_dns_wait_exit_2(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTKIT_DNS_WAIT", "soon")
    code, out = issue(home, "--dns-resolver", "127.0.0.1")
    assert code == 2 and "CERTKIT_DNS_WAIT='soon'" in out, out
    monkeypatch.setenv("CERTKIT_DNS_WAIT", "7200")
    code, out = issue(home, "--dns-resolver", "127.0.0.1")
    assert code == 2 and "CERTKIT_DNS_WAIT 7200 is longer than 3600" in out, out


def test_wait_seconds_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CERTKIT_DNS_WAIT", raising=False)
    assert dnswait.wait_seconds(None) == 180
    monkeypatch.setenv("CERTKIT_DNS_WAIT", "0")
    assert dnswait.wait_seconds(None) == 0  # 0: polling off
    assert dnswait.wait_seconds(12.5) == 12.5  # the lineage's own value wins


def test_parse_where() -> None:
    assert dnswait.parse_where("authoritative") == dnswait.Where("authoritative", True, None)
    assert dnswait.parse_where("Authoritative@127.0.0.1:5300").address == ("127.0.0.1", 5300)
    assert dnswait.parse_where("[::1]:53") == dnswait.Where("[::1]:53", False, ("::1", 53))
    with pytest.raises(UsageError):
        dnswait.parse_where("authoritative@")


def test_dns_wait_setting_written_by_hand_as_an_integer() -> None:
    settings = LineageSettings.from_dict({"name": "a", "domains": ["a.example"],
                                          "acme": {"challenge": "dns-01", "dns_wait": 30}})
    assert settings.acme is not None and settings.acme.dns_wait == 30.0 and isinstance(settings.acme.dns_wait, float)


def test_status_line_off_a_terminal_prints_plain_lines_now_and_then() -> None:
    now = [0.0]
    lines: list[str] = []
    status = StatusLine(lines.append, every=10, clock=lambda: now[0])
    for t in range(0, 25):
        now[0] = float(t)
        status.update(f"waiting {t}")
    status.done("finished")
    assert lines == ["waiting 0", "waiting 10", "waiting 20", "finished"]
    assert not any(CLEAR_LINE in line for line in lines)


def test_status_line_on_a_terminal_rewrites_in_place() -> None:
    raw: list[str] = []
    lines: list[str] = []
    status = StatusLine(lines.append, raw.append)
    status.clear()  # nothing shown yet: nothing to erase
    status.update("one")
    status.update("two")
    status.done("done")
    assert raw == [CLEAR_LINE + "one", CLEAR_LINE + "two", CLEAR_LINE] and lines == ["done"]


def test_a_server_that_never_answers_is_named_with_its_timeout() -> None:
    import socket

    from certkit.acme.dns01 import TxtRecord
    from certkit.errors import AcmeError

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mute:  # bound, never read: queries go unanswered
        mute.bind(("127.0.0.1", 0))
        port = mute.getsockname()[1]
        with pytest.raises(AcmeError) as failed:
            dnswait.wait_visible(f"127.0.0.1:{port}", [TxtRecord("m.example", "_acme-challenge.m.example", "v")],
                                 0.3)
    assert f"127.0.0.1:{port} did not answer (timeout after" in failed.value.message
