"""The lineage record: what `show --json`, `list --json` and `issue --json` print."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certkit import clock
from certkit import x509 as cx
from certkit.errors import OperationError
from certkit.renew import due
from certkit.settings import LineageSettings
from certkit.store import Store

if TYPE_CHECKING:
    from cryptography import x509


def record(store: Store, name: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """The contract's lineage record, built from settings, state and the live files."""
    now = now or dt.datetime.now(dt.timezone.utc)
    settings = store.load_settings(name)
    state = store.load_state(name)
    version = store.live_version(name)
    paths = store.live_paths(name)
    out: dict[str, Any] = {
        "name": name,
        "domains": list(settings.domains),
        "source": settings.source,
        "key_type": settings.key_type,
        "version": version,
        "versions": store.versions(name),
        "serial": None,
        "not_before": None,
        "not_after": None,
        "days_left": None,
        "renew_after": None,
        "sha256": None,
        "thumbprint": None,
        "issuer": None,
        "paths": None,
        "deploy": [{"target": t.target, "options": t.options} for t in settings.deploy],
        "verify": list(settings.verify),
        "last_check": state.get("last_check"),
        "last_renewal": state.get("last_renewal"),
        "ari": state.get("ari"),
        "issuer_ca": settings.ca, "issuer_ca_generation": None,  # a private CA's name and its generation
        "revoked": None,
        "csr": str(store.csr_path(name)) if settings.csr else None,  # issued for a CSR: no key file here
        "dane": _dane(store, settings, state),
    }
    if version is None:
        return out
    cert = _live_cert(name, paths.cert)
    nb, na = cx.not_before(cert), cx.not_after(cert)
    out["issuer_ca_generation"] = _ca_generation(store, settings.ca, cert)
    out.update(
        serial=cx.serial_hex(cert),
        not_before=clock.iso(nb),
        not_after=clock.iso(na),
        days_left=round((na - now).total_seconds() / 86400),
        renew_after=clock.iso(due.renew_after(nb, na, state.get("ari"))),
        sha256=cx.sha256_fingerprint(cert),
        thumbprint=cx.thumbprint(cert),
        issuer=cx.issuer_text(cert),
        revoked=due.revocation(state, cx.serial_hex(cert)),
        paths={
            "cert": str(paths.cert),
            "key": None if settings.csr else str(paths.key),
            "chain": str(paths.chain),
            "fullchain": str(paths.fullchain),
            "combined": None if settings.csr else str(paths.combined),
            "pfx": str(paths.pfx) if paths.pfx.exists() else None,
        },
    )
    return out


def _ca_generation(store: Store, ca: str | None, cert: x509.Certificate) -> int | None:
    """Which generation of the lineage's private CA signed its live certificate (None: no CA, or unknown)."""
    if ca is None:
        return None
    from certkit.ca.manage import generation_of

    return generation_of(store, ca, cert)


def _live_cert(name: str, path: Path) -> x509.Certificate:
    try:
        return cx.load_chain(path.read_bytes())[0]
    except (OSError, ValueError, IndexError) as exc:
        raise OperationError(f"cannot read the live certificate of {name} ({path}): {exc}",
                             f"issue it again with `certkit renew --force {name}`") from exc


def _dane(store: Store, settings: LineageSettings, state: dict[str, Any]) -> dict[str, Any] | None:
    """A DANE lineage's TLSA owner, whether a next key is staged, and the records certkit published."""
    if settings.dane is None:
        return None
    from certkit.dane.records import next_key_relpath, owner

    raw = state.get("dane")
    dane_state: dict[str, Any] = raw if isinstance(raw, dict) else {}
    published = [p[1] for p in dane_state.get("published") or [] if isinstance(p, list) and len(p) == 2]
    return {"name": owner(settings), "port": settings.dane.port, "dns_hook": settings.dane.dns_hook,
            "next_key_staged": store.read_file(next_key_relpath(settings.name)) is not None,
            "published": published}
