"""Export formats: PEM, PFX (PKCS#12) and DER, as bytes (callers write them)."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certkit.errors import UsageError
from certkit.keys import PrivateKey
from certkit.secretfile import read_secret_file
from certkit.settings import LineageSettings

PFX_ENCRYPTIONS = ("auto", "legacy", "modern")
# Windows 10 1809 / Server 2019 is build 17763: the first to import AES-256 PFX files.
FIRST_MODERN_WINDOWS_BUILD = 17763
# OpenSSL's and certutil's usual PBKDF2 iteration count; much higher makes
# imports on old Windows crawl without real benefit for a 0600 file.
PFX_KDF_ROUNDS = 2048


def resolve_pfx_encryption(choice: str, system: str | None = None, windows_build: int | None = None) -> str:
    """``auto`` -> ``legacy`` on Windows older than build 17763, else ``modern``."""
    if choice not in PFX_ENCRYPTIONS:
        raise UsageError(f"unknown PFX encryption {choice!r}", "use auto, legacy or modern")
    if choice != "auto":
        return choice
    if system is None:
        import platform

        system = platform.system()
    if system == "Windows":
        if windows_build is None:
            windows_build = sys.getwindowsversion().build if hasattr(sys, "getwindowsversion") else 0
        if windows_build < FIRST_MODERN_WINDOWS_BUILD:
            return "legacy"
    return "modern"


def pfx_bytes(
    key: PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    password: str,
    encryption: str = "modern",
    friendly_name: str | None = None,
) -> bytes:
    """A PKCS#12 file with key, certificate and chain.

    ``legacy``: PBE-SHA1-3DES for key and certificates, SHA-1 MAC (imports
    on Windows Server 2003-2016). ``modern``: PBES2 AES-256-CBC with a
    SHA-256 MAC (Windows 10 1709+/Server 2019+, OpenSSL 3 default).
    """
    from cryptography.hazmat.primitives.serialization import pkcs12

    if encryption == "legacy":
        algorithm = serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(PFX_KDF_ROUNDS)
        algorithm = algorithm.key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        algorithm = algorithm.hmac_hash(hashes.SHA1())  # noqa: S303 - what old Windows accepts
    elif encryption == "modern":
        algorithm = serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(PFX_KDF_ROUNDS)
        algorithm = algorithm.key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        algorithm = algorithm.hmac_hash(hashes.SHA256())
    else:
        raise UsageError(f"unknown PFX encryption {encryption!r}", "use legacy or modern")
    return pkcs12.serialize_key_and_certificates(
        name=friendly_name.encode("utf-8") if friendly_name else None,
        key=key,
        cert=cert,
        cas=list(chain) or None,
        encryption_algorithm=algorithm.build(password.encode("utf-8")),
    )


def der_bytes(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def generate_password() -> str:
    """A random PFX password: 24 URL-safe characters (~143 bits), easy to paste into Windows."""
    return secrets.token_urlsafe(18)


def pfx_password_for(settings: LineageSettings) -> tuple[str, bool]:
    """The PFX password and whether certkit generated it.

    Order (contract): the lineage's password file, env CERTKIT_PFX_PASSWORD,
    else a random one saved next to the PFX.
    """
    if settings.pfx.password_file:
        return read_secret_file(settings.pfx.password_file, "PFX password"), False
    env = os.environ.get("CERTKIT_PFX_PASSWORD")
    if env:
        return env, False
    return generate_password(), True


def default_friendly_name(name: str, cert: x509.Certificate) -> str:
    """PFX friendly name shown by Windows/IIS: lineage and expiry date, to tell versions apart."""
    return f"{name} (certkit, until {cert.not_valid_after_utc:%Y-%m-%d})"


def lineage_pfx(settings: LineageSettings, key: PrivateKey,
                certs: Sequence[x509.Certificate]) -> tuple[bytes, str, bool]:
    """A lineage version's PFX as its settings ask: (bytes, password, whether the password was generated)."""
    password, generated = pfx_password_for(settings)
    pfx = pfx_bytes(key, certs[0], list(certs[1:]), password, resolve_pfx_encryption(settings.pfx.encryption),
                    settings.pfx.friendly_name or default_friendly_name(settings.name, certs[0]))
    return pfx, password, generated
