"""Issuing a lineage version: key, certificate (self-signed or ACME), store, go live, deploy.

``issue`` is the one pipeline behind `certkit issue`, `certkit selfssl` and
`certkit renew`: it holds the state lock from key generation to the end of
deployment, so a second certkit process never sees a half-made version.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from certkit import clock, export, keys, names, runner
from certkit import x509 as cx
from certkit.callbacks import Echo
from certkit.errors import CertkitError
from certkit.settings import DeployTarget, LineageSettings, merge_targets
from certkit.store import Store


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
    skip_dane_wait: bool = False,
) -> IssueOutcome:
    """Issue a new version of ``settings.name`` and make it live.

    The settings are saved with the version, so the next renewal issues the
    same way. Remembered deploy targets and verifications (plus
    ``extra_targets``/``extra_verify`` from the command line) run afterwards,
    with rollback to the previous version on failure.

    Raises:
        CertkitError: UsageError for bad settings, AcmeError, HookError,
            VerificationError (after rollback), HeldBack (a DANE lineage whose
            next key's TLSA record is not visible long enough; nothing changed).

    A DANE lineage (``settings.dane``) is re-issued with its staged next key,
    and afterwards gets a new staged key and its records published
    (certkit.dane.rollover); ``skip_dane_wait`` skips the visibility wait.
    """
    identities = [names.parse_name(d) for d in settings.domains]
    key_type = keys.check_key_type(settings.key_type, settings.allow_weak)
    targets, verify = extra_targets or [], extra_verify or []
    with store.lock():
        previous = store.live_version(settings.name)
        key = _reused_key(store, settings, previous)
        if key is None:
            key = _dane_key(store, settings, previous, echo, skip_dane_wait) or keys.generate(key_type)
        made = _certificate(store, settings, identities, key, previous, echo)
        version, generated = _add_version(store, settings, key, made)
        store.save_settings(settings)
        # From here until the deploy targets have run, a kill leaves work for the next `renew`.
        store.mark_unfinished(settings.name, "issue", version, previous, clock.now_iso(), targets, verify)
        store.activate(settings.name, version)
        if made.state_updates:
            store.update_state(settings.name, **made.state_updates)
        outcome = IssueOutcome(settings.name, version, previous, generated, _install_trust(settings, made))
        deployed = False
        try:
            if deploy:
                deployed = run_deploy(store, settings, previous, targets, verify, echo)
        except Exception:
            if store.live_version(settings.name) == previous:  # rolled back: nothing is left to finish
                store.clear_unfinished(settings.name)
            raise
        store.clear_unfinished(settings.name)
        if settings.dane is not None:
            _dane_after_switch(store, settings, echo, previous, deployed)
        return outcome


def _dane_key(store: Store, settings: LineageSettings, previous: int | None, echo: Echo,
              skip_wait: bool) -> keys.PrivateKey | None:
    """A DANE lineage's staged next key once its TLSA record may go live (HeldBack otherwise); None: not DANE,
    or a first version (nothing published yet to break)."""
    if settings.dane is None or previous is None:
        return None
    if store.load_settings(settings.name).dane is None:
        # DANE is being switched on: nothing is published yet, so the live key stays for this version and
        # the records of it and of the next key go out afterwards (no key change, nothing to break).
        return keys.load_pem(store.read_version(settings.name, previous).key_pem)
    from certkit.dane import rollover
    from certkit.errors import HeldBack

    try:
        return rollover.key_for_renewal(store, settings, echo, rollover.Waits(skip=skip_wait))
    except HeldBack:
        # What this issue asked for (an --expand to new names or key type) is what the renewal that
        # goes through later must issue: remember it now.
        store.save_settings(settings)
        raise


def _dane_after_switch(store: Store, settings: LineageSettings, echo: Echo, previous: int | None,
                       deployed: bool) -> None:
    """Stage the next key and publish/clean TLSA records; a failure here is a warning (the version is live).

    ``deployed``: whether deploy targets ran (else a server may still serve the previous key, and its
    record stays until the next renewal).
    """
    from certkit.dane import rollover

    try:
        rollover.after_switch(store, settings, echo, rollover.Waits(), previous, deployed)
    except CertkitError as exc:
        echo(f"warning: DANE records not updated: {exc}; the next `certkit renew` tries again "
             f"(`certkit dane {settings.name}` lists them)")


@dataclass
class _Certificate:
    """A new certificate (and chain) before it is stored, with the lineage state it brings."""

    cert_pem: bytes
    chain_pem: bytes
    state_updates: dict[str, object] = field(default_factory=dict)


def _reused_key(store: Store, settings: LineageSettings, previous: int | None) -> keys.PrivateKey | None:
    """The previous version's key when the ACME settings ask to reuse it (``reuse_key``)."""
    if settings.is_acme and settings.acme and settings.acme.reuse_key and previous:
        return keys.load_pem(store.read_version(settings.name, previous).key_pem)
    return None


def _certificate(store: Store, settings: LineageSettings, identities: list[names.Identity],
                 key: keys.PrivateKey, previous: int | None, echo: Echo) -> _Certificate:
    """Obtain the certificate from the lineage's CA, or make a self-signed one."""
    if not settings.is_acme:
        cert = cx.self_signed(key, identities, settings.days)
        return _Certificate(cx.to_pem(cert), b"")
    assert settings.acme is not None
    from certkit.acme import obtain  # heavy imports only on this path

    prev_cert = None
    if previous:
        prev_cert = cx.load_chain(store.read_version(settings.name, previous).cert_pem)[0]
    with around_order(settings, echo):
        result = obtain(store, settings.acme, identities, key, previous_cert=prev_cert, echo=echo)
    settings.source = result.directory_url
    # Always replace: a window stored for the previous certificate says nothing about this one.
    return _Certificate(result.cert_pem, result.chain_pem, {"ari": result.ari})


@contextlib.contextmanager
def around_order(settings: LineageSettings, echo: Echo) -> Iterator[None]:
    """The lineage's ACME --pre-hook before the order and --post-hook after it (also after a failure).

    A failing pre-hook stops the issue before the CA is asked (exit 1); a
    failing post-hook is reported but does not undo a certificate already
    obtained.
    """
    acme = settings.acme
    env = {"CERTKIT_NAME": settings.name, "CERTKIT_DOMAINS": " ".join(settings.domains)}
    if acme is not None and acme.pre_hook:
        _run_order_hook(acme.pre_hook, "the pre-hook", env)
    try:
        yield
    finally:
        if acme is not None and acme.post_hook:
            try:
                _run_order_hook(acme.post_hook, "the post-hook", env)
            except CertkitError as exc:
                echo(f"warning: {exc}")


def _run_order_hook(command: str, what: str, env: dict[str, str]) -> None:
    argv = runner.command_argv(command, what)
    runner.run(argv, env=runner.child_env(env), timeout=runner.hook_timeout(), what=f"{what} ({command})",
               hook=True, check=True)


def _add_version(store: Store, settings: LineageSettings, key: keys.PrivateKey,
                 made: _Certificate) -> tuple[int, bool]:
    """Store key, certificate, chain (and PFX); the new version and whether a PFX password was generated."""
    pfx = pfx_password = None
    generated = False
    if settings.pfx.enabled:
        pfx, password, generated = export.lineage_pfx(settings, key, cx.load_chain(made.cert_pem + made.chain_pem))
        pfx_password = password if generated else None
    version = store.add_version(settings.name, keys.to_pem(key), made.cert_pem, made.chain_pem, pfx, pfx_password)
    return version, generated


def _install_trust(settings: LineageSettings, made: _Certificate) -> list[str]:
    """Add a self-signed certificate to the OS trust store when asked (``--trust``); the notes to show."""
    if not (settings.trust and not settings.is_acme):
        return []
    from certkit import trust

    return [trust.install(made.cert_pem, settings.name, settings.trust_store_dir)]


def run_deploy(
    store: Store,
    settings: LineageSettings,
    previous: int | None,
    extra_targets: list[DeployTarget],
    extra_verify: list[str],
    echo: Echo,
) -> bool:
    """Run remembered + extra deploy targets and verifications for the live version; whether any ran.

    ``settings`` are the lineage's, as read (or saved) earlier in this run.
    Skipped entirely (no import of the deploy machinery) when the lineage has
    nothing to deploy and there are no hooks in ``$CERTKIT_HOME/hooks/deploy``.
    """
    hook_dir = store.home / "hooks" / "deploy"
    has_hooks = hook_dir.is_dir() and any(hook_dir.iterdir())
    if not (settings.deploy or settings.verify or extra_targets or extra_verify or has_hooks):
        return False
    from certkit.deploy.pipeline import deploy_live_version

    deploy_live_version(
        store,
        settings.name,
        targets=merge_targets(settings.deploy, extra_targets),
        verify=list(dict.fromkeys([*settings.verify, *extra_verify])),
        previous_version=previous,
        rollback=True,
        just_activated=True,
        echo=echo,
        settings=settings,
    )
    return True
