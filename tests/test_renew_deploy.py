"""Renewal runs the remembered deploy targets; a failing hook restores the previous version."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from certkit import x509 as cx
from certkit.cli import cli
from certkit.renew import run as renew
from certkit.store import Store

HOOK = """#!/bin/sh
# Records which certificate it was given; fails while $FAIL_FLAG exists.
printf '%s %s %s\\n' "$CERTKIT_NAME" "$(sha256sum < "$CERTKIT_CERT" | cut -c1-16)" "$RENEWED_LINEAGE" >> "$LOG"
[ ! -e "$FAIL_FLAG" ]
"""


def quiet(_: str) -> None:
    pass


def sha16(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_failing_hook_rolls_back_and_next_run_succeeds(home: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    hook = tmp_path / "hook.sh"
    hook.write_text(HOOK)
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    log, flag = tmp_path / "hook.log", tmp_path / "fail"
    monkeypatch.setenv("LOG", str(log))
    monkeypatch.setenv("FAIL_FLAG", str(flag))
    runner = CliRunner()
    result = runner.invoke(cli, ["issue", "--cn", "mail.example.com", "--days", "2", "--key", "ec256",
                                 "--deploy", f"script:{hook}"])
    assert result.exit_code == 0, result.output
    store = Store(home)
    v1_cert = store.version_paths("mail.example.com", 1).cert
    assert log.read_text().split()[:2] == ["mail.example.com", sha16(v1_cert)]
    assert [t.target for t in store.load_settings("mail.example.com").deploy] == [f"script:{hook}"]
    runner.invoke(cli, ["issue", "--cn", "fresh.example.com", "--days", "90", "--key", "ec256"])

    flag.write_text("")
    moment = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=30)
    report = renew.run(store, clock=lambda: moment, echo=quiet)
    assert report.names("not_due") == ["fresh.example.com"]
    assert [r.name for r in report.failed] == ["mail.example.com"]
    assert "exited with status 1" in (report.failed[0].error or "")
    # Rolled back: version 1 is live again and the hook was re-run with it.
    assert store.live_version("mail.example.com") == 1
    runs = [line.split() for line in log.read_text().splitlines()]
    v2_cert = store.version_paths("mail.example.com", 2).cert
    assert [r[1] for r in runs] == [sha16(v1_cert), sha16(v2_cert), sha16(v1_cert)]
    last = store.load_state("mail.example.com")["last_renewal"]
    assert last["ok"] is False and last["version"] == 1
    header, *rows = runner.invoke(cli, ["list"]).output.splitlines()
    assert header.endswith("LAST RENEWAL")
    assert [row.split()[-1] for row in rows if row.startswith("mail.example.com ")] == ["FAILED"]

    flag.unlink()
    report = renew.run(store, clock=lambda: moment, echo=quiet)
    assert report.names("renewed") == ["mail.example.com"]
    live = store.live_version("mail.example.com")
    assert live == 3 and log.read_text().splitlines()[-1].split()[1] == sha16(store.version_paths(
        "mail.example.com", 3).cert)
    assert Path(runs[0][2]).is_dir()  # certbot-style RENEWED_LINEAGE
    cert = cx.load_chain(store.live_paths("mail.example.com").cert.read_bytes())[0]
    assert cx.dns_names(cert) == ["mail.example.com"]


def test_cli_reports_the_failed_deploy(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\necho 'postfix reload failed' >&2\nexit 3\n")
    hook.chmod(0o755)
    runner = CliRunner()
    assert runner.invoke(cli, ["issue", "--cn", "a.example", "--key", "ec256"]).exit_code == 0
    store = Store(home)
    with store.lock():  # remember a target that will fail from now on
        settings = store.load_settings("a.example")
        from certkit.settings import DeployTarget

        settings.deploy = [DeployTarget(f"script:{hook}")]
        store.save_settings(settings)
    result = runner.invoke(cli, ["renew", "--force", "--json"])
    assert result.exit_code == 1
    body = result.stdout if hasattr(result, "stdout") else result.output
    data = json.loads(body[body.index("{"): body.rindex("}") + 1])
    assert data["failed"][0]["name"] == "a.example" and "status 3" in data["failed"][0]["error"]
    assert store.live_version("a.example") == 1
    assert "Traceback" not in result.output


def test_renewal_refused_by_a_remembered_target_rolls_back(home: Path, tmp_path: Path) -> None:
    """A remembered target that refuses (exit 2, e.g. its pid file is gone) after a renewal made
    the new version live: the previous version goes live again, and no resume marker is left."""
    runner = CliRunner()
    assert runner.invoke(cli, ["issue", "--cn", "b.example", "--key", "ec256"]).exit_code == 0
    store = Store(home)
    from certkit.settings import DeployTarget

    with store.lock():
        settings = store.load_settings("b.example")
        settings.deploy = [DeployTarget("aiosmtpd", {"pid_file": str(tmp_path / "gone.pid")})]
        store.save_settings(settings)
    result = runner.invoke(cli, ["renew", "--force"])
    assert result.exit_code == 1, result.output
    assert "gone.pid does not exist" in result.output and "Traceback" not in result.output
    assert store.live_version("b.example") == 1
    assert store.load_state("b.example").get("unfinished") is None
    assert "version 1 is live again" in (store.load_state("b.example")["last_renewal"]["error"] or "")


def issue_with_hook(tmp_path: Path, name: str, body: str) -> tuple[CliRunner, Path]:
    """Issue ``name`` with a ``script:`` deploy target running ``body`` (rewrite the file to change it)."""
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\n{body}\n")
    hook.chmod(0o755)
    runner = CliRunner()
    assert runner.invoke(cli, ["issue", "--cn", name, "--key", "ec256", "--deploy", f"script:{hook}"]).exit_code == 0
    return runner, hook


def test_rollback_message_does_not_claim_a_failed_rerun(home: Path, tmp_path: Path) -> None:
    """A script that fails again while rolling back is listed as a problem, not as deployed again."""
    runner, hook = issue_with_hook(tmp_path, "c.example", "exit 0")
    hook.write_text("#!/bin/sh\nexit 4\n")
    result = runner.invoke(cli, ["renew", "--force"])
    assert result.exit_code == 1
    error = Store(home).load_state("c.example")["last_renewal"]["error"]
    assert "version 1 is live again" in error and "re-running script:" in error
    assert "deployed again" not in error


def test_quiet_prints_only_the_summary_lines(home: Path, tmp_path: Path) -> None:
    """--quiet (cron mails any output): no --jitter wait line, no deploy progress - one line per renewal."""
    runner, hook = issue_with_hook(tmp_path, "q.example", "echo reloaded")
    result = runner.invoke(cli, ["renew", "--force", "--jitter", "--jitter-max", "0.01", "--quiet"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("renewed   q.example: version 2"), result.output
    hook.write_text("#!/bin/sh\necho 'reload failed' >&2\nexit 5\n")
    result = runner.invoke(cli, ["renew", "--force", "--quiet"])
    assert result.exit_code == 1
    assert "FAILED    q.example" in result.output and "reload failed" in result.output
    assert "Deploying" not in result.output


def test_renewal_with_a_broken_remembered_verify_url_rolls_back(home: Path) -> None:
    """settings.toml edited by hand: a URL that does not parse must not leave the renewal half-done."""
    runner = CliRunner()
    assert runner.invoke(cli, ["issue", "--cn", "v.example", "--key", "ec256"]).exit_code == 0
    store = Store(home)
    with store.lock():
        settings = store.load_settings("v.example")
        settings.verify = ["imap://v.example"]
        store.save_settings(settings)
    result = runner.invoke(cli, ["renew", "--force"])
    assert result.exit_code == 1 and "imap" in result.output
    assert store.live_version("v.example") == 1
    assert store.load_state("v.example").get("unfinished") is None
