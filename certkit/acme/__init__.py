"""ACME issuance (RFC 8555) on top of the ``acme`` library.

This package's ``__init__`` stays light: ``certkit --help`` and the
self-signed path never import acme, josepy or requests. The heavy modules
load on the first :func:`obtain` call.

Layout:
    problems.py  the one boundary translating acme/requests/josepy/OSError into AcmeError/UsageError
    net.py       JWS POSTs with our own badNonce and Retry-After handling
    polling.py   backoff with a deadline (first poll after ~50 ms, never the library's 1 s sleeps)
    account.py   accounts per directory URL + e-mail, shared between threads, EAB, terms of service
    http01.py    the shared standalone http-01 responder and the webroot writer
    dns01.py     dns-01 through the user's hook, optional resolver polling
    ari.py       ACME Renewal Information (RFC 9773)
    order.py     the order: authorizations, challenges, finalize, download, chain choice
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from certkit.errors import UsageError

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.keys import PrivateKey
    from certkit.names import Identity
    from certkit.settings import AcmeSettings
    from certkit.store import Store

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


def obtain(
    store: Store,
    settings: AcmeSettings,
    identities: Sequence[Identity],
    key: PrivateKey,
    *,
    previous_cert: x509.Certificate | None = None,
    echo: Callable[[str], None] = print,
    deadline: float | None = None,
) -> AcmeResult:
    """Get a certificate for ``identities`` and ``key`` from the ACME CA in ``settings``.

    Thread-safe: concurrent calls (different lineages) share one account per
    directory + e-mail and one http-01 responder per address + port. Nothing
    is written to the store except the ACME account.

    Args:
        store: the state directory (for the account).
        settings: the lineage's ACME settings.
        identities: the names, CN first.
        key: the certificate's private key (the CSR is signed with it).
        previous_cert: the certificate being replaced (ARI "replaces").
        echo: where notices go (rate-limit waits, ARI trouble).
        deadline: seconds the whole order may take (default 300).

    Raises:
        UsageError: settings that cannot work (wildcard over http-01...), exit 2.
        AcmeError: the CA refused, validation failed, the server is unreachable, exit 1.
    """
    from certkit.acme.order import obtain_certificate

    return obtain_certificate(store, settings, identities, key, previous_cert=previous_cert, echo=echo,
                              deadline=deadline)


def renewal_info(settings: AcmeSettings, cert_pem: bytes, directory_url: str | None = None) -> dict[str, Any] | None:
    """Ask the CA for the certificate's ARI window (RFC 9773); None when it offers none.

    For renewal checks: needs no account. The result has the same shape as
    :attr:`AcmeResult.ari`. Failures raise AcmeError.
    """
    from certkit.acme.ari import fetch_for

    return fetch_for(settings, cert_pem, directory_url)
