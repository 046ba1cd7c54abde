"""CA directory URLs and the result of an order: the light part of the ACME package.

Everything here imports nothing heavy, so `certkit issue --help`, settings
validation and the order modules can share it without a cycle through
the package ``__init__``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from certkit.errors import UsageError

LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
SHORTHANDS = {"letsencrypt": LETSENCRYPT, "letsencrypt-staging": LETSENCRYPT_STAGING}


@dataclass
class AcmeResult:
    """What :func:`obtain` got from the CA.

    Attributes:
        cert_pem: the leaf certificate (PEM).
        chain_pem: the intermediates (PEM, possibly several; the chosen chain).
        directory_url: the resolved directory URL (the lineage's "source").
        ari: None, or the renewal window the CA suggests (see :mod:`certkit.acme.ari`).
        account_url: the account that ordered the certificate.
    """

    cert_pem: bytes
    chain_pem: bytes
    directory_url: str
    ari: dict[str, Any] | None = None
    account_url: str | None = None


def resolve_server(server: str | None) -> str:
    """The directory URL for ``--server`` (a URL or a shorthand); exit 2 for anything else."""
    value = (server or "letsencrypt").strip()
    if value.lower() in SHORTHANDS:
        return SHORTHANDS[value.lower()]
    if value.startswith("https://") or value.startswith("http://"):
        return value
    raise UsageError(f"--server {value!r} is neither a URL nor a known CA",
                     "pass the CA's directory URL (https://...) or letsencrypt / letsencrypt-staging")


# Where a dry run orders: the CA's staging directory when it has a known one (same names, untrusted roots,
# generous rate limits), else the same server.
STAGING = {LETSENCRYPT: LETSENCRYPT_STAGING}


def dry_run_server(directory_url: str) -> str:
    """The directory a dry run talks to instead of ``directory_url``."""
    return STAGING.get(directory_url, directory_url)
