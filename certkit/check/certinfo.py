"""Facts about a served certificate, and SAN-only name matching.

Two sources: the ``ssl`` module's decoded dict (free after a verified
handshake, keeps the quick path free of the cryptography import) and the DER
bytes parsed with ``cryptography`` (everything: key size, signature hash,
EKU), imported only when needed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any

_SHORT = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "emailAddress": "emailAddress",
}


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
            "not_before": _iso(self.not_before),
            "not_after": _iso(self.not_after),
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
            f"names: {names}; valid {_iso(self.not_before)} to {_iso(self.not_after)}",
        ]


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dn_from_ssl(rdns: Any) -> str:
    parts = []
    for rdn in rdns or ():
        for key, value in rdn:
            parts.append(f"{_SHORT.get(key, key)}={value}")
    # RFC 4514 order (most specific first), as cryptography prints it
    return ",".join(reversed(parts)) or "(empty)"


def _ssl_time(text: str) -> dt.datetime:
    import ssl

    return dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(text), dt.timezone.utc)


def from_ssl_dict(der: bytes, info: dict[str, Any], chain_length: int = 1) -> CertFacts:
    """Facts from ``SSLSocket.getpeercert()`` (only filled after a verified handshake)."""
    dns: list[str] = []
    ips: list[str] = []
    for kind, value in info.get("subjectAltName", ()):
        if kind == "DNS":
            dns.append(value)
        elif kind == "IP Address":
            ips.append(str(ipaddress.ip_address(value.strip())))
    subject = _dn_from_ssl(info.get("subject"))
    issuer = _dn_from_ssl(info.get("issuer"))
    return CertFacts(
        der=der,
        subject=subject,
        issuer=issuer,
        dns_names=dns,
        ip_names=ips,
        not_before=_ssl_time(info["notBefore"]),
        not_after=_ssl_time(info["notAfter"]),
        serial=str(info.get("serialNumber", "")).lower().lstrip("0") or None,
        self_signed=subject == issuer,
        chain_length=chain_length,
    )


def from_der(der: bytes, chain_length: int = 1) -> CertFacts:
    """Every fact, parsed with cryptography.

    Raises:
        ValueError: the bytes are not a certificate cryptography can read.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    cert = x509.load_der_x509_certificate(der)
    dns: list[str] = []
    ips: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = list(san.get_values_for_type(x509.DNSName))
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    eku: list[str] | None = None
    try:
        ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        eku = [oid._name if oid._name != "Unknown OID" else oid.dotted_string for oid in ext]
    except x509.ExtensionNotFound:
        pass
    key = cert.public_key()
    kind: str | None
    bits: int | None
    if isinstance(key, rsa.RSAPublicKey):
        kind, bits, label = "rsa", key.key_size, f"rsa{key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        kind, bits, label = "ec", key.curve.key_size, f"ec{key.curve.key_size}"
    elif isinstance(key, ed25519.Ed25519PublicKey):
        kind, bits, label = "ed25519", 256, "ed25519"
    elif isinstance(key, ed448.Ed448PublicKey):
        kind, bits, label = "ed448", 456, "ed448"
    elif isinstance(key, dsa.DSAPublicKey):
        kind, bits, label = "dsa", key.key_size, f"dsa{key.key_size}"
    else:
        kind, bits, label = None, None, type(key).__name__
    try:
        algo = cert.signature_hash_algorithm
        sig_hash = algo.name if algo is not None else None
    except Exception:
        sig_hash = cert.signature_algorithm_oid._name
    subject = cert.subject.rfc4514_string() or "(empty)"
    issuer = cert.issuer.rfc4514_string() or "(empty)"
    return CertFacts(
        der=der,
        subject=subject,
        issuer=issuer,
        dns_names=dns,
        ip_names=ips,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial=format(cert.serial_number, "x"),
        key=label,
        key_kind=kind,
        key_bits=bits,
        signature_hash=sig_hash,
        eku=eku,
        self_signed=cert.issuer == cert.subject,
        chain_length=chain_length,
        detailed=True,
    )


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
