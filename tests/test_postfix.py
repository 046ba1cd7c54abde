"""`certkit deploy --to postfix` against a real private Postfix + Dovecot SASL.

openssl, swaks and Python's smtplib confirm what is served; nothing here
trusts certkit's own check module except the --verify tests.
"""

from __future__ import annotations

import hashlib
import json
import smtplib
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from certkit.cli import cli
from tests.servers.postfix import PostfixInstance

pytestmark = pytest.mark.postfix

NAME = "mail.certkit.test"


def certkit(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def live_sha256(home: Path) -> str:
    from certkit import x509 as cx

    pem = (home / "lineages" / NAME / "live" / "cert.pem").read_bytes()
    return cx.sha256_fingerprint(cx.load_chain(pem)[0])


def _unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def served_sha256(port: int) -> str:
    """SHA-256 of the certificate served after STARTTLS (Python's smtplib)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        smtp.starttls(context=_unverified())
        der = smtp.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
    return hashlib.sha256(der).hexdigest()


def openssl_sha256(port: int, *extra: str) -> tuple[int, str]:
    """(status, sha256) from `openssl s_client -starttls smtp` (an independent TLS stack)."""
    proc = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-starttls", "smtp", *extra],
        input="", capture_output=True, text=True, timeout=20,
    )
    if proc.returncode != 0 or "BEGIN CERTIFICATE" not in proc.stdout:
        return proc.returncode or 1, ""
    pem = proc.stdout[proc.stdout.index("-----BEGIN CERTIFICATE"):]
    pem = pem[: pem.index("-----END CERTIFICATE-----") + 25]
    der = ssl.PEM_cert_to_DER_cert(pem)
    return 0, hashlib.sha256(der).hexdigest()


def swaks(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--helo", "client.test",
                           "--from", "alice@mail.certkit.test", "--timeout", "10", *args],
                          capture_output=True, text=True, timeout=60)


def deploy_args(pf: PostfixInstance, *extra: str) -> list[str]:
    return ["deploy", NAME, "--to", "postfix", "--postfix-config-dir", str(pf.config_dir),
            "--setup-submission", "--submission-listen", pf.submission_listen, *extra]


@pytest.fixture
def issued(home: Path) -> Path:
    code, out = certkit("issue", "--cn", NAME)
    assert code == 0, out
    return home


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_deploy_serves_lineage_with_submission_policy(postfix: PostfixInstance, issued: Path) -> None:
    # Debian ships smtpd_tls_cert_file/key_file (snakeoil); smtpd_tls_chain_files must win over them.
    other = issued / "other"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=snakeoil",
                    "-keyout", str(other) + ".key", "-out", str(other) + ".crt", "-days", "2"],
                   check=True, capture_output=True)
    postfix.postconf("-e", f"smtpd_tls_cert_file={other}.crt", f"smtpd_tls_key_file={other}.key")

    code, out = certkit(*deploy_args(postfix))
    assert code == 0, out + postfix.log()
    assert "reloaded" in out
    want = live_sha256(issued)
    for port in (postfix.smtp_port, postfix.submission_port):
        assert served_sha256(port) == want, postfix.log()
        assert openssl_sha256(port) == (0, want)

    main = postfix.postconf("-n")
    assert f"smtpd_tls_chain_files = {issued}/lineages/{NAME}/live/combined.pem" in main
    assert "smtpd_tls_security_level = may" in main
    assert "smtpd_tls_protocols = >=TLSv1.2" in main
    assert "smtpd_sasl_type = dovecot" in main  # SASL settings kept

    # AUTH is not offered before TLS on submission, and plaintext MAIL is refused (encrypt level).
    with smtplib.SMTP("127.0.0.1", postfix.submission_port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        assert not smtp.has_extn("auth")
        assert smtp.has_extn("starttls")
        code_mail, _ = smtp.mail("alice@mail.certkit.test")
        assert code_mail == 530
    # After TLS: AUTH offered; relay refused without AUTH, accepted with it.
    no_auth = swaks(postfix.submission_port, "-tls", "--to", "someone@example.com", "--quit-after", "RCPT")
    assert "554 5.7.1" in no_auth.stdout or "Relay access denied" in no_auth.stdout, no_auth.stdout
    assert "250-AUTH PLAIN LOGIN" in no_auth.stdout
    user, password = "alice", postfix.users["alice"]
    with_auth = swaks(postfix.submission_port, "-tls", "--to", "someone@example.com", "--auth", "PLAIN",
                      "--auth-user", user, "--auth-password", password, "--quit-after", "RCPT")
    assert with_auth.returncode == 0, with_auth.stdout + postfix.log()
    assert "<~  235 " in with_auth.stdout and "250 2.1.5 Ok" in with_auth.stdout
    # Anonymous suites are gone: a client offering only aNULL gets no handshake.
    for port in (postfix.smtp_port, postfix.submission_port):
        anon = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-starttls", "smtp",
                               "-tls1_2", "-cipher", "aNULL:@SECLEVEL=0"],
                              input="", capture_output=True, text=True, timeout=20)
        assert "Cipher is (NONE)" in anon.stdout or anon.returncode != 0, anon.stdout
        assert "ADH-" not in anon.stdout
    # TLS 1.1 is refused on both services (Python client allowed to offer it).
    for port in (postfix.smtp_port, postfix.submission_port):
        legacy = _unverified()
        legacy.set_ciphers("DEFAULT:@SECLEVEL=0")
        legacy.minimum_version = ssl.TLSVersion.TLSv1_1
        legacy.maximum_version = ssl.TLSVersion.TLSv1_1
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.ehlo("client.test")
            with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
                smtp.starttls(context=legacy)


def test_redeploy_is_idempotent(postfix: PostfixInstance, issued: Path) -> None:
    assert certkit(*deploy_args(postfix))[0] == 0
    before = {f: (postfix.config_dir / f).read_bytes() for f in ("main.cf", "master.cf")}
    code, out = certkit(*deploy_args(postfix))
    assert code == 0, out
    assert "already has certkit's submission policy" in out
    assert "main.cf smtpd_" not in out
    assert {f: (postfix.config_dir / f).read_bytes() for f in ("main.cf", "master.cf")} == before
    # The original files were backed up before the first change.
    backup = issued / "lineages" / NAME / "backups" / "postfix"
    originals = list(backup.glob("*/original/main.cf"))
    assert len(originals) == 1 and b"\nsmtpd_tls_chain_files =" not in originals[0].read_bytes()


def test_reissue_is_served_without_manual_steps(postfix: PostfixInstance, issued: Path) -> None:
    assert certkit(*deploy_args(postfix))[0] == 0
    first = live_sha256(issued)
    code, out = certkit("issue", "--cn", NAME)  # remembered target runs again
    assert code == 0, out
    second = live_sha256(issued)
    assert second != first
    assert "Deploying" in out and "reloaded" in out
    for port in (postfix.smtp_port, postfix.submission_port):
        assert served_sha256(port) == second, postfix.log()
    code, out = certkit("renew", "--force", NAME)  # the timer's path: same remembered deploy
    assert code == 0, out
    third = live_sha256(issued)
    assert third != second
    assert served_sha256(postfix.submission_port) == third, postfix.log()


def test_failing_hook_restores_previous_certificate(postfix: PostfixInstance, issued: Path, tmp_path: Path) -> None:
    assert certkit(*deploy_args(postfix))[0] == 0
    first = live_sha256(issued)
    main_before = (postfix.config_dir / "main.cf").read_bytes()
    hook = tmp_path / "fails.sh"
    hook.write_text("#!/bin/sh\n[ \"$CERTKIT_VERSION\" = 1 ] && exit 0\necho 'cannot restart widget' >&2\nexit 3\n")
    hook.chmod(0o755)
    code, out = certkit("deploy", NAME, "--to", f"script:{hook}")  # remembers the hook (version 1 passes it)
    assert code == 0, out
    code, out = certkit("issue", "--cn", NAME)  # version 2: postfix deploys it, then the hook fails
    assert code == 1, out
    assert "cannot restart widget" in out
    assert "version 1 is live again" in out
    assert live_sha256(issued) == first
    for port in (postfix.smtp_port, postfix.submission_port):
        assert served_sha256(port) == first, postfix.log()
    assert (postfix.config_dir / "main.cf").read_bytes() == main_before


def test_failing_verification_restores_previous_certificate(
        postfix: PostfixInstance, issued: Path) -> None:
    good = f"smtp://127.0.0.1:{postfix.smtp_port}"
    code, out = certkit(*deploy_args(postfix, "--verify", good,
                                     "--verify", f"submission://127.0.0.1:{postfix.submission_port}"))
    assert code == 0, out + postfix.log()
    assert "ok:" in out
    record = json.loads(certkit("show", NAME, "--json")[1])
    assert record["last_check"]["ok"] is True
    assert record["verify"] == [good, f"submission://127.0.0.1:{postfix.submission_port}"]
    first = live_sha256(issued)

    # Version 2 reaches Postfix, but one verification fails: version 1 comes back everywhere.
    from tests.servers.net import free_port

    dead = f"smtp://127.0.0.1:{free_port()}"
    code, out = certkit("issue", "--cn", NAME, "--verify", dead)
    assert code == 1, out
    assert dead in out and "version 1 is live again" in out
    assert live_sha256(issued) == first
    for port in (postfix.smtp_port, postfix.submission_port):
        assert served_sha256(port) == first, postfix.log()
    record = json.loads(certkit("show", NAME, "--json")[1])
    assert record["last_check"]["ok"] is False
    assert dead not in record["verify"]  # a failed deploy remembers nothing


def test_every_command_carries_the_config_dir_and_a_stopped_postfix_is_started(
        postfix: PostfixInstance, issued: Path) -> None:
    from certkit import runner
    from certkit.deploy.pipeline import deploy_live_version
    from certkit.settings import DeployTarget
    from certkit.store import Store

    subprocess.run(["postfix", "-c", str(postfix.config_dir), "stop"], check=True, capture_output=True)
    for _ in range(100):  # `postfix stop` signals master; wait until it is gone
        if subprocess.run(["postfix", "-c", str(postfix.config_dir), "status"], capture_output=True).returncode:
            break
        time.sleep(0.05)
    seen: list[list[str]] = []

    def recording(argv: list[str], **kwargs: object) -> runner.Result:
        seen.append(list(argv))
        return runner.run(argv, **kwargs)  # type: ignore[arg-type]

    lines: list[str] = []
    target = DeployTarget("postfix", {"config_dir": str(postfix.config_dir), "setup_submission": True,
                                      "submission_listen": postfix.submission_listen})
    deploy_live_version(Store(issued), NAME, targets=[target], verify=[], previous_version=None,
                        run=recording, echo=lines.append)
    assert any("started" in line for line in lines), lines
    # Only the instance check reads the default main.cf (is DIR declared there?); everything else is -c DIR.
    declared = [a for a in seen if a[1:3] != ["-c", str(postfix.config_dir)]]
    assert all(Path(a[0]).name == "postconf" and ("-d" in a or "-h" in a) for a in declared), declared
    assert len(seen) - len(declared) >= 8, seen
    tools = [Path(argv[0]).name for argv in seen]
    assert tools.index("postfix") > tools.index("postconf")  # check/start only after the edits
    assert [a[3] for a in seen if Path(a[0]).name == "postfix"] == ["check", "status", "start"]
    assert served_sha256(postfix.submission_port) == live_sha256(issued), postfix.log()


def test_missing_sasl_backend_is_explained(postfix: PostfixInstance, issued: Path) -> None:
    postfix.postconf("-X", "smtpd_sasl_type", "smtpd_sasl_path")
    code, out = certkit(*deploy_args(postfix))
    assert code == 0, out
    assert "no SASL backend" in out and "smtpd_sasl_type = dovecot" in out and "unix_listener" in out
    postfix.reset()  # a submission smtpd without SASL would die on the next connection


def test_failed_postfix_step_puts_config_back(postfix: PostfixInstance, issued: Path) -> None:
    """`postfix check` fails after certkit edited main.cf/master.cf: both files come back, v1 is served.

    The fault is injected by the runner (`postfix check` answers 1 while version 2 is live);
    everything else - postconf edits, restore, reload, what is served - is the real Postfix.
    """
    from certkit import runner
    from certkit.deploy.pipeline import deploy_live_version
    from certkit.errors import HookError
    from certkit.settings import DeployTarget
    from certkit.store import Store

    assert certkit(*deploy_args(postfix))[0] == 0
    first = live_sha256(issued)
    before = {f: (postfix.config_dir / f).read_bytes() for f in ("main.cf", "master.cf")}
    store = Store(issued)
    code, out = certkit("issue", "--cn", NAME)  # version 2, deployed as remembered
    assert code == 0, out
    with store.lock():
        store.activate(NAME, 2)

    def check_fails_for_v2(argv: list[str], **kwargs: object) -> runner.Result:
        if argv[-1] == "check" and store.live_version(NAME) == 2:
            return runner.Result(tuple(argv), 1, "", "postfix/postfix-script: fatal: injected failure")
        return runner.run(argv, **kwargs)  # type: ignore[arg-type]

    from tests.servers.net import free_port

    other_port = free_port()
    target = DeployTarget("postfix", {"config_dir": str(postfix.config_dir), "setup_submission": True,
                                      "submission_listen": f"127.0.0.1:{other_port}"})
    lines: list[str] = []
    with pytest.raises(HookError) as err:
        deploy_live_version(store, NAME, targets=[target], verify=[], previous_version=1,
                            run=check_fails_for_v2, echo=lines.append, just_activated=True)
    assert "injected failure" in str(err.value)
    assert "version 1 is live again; postfix: configuration restored and reloaded" in str(err.value)
    assert store.live_version(NAME) == 1
    assert {f: (postfix.config_dir / f).read_bytes() for f in ("main.cf", "master.cf")} == before
    assert served_sha256(postfix.submission_port) == first, postfix.log()
    with pytest.raises(OSError):
        smtplib.SMTP("127.0.0.1", other_port, timeout=2)  # the half-made service is gone again


def test_listen_name_taken_by_another_program_changes_nothing(postfix: PostfixInstance, issued: Path) -> None:
    """The docs promise exit 2 and no change; main.cf used to be edited before the refusal."""
    from tests.servers.net import free_port

    listen = f"127.0.0.1:{free_port()}"
    postfix.postconf("-M", f"{listen}/inet={listen} inet n - n - - qmqpd")
    before = {f: (postfix.config_dir / f).read_bytes() for f in ("main.cf", "master.cf")}
    code, out = certkit("deploy", NAME, "--to", "postfix", "--postfix-config-dir", str(postfix.config_dir),
                        "--setup-submission", "--submission-listen", listen)
    assert code == 2, out
    assert "runs qmqpd, not smtpd" in out
    assert {f: (postfix.config_dir / f).read_bytes() for f in ("main.cf", "master.cf")} == before
    postfix.reset()


def test_second_lineage_on_the_same_postfix_is_called_out(postfix: PostfixInstance, issued: Path) -> None:
    """Postfix serves one certificate: taking it over from another lineage says so (that lineage's
    renewal would switch it back); re-deploying the same lineage says nothing."""
    assert certkit(*deploy_args(postfix))[0] == 0
    code, out = certkit("deploy", NAME, "--to", "postfix", "--postfix-config-dir", str(postfix.config_dir))
    assert code == 0 and "warning: postfix served lineage" not in out
    assert certkit("issue", "--cn", "other.certkit.test")[0] == 0
    code, out = certkit("deploy", "other.certkit.test", "--to", "postfix",
                        "--postfix-config-dir", str(postfix.config_dir))
    assert code == 0, out
    assert f"warning: postfix served lineage {NAME}; it now serves other.certkit.test" in out
    postfix.reset()
