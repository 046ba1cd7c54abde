"""Certificate revocation (RFC 8555 section 7.6).

A revocation request is signed either by the account that ordered the
certificate (``kid``, the default) or by the certificate's own private key
(``jwk``), which RFC 8555 allows so that a key holder can revoke without the
account - e.g. after the account key was lost or the key leaked. The reason
is an RFC 5280 CRLReason code; Let's Encrypt accepts 0, 1, 3, 4 and 5.
"""

from __future__ import annotations

from acme import messages
from cryptography import x509
from josepy.jwk import JWK

from certkit.acme.account import account_for, alg_for
from certkit.acme.directory import resolve_server
from certkit.acme.net import Network
from certkit.acme.problems import translate
from certkit.callbacks import Echo
from certkit.keys import PrivateKey
from certkit.settings import AcmeSettings
from certkit.store import Store


def revoke_certificate(store: Store, settings: AcmeSettings, directory_url: str | None, cert: x509.Certificate,
                       reason: int, cert_key: PrivateKey | None = None, echo: Echo = print) -> None:
    """Ask the CA to revoke ``cert`` with CRLReason ``reason``.

    Args:
        directory_url: the CA that issued it (the lineage's source); None: ``settings.server``.
        cert_key: sign with the certificate's key instead of the account key.

    Raises:
        AcmeError: the CA refused (``alreadyRevoked``, ``unauthorized``...) or cannot be reached.
    """
    url = directory_url or resolve_server(settings.server)
    payload = messages.Revocation(certificate=cert, reason=reason)
    if cert_key is None:
        with translate(url, "use the ACME account"):
            account = account_for(store, settings, url, echo)
        net = account.network(settings.ca_bundle, echo, None)
        revoke_url = account.directory["revokeCert"]
    else:
        from certkit.acme.account import get_directory

        with translate(url, "read the CA's directory"):
            directory = get_directory(url, settings.ca_bundle)
        jwk = JWK.load(_pem_of(cert_key))
        net = Network(jwk, alg=alg_for(jwk), ca_bundle=settings.ca_bundle, new_nonce_url=directory["newNonce"],
                      echo=echo)
        revoke_url = directory["revokeCert"]
    try:
        with translate(url, "revoke the certificate"):
            net.post(revoke_url, payload)
    finally:
        net.close()


def _pem_of(key: PrivateKey) -> bytes:
    from certkit import keys

    return keys.to_pem(key)
