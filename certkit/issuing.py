"""Issuing a lineage version: key, certificate (self-signed or ACME), store, go live, deploy.

``issue`` is the one pipeline behind `certkit issue`, `certkit selfssl` and
`certkit renew`: it holds the state lock from key generation to the end of
deployment, so a second certkit process never sees a half-made version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from certkit import clock, export, keys, names
from certkit import x509 as cx
from certkit.settings import DeployTarget, LineageSettings, merge_targets
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
            pfx, password, generated = export.lineage_pfx(settings, key, cx.load_chain(cert_pem + chain_pem))
            pfx_password = password if generated else None
        version = store.add_version(settings.name, keys.to_pem(key), cert_pem, chain_pem, pfx, pfx_password)
        store.save_settings(settings)
        # From here until the deploy targets have run, a kill leaves work for the next `renew`.
        store.mark_unfinished(settings.name, "issue", version, previous, clock.now_iso(),
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
