"""The deploy machinery without a mail server: targets, hook environment, hook folder, rollback.

Hooks are real shell scripts run through the real runner; the Postfix and
--verify paths are in test_postfix.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from certkit.cli import cli
from certkit.deploy import hooks
from certkit.deploy.targets import format_target, parse_target
from certkit.errors import UsageError
from certkit.settings import DeployTarget
from certkit.store import Store

NAME = "mail.example.com"
CONTRACT_VARS = [
    "CERTKIT_NAME", "CERTKIT_DOMAINS", "CERTKIT_CERT", "CERTKIT_KEY", "CERTKIT_CHAIN", "CERTKIT_FULLCHAIN",
    "CERTKIT_COMBINED", "CERTKIT_PFX", "CERTKIT_PFX_PASSWORD_FILE", "CERTKIT_THUMBPRINT",
    "CERTKIT_SPKI_SHA256", "CERTKIT_NOT_AFTER", "CERTKIT_PREVIOUS_CERT", "RENEWED_LINEAGE", "RENEWED_DOMAINS",
]


def certkit(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def env_dumper(folder: Path) -> tuple[Path, Path]:
    """A hook that appends its environment (as JSON lines) to a file."""
    out = folder / "env.jsonl"
    hook = script(folder, "dump.sh",
                  f'python3 -c "import json, os; print(json.dumps(dict(os.environ)))" >> {out}\n')
    return hook, out


def records(out: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.fixture
def issued(home: Path) -> Store:
    code, out = certkit("issue", "--cn", NAME, "--san", "smtp.example.com")
    assert code == 0, out
    return Store(home)


# ----- target specs ---------------------------------------------------------------

def test_parse_target_forms(tmp_path: Path) -> None:
    assert parse_target("postfix") == DeployTarget("postfix", {})
    t = parse_target("postfix:config_dir=/etc/postfix,setup-submission=yes,submission_listen=127.0.0.1:2587")
    assert t.options == {"config_dir": "/etc/postfix", "setup_submission": True,
                         "submission_listen": "127.0.0.1:2587"}
    assert parse_target(format_target(t)) == t
    assert parse_target("exchange:services=SMTP,IIS").options == {"services": "SMTP,IIS"}
    hook = script(tmp_path, "x:y.sh", "exit 0\n")  # a colon in the path is kept
    assert parse_target(f"script:{hook}").target == f"script:{hook}"


@pytest.mark.parametrize("spec, words", [
    ("sendmail", "unknown deploy target"),
    ("postfix:colour=blue", "no option 'colour'"),
    ("postfix:setup_submission=perhaps", "yes or no"),
    ("iis:port=http", "a number"),
    ("script:/nonexistent/hook", "does not exist"),
    ("script:/", "is a folder"),
    ("script:", "without a path"),
    ("postfix:config_dir=", "config_dir of postfix is empty"),
    ("aiosmtpd:pid_file= ", "pid_file of aiosmtpd is empty"),
])
def test_parse_target_refuses_bad_specs(spec: str, words: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_target(spec)
    assert words in str(err.value)
    assert err.value.exit_code == 2


def test_non_executable_script_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hook.sh"
    path.write_text("#!/bin/sh\n")
    with pytest.raises(UsageError, match="chmod \\+x"):
        parse_target(f"script:{path}")


# ----- hook environment -------------------------------------------------------------

def test_hook_environment_contract(issued: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from certkit import x509 as cx

    monkeypatch.setenv("SITE_SETTING", "inherited")
    before = dict(os.environ)
    hook, out = env_dumper(tmp_path)
    code, text = certkit("deploy", NAME, "--to", f"script:{hook}")
    assert code == 0, text
    assert dict(os.environ) == before  # certkit's own environment never changes
    env = records(out)[0]
    for var in CONTRACT_VARS:
        assert var in env, var
    live = issued.live_paths(NAME)
    cert = cx.load_chain(live.cert.read_bytes())[0]
    assert env["SITE_SETTING"] == "inherited"
    assert env["CERTKIT_NAME"] == NAME
    assert env["CERTKIT_DOMAINS"] == env["RENEWED_DOMAINS"] == f"{NAME} smtp.example.com"
    assert env["CERTKIT_COMBINED"] == str(live.combined)
    assert env["CERTKIT_THUMBPRINT"] == cx.thumbprint(cert)
    assert len(env["CERTKIT_THUMBPRINT"]) == 40 and env["CERTKIT_THUMBPRINT"].isupper()
    assert env["CERTKIT_SPKI_SHA256"] == cx.spki_sha256(cert)
    assert env["CERTKIT_NOT_AFTER"].startswith(cx.not_after(cert).strftime("%Y-%m-%dT"))
    assert env["CERTKIT_PREVIOUS_CERT"] == ""
    assert env["CERTKIT_PFX"] == ""
    lineage = Path(env["RENEWED_LINEAGE"])  # certbot hooks read these four names
    for fname in ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"):
        assert (lineage / fname).is_file()

    # A re-issue re-runs the remembered hook, now with the previous certificate.
    code, text = certkit("issue", "--cn", NAME, "--san", "smtp.example.com")
    assert code == 0, text
    second = records(out)[1]
    assert second["CERTKIT_VERSION"] == "2"
    assert Path(second["CERTKIT_PREVIOUS_CERT"]).read_bytes() == issued.version_paths(NAME, 1).cert.read_bytes()
    assert second["CERTKIT_THUMBPRINT"] != env["CERTKIT_THUMBPRINT"]
    assert second["CERTKIT_PREVIOUS_THUMBPRINT"] == env["CERTKIT_THUMBPRINT"]


def test_pfx_is_made_for_targets_that_import_one(issued: Store) -> None:
    from cryptography.hazmat.primitives.serialization import pkcs12

    settings = issued.load_settings(NAME)
    hooks.ensure_pfx(issued, settings, 1)
    env = hooks.hook_env(issued, settings, 1, None)
    password = Path(env["CERTKIT_PFX_PASSWORD_FILE"]).read_text().strip()
    assert oct(Path(env["CERTKIT_PFX_PASSWORD_FILE"]).stat().st_mode & 0o777) == "0o600"
    loaded = pkcs12.load_pkcs12(Path(env["CERTKIT_PFX"]).read_bytes(), password.encode())
    assert loaded.cert is not None and loaded.key is not None
    assert password not in json.dumps({k: v for k, v in env.items()})  # the secret is only in the file


# ----- hook folder ----------------------------------------------------------------

def test_hook_folder_runs_executables_in_name_order(issued: Store, tmp_path: Path) -> None:
    folder = hooks.hook_dir(issued)
    folder.mkdir(parents=True)
    log = tmp_path / "order.log"
    script(folder, "20-second", f'echo "20 $CERTKIT_NAME" >> {log}\n')
    script(folder, "10-first", f'echo "10 $CERTKIT_NAME" >> {log}\n')
    (folder / "30-not-executable").write_text("#!/bin/sh\necho never >> {log}\n")
    script(folder, ".hidden", f"echo hidden >> {log}\n")
    script(folder, "40-old~", f"echo backup >> {log}\n")
    code, out = certkit("issue", "--cn", NAME, "--san", "smtp.example.com")  # hooks run on every issue
    assert code == 0, out
    assert log.read_text().splitlines() == [f"10 {NAME}", f"20 {NAME}"]
    assert "30-not-executable: not executable" in out


def test_failing_hook_folder_script_rolls_back(issued: Store, tmp_path: Path) -> None:
    folder = hooks.hook_dir(issued)
    folder.mkdir(parents=True)
    script(folder, "50-reload", '[ "$CERTKIT_VERSION" = 1 ] && exit 0\necho "reload failed: port busy"; exit 7\n')
    first = issued.live_paths(NAME).cert.read_bytes()
    code, out = certkit("issue", "--cn", NAME, "--san", "smtp.example.com")
    assert code == 1
    assert "50-reload exited with status 7" in out and "reload failed: port busy" in out
    assert "version 1 is live again" in out
    assert issued.live_version(NAME) == 1
    assert issued.live_paths(NAME).cert.read_bytes() == first
    assert issued.versions(NAME) == [1, 2]  # the new version is kept for inspection, not live


def test_hook_timeout_fails_the_run(issued: Store, tmp_path: Path) -> None:
    slow = script(tmp_path, "slow.sh", "sleep 10\n")
    code, out = certkit("deploy", NAME, "--to", f"script:{slow}", "--hook-timeout", "0.5")
    assert code == 1
    assert "did not finish within 0.5 s" in out
    assert "version 1 stays live (it was live before this deploy)" in out
    assert issued.load_settings(NAME).deploy == []  # a failed deploy remembers nothing


def test_no_rollback_keeps_new_version(issued: Store, tmp_path: Path) -> None:
    hook = script(tmp_path, "v2-fails.sh", '[ "$CERTKIT_VERSION" = 1 ]\n')
    assert certkit("deploy", NAME, "--to", f"script:{hook}")[0] == 0
    code, out = certkit("issue", "--cn", NAME, "--san", "smtp.example.com")
    assert code == 1 and issued.live_version(NAME) == 1
    # `certkit deploy` of the live version 2 without rollback leaves it live.
    with issued.lock():
        issued.activate(NAME, 2)
    code, out = certkit("deploy", NAME, "--no-rollback")
    assert code == 1
    assert "stays live (--no-rollback)" in out
    assert issued.live_version(NAME) == 2
    # With rollback, `certkit deploy` restores what it changed but never downgrades: version 2 was
    # live before the command, so it stays live.
    code, out = certkit("deploy", NAME)
    assert code == 1 and "version 2 stays live (it was live before this deploy)" in out
    assert issued.live_version(NAME) == 2 and issued.unfinished(NAME) is None


def test_failed_verification_of_deploy_never_downgrades(issued: Store, tmp_path: Path) -> None:
    """Issue 13: a mistyped --verify URL once moved the lineage back to its previous version."""
    from tests.servers.net import free_port

    hook = script(tmp_path, "ok.sh", "exit 0\n")
    assert certkit("issue", "--cn", NAME, "--san", "smtp.example.com")[0] == 0  # version 2 live
    code, out = certkit("deploy", NAME, "--to", f"script:{hook}", "--verify", f"smtp://127.0.0.1:{free_port()}")
    assert code == 1, out
    assert "version 2 stays live" in out and "is live again" not in out
    assert issued.live_version(NAME) == 2
    assert issued.load_settings(NAME).verify == []  # the failing URL is not remembered


def test_remembered_targets_replace_same_target(issued: Store, tmp_path: Path) -> None:
    hook, out = env_dumper(tmp_path)
    other = script(tmp_path, "other.sh", "exit 0\n")
    assert certkit("deploy", NAME, "--to", f"script:{hook}")[0] == 0
    code, text = certkit("deploy", NAME, "--to", f"script:{hook}", "--to", f"script:{other}", "--json")
    assert code == 0, text
    assert json.loads(text)["targets"] == [f"script:{hook}", f"script:{other}"]
    assert [t.target for t in issued.load_settings(NAME).deploy] == [f"script:{hook}", f"script:{other}"]
    # `certkit deploy NAME` alone re-runs what is remembered.
    code, text = certkit("deploy", NAME)
    assert code == 0, text
    assert len(records(out)) == 3


@pytest.mark.parametrize("args, words", [
    (["--to", "postfix", "--site", "Default"], "--site belongs to the iis target"),
    (["--to", "postfix", "--submission-listen", "2587"], "needs --setup-submission"),
    (["--to", "postfix", "--setup-submission", "--submission-listen", "nope"], "not [ADDR:]PORT"),
    (["--to", "postfix", "--postfix-config-dir", "/nonexistent"], "main.cf does not exist"),
    (["--to", "mailserver"], "unknown deploy target"),
    (["--setup-submission"], "needs --to TARGET"),
    ([], "nothing to deploy"),
])
def test_deploy_usage_errors_exit_2(issued: Store, args: list[str], words: str) -> None:
    code, out = certkit("deploy", NAME, *args)
    assert code == 2, out
    assert words in out
    assert "Traceback" not in out
    assert issued.load_settings(NAME).deploy == []


def test_deploy_unknown_lineage_exits_2(home: Path) -> None:
    code, out = certkit("deploy", "nope.example.com", "--to", "postfix")
    assert code == 2 and "no lineage named" in out


def test_issue_deploy_option_uses_parse_target(home: Path, tmp_path: Path) -> None:
    hook, out = env_dumper(tmp_path)
    code, text = certkit("issue", "--cn", NAME, "--deploy", f"script:{hook}")
    assert code == 0, text
    assert records(out)[0]["CERTKIT_NAME"] == NAME
    code, text = certkit("issue", "--cn", "b.example.com", "--deploy", "bogus")
    assert code == 2 and "unknown deploy target" in text


def test_windows_target_elsewhere_changes_nothing(issued: Store, tmp_path: Path) -> None:
    if os.name == "nt":
        pytest.skip("on Windows the iis target really runs")
    hook = script(tmp_path, "ok.sh", "exit 0\n")
    assert certkit("deploy", NAME, "--to", f"script:{hook}")[0] == 0
    code, out = certkit("issue", "--cn", NAME, "--san", "smtp.example.com")
    assert code == 0
    code, out = certkit("deploy", NAME, "--to", "iis", "--site", "Default Web Site")
    assert code == 2 and "Windows" in out
    assert issued.live_version(NAME) == 2  # a refusal is not a failure to roll back from
    code, out = certkit("deploy", NAME, "--to", "iis", "--site", "Default Web Site", "--print")
    assert code == 0, out
    assert "-Site 'Default Web Site'" in out and "not remembered" in out
    # The whole output is pasteable PowerShell: comments, variables, the command.
    assert all(line.startswith(("#", "$env:", "powershell.exe ")) for line in out.splitlines()), out
    assert [t.target for t in issued.load_settings(NAME).deploy] == [f"script:{hook}"]
    assert Path(json.loads(certkit("show", NAME, "--json")[1])["paths"]["pfx"]).is_file()  # made for iis


def test_bad_verify_url_fails_before_any_target(issued: Store, tmp_path: Path) -> None:
    hook, out = env_dumper(tmp_path)
    code, text = certkit("deploy", NAME, "--to", f"script:{hook}", "--verify", "imap://mail.example.com")
    assert code == 2 and "imap" in text
    assert not out.exists()


def test_postfix_refuses_an_undeclared_config_dir(issued: Store, tmp_path: Path) -> None:
    """A copied main.cf is not an instance: deploying there must not start a second Postfix."""
    import shutil

    from tests.conftest import skip_or_fail

    if not Path("/etc/postfix/main.cf").is_file() or not shutil.which("postconf"):
        skip_or_fail("Postfix is not installed")
    copy = tmp_path / "postfix-copy"
    copy.mkdir()
    for fname in ("main.cf", "master.cf"):
        shutil.copy(Path("/etc/postfix") / fname, copy / fname)
    before = (copy / "main.cf").read_bytes()
    code, out = certkit("deploy", NAME, "--to", "postfix", "--postfix-config-dir", str(copy))
    assert code == 2, out
    assert "alternate_config_directories" in out and "postmulti" in out
    assert (copy / "main.cf").read_bytes() == before


def test_hook_leaving_a_daemon_behind_does_not_block(issued: Store, tmp_path: Path) -> None:
    """A hook that starts a background process (which keeps stdout open) finishes when the hook does."""
    hook = script(tmp_path, "starts-daemon.sh", "sleep 300 &\necho $! > " + str(tmp_path / "daemon.pid")
                  + "\necho restarted\n")
    code, out = certkit("deploy", NAME, "--to", f"script:{hook}")
    assert code == 0, out
    assert "restarted" in out
    daemon = int((tmp_path / "daemon.pid").read_text())
    os.kill(daemon, 0)  # still running: certkit returned without waiting for the daemon's end of output
    os.kill(daemon, 9)


@pytest.mark.integration  # seconds of real processes
def test_hook_timeout_stops_everything_the_hook_started(issued: Store, tmp_path: Path) -> None:
    import time

    pid_file = tmp_path / "child.pid"
    hook = script(tmp_path, "hangs.sh", f"sleep 30 &\necho $! > {pid_file}\nwait\n")
    code, out = certkit("deploy", NAME, "--to", f"script:{hook}", "--hook-timeout", "1")
    assert code == 1 and "did not finish within 1 s" in out
    child = int(pid_file.read_text())
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, 9)
        pytest.fail("the hook's background child outlived the timeout")


@pytest.mark.parametrize("listen, service, aliases", [
    ("587", "submission", ["587", "submission"]),
    ("2587", "2587", ["2587"]),
    ("127.0.0.1:2587", "127.0.0.1:2587", ["127.0.0.1:2587"]),
    ("192.0.2.1:587", "192.0.2.1:submission", ["192.0.2.1:587", "192.0.2.1:submission"]),
    ("[::1]:587", "[::1]:submission", ["[::1]:587", "[::1]:submission"]),
])
def test_submission_listen_forms(listen: str, service: str, aliases: list[str]) -> None:
    from certkit.deploy.postfix import parse_listen

    assert parse_listen(listen) == (service, aliases)


@pytest.mark.parametrize("bad", ["", "smtp", "70000", "::1:587", "host:"])
def test_submission_listen_refuses(bad: str) -> None:
    from certkit.deploy.postfix import parse_listen

    with pytest.raises(UsageError):
        parse_listen(bad)


@pytest.mark.parametrize("value, ok", [
    (">=TLSv1.2", True), (">=TLSv1.3", True), (">=TLSv1", False), ("", False),
    ("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1", True), ("!SSLv2:!SSLv3", False), ("!SSLv3, !TLSv1, !TLSv1.1", True),
])
def test_protocol_lists(value: str, ok: bool) -> None:
    from certkit.deploy.postfix import protocols_for, protocols_ok

    assert protocols_ok(value) is ok
    assert protocols_for("3.7.11") == ">=TLSv1.2" and protocols_for("3.5.6").startswith("!SSLv2")


def test_postfix_file_parameters_by_version(tmp_path: Path) -> None:
    from certkit.deploy.postfix import tls_file_settings
    from certkit.store import LivePaths

    live = LivePaths.under(tmp_path / "live")
    assert tls_file_settings("3.7.11", live) == {"smtpd_tls_chain_files": str(live.combined)}
    assert tls_file_settings("3.4.0", live) == {"smtpd_tls_chain_files": str(live.combined)}
    assert tls_file_settings("2.10.1", live) == {"smtpd_tls_cert_file": str(live.fullchain),
                                                 "smtpd_tls_key_file": str(live.key)}


def test_damaged_certificates_are_errors_not_tracebacks(issued: Store, tmp_path: Path) -> None:
    """An emptied cert.pem of the live version is exit 1 with the fix; a damaged old version
    only leaves CERTKIT_PREVIOUS_* empty (it used to raise IndexError in both cases)."""
    hook, out = env_dumper(tmp_path)
    assert certkit("issue", "--cn", NAME, "--san", "smtp.example.com")[0] == 0
    old = issued.version_paths(NAME, 1).cert
    old.chmod(0o644)
    old.write_bytes(b"")
    code, text = certkit("deploy", NAME, "--to", f"script:{hook}")
    assert code == 0, text
    assert records(out)[-1]["CERTKIT_PREVIOUS_CERT"] == ""
    live = issued.version_paths(NAME, 2).cert
    live.chmod(0o644)
    live.write_bytes(b"")
    code, text = certkit("deploy", NAME, "--to", f"script:{hook}", "--no-rollback")
    assert code == 1 and "no readable certificate" in text and "Traceback" not in text


def test_pfx_password_from_the_environment_does_not_reach_hooks(home: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """CERTKIT_PFX_PASSWORD is certkit's input; hooks get the password file only (docs/deploy/hooks.md)."""
    monkeypatch.setenv("CERTKIT_PFX_PASSWORD", "env-secret-123")
    hook, out = env_dumper(tmp_path)
    code, text = certkit("issue", "--cn", NAME, "--pfx", "--deploy", f"script:{hook}")
    assert code == 0, text
    env = records(out)[0]
    assert "CERTKIT_PFX_PASSWORD" not in env
    assert "env-secret-123" not in json.dumps(env)
    assert Path(env["CERTKIT_PFX_PASSWORD_FILE"]).read_text().strip() == "env-secret-123"


# ----- the runner -------------------------------------------------------------------

@pytest.mark.parametrize("hook", [False, True])
def test_runner_check_env_and_failures(tmp_path: Path, hook: bool) -> None:
    """Both runner paths: explicit env, stdin text, check=True failing with the output's tail, a missing program."""
    from certkit import runner
    from certkit.errors import HookError, OperationError

    result = runner.run(["/bin/sh", "-c", 'read line; echo "$line $ONLY_HERE"'], env={"ONLY_HERE": "x"},
                        input_text="from-stdin\n", hook=hook)
    assert result.ok and result.stdout.strip() == "from-stdin x"
    assert "ONLY_HERE" not in os.environ
    with pytest.raises(HookError, match=r"exited with status 3:\nboom"):
        runner.run(["/bin/sh", "-c", "echo boom >&2; exit 3"], check=True, what="thing", hook=hook)
    assert runner.run(["/bin/sh", "-c", "exit 3"], hook=hook).returncode == 3
    with pytest.raises(OperationError, match="cannot run"):
        runner.run([str(tmp_path / "missing")], hook=hook)
    bad_shebang = script(tmp_path, "bad.sh", "exit 0\n")
    bad_shebang.write_text("#!/nonexistent/interpreter\n")
    with pytest.raises(OperationError, match="interpreter on its #! line does not exist"):
        runner.run([str(bad_shebang)], hook=hook)
    no_shebang = script(tmp_path, "plain", "")
    no_shebang.write_bytes(b"\x00\x01binary")
    with pytest.raises(OperationError, match="no #! line"):
        runner.run([str(no_shebang)], hook=hook)
    with pytest.raises(HookError, match=r"did not finish within 0\.2 s"):
        runner.run(["/bin/sleep", "5"], timeout=0.2, hook=hook)


def test_unlistable_hook_folder_is_an_error_not_a_traceback(issued: Store,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A hook folder certkit may not list (root runs this suite, so the denial is simulated)."""
    from certkit.deploy import hooks

    folder = hooks.hook_dir(issued)
    folder.mkdir(parents=True)
    real_iterdir = Path.iterdir

    def denied(self: Path):  # type: ignore[no-untyped-def]
        if self == folder:
            raise PermissionError(13, "Permission denied")
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", denied)
    code, text = certkit("deploy", NAME)
    assert code == 1 and f"cannot list the hook folder {folder}: Permission denied" in text


def test_os_error_in_a_target_rolls_back(issued: Store, tmp_path: Path) -> None:
    """An OSError inside a target (unreadable config, full disk) is a failure that rolls back,
    not a traceback that leaves the new version live."""
    from certkit import runner
    from certkit.deploy.pipeline import deploy_live_version
    from certkit.errors import OperationError

    hook = script(tmp_path, "ok.sh", "exit 0\n")
    assert certkit("issue", "--cn", NAME, "--san", "smtp.example.com")[0] == 0  # version 2 live

    def disk_full_for_v2(argv: list[str], **kwargs: Any) -> runner.Result:
        if kwargs["env"]["CERTKIT_VERSION"] == "2":
            raise OSError(28, "No space left on device", "/var/lib/thing")
        return runner.run(argv, **kwargs)

    with pytest.raises(OperationError) as err:
        deploy_live_version(issued, NAME, targets=[parse_target(f"script:{hook}")], verify=[],
                            previous_version=1, run=disk_full_for_v2, echo=lambda _line: None,
                            just_activated=True)  # as issue/renew call it: version 2 was just made live
    assert "No space left on device (/var/lib/thing)" in str(err.value)
    assert "version 1 is live again" in str(err.value)
    assert issued.live_version(NAME) == 1


def test_targets_lists_and_remove_forgets(issued: Store, tmp_path: Path) -> None:
    """`certkit targets` shows what renew will run again; `deploy --remove` forgets one without editing TOML."""
    log = tmp_path / "ran.log"
    first = script(tmp_path, "first.sh", f"echo first >> {log}\n")
    second = script(tmp_path, "second.sh", f"echo second >> {log}\n")
    assert certkit("deploy", NAME, "--to", f"script:{first}", "--to", f"script:{second}")[0] == 0
    code, out = certkit("targets", NAME)
    assert code == 0 and f"target  script:{first}" in out and f"target  script:{second}" in out
    listed = json.loads(certkit("targets", NAME, "--json")[1])
    assert [t["target"] for t in listed["targets"]] == [f"script:{first}", f"script:{second}"]
    code, out = certkit("deploy", NAME, "--remove", f"script:{first}")
    assert code == 0 and "Forgot" in out
    assert [t.target for t in issued.load_settings(NAME).deploy] == [f"script:{second}"]
    log.unlink()
    assert certkit("renew", "--force")[0] == 0  # only the remembered target runs again
    assert log.read_text().split() == ["second"]
    code, out = certkit("deploy", NAME, "--remove", "postfix")
    assert code == 2 and f"remembers: script:{second}" in out
    code, out = certkit("deploy", NAME, "--remove", f"script:{second}", "--to", f"script:{first}")
    assert code == 2 and "does not deploy" in out


def test_rollback_redeploys_an_older_version_and_restores_on_failure(issued: Store, tmp_path: Path) -> None:
    log = tmp_path / "versions.log"
    hook = script(tmp_path, "record.sh", f'[ -e {tmp_path}/refuse-$CERTKIT_VERSION ] && exit 4\n'
                                         f'echo "$CERTKIT_VERSION" >> {log}\n')
    assert certkit("deploy", NAME, "--to", f"script:{hook}")[0] == 0
    assert certkit("issue", "--cn", NAME, "--san", "smtp.example.com")[0] == 0  # version 2, deployed
    code, out = certkit("rollback", NAME)
    assert code == 0, out
    assert issued.live_version(NAME) == 1 and log.read_text().split() == ["1", "2", "1"]
    code, out = certkit("rollback", NAME, "--to", "2")
    assert code == 0 and issued.live_version(NAME) == 2
    (tmp_path / "refuse-1").touch()  # the older version's deploy fails: version 2 comes back
    code, out = certkit("rollback", NAME)
    assert code == 1 and "version 2 is live again" in out
    assert issued.live_version(NAME) == 2 and issued.unfinished(NAME) is None
    assert certkit("rollback", NAME, "--to", "9")[0] == 2


def test_prune_keeps_the_newest_the_live_and_the_rollback_target(issued: Store) -> None:
    for _ in range(4):
        assert certkit("issue", "--cn", NAME, "--san", "smtp.example.com")[0] == 0
    assert issued.versions(NAME) == [1, 2, 3, 4, 5]
    with issued.lock():
        issued.activate(NAME, 3)
    code, out = certkit("prune", "--keep", "1")
    assert code == 0, out
    assert issued.versions(NAME) == [2, 3, 5]  # newest, live, and the one a rollback would go to
    assert issued.live_paths(NAME).cert.read_bytes() == issued.version_paths(NAME, 3).cert.read_bytes()
    assert certkit("prune", "nosuch.example")[0] == 2


def test_delete_refuses_while_deployed_and_says_what_it_leaves(issued: Store, tmp_path: Path) -> None:
    hook = script(tmp_path, "ok.sh", "exit 0\n")
    assert certkit("deploy", NAME, "--to", f"script:{hook}")[0] == 0
    code, out = certkit("delete", NAME)
    assert code == 2 and f"still deployed to script:{hook}" in out
    assert issued.exists(NAME)
    code, out = certkit("delete", NAME, "--force")
    assert code == 0 and "not revoked" in out and "still point at" in out
    assert not issued.exists(NAME) and not issued.lineage_dir(NAME).exists()
    assert certkit("delete", NAME)[0] == 2  # no such lineage
