"""Verdicts against aiosmtpd servers configured directly with aiosmtpd's own API (not certkit smtpd).

- A man in the middle serving another certificate must never receive the
  AUTH credentials or the test message (issue: credentials withheld).
- A server without STARTTLS that offers AUTH in clear and relays for anyone
  (the seed's `telnet localhost 25` server) gets those faults reported,
  not SKIPped.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from certkit.check import CheckOptions, CheckReport, check_url
from tests.servers.net import free_port
from tests.servers.zoo import NAME, PASSWORD, USER, ZooPki, server_context


@dataclass
class Seen:
    """What the server received: every AUTH attempt and every message."""

    logins: list[bytes] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)


@contextlib.contextmanager
def recording_server(ctx: ssl.SSLContext | None, *, auth_in_clear: bool = False) -> Iterator[tuple[int, Seen]]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    seen = Seen()

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            seen.messages.append(envelope.content)
            return "250 2.0.0 accepted"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            seen.logins.append(data.login + b":" + data.password)
            return AuthResult(success=data.login == USER.encode() and data.password == PASSWORD.encode())
        return AuthResult(success=False)

    port = free_port()
    kwargs: dict[str, Any] = {"authenticator": authenticator}
    if ctx is not None:
        kwargs.update(tls_context=ctx, require_starttls=True, auth_required=True, auth_require_tls=True)
    else:  # the seed's server: no TLS, AUTH in clear, relays for anyone
        kwargs.update(auth_require_tls=not auth_in_clear, auth_required=False)
    ctrl = Controller(Handler(), hostname="127.0.0.1", port=port, server_hostname="plain.example.test",
                      ready_timeout=10, **kwargs)
    ctrl.start()
    try:
        yield port, seen
    finally:
        ctrl.stop()


def _status(report: CheckReport, check_id: str) -> tuple[str, str]:
    result = report.get(check_id)
    assert result is not None, [c.id for c in report.checks]
    return result.status, result.detail


def test_credentials_withheld_from_a_server_with_the_wrong_certificate(zoo_pki: ZooPki) -> None:
    served, expected = zoo_pki.leaf("mitm-served"), zoo_pki.leaf("mitm-expected")
    options = dict(cafile=str(zoo_pki.ca_file), name=NAME, timeout=3.0, expected_pem=expected.cert_pem,
                   auth_user=USER, password=PASSWORD, send_test=True, mail_from="alice@example.test",
                   rcpt_to="bob@example.org")
    with recording_server(server_context(served)) as (port, seen):
        report = check_url(f"submission://127.0.0.1:{port}", CheckOptions(**options))  # type: ignore[arg-type]
        assert _status(report, "expected-cert")[0] == "FAIL"
        for check_id in ("auth", "send-test"):
            status, detail = _status(report, check_id)
            assert status == "SKIP" and "credentials withheld" in detail and "expected-cert" in detail
        assert seen.logins == [] and seen.messages == []  # the man in the middle got nothing

        # Only the loudly named override sends them, and the report says so.
        insecure = check_url(f"submission://127.0.0.1:{port}",
                             CheckOptions(**options, insecure_auth=True))  # type: ignore[arg-type]
    assert seen.logins == [f"{USER}:{PASSWORD}".encode()] and len(seen.messages) == 1
    status, detail = _status(insecure, "auth")
    assert status == "WARN" and "INSECURE" in detail
    assert PASSWORD not in "\n".join(insecure.transcript)


@pytest.mark.integration  # seconds of real processes
def test_no_starttls_still_reports_plaintext_auth(zoo_pki: ZooPki) -> None:
    with recording_server(None, auth_in_clear=True) as (port, seen):
        report = check_url(f"submission://127.0.0.1:{port}", CheckOptions(timeout=3.0))
    assert _status(report, "starttls-offered")[0] == "FAIL"
    for check_id in ("auth-before-tls", "plaintext-auth-refused"):
        assert _status(report, check_id)[0] == "FAIL", (check_id, report.get(check_id))
    assert all(USER.encode() not in login for login in seen.logins)  # only the dummy probe login


def test_no_starttls_still_reports_an_open_relay(zoo_pki: ZooPki) -> None:
    with recording_server(None) as (port, seen):
        report = check_url(f"smtp://127.0.0.1:{port}", CheckOptions(timeout=3.0))
    assert _status(report, "starttls-offered")[0] == "FAIL"
    assert _status(report, "relay-refused")[0] == "FAIL", report.get("relay-refused")
    assert seen.messages == []  # the relay probe stops before DATA
