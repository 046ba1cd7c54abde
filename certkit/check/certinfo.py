"""Facts about a served certificate, and SAN-only name matching."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from certkit import clock


@dataclass
class CertFacts:
    """What the checklist needs to know about the served leaf certificate.

    Fields left None were not available from the source used (quick path).
    """

    der: bytes
    subject: str
    issuer: str
    dns_names: list[str]
    ip_names: list[str]
    not_before: dt.datetime
    not_after: dt.datetime
    serial: str | None = None
    key: str | None = None  # "rsa2048", "ec256", "ed25519" ...
    key_kind: str | None = None  # "rsa", "ec", "ed25519", "ed448", "dsa"
    key_bits: int | None = None
    signature_hash: str | None = None  # "sha256", "sha1", "md5", None for Ed25519/unknown
    eku: list[str] | None = None  # None: no EKU extension (any purpose)
    self_signed: bool = False
    chain_length: int = 1
    detailed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @property
    def names(self) -> list[str]:
        return self.dns_names + self.ip_names

    def to_json(self) -> dict[str, Any]:
        """The report's "certificate" object."""
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "names": self.names,
            "not_before": clock.iso(self.not_before),
            "not_after": clock.iso(self.not_after),
            "serial": self.serial,
            "sha256": self.sha256,
            "key": self.key,
            "signature_hash": self.signature_hash,
            "eku": self.eku,
            "self_signed": self.self_signed,
            "chain_length": self.chain_length,
        }

    def summary_lines(self) -> list[str]:
        """Transcript lines: subject, issuer, names, validity."""
        names = ", ".join(self.names) or "(no SAN)"
        return [
            f"certificate: subject {self.subject}; issuer {self.issuer}",
            f"names: {names}; valid {clock.iso(self.not_before)} to {clock.iso(self.not_after)}",
        ]


def from_der(der: bytes, chain_length: int = 1) -> CertFacts:
    """Every fact certkit reports, read from the DER certificate (certkit.check.der).

    A certificate the small reader refuses is read with cryptography instead
    (issue 11.10): a limit of certkit's parser is never the server's fault.

    Raises:
        ValueError: neither reader understands the bytes.
    """
    from certkit.check.der import parse_certificate

    try:
        f = parse_certificate(der)
    except (ValueError, IndexError) as exc:
        f = _fields_from_cryptography(der, exc)
    kind, bits = f["key_kind"], f["key_bits"]
    label = f"{kind}{bits}" if kind in ("rsa", "ec", "dsa") and bits else kind
    return CertFacts(
        der=der,
        subject=f["subject"],
        issuer=f["issuer"],
        dns_names=list(f["dns_names"]),
        ip_names=list(f["ip_names"]),
        not_before=f["not_before"],
        not_after=f["not_after"],
        serial=f["serial"],
        key=label,
        key_kind=kind,
        key_bits=bits,
        signature_hash=f["signature_hash"] or None,
        eku=list(f["eku"]) if f["eku"] is not None else None,
        self_signed=f["self_signed"],
        chain_length=chain_length,
        detailed=True,
    )


def _fields_from_cryptography(der: bytes, first: Exception) -> dict[str, Any]:
    """The fields of certkit.check.der.parse_certificate, read by cryptography (slower, more thorough)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    from certkit.check.der import EKU_NAMES

    try:
        cert = x509.load_der_x509_certificate(der)
        key = cert.public_key()
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = [str(n) for n in san.get_values_for_type(x509.DNSName)]
            ips = [str(n) for n in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            dns, ips = [], []
        try:
            usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            eku: list[str] | None = [EKU_NAMES.get(oid.dotted_string, oid.dotted_string) for oid in usages]
        except x509.ExtensionNotFound:
            eku = None
        kinds: list[tuple[type, str]] = [(rsa.RSAPublicKey, "rsa"), (ec.EllipticCurvePublicKey, "ec"),
                                         (ed25519.Ed25519PublicKey, "ed25519"), (ed448.Ed448PublicKey, "ed448"),
                                         (dsa.DSAPublicKey, "dsa")]
        kind = next((label for cls, label in kinds if isinstance(key, cls)), "unknown")
        bits = {"ed25519": 256, "ed448": 456}.get(kind, getattr(key, "key_size", None))
        digest = cert.signature_hash_algorithm
        return {
            "subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "serial": format(cert.serial_number, "x"),
            "not_before": cert.not_valid_before_utc, "not_after": cert.not_valid_after_utc,
            "key_kind": kind, "key_bits": bits, "signature_hash": digest.name if digest else "",
            "dns_names": dns, "ip_names": ips, "eku": eku, "self_signed": cert.issuer == cert.subject,
        }
    except ValueError as exc:
        raise ValueError(f"{first}; cryptography: {exc}") from exc


def normalise_name(name: str) -> str:
    """Lower-case A-label form of a host name, or the compressed text of an IP."""
    name = name.strip().rstrip(".")
    try:
        return str(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        pass
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return name.lower()
    return name.lower()


def name_matches(expected: str, dns_names: list[str], ip_names: list[str]) -> bool:
    """SAN-only match of ``expected`` (RFC 6125; the subject CN is never consulted).

    A wildcard matches exactly one whole left-most label (``*.example.com``
    matches ``mail.example.com``, not ``example.com`` or ``a.b.example.com``)
    and never a bare public label like ``*.com``. IP addresses match iPAddress
    entries only (RFC 6125 section 1.7.2).
    """
    want = normalise_name(expected)
    try:
        ip = ipaddress.ip_address(want)
    except ValueError:
        ip = None
    if ip is not None:
        for text in ip_names:
            try:
                if ipaddress.ip_address(text) == ip:
                    return True
            except ValueError:
                continue
        return False
    for pattern in dns_names:
        pat = pattern.lower().rstrip(".")
        if pat == want:
            return True
        if pat.startswith("*.") and "." in pat[2:] and "." in want:
            head, _, rest = want.partition(".")
            if head and rest == pat[2:]:
                return True
    return False
