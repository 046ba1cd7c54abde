"""Deploy target names, their options, and the module that implements each.

A target is written ``NAME`` or ``NAME:key=value,key=value`` (what ``issue
--deploy`` and the lineage settings hold), except ``script:PATH`` where
everything after the colon is the path::

    postfix
    postfix:config_dir=/etc/postfix,setup_submission=yes,submission_listen=127.0.0.1:587
    aiosmtpd:pid_file=/run/certkit-smtpd.pid
    iis:site=Default Web Site,port=443
    exchange:services=SMTP,IIS          (a value may contain commas when it is the last option)
    script:/usr/local/bin/reload-dovecot

Modules are imported only when a target runs, so a missing optional part
(e.g. the Windows scripts on a Linux-only build) never breaks the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from certkit.errors import NotBuiltError, UsageError
from certkit.settings import DeployTarget


@dataclass(frozen=True)
class TargetKind:
    """One kind of deploy target.

    Attributes:
        name: the target's name ("postfix", "script"...).
        module: the module with ``deploy(ctx)`` (and maybe ``rollback(ctx)``).
        options: known options and their types; other names are refused.
        paths: options holding file paths (made absolute when parsed).
        needs_pfx: the target imports a PFX (one is made for the version if missing).
        about: one line for help texts.
    """

    name: str
    module: str
    options: Mapping[str, type] = field(default_factory=dict)
    paths: frozenset[str] = frozenset()
    needs_pfx: bool = False
    about: str = ""


KINDS: dict[str, TargetKind] = {
    "postfix": TargetKind(
        "postfix", "certkit.deploy.postfix",
        {"config_dir": str, "setup_submission": bool, "submission_listen": str},
        frozenset({"config_dir"}),
        about="Postfix: smtpd_tls_chain_files, STARTTLS on 25, optional 587 submission service, reload",
    ),
    "aiosmtpd": TargetKind(
        "aiosmtpd", "certkit.deploy.aiosmtpd", {"pid_file": str, "timeout": float}, frozenset({"pid_file"}),
        about="a running certkit smtpd / aiosmtpd app with certkit's reloadable TLS context",
    ),
    "iis": TargetKind(
        "iis", "certkit.deploy.windows",
        {"site": str, "port": int, "sni": bool, "host": str, "smtp_fqdn": str, "print": bool},
        needs_pfx=True, about="IIS site binding (Windows; certkit/deploy/powershell/iis.ps1)",
    ),
    "exchange": TargetKind(
        "exchange", "certkit.deploy.windows",
        {"services": str, "remove_previous": bool, "print": bool},
        needs_pfx=True, about="Exchange 2007+ (Windows; certkit/deploy/powershell/exchange.ps1)",
    ),
    "script": TargetKind(
        "script", "certkit.deploy.script", {"timeout": float},
        about="any executable, run with the hook environment",
    ),
}

_TRUE = {"1", "yes", "true", "on", "y"}
_FALSE = {"0", "no", "false", "off", "n", ""}


def kind_of(target: str) -> TargetKind:
    """The TargetKind of a target name ("script:/x" -> script); exit 2 for unknown ones."""
    base = target.split(":", 1)[0].strip().lower()
    kind = KINDS.get(base)
    if kind is None:
        raise UsageError(
            f"unknown deploy target {target!r}",
            "use one of: " + ", ".join(k if k != "script" else "script:PATH" for k in KINDS),
        )
    return kind


def script_path(target: str) -> str:
    """The PATH of a ``script:PATH`` target."""
    return target.split(":", 1)[1] if ":" in target else ""


def convert_option(kind: TargetKind, key: str, value: Any) -> tuple[str, Any]:
    """(normalised name, converted value) for one option of ``kind`` (exit 2 when unknown or bad)."""
    norm = key.strip().lower().replace("-", "_")
    if norm not in kind.options:
        known = ", ".join(sorted(kind.options)) or "none"
        raise UsageError(f"the {kind.name} target has no option {key!r}", f"its options: {known}")
    typ = kind.options[norm]
    if typ is bool:
        if isinstance(value, bool):
            return norm, value
        text = str(value).strip().lower()
        if text in _TRUE:
            return norm, True
        if text in _FALSE:
            return norm, False
        raise UsageError(f"option {norm} of {kind.name} wants yes or no, not {value!r}")
    if typ in (int, float):
        try:
            number = typ(value)
        except (TypeError, ValueError):
            raise UsageError(f"option {norm} of {kind.name} wants a number, not {value!r}") from None
        if number <= 0:
            raise UsageError(f"option {norm} of {kind.name} must be positive")
        return norm, number
    text = str(value)
    if not text.strip():
        # "postfix:config_dir=" would silently mean the default (/etc/postfix): refuse, never guess.
        raise UsageError(f"option {norm} of {kind.name} is empty", f"give it a value, or leave {norm} out")
    if norm in kind.paths:
        text = str(Path(text).expanduser().absolute())
    return norm, text


def make_target(target: str, options: Mapping[str, Any] | None = None) -> DeployTarget:
    """A validated DeployTarget from a name and options (exit 2 on anything unknown)."""
    kind = kind_of(target)
    name = kind.name
    if kind.name == "script":
        from certkit.deploy.hooks import check_script

        path = script_path(target)
        if not path:
            raise UsageError("script target without a path", "write it as script:/path/to/executable")
        name = "script:" + check_script(path)
    opts: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if value is None:
            continue
        norm, converted = convert_option(kind, key, value)
        opts[norm] = converted
    return DeployTarget(name, opts)


def parse_target(spec: str) -> DeployTarget:
    """Parse ``NAME[:key=value,...]`` or ``script:PATH`` (see the module doc).

    Raises:
        UsageError: unknown target or option, bad value, missing script (exit 2).
    """
    spec = spec.strip()
    if not spec:
        raise UsageError("empty deploy target", "use postfix, aiosmtpd, iis, exchange or script:PATH")
    head, sep, rest = spec.partition(":")
    kind = kind_of(head)
    if kind.name == "script" or not sep:
        return make_target(spec if kind.name == "script" else kind.name)
    options: dict[str, str] = {}
    last_key: str | None = None
    for part in rest.split(","):
        key, eq, value = part.partition("=")
        if not eq:
            if last_key is None:
                raise UsageError(f"cannot read the options in {spec!r}", "write them as NAME:key=value,key=value")
            options[last_key] += "," + part  # "services=SMTP,IIS": a comma inside the last value
            continue
        last_key = key.strip()
        options[last_key] = value.strip()
    return make_target(kind.name, options)


def format_target(target: DeployTarget) -> str:
    """The spec string of a target (inverse of :func:`parse_target`, for messages)."""
    if not target.options or target.target.startswith("script:"):
        return target.target
    return target.target + ":" + ",".join(f"{k}={_fmt(v)}" for k, v in target.options.items())


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def load(target: str) -> ModuleType:
    """The module implementing ``target`` (imported now)."""
    kind = kind_of(target)
    try:
        return importlib.import_module(kind.module)
    except ModuleNotFoundError as exc:
        if exc.name != kind.module:
            raise
        raise NotBuiltError(f"the {kind.name} deploy target is not part of this build",
                            "update certkit or use script:PATH") from None


def needs_pfx(targets: Iterable[DeployTarget]) -> bool:
    """True when any target imports a PFX (iis, exchange)."""
    return any(kind_of(t.target).needs_pfx for t in targets)
