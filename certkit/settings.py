"""Lineage settings: everything needed to issue a lineage again.

A lineage's settings live in ``lineages/NAME/settings.toml``; this module
only converts between the dataclasses and plain dicts (store.py does I/O).
TOML has no null, so None values are left out when writing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

SELF_SIGNED = "self-signed"


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
    dns_resolver: str | None = None
    profile: str | None = None
    ca_bundle: str | None = None
    preferred_chain: str | None = None
    reuse_key: bool = False


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
class LineageSettings:
    """A lineage's stored settings."""

    name: str
    domains: list[str]
    key_type: str = "rsa2048"
    source: str = SELF_SIGNED  # "self-signed" or the ACME directory URL
    days: int = 365
    allow_weak: bool = False
    acme: AcmeSettings | None = None
    pfx: PfxSettings = field(default_factory=PfxSettings)
    trust: bool = False
    trust_store_dir: str | None = None
    deploy: list[DeployTarget] = field(default_factory=list)
    verify: list[str] = field(default_factory=list)

    @property
    def is_acme(self) -> bool:
        # A new ACME lineage has acme settings but its source (the directory URL) is only known after issuance.
        return self.acme is not None or self.source != SELF_SIGNED

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _drop_none(asdict(self))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LineageSettings:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if isinstance(kwargs.get("acme"), dict):
            kwargs["acme"] = _build(AcmeSettings, kwargs["acme"])
        kwargs["pfx"] = _build(PfxSettings, kwargs.get("pfx") or {})
        kwargs["deploy"] = [
            DeployTarget(d["target"], dict(d.get("options") or {})) for d in kwargs.get("deploy") or []
        ]
        return cls(**kwargs)


def _build(cls: Any, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value if v is not None]
    return value
