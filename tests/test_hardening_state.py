"""Issue 10 items 3-5: root trusts nothing in the state directory it did not create.

Each test performs the attack for real: the hostile files are made by (or
given to) the unprivileged user ``nobody``, and certkit runs as root.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from certkit.cli import cli

pytestmark = pytest.mark.skipif(os.name == "nt" or os.geteuid() != 0, reason="needs root (attacks by nobody)")

NOBODY = pwd.getpwnam("nobody")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout + result.stderr


def give_to_nobody(path: Path) -> None:
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid, follow_symlinks=False)


def marker_script(tmp_path: Path) -> tuple[Path, Path]:
    """A root-owned script that leaves a marker file when it runs."""
    marker = tmp_path / "ran"
    script = tmp_path / "hook.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    return script, marker


def test_lock_symlink_in_world_writable_home_never_truncates_victim(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o777)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    # nobody cannot traverse pytest's 0700 tmp_path, so plant the link and hand it over.
    (home / ".lock").symlink_to(victim)
    give_to_nobody(home / ".lock")
    code, out = run("--home", str(home), "issue", "--cn", "x.example.test")
    assert code == 2, out
    assert victim.read_text() == "precious\n"
    assert "chmod go-w" in out or "symlink" in out


def test_lock_symlink_refused_even_in_a_trusted_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (home / ".lock").symlink_to(victim)
    code, out = run("--home", str(home), "issue", "--cn", "x.example.test")
    assert code == 2, out
    assert "is a symlink" in out and "rm " in out
    assert victim.read_text() == "precious\n"


def test_home_owned_by_nobody_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    give_to_nobody(home)
    code, out = run("--home", str(home), "issue", "--cn", "x.example.test")
    assert code == 2, out
    assert "chown root:root" in out
    assert not (home / "lineages").exists()


def test_settings_owned_by_nobody_never_runs_its_script(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code, out = run("--home", str(home), "issue", "--cn", "x.example.test")
    assert code == 0, out
    script, marker = marker_script(tmp_path)
    settings = home / "lineages" / "x.example.test" / "settings.toml"
    settings.write_text(settings.read_text() + f'\n[[deploy]]\ntarget = "script:{script}"\n')
    give_to_nobody(settings)
    code, out = run("--home", str(home), "deploy", "x.example.test")
    assert code == 2, out
    assert "settings file" in out and "chown root:root" in out
    assert not marker.exists()


@pytest.mark.parametrize("attack", ["owner", "mode"])
def test_untrusted_hook_script_never_runs(tmp_path: Path, attack: str) -> None:
    home = tmp_path / "home"
    code, out = run("--home", str(home), "issue", "--cn", "x.example.test")
    assert code == 0, out
    hooks = home / "hooks" / "deploy"
    hooks.mkdir(parents=True, mode=0o700)
    script, marker = marker_script(tmp_path)
    hook = hooks / "10-reload"
    hook.write_bytes(script.read_bytes())
    if attack == "owner":
        hook.chmod(0o755)
        give_to_nobody(hook)
    else:
        hook.chmod(0o777)
    code, out = run("--home", str(home), "deploy", "x.example.test")
    assert code == 2, out
    assert "hook script" in out
    assert not marker.exists()


def test_folders_are_0700_under_umask_000(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        ["sh", "-c", 'umask 000 && exec "$@"', "sh", sys.executable, "-m", "certkit", "--home", str(home),
         "issue", "--cn", "x.example.test"],
        capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    folders = [home, *(p for p in home.rglob("*") if p.is_dir() and not p.is_symlink())]
    assert home / "lineages" / "x.example.test" / "versions" in folders
    for folder in folders:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_live_link_outside_the_lineage_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run("--home", str(home), "issue", "--cn", "x.example.test")[0] == 0
    live = home / "lineages" / "x.example.test" / "live"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    live.unlink()
    live.symlink_to(elsewhere)
    code, out = run("--home", str(home), "show", "x.example.test")
    assert code == 2, out
    assert "outside the lineage" in out


def test_lineage_name_with_trailing_newline_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code, out = run("--home", str(home), "issue", "--cn", "x.example.test", "--name", "evil\n")
    assert code == 2, out
    assert "control characters" in out
    assert not (home / "lineages" / "evil\n").exists()


def test_home_with_newline_is_refused_by_timer_print(tmp_path: Path) -> None:
    home = f"{tmp_path}/h\nExecStartPre=/bin/touch /tmp/pwned"
    code, out = run("--home", home, "timer", "install", "--print", "--kind", "systemd",
                    "--unit-dir", str(tmp_path / "units"))
    assert code == 2, out
    assert "ExecStartPre=/bin/touch" not in out.replace(repr(home), "")
    from certkit.errors import UsageError
    from certkit.renew import timer
    with pytest.raises(UsageError):
        timer.renew_command(Path(home))
