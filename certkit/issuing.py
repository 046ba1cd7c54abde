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
from certkit.errors import CertkitError, OperationError
from certkit.progress import StatusLine
from certkit.settings import PRIVATE_CA_SOURCE, AcmeSettings, DeployTarget, LineageSettings, merge_targets
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
    csr_pem: bytes | None = None,
    progress: StatusLine | None = None,
    skip_dane_wait: bool = False,
) -> IssueOutcome:
    """Issue a new version of ``settings.name`` and make it live.

    The settings are saved with the version, so the next renewal issues the
    same way. Remembered deploy targets and verifications (plus
    ``extra_targets``/``extra_verify`` from the command line) run afterwards,
    with rollback to the previous version on failure. ``csr_pem``: a new CSR
    for a lineage with ``settings.csr`` (kept for renewals; without it the
    stored one is sent again).

    Raises:
        CertkitError: UsageError for bad settings, AcmeError, HookError,
            VerificationError (after rollback), HeldBack (a DANE lineage whose
            next key's TLSA record is not visible long enough; nothing changed).

    A DANE lineage (``settings.dane``) is re-issued with its staged next key,
    and afterwards gets a new staged key and its records published
    (certkit.dane.rollover); ``skip_dane_wait`` skips the visibility wait.
    ``progress`` is the status line for long waits (dns-01 propagation); without it they print plain
    lines through ``echo``.
    """
    identities = [names.parse_name(d) for d in settings.domains]
    targets, verify = extra_targets or [], extra_verify or []
    with store.lock():
        previous = store.live_version(settings.name)
        key, csr = _key_or_csr(store, settings, previous, csr_pem, echo, skip_dane_wait)
        made = _certificate(store, settings, identities, key, csr, previous, echo, progress=progress)
        version, generated = _add_version(store, settings, key, made)
        store.save_settings(settings)
        if csr_pem is not None:
            store.save_csr(settings.name, csr_pem)
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
    source: str = "self-signed"  # the directory URL that issued it


def revoke_live(store: Store, name: str, reason: tuple[int, str], *, with_cert_key: bool = False,
                echo: Echo = print) -> dict[str, object]:
    """Revoke the live certificate of ``name`` at its CA and mark the lineage revoked (``state.revoked``).

    Args:
        reason: the RFC 5280 CRLReason code and its name.
        with_cert_key: sign the request with the certificate's key (RFC 8555 section 7.6) instead of the account's.

    Returns:
        The ``revoked`` record stored in the lineage's state; `renew` replaces the lineage next time it runs.

    Raises:
        UsageError: a self-signed lineage, no live version, --with-cert-key without a key file.
        AcmeError: the CA refused or cannot be reached (the lineage is not marked).
    """
    from certkit.errors import UsageError

    with store.lock():
        settings = store.load_settings(name)
        version = store.live_version(name)
        if not settings.is_acme:
            raise UsageError(f"{name} is self-signed: no CA knows it, so there is nothing to revoke",
                             f"stop using it: `certkit renew --force {name}` makes a new key and certificate")
        if version is None:
            raise UsageError(f"{name} has no live version to revoke", f"see `certkit show {name}`")
        files = store.read_version(name, version)
        if with_cert_key and not files.key_pem:
            raise UsageError(f"{name} has no key file here (it was issued for a CSR)",
                             "revoke with the account key: drop --with-cert-key")
        cert = cx.load_chain(files.cert_pem)[0]
        from certkit.acme import revoke

        acme = settings.acme or _acme_from_source(settings.source)
        revoke(store, acme, settings.source, cert, reason[0],
               keys.load_pem(files.key_pem) if with_cert_key else None, echo)
        record: dict[str, object] = {"time": clock.now_iso(), "reason": reason[1], "reason_code": reason[0],
                                     "serial": cx.serial_hex(cert), "version": version,
                                     "signed_with": "certificate key" if with_cert_key else "account key"}
        store.update_state(name, revoked=record)
        return record


def _acme_from_source(source: str) -> AcmeSettings:
    """ACME settings for a lineage whose settings.toml lost its [acme] table: the CA from ``source``."""
    return AcmeSettings(server=source)


@dataclass
class DryRun:
    """What a dry run got: the certificate the CA issued (discarded) and where it came from."""

    name: str
    cert_pem: bytes
    source: str
    key_type: str


def dry_run(store: Store, settings: LineageSettings, *, echo: Echo = print, csr_pem: bytes | None = None) -> DryRun:
    """Everything `issue` does up to the certificate, then nothing: no lock, no file, no deploy.

    The ACME order runs to the end (finalize and download) against the CA's
    staging directory where it has one (Let's Encrypt), else the same
    server; a stored account is used, a missing one is registered at the CA
    and not saved. The pre- and post-hooks run (they free port 80); deploy
    targets and hooks do not.
    """
    identities = [names.parse_name(d) for d in settings.domains]
    previous = store.live_version(settings.name) if store.exists(settings.name) else None
    key, csr = _key_or_csr(store, settings, previous, csr_pem)
    made = _certificate(store, settings, identities, key, csr, previous, echo, dry_run=True)
    return DryRun(settings.name, made.cert_pem, made.source, settings.key_type)


def _key_or_csr(store: Store, settings: LineageSettings, previous: int | None, csr_pem: bytes | None,
                echo: Echo = print, skip_dane_wait: bool = False) -> tuple[keys.PrivateKey | None, bytes | None]:
    """The key for the new version (reused, a DANE lineage's staged next key, or new), or the CSR of a
    lineage whose key lives elsewhere."""
    if settings.csr:
        if csr_pem is None:
            path = store.csr_path(settings.name)
            try:
                csr_pem = path.read_bytes()
            except OSError as exc:
                fix = f"issue it again with: certkit issue --csr FILE --name {settings.name} --acme ..."
                raise OperationError(f"{settings.name} was issued for a CSR, but {path} cannot be read: "
                                     f"{exc.strerror or exc}", fix) from exc
        return None, csr_pem
    key_type = keys.check_key_type(settings.key_type, settings.allow_weak)
    if settings.is_acme and settings.acme and settings.acme.reuse_key and previous \
            and not _key_compromised(store, settings.name, previous):
        return keys.load_pem(store.read_version(settings.name, previous).key_pem), None
    return _dane_key(store, settings, previous, echo, skip_dane_wait) or keys.generate(key_type), None


def _key_compromised(store: Store, name: str, version: int) -> bool:
    """Whether `certkit revoke --reason keyCompromise` revoked ``version``: its key is never reused (CAs block it)."""
    revoked = store.load_state(name).get("revoked")
    return isinstance(revoked, dict) and revoked.get("reason") == "keyCompromise" and revoked.get("version") == version


def _certificate(store: Store, settings: LineageSettings, identities: list[names.Identity],
                 key: keys.PrivateKey | None, csr_pem: bytes | None, previous: int | None, echo: Echo,
                 dry_run: bool = False, progress: StatusLine | None = None) -> _Certificate:
    """Obtain the certificate from the lineage's CA (ACME or private), or make a self-signed one."""
    if settings.ca is not None:
        from certkit.ca import manage

        assert key is not None  # the CLI refuses --csr with --ca (a CSR lineage is always ACME)
        signed = manage.sign(store, settings.ca, key.public_key(), identities, settings.days)
        for note in signed.notes:
            echo(f"warning: {note}")
        settings.source = f"{PRIVATE_CA_SOURCE}{settings.ca}"
        return _Certificate(signed.cert_pem, b"", source=settings.source)
    if not settings.is_acme:
        assert key is not None  # a CSR lineage is always ACME (the CLI refuses --csr without --acme)
        cert = cx.self_signed(key, identities, settings.days)
        return _Certificate(cx.to_pem(cert), b"", source=settings.source)
    from certkit.acme import obtain  # heavy imports only on this path

    acme = settings.acme or _acme_from_source(settings.source)
    prev_cert = None
    if previous:
        prev_cert = cx.load_chain(store.read_version(settings.name, previous).cert_pem)[0]
    with around_order(settings, echo):
        result = obtain(store, acme, identities, key, csr_pem=csr_pem, previous_cert=prev_cert, echo=echo,
                        dry_run=dry_run, progress=progress)
    if not dry_run:
        settings.source = result.directory_url
    # Always replace: a window stored for the previous certificate says nothing about this one.
    return _Certificate(result.cert_pem, result.chain_pem, {"ari": result.ari}, source=result.directory_url)


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


def _add_version(store: Store, settings: LineageSettings, key: keys.PrivateKey | None,
                 made: _Certificate) -> tuple[int, bool]:
    """Store key, certificate, chain (and PFX); the new version and whether a PFX password was generated.

    Without a key (a CSR lineage) the version has no key file and no PFX.
    """
    pfx = pfx_password = None
    generated = False
    if key is None:
        return store.add_version(settings.name, b"", made.cert_pem, made.chain_pem), False
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
