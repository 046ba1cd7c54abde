"""ACME Renewal Information (ARI, RFC 9773).

A CA that offers ``renewalInfo`` in its directory suggests, per certificate,
a window in which to renew (earlier than usual when it plans a mass
revocation). certkit stores that window in the lineage state and, when it
re-issues, names the certificate it replaces in the new order (``replaces``),
which lets the CA exempt the renewal from rate limits.

The certificate ID (RFC 9773 section 4.1) is
``base64url(AKI keyIdentifier) "." base64url(serial as DER INTEGER content)``,
both without padding.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from cryptography import x509

from certkit import clock
from certkit.polling import parse_retry_after

DEFAULT_RETRY = dt.timedelta(hours=6)  # RFC 9773 section 4.3.3: absent Retry-After, ask again in ~6 h
MAX_RETRY = dt.timedelta(days=1)  # ...and clamp long ones to a day


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def serial_bytes(serial: int) -> bytes:
    """The serial number's DER INTEGER content octets (two's complement, minimal, leading 0x00 if needed)."""
    length = serial.bit_length() // 8 + 1  # one more bit than needed for the sign
    return serial.to_bytes(length, "big", signed=True)


def cert_id(cert: x509.Certificate) -> str:
    """The RFC 9773 certificate ID; ValueError when the certificate has no AKI keyIdentifier."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound as exc:
        raise ValueError("the certificate has no Authority Key Identifier") from exc
    if aki.key_identifier is None:
        raise ValueError("the certificate's Authority Key Identifier has no keyIdentifier")
    return f"{_b64(aki.key_identifier)}.{_b64(serial_bytes(cert.serial_number))}"


def _parse_time(value: Any, what: str) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError(f"renewalInfo {what} is missing")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    # RFC 3339 allows more fractional digits than Python 3.10's fromisoformat accepts.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits):]}"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed


def parse(body: Any, retry_after_header: str | None = None, now: dt.datetime | None = None) -> dict[str, Any]:
    """The lineage-state form of a renewalInfo response.

    Returns:
        ``{"start", "end", "explanation_url" (or None), "checked", "retry_after"}``, times as ISO 8601 UTC.

    Raises:
        ValueError: the body is not a valid renewalInfo object (end before start, missing fields).
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    if not isinstance(body, dict) or not isinstance(body.get("suggestedWindow"), dict):
        raise ValueError("renewalInfo has no suggestedWindow")
    window = body["suggestedWindow"]
    start, end = _parse_time(window.get("start"), "start"), _parse_time(window.get("end"), "end")
    if end < start:
        raise ValueError("renewalInfo window ends before it starts")
    seconds = parse_retry_after(retry_after_header, now=now.timestamp)
    retry = DEFAULT_RETRY if seconds is None else min(dt.timedelta(seconds=seconds), MAX_RETRY)
    explanation = body.get("explanationURL")
    return {
        "start": clock.iso(start),
        "end": clock.iso(end),
        "explanation_url": explanation if isinstance(explanation, str) else None,
        "checked": clock.iso(now),
        "retry_after": clock.iso(now + retry),
    }


def fetch(get: Any, base_url: str, cert: x509.Certificate) -> dict[str, Any]:
    """GET ``base_url/<cert id>`` with ``get(url) -> requests.Response`` and parse it."""
    response = get(f"{base_url.rstrip('/')}/{cert_id(cert)}")
    return parse(response.json(), response.headers.get("Retry-After"))


def fetch_for(settings: Any, cert_pem: bytes, directory_url: str | None = None) -> dict[str, Any] | None:
    """ARI for a stored certificate using a lineage's ACME settings (no account needed)."""
    from certkit.acme.account import get_directory, resource
    from certkit.acme.directory import resolve_server
    from certkit.acme.net import Network
    from certkit.acme.problems import translate

    url = directory_url or resolve_server(settings.server)
    cert = x509.load_pem_x509_certificate(cert_pem)
    with translate(url, "give renewal information"):
        directory = get_directory(url, settings.ca_bundle)
        base = resource(directory, "renewalInfo")
        if not base:
            return None
        net = Network(ca_bundle=settings.ca_bundle)
        try:
            return fetch(net.get, base, cert)
        finally:
            net.close()
