"""`certkit issue`, `selfssl`, `export`, `list`, `show` through the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from certkit.cli import cli

RECORD_FIELDS = {"name", "domains", "source", "key_type", "serial", "not_before", "not_after", "renew_after",
                 "sha256", "paths", "deploy", "last_check"}


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def openssl(*args: str, input_bytes: bytes | None = None) -> str:
    out = subprocess.run(["openssl", *args], input=input_bytes, capture_output=True)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode(errors="replace")


def test_issue_default_self_signed(home: Path) -> None:
    code, out, err = run("issue", "--cn", "win.block25.or.kr")
    assert code == 0, err
    assert "Created a new self-signed certificate for:" in out
    assert "win.block25.or.kr" in out and "RSA 2048" in out
    live = home / "lineages" / "win.block25.or.kr" / "live"
    assert f"{live}/privkey.pem" in out and f"{live}/combined.pem" in out
    assert "certkit deploy win.block25.or.kr" in out  # the next command
    text = openssl("x509", "-noout", "-text", "-in", str(live / "cert.pem"))
    assert "DNS:win.block25.or.kr" in text and "(2048 bit)" in text


def test_issue_json_record_and_show_list(home: Path) -> None:
    code, out, _ = run("issue", "--cn", "mail.example.com", "--san", "smtp.example.com", "--san", "127.0.0.1",
                       "--key", "ec256", "--days", "90", "--json")
    assert code == 0
    rec = json.loads(out)
    assert RECORD_FIELDS <= rec.keys()
    assert rec["domains"] == ["mail.example.com", "smtp.example.com", "127.0.0.1"]
    assert rec["source"] == "self-signed" and rec["key_type"] == "ec256"
    assert rec["days_left"] == 90
    assert rec["paths"]["pfx"] is None
    fingerprint = openssl("x509", "-noout", "-fingerprint", "-sha256", "-in", rec["paths"]["cert"])
    assert fingerprint.split("=", 1)[1].strip().replace(":", "").lower() == rec["sha256"]
    assert int(openssl("x509", "-noout", "-serial", "-in", rec["paths"]["cert"]).split("=")[1], 16) == int(
        rec["serial"], 16)
    code, out, _ = run("show", "mail.example.com", "--json")
    assert json.loads(out)["sha256"] == rec["sha256"]
    code, out, _ = run("list", "--json")
    assert [r["name"] for r in json.loads(out)] == ["mail.example.com"]
    code, out, _ = run("list")
    header, row = out.splitlines()
    assert header.startswith("LINEAGE") and "RENEW AFTER" in header
    assert row.split()[:3] == ["mail.example.com", rec["not_after"][:10], str(rec["days_left"])]
    code, out, _ = run("show", "mail.example.com")
    assert rec["sha256"] in out and "serial:" in out


def test_reissue_adds_a_version(home: Path) -> None:
    run("issue", "--cn", "mail.example.com")
    first = json.loads(run("show", "mail.example.com", "--json")[1])
    code, out, _ = run("issue", "--cn", "mail.example.com")
    assert code == 0 and "Issued version 2" in out
    second = json.loads(run("show", "mail.example.com", "--json")[1])
    assert second["versions"] == [1, 2] and second["version"] == 2
    assert second["serial"] != first["serial"]
    assert second["paths"]["cert"] == first["paths"]["cert"]  # stable live paths


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["issue", "--cn", "bad name.example.com"], "spaces"),
        (["issue", "--cn", "mail.example.com", "--key", "rsa1024"], "--allow-weak"),
        (["issue", "--cn", "mail.example.com", "--key", "dsa"], "unknown key type"),
        (["issue", "--cn", "mail.example.com", "--email", "a@b"], "--email needs --acme"),
        (["issue", "--cn", "mail.example.com", "--email", "a@b", "--profile", "x"], "--email, --profile need --acme"),
        (["issue", "--cn", "mail.example.com", "--acme", "--self-signed"], "exclude"),
        (["issue", "--cn", "mail.*.example.com"], "left-most"),
        (["issue", "--cn", "x.example.com", "--name", "../evil"], "invalid lineage name"),
        (["issue", "--cn", "x.example.com", "--pfx", "--pfx-password-file", "/nonexistent/pw"], "cannot read"),
        (["show", "nothing.example.com"], "no lineage named"),
        (["export", "nothing.example.com", "--format", "pem"], "no lineage named"),
        (["selfssl", "/T", "/N:CN=win.block25.or.kr", "/K:1024", "/V:365"], "/K:2048"),
        (["selfssl", "/N:win.block25.or.kr"], "no CN="),
        (["selfssl", "/X:1"], "unknown SelfSSL switch"),
        (["selfssl", "/N:CN=a.example.com", "/V:abc"], "not a number"),
    ],
)
def test_bad_input_exits_2_with_reason(home: Path, args: list[str], needle: str) -> None:
    code, out, err = run(*args)
    assert code == 2
    assert needle in err
    assert err.startswith("error: ")
    assert "Traceback" not in err + out
    assert not (home / "lineages").exists() or not any((home / "lineages").iterdir())


def test_non_utf8_password_file_is_bad_input(home: Path, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_bytes(b"\xff\xfe\x00hunter2")
    code, out, err = run("issue", "--cn", "mail.example.com", "--pfx", "--pfx-password-file", str(pw))
    assert code == 2 and "is not text (UTF-8 expected)" in err and "Traceback" not in out + err
    assert "hunter2" not in out + err


def test_days_over_398_warns(home: Path) -> None:
    code, _, err = run("issue", "--cn", "mail.example.com", "--days", "825")
    assert code == 0 and "longer than 398" in err


def test_selfssl_guide_line_with_modern_key(home: Path, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors"
    code, out, err = run("selfssl", "/t", "/n:CN=win.block25.or.kr", "/K:2048", "/V:365", "/S:1", "/P:443", "/Q",
                         "--trust-store-dir", str(anchors))
    assert code == 0, err
    assert "win.block25.or.kr" in out
    assert "/S and /P" in err  # reported as ignored off Windows
    assert (anchors / "certkit-win.block25.or.kr.crt").is_file()  # /T
    rec = json.loads(run("show", "win.block25.or.kr", "--json")[1])
    assert rec["key_type"] == "rsa2048" and rec["days_left"] == 365


def test_selfssl_allow_weak_and_trust_dir(home: Path, tmp_path: Path) -> None:
    code, out, err = run("selfssl", "/N:CN=old.block25.or.kr", "/K:1024", "/V:30", "--allow-weak")
    assert code == 0, err
    assert json.loads(run("show", "old.block25.or.kr", "--json")[1])["key_type"] == "rsa1024"
    anchors = tmp_path / "anchors"
    code, out, err = run("issue", "--cn", "trusted.example.com", "--trust", "--trust-store-dir", str(anchors))
    assert code == 0, err
    anchor = anchors / "certkit-trusted.example.com.crt"
    assert anchor.read_bytes() == (home / "lineages/trusted.example.com/live/cert.pem").read_bytes()
    assert f"trusted: {anchor}" in out


def test_export_pem_der(home: Path, tmp_path: Path) -> None:
    run("issue", "--cn", "mail.example.com")
    out_dir = tmp_path / "pem"
    code, out, _ = run("export", "mail.example.com", "--format", "pem", "--out", str(out_dir))
    assert code == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"]
    assert stat.S_IMODE(os.stat(out_dir / "privkey.pem").st_mode) == 0o600
    der = tmp_path / "c.der"
    code, out, _ = run("export", "mail.example.com", "--format", "der", "--out", str(der))
    assert code == 0
    assert "mail.example.com" in openssl("x509", "-inform", "DER", "-noout", "-subject", "-in", str(der))


@pytest.mark.parametrize("encryption", ["legacy", "modern"])
def test_export_pfx_read_back_by_openssl(home: Path, tmp_path: Path, encryption: str) -> None:
    run("issue", "--cn", "mail.example.com")
    pw_file = tmp_path / "pw"
    pw_file.write_text("s3cret-Pässword\n")
    pfx = tmp_path / "m.pfx"
    code, out, err = run("export", "mail.example.com", "--format", "pfx", "--out", str(pfx),
                         "--pfx-encryption", encryption, "--pfx-password-file", str(pw_file),
                         "--friendly-name", "Mail 2026")
    assert code == 0, err
    assert "s3cret" not in out + err
    assert stat.S_IMODE(os.stat(pfx).st_mode) == 0o600
    env = {**os.environ, "PW": "s3cret-Pässword"}
    args = ["openssl", "pkcs12", "-in", str(pfx), "-info", "-noout", "-passin", "env:PW"]
    if encryption == "legacy":
        args.append("-legacy")  # OpenSSL 3 needs the legacy provider for 3DES
    info = subprocess.run(args, capture_output=True, text=True, env=env)
    assert info.returncode == 0, info.stderr
    if encryption == "legacy":
        assert "pbeWithSHA1And3-KeyTripleDES-CBC" in info.stderr
        assert "MAC: sha1" in info.stderr
    else:
        assert "PBES2, PBKDF2, AES-256-CBC" in info.stderr
        assert "MAC: sha256" in info.stderr
    dump = subprocess.run(["openssl", "pkcs12", "-in", str(pfx), "-nodes", "-passin", "env:PW",
                           *(["-legacy"] if encryption == "legacy" else [])],
                          capture_output=True, text=True, env=env)
    assert "friendlyName: Mail 2026" in dump.stdout
    assert "PRIVATE KEY" in dump.stdout


def test_export_pfx_generated_password(home: Path, tmp_path: Path) -> None:
    run("issue", "--cn", "mail.example.com")
    pfx = tmp_path / "m.pfx"
    code, out, _ = run("export", "mail.example.com", "--format", "pfx", "--out", str(pfx))
    assert code == 0
    pw_file = Path(str(pfx) + ".password")
    password = pw_file.read_text().strip()
    assert stat.S_IMODE(os.stat(pw_file).st_mode) == 0o600
    assert password not in out  # only the path is printed
    assert str(pw_file) in out
    env = {**os.environ, "PW": password}
    info = subprocess.run(["openssl", "pkcs12", "-in", str(pfx), "-noout", "-passin", "env:PW"],
                          capture_output=True, text=True, env=env)
    assert info.returncode == 0, info.stderr


def test_issue_with_pfx_keeps_password_private(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTKIT_PFX_PASSWORD", "env-secret-1")
    code, out, err = run("issue", "--cn", "mail.example.com", "--pfx", "--pfx-encryption", "legacy", "--json")
    assert code == 0, err
    rec = json.loads(out)
    assert rec["paths"]["pfx"].endswith("live/cert.pfx")
    assert "env-secret-1" not in out + err
    info = subprocess.run(["openssl", "pkcs12", "-in", rec["paths"]["pfx"], "-noout", "-legacy",
                           "-passin", "env:CERTKIT_PFX_PASSWORD"], capture_output=True, text=True)
    assert info.returncode == 0, info.stderr


def test_version_and_help_stay_light() -> None:
    code = (
        "import sys\n"
        "from certkit.cli import cli\n"
        "for argv in (['--version'], ['--help'], ['issue', '--help']):\n"
        "    try:\n"
        "        cli.main(argv, prog_name='certkit', standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('acme', 'josepy', 'requests', 'aiosmtpd') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out, out


@pytest.mark.integration  # a second or more of real processes
@pytest.mark.skipif(shutil.which("certkit") is None, reason="certkit is not installed (pip install -e .)")
def test_installed_command_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "CERTKIT_HOME": str(tmp_path / "h")}
    version = subprocess.run(["certkit", "--version"], capture_output=True, text=True, env=env)
    assert version.returncode == 0 and "certkit" in version.stdout
    issued = subprocess.run(["certkit", "issue", "--cn", "win.block25.or.kr"], capture_output=True, text=True,
                            env=env)
    assert issued.returncode == 0, issued.stderr
    refused = subprocess.run(["certkit", "selfssl", "/T", "/N:CN=win.block25.or.kr", "/K:1024", "/V:365"],
                             capture_output=True, text=True, env=env)
    assert refused.returncode == 2 and "/K:2048" in refused.stderr and "Traceback" not in refused.stderr
    module = subprocess.run([sys.executable, "-m", "certkit", "list"], capture_output=True, text=True, env=env)
    assert module.returncode == 0 and "win.block25.or.kr" in module.stdout


def test_unwritable_output_is_a_clear_failure(home: Path, tmp_path: Path) -> None:
    run("issue", "--cn", "mail.example.com")
    code, out, err = run("export", "mail.example.com", "--format", "der", "--out", str(tmp_path / "no" / "x.der"))
    assert code == 1
    assert err.startswith("error: cannot write ") and "No such file or directory" in err
    assert "Traceback" not in out + err


def test_damaged_lineage_does_not_hide_the_others(home: Path) -> None:
    run("issue", "--cn", "good.example.com")
    run("issue", "--cn", "bad.example.com")
    (home / "lineages" / "bad.example.com" / "settings.toml").write_text("name = = broken\n")
    code, out, err = run("list")
    assert code == 1
    assert re.search(r"^bad\.example\.com +error: cannot read", out, re.M)
    assert re.search(r"^good\.example\.com +20\d\d-\d\d-\d\d +\d+ ", out, re.M)
    code, out, _ = run("list", "--json")
    assert code == 1
    assert [("error" in r, r["name"]) for r in json.loads(out)] == [(True, "bad.example.com"),
                                                                     (False, "good.example.com")]
    (home / "lineages" / "good.example.com" / "versions" / "0001" / "cert.pem").write_text("junk\n")
    code, out, err = run("show", "good.example.com")
    assert code == 1 and "cannot read the live certificate" in err and "renew --force" in err


@pytest.mark.parametrize(("cn", "lineage", "host"), [
    ("mail.example.com", "mail.example.com", "mail.example.com"),
    ("2001:db8::5", "ipv6-2001-db8--5", "2001:db8::5"),
    ("::1", "ipv6---1", "::1"),
    ("*.wild.example", "wildcard.wild.example", "mail.wild.example"),
    ("192.0.2.7", "192.0.2.7", "192.0.2.7"),
])
def test_next_hints_are_commands_that_parse(home: Path, cn: str, lineage: str, host: str) -> None:
    """Every `Next:` line is a command certkit accepts: IPv6 URLs bracketed, a wildcard's example host."""
    import shlex

    from certkit.check import parse_target
    from certkit.store import Store

    code, out, err = run("--home", str(home), "issue", "--cn", cn)
    assert code == 0, err
    hints = [line.split("#")[0].strip() for line in out.splitlines()[out.splitlines().index("Next:") + 1:]]
    assert len(hints) == 3 and all(h.startswith("certkit ") for h in hints)
    check = shlex.split(hints[2])
    assert check[1] == "check"
    target = parse_target(check[2])
    assert (target.host, target.port, target.mode) == (host, 587, "submission")
    assert check[3:] == ["--expect", lineage] and Store(home).exists(lineage)
    export = shlex.split(hints[1])
    assert export[2] == lineage and Store(home).exists(export[2])


def test_every_acme_setting_is_an_issue_option() -> None:
    """AcmeSettings is the one list of ACME options: each field is an `issue` parameter of the same name."""
    import dataclasses

    from certkit.cli.issue import issue_command
    from certkit.settings import AcmeSettings

    params = {p.name for p in issue_command.params}
    missing = [f.name for f in dataclasses.fields(AcmeSettings) if f.name not in params]
    assert not missing, f"AcmeSettings fields without an `issue` option: {missing}"


@pytest.mark.parametrize("where", ["before", "after", "after="])
def test_home_is_accepted_before_or_after_the_subcommand(tmp_path: Path, where: str) -> None:
    """The contract's global options work on either side of the subcommand (certbot users put them last)."""
    home = tmp_path / "home"
    args = {"before": ["--home", str(home), "issue", "--cn", "g.example"],
            "after": ["issue", "--cn", "g.example", "--home", str(home)],
            "after=": ["issue", "--cn", "g.example", f"--home={home}"]}[where]
    code, out, err = run(*args)
    assert code == 0, err
    assert (home / "lineages" / "g.example" / "settings.toml").is_file()
    code, out, err = run("list", "--home", str(home))
    assert code == 0 and out.splitlines()[1].startswith("g.example"), out + err


def test_hoisting_leaves_option_values_and_the_double_dash_alone() -> None:
    from certkit.cli import hoist_global_options

    assert hoist_global_options(["check", "smtp://h", "--home", "D"]) == ["--home", "D", "check", "smtp://h"]
    assert hoist_global_options(["deploy", "n", "--", "--home", "D"]) == ["deploy", "n", "--", "--home", "D"]
    assert hoist_global_options(["list", "--home"]) == ["list", "--home"]  # no value: click reports it


@pytest.mark.parametrize(("again", "message"), [
    (["--cn", "mail.example.com"], "drops smtp.example.com"),  # a forgotten --san
    (["--cn", "mail.example.com", "--san", "smtp.example.com", "--key", "ec256"], "key rsa2048 -> ec256"),
    (["--cn", "smtp.example.com", "--san", "mail.example.com", "--name", "mail.example.com"], "the CN changes"),
])
def test_reissue_never_silently_changes_names_or_key(home: Path, again: list[str], message: str) -> None:
    assert run("--home", str(home), "issue", "--cn", "mail.example.com", "--san", "smtp.example.com")[0] == 0
    code, out, err = run("--home", str(home), "issue", *again)
    assert code == 2 and message in err and "--expand" in err, err
    assert sorted(p.name for p in (home / "lineages" / "mail.example.com" / "versions").iterdir()) == ["0001"]
    code, out, err = run("--home", str(home), "issue", *again, "--expand")
    assert code == 0, err


def test_wildcard_lineage_is_not_taken_over_by_a_literal_name(home: Path) -> None:
    assert run("--home", str(home), "issue", "--cn", "*.example.org")[0] == 0
    code, _, err = run("--home", str(home), "issue", "--cn", "wildcard.example.org")
    assert code == 2 and "names *.example.org -> wildcard.example.org" in err, err


def test_selfssl_without_arguments_is_usage_not_a_localhost_certificate(home: Path) -> None:
    code, _, err = run("--home", str(home), "selfssl")
    assert code == 2 and "/N:CN=host" in err
    assert not (home / "lineages").exists()


def test_export_format_is_case_insensitive_and_p12_means_pfx(home: Path, tmp_path: Path) -> None:
    assert run("--home", str(home), "issue", "--cn", "p12.example")[0] == 0
    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    code, _, err = run("--home", str(home), "export", "p12.example", "--format", "P12", "--out",
                       str(tmp_path / "x.pfx"), "--pfx-password-file", str(password))
    assert code == 0, err
    info = subprocess.run(["openssl", "pkcs12", "-in", str(tmp_path / "x.pfx"), "-nokeys", "-passin",
                           f"file:{password}"], capture_output=True, text=True)
    assert info.returncode == 0 and "BEGIN CERTIFICATE" in info.stdout, info.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (["issue", "--nosuch"], "error: No such option '--nosuch' - see `certkit issue --help`"),
    (["export", "x", "--format", "zip"], "error: Invalid value for '--format'"),
    (["deploy"], "error: Missing argument 'LINEAGE' - see `certkit deploy --help`"),
])
def test_usage_errors_are_one_error_line(args: list[str], needle: str) -> None:
    """docs/cli.md promises `error: <what> - <fix>` for every usage error, click's own included."""
    proc = subprocess.run([sys.executable, "-m", "certkit", *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and needle in proc.stderr, proc.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_and_lineage_names(home: Path, shell: str) -> None:
    code, out, err = run("completion", shell)
    assert code == 0 and "_CERTKIT_COMPLETE" in out and "install:" in err
    assert run("--home", str(home), "issue", "--cn", "comp.example")[0] == 0
    env = dict(os.environ, CERTKIT_HOME=str(home), COMP_WORDS="certkit show co", COMP_CWORD="2",
               _CERTKIT_COMPLETE="bash_complete")
    proc = subprocess.run([sys.executable, "-m", "certkit"], env=env, capture_output=True, text=True)
    assert "plain,comp.example" in proc.stdout.split(), proc.stdout + proc.stderr  # bash_complete: TYPE,VALUE
