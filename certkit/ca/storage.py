"""Where a private CA lives in the state directory, and reading it back safely.

Layout (under ``home/``, every folder 0700)::

    cas/<name>/
      ca.toml            what the CA is: constraints, key type, generations, trust
      g0001/ca.pem       the root certificate of generation 1 (0644, public)
      g0001/ca.key       its private key (0600; encrypted with --passphrase-file)
      g0002/ ...         the successor made by `certkit ca rotate`

Writes go through :meth:`Store.write_file` (the one writer, 0700 folders,
under the state lock). Reads follow the state-directory rules: as root a
folder or file another user owns or can write is refused (fsguard), and a
CA key file that group or others can read or write is refused for everyone.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certkit import fsguard, keys
from certkit.errors import NotFoundError, OperationError, UsageError
from certkit.secretfile import read_secret_file
from certkit.settings import SettingsError, typed_from_dict
from certkit.store import Store

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class Generation:
    """One root certificate of a CA; a rotation adds the next."""

    number: int
    created: str
    not_after: str
    sha256: str
    key_id: str
    retired: bool = False


@dataclass
class CaRecord:
    """A CA's ``ca.toml``."""

    name: str
    key_type: str
    days: int
    current: int
    generations: list[Generation] = field(default_factory=list)
    permit: list[str] = field(default_factory=list)
    permit_ip: list[str] = field(default_factory=list)
    passphrase_file: str | None = None
    trusted: bool = False
    trust_store_dir: str | None = None

    def generation(self, number: int) -> Generation:
        for gen in self.generations:
            if gen.number == number:
                return gen
        raise NotFoundError(f"CA {self.name!r} has no generation {number}",
                            f"it has {', '.join(str(g.number) for g in self.generations)}")

    @property
    def active(self) -> list[Generation]:
        """Generations clients should trust: the current one first, then older ones not yet retired."""
        rest = [g for g in reversed(self.generations) if not g.retired and g.number != self.current]
        return [self.generation(self.current), *rest]

    def to_toml(self) -> bytes:
        import tomli_w

        data = {k: v for k, v in asdict(self).items() if v is not None}
        return tomli_w.dumps(data).encode()


def check_name(name: str) -> str:
    """A CA name is a folder name: letters, digits, dots, hyphens, underscores (exit 2 otherwise)."""
    fsguard.reject_control_chars(name, "CA name")
    if not _NAME_RE.fullmatch(name):
        raise UsageError(f"invalid CA name {name!r}",
                         "use up to 64 letters, digits, dots, hyphens and underscores, e.g. corp-mail")
    return name


def cas_dir(store: Store) -> Path:
    return store.home / "cas"


def ca_dir(store: Store, name: str) -> Path:
    return cas_dir(store) / check_name(name)


def rel(name: str, *parts: str) -> str:
    """A path under the state directory, for Store.write_file."""
    return "/".join(("cas", check_name(name), *parts))


def generation_dir(number: int) -> str:
    return f"g{number:04d}"


def cert_path(store: Store, name: str, number: int) -> Path:
    return ca_dir(store, name) / generation_dir(number) / "ca.pem"


def key_path(store: Store, name: str, number: int) -> Path:
    return ca_dir(store, name) / generation_dir(number) / "ca.key"


def names(store: Store) -> list[str]:
    folder = cas_dir(store)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "ca.toml").is_file())


def exists(store: Store, name: str) -> bool:
    return (ca_dir(store, name) / "ca.toml").is_file()


def load(store: Store, name: str) -> CaRecord:
    """Read ``cas/NAME/ca.toml`` (exit 2 when there is no such CA or root may not trust it)."""
    folder = ca_dir(store, name)
    if not exists(store, name):
        known = ", ".join(names(store)) or "none yet"
        raise NotFoundError(f"no CA named {name!r} in {store.home}",
                            f"create it with `certkit ca create {name} --permit example.com` (known CAs: {known})")
    store.check_home()
    for path, what in ((cas_dir(store), "CA folder"), (folder, "CA folder"), (folder / "ca.toml", "CA settings")):
        fsguard.check_trusted(path, what)
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    path = folder / "ca.toml"
    try:
        record: CaRecord = typed_from_dict(CaRecord, tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, SettingsError) as exc:
        raise OperationError(f"cannot read {path}: {exc}", "fix or restore the file") from exc
    if record.name != name or not record.generations:
        raise OperationError(f"{path}: the record is not CA {name!r} or has no generation", "restore the file")
    return record


def save(store: Store, record: CaRecord) -> None:
    """Write ``ca.toml`` (the caller holds the state lock)."""
    store.write_file(rel(record.name, "ca.toml"), record.to_toml(), private=True)


def write_generation(store: Store, name: str, number: int, cert_pem: bytes, key_pem: bytes) -> None:
    """Store a generation's key (0600, first) and certificate (0644)."""
    store.write_file(rel(name, generation_dir(number), "ca.key"), key_pem, private=True)
    store.write_file(rel(name, generation_dir(number), "ca.pem"), cert_pem, private=False)


def read_cert(store: Store, name: str, number: int) -> x509.Certificate:
    path = cert_path(store, name, number)
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise OperationError(f"cannot read the CA certificate {path}: {exc}", "restore the file") from exc


def key_pem(key: keys.PrivateKey, passphrase: str | None) -> bytes:
    """PKCS#8 PEM, encrypted (the best scheme cryptography offers) when there is a passphrase."""
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if passphrase:
        encryption = serialization.BestAvailableEncryption(passphrase.encode())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def passphrase(record: CaRecord) -> str | None:
    return read_secret_file(record.passphrase_file, "CA passphrase") if record.passphrase_file else None


def read_key(store: Store, record: CaRecord, number: int) -> keys.PrivateKey:
    """The CA key of generation ``number``, refused when others could read or replace it.

    Raises:
        UsageError: the key file is group/other-accessible, not root's (as
            root), encrypted without a passphrase file, or the passphrase is wrong.
    """
    path = key_path(store, record.name, number)
    check_key_file(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OperationError(f"cannot read the CA key {path}: {exc.strerror}", "restore it from a backup") from exc
    secret = passphrase(record)
    try:
        key = serialization.load_pem_private_key(data, password=secret.encode() if secret else None)
    except TypeError:
        raise UsageError(f"the CA key {path} is encrypted and CA {record.name!r} has no passphrase file",
                         "restore ca.toml's passphrase_file line") from None
    except ValueError:
        raise UsageError(f"the passphrase in {record.passphrase_file} does not open the CA key {path}",
                         "put the right passphrase on the first line of that file") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise OperationError(f"the CA key {path} is not an RSA or ECDSA key", "restore it from a backup")
    return key


def check_key_file(path: Path) -> None:
    """Refuse a CA key that group or others may read or write (anyone could then sign for the CA's names)."""
    fsguard.check_trusted(path.parent, "CA generation folder")
    try:
        mode = stat.S_IMODE(path.lstat().st_mode)
    except FileNotFoundError:
        raise OperationError(f"the CA key {path} is missing", "restore it from a backup") from None
    if os.name != "nt" and mode & 0o077:  # on Windows the folder's ACL protects it (homedir.windows_acl_argv)
        raise UsageError(f"the CA key {path} is readable or writable by group or others (mode {mode:04o}): "
                         "anyone who can read it can sign certificates your clients trust",
                         f"chmod 600 {path}, and consider the key exposed: `certkit ca rotate` makes a new one")
    fsguard.check_trusted(path, "CA key")
