"""ACME issuance (RFC 8555) on top of the ``acme`` library.

This package's ``__init__`` stays light: ``certkit --help`` and the
self-signed path never import acme, josepy or requests. The heavy modules
load on the first :func:`obtain` call.

Layout:
    (polling: certkit.polling's Backoff - first poll after ~50 ms, never the library's 1 s sleeps)
    problems.py  the one boundary translating acme/requests/josepy/OSError into AcmeError/UsageError
    net.py       JWS POSTs with our own badNonce and Retry-After handling
    account.py   accounts per directory URL + e-mail, shared between threads, EAB, terms of service
    http01.py    the shared standalone http-01 responder and the webroot writer
    dns01.py     dns-01 through the user's hook
    dnswait.py   waiting for the TXT records at a resolver or the zone's own name servers
    ari.py       ACME Renewal Information (RFC 9773)
    revocation.py revocation (RFC 8555 section 7.6), with the account key or the certificate's key
    order.py     the order: authorizations, challenges, finalize, download, chain choice
    directory.py directory URL shorthands and AcmeResult (light; what the others share)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from certkit.acme.directory import (
    LETSENCRYPT,
    LETSENCRYPT_STAGING,
    SHORTHANDS,
    AcmeResult,
    dry_run_server,
    resolve_server,
)

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.keys import PrivateKey
    from certkit.names import Identity
    from certkit.progress import StatusLine
    from certkit.settings import AcmeSettings
    from certkit.store import Store

def obtain(
    store: Store,
    settings: AcmeSettings,
    identities: Sequence[Identity],
    key: PrivateKey | None,
    *,
    csr_pem: bytes | None = None,
    previous_cert: x509.Certificate | None = None,
    echo: Callable[[str], None] = print,
    deadline: float | None = None,
    dry_run: bool = False,
    progress: StatusLine | None = None,
) -> AcmeResult:
    """Get a certificate for ``identities`` and ``key`` (or a ready CSR) from the ACME CA in ``settings``.

    Thread-safe: concurrent calls (different lineages) share one account per
    directory + e-mail and one http-01 responder per address + port. Nothing
    is written to the store except the ACME account (not even that with ``dry_run``).

    Args:
        store: the state directory (for the account).
        settings: the lineage's ACME settings.
        identities: the names, CN first (for a CSR: the CSR's names).
        key: the certificate's private key (the CSR is signed with it); None with ``csr_pem``.
        csr_pem: a CSR made elsewhere (`issue --csr`): sent as it is; the key stays where it was made.
        previous_cert: the certificate being replaced (ARI "replaces").
        echo: where notices go (rate-limit waits, ARI trouble).
        deadline: seconds the whole order may take (default 300; a dns-01 propagation wait comes on top).
        dry_run: order from the CA's staging directory where it has one (Let's Encrypt), else the
            same server, and store no new account (a stored one is used).
        progress: the status line of the dns-01 propagation wait (default: plain lines through ``echo``).

    Raises:
        UsageError: settings that cannot work (wildcard over http-01...), exit 2.
        AcmeError: the CA refused, validation failed, the server is unreachable, exit 1.
    """
    from certkit.acme.order import obtain_certificate

    return obtain_certificate(store, settings, identities, key, csr_pem=csr_pem, previous_cert=previous_cert,
                              echo=echo, deadline=deadline, dry_run=dry_run, progress=progress)


def revoke(store: Store, settings: AcmeSettings, directory_url: str | None, cert: x509.Certificate, reason: int,
           cert_key: PrivateKey | None = None, echo: Callable[[str], None] = print) -> None:
    """Revoke ``cert`` at its CA (RFC 8555 section 7.6) with the account key, or with ``cert_key``.

    Raises:
        AcmeError: the CA refused (already revoked, not authorized) or is unreachable, exit 1.
    """
    from certkit.acme.revocation import revoke_certificate

    revoke_certificate(store, settings, directory_url, cert, reason, cert_key, echo)


def renewal_info(settings: AcmeSettings, cert_pem: bytes, directory_url: str | None = None) -> dict[str, Any] | None:
    """Ask the CA for the certificate's ARI window (RFC 9773); None when it offers none.

    For renewal checks: needs no account. The result has the same shape as
    :attr:`AcmeResult.ari`. Failures raise AcmeError.
    """
    from certkit.acme.ari import fetch_for

    return fetch_for(settings, cert_pem, directory_url)


__all__ = [
    "LETSENCRYPT",
    "LETSENCRYPT_STAGING",
    "SHORTHANDS",
    "AcmeResult",
    "dry_run_server",
    "obtain",
    "renewal_info",
    "resolve_server",
    "revoke",
]
