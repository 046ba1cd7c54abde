"""Issuing a lineage version: key, certificate (self-signed or ACME), store, go live, deploy.

``issue`` is the one pipeline behind `certkit issue`, `certkit selfssl` and
`certkit renew`: it holds the state lock from key generation to the end of
deployment, so a second certkit process never sees a half-made version.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509

from certkit import due, export, keys, names
from certkit import x509 as cx
from certkit.errors import UsageError
from certkit.settings import DeployTarget, LineageSettings
from certkit.store import Store

Echo = Callable[[str], None]


@dataclass
class IssueOutcome:
    """What an issue run made."""

    name: str
    version: int
    previous_version: int | None
    pfx_password_generated: bool = False
    notes: list[str] = field(default_factory=list)


# A password or key is a line, not a file: reading more than this is a mistake (or /dev/zero).
SECRET_FILE_MAX = 4096


def read_secret_file(path: str, what: str) -> str:
    """First line of a secret file (trailing newline dropped); exit 2 when unreadable or not a clean line.

    At most SECRET_FILE_MAX bytes are read, so a device or a huge file cannot
    hang certkit or fill its memory; NUL and control characters are refused
    (a PFX password with a NUL makes a file nothing can open).
    """
    fix = "write it as plain UTF-8 text on the first line of a small file"
    try:
        with open(path, "rb") as handle:
            data = handle.read(SECRET_FILE_MAX + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path}: {exc.strerror or exc}",
                         "pass a readable file") from exc
    if len(data) > SECRET_FILE_MAX:
        raise UsageError(f"the {what} file {path} is larger than {SECRET_FILE_MAX} bytes (is it the right file?)",
                         fix)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"the {what} file {path} is not text (UTF-8 expected)", fix) from None
    if not text:
        raise UsageError(f"the {what} file {path} is empty", "put the secret on its first line")
    first, _, _ = text.partition("\n")
    first = first.removesuffix("\r")
    if not first:
        raise UsageError(f"the {what} file {path} starts with a blank line (the secret must be on line 1)",
                         "remove the blank line(s) before the secret")
    if "\x00" in first:
        raise UsageError(f"the {what} file {path} contains a NUL byte on its first line",
                         fix)
    bad = next((c for c in first if (ord(c) < 0x20 and c != "\t") or 0x7f <= ord(c) <= 0x9f), None)
    if bad is not None:
        raise UsageError(f"the {what} file {path} contains the control character {bad!r} on its first line "
                         f"(at position {first.index(bad) + 1})", fix)
    return first


def pfx_password_for(settings: LineageSettings) -> tuple[str, bool]:
    """The PFX password and whether certkit generated it.

    Order (contract): the lineage's password file, env CERTKIT_PFX_PASSWORD,
    else a random one saved next to the PFX.
    """
    if settings.pfx.password_file:
        return read_secret_file(settings.pfx.password_file, "PFX password"), False
    env = os.environ.get("CERTKIT_PFX_PASSWORD")
    if env:
        return env, False
    return export.generate_password(), True


def issue(
    store: Store,
    settings: LineageSettings,
    *,
    echo: Echo = print,
    extra_targets: list[DeployTarget] | None = None,
    extra_verify: list[str] | None = None,
    deploy: bool = True,
) -> IssueOutcome:
    """Issue a new version of ``settings.name`` and make it live.

    The settings are saved with the version, so the next renewal issues the
    same way. Remembered deploy targets and verifications (plus
    ``extra_targets``/``extra_verify`` from the command line) run afterwards,
    with rollback to the previous version on failure.

    Raises:
        CertkitError: UsageError for bad settings, AcmeError, HookError,
            VerificationError (after rollback).
    """
    identities = [names.parse_name(d) for d in settings.domains]
    key_type = keys.check_key_type(settings.key_type, settings.allow_weak)
    with store.lock():
        previous = store.live_version(settings.name)
        key = None
        if settings.is_acme and settings.acme and settings.acme.reuse_key and previous:
            key = keys.load_pem(store.read_version(settings.name, previous).key_pem)
        if key is None:
            key = keys.generate(key_type)
        outcome_notes: list[str] = []
        state_updates: dict[str, object] = {}
        if settings.is_acme:
            assert settings.acme is not None
            from certkit.acme import obtain  # heavy imports only on this path

            prev_cert = None
            if previous:
                prev_cert = cx.load_chain(store.read_version(settings.name, previous).cert_pem)[0]
            result = obtain(store, settings.acme, identities, key, previous_cert=prev_cert, echo=echo)
            settings.source = result.directory_url
            cert_pem, chain_pem = result.cert_pem, result.chain_pem
            # Always replace: a window stored for the previous certificate says nothing about this one.
            state_updates["ari"] = result.ari
        else:
            cert = cx.self_signed(key, identities, settings.days)
            cert_pem, chain_pem = cx.to_pem(cert), b""
        pfx = pfx_password = None
        generated = False
        if settings.pfx.enabled:
            certs = cx.load_chain(cert_pem + chain_pem)
            password, generated = pfx_password_for(settings)
            encryption = export.resolve_pfx_encryption(settings.pfx.encryption)
            pfx = export.pfx_bytes(key, certs[0], certs[1:], password, encryption,
                                   settings.pfx.friendly_name or default_friendly_name(settings.name, certs[0]))
            pfx_password = password if generated else None
        version = store.add_version(settings.name, keys.to_pem(key), cert_pem, chain_pem, pfx, pfx_password)
        store.save_settings(settings)
        # From here until the deploy targets have run, a kill leaves work for the next `renew`.
        store.mark_unfinished(settings.name, "issue", version, previous, due.iso(dt.datetime.now(dt.timezone.utc)),
                              extra_targets or [], extra_verify or [])
        store.activate(settings.name, version)
        if state_updates:
            store.update_state(settings.name, **state_updates)
        if settings.trust and not settings.is_acme:
            from certkit import trust

            outcome_notes.append(trust.install(cert_pem, settings.name, settings.trust_store_dir))
        outcome = IssueOutcome(settings.name, version, previous, generated, outcome_notes)
        try:
            if deploy:
                run_deploy(store, settings.name, previous, extra_targets or [], extra_verify or [], echo)
        except Exception:
            if store.live_version(settings.name) == previous:  # rolled back: nothing is left to finish
                store.clear_unfinished(settings.name)
            raise
        store.clear_unfinished(settings.name)
        return outcome


def run_deploy(
    store: Store,
    name: str,
    previous: int | None,
    extra_targets: list[DeployTarget],
    extra_verify: list[str],
    echo: Echo,
) -> None:
    """Run remembered + extra deploy targets and verifications for the live version.

    Skipped entirely (no import of the deploy machinery) when the lineage has
    nothing to deploy and there are no hooks in ``$CERTKIT_HOME/hooks/deploy``.
    """
    settings = store.load_settings(name)
    hook_dir = store.home / "hooks" / "deploy"
    has_hooks = hook_dir.is_dir() and any(hook_dir.iterdir())
    if not (settings.deploy or settings.verify or extra_targets or extra_verify or has_hooks):
        return
    from certkit.deploy.pipeline import deploy_live_version

    deploy_live_version(
        store,
        name,
        targets=merge_targets(settings.deploy, extra_targets),
        verify=list(dict.fromkeys([*settings.verify, *extra_verify])),
        previous_version=previous,
        rollback=True,
        just_activated=True,
        echo=echo,
    )


def merge_targets(remembered: list[DeployTarget], new: list[DeployTarget]) -> list[DeployTarget]:
    """Remembered targets with any of the same target name replaced by the new one."""
    replaced = {t.target for t in new}
    return [t for t in remembered if t.target not in replaced] + list(new)


def default_friendly_name(name: str, cert: x509.Certificate) -> str:
    """PFX friendly name shown by Windows/IIS: lineage and expiry date, to tell versions apart."""
    return f"{name} (certkit, until {cert.not_valid_after_utc:%Y-%m-%d})"
