"""`certkit check` against a real private Postfix + Dovecot, after `certkit deploy --to postfix`.

Before the deploy the SMTP service has no TLS at all (starttls-offered FAIL);
after it the submission service passes the whole audit with AUTH and a test
message. swaks and openssl confirm the findings independently.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from certkit.cli import cli
from certkit.store import Store
from tests.servers.postfix import PostfixInstance

pytestmark = [pytest.mark.postfix, pytest.mark.slow]

NAME = "mail.certkit.test"


def certkit(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_check_postfix_before_and_after_deploy(postfix: PostfixInstance, home: Path, tmp_path: Path) -> None:
    code, out, _ = certkit("issue", "--cn", NAME)
    assert code == 0, out
    # A fresh Postfix: no STARTTLS on its SMTP service.
    code, out, _ = certkit("check", f"smtp://127.0.0.1:{postfix.smtp_port}", "--json", "--timeout", "5")
    doc = json.loads(out)
    assert code == 1 and "starttls-offered" in [c["id"] for c in doc["checks"] if c["status"] == "FAIL"]

    code, out, err = certkit("deploy", NAME, "--to", "postfix", "--postfix-config-dir", str(postfix.config_dir),
                             "--setup-submission", "--submission-listen", postfix.submission_listen)
    assert code == 0, out + err + postfix.log()

    pw = tmp_path / "pw"
    pw.write_text(postfix.users["alice"] + "\n")
    url = f"submission://127.0.0.1:{postfix.submission_port}"
    code, out, err = certkit("check", url, "--expect", NAME, "--name", NAME, "--auth-user", "alice",
                             "--password-file", str(pw), "--send-test", "--from", "alice@mail.certkit.test",
                             "--to", "someone@example.com", "--json", "--timeout", "5")
    doc = json.loads(out)
    bad = [c for c in doc["checks"] if c["status"] != "PASS"]
    assert code == 0 and doc["ok"], (bad, err, postfix.log())
    statuses = {c["id"]: c["status"] for c in doc["checks"]}
    for check_id in ("plaintext-auth-refused", "plaintext-mail-refused", "starttls-injection", "tls10-refused",
                     "tls11-refused", "expected-cert", "relay-refused", "auth", "send-test"):
        assert statuses[check_id] == "PASS", check_id
    assert postfix.users["alice"] not in out
    assert Store(home).load_state(NAME)["last_check"]["ok"] is True

    # swaks agrees on the policy: no relay without AUTH after TLS, AUTH works
    swaks = ["swaks", "--server", f"127.0.0.1:{postfix.submission_port}", "--helo", "client.test",
             "--from", "alice@mail.certkit.test", "--to", "someone@example.com", "-tls", "--timeout", "10"]
    no_auth = subprocess.run([*swaks, "--quit-after", "RCPT"], capture_output=True, text=True, timeout=60)
    assert no_auth.returncode != 0
    with_auth = subprocess.run([*swaks, "--auth", "PLAIN", "--auth-user", "alice", "--auth-password",
                                postfix.users["alice"], "--quit-after", "RCPT"],
                               capture_output=True, text=True, timeout=60)
    assert with_auth.returncode == 0, with_auth.stdout[-1500:]
    # openssl agrees the served certificate verifies against the lineage as trust anchor
    cert = Store(home).live_paths(NAME).cert
    proc = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                           f"127.0.0.1:{postfix.submission_port}", "-CAfile", str(cert), "-verify_return_error",
                           "-verify_hostname", NAME], input="", capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stdout[-800:]
