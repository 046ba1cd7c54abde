"""`certkit check`: a telnet-style STARTTLS session and a submission-security audit.

Public entry points:

- :func:`check_url` - audit one URL, return a :class:`CheckReport`.
- :func:`verify_deployment` - what deploy and renew call after deploying:
  pass/fail on the certificate only (handshake, pin, SAN name match); other
  findings ride along in the report.
- :func:`certkit.check.fleet.run_many` - many targets concurrently, in input order.

Only the standard library is imported on the check path up to the point a
certificate must be parsed in depth (cryptography, lazily).
"""

from __future__ import annotations

from dataclasses import dataclass

from certkit.check.checks import audit
from certkit.check.options import CheckOptions
from certkit.check.report import FAIL, PASS, SKIP, UNKNOWN, WARN, CheckReport, CheckResult, render_text
from certkit.check.target import Target, parse_target

# The checks a deployment stands or falls on.
DEPLOYMENT_CHECKS = ("connect", "banner", "ehlo", "starttls-offered", "starttls", "tls-handshake",
                     "chain-trust", "name-match", "expected-cert")


@dataclass
class DeploymentOutcome:
    """Result of :func:`verify_deployment`.

    Attributes:
        ok: the expected certificate is served, trusted via the pin, for the name.
        detail: one line: what was served versus what was expected.
        report: the full CheckReport (``report.to_json()`` for JSON).
    """

    ok: bool
    detail: str
    report: CheckReport


def check_url(url: str, options: CheckOptions | None = None) -> CheckReport:
    """Audit one target URL (see certkit.check.target for the forms).

    Raises:
        UsageError: the URL is malformed. Server behaviour never raises; it becomes FAIL lines.
    """
    return audit(parse_target(url), options or CheckOptions())


def verify_deployment(
    url: str,
    expected_cert_pem: bytes,
    name: str,
    timeout: float = 10.0,
    *,
    quick: bool = False,
) -> DeploymentOutcome:
    """Check that ``url`` now serves ``expected_cert_pem`` for ``name``.

    The pinned certificate is the trust anchor, so self-signed and private
    CA certificates verify too. ``ok`` depends only on the certificate
    checks (DEPLOYMENT_CHECKS); the rest of the audit (TLS 1.0, relay...)
    is in ``report`` but does not fail a deployment.

    Args:
        url: smtp://, submission://, smtps:// or HOST:PORT.
        expected_cert_pem: the certificate just deployed (PEM, leaf first; a chain may follow).
        name: the host name the certificate must match (SAN only).
        timeout: seconds for each network step.
        quick: only the main session (no side probes): faster, fewer findings.

    Raises:
        UsageError: the URL is malformed.
    """
    opts = CheckOptions(name=name, expected_pem=expected_cert_pem, timeout=timeout, quick=quick)
    report = audit(parse_target(url), opts)
    bad = [c for c in report.checks if c.id in DEPLOYMENT_CHECKS and c.status in (FAIL, SKIP)]
    cert = report.certificate
    served = (f"served sha256 {cert['sha256'][:16]}... ({cert['subject']}; names {', '.join(cert['names'])})"
              if cert else "no certificate served")
    if bad:
        pin = next((c for c in bad if c.id == "expected-cert"), None)
        first = pin or bad[0]
        detail = f"{url}: {first.id} {first.status}: {first.detail}"
        if cert and first.id != "expected-cert":
            detail += f"; {served}"
        return DeploymentOutcome(False, detail, report)
    return DeploymentOutcome(True, f"{url}: {served} - the expected certificate, valid for {name}", report)


__all__ = [
    "DEPLOYMENT_CHECKS", "FAIL", "PASS", "SKIP", "UNKNOWN", "WARN", "CheckOptions", "CheckReport", "CheckResult",
    "DeploymentOutcome", "Target", "audit", "check_url", "parse_target", "render_text", "verify_deployment",
]
