"""A lineage's TLSA records (``3 1 1`` for the current and the staged next key, ``2 1 1`` for the issuing CA)
and the staged next key they announce.

The next key is generated ahead of the renewal that will use it and kept
in ``lineages/NAME/dane/next-key.pem`` (mode 0600): its TLSA record can
then be published weeks before the key goes live, which is what makes a
rollover safe (RFC 7671 section 8.1, "current + next").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from certkit import keys, tlsa
from certkit import x509 as cx
from certkit.dnshook import DnsRecord
from certkit.errors import UsageError
from certkit.settings import LineageSettings
from certkit.store import Store

DEFAULT_TTL = 3600  # what the zone-file form proposes when no TTL is known


def next_key_relpath(name: str) -> str:
    """Where a lineage's staged next key lives, relative to the state directory."""
    return f"lineages/{name}/dane/next-key.pem"


def staged_key(store: Store, name: str) -> keys.PrivateKey | None:
    """The staged next key, or None when none is staged (or the file is damaged)."""
    data = store.read_file(next_key_relpath(name))
    if not data:
        return None
    try:
        return keys.load_pem(data)
    except (ValueError, TypeError):
        return None


def stage_next_key(store: Store, settings: LineageSettings) -> keys.PrivateKey:
    """Generate and store (0600) a new next key of the lineage's key type; the key."""
    key = keys.generate(keys.check_key_type(settings.key_type, settings.allow_weak))
    store.write_file(next_key_relpath(settings.name), keys.to_pem(key), private=True)
    return key


def spki_der(key: keys.PrivateKey) -> bytes:
    """The SubjectPublicKeyInfo (DER) of a private key's public half: what ``3 1 1`` hashes."""
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def owner(settings: LineageSettings, port: int | None = None, host: str | None = None) -> str:
    """``_PORT._tcp.HOST`` for the lineage: options first, then its DANE settings, then its first name."""
    dane = settings.dane
    host = host or (dane.host if dane else None) or settings.domains[0]
    if host.startswith("*."):
        raise UsageError(f"the lineage's first name {host} is a wildcard", "give the MX host name with --host")
    return tlsa.owner_name(host, port or (dane.port if dane else 25))


@dataclass(frozen=True)
class DaneRecord:
    """One TLSA record and what it is for: ``current`` (live key), ``next`` (staged key) or ``ca``."""

    role: str
    tlsa: tlsa.Tlsa

    def hook_record(self, owner_name: str, domain: str) -> DnsRecord:
        """The record as the DNS hook receives it (CERTKIT_DNS_TYPE=TLSA)."""
        return DnsRecord(domain, owner_name, self.tlsa.text(), "TLSA")


@dataclass
class DaneRecords:
    """The TLSA records a lineage wants published under one owner name."""

    owner: str
    domain: str
    records: list[DaneRecord]

    def texts(self) -> list[str]:
        return list(dict.fromkeys(r.tlsa.text() for r in self.records))

    def get(self, role: str) -> DaneRecord | None:
        return next((r for r in self.records if r.role == role), None)

    def zone_lines(self, ttl: int = DEFAULT_TTL) -> list[str]:
        """Zone-file form, one record a line with its role as a comment."""
        seen: set[str] = set()
        lines = []
        for record in self.records:
            text = record.tlsa.text()
            if text not in seen:
                seen.add(text)
                lines.append(f"{self.owner}. {ttl} IN TLSA {text} ; {record.role}")
        return lines

    def to_json(self, ttl: int = DEFAULT_TTL) -> dict[str, Any]:
        return {"name": self.owner, "ttl": ttl,
                "records": [{"role": r.role, "usage": r.tlsa.usage, "selector": r.tlsa.selector,
                             "mtype": r.tlsa.mtype, "data": r.tlsa.data.hex(), "text": r.tlsa.text()}
                            for r in self.records]}


def lineage_records(store: Store, settings: LineageSettings, *, port: int | None = None, host: str | None = None,
                    ca: bool | None = None) -> DaneRecords:
    """The records for the live key, the staged next key (when one is staged) and, with ``ca``, the issuing CA."""
    name = settings.name
    live = store.live_version(name)
    if live is None:
        raise UsageError(f"lineage {name!r} has no live version", f"run `certkit renew {name}` first")
    files = store.read_version(name, live)
    current = keys.load_pem(files.key_pem)
    out = [DaneRecord("current", tlsa.spki_association(spki_der(current)))]
    nxt = staged_key(store, name)
    if nxt is not None and spki_der(nxt) != spki_der(current):
        out.append(DaneRecord("next", tlsa.spki_association(spki_der(nxt))))
    with_ca = ca if ca is not None else bool(settings.dane and settings.dane.ca)
    chain = cx.load_chain(files.chain_pem) if files.chain_pem.strip() else []
    if with_ca and chain:
        out.append(DaneRecord("ca", tlsa.association(cx.to_der(chain[0]), tlsa.DANE_TA)))
    own = owner(settings, port, host)
    return DaneRecords(own, own.split(".", 2)[2], out)
