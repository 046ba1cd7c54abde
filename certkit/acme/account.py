"""ACME accounts: one per directory URL + e-mail, stored under ``accounts/``, shared by threads.

Files (written through Store.save_account, all 0600): ``key.json`` (the
account's EC P-256 JWK; ES256 signs far faster than RSA) and
``account.json`` (the account URL, directory, contact, when it was made).
A stored account is used without any request to the CA (the account URL
goes into every JWS ``kid``); a CA that no longer knows it answers
``accountDoesNotExist`` and the order code registers the same key again.

The in-process caches (directory documents and loaded accounts) exist so that
many concurrent renewals do not each fetch the directory and parse the key;
they are keyed by state directory + URL + e-mail and guarded by locks.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from acme import messages
from cryptography.hazmat.primitives.asymmetric import ec
from josepy import b64
from josepy.jwa import ES256, ES384, ES512, RS256, JWASignature
from josepy.jwk import JWK, JWKEC

from certkit import clock
from certkit.acme.net import Network
from certkit.errors import UsageError
from certkit.settings import AcmeSettings
from certkit.store import Store

DIRECTORY_TTL = 600.0

_lock = threading.Lock()
_key_locks: dict[tuple[str, ...], threading.Lock] = {}
_accounts: dict[tuple[str, ...], Account] = {}
_directories: dict[tuple[str, str], tuple[float, messages.Directory]] = {}


@dataclass(frozen=True)
class Account:
    """A usable account: its key, signing algorithm and URL, plus the directory it belongs to."""

    jwk: JWK
    alg: JWASignature
    uri: str
    directory_url: str
    directory: messages.Directory

    def network(self, ca_bundle: str | None, echo: Callable[[str], None], deadline: float | None) -> Network:
        """A fresh Network signing with this account (one per order and thread)."""
        return Network(self.jwk, alg=self.alg, account_uri=self.uri, ca_bundle=ca_bundle,
                       new_nonce_url=self.directory["newNonce"], echo=echo, deadline=deadline)


def meta_of(directory: messages.Directory) -> dict[str, Any]:
    """The directory's ``meta`` object as plain JSON (termsOfService, externalAccountRequired, profiles)."""
    meta = directory._jobj.get("meta")
    if meta is not None and hasattr(meta, "to_partial_json"):
        meta = meta.to_partial_json()
    if not isinstance(meta, Mapping):
        return {}
    # josepy hands nested objects back as its frozendict: plain dicts for the callers.
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in meta.items()}


def resource(directory: messages.Directory, name: str) -> str | None:
    """The URL of a directory resource (``renewalInfo``...), None when the CA does not offer it."""
    value = directory._jobj.get(name)
    return value if isinstance(value, str) and value else None


def _key_lock(key: tuple[str, ...]) -> threading.Lock:
    with _lock:
        return _key_locks.setdefault(key, threading.Lock())


def get_directory(url: str, ca_bundle: str | None, *, refresh: bool = False) -> messages.Directory:
    """The directory document at ``url`` (cached for a few minutes per process)."""
    cache_key = (url, ca_bundle or "")
    with _key_lock(("dir", *cache_key)):
        cached = _directories.get(cache_key)
        if cached and not refresh and time.monotonic() - cached[0] < DIRECTORY_TTL:
            return cached[1]
        net = Network(ca_bundle=ca_bundle)
        try:
            directory = messages.Directory.from_json(net.get(url).json())
        finally:
            net.close()
        for needed in ("newNonce", "newAccount", "newOrder"):
            if resource(directory, needed) is None:
                from certkit.errors import AcmeError

                raise AcmeError(f"{url} is not an ACME (RFC 8555) directory: it has no {needed!r}",
                                "check --server: it must be the CA's directory URL")
        _directories[cache_key] = (time.monotonic(), directory)
        return directory


def account_for(store: Store, settings: AcmeSettings, directory_url: str,
                echo: Callable[[str], None] = print, *, fresh: bool = False, persist: bool = True) -> Account:
    """The account for ``directory_url`` + ``settings.email``: cached, stored, or registered now.

    Args:
        fresh: forget the cached/stored account URL and register the stored key
            again (after the CA answered accountDoesNotExist).
        persist: False for a dry run: a stored account is used, but a new one is
            registered at the CA only (kept in memory, never written).

    Raises:
        UsageError: terms of service not accepted, EAB needed but missing, EAB key file unreadable,
            the stored account was deactivated.
        CertkitError: from the network (through the caller's translate()).
    """
    email = settings.email or ""
    cache_key = (str(store.home), directory_url, email, "" if persist else "dry-run")
    with _key_lock(("acct", *cache_key)):
        if not fresh and cache_key in _accounts:
            return _accounts[cache_key]
        directory = get_directory(directory_url, settings.ca_bundle)
        files = store.load_account(directory_url, settings.email)
        jwk: JWK | None = None
        if files:
            jwk = JWK.json_loads(files["key.json"].decode())
            info = json.loads(files["account.json"].decode()) if "account.json" in files else {}
            refuse_deactivated(info, directory_url, settings.email, store)
            if not fresh and info:
                account = Account(jwk, alg_for(jwk), str(info["uri"]), directory_url, directory)
                _accounts[cache_key] = account
                return account
        account = _register(store, settings, directory_url, directory, jwk, echo, persist=persist)
        _accounts[cache_key] = account
        return account


def refuse_deactivated(info: Mapping[str, Any], directory_url: str, email: str | None, store: Store) -> None:
    """Exit 2 when the stored account was deactivated (RFC 8555 7.3.6: the CA refuses it for good)."""
    if info.get("status") == "deactivated":
        who = f" ({email})" if email else ""
        raise UsageError(f"the ACME account for {directory_url}{who} was deactivated on "
                         f"{info.get('deactivated', 'an earlier date')}: the CA refuses it for good",
                         f"use another --email for a new account, or move {store.account_dir(directory_url, email)}"
                         " away to register a new one")


def forget(store: Store, directory_url: str, email: str | None) -> None:
    """Drop the cached account so the next account_for() reads or registers it again."""
    with _lock:
        for mode in ("", "dry-run"):
            _accounts.pop((str(store.home), directory_url, email or "", mode), None)


def alg_for(jwk: JWK) -> JWASignature:
    """The JWS algorithm for a key: ES256/ES384/ES512 by curve, RS256 for RSA."""
    if isinstance(jwk, JWKEC):
        size = jwk.key.curve.key_size
        return {256: ES256, 384: ES384, 521: ES512}[size]
    return RS256


def _accept_terms(settings: AcmeSettings, directory: messages.Directory, directory_url: str) -> None:
    """Terms of service: --agree-tos, or a yes/no prompt on a terminal showing the terms URL."""
    meta = meta_of(directory)
    terms = meta.get("termsOfService")
    if settings.agree_tos or not terms:
        return
    if sys.stdin.isatty():
        import click

        if click.confirm(f"The CA at {directory_url} asks you to accept its terms of service:\n  {terms}\n"
                         "Do you accept them?", default=False, err=True):
            settings.agree_tos = True  # remembered with the lineage, renewals run unattended
            return
        raise UsageError("the CA's terms of service were not accepted", "no account was created")
    raise UsageError(f"the CA requires accepting its terms of service ({terms})",
                     "read them and add --agree-tos")


def _eab(settings: AcmeSettings, directory: messages.Directory, directory_url: str,
         jwk: JWK) -> dict[str, object] | None:
    meta = meta_of(directory)
    if not settings.eab_kid:
        if meta.get("externalAccountRequired"):
            raise UsageError(f"the CA at {directory_url} requires external account binding (EAB)",
                             "pass --eab-kid and --eab-hmac-key-file with the values from the CA's portal")
        return None
    if not settings.eab_hmac_key_file:
        raise UsageError("--eab-kid needs --eab-hmac-key-file", "put the HMAC key from the CA in a file (0600)")
    from certkit.secretfile import read_secret_file

    try:
        hmac_key = read_secret_file(settings.eab_hmac_key_file, "EAB HMAC key").strip()
    except UnicodeDecodeError:  # from None: the exception would carry the file's bytes
        raise UsageError(f"the EAB HMAC key file {settings.eab_hmac_key_file} is not text",
                         "copy the key exactly as the CA shows it (base64url) into the file") from None
    try:
        b64.b64decode(hmac_key)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"the EAB HMAC key in {settings.eab_hmac_key_file} is not base64url",
                         "copy the key exactly as the CA shows it") from exc
    return messages.ExternalAccountBinding.from_data(jwk.public_key(), settings.eab_kid, hmac_key, directory)


def _register(store: Store, settings: AcmeSettings, directory_url: str, directory: messages.Directory,
              jwk: JWK | None, echo: Callable[[str], None], *, persist: bool = True) -> Account:
    _accept_terms(settings, directory, directory_url)
    if jwk is None:
        jwk = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    alg = alg_for(jwk)
    eab = _eab(settings, directory, directory_url, jwk)
    registration = messages.NewRegistration.from_data(
        email=settings.email, terms_of_service_agreed=True if settings.agree_tos else None,
        external_account_binding=eab)
    net = Network(jwk, alg=alg, ca_bundle=settings.ca_bundle, new_nonce_url=directory["newNonce"], echo=echo)
    try:
        response = net.post(directory["newAccount"], registration)
    finally:
        net.close()
    uri = response.headers.get("Location")
    if not uri:
        from certkit.errors import AcmeError

        raise AcmeError(f"the ACME server {directory_url} created an account but sent no account URL",
                        "the server does not follow RFC 8555 section 7.3")
    info = {
        "uri": uri,
        "directory": directory_url,
        "email": settings.email,
        "created": clock.now_iso(),
        "terms_of_service": meta_of(directory).get("termsOfService"),
        "eab_kid": settings.eab_kid,
    }
    if not persist:  # a dry run stores nothing: the CA has the account, this process alone its key
        return Account(jwk, alg, uri, directory_url, directory)
    with store.lock():
        # key.json first: a crash before account.json leaves a key that is registered again next time.
        store.save_account(directory_url, settings.email, {
            "key.json": jwk.json_dumps().encode(),
            "account.json": (json.dumps(info, indent=2) + "\n").encode(),
        })
    return Account(jwk, alg, uri, directory_url, directory)
