"""`certkit check` against certkit's own reference server (`certkit smtpd`, aiosmtpd) in a subprocess.

The reference server must pass the whole audit on its submission port and
on implicit TLS, with AUTH and a test message that lands in its Maildir.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from certkit.cli import cli
from tests.servers.smtpd import PASSWORD, USER, SmtpdServer


def check(srv: SmtpdServer, url: str, *extra: str) -> dict[str, object]:
    res = CliRunner().invoke(cli, ["--home", str(srv.home), "check", url, "--expect", srv.lineage, "--name",
                                   srv.lineage, "--json", "--timeout", "5", *extra], catch_exceptions=False)
    doc: dict[str, object] = json.loads(res.stdout)
    bad = [c for c in doc["checks"] if c["status"] != "PASS"]  # type: ignore[attr-defined]
    assert res.exit_code == 0 and doc["ok"], (bad, srv.log()[-2000:])
    return doc


def test_reference_server_passes_the_audit(smtpd_server: SmtpdServer) -> None:
    srv = smtpd_server
    doc = check(srv, f"submission://127.0.0.1:{srv.port}", "--auth-user", USER, "--password-file",
                str(srv.password_file), "--send-test", "--from", USER, "--to", "bob@example.test")
    ids = {c["id"] for c in doc["checks"]}  # type: ignore[attr-defined]
    assert {"plaintext-auth-refused", "plaintext-mail-refused", "starttls-injection", "relay-refused", "auth",
            "send-test", "expected-cert"} <= ids
    assert PASSWORD not in json.dumps(doc)
    delivered = list((srv.maildir / "new").iterdir())
    assert len(delivered) == 1 and b"Subject: certkit check test message" in delivered[0].read_bytes()
    assert srv.smtps_port is not None
    smtps = check(srv, f"smtps://127.0.0.1:{srv.smtps_port}")
    assert "starttls" not in {c["id"] for c in smtps["checks"]}  # type: ignore[attr-defined]
