"""The log file (HOME/logs/certkit.log), -v, and output to a reader that went away - certkit as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from certkit import journal

pytestmark = [pytest.mark.unit, pytest.mark.skipif(os.name == "nt", reason="POSIX processes and modes")]


def certkit(home: Path, *args: str, env: dict[str, str] | None = None,
            stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    """certkit run as its console script would (main(), so the journal is on)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("CERTKIT_HOME", None)
    return subprocess.run([sys.executable, "-m", "certkit", *args, "--home", str(home)], env=full_env,
                          stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120)


def log_of(home: Path) -> str:
    return (home / "logs" / journal.LOG_NAME).read_text(encoding="utf-8")


def test_a_failed_deploy_can_be_read_the_next_morning_without_its_secret(tmp_path: Path) -> None:
    home = tmp_path / "home"
    password_file = tmp_path / "pfx-password"
    password_file.write_text("Correct-Horse-42\n")
    # A careless hook prints the PFX password it was handed, then fails.
    hook = tmp_path / "careless.sh"
    hook.write_text('#!/bin/sh\necho "password is $(cat "$CERTKIT_PFX_PASSWORD_FILE")"\n'
                    'echo "service reload failed: no such unit" >&2\nexit 4\n')
    hook.chmod(0o755)
    result = certkit(home, "issue", "--cn", "mx.example.org", "--pfx", "--pfx-password-file", str(password_file),
                     "--deploy", f"script:{hook}")
    assert result.returncode == 1
    assert "Correct-Horse-42" in result.stdout + result.stderr  # the hook really printed it to the terminal
    log = log_of(home)
    assert "Correct-Horse-42" not in log and "password is ********" in log
    assert "command: certkit issue --cn mx.example.org" in log
    assert "service reload failed: no such unit" in log  # the hook's own words
    assert "err: error:" in log and log.rstrip().endswith("exit: 1")
    assert f"debug: ran deploy hook {hook} ({hook}): exit 4" in log  # programs run are recorded without -v
    assert (home / "logs").stat().st_mode & 0o777 == 0o700
    assert (home / "logs" / journal.LOG_NAME).stat().st_mode & 0o777 == 0o600


def test_read_only_commands_write_no_log_and_create_no_home(tmp_path: Path) -> None:
    home = tmp_path / "absent"
    for args in (["list"], ["list", "--json"], ["show", "nothing.example"], ["targets", "nothing.example"]):
        certkit(home, *args)
        assert not home.exists(), f"`certkit {' '.join(args)}` created the state directory"


def test_a_planted_link_in_place_of_the_log_is_never_followed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert certkit(home, "issue", "--cn", "a.example.org").returncode == 0
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    log = home / "logs" / journal.LOG_NAME
    log.unlink()
    log.symlink_to(victim)
    result = certkit(home, "issue", "--cn", "b.example.org")
    assert result.returncode == 0  # the certificate is made; only the log is skipped
    assert "no log written" in result.stderr or "cannot write the log file" in result.stderr
    assert victim.read_text() == "precious\n"
    assert (home / "lineages" / "b.example.org").is_dir()


def test_the_log_rotates_at_its_size_limit(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert certkit(home, "issue", "--cn", "a.example.org").returncode == 0
    log = home / "logs" / journal.LOG_NAME
    log.write_text("old line\n" * (journal.MAX_BYTES // 9 + 1))
    assert certkit(home, "issue", "--cn", "b.example.org").returncode == 0
    rotated = log.with_name(journal.LOG_NAME + ".1")
    assert rotated.read_text().startswith("old line\n")
    assert log.stat().st_size < 10_000 and "command: certkit issue --cn b.example.org" in log.read_text()


def test_verbose_after_the_subcommand_prints_debug_details(tmp_path: Path) -> None:
    home = tmp_path / "home"
    hook = tmp_path / "ok.sh"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    quiet = certkit(home, "issue", "--cn", "a.example.org", "--deploy", f"script:{hook}")
    assert quiet.returncode == 0 and "debug:" not in quiet.stderr
    loud = certkit(home, "deploy", "a.example.org", "-v")
    assert loud.returncode == 0
    assert f"debug: ran deploy hook {hook} ({hook}): exit 0" in loud.stderr
    assert "debug:" in log_of(home)


def test_output_to_a_closed_pipe_does_not_stop_the_work(tmp_path: Path) -> None:
    """`certkit issue | head -1`: the reader leaves; the certificate is still made and the exit is 0."""
    home = tmp_path / "home"
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line: every write meets EPIPE
    try:
        result = certkit(home, "issue", "--cn", "piped.example.org", stdout=write_end)
    finally:
        os.close(write_end)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
    assert (home / "lineages" / "piped.example.org" / "live" / "cert.pem").is_file()
    assert "out: Created a new self-signed certificate" in log_of(home)


def test_json_before_the_subcommand_and_home_after_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert certkit(home, "issue", "--cn", "a.example.org").returncode == 0
    before = subprocess.run([sys.executable, "-m", "certkit", "--json", "list", "--home", str(home)],
                            capture_output=True, text=True, timeout=60)
    assert before.returncode == 0, before.stderr
    assert before.stdout.lstrip().startswith("[") and '"a.example.org"' in before.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the folder to another user")
def test_a_log_folder_another_user_controls_gets_nothing(tmp_path: Path) -> None:
    """`nobody` owning logs/ could swap certkit.log for a link between root's checks: root writes nothing there."""
    import pwd

    home = tmp_path / "home"
    assert certkit(home, "issue", "--cn", "a.example.org").returncode == 0
    logs = home / "logs"
    (logs / journal.LOG_NAME).unlink()
    nobody = pwd.getpwnam("nobody")
    os.chown(logs, nobody.pw_uid, nobody.pw_gid)
    result = certkit(home, "issue", "--cn", "b.example.org")
    assert result.returncode == 0  # the certificate is made; only the log is skipped
    assert "not a folder of ours that only we can write; no log written" in result.stderr
    assert not (logs / journal.LOG_NAME).exists()
    os.chown(logs, 0, 0)
    os.chmod(logs, 0o777)  # ours, but anyone may replace what is in it
    result = certkit(home, "issue", "--cn", "c.example.org")
    assert result.returncode == 0 and "no log written" in result.stderr
    assert not (logs / journal.LOG_NAME).exists()
