"""Issue 10 items 2 and 6-10: damaged input, hostile hooks and killed runs, performed for real.

Every test here runs certkit (in-process through click, or as a real
process where memory or a kill matters) against the bad thing itself: a
corrupt or mistyped settings.toml, a read-only state directory, a bad
environment variable, /dev/zero as a password file, a hook that prints
300 MB and tries to clear the terminal, a `kill -9` in the middle of the
deploy hooks, a deploy script another user can rewrite.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
import tomllib
from click.testing import CliRunner

from certkit.cli import cli
from certkit.store import Store

POSIX_ROOT = os.name != "nt" and os.geteuid() == 0


def run(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args], env=env, catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback instead of a message: {result.exception!r}\n{result.output}")
    return result.exit_code, result.stdout + result.stderr


def issued(home: Path, name: str = "in.example") -> Path:
    code, out = run(home, "issue", "--cn", name)
    assert code == 0, out
    return home / "lineages" / name / "settings.toml"


# ----- item 6: a damaged or mistyped settings.toml is a failed renewal, never "not due" ----------

def test_corrupt_settings_make_renew_fail_in_text_and_json(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = issued(home)
    settings.write_text("name = 'in.example'\ndomains = [\x00 broken")
    code, out = run(home, "renew")
    assert code == 1, out
    assert "FAILED    in.example:" in out and "settings.toml" in out and "not due   in.example" not in out
    code, out = run(home, "renew", "--json")
    assert code == 1
    report = json.loads(out[: out.rindex("}") + 1])
    assert [f["name"] for f in report["failed"]] == ["in.example"] and report["not_due"] == []


@pytest.mark.parametrize(("key", "value", "field", "problem"), [
    ("domains", "x", "domains", "must be a list, found a string ('x')"),
    ("days", True, "days", "must be an integer, found true or false (True)"),
    ("domains", [], "domains", "must list at least one name"),
    ("domains", ["in.example", 3], "domains[1]", "must be a string, found an integer (3)"),
    ("pfx", "yes", "pfx", "must be a table, found a string ('yes')"),
    ("deploy", [{"options": {}}], "deploy[0].target", "is missing"),
])
def test_mistyped_field_is_named_and_nothing_is_issued(tmp_path: Path, key: str, value: object, field: str,
                                                        problem: str) -> None:
    home = tmp_path / "home"
    settings = issued(home)
    data = tomllib.loads(settings.read_text())
    data[key] = value
    settings.write_text(tomli_w.dumps(data))
    code, out = run(home, "renew", "--force")
    assert code == 1, out
    assert f"field `{field}` {problem}" in out
    assert Store(home).versions("in.example") == [1]  # no certificate for DNS:x, one letter at a time


def test_settings_of_another_lineage_are_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = issued(home)
    settings.write_text(settings.read_text().replace("name = \"in.example\"", "name = \"other.example\""))
    code, out = run(home, "deploy", "in.example", "--to", "script:/bin/true")
    assert code == 1 and "field `name` is 'other.example', but the folder is 'in.example'" in out


# ----- item 7: environment variables and I/O failures: exit 1/2 with a message ---------------------

@pytest.mark.parametrize(("variable", "value"), [
    ("CERTKIT_LOCK_WAIT", "abc"), ("CERTKIT_LOCK_WAIT", "-1"), ("CERTKIT_LOCK_WAIT", "nan"),
    ("CERTKIT_HOOK_TIMEOUT", "soon"), ("CERTKIT_HOOK_TIMEOUT", "0"), ("CERTKIT_JITTER_MAX", "x"),
])
def test_bad_environment_variable_is_exit_2(tmp_path: Path, variable: str, value: str) -> None:
    home = tmp_path / "home"
    issued(home)
    (tmp_path / "hook.sh").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "hook.sh").chmod(0o755)
    args = ["deploy", "in.example", "--to", f"script:{tmp_path / 'hook.sh'}"]
    if variable == "CERTKIT_JITTER_MAX":
        args = ["renew", "--jitter"]
    code, out = run(home, *args, env={variable: value})
    assert code == 2, out
    assert variable in out or "JITTER" in out.upper()


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A state directory with a lineage, then bind-mounted read-only (EROFS, even for root)."""
    if not POSIX_ROOT:
        pytest.skip("needs root to mount")
    home = tmp_path / "home"
    issued(home)
    view = tmp_path / "ro"
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(home), str(view)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=False)


@pytest.mark.parametrize("args", [
    ["issue", "--cn", "new.example"], ["renew", "--force"], ["renew", "--force", "--json"],
    ["deploy", "in.example", "--to", "script:/bin/true"],
])
def test_read_only_state_directory_is_a_message(read_only: Path, args: list[str]) -> None:
    code, out = run(read_only, *args)
    assert code == 1, out
    assert "Read-only file system" in out


# ----- item 8: secret files: bounded, clean, precise ---------------------------------------------

@pytest.mark.parametrize(("content", "message"), [
    (None, "larger than 4096 bytes"),  # /dev/zero: read at most a few KiB, never grow to GBs
    (b"pass\x00word\n", "contains a NUL byte"),
    (b"\nsecret\n", "starts with a blank line"),
    (b"pa\x1b[2Jss\n", "control character '\\x1b'"),
    (b"", "is empty"),
])
def test_bad_pfx_password_file_is_exit_2(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = Path("/dev/zero")
    if content is not None:
        path = tmp_path / "password"
        path.write_bytes(content)
    code, out = run(tmp_path / "home", "issue", "--cn", "pfx.example", "--pfx", "--pfx-password-file", str(path))
    assert code == 2, out
    assert message in out
    assert not (tmp_path / "home" / "lineages" / "pfx.example").exists()


# ----- item 9: a hook that prints 300 MB and tries to drive the terminal -------------------------

# Measures certkit's own peak RSS from a small parent: a child forked straight from pytest would
# count pytest's pages too (ru_maxrss survives fork and exec).
_MEASURE = """
import resource, subprocess, sys
with open(sys.argv[1], "wb") as out:
    code = subprocess.call(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT)
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def run_certkit_process(home: Path, *args: str) -> tuple[int, bytes, int]:
    """certkit as a real process: exit code, stdout+stderr, and its peak RSS in KiB."""
    out_file = home.parent / "certkit.out"
    measured = subprocess.run([sys.executable, "-c", _MEASURE, str(out_file),
                               sys.executable, "-m", "certkit", "--home", str(home), *args],
                              capture_output=True, text=True, check=True)
    code, peak_kib = (int(x) for x in measured.stdout.split())
    return code, out_file.read_bytes(), peak_kib


@pytest.mark.integration
@pytest.mark.skipif(os.name == "nt", reason="POSIX shell hook")
def test_300_mb_hook_output_keeps_memory_flat_and_strips_escapes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    issued(home)
    hook = tmp_path / "chatty.sh"
    # 300 MB in 1000-byte lines, then a screen-clearing escape and a failure so the tail is shown.
    hook.write_text("#!/bin/sh\n"
                    "yes \"$(head -c 999 /dev/zero | tr '\\0' x)\" | head -n 300000\n"
                    "printf 'before\\033[2Jafter\\n'\nexit 3\n")
    hook.chmod(0o755)
    code, output, peak_kib = run_certkit_process(home, "deploy", "in.example", "--to", f"script:{hook}")
    assert code == 1
    assert peak_kib < 200 * 1024, f"certkit grew to {peak_kib // 1024} MiB while a hook printed 300 MB"
    assert len(output) < 1024 * 1024  # a bounded echo and tail, not 300 MB
    assert b"\x1b" not in output and b"beforeafter" in output
    assert b"    | xxxx" in output  # streamed lines carry the prefix


# ----- item 10: kill -9 in the middle of issue's deploy hooks; the next renew finishes ----------

@pytest.mark.integration
def test_killed_issue_is_finished_by_the_next_renew(tmp_path: Path) -> None:
    home = tmp_path / "home"
    log = tmp_path / "deployed.log"
    started = tmp_path / "first-hook-started"
    first, second = tmp_path / "first.sh", tmp_path / "second.sh"
    first.write_text(f"#!/bin/sh\necho \"first $CERTKIT_VERSION\" >> {log}\ntouch {started}\nsleep 60\n")
    second.write_text(f"#!/bin/sh\necho \"second $CERTKIT_VERSION\" >> {log}\n")
    for script in (first, second):
        script.chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "--home", str(home), "issue", "--cn", "kill.example",
                             "--deploy", f"script:{first}", "--deploy", f"script:{second}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(600):  # the first hook is running: certkit is in the middle of deploying
        if started.exists() or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert started.exists(), "the first hook never started"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert log.read_text().split("\n")[:-1] == ["first 1"]  # the second hook never ran
    first.write_text(f"#!/bin/sh\necho \"first $CERTKIT_VERSION\" >> {log}\n")
    code, out = run(home, "renew")
    assert code == 0, out
    assert "renewed   kill.example: version 1" in out and "finishing the issue" in out
    assert log.read_text().split("\n")[:-1] == ["first 1", "first 1", "second 1"]
    assert Store(home).unfinished("kill.example") is None
    code, out = run(home, "renew")
    assert code == 0 and "not due   kill.example" in out


def test_failed_deploy_leaves_nothing_to_finish(tmp_path: Path) -> None:
    home = tmp_path / "home"
    issued(home, "rb.example")
    code, out = run(home, "renew", "--force")  # version 2
    assert code == 0, out
    code, out = run(home, "deploy", "rb.example", "--to", "script:/bin/false")
    assert code == 1 and "version 2 stays live" in out
    assert Store(home).unfinished("rb.example") is None  # the next renew has nothing to redo


# ----- script: targets as root: a script another user can rewrite never runs ---------------------

@pytest.mark.skipif(not POSIX_ROOT, reason="needs root (the script belongs to nobody)")
@pytest.mark.parametrize("attack", ["owned by nobody", "world-writable", "folder owned by nobody"])
def test_untrusted_deploy_script_never_runs(tmp_path: Path, attack: str) -> None:
    home = tmp_path / "home"
    issued(home)
    folder = tmp_path / "scripts"
    folder.mkdir()
    marker = tmp_path / "ran"
    script = folder / "deploy.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    nobody = pwd.getpwnam("nobody")
    if attack == "owned by nobody":
        os.chown(script, nobody.pw_uid, nobody.pw_gid)
    elif attack == "world-writable":
        script.chmod(0o777)
    else:
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    code, out = run(home, "deploy", "in.example", "--to", f"script:{script}")
    assert code == 2, out
    assert not marker.exists()
    assert "chown root:root" in out or "chmod go-w" in out
