"""`certkit smtpd` as a real subprocess: submission policy, smtps, reload, deploy target, shutdown."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from certkit import x509 as cx
from certkit.cli import cli
from certkit.deploy import aiosmtpd as deploy_aiosmtpd
from certkit.deploy.base import DeployContext
from certkit.errors import OperationError, UsageError, VerificationError
from certkit.smtpd import tlsreload
from certkit.store import Store
from tests.servers.net import free_port
from tests.servers.smtpd import SmtpdServer, certkit_argv, child_env, issue_lineage, start_smtpd
from tests.test_tlsreload import client_context, served_sha256, tls11_client


def live_sha256(home: Path, name: str = "mail.test") -> str:
    return cx.sha256_fingerprint(cx.load_chain(Store(home).live_paths(name).cert.read_bytes())[0])


def ehlo_lines(smtp: smtplib.SMTP) -> list[str]:
    code, text = smtp.ehlo("client.test")
    assert code == 250
    return text.decode().upper().splitlines()


def starttls(port: int) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=5)
    smtp.ehlo("client.test")
    smtp.starttls(context=client_context())
    smtp.ehlo("client.test")
    return smtp


def plain_auth(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def test_submission_policy(smtpd_server: SmtpdServer) -> None:
    srv = smtpd_server
    smtp = smtplib.SMTP("127.0.0.1", srv.port, timeout=5)
    before = ehlo_lines(smtp)
    assert "STARTTLS" in before
    assert not any(line.startswith("AUTH") for line in before)  # AUTH only after TLS
    assert smtp.docmd("MAIL", "FROM:<a@example.test>")[0] == 530  # no MAIL before TLS
    assert smtp.docmd("AUTH", "PLAIN " + plain_auth(srv.user, srv.password))[0] == 530  # no plaintext AUTH
    assert smtp.docmd("HELO", "client.test")[0] == 530
    smtp.starttls(context=client_context())
    assert served_sha256(smtp) == live_sha256(srv.home)
    after = ehlo_lines(smtp)
    assert "STARTTLS" not in after
    assert "AUTH LOGIN PLAIN" in after
    assert smtp.docmd("MAIL", "FROM:<a@example.test>")[0] == 530  # no relay without AUTH
    assert smtp.docmd("RCPT", "TO:<b@example.net>")[0] == 530
    with pytest.raises(smtplib.SMTPAuthenticationError):
        smtp.login(srv.user, "wrong password")  # smtplib tries PLAIN, then LOGIN: 2 failures
    smtp.quit()
    smtp = starttls(srv.port)  # a third failure on the same connection would be cut off (421)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        smtp.login("nobody@example.test", srv.password)
    smtp.quit()
    log = srv.log()
    assert srv.password not in log and "wrong password" not in log  # no secrets in the log
    assert f"AUTH PLAIN {srv.user} FAILED" in log or f"AUTH LOGIN {srv.user} FAILED" in log
    assert "MAIL refused: not authenticated" in log


def test_failed_handshakes_log_one_line(smtpd_server: SmtpdServer) -> None:
    srv = smtpd_server
    for _ in range(2):
        smtp = smtplib.SMTP("127.0.0.1", srv.port, timeout=5)
        smtp.ehlo("client.test")
        with pytest.raises((ssl.SSLError, OSError, smtplib.SMTPServerDisconnected)):
            smtp.starttls(context=tls11_client())
        smtp.close()
    log = srv.wait_log("STARTTLS failed: UNSUPPORTED_PROTOCOL")
    assert "Traceback" not in log and "deprecated" not in log
    assert srv.proc.poll() is None


def test_authenticated_submission_delivers_to_maildir(smtpd_server: SmtpdServer) -> None:
    srv = smtpd_server
    for mechanism in ("PLAIN", "LOGIN"):
        smtp = starttls(srv.port)
        smtp.user, smtp.password = srv.user, srv.password
        code, _ = smtp.auth(mechanism, getattr(smtp, f"auth_{mechanism.lower()}"))
        assert code == 235
        smtp.sendmail("a@example.test", ["b@example.net"], f"Subject: via {mechanism}\r\n\r\nhello\r\n")
        smtp.quit()
    messages = sorted((srv.maildir / "new").iterdir())
    assert len(messages) == 2
    body = messages[0].read_bytes()
    assert body.startswith(b"Return-Path: <a@example.test>\nReceived: from client.test")
    assert b"\r\n" not in body
    assert b"with ESMTPSA" in body and b"hello" in body
    log = srv.log()
    assert f"user {srv.user} from <a@example.test> to 1 recipient(s)" in log
    assert "deprecated" not in log and "Traceback" not in log


def certkit_run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(certkit_argv(home, *args), capture_output=True, text=True, env=child_env(), timeout=60)


def test_certkit_check_passes_with_send_test(smtpd_server: SmtpdServer) -> None:
    """The contract's done-when: certkit check submission://... --send-test passes."""
    srv = smtpd_server
    for url in (f"submission://127.0.0.1:{srv.port}", f"smtps://127.0.0.1:{srv.smtps_port}"):
        result = certkit_run(srv.home, "check", url, "--expect", "mail.test", "--auth-user", srv.user,
                             "--password-file", str(srv.password_file), "--send-test",
                             "--from", "a@example.test", "--to", "b@example.net", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        import json

        report = json.loads(result.stdout)
        assert report["ok"] and not [c for c in report["checks"] if c["status"] == "FAIL"]
        assert srv.password not in result.stdout
    assert len(list((srv.maildir / "new").iterdir())) == 2


def test_cli_deploy_reloads_and_verifies(smtpd_server: SmtpdServer) -> None:
    """certkit deploy --to aiosmtpd --pid-file F --verify URL: new cert served without a restart."""
    srv = smtpd_server
    issue_lineage(srv.home)
    result = certkit_run(srv.home, "deploy", "mail.test", "--to", "aiosmtpd", "--pid-file", str(srv.pid_file),
                         "--verify", f"submission://127.0.0.1:{srv.port}")
    assert result.returncode == 0, result.stdout + result.stderr
    conn = starttls(srv.port)
    assert served_sha256(conn) == live_sha256(srv.home)
    conn.quit()
    pid = srv.proc.pid
    # A re-issue re-runs the remembered target: served again without manual steps.
    issue_lineage(srv.home)
    conn = starttls(srv.port)
    assert served_sha256(conn) == live_sha256(srv.home)
    conn.quit()
    assert srv.proc.pid == pid and srv.proc.poll() is None
    status = tlsreload.read_status(srv.pid_file)
    assert status and status["reloads"] == 2


def test_smtps_listener_offers_auth_without_starttls(smtpd_server: SmtpdServer) -> None:
    """aiosmtpd #281: over implicit TLS, AUTH must be offered and work."""
    srv = smtpd_server
    assert srv.smtps_port
    smtp = smtplib.SMTP_SSL("127.0.0.1", srv.smtps_port, timeout=5, context=client_context())
    lines = ehlo_lines(smtp)
    assert "AUTH LOGIN PLAIN" in lines and "STARTTLS" not in lines
    assert smtp.docmd("MAIL", "FROM:<a@example.test>")[0] == 530
    assert smtp.docmd("STARTTLS")[0] in (454, 500, 502)
    smtp.login(srv.user, srv.password)
    smtp.sendmail("a@example.test", ["b@example.net"], "Subject: smtps\r\n\r\nhi\r\n")
    assert served_sha256(smtp) == live_sha256(srv.home)
    smtp.quit()
    assert len(list((srv.maildir / "new").iterdir())) == 1


def test_tls11_refused_on_both_listeners(smtpd_server: SmtpdServer) -> None:
    srv = smtpd_server
    smtp = smtplib.SMTP("127.0.0.1", srv.port, timeout=5)
    smtp.ehlo("client.test")
    with pytest.raises((ssl.SSLError, OSError, smtplib.SMTPServerDisconnected)):
        smtp.starttls(context=tls11_client())
    smtp.close()
    with socket.create_connection(("127.0.0.1", srv.smtps_port or 0), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            tls11_client().wrap_socket(raw).do_handshake()


def test_swaks_and_openssl_agree(smtpd_server: SmtpdServer) -> None:
    if not (shutil.which("swaks") and shutil.which("openssl")):
        from tests.conftest import skip_or_fail

        skip_or_fail("swaks/openssl not installed")
    srv = smtpd_server
    plain = subprocess.run(["swaks", "-s", f"127.0.0.1:{srv.port}", "--quit-after", "EHLO"],
                           capture_output=True, text=True, timeout=20)
    assert "250-STARTTLS" in plain.stdout and "AUTH" not in plain.stdout
    sent = subprocess.run(["swaks", "-s", f"127.0.0.1:{srv.port}", "-tls", "--from", "a@example.test",
                           "--to", "b@example.net", "-a", "LOGIN", "-au", srv.user, "-ap", srv.password],
                          capture_output=True, text=True, timeout=20)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "235 2.7.0" in sent.stdout and "250 2.0.0 Ok: queued" in sent.stdout
    relay = subprocess.run(["swaks", "-s", f"127.0.0.1:{srv.port}", "-tls", "--from", "a@example.test",
                            "--to", "b@example.net"], capture_output=True, text=True, timeout=20)
    assert relay.returncode != 0 and "530 5.7.0 Authentication required" in relay.stdout
    s_client = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{srv.port}", "-starttls", "smtp",
                               "-brief"], input="QUIT\r\n", capture_output=True, text=True, timeout=20)
    x509 = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{srv.port}", "-starttls", "smtp"],
                          input="QUIT\r\n", capture_output=True, text=True, timeout=20)
    fingerprint = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256"], input=x509.stdout,
                                 capture_output=True, text=True, timeout=20)
    assert fingerprint.stdout.split("=")[1].strip().replace(":", "").lower() == live_sha256(srv.home)
    assert "Protocol version: TLSv1.3" in s_client.stderr + s_client.stdout
    old = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{srv.port}", "-starttls", "smtp",
                          "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], input="QUIT\r\n",
                         capture_output=True, text=True, timeout=20)
    assert old.returncode != 0


def deploy_ctx(home: Path, name: str, pid_file: Path, echo: list[str] | None = None,
               **options: object) -> DeployContext:
    store = Store(home)
    lines = echo if echo is not None else []
    return DeployContext(target="aiosmtpd", store=store, name=name, settings=store.load_settings(name),
                         version=store.live_version(name) or 1, previous_version=None,
                         paths=store.live_paths(name), hook_env={},
                         options={"pid_file": str(pid_file), **options}, echo=lines.append)


def test_reload_on_deploy_serves_new_cert_without_restart(smtpd_server: SmtpdServer) -> None:
    srv = smtpd_server
    old_conn = starttls(srv.port)
    old_conn.login(srv.user, srv.password)
    first = live_sha256(srv.home)
    assert served_sha256(old_conn) == first
    issue_lineage(srv.home)  # version 2 goes live
    second = live_sha256(srv.home)
    assert second != first
    echo: list[str] = []
    # deploy returns once the server confirmed the reload (its status file names the new cert).
    deploy_aiosmtpd.deploy(deploy_ctx(srv.home, "mail.test", srv.pid_file, echo))
    assert "serves sha256" in echo[0] and second[:16] in echo[0]
    new_conn = starttls(srv.port)
    assert served_sha256(new_conn) == second
    implicit = smtplib.SMTP_SSL("127.0.0.1", srv.smtps_port or 0, timeout=5, context=client_context())
    assert served_sha256(implicit) == second
    # The session opened before the reload carries on with its certificate.
    assert served_sha256(old_conn) == first
    old_conn.sendmail("a@example.test", ["b@example.net"], "Subject: old\r\n\r\nstill here\r\n")
    for conn in (old_conn, new_conn, implicit):
        conn.quit()
    assert srv.proc.poll() is None
    assert "reload ok" in srv.log()
    status = tlsreload.read_status(srv.pid_file)
    assert status and status["sha256"] == second and status["reloads"] == 1


def test_sighup_reloads_and_rereads_users(smtpd_server: SmtpdServer, tmp_path: Path) -> None:
    srv = smtpd_server
    issue_lineage(srv.home)
    (tmp_path / "pw2").write_text("second secret\n")
    subprocess.run(certkit_argv(srv.home, "smtpd", "adduser", str(srv.users_file), "bob",
                                "--password-file", str(tmp_path / "pw2")), check=True, env=child_env())
    srv.hup()
    deploy_aiosmtpd.wait_for_reload(srv.pid_file, srv.proc.pid, 0, 5)
    conn = starttls(srv.port)
    assert served_sha256(conn) == live_sha256(srv.home)
    conn.login("bob", "second secret")
    conn.quit()
    assert "users file reloaded: 2 user(s)" in srv.log()
    # A broken users file is reported; the users loaded before keep working.
    srv.users_file.write_text(srv.users_file.read_text() + "broken line\n")
    srv.hup()
    deploy_aiosmtpd.wait_for_reload(srv.pid_file, srv.proc.pid, 1, 5)
    assert "users file NOT reloaded, keeping 2 user(s)" in srv.log()
    conn = starttls(srv.port)
    conn.login("bob", "second secret")
    conn.quit()


def test_failed_reload_keeps_serving_and_deploy_fails(smtpd_server: SmtpdServer) -> None:
    srv = smtpd_server
    first = live_sha256(srv.home)
    issue_lineage(srv.home)
    combined = Store(srv.home).live_paths("mail.test").combined
    real = Path(os.path.realpath(combined))
    real.write_text("garbage\n")  # simulate a damaged version file
    with pytest.raises(OperationError, match="keeps serving the old one"):
        deploy_aiosmtpd.deploy(deploy_ctx(srv.home, "mail.test", srv.pid_file))
    conn = starttls(srv.port)
    assert served_sha256(conn) == first
    conn.quit()
    assert "reload FAILED" in srv.log() and srv.proc.poll() is None


def test_deploy_refuses_wrong_lineage_missing_and_stale_pid_files(smtpd_server: SmtpdServer, tmp_path: Path) -> None:
    srv = smtpd_server
    issue_lineage(srv.home, "other.test")
    with pytest.raises(VerificationError, match=r"not lineage other\.test"):
        deploy_aiosmtpd.deploy(deploy_ctx(srv.home, "other.test", srv.pid_file))
    with pytest.raises(UsageError, match="does not exist"):
        deploy_aiosmtpd.deploy(deploy_ctx(srv.home, "mail.test", tmp_path / "none.pid"))
    with pytest.raises(UsageError, match="needs the server's pid file"):
        ctx = deploy_ctx(srv.home, "mail.test", srv.pid_file)
        ctx.options = {}
        deploy_aiosmtpd.deploy(ctx)
    # A pid file without a status file: certkit does not signal blindly.
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        lone = tmp_path / "lone.pid"
        lone.write_text(f"{sleeper.pid}\n")
        with pytest.raises(OperationError, match="cannot confirm"):
            deploy_aiosmtpd.deploy(deploy_ctx(srv.home, "mail.test", lone))
        # A stale status (written before this process started) is refused too.
        shutil.copy(tlsreload.status_path(srv.pid_file), tlsreload.status_path(lone))
        status_file = tlsreload.status_path(lone)
        status_file.write_text(status_file.read_text().replace(f'"pid": {srv.proc.pid}', f'"pid": {sleeper.pid}')
                               .replace('"time": "2', '"time": "1'))
        with pytest.raises(OperationError, match="stale"):
            deploy_aiosmtpd.deploy(deploy_ctx(srv.home, "mail.test", lone))
        assert sleeper.poll() is None  # never signalled
    finally:
        sleeper.kill()
        sleeper.wait()


def test_second_server_with_same_pid_file_refused(smtpd_server: SmtpdServer) -> None:
    srv = smtpd_server
    proc = subprocess.run(srv.argv, capture_output=True, text=True, env=child_env(), timeout=20)
    assert proc.returncode == 1 and f"names process {srv.proc.pid}, which is running" in proc.stderr
    assert srv.pid_file.read_text().strip() == str(srv.proc.pid)


def test_sigterm_stops_cleanly(smtpd_server: SmtpdServer) -> None:
    srv = smtpd_server
    conn = starttls(srv.port)
    assert srv.pid_file.exists()
    assert srv.stop() == 0
    assert "stopped (1 open connection(s) closed" in srv.log()
    assert not srv.pid_file.exists() and not tlsreload.status_path(srv.pid_file).exists()
    assert "Traceback" not in srv.log()
    conn.close()


class Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 sink ok"


def test_relay_to_smarthost(tmp_path: Path) -> None:
    home = tmp_path / "home"
    issue_lineage(home)
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    srv = start_smtpd(home, "mail.test", tmp_path / "smtpd", smtps=False, relay=f"127.0.0.1:{port}")
    try:
        assert srv.smtps_port is None
        conn = starttls(srv.port)
        conn.login(srv.user, srv.password)
        conn.sendmail("a@example.test", ["b@example.net", "c@example.net"], "Subject: relayed\r\n\r\nhi\r\n")
        conn.quit()
        assert len(sink.messages) == 1
        mail_from, rcpts, content = sink.messages[0]
        assert mail_from == "a@example.test" and rcpts == ["b@example.net", "c@example.net"]
        assert b"Subject: relayed" in content and b"Received: from client.test" in content
        assert b"Return-Path" not in content
        controller.stop()
        conn = starttls(srv.port)
        conn.login(srv.user, srv.password)
        with pytest.raises(smtplib.SMTPDataError) as exc:
            conn.sendmail("a@example.test", ["b@example.net"], "Subject: x\r\n\r\nx\r\n")
        assert exc.value.smtp_code == 451  # temporary: the client retries later
        conn.close()
    finally:
        srv.stop()


def run_cli(*args: str, input_text: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), input=input_text)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_adduser(tmp_path: Path) -> None:
    users = tmp_path / "users"
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    code, out = run_cli("smtpd", "adduser", str(users), "alice", "--password-file", str(pw))
    assert code == 0 and "Added alice" in out and "s3cret" not in out
    assert (users.stat().st_mode & 0o777) == 0o600
    line = users.read_text().strip()
    assert line.startswith("alice:scrypt$16384$8$1$") and "s3cret" not in line
    code, out = run_cli("smtpd", "adduser", str(users), "alice", "--password-file", str(pw))
    assert code == 0 and "Changed the password" in out
    assert users.read_text().count("alice:") == 1 and users.read_text().strip() != line  # new salt
    code, out = run_cli("smtpd", "adduser", str(users), "bad:name", "--password-file", str(pw))
    assert code == 2 and "invalid user name" in out
    code, out = run_cli("smtpd", "adduser", str(users), "bob")  # CliRunner stdin is not a terminal
    assert code == 2 and "--password-file" in out
    from certkit.smtpd import users as smtpd_users

    table = smtpd_users.load_users(users)
    assert smtpd_users.verify(table, "alice", "s3cret")
    assert not smtpd_users.verify(table, "alice", "S3cret") and not smtpd_users.verify(table, "eve", "s3cret")


def test_usage_errors_exit_2(home: Path, tmp_path: Path) -> None:
    code, out = run_cli("smtpd")
    assert code == 2 and "needs --listen, --cert, --users" in out
    code, out = run_cli("smtpd", "--listen", "127.0.0.1:0", "--cert", "x", "--users", "u")
    assert code == 2 and "exactly one of --maildir" in out
    code, out = run_cli("smtpd", "--listen", "127.0.0.1:0", "--cert", "nope.test", "--users", "u",
                        "--maildir", str(tmp_path / "m"))
    assert code == 2 and "nope.test" in out
    issue_lineage(home)
    code, out = run_cli("smtpd", "--listen", "127.0.0.1:0", "--cert", "mail.test", "--users", str(tmp_path / "u"),
                        "--maildir", str(tmp_path / "m"))
    assert code == 2 and "does not exist" in out and "adduser" in out
    code, out = run_cli("smtpd", "--listen", "localhost:http", "--cert", "mail.test", "--users", "u",
                        "--maildir", str(tmp_path / "m"))
    assert code == 2 and "not HOST:PORT" in out
    assert "Traceback" not in out
    binary = tmp_path / "binary-users"
    binary.write_bytes(b"\xff\xfe\x00 not text")
    code, out = run_cli("smtpd", "--listen", "127.0.0.1:0", "--cert", "mail.test", "--users", str(binary),
                        "--maildir", str(tmp_path / "m"))
    assert code == 2 and "is not UTF-8 text" in out
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    code, out = run_cli("smtpd", "adduser", str(binary), "bob", "--password-file", str(pw))
    assert code == 2 and "is not UTF-8 text" in out


def test_port_in_use_exits_1(tmp_path: Path) -> None:
    home = tmp_path / "home"
    issue_lineage(home)
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        pw = tmp_path / "pw"
        pw.write_text("x\n")
        subprocess.run(certkit_argv(home, "smtpd", "adduser", str(tmp_path / "users"), "a", "--password-file",
                                    str(pw)), check=True, env=child_env())
        proc = subprocess.run(certkit_argv(home, "smtpd", "--listen", f"127.0.0.1:{port}", "--cert", "mail.test",
                                           "--users", str(tmp_path / "users"), "--maildir", str(tmp_path / "m")),
                              capture_output=True, text=True, env=child_env(), timeout=20)
    assert proc.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_starts_listening_and_stops_on_sigterm(tmp_path: Path) -> None:
    """Start to listening and a clean stop (the start-up time itself is a benchmark figure, not a test)."""
    home = tmp_path / "home"
    issue_lineage(home)
    srv = start_smtpd(home, "mail.test", tmp_path / "smtpd")
    assert srv.pid_file.read_text().strip() == str(srv.proc.pid)
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(10) == 0
    assert "stopped (0 open connection(s)" in srv.log()


def test_multi_line_smarthost_refusal_is_passed_on_as_one_line(tmp_path: Path) -> None:
    """smtplib joins a multi-line reply with LF; handed to the client as is, that broke its framing."""
    from certkit.smtpd.server import Delivery, ServerConfig

    class Refuser:
        async def handle_RCPT(self, server, session, envelope, address, options):
            return "550-5.1.1 <nobody@example.net>: no such user\r\n550 5.1.1 see https://example.net/help"

    port = free_port()
    controller = Controller(Refuser(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        cfg = ServerConfig(listen=("127.0.0.1", 0), users_file=tmp_path / "u", tls=None,
                           relay=("127.0.0.1", port), hostname="mail.test", log=lambda _line: None)
        reply = Delivery(cfg).deliver("a@example.test", ["nobody@example.net"], b"Subject: x\r\n\r\nx\r\n")
    finally:
        controller.stop()
    assert "\n" not in reply and "\r" not in reply
    assert reply == "550 5.1.1 <nobody@example.net>: no such user 5.1.1 see https://example.net/help"


@pytest.mark.parametrize("content", [b"", b"abc\n", b"1\n", b"\xff\xfe\x00"])
def test_pid_files_that_hold_no_server_pid_are_usage_errors(tmp_path: Path, content: bytes) -> None:
    pid_file = tmp_path / "smtpd.pid"
    pid_file.write_bytes(content)
    with pytest.raises(UsageError, match="does not hold a process id"):
        deploy_aiosmtpd.read_pid(pid_file)
