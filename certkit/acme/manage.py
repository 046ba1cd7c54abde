"""Account management (RFC 8555 section 7.3): read, change contact, deactivate, roll the key over.

An account is picked the way `issue` picks it: directory URL + e-mail (the
folder under ``accounts/``). Nothing here registers a new account: a
missing one is an error that names the stored ones.

Key rollover (section 7.3.5) is crash-safe: the new key is written to
``key-new.json`` before the CA is asked; only after the CA accepted it does
it replace ``key.json`` in one rename. A kill in between leaves both keys;
the next rollover first asks the CA which one it knows and finishes or
drops the pending one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from acme import jws, messages
from cryptography.hazmat.primitives.asymmetric import ec
from josepy import b64
from josepy.jwk import JWK, JWKEC

from certkit import clock
from certkit.acme.account import Account, alg_for, forget, get_directory, refuse_deactivated, resource
from certkit.acme.directory import resolve_server
from certkit.acme.net import Network
from certkit.acme.problems import problem_type, translate
from certkit.callbacks import Echo
from certkit.errors import AcmeError, NotFoundError, UsageError
from certkit.store import Store
from certkit.storeaccounts import INFO_FILE, KEY_FILE, NEW_KEY_FILE


@dataclass(frozen=True)
class StoredAccount:
    """An account folder: the directory URL and e-mail that pick it, its key and its ``account.json``."""

    directory_url: str
    email: str | None
    jwk: JWK
    info: dict[str, Any]
    pending_key: JWK | None = None


def pick(store: Store, server: str | None, email: str | None) -> StoredAccount:
    """The stored account for ``--server`` [+ ``--email``]; without them, the only one there is.

    Raises:
        NotFoundError: no such account, or several match (the message lists them), exit 2.
    """
    url = resolve_server(server) if server else None
    infos = [info for _dir, info in store.account_infos()
             if (url is None or info.get("directory") == url) and (email is None or info.get("email") == email)]
    if len(infos) != 1:
        known = "; ".join(f"--server {i.get('directory')}" + (f" --email {i['email']}" if i.get("email") else "")
                          for _d, i in store.account_infos()) or "none yet (the first `issue --acme` makes one)"
        what = "no stored ACME account" if not infos else f"{len(infos)} stored ACME accounts"
        wanted = " for " + " ".join(filter(None, [url, email])) if url or email else ""
        raise NotFoundError(f"{what}{wanted} in {store.home}", f"pick one with: {known}")
    return load(store, str(infos[0]["directory"]), infos[0].get("email"))


def load(store: Store, directory_url: str, email: str | None) -> StoredAccount:
    files = store.load_account(directory_url, email)
    if not files or INFO_FILE not in files:
        raise NotFoundError(f"no stored ACME account for {directory_url} {email or ''}".rstrip(),
                            "see `certkit account list`")
    pending = JWK.json_loads(files[NEW_KEY_FILE].decode()) if NEW_KEY_FILE in files else None
    return StoredAccount(directory_url, email, JWK.json_loads(files[KEY_FILE].decode()),
                         json.loads(files[INFO_FILE].decode()), pending)


def describe(stored: StoredAccount, remote: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON record of an account (`account list/show --json`): stored facts, plus the CA's when asked."""
    info = stored.info
    record: dict[str, Any] = {
        "server": stored.directory_url, "email": stored.email, "uri": info.get("uri"),
        "contact": info.get("contact", [f"mailto:{stored.email}"] if stored.email else []),
        "status": info.get("status", "valid"), "created": info.get("created"),
        "key_thumbprint": thumbprint(stored.jwk), "key_type": _key_name(stored.jwk),
        "key_changed": info.get("key_changed"), "deactivated": info.get("deactivated"),
        "rollover_pending": stored.pending_key is not None,
    }
    if remote is not None:
        record.update(status=remote.get("status", record["status"]), contact=list(remote.get("contact") or []),
                      orders=remote.get("orders"))
    return record


def thumbprint(jwk: JWK) -> str:
    """The key's RFC 7638 thumbprint, base64url (as CAs show it)."""
    return str(b64.b64encode(jwk.thumbprint()).decode())


def _key_name(jwk: JWK) -> str:
    return f"ec{jwk.key.curve.key_size}" if isinstance(jwk, JWKEC) else f"rsa{jwk.key.key_size}"


def _network(stored: StoredAccount, ca_bundle: str | None, echo: Echo) -> tuple[Network, messages.Directory]:
    directory = get_directory(stored.directory_url, ca_bundle)
    account = Account(stored.jwk, alg_for(stored.jwk), str(stored.info["uri"]), stored.directory_url, directory)
    return account.network(ca_bundle, echo, None), directory


def fetch(stored: StoredAccount, ca_bundle: str | None, echo: Echo = print) -> dict[str, Any]:
    """The account object as the CA has it (status, contact, orders); a deactivated one is not asked."""
    if stored.info.get("status") == "deactivated":
        return {"status": "deactivated", "contact": stored.info.get("contact") or []}
    with translate(stored.directory_url, "show the account"):
        net, _directory = _network(stored, ca_bundle, echo)
        try:
            return dict(net.post_as_get(str(stored.info["uri"])).json())  # RFC 8555 6.3 / 7.3.3
        finally:
            net.close()


def update_contact(store: Store, stored: StoredAccount, emails: list[str], ca_bundle: str | None,
                   echo: Echo = print) -> dict[str, Any]:
    """Replace the account's contact addresses at the CA (RFC 8555 7.3.2), then in ``account.json``."""
    refuse_deactivated(stored.info, stored.directory_url, stored.email, store)
    contact = tuple(f"mailto:{e}" for e in emails)
    with translate(stored.directory_url, "update the account's contact"):
        net, _directory = _network(stored, ca_bundle, echo)
        try:
            remote = dict(net.post(str(stored.info["uri"]), messages.UpdateRegistration(contact=contact)).json())
        finally:
            net.close()
    _save_info(store, stored, contact=list(remote.get("contact") or contact), contact_changed=clock.now_iso())
    return remote


def deactivate(store: Store, stored: StoredAccount, ca_bundle: str | None, echo: Echo = print) -> None:
    """Deactivate the account at the CA for good (RFC 8555 7.3.6) and record it; certkit then refuses it."""
    refuse_deactivated(stored.info, stored.directory_url, stored.email, store)
    with translate(stored.directory_url, "deactivate the account"):
        net, _directory = _network(stored, ca_bundle, echo)
        try:
            net.post(str(stored.info["uri"]), messages.UpdateRegistration(status=messages.Status("deactivated")))
        finally:
            net.close()
    _save_info(store, stored, status="deactivated", deactivated=clock.now_iso())
    forget(store, stored.directory_url, stored.email)


def rollover(store: Store, stored: StoredAccount, ca_bundle: str | None, echo: Echo = print) -> str:
    """Replace the account key (RFC 8555 7.3.5); returns how it went ("rolled over" / "finished an earlier one")."""
    refuse_deactivated(stored.info, stored.directory_url, stored.email, store)
    if stored.pending_key is not None and _finish_pending(store, stored, ca_bundle, echo):
        return "finished the key change an earlier run started (the CA already had the new key)"
    new = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    with store.lock():
        store.save_account(stored.directory_url, stored.email, {NEW_KEY_FILE: new.json_dumps().encode()})
    try:
        with translate(stored.directory_url, "change the account key"):
            net, directory = _network(stored, ca_bundle, echo)
            url = _key_change_url(directory, stored.directory_url)
            inner = jws.JWS.sign(json.dumps({"account": stored.info["uri"],
                                             "oldKey": stored.jwk.public_key().to_partial_json()}).encode(),
                                 key=new, alg=alg_for(new), nonce=None, url=url)
            try:
                net.post(url, inner)
            finally:
                net.close()
    except (AcmeError, UsageError):
        with store.lock():
            store.drop_pending_account_key(stored.directory_url, stored.email)
        raise
    _promote(store, stored)
    return "rolled over"


def _key_change_url(directory: messages.Directory, directory_url: str) -> str:
    url = resource(directory, "keyChange")
    if url is None:
        raise AcmeError(f"the CA at {directory_url} offers no key change (its directory has no keyChange)",
                        "keep the current key, or deactivate this account and register a new one")
    return url


def _finish_pending(store: Store, stored: StoredAccount, ca_bundle: str | None, echo: Echo) -> bool:
    """Whether the CA already knows the pending key (then it becomes the key); else the pending key is dropped."""
    assert stored.pending_key is not None
    directory = get_directory(stored.directory_url, ca_bundle)
    net = Network(stored.pending_key, alg=alg_for(stored.pending_key), ca_bundle=ca_bundle,
                  new_nonce_url=directory["newNonce"], echo=echo)
    try:
        with translate(stored.directory_url, "look up the pending account key"):
            try:
                net.post(directory["newAccount"], messages.NewRegistration(only_return_existing=True))
            except messages.Error as exc:
                if problem_type(exc) != "accountDoesNotExist":
                    raise
                with store.lock():
                    store.drop_pending_account_key(stored.directory_url, stored.email)
                return False
    finally:
        net.close()
    _promote(store, stored)
    return True


def _promote(store: Store, stored: StoredAccount) -> None:
    with store.lock():
        store.promote_account_key(stored.directory_url, stored.email)
    _save_info(store, stored, key_changed=clock.now_iso())
    forget(store, stored.directory_url, stored.email)


def _save_info(store: Store, stored: StoredAccount, **fields: Any) -> None:
    info = {**stored.info, **fields}
    with store.lock():
        store.save_account(stored.directory_url, stored.email,
                           {INFO_FILE: (json.dumps(info, indent=2) + "\n").encode()})
