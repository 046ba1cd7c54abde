"""ACME Renewal Information (RFC 9773) for the renewal run: when to ask the CA again, asking, storing.

A failed ARI check never fails a renewal: the lifetime rule still decides.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from typing import Any

from certkit import x509 as cx
from certkit.callbacks import Echo
from certkit.clock import iso as clock_iso
from certkit.errors import CertkitError
from certkit.renew import due
from certkit.settings import LineageSettings
from certkit.store import Store

AriFetcher = Callable[[Store, LineageSettings, Any], "dict[str, Any] | None"]


def needs_ari_check(store: Store, name: str, now: dt.datetime, settings: LineageSettings | None = None) -> bool:
    """An ACME lineage whose renewal window should be asked for again (``settings``: already read)."""
    if settings is None:
        try:
            settings = store.load_settings(name)
        except CertkitError:
            return False
    if not settings.is_acme or store.live_version(name) is None:
        return False
    ari = store.load_state(name).get("ari")
    return due.ari_check_due(ari if isinstance(ari, dict) else None, now)


def fetch_ari(store: Store, settings: LineageSettings, cert: Any) -> dict[str, Any] | None:
    """Ask the lineage's CA for its renewal window (RFC 9773), or None when it has no ARI.

    Raises:
        AcmeError: the CA could not be asked.
    """
    from certkit import acme

    if settings.acme is None:
        return None
    window = acme.renewal_info(settings.acme, cx.to_pem(cert), settings.source)
    return dict(window) if window else None


def refresh_ari(store: Store, name: str, now: dt.datetime, fetcher: AriFetcher, echo: Echo,
                rng: random.Random | None = None, settings: LineageSettings | None = None) -> None:
    """Fetch and store a fresh ARI window; a CA without ARI, or a failure, only postpones the next check.

    A failed ARI check never fails the run: the lifetime rule still decides.
    A new window gets a random moment inside it (``renew_at``, RFC 9773
    section 4.2), kept until the CA moves the window. ``settings``: the
    lineage's, when the run has read them already.
    """
    rng = rng or random.Random()
    old = store.load_state(name).get("ari")
    ari: dict[str, Any] = dict(old) if isinstance(old, dict) else {}
    try:
        if settings is None:
            settings = store.load_settings(name)
        cert = cx.load_chain(store.live_paths(name).cert.read_bytes())[0]
        window = fetcher(store, settings, cert)
    except Exception as exc:  # ARI is advisory: a bad answer or a bug must not stop renewals
        echo(f"{name}: could not fetch the renewal window (ARI): {exc}")
        window = None
    if window:
        moved = (window.get("start"), window.get("end")) != (ari.get("start"), ari.get("end"))
        ari.update(window)
        if moved or not ari.get("renew_at"):
            ari["renew_at"] = due.pick_in_window(ari, rng.random())
    ari["checked"] = clock_iso(now)
    if not (window or {}).get("retry_after"):
        ari["retry_after"] = clock_iso(now + due.ARI_RECHECK)
    store.update_state(name, ari=ari)
