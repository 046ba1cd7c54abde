"""A private CA's certificates in memory: the root itself and the leaves it signs.

The root: self-signed, CA:true with path length 0 (it signs server
certificates only, never another CA), key usage keyCertSign + cRLSign +
digitalSignature (critical), the name constraints (critical, RFC 5280
4.2.1.10: a client that cannot read them must reject the chain), SKI and
AKI. Leaves get the same profile as self-signed ones (x509.leaf_builder)
plus the CA's AKI, so clients holding several generations of one CA pick
the right issuer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from certkit import x509 as cx
from certkit.ca.constraints import Constraints, extension, outside
from certkit.errors import OperationError, UsageError
from certkit.keys import PrivateKey
from certkit.names import Identity

ORGANIZATION = "certkit private CA"


def subject(name: str, generation: int) -> x509.Name:
    """``CN=NAME CA G1, O=certkit private CA``: each generation has its own name."""
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA G{generation}"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
    ])


def make_root(key: PrivateKey, name: str, generation: int, constraints: Constraints, days: int,
              now: dt.datetime | None = None) -> x509.Certificate:
    """The self-signed root of generation ``generation`` of CA ``name``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    public = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject(name, generation))
        .issuer_name(subject(name, generation))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - cx.BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(cx.key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    ext = extension(constraints)
    if ext is not None:
        builder = builder.add_extension(ext, critical=True)
    return builder.sign(key, hashes.SHA256())


def sign_leaf(ca_cert: x509.Certificate, ca_key: PrivateKey, constraints: Constraints, public: cx.PublicKey,
              identities: Sequence[Identity], days: int,
              now: dt.datetime | None = None) -> tuple[x509.Certificate, bool]:
    """A leaf for ``identities`` signed by the CA; and whether its lifetime was cut to the CA's.

    Raises:
        UsageError: a name outside the constraints (exit 2, nothing signed).
        OperationError: the CA certificate has expired (exit 1; rotate it).
    """
    bad = outside(constraints, identities)
    if bad:
        raise UsageError(f"{', '.join(bad)} {'is' if len(bad) == 1 else 'are'} outside what the CA "
                         f"{cx.subject_text(ca_cert)} may sign for ({constraints.describe()})",
                         "use a name under a permitted domain, or a CA created with --permit for it")
    now = now or dt.datetime.now(dt.timezone.utc)
    ca_end = cx.not_after(ca_cert)
    if ca_end <= now:
        raise OperationError(f"the CA certificate {cx.subject_text(ca_cert)} expired on {ca_end:%Y-%m-%d}",
                             "make a successor with `certkit ca rotate NAME`")
    end = now + dt.timedelta(days=days)
    cut = end > ca_end
    builder = cx.leaf_builder(public, identities, now - cx.BACKDATE, min(end, ca_end))
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = builder.issuer_name(ca_cert.subject).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), cut


def key_id(cert: x509.Certificate) -> str | None:
    """Hex SKI of a CA certificate."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
    except x509.ExtensionNotFound:
        return None


def issuer_key_id(cert: x509.Certificate) -> str | None:
    """Hex AKI key identifier of a leaf: which CA generation signed it."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    return aki.key_identifier.hex() if aki.key_identifier else None
