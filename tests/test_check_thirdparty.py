"""`certkit check` against servers nobody on the team wrote (issue 11 items 2, 3, 4, 7 and 11.1).

- Dovecot 2.3 submission (Debian dovecot-submissiond), a private instance on
  127.0.0.2: good (its stock empty ``250-AUTH `` before TLS), incomplete
  chain, client certificate required, TLS 1.3 only;
- aiosmtpd configured with its own API: good, incomplete chain, TLS 1.3
  only, injection-vulnerable (input kept across the handshake, as before
  aiosmtpd 1.4.6), client certificate required (TLS 1.3 and TLS 1.0-1.2).

Each test asserts the exit code, the status of the check ids that matter,
and that ``openssl s_client -starttls smtp`` agrees on the certificate facts
(verify return code, the leaf served, the client CA names requested).
One server per configuration and module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from certkit.cli import cli
from tests.conftest import skip_or_fail
from tests.servers import dovecot_submission as dovecot
from tests.servers.chain_pki import INTERMEDIATE_CN, NAME, ChainFiles, make_chain
from tests.servers.plain_aiosmtpd import PASSWORD as AIOSMTPD_PASSWORD
from tests.servers.plain_aiosmtpd import USER as AIOSMTPD_USER
from tests.servers.plain_aiosmtpd import plain_aiosmtpd, server_tls

# ----- helpers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> Iterator[ChainFiles]:
    # Under /tmp with 0755 parents: Dovecot's unprivileged processes must traverse them (pytest's are 0700).
    folder = Path(tempfile.mkdtemp(prefix="certkit-thirdparty-", dir="/tmp"))
    folder.chmod(0o755)
    try:
        yield make_chain(folder / "pki")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def check(url: str, *args: str) -> tuple[int, dict[str, Any]]:
    """Run `certkit check URL ARGS --json`; (exit code, the JSON report)."""
    result = CliRunner().invoke(cli, ["check", url, "--name", NAME, "--timeout", "5", "--json", *args])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in doc["checks"]}


def detail(doc: dict[str, Any], check_id: str) -> str:
    return next(str(c["detail"]) for c in doc["checks"] if c["id"] == check_id)


def s_client(address: str, *extra: str) -> str:
    """`openssl s_client -starttls smtp` output (the independent view of the certificate)."""
    if not shutil.which("openssl"):
        skip_or_fail("openssl not installed (the independent cross-check)")
    proc = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect", address, "-servername", NAME,
                           "-showcerts", *extra], input="", capture_output=True, text=True, timeout=20)
    return proc.stdout + proc.stderr


def verify_code(output: str) -> int:
    match = re.search(r"Verify return code: (\d+)", output)
    assert match, output[-800:]
    return int(match.group(1))


def served_leaf_sha256(output: str) -> str:
    pem = output[output.index("-----BEGIN CERTIFICATE-----"):]
    pem = pem[: pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")] + "\n"
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def served_count(output: str) -> int:
    """How many certificates the server sent (s_client's "Certificate chain" lines " N s:...")."""
    chain = output.split("Certificate chain", 1)[1].split("\n---\n", 1)[0]
    return len(re.findall(r"^ ?\d+ s:", chain, flags=re.MULTILINE))


def incomplete_per_s_client(output: str) -> bool:
    """s_client's verdict on a chain missing its intermediate: error 20 at depth 0, return code 21."""
    return "unable to get local issuer certificate" in output and verify_code(output) == 21


# ----- Dovecot submission ---------------------------------------------------------------


@contextlib.contextmanager
def _dovecot(pki: ChainFiles, label: str, cert: Path, **options: Any) -> Iterator[dovecot.DovecotSubmission]:
    reason = dovecot.unavailable_reason()
    if reason:
        skip_or_fail(reason)
    base = pki.root.parent.parent / f"dovecot-{label}"
    try:
        server = dovecot.start_dovecot_submission(base, cert, pki.leaf_key, **options)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        skip_or_fail(f"cannot start a private Dovecot submission: {exc}")
        raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def dovecot_good(pki: ChainFiles) -> Iterator[dovecot.DovecotSubmission]:
    with _dovecot(pki, "good", pki.fullchain) as server:
        yield server


@pytest.fixture(scope="module")
def dovecot_incomplete(pki: ChainFiles) -> Iterator[dovecot.DovecotSubmission]:
    with _dovecot(pki, "incomplete", pki.leaf) as server:
        yield server


@pytest.fixture(scope="module")
def dovecot_tls13(pki: ChainFiles) -> Iterator[dovecot.DovecotSubmission]:
    with _dovecot(pki, "tls13", pki.fullchain, tls13_only=True) as server:
        yield server


@pytest.fixture(scope="module")
def dovecot_client_cert(pki: ChainFiles) -> Iterator[dovecot.DovecotSubmission]:
    with _dovecot(pki, "ccert", pki.fullchain, client_ca=pki.client_ca) as server:
        yield server


def test_dovecot_stock_empty_auth_before_tls_passes(dovecot_good: dovecot.DovecotSubmission,
                                                    pki: ChainFiles) -> None:
    code, doc = check(dovecot_good.url, "--cafile", str(pki.root), "--expect", str(pki.leaf))
    assert code == 0, [c for c in doc["checks"] if c["status"] != "PASS"]
    before_tls = doc["transcript"][: doc["transcript"].index("C: STARTTLS")]
    assert "S: 250-AUTH " in before_tls  # Dovecot's empty mechanism list: no offer (item 2)
    got = statuses(doc)
    assert got["auth-before-tls"] == "PASS" and got["chain-complete"] == "PASS" and got["expected-cert"] == "PASS"
    # Dovecot aborts the handshake when the pipelined NOOP arrives: safe, so PASS (item 3)
    assert got["starttls-injection"] == "PASS"
    assert "rejected the injected bytes" in detail(doc, "starttls-injection")
    seen = s_client(dovecot_good.address, "-CAfile", str(pki.root))
    assert verify_code(seen) == 0 and served_leaf_sha256(seen) == doc["certificate"]["sha256"] == pki.leaf_sha256
    assert served_count(seen) == 2


def test_dovecot_incomplete_chain_fails_even_when_pinned(dovecot_incomplete: dovecot.DovecotSubmission,
                                                         pki: ChainFiles) -> None:
    code, doc = check(dovecot_incomplete.url, "--expect", str(pki.leaf))
    got = statuses(doc)
    # The pin proves identity (expected-cert) but no longer stands in for the chain (item 4).
    assert code == 1 and got["expected-cert"] == "PASS" and got["chain-trust"] == "PASS"
    assert got["chain-complete"] == "FAIL" and doc["ok"] is False
    assert f"issuer CN={INTERMEDIATE_CN}" in detail(doc, "chain-complete")
    code, doc = check(dovecot_incomplete.url, "--cafile", str(pki.root), "--expect", str(pki.leaf))
    assert code == 1 and statuses(doc)["chain-trust"] == "FAIL" and statuses(doc)["chain-complete"] == "FAIL"
    seen = s_client(dovecot_incomplete.address, "-CAfile", str(pki.root))
    assert incomplete_per_s_client(seen)
    assert served_count(seen) == 1 and served_leaf_sha256(seen) == pki.leaf_sha256


def test_dovecot_tls13_only_is_probed_for_injection(dovecot_tls13: dovecot.DovecotSubmission,
                                                    pki: ChainFiles) -> None:
    code, doc = check(dovecot_tls13.url, "--cafile", str(pki.root))
    got = statuses(doc)
    assert code == 0 and got["tls-handshake"] == "PASS" and detail(doc, "tls-handshake").startswith("TLSv1.3")
    assert got["starttls-injection"] == "PASS", detail(doc, "starttls-injection")  # was WARN: probe capped at 1.2
    assert got["tls10-refused"] == got["tls11-refused"] == "PASS"
    assert "Protocol version: TLSv1.3" in s_client(dovecot_tls13.address, "-CAfile", str(pki.root), "-brief")
    assert verify_code(s_client(dovecot_tls13.address, "-CAfile", str(pki.root))) == 0
    assert "CONNECTION ESTABLISHED" not in s_client(dovecot_tls13.address, "-tls1_2", "-brief")


def test_dovecot_client_cert_required(dovecot_client_cert: dovecot.DovecotSubmission, pki: ChainFiles,
                                      tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text(dovecot_client_cert.password + "\n")
    login = ["--cafile", str(pki.root), "--auth-user", dovecot_client_cert.user, "--password-file", str(password)]
    code, doc = check(dovecot_client_cert.url, *login)
    got = statuses(doc)
    # Dovecot completes the handshake, then refuses every login without a valid certificate (item 7).
    assert code == 1 and got["client-cert-required"] == "FAIL" and got["tls-handshake"] == "PASS"
    assert "asks for a client certificate" in detail(doc, "client-cert-required")
    code, doc = check(dovecot_client_cert.url, *login, "--client-cert", str(pki.client),
                      "--client-key", str(pki.client_key))
    got = statuses(doc)
    assert code == 0 and got["auth"] == "PASS" and got["client-cert-required"] == "PASS", doc["checks"]
    assert "asks for a client certificate" in detail(doc, "client-cert-required")
    assert dovecot_client_cert.password not in json.dumps(doc)
    seen = s_client(dovecot_client_cert.address, "-CAfile", str(pki.root))
    assert "Acceptable client certificate CA names" in seen and "certkit test client CA" in seen


# ----- aiosmtpd configured with its own API ------------------------------------------------


@pytest.fixture(scope="module")
def aiosmtpd_good(pki: ChainFiles) -> Iterator[int]:
    with plain_aiosmtpd(server_tls(pki.fullchain, pki.leaf_key)) as port:
        yield port


@pytest.fixture(scope="module")
def aiosmtpd_incomplete(pki: ChainFiles) -> Iterator[int]:
    with plain_aiosmtpd(server_tls(pki.leaf, pki.leaf_key)) as port:
        yield port


@pytest.fixture(scope="module")
def aiosmtpd_tls13(pki: ChainFiles) -> Iterator[int]:
    with plain_aiosmtpd(server_tls(pki.fullchain, pki.leaf_key, tls13_only=True)) as port:
        yield port


@pytest.fixture(scope="module")
def aiosmtpd_injectable(pki: ChainFiles) -> Iterator[int]:
    with plain_aiosmtpd(server_tls(pki.fullchain, pki.leaf_key, tls13_only=True), injection_vulnerable=True) as port:
        yield port


@pytest.fixture(scope="module")
def aiosmtpd_client_cert13(pki: ChainFiles) -> Iterator[int]:
    with plain_aiosmtpd(server_tls(pki.fullchain, pki.leaf_key, client_ca=pki.client_ca)) as port:
        yield port


@pytest.fixture(scope="module")
def aiosmtpd_client_cert_old(pki: ChainFiles) -> Iterator[int]:
    ctx = server_tls(pki.fullchain, pki.leaf_key, client_ca=pki.client_ca, min_tls10=True, max_tls12=True)
    with plain_aiosmtpd(ctx) as port:
        yield port


def submission(port: int) -> str:
    return f"submission://127.0.0.1:{port}"


def test_aiosmtpd_good(aiosmtpd_good: int, pki: ChainFiles, tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text(AIOSMTPD_PASSWORD + "\n")
    code, doc = check(submission(aiosmtpd_good), "--cafile", str(pki.root), "--expect", str(pki.leaf),
                      "--auth-user", AIOSMTPD_USER, "--password-file", str(password))
    assert code == 0 and doc["ok"], [c for c in doc["checks"] if c["status"] != "PASS"]
    assert {s for s in statuses(doc).values()} == {"PASS"}
    assert "certkit test root" in detail(doc, "chain-complete")
    seen = s_client(f"127.0.0.1:{aiosmtpd_good}", "-CAfile", str(pki.root))
    assert verify_code(seen) == 0 and served_count(seen) == 2
    assert served_leaf_sha256(seen) == doc["certificate"]["sha256"] == pki.leaf_sha256


def test_aiosmtpd_incomplete_chain(aiosmtpd_incomplete: int, pki: ChainFiles) -> None:
    code, doc = check(submission(aiosmtpd_incomplete), "--expect", str(pki.leaf))
    assert code == 1 and statuses(doc)["chain-complete"] == "FAIL" and statuses(doc)["expected-cert"] == "PASS"
    assert f"issuer CN={INTERMEDIATE_CN}" in detail(doc, "chain-complete")
    seen = s_client(f"127.0.0.1:{aiosmtpd_incomplete}", "-CAfile", str(pki.root))
    assert incomplete_per_s_client(seen) and served_count(seen) == 1


def test_aiosmtpd_tls13_only_probed_at_tls13(aiosmtpd_tls13: int, pki: ChainFiles) -> None:
    code, doc = check(submission(aiosmtpd_tls13), "--cafile", str(pki.root))
    assert code == 0, [c for c in doc["checks"] if c["status"] != "PASS"]
    assert statuses(doc)["starttls-injection"] == "PASS"
    assert "discarded" in detail(doc, "starttls-injection")  # a real TLS 1.3 probe, QUIT's 221 first
    assert verify_code(s_client(f"127.0.0.1:{aiosmtpd_tls13}", "-CAfile", str(pki.root))) == 0


def test_aiosmtpd_injection_vulnerable_fails_at_tls13(aiosmtpd_injectable: int, pki: ChainFiles) -> None:
    code, doc = check(submission(aiosmtpd_injectable), "--cafile", str(pki.root))
    got = statuses(doc)
    assert code == 1 and got["starttls-injection"] == "FAIL"
    # A TLS 1.3-only server has no lower version to fall back to: fallback-scsv is SKIP, not a finding.
    assert {c: s for c, s in got.items() if s != "PASS"} == {"starttls-injection": "FAIL", "fallback-scsv": "SKIP"}
    assert verify_code(s_client(f"127.0.0.1:{aiosmtpd_injectable}", "-CAfile", str(pki.root))) == 0


def test_aiosmtpd_client_cert_required_tls13(aiosmtpd_client_cert13: int, pki: ChainFiles) -> None:
    code, doc = check(submission(aiosmtpd_client_cert13), "--cafile", str(pki.root))
    got = statuses(doc)
    # Was "FAIL ehlo-after-tls: the server closed the connection": now named for what it is.
    assert code == 1 and got["client-cert-required"] == "FAIL" and got["ehlo-after-tls"] == "SKIP"
    assert got["tls-handshake"] == got["chain-trust"] == got["chain-complete"] == "PASS"
    code, doc = check(submission(aiosmtpd_client_cert13), "--cafile", str(pki.root), "--client-cert",
                      str(pki.client), "--client-key", str(pki.client_key))
    assert code == 0 and statuses(doc)["client-cert-required"] == "PASS", doc["checks"]
    # TLS 1.3 sends the request encrypted after the handshake: s_client shows it over TLS 1.2
    seen = s_client(f"127.0.0.1:{aiosmtpd_client_cert13}", "-CAfile", str(pki.root), "-tls1_2", "-state")
    assert "read server certificate request" in seen and "CONNECTION ESTABLISHED" not in seen
    seen = s_client(f"127.0.0.1:{aiosmtpd_client_cert13}", "-CAfile", str(pki.root), "-tls1_2",
                    "-cert", str(pki.client), "-key", str(pki.client_key))
    # Python's ssl sends no CA names list, but the request itself shows as "Client Certificate Types"
    assert "Client Certificate Types" in seen and verify_code(seen) == 0


def test_aiosmtpd_client_cert_required_version_probes_unknown(aiosmtpd_client_cert_old: int,
                                                              pki: ChainFiles) -> None:
    url = submission(aiosmtpd_client_cert_old)
    code, doc = check(url, "--cafile", str(pki.root))
    got = statuses(doc)
    # TLS 1.0 is on, but without a certificate every handshake fails: that is no proof it is off (item 7).
    assert code == 1 and got["client-cert-required"] == "FAIL"
    assert got["tls10-refused"] == got["tls11-refused"] == "UNKNOWN"
    text = CliRunner().invoke(cli, ["check", url, "--name", NAME, "--cafile", str(pki.root), "--timeout", "5"])
    assert re.search(r"^UNKNOWN  tls10-refused", text.stdout, re.MULTILINE)
    assert "UNKNOWN" in text.stdout.splitlines()[-1] and text.exit_code == 1
    code, doc = check(url, "--cafile", str(pki.root), "--client-cert", str(pki.client), "--client-key",
                      str(pki.client_key))
    got = statuses(doc)
    assert code == 1 and got["tls10-refused"] == got["tls11-refused"] == "FAIL"  # with a certificate: the truth
    code, doc = check(url, "--cafile", str(pki.root), "--client-cert", str(pki.stranger), "--client-key",
                      str(pki.stranger_key))
    assert code == 1 and "refused the client certificate" in detail(doc, "client-cert-required")
    # s_client agrees: TLS 1.0 works once a client certificate is presented
    seen = s_client(f"127.0.0.1:{aiosmtpd_client_cert_old}", "-CAfile", str(pki.root), "-tls1",
                    "-cipher", "DEFAULT:@SECLEVEL=0", "-cert", str(pki.client), "-key", str(pki.client_key))
    assert "Protocol  : TLSv1\n" in seen and "Client Certificate Types" in seen


# aiosmtpd warns about auth_require_tls=False, which on an implicit-TLS port is no weakness.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls_incomplete_chain_and_client_cert(pki: ChainFiles) -> None:
    with plain_aiosmtpd(server_tls(pki.leaf, pki.leaf_key), implicit_tls=True) as port:
        code, doc = check(f"smtps://127.0.0.1:{port}", "--expect", str(pki.leaf))
        assert code == 1 and statuses(doc)["chain-complete"] == "FAIL" and statuses(doc)["expected-cert"] == "PASS"
        proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.root)],
                              input="", capture_output=True, text=True, timeout=20)
        assert incomplete_per_s_client(proc.stdout + proc.stderr)
    with plain_aiosmtpd(server_tls(pki.fullchain, pki.leaf_key, client_ca=pki.client_ca), implicit_tls=True) as port:
        code, doc = check(f"smtps://127.0.0.1:{port}", "--cafile", str(pki.root))
        got = statuses(doc)
        # Was "FAIL banner": the first read inside TLS is where TLS 1.3 shows the refusal.
        assert code == 1 and got["client-cert-required"] == "FAIL" and got["banner"] == "SKIP", doc["checks"]
        code, doc = check(f"smtps://127.0.0.1:{port}", "--cafile", str(pki.root), "--client-cert", str(pki.client),
                          "--client-key", str(pki.client_key))
        assert code == 0 and statuses(doc)["banner"] == "PASS", doc["checks"]


@pytest.mark.parametrize("max_tls12", [False, True])
def test_openssl_alerts_name_the_missing_client_certificate(pki: ChainFiles, max_tls12: bool) -> None:
    """A blocking OpenSSL server (unlike asyncio's) sends its alert: 116 certificate_required over TLS 1.3,
    40 handshake_failure (after a CertificateRequest) over TLS 1.2."""
    from tests.servers.zoo import Behaviour, ZooServer

    ctx = server_tls(pki.fullchain, pki.leaf_key, client_ca=pki.client_ca, max_tls12=max_tls12)
    server = ZooServer(Behaviour(tls=ctx, implicit_tls=True))
    try:
        code, doc = check(f"smtps://127.0.0.1:{server.port}", "--cafile", str(pki.root))
    finally:
        server.close()
    got = statuses(doc)
    assert code == 1 and got["client-cert-required"] == "FAIL" and got["banner"] == "SKIP"
    evidence = "SSLV3_ALERT_HANDSHAKE_FAILURE, after the server's CertificateRequest" if max_tls12 else \
        "TLS alert TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert evidence in detail(doc, "client-cert-required")
    assert got["tls10-refused"] == "PASS"  # refused with alert 70 protocol_version: about the version, so it counts


def test_unknown_is_no_failure_and_keeps_the_columns() -> None:
    from certkit.check import CheckReport, render_text

    report = CheckReport("smtp://mx.example.test")
    report.add("tls-handshake", "PASS", "TLSv1.3")
    report.add("tls10-refused", "UNKNOWN", "unknown: refused for want of a client certificate")
    text = render_text(report, transcript=False)
    assert report.ok and report.to_json()["checks"][1]["status"] == "UNKNOWN"
    assert "PASS     tls-handshake" in text and "UNKNOWN  tls10-refused" in text and "(1 PASS, 1 UNKNOWN)" in text


def test_expired_pinned_leaf_chain_trust_does_not_contradict_the_pin(tmp_path: Path) -> None:
    from tests.servers.zoo import ZooPki, server_context

    zoo = ZooPki(tmp_path / "zoo")
    expired = zoo.leaf("expired-pin", names=(NAME,), self_signed=True, days_before=30, days_after=-1)
    with plain_aiosmtpd(server_context(expired)) as port:
        code, doc = check(submission(port), "--expect", str(expired.cert))
    got = statuses(doc)
    assert code == 1 and got["expected-cert"] == "PASS" and got["time-left"] == "FAIL"
    assert got["chain-trust"] == "FAIL" and "not the pinned one" not in detail(doc, "chain-trust")
    assert "expired" in detail(doc, "chain-trust")


@pytest.mark.parametrize("flags, message", [
    (["--client-cert", "{client}", "--client-key", "{leaf_key}"], "does not match"),
    (["--client-cert", "{missing}"], "cannot read --client-cert"),
    (["--client-cert", "{client}"], "holds no private key"),
    (["--client-key", "{client_key}"], "--client-key needs --client-cert"),
])
def test_client_cert_options_are_validated(pki: ChainFiles, flags: list[str], message: str) -> None:
    paths = {"client": pki.client, "leaf_key": pki.leaf_key, "client_key": pki.client_key,
             "missing": pki.root.parent / "missing.pem"}
    args = [f.format(**paths) for f in flags]
    result = CliRunner().invoke(cli, ["check", "smtp://127.0.0.1:1", *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
