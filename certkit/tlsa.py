"""TLSA record data (RFC 6698, RFC 7671): what a record says about a certificate, and whether it matches.

Pure values: :func:`association` computes the certificate-association data
of a certificate for a selector and matching type, :func:`matches` applies
RFC 7671's rules to a served chain, and :class:`Tlsa` is one record's data
in the zone-file form ``3 1 1 HEX``. Both the record maker (certkit.dane)
and the checker (certkit.check.dane) use this module, so what certkit
publishes and what it checks are computed by the same code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

# Certificate usages (RFC 7218 mnemonics).
PKIX_TA, PKIX_EE, DANE_TA, DANE_EE = 0, 1, 2, 3
# Selectors and matching types.
FULL_CERT, SPKI = 0, 1
EXACT, SHA256, SHA512 = 0, 1, 2

USAGE_NAMES = {PKIX_TA: "PKIX-TA", PKIX_EE: "PKIX-EE", DANE_TA: "DANE-TA", DANE_EE: "DANE-EE"}


@dataclass(frozen=True)
class Tlsa:
    """One TLSA record's data: usage, selector, matching type and the association data (bytes)."""

    usage: int
    selector: int
    mtype: int
    data: bytes

    def text(self) -> str:
        """The record data as a zone file and ``CERTKIT_DNS_VALUE`` carry it: ``3 1 1 HEX`` (lower-case hex)."""
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"

    @classmethod
    def parse(cls, text: str) -> Tlsa:
        """``"3 1 1 ABCD..."`` (hex may be split by spaces, any case) -> Tlsa; ValueError when malformed."""
        parts = text.split()
        if len(parts) < 4 or not all(p.isdigit() for p in parts[:3]):
            raise ValueError(f"{text!r} is not TLSA record data (USAGE SELECTOR MTYPE HEX)")
        usage, selector, mtype = (int(p) for p in parts[:3])
        if usage > 255 or selector > 255 or mtype > 255:
            raise ValueError(f"{text!r}: usage, selector and matching type are 0-255")
        return cls(usage, selector, mtype, bytes.fromhex("".join(parts[3:])))


def selected(cert_der: bytes, selector: int) -> bytes | None:
    """The part of the certificate a selector names: the whole DER (0) or its SubjectPublicKeyInfo (1)."""
    if selector == FULL_CERT:
        return cert_der
    if selector == SPKI:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        cert = x509.load_der_x509_certificate(cert_der)
        return cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return None


def digest(data: bytes, mtype: int) -> bytes | None:
    """The association data for matching type ``mtype`` (0 exact, 1 SHA-256, 2 SHA-512), None if unknown."""
    if mtype == EXACT:
        return data
    if mtype == SHA256:
        return hashlib.sha256(data).digest()
    if mtype == SHA512:
        return hashlib.sha512(data).digest()
    return None


def association(cert_der: bytes, usage: int = DANE_EE, selector: int = SPKI, mtype: int = SHA256) -> Tlsa:
    """The TLSA record that names ``cert_der`` (a certificate in DER) with these parameters."""
    part = selected(cert_der, selector)
    value = digest(part, mtype) if part is not None else None
    if value is None:
        raise ValueError(f"unknown selector {selector} or matching type {mtype}")
    return Tlsa(usage, selector, mtype, value)


def spki_association(spki_der: bytes, usage: int = DANE_EE) -> Tlsa:
    """``USAGE 1 1`` for a public key alone (a staged next key has no certificate yet)."""
    return Tlsa(usage, SPKI, SHA256, hashlib.sha256(spki_der).digest())


@dataclass(frozen=True)
class Match:
    """Which record matched which certificate of the served chain (index 0 = the leaf)."""

    record: Tlsa
    position: int


def matches(records: Sequence[Tlsa], chain_der: Sequence[bytes]) -> list[Match]:
    """The records that match the served chain by RFC 7671 / RFC 7672 rules.

    DANE-EE (3) matches the leaf only (names and dates are not checked,
    RFC 7672 section 3.1.1); DANE-TA (2) matches a CA certificate the server
    sends (RFC 7671 section 5.2.2: the trust anchor must be in the chain
    the server presents, SMTP servers have to include it). PKIX usages
    (0, 1) are unused for SMTP (RFC 7672 section 3.1.3) and never match
    here. Unknown selectors and matching types are ignored (RFC 6698
    section 4.1: unusable records).
    """
    found: list[Match] = []
    for record in records:
        if record.usage == DANE_EE:
            positions: Sequence[int] = [0] if chain_der else []
        elif record.usage == DANE_TA:
            positions = range(1, len(chain_der))
        else:
            continue
        for position in positions:
            part = selected(chain_der[position], record.selector)
            if part is not None and digest(part, record.mtype) == record.data:
                found.append(Match(record, position))
                break
    return found


def owner_name(host: str, port: int = 25) -> str:
    """The TLSA owner name for a TCP service: ``_PORT._tcp.HOST`` (no trailing dot)."""
    return f"_{port}._tcp.{host.rstrip('.').lower()}"
