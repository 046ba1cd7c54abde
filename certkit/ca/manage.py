"""What `certkit ca` does: create, rotate, retire, sign leaves, trust, export.

Each operation takes the Store (the state directory) and works under its
lock when it writes. Certificates are built in memory (authority.py) and
stored through storage.py; nothing here starts a process except the trust
store update (certkit.trust, through certkit.runner).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509

from certkit import clock, keys
from certkit import x509 as cx
from certkit.ca import authority, storage
from certkit.ca.constraints import Constraints, outside, parse
from certkit.ca.storage import CaRecord, Generation
from certkit.errors import CertkitError, UsageError
from certkit.names import Identity
from certkit.secretfile import read_secret_file
from certkit.store import Store

DEFAULT_CA_DAYS = 3650
DEFAULT_CA_KEY = "rsa3072"


def constraints_of(record: CaRecord) -> Constraints:
    return parse(record.permit, record.permit_ip)


@dataclass
class NewCa:
    """What the caller asked for in `ca create`."""

    name: str
    constraints: Constraints
    days: int = DEFAULT_CA_DAYS
    key_type: str = DEFAULT_CA_KEY
    passphrase_file: str | None = None


def _new_generation(store: Store, record: CaRecord, number: int, days: int,
                    now: dt.datetime | None = None) -> Generation:
    """Make, store and return generation ``number`` of ``record`` (the caller holds the lock)."""
    key = keys.generate(record.key_type)
    cert = authority.make_root(key, record.name, number, constraints_of(record), days, now)
    storage.write_generation(store, record.name, number, cx.to_pem(cert),
                             storage.key_pem(key, storage.passphrase(record)))
    return Generation(number=number, created=clock.iso(cx.not_before(cert) + cx.BACKDATE),
                      not_after=clock.iso(cx.not_after(cert)), sha256=cx.sha256_fingerprint(cert),
                      key_id=authority.key_id(cert) or "")


def create(store: Store, new: NewCa, now: dt.datetime | None = None) -> CaRecord:
    """Create CA ``new.name`` with its first generation (exit 2 when it exists)."""
    storage.check_name(new.name)
    key_type = keys.check_key_type(new.key_type)
    if new.passphrase_file:
        read_secret_file(new.passphrase_file, "CA passphrase")  # before any key is made
    record = CaRecord(name=new.name, key_type=key_type, days=new.days, current=1,
                      permit=list(new.constraints.dns), permit_ip=list(new.constraints.ips),
                      passphrase_file=new.passphrase_file)
    with store.lock():
        if storage.exists(store, new.name):
            raise UsageError(f"CA {new.name!r} exists already ({storage.ca_dir(store, new.name)})",
                             f"use it, or make a successor with `certkit ca rotate {new.name}`")
        record.generations.append(_new_generation(store, record, 1, new.days, now))
        storage.save(store, record)
    return record


def rotate(store: Store, name: str, days: int | None = None,
           now: dt.datetime | None = None) -> tuple[CaRecord, list[str]]:
    """Make the successor generation and sign leaves with it from now on; trust it where the CA is trusted.

    The previous generations stay active (trusted, exported) until `ca retire`.
    """
    with store.lock():
        record = storage.load(store, name)
        storage.read_key(store, record, record.current)  # the passphrase still opens the key
        number = max(g.number for g in record.generations) + 1
        record.generations.append(_new_generation(store, record, number, days or record.days, now))
        record.current = number
        storage.save(store, record)
        notes = _install(store, record, [record.generation(number)]) if record.trusted else []
    return record, notes


def check_names(store: Store, name: str, identities: Sequence[Identity]) -> CaRecord:
    """Refuse (exit 2) names CA ``name`` may not sign for, before any key is made."""
    record = storage.load(store, name)
    bad = outside(constraints_of(record), identities)
    if bad:
        raise UsageError(f"{', '.join(bad)} {'is' if len(bad) == 1 else 'are'} outside what CA {name!r} may sign "
                         f"for ({constraints_of(record).describe()})",
                         "use a name under a permitted domain, or another CA (`certkit ca list`)")
    return record


@dataclass
class Signed:
    """A leaf the CA signed."""

    cert_pem: bytes
    generation: int
    notes: list[str] = field(default_factory=list)


def sign(store: Store, name: str, public: cx.PublicKey, identities: Sequence[Identity], days: int,
         now: dt.datetime | None = None) -> Signed:
    """A leaf for ``identities`` from the CA's current generation (names checked against its constraints)."""
    record = check_names(store, name, identities)
    cert = storage.read_cert(store, name, record.current)
    key = storage.read_key(store, record, record.current)
    leaf, cut = authority.sign_leaf(cert, key, constraints_of(record), public, identities, days, now)
    notes = []
    if cut:
        notes.append(f"lifetime cut to the CA's ({cx.not_after(cert):%Y-%m-%d}): "
                     f"rotate the CA soon (`certkit ca rotate {name}`)")
    return Signed(cx.to_pem(leaf), record.current, notes)


def generation_of(store: Store, name: str, leaf: x509.Certificate) -> int | None:
    """Which generation of CA ``name`` signed ``leaf`` (None: none of them)."""
    if not storage.exists(store, name):
        return None
    wanted = authority.issuer_key_id(leaf)
    for gen in storage.load(store, name).generations:
        if wanted and gen.key_id == wanted:
            return gen.number
    return None


def trust_name(name: str, number: int) -> str:
    return f"ca-{name}-g{number}"


def _install(store: Store, record: CaRecord, generations: Sequence[Generation]) -> list[str]:
    from certkit import trust

    return [trust.install(cx.to_pem(storage.read_cert(store, record.name, g.number)), trust_name(record.name, g.number),
                          record.trust_store_dir) for g in generations]


def _remove(store: Store, record: CaRecord, generations: Sequence[Generation]) -> list[str]:
    from certkit import trust

    return [trust.remove(trust_name(record.name, g.number), record.trust_store_dir,
                         cx.serial_hex(storage.read_cert(store, record.name, g.number))) for g in generations]


def set_trust(store: Store, name: str, trusted: bool, store_dir: str | None) -> list[str]:
    """Add the CA's active generations to the OS trust store (or take every generation out)."""
    with store.lock():
        record = storage.load(store, name)
        if trusted:
            record.trust_store_dir = store_dir
            notes = _install(store, record, record.active)
        else:
            record.trust_store_dir = store_dir or record.trust_store_dir
            notes = _remove(store, record, record.generations)
        record.trusted = trusted
        storage.save(store, record)
    return notes


def issued_from(store: Store, name: str) -> dict[str, int | None]:
    """Lineages whose settings name CA ``name``, with the generation that signed each live leaf."""
    out: dict[str, int | None] = {}
    for lineage in store.names():
        try:
            settings = store.load_settings(lineage)
        except CertkitError:  # a damaged lineage is `certkit list`'s to report, not the CA's
            continue
        if settings.ca != name:
            continue
        leaf = cx.read_leaf(store.live_paths(lineage).cert)
        out[lineage] = generation_of(store, name, leaf) if leaf is not None else None
    return out


def retire(store: Store, name: str, force: bool = False) -> tuple[list[int], list[str]]:
    """Retire every generation but the current one: untrusted where the CA is trusted, no longer exported.

    Refused (exit 2) while a lineage still serves a leaf from one of them,
    unless ``force``: its clients would stop trusting it.
    """
    with store.lock():
        record = storage.load(store, name)
        old = [g for g in record.generations if g.number != record.current and not g.retired]
        if not old:
            return [], []
        numbers = {g.number for g in old}
        still = sorted(n for n, gen in issued_from(store, name).items() if gen in numbers)
        if still and not force:
            raise UsageError(f"{', '.join(still)} still {'serves' if len(still) == 1 else 'serve'} a certificate "
                             f"from an older generation of CA {name!r}",
                             f"re-issue first: certkit renew --force {' '.join(still)} (or pass --force)")
        notes = _remove(store, record, old) if record.trusted else []
        for gen in old:
            gen.retired = True
        storage.save(store, record)
    return sorted(numbers), notes
