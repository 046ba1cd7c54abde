"""The lineage record: what `show --json`, `list --json` and `issue --json` print."""

from __future__ import annotations

import datetime as dt
from typing import Any

from certkit import clock
from certkit import x509 as cx
from certkit.errors import OperationError
from certkit.renew import due
from certkit.settings import LineageSettings
from certkit.store import Store


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
        "dane": _dane(store, settings, state),
    }
    if version is None:
        return out
    try:
        cert = cx.load_chain(paths.cert.read_bytes())[0]
    except (OSError, ValueError, IndexError) as exc:
        raise OperationError(
            f"cannot read the live certificate of {name} ({paths.cert}): {exc}",
            f"issue it again with `certkit renew --force {name}`",
        ) from exc
    nb, na = cx.not_before(cert), cx.not_after(cert)
    out.update(
        serial=cx.serial_hex(cert),
        not_before=clock.iso(nb),
        not_after=clock.iso(na),
        days_left=round((na - now).total_seconds() / 86400),
        renew_after=clock.iso(due.renew_after(nb, na, state.get("ari"))),
        sha256=cx.sha256_fingerprint(cert),
        thumbprint=cx.thumbprint(cert),
        issuer=cx.issuer_text(cert),
        paths={
            "cert": str(paths.cert),
            "key": str(paths.key),
            "chain": str(paths.chain),
            "fullchain": str(paths.fullchain),
            "combined": str(paths.combined),
            "pfx": str(paths.pfx) if paths.pfx.exists() else None,
        },
    )
    return out


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
