"""Self-signed certificates, CSRs and certificate facts, all in memory."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certkit.keys import PrivateKey
from certkit.names import Identity, common_name_for

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

# Clients whose clock runs a little behind must not see a not-yet-valid certificate.
BACKDATE = dt.timedelta(hours=1)


def _general_names(identities: Sequence[Identity]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for ident in identities:
        if ident.is_ip:
            out.append(x509.IPAddress(ipaddress.ip_address(ident.value)))
        else:
            out.append(x509.DNSName(ident.value))
    return out


def _subject(identities: Sequence[Identity]) -> x509.Name:
    cn = common_name_for(list(identities))
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])


def self_signed(
    key: PrivateKey,
    identities: Sequence[Identity],
    days: int,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """A self-signed end-entity certificate for ``identities``.

    SHA-256, random 159-bit serial, CN = first name (when it fits), every
    name as SAN, CA:false, key usage fitting the key type (RSA also gets
    keyEncipherment for RSA key exchange on old SChannel), serverAuth and
    clientAuth EKU (MTAs present the same certificate as a client), SKI.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    builder = leaf_builder(key.public_key(), identities, now - BACKDATE, now + dt.timedelta(days=days))
    return builder.issuer_name(_subject(identities)).sign(key, hashes.SHA256())


def leaf_builder(public: PublicKey, identities: Sequence[Identity], start: dt.datetime,
                 end: dt.datetime) -> x509.CertificateBuilder:
    """Everything of an end-entity certificate but its issuer (name, AKI) and signature.

    Shared by :func:`self_signed` and certificates a private CA signs
    (certkit.ca): the same names, key usage, EKU and SKI either way.
    """
    subject = _subject(identities)
    is_rsa = isinstance(public, rsa.RSAPublicKey)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(_general_names(identities)),
                       critical=len(subject) == 0)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=True, key_encipherment=is_rsa), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def key_usage(*, digital_signature: bool = False, key_encipherment: bool = False, key_cert_sign: bool = False,
              crl_sign: bool = False) -> x509.KeyUsage:
    """A KeyUsage with the named bits set and every other one clear."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        key_encipherment=key_encipherment,
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def make_csr(key: PrivateKey, identities: Sequence[Identity]) -> bytes:
    """A PEM CSR for ACME: every name as SAN, CN = first name when it fits."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(identities))
    builder = builder.add_extension(x509.SubjectAlternativeName(_general_names(identities)), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def load_chain(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, in order (empty input: empty list)."""
    if not pem.strip():
        return []
    return x509.load_pem_x509_certificates(pem)


def to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def to_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def sha256_fingerprint(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the DER certificate."""
    return cert.fingerprint(hashes.SHA256()).hex()


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 thumbprint as Windows shows it: upper-case hex, no separators."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - an identifier, not security


def spki_sha256(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the SubjectPublicKeyInfo (DANE 3 1 1, HPKP-style pins)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def not_before(cert: x509.Certificate) -> dt.datetime:
    return cert.not_valid_before_utc


def not_after(cert: x509.Certificate) -> dt.datetime:
    return cert.not_valid_after_utc


def dns_names(cert: x509.Certificate) -> list[str]:
    """SAN DNS names and IP addresses (as text), in certificate order."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out: list[str] = []
    for gn in san:
        if isinstance(gn, x509.DNSName):
            out.append(gn.value)
        elif isinstance(gn, x509.IPAddress):
            out.append(str(gn.value))
    return out


def is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    """True when ``key`` is the private half of the certificate's public key."""
    return spki_der(cert.public_key()) == spki_der(key.public_key())


def spki_der(public_key: Any) -> bytes:
    """A public key as DER SubjectPublicKeyInfo (what certificate and CSR key comparisons compare)."""
    return bytes(public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def subject_text(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty)"


def issuer_text(cert: x509.Certificate) -> str:
    return cert.issuer.rfc4514_string() or "(empty)"


def read_leaf(path: Path) -> x509.Certificate | None:
    """The first certificate in ``path`` (a live or version cert.pem); None when missing, empty or not PEM."""
    try:
        return load_chain(path.read_bytes())[0]
    except (OSError, ValueError, IndexError):
        return None
