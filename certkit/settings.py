"""Lineage settings: everything needed to issue a lineage again.

A lineage's settings live in ``lineages/NAME/settings.toml``; this module
only converts between the dataclasses and plain dicts (store.py does I/O).
TOML has no null, so None values are left out when writing.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

SELF_SIGNED = "self-signed"
PRIVATE_CA_SOURCE = "private-ca:"  # + the CA name: the source of certificates a `certkit ca` CA signed


@dataclass
class AcmeSettings:
    """How to talk to an ACME server for this lineage (contract: `issue --acme`)."""

    server: str = "letsencrypt"  # directory URL (shorthands resolved by certkit.acme)
    email: str | None = None
    agree_tos: bool = False
    eab_kid: str | None = None
    eab_hmac_key_file: str | None = None
    challenge: str = "http-01"  # http-01 | dns-01
    http_port: int = 80
    http_address: str = ""
    webroot: str | None = None
    dns_hook: str | None = None
    dns_resolver: str | None = None  # HOST[:PORT], or authoritative[@HOST[:PORT]]
    dns_wait: float | None = None  # seconds to wait for the TXT records (None: env CERTKIT_DNS_WAIT, else 180)
    profile: str | None = None
    ca_bundle: str | None = None
    preferred_chain: str | None = None
    reuse_key: bool = False
    pre_hook: str | None = None  # run before each order (stop what holds port 80), certbot's --pre-hook
    post_hook: str | None = None  # run after each order, whatever its outcome


@dataclass
class PfxSettings:
    """Whether and how each version also gets a PFX."""

    enabled: bool = False
    encryption: str = "auto"  # auto | legacy | modern
    password_file: str | None = None  # user's file; None: env / generated
    friendly_name: str | None = None


@dataclass
class DeployTarget:
    """One remembered deploy target: its name ("postfix", "script:/path"...) and options."""

    target: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DaneSettings:
    """DANE for this lineage (contract: `issue --dane`): a staged next key and its TLSA records.

    ``host`` and ``port`` name the TLSA owner ``_PORT._tcp.HOST`` (host
    default: the first name); ``dns_hook`` publishes and removes the
    records; ``nameservers`` (``HOST:PORT``) are asked whether a record is
    visible, instead of the zone's own NS servers; ``ca`` also publishes
    ``2 1 1`` for the issuing CA.
    """

    port: int = 25
    host: str | None = None
    dns_hook: str | None = None
    nameservers: list[str] = field(default_factory=list)
    ca: bool = False


@dataclass
class LineageSettings:
    """A lineage's stored settings."""

    name: str
    domains: list[str]
    key_type: str = "rsa2048"
    source: str = SELF_SIGNED  # "self-signed", the ACME directory URL or "private-ca:NAME"
    days: int = 365
    allow_weak: bool = False
    acme: AcmeSettings | None = None
    pfx: PfxSettings = field(default_factory=PfxSettings)
    trust: bool = False
    trust_store_dir: str | None = None
    ca: str | None = None  # the private CA (certkit ca) that signs this lineage's certificates
    deploy: list[DeployTarget] = field(default_factory=list)
    verify: list[str] = field(default_factory=list)
    csr: bool = False  # issued for a CSR made elsewhere (lineages/NAME/csr.pem): no key file here, ever
    dane: DaneSettings | None = None

    @property
    def is_acme(self) -> bool:
        # A new ACME lineage has acme settings but its source (the directory URL) is only known after issuance.
        return self.acme is not None or (self.source != SELF_SIGNED and self.ca is None)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _drop_none(asdict(self))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LineageSettings:
        """Build from a parsed settings.toml, checking every known field's type.

        Raises:
            SettingsError: a field is missing or of the wrong type (the message names it).
        """
        settings: LineageSettings = _build(cls, data, "")
        if not settings.domains:
            raise SettingsError("domains", "must list at least one name")
        return settings


def typed_from_dict(cls: Any, data: Any) -> Any:
    """``cls(**data)`` for any settings-like dataclass, each field's type checked (SettingsError otherwise)."""
    return _build(cls, data, "")


def merge_targets(remembered: list[DeployTarget], new: list[DeployTarget]) -> list[DeployTarget]:
    """Remembered targets with any of the same target name replaced by the new one."""
    replaced = {t.target for t in new}
    return [t for t in remembered if t.target not in replaced] + list(new)


class SettingsError(ValueError):
    """A settings.toml field that is missing or of the wrong type."""

    def __init__(self, field_path: str, problem: str) -> None:
        super().__init__(f"field `{field_path}` {problem}")
        self.field_path = field_path


def _build(cls: Any, data: Any, prefix: str) -> Any:
    """``cls(**data)`` with each known field checked against its annotation.

    Unknown keys are ignored (a newer certkit may have written them); a field
    of the wrong type is an error, never coerced: ``domains = "x"`` once became
    a certificate for ``x`` one letter at a time.
    """
    if not isinstance(data, dict):
        raise SettingsError(prefix.rstrip(".") or "(top level)", f"must be a table, found {_kind(data)}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        path = prefix + f.name
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise SettingsError(path, "is missing")
            continue
        kwargs[f.name] = _convert(hints[f.name], data[f.name], path)
    return cls(**kwargs)


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path)  # TOML has no null: a present value is the inner type
    if origin is list:
        if not isinstance(value, list):
            raise SettingsError(path, f"must be a list, found {_kind(value)}")
        return [_convert(args[0], item, f"{path}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SettingsError(path, f"must be a table, found {_kind(value)}")
        return dict(value)
    if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
        return _build(hint, value, path + ".")
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # `dns_wait = 30` written by hand is a number of seconds too
    # bool is a subclass of int in Python but not in TOML: `days = true` is wrong.
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise SettingsError(path, f"must be {_KIND_NAMES.get(hint, hint.__name__)}, found {_kind(value)}")
    return value


_KIND_NAMES = {str: "a string", int: "an integer", bool: "true or false", float: "a number",
               list: "a list", dict: "a table"}


def _kind(value: Any) -> str:
    for kind, name in _KIND_NAMES.items():
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return f"{name} ({value!r})" if kind in (str, int, bool, float) else name
    return type(value).__name__


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value if v is not None]
    return value
