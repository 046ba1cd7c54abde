"""`certkit check` against the zoo: every server gets the right verdict, with the right failing check named.

Findings about certificates and TLS are cross-checked with `openssl s_client
-verify_return_error` and swaks where those tools can see the same thing.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from certkit.check import CheckOptions, CheckReport, check_url, verify_deployment
from tests.conftest import skip_or_fail
from tests.servers.zoo import NAME, PASSWORD, USER, ZooPki, ZooServer, aiosmtpd_server, server_context

Zoo = Callable[..., ZooServer]


def audit(url: str, pki: ZooPki, **kw: Any) -> CheckReport:
    kw.setdefault("cafile", str(pki.ca_file))
    kw.setdefault("name", NAME)
    kw.setdefault("timeout", 2.0)
    return check_url(url, CheckOptions(**kw))


def failing(report: CheckReport) -> set[str]:
    return set(report.failed)


def status(report: CheckReport, check_id: str) -> str:
    result = report.get(check_id)
    assert result is not None, f"{check_id} missing from {[c.id for c in report.checks]}"
    return result.status


def openssl_verify(port: int, pki: ZooPki, *extra: str, starttls: bool = True) -> subprocess.CompletedProcess[str]:
    if not shutil.which("openssl"):
        skip_or_fail("openssl not installed (the independent cross-check)")
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.ca_file),
            "-verify_return_error", "-servername", NAME, *extra]
    if starttls:
        argv[4:4] = ["-starttls", "smtp"]
    return subprocess.run(argv, input="QUIT\n", capture_output=True, text=True, timeout=20)


@pytest.fixture
def good_ctx(zoo_pki: ZooPki) -> ssl.SSLContext:
    return server_context(zoo_pki.leaf("good"))


# ----- right servers -------------------------------------------------------------
def test_good_handwritten_server_passes_everything(zoo: Zoo, zoo_pki: ZooPki, good_ctx: ssl.SSLContext) -> None:
    srv = zoo(tls=good_ctx)
    report = audit(f"submission://127.0.0.1:{srv.port}", zoo_pki, auth_user=USER, password=PASSWORD)
    assert report.ok, report.to_json()
    assert {c.status for c in report.checks} == {"PASS"}  # so none was cut by the deadline (3 x --timeout)
    assert status(report, "auth") == "PASS"
    assert openssl_verify(srv.port, zoo_pki, "-verify_hostname", NAME).returncode == 0


def test_good_aiosmtpd_server_passes(zoo_pki: ZooPki, good_ctx: ssl.SSLContext) -> None:
    with aiosmtpd_server(good_ctx) as port:
        report = audit(f"submission://127.0.0.1:{port}", zoo_pki, auth_user=USER, password=PASSWORD)
        assert report.ok, [c.to_json() for c in report.checks if c.status != "PASS"]
        assert status(report, "relay-refused") == "PASS"
        assert status(report, "plaintext-auth-refused") == "PASS"
        assert status(report, "starttls-injection") == "PASS"
        assert status(report, "auth") == "PASS"


def test_implicit_tls_server(zoo: Zoo, zoo_pki: ZooPki, good_ctx: ssl.SSLContext) -> None:
    srv = zoo(tls=good_ctx, implicit_tls=True)
    for url in (f"smtps://127.0.0.1:{srv.port}",):
        report = audit(url, zoo_pki)
        assert report.ok, report.to_json()
        assert report.get("starttls-offered") is None  # no STARTTLS step for implicit TLS
        assert status(report, "ehlo-after-tls") == "PASS"
    assert openssl_verify(srv.port, zoo_pki, starttls=False).returncode == 0


def test_self_signed_with_and_without_pin(zoo: Zoo, zoo_pki: ZooPki, tmp_path: Any) -> None:
    leaf = zoo_pki.leaf("selfsigned", self_signed=True)
    srv = zoo(tls=server_context(leaf))
    url = f"submission://127.0.0.1:{srv.port}"
    unpinned = audit(url, zoo_pki, cafile=None)
    assert failing(unpinned) == {"chain-trust"}
    assert "self-signed" in unpinned.get("chain-trust").detail  # type: ignore[union-attr]
    pinned = audit(url, zoo_pki, cafile=None, expected_pem=leaf.cert_pem)
    assert pinned.ok, pinned.to_json()
    assert status(pinned, "expected-cert") == "PASS"
    # openssl agrees: refused without the anchor, accepted with it
    assert openssl_verify(srv.port, zoo_pki).returncode != 0
    assert openssl_verify(srv.port, zoo_pki, "-CAfile", str(leaf.cert)).returncode == 0


# ----- one thing wrong each ---------------------------------------------------------
CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("no-starttls", {"offer_starttls": False}, {"starttls-offered"}),
    ("auth-before-tls", {"auth_before_tls": True}, {"auth-before-tls", "plaintext-auth-refused"}),
    ("plaintext-mail", {"require_tls_for_mail": False}, {"plaintext-mail-refused"}),
    ("injection", {"injection_vulnerable": True}, {"starttls-injection"}),
    ("open-relay", {"open_relay": True}, {"relay-refused"}),
    ("reoffers-starttls", {"reoffer_starttls": True}, {"ehlo-after-tls"}),
    ("no-auth-after-tls", {"offer_auth_after_tls": False}, {"ehlo-after-tls"}),
    ("breaks-tls", {"break_tls": True}, {"tls-handshake"}),
    ("silent", {"greeting": None}, {"banner"}),
    ("garbage", {"garbage": True}, {"banner"}),
    ("drops", {"drop": True}, {"banner"}),
    ("drips", {"drip": True}, {"banner"}),
]


@pytest.mark.parametrize(("label", "changes", "expected"), CASES, ids=[c[0] for c in CASES])
def test_behaviour_faults(zoo: Zoo, zoo_pki: ZooPki, good_ctx: ssl.SSLContext, label: str,
                          changes: dict[str, Any], expected: set[str]) -> None:
    srv = zoo(tls=good_ctx, **changes)
    report = audit(f"submission://127.0.0.1:{srv.port}", zoo_pki, timeout=0.5, deadline=5)
    assert failing(report) == expected, [c.to_json() for c in report.checks if c.status != "PASS"]
    # The verdict comes from the server's own fault, each step within --timeout, not from the deadline.
    assert not [c.detail for c in report.checks if "deadline" in c.detail]
    assert not report.ok


CERT_CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("wrong-name", {"names": ("other.example.test",), "cn": "other.example.test"}, {"name-match"}),
    ("cn-only", {"names": ()}, {"name-match"}),
    ("expired", {"days_before": 400, "days_after": -1}, {"chain-trust", "time-left"}),
    ("expiring", {"days_before": 88, "days_after": 1}, {"time-left"}),
    ("client-eku", {"eku": (ExtendedKeyUsageOID.CLIENT_AUTH,)}, {"chain-trust", "eku-server-auth"}),
]


@pytest.mark.parametrize(("label", "leaf_args", "expected"), CERT_CASES, ids=[c[0] for c in CERT_CASES])
def test_certificate_faults(zoo: Zoo, zoo_pki: ZooPki, label: str, leaf_args: dict[str, Any],
                            expected: set[str]) -> None:
    srv = zoo(tls=server_context(zoo_pki.leaf(label, **leaf_args)))
    report = audit(f"submission://127.0.0.1:{srv.port}", zoo_pki)
    assert failing(report) == expected, [c.to_json() for c in report.checks if c.status != "PASS"]
    assert report.certificate["sha256"]  # the certificate is shown even when refused


def test_wrong_name_cross_checked_with_openssl(zoo: Zoo, zoo_pki: ZooPki) -> None:
    srv = zoo(tls=server_context(zoo_pki.leaf("wrong-name", names=("other.example.test",), cn="other.example.test")))
    assert openssl_verify(srv.port, zoo_pki, "-verify_hostname", NAME).returncode != 0


def test_cn_only_refused_where_openssl_falls_back_to_cn(zoo: Zoo, zoo_pki: ZooPki) -> None:
    """OpenSSL's host check still accepts the subject CN when there is no SAN; certkit does not (RFC 6125)."""
    srv = zoo(tls=server_context(zoo_pki.leaf("cn-only", names=())))
    assert openssl_verify(srv.port, zoo_pki, "-verify_hostname", NAME).returncode == 0
    report = audit(f"submission://127.0.0.1:{srv.port}", zoo_pki)
    assert status(report, "name-match") == "FAIL"
    assert "CN is not used" in report.get("name-match").detail  # type: ignore[union-attr]


def test_expired_cross_checked_with_openssl(zoo: Zoo, zoo_pki: ZooPki) -> None:
    srv = zoo(tls=server_context(zoo_pki.leaf("expired", days_before=400, days_after=-1)))
    proc = openssl_verify(srv.port, zoo_pki)
    assert proc.returncode != 0 and "expired" in (proc.stdout + proc.stderr)
    report = audit(f"submission://127.0.0.1:{srv.port}", zoo_pki)
    assert "expired" in report.get("chain-trust").detail  # type: ignore[union-attr]
    assert "EXPIRED" in report.get("time-left").detail  # type: ignore[union-attr]


def test_rsa1024(zoo: Zoo, zoo_pki: ZooPki) -> None:
    srv = zoo(tls=server_context(zoo_pki.leaf("rsa1024", key="rsa1024")))
    report = audit(f"submission://127.0.0.1:{srv.port}", zoo_pki)
    assert status(report, "key-strength") == "FAIL"
    assert "1024" in report.get("key-strength").detail  # type: ignore[union-attr]
    assert failing(report) <= {"key-strength", "chain-trust"}  # OpenSSL at SECLEVEL 2 also refuses the chain
    assert report.certificate["key"] == "rsa1024"


def test_rsa2048_is_a_warning_only_with_strict(zoo: Zoo, zoo_pki: ZooPki) -> None:
    srv = zoo(tls=server_context(zoo_pki.leaf("rsa2048", key="rsa2048")))
    url = f"submission://127.0.0.1:{srv.port}"
    assert status(audit(url, zoo_pki), "key-strength") == "PASS"
    strict = audit(url, zoo_pki, strict=True)
    assert status(strict, "key-strength") == "WARN" and strict.ok


def test_sha1_signed(zoo: Zoo, zoo_pki: ZooPki) -> None:
    if not shutil.which("openssl"):
        skip_or_fail("openssl not installed (the independent cross-check)")
    srv = zoo(tls=server_context(zoo_pki.sha1_leaf()))
    report = audit(f"submission://127.0.0.1:{srv.port}", zoo_pki)
    assert status(report, "signature-hash") == "FAIL"
    assert "SHA1" in report.get("signature-hash").detail  # type: ignore[union-attr]
    assert failing(report) <= {"signature-hash", "chain-trust"}


def test_tls10_allowed(zoo: Zoo, zoo_pki: ZooPki) -> None:
    srv = zoo(tls=server_context(zoo_pki.leaf("good"), min_version=ssl.TLSVersion.TLSv1))
    report = audit(f"submission://127.0.0.1:{srv.port}", zoo_pki)
    assert failing(report) == {"tls10-refused", "tls11-refused"}
    assert "TLSv1" in report.get("tls10-refused").detail  # type: ignore[union-attr]
    # openssl s_client offering only TLS 1.0 gets through too
    proc = openssl_verify(srv.port, zoo_pki, "-tls1", "-cipher", "DEFAULT:@SECLEVEL=0")
    assert proc.returncode == 0, proc.stdout[-500:] + proc.stderr[-500:]
    # ...and a right server refuses it, for both
    good = zoo(tls=server_context(zoo_pki.leaf("good")))
    assert openssl_verify(good.port, zoo_pki, "-tls1", "-cipher", "DEFAULT:@SECLEVEL=0").returncode != 0


def test_weak_ciphers_allowed(zoo: Zoo, zoo_pki: ZooPki) -> None:
    srv = zoo(tls=server_context(zoo_pki.leaf("good"), weak=True))
    report = audit(f"submission://127.0.0.1:{srv.port}", zoo_pki)
    assert failing(report) == {"weak-ciphers-refused"}
    detail = report.get("weak-ciphers-refused").detail  # type: ignore[union-attr]
    assert "anonymous" in detail or "NULL" in detail


def test_open_relay_aiosmtpd_cross_checked_with_swaks(zoo_pki: ZooPki, good_ctx: ssl.SSLContext) -> None:
    with aiosmtpd_server(good_ctx, open_relay=True) as port:
        report = audit(f"submission://127.0.0.1:{port}", zoo_pki)
        assert status(report, "relay-refused") == "FAIL"
        assert "OPEN RELAY" in report.get("relay-refused").detail  # type: ignore[union-attr]
        if not shutil.which("swaks"):
            skip_or_fail("swaks not installed (the independent cross-check)")
        proc = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(port), "-tls",
                               "--tls-verify", "--tls-ca-path", str(zoo_pki.ca_file),
                               "--from", "a@example.com", "--to", "b@example.net", "--quit-after", "RCPT"],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stdout[-800:]  # swaks too got RCPT accepted without AUTH


# ----- pin, AUTH, send-test, redaction ---------------------------------------------
def test_pin_mismatch_and_verify_deployment(zoo: Zoo, zoo_pki: ZooPki, good_ctx: ssl.SSLContext) -> None:
    srv = zoo(tls=good_ctx)
    url = f"submission://127.0.0.1:{srv.port}"
    other = zoo_pki.leaf("other-pin", names=(NAME,))
    report = audit(url, zoo_pki, expected_pem=other.cert_pem)  # --cafile given: trust via CA, pin compared
    assert failing(report) == {"expected-cert"}
    outcome = verify_deployment(url, other.cert_pem, NAME, timeout=2)
    assert not outcome.ok and "expected-cert" in outcome.detail and "served sha256" in outcome.detail
    outcome = verify_deployment(url, zoo_pki.leaf("good").cert_pem, NAME, timeout=2)
    assert outcome.ok, outcome.detail
    # The pin proves identity only: the zoo's private root is no trust anchor here, so the chain is judged
    # incomplete (issue 11.4) - reported, but not a deployment failure.
    assert failing(outcome.report) == {"chain-complete"}
    wrong = verify_deployment(url, zoo_pki.leaf("good").cert_pem, "other.example.test", timeout=2)
    assert not wrong.ok and "name-match" in wrong.detail


def test_verify_deployment_ignores_audit_findings(zoo: Zoo, zoo_pki: ZooPki) -> None:
    leaf = zoo_pki.leaf("good")
    srv = zoo(tls=server_context(leaf, min_version=ssl.TLSVersion.TLSv1), open_relay=True)
    outcome = verify_deployment(f"submission://127.0.0.1:{srv.port}", leaf.cert_pem, NAME, timeout=2)
    assert outcome.ok, outcome.detail
    assert {"tls10-refused", "relay-refused"} <= set(outcome.report.failed)


def test_auth_wrong_password_and_redaction(zoo: Zoo, zoo_pki: ZooPki, good_ctx: ssl.SSLContext) -> None:
    srv = zoo(tls=good_ctx)
    report = audit(f"submission://127.0.0.1:{srv.port}", zoo_pki, auth_user=USER, password="wrong-Pa55word")
    assert failing(report) == {"auth"}
    text = str(report.to_json())
    assert "wrong-Pa55word" not in text
    import base64

    assert base64.b64encode(f"\0{USER}\0wrong-Pa55word".encode()).decode() not in text
    assert "C: AUTH PLAIN <redacted>" in report.transcript


def test_send_test_message(zoo: Zoo, zoo_pki: ZooPki, good_ctx: ssl.SSLContext) -> None:
    srv = zoo(tls=good_ctx)
    report = audit(f"submission://127.0.0.1:{srv.port}", zoo_pki, auth_user=USER, password=PASSWORD,
                   send_test=True, mail_from="alice@example.test", rcpt_to="bob@example.org")
    assert report.ok and status(report, "send-test") == "PASS"
    assert "queued as ZOO123" in report.get("send-test").detail  # type: ignore[union-attr]
    (message,) = srv.b.messages
    for header in (b"From: <alice@example.test>", b"To: <bob@example.org>", b"Date: ", b"Message-ID: <"):
        assert header in message
    assert PASSWORD not in str(report.to_json())


def test_send_test_without_auth_is_refused(zoo: Zoo, zoo_pki: ZooPki, good_ctx: ssl.SSLContext) -> None:
    srv = zoo(tls=good_ctx)
    report = audit(f"submission://127.0.0.1:{srv.port}", zoo_pki, send_test=True,
                   mail_from="alice@example.test", rcpt_to="bob@example.org")
    assert failing(report) == {"send-test"}
    assert "not authenticated" in report.get("send-test").detail  # type: ignore[union-attr]
    assert srv.b.messages == []


def test_server_hanging_up_on_plaintext_probes(zoo: Zoo, zoo_pki: ZooPki, good_ctx: ssl.SSLContext) -> None:
    """A server that answers AUTH before TLS with 421 and closes still gets STARTTLS checked."""
    srv = zoo(tls=good_ctx, hang_up_before_tls=True)
    report = audit(f"submission://127.0.0.1:{srv.port}", zoo_pki)
    assert report.ok, [c.to_json() for c in report.checks if c.status != "PASS"]
    assert status(report, "plaintext-auth-refused") == "PASS"
    assert status(report, "starttls") == "PASS" and status(report, "tls-handshake") == "PASS"
    assert "*  the server closed the connection; reconnecting for STARTTLS" in report.transcript


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls10_only_server(zoo: Zoo, zoo_pki: ZooPki) -> None:
    """A server speaking only TLS 1.0 fails the strict handshake, and the probe says why."""
    ctx = server_context(zoo_pki.leaf("good"), min_version=ssl.TLSVersion.TLSv1)
    ctx.maximum_version = ssl.TLSVersion.TLSv1
    srv = zoo(tls=ctx)
    report = audit(f"submission://127.0.0.1:{srv.port}", zoo_pki)
    assert {"tls-handshake", "tls10-refused"} <= failing(report)
    assert status(report, "tls11-refused") == "SKIP"  # a refusal proves nothing when no handshake works


def test_host_names_resolve_within_the_timeout(zoo: Zoo, zoo_pki: ZooPki, good_ctx: ssl.SSLContext) -> None:
    srv = zoo(tls=good_ctx)
    report = audit(f"submission://localhost:{srv.port}", zoo_pki)  # ::1 may come first: every address is tried
    assert report.ok, [c.to_json() for c in report.checks if c.status != "PASS"]
    missing = audit("smtp://no-such-host.invalid", zoo_pki, timeout=1)
    assert failing(missing) == {"connect"}
    detail = missing.get("connect").detail  # type: ignore[union-attr]
    # Refused by the resolver, or given up after the step's 1 s: either way a connect FAIL, not a hang.
    assert detail.startswith(("cannot resolve no-such-host.invalid", "name lookup of no-such-host.invalid took"))


def test_smtp_mode_policy(zoo: Zoo, zoo_pki: ZooPki, good_ctx: ssl.SSLContext) -> None:
    """Port 25 (smtp://): plaintext MAIL is normal, AUTH before TLS is a warning, AUTH after TLS optional."""
    srv = zoo(tls=good_ctx, require_tls_for_mail=False, offer_auth_after_tls=False)
    report = audit(f"smtp://127.0.0.1:{srv.port}", zoo_pki)
    assert report.ok, [c.to_json() for c in report.checks if c.status != "PASS"]
    assert report.get("plaintext-mail-refused") is None


def test_probe_that_cannot_reach_tls_never_passes(zoo: Zoo, good_ctx: ssl.SSLContext) -> None:
    """A side probe whose STARTTLS is refused for now (454) proved nothing: WARN, never PASS."""
    import ssl as ssl_mod

    from certkit.check.probes import probe_injection, probe_old_tls, probe_weak_ciphers
    from certkit.check.target import parse_target

    srv = zoo(tls=good_ctx, starttls_busy=True)
    target = parse_target(f"smtp://127.0.0.1:{srv.port}")
    results = [probe_old_tls(target, 5, "probe.test", ssl_mod.TLSVersion.TLSv1, "tls10-refused", "TLS 1.0"),
               probe_weak_ciphers(target, 5, "probe.test"), probe_injection(target, 5, "probe.test")]
    assert [r.status for r in results] == ["WARN"] * 3, results
    assert "454" in results[2].detail
    # The whole audit: STARTTLS itself fails, and the probes are not counted as passed either.
    report = check_url(target.url, CheckOptions(timeout=5))
    assert status(report, "starttls") == "FAIL"
    assert {status(report, i) for i in ("tls10-refused", "weak-ciphers-refused", "starttls-injection")} == {"SKIP"}


def test_send_test_needs_354_to_data(zoo: Zoo, zoo_pki: ZooPki, good_ctx: ssl.SSLContext) -> None:
    """A 250 to DATA is not an invitation to send the body: the message was not sent."""
    srv = zoo(tls=good_ctx, data_250=True)
    report = audit(f"submission://127.0.0.1:{srv.port}", zoo_pki, auth_user=USER, password=PASSWORD,
                   send_test=True, mail_from="alice@example.test", rcpt_to="bob@example.org")
    assert failing(report) == {"send-test"}
    assert report.get("send-test").detail.startswith("DATA refused: 250")  # type: ignore[union-attr]
    assert srv.b.messages == []


def test_sni_is_the_expected_name_never_an_ip(zoo: Zoo, zoo_pki: ZooPki) -> None:
    """SNI carries --name (what a multi-certificate server selects on); never an IP literal (RFC 6066 3)."""
    seen: list[str | None] = []
    ctx = server_context(zoo_pki.leaf("good"))
    ctx.sni_callback = lambda sock, name, context: seen.append(name)  # type: ignore[assignment,misc,return-value]
    srv = zoo(tls=ctx)
    url = f"submission://127.0.0.1:{srv.port}"
    assert check_url(url, CheckOptions(cafile=str(zoo_pki.ca_file), name="MAIL.Example.TEST.", quick=True)).ok
    assert seen == ["mail.example.test"]
    seen.clear()
    report = check_url(url, CheckOptions(cafile=str(zoo_pki.ca_file), quick=True))
    assert report.ok and status(report, "name-match") == "PASS"  # 127.0.0.1 is an iPAddress SAN of the leaf
    assert seen == [None]


def test_secrets_echoed_by_the_server_are_redacted(zoo: Zoo, zoo_pki: ZooPki, good_ctx: ssl.SSLContext) -> None:
    """A server quoting the AUTH data back must not put the password into the transcript or the details."""
    import base64

    srv = zoo(tls=good_ctx, echo_auth=True)
    report = audit(f"submission://127.0.0.1:{srv.port}", zoo_pki, auth_user=USER, password="wrong-Pa55word")
    assert failing(report) == {"auth"}
    text = str(report.to_json())
    assert "wrong-Pa55word" not in text
    assert base64.b64encode(f"\0{USER}\0wrong-Pa55word".encode()).decode() not in text
    assert any(line.startswith("S: 535-5.7.8 authentication failed for <redacted>") for line in report.transcript)
