"""Key rollover for a DANE lineage: a key goes live only after its TLSA record has been visible for TTL x 2.

The timeline (docs/dane-mta-sts.md) is "current + next" (RFC 7671 section 8.1):

1. Each version is issued with the key staged before it (:func:`key_for_renewal`),
   and only once that key's ``3 1 1`` record has been served by every
   authoritative server for at least twice its TTL - so every resolver
   cache that holds the old record set has expired and the new one lists
   both keys. Otherwise the renewal is held back (:class:`HeldBack`, exit 1)
   and the live version stays.
2. After the switch (:func:`after_switch`) a new next key is staged, its
   record published through the DNS hook, and records of keys no longer
   current or next are removed.

The lineage's ``state.json`` keeps what certkit published (``dane.published``)
and when each record was first seen at every server (``dane.visible``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from certkit import dnshook, envvars, keys, tlsa
from certkit.callbacks import Echo
from certkit.clock import iso, parse_time, utc_now
from certkit.dane import records, visibility
from certkit.errors import HeldBack
from certkit.polling import Backoff
from certkit.settings import LineageSettings
from certkit.store import Store

WAIT_MAX = "CERTKIT_DANE_WAIT_MAX"  # longest wait inside one run for the TTL x 2 to pass (seconds)
PUBLISH_TIMEOUT = "CERTKIT_DANE_PUBLISH_TIMEOUT"  # how long a published record may take to appear (seconds)


@dataclass(frozen=True)
class Waits:
    """How a rollover waits; tests swap ``sleep`` and ``clock`` (no real waiting there)."""

    skip: bool = False  # `renew --skip-dane-wait`: make the staged key live at once (warns)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], dt.datetime] = utc_now
    max_inline: float = field(default_factory=lambda: envvars.seconds(WAIT_MAX, 600.0, allow_zero=True))
    publish_timeout: float = field(default_factory=lambda: envvars.seconds(PUBLISH_TIMEOUT, 180.0, allow_zero=True))


def _state(store: Store, name: str) -> dict[str, Any]:
    data = store.load_state(name).get("dane")
    return data if isinstance(data, dict) else {}


def _save(store: Store, name: str, **fields: Any) -> None:
    store.update_state(name, dane={**_state(store, name), **fields})


def next_text(key: keys.PrivateKey) -> str:
    return tlsa.spki_association(records.spki_der(key)).text()


def key_for_renewal(store: Store, settings: LineageSettings, echo: Echo, waits: Waits) -> keys.PrivateKey:
    """The staged next key, once its TLSA record has been visible at every authoritative server for TTL x 2.

    Raises:
        HeldBack: no key was staged (one is staged and published now), its
            record is not served everywhere, or TTL x 2 has not passed and
            the rest of the wait is longer than ``CERTKIT_DANE_WAIT_MAX``.
    """
    dane, name = settings.dane, settings.name
    assert dane is not None
    key = records.staged_key(store, name)
    if key is not None and keys.key_type_of(key) != settings.key_type:
        key, why = None, f"its key type changed to {settings.key_type} (`issue --expand`)"
    else:
        why = "it had no staged next key"
    if waits.skip:
        echo("WARNING: --skip-dane-wait: the next key goes live WITHOUT checking that its TLSA record is "
             "visible; DANE clients (Postfix smtp_tls_security_level=dane) may refuse this server's mail "
             "until the record is published and cached copies expire")
        return key or records.stage_next_key(store, settings)
    owner = records.owner(settings)
    if key is None:
        key = records.stage_next_key(store, settings)
        publish(store, settings, [records.DaneRecord("next", tlsa.Tlsa.parse(next_text(key)))], echo, waits)
        raise HeldBack(f"{name}: {why}; a next key is staged now and its TLSA record "
                       f"{owner} TLSA {next_text(key)} must be visible for TTL x 2 before it goes live",
                       f"run `certkit renew {name}` again after that (see `certkit dane {name}`)")
    text = next_text(key)
    since, ttl = _visible_since(store, settings, owner, text, echo, waits)
    left = 2 * ttl - (waits.clock() - since).total_seconds()
    if left > 0:
        ready = iso(since + dt.timedelta(seconds=2 * ttl))
        if left > waits.max_inline:
            raise HeldBack(f"the TLSA record of {name}'s next key ({owner} TLSA {text}) has been "
                           f"visible since {iso(since)}; with TTL {ttl} s it may go live at {ready}",
                           f"run `certkit renew {name}` after {ready} (the renewal timer will)")
        echo(f"waiting {left:.0f} s until the next key's TLSA record has been visible for TTL x 2 ({ready})")
        waits.sleep(left)
        if visibility.look(owner, dane.nameservers).missing(text):
            raise HeldBack(f"the TLSA record {owner} TLSA {text} disappeared during the wait",
                           "check the zone, then run `certkit renew` again")
    return key


def _visible_since(store: Store, settings: LineageSettings, owner: str, text: str, echo: Echo,
                   waits: Waits) -> tuple[dt.datetime, int]:
    """Since when ``text`` has been served everywhere (published again and awaited if it is missing), and the
    TTL the servers give it now."""
    assert settings.dane is not None
    view = visibility.look(owner, settings.dane.nameservers)
    missing = view.missing(text)
    seen = _state(store, settings.name).get("visible") or {}
    if missing:
        # Gone somewhere: the TTL x 2 starts again once it is back everywhere.
        seen = {k: v for k, v in seen.items() if k != text}
        _save(store, settings.name, visible=seen)
        if settings.dane.dns_hook:
            echo(f"the TLSA record {owner} TLSA {text} is missing at {', '.join(missing)}: publishing it again")
            publish(store, settings, [records.DaneRecord("next", tlsa.Tlsa.parse(text))], echo, waits)
            view = visibility.look(owner, settings.dane.nameservers)
            missing = view.missing(text)
        if missing:
            raise HeldBack(f"the TLSA record of {settings.name}'s next key is not visible at "
                           f"{', '.join(missing)} ({owner} TLSA {text}); the live key stays",
                           f"publish it (see `certkit dane {settings.name}`), then run `certkit renew "
                           f"{settings.name}` again")
        seen = _state(store, settings.name).get("visible") or {}
    since = parse_time(seen.get(text))
    if since is None:
        since = _first_seen(waits)
        _save(store, settings.name, visible={**seen, text: iso(since)})
    return since, view.ttl


def _first_seen(waits: Waits) -> dt.datetime:
    """Now, rounded up to the next second (state.json keeps whole seconds: never count a wait as longer)."""
    return waits.clock().replace(microsecond=0) + dt.timedelta(seconds=1)


def publish(store: Store, settings: LineageSettings, wanted: list[records.DaneRecord], echo: Echo,
            waits: Waits) -> None:
    """Publish ``wanted`` through the lineage's DNS hook and wait (bounded) until every server serves them;
    without a hook, say what to publish by hand."""
    dane = settings.dane
    assert dane is not None
    owner = records.owner(settings)
    if not wanted:
        return
    if not dane.dns_hook:
        for record in wanted:
            echo(f"publish: {owner}. IN TLSA {record.tlsa.text()}   ({record.role} key; no --dns-hook set)")
        return
    domain = owner.split(".", 2)[2]
    dnshook.present(dane.dns_hook, [r.hook_record(owner, domain) for r in wanted])
    published = [p for p in _state(store, settings.name).get("published") or [] if isinstance(p, list)]
    _save(store, settings.name, published=published + [[owner, r.tlsa.text()] for r in wanted])
    texts = [r.tlsa.text() for r in wanted]
    backoff = Backoff(deadline=time.monotonic() + waits.publish_timeout, first=0.25, cap=5.0, sleep=waits.sleep)
    while True:
        view = visibility.look(owner, dane.nameservers)
        if not any(view.missing(t) for t in texts):
            break
        if not backoff.wait():
            echo(f"warning: the TLSA records {', '.join(texts)} are not yet served by "
                 f"{', '.join(sorted({s for t in texts for s in view.missing(t)}))}; "
                 "the next renewal waits for them")
            return
    seen = _state(store, settings.name).get("visible") or {}
    now = iso(_first_seen(waits))
    _save(store, settings.name, visible={**seen, **{t: seen.get(t, now) for t in texts}})


def after_switch(store: Store, settings: LineageSettings, echo: Echo, waits: Waits,
                 previous: int | None = None, deployed: bool = True) -> None:
    """After a version went live (and deployed): stage a new next key, publish what is missing, remove stale
    records (keys neither current nor next, an old CA, another owner name).

    ``previous`` is the version that was live before; when certkit deployed nothing (``deployed`` false) it
    cannot tell when the server switches, so the previous key's record stays until the next renewal.
    """
    name = settings.name
    live = store.live_version(name)
    assert live is not None
    current = keys.load_pem(store.read_version(name, live).key_pem)
    staged = records.staged_key(store, name)
    if staged is None or records.spki_der(staged) == records.spki_der(current):
        records.stage_next_key(store, settings)
    wanted = records.lineage_records(store, settings)
    published = {(str(p[0]), str(p[1])) for p in _state(store, name).get("published") or []
                 if isinstance(p, list) and len(p) == 2}
    publish(store, settings, [r for r in wanted.records if (wanted.owner, r.tlsa.text()) not in published],
            echo, waits)
    desired = {(wanted.owner, t) for t in wanted.texts()}
    published = {(str(p[0]), str(p[1])) for p in _state(store, name).get("published") or []
                 if isinstance(p, list) and len(p) == 2}
    dane = settings.dane
    old = None
    if previous is not None and previous in store.versions(name):
        old = (wanted.owner, next_text(keys.load_pem(store.read_version(name, previous).key_pem)))
    if old is not None and old not in desired and dane is not None and not dane.dns_hook:
        when = "now" if deployed else "once your server serves the new certificate"
        echo(f"remove by hand, {when}: {old[0]}. IN TLSA {old[1]}   (the previous key)")
    elif old is not None and old in published - desired and not deployed:
        echo(f"kept the previous key's TLSA record {old[1]}: certkit deploys nothing for {name}, so your "
             "server may still serve that key; it is removed at the next renewal (remove it yourself once "
             "the server serves the new certificate)")
        desired.add(old)
    stale = sorted(published - desired)
    if stale and dane is not None and dane.dns_hook:
        dnshook.cleanup(dane.dns_hook, [dnshook.DnsRecord(o.split(".", 2)[2], o, t, "TLSA") for o, t in stale], echo)
        echo(f"removed {len(stale)} stale TLSA record(s): " + ", ".join(t for _, t in stale))
    seen = _state(store, name).get("visible") or {}
    _save(store, name, owner=wanted.owner, published=[list(p) for p in sorted(published & desired)],
          visible={t: v for t, v in seen.items() if any(t == d for _, d in desired)})
