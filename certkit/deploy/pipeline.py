"""Deploy the live version: targets, hook folder, verification, rollback.

:func:`deploy_live_version` is the one deploy path (``certkit deploy``,
``issue`` and ``renew`` through certkit.issuing). The order:

1. every target in the given order (``deploy(ctx)`` of its module), then
   every executable in ``$CERTKIT_HOME/hooks/deploy/`` in name order;
2. every ``--verify`` URL through the check machinery, with the lineage's
   first name as the expected name and the new certificate as the pin: the
   server must serve *this* certificate, not just a valid one;
3. success: the targets (with options) and URLs are remembered in the
   lineage settings, replacing earlier ones of the same target; the
   verification result goes into the lineage state (``last_check``);
4. failure, with rollback and a previous version: the previous version
   goes live again; every target that ran and has ``rollback(ctx)`` puts
   its saved configuration back and reloads (newest first), so it serves
   the previous version with the configuration it had before; the other
   targets and the hook folder run again with the previous version; then
   HookError/VerificationError (exit 1) says what failed and what was
   restored. A failed deploy remembers nothing.

None of the anchor tools does step 4: certbot logs a failed deploy hook and
still exits 0 (certbot#8528), and nobody checks what the server serves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypedDict

from certkit import clock, runner
from certkit.callbacks import Echo, Runner
from certkit.deploy import hooks
from certkit.deploy import targets as registry
from certkit.deploy.base import DeployContext
from certkit.errors import CertkitError, HookError, NotFoundError, OperationError, UsageError, VerificationError
from certkit.settings import DeployTarget, LineageSettings, merge_targets
from certkit.store import Store

if TYPE_CHECKING:
    from typing_extensions import Unpack

DEFAULT_VERIFY_TIMEOUT = 10.0


@dataclass
class VerifyResult:
    """One verification of one URL."""

    url: str
    ok: bool
    detail: str
    report: dict[str, Any] | None = None


@dataclass
class DeployOutcome:
    """What a successful deploy did."""

    name: str
    version: int
    targets: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    verified: list[VerifyResult] = field(default_factory=list)


@dataclass
class _Step:
    """A target (or hook-folder script) that was started in this run."""

    label: str
    target: DeployTarget | None  # None: a hook-folder script
    module: ModuleType | None
    ctx: DeployContext | None
    path: str = ""


def verify_url(url: str, cert_pem: bytes, name: str, timeout: float) -> VerifyResult:
    """Check that ``url`` serves ``cert_pem`` for ``name`` (certkit.check.verify_deployment)."""
    from certkit.check import verify_deployment

    outcome = verify_deployment(url, expected_cert_pem=cert_pem, name=name, timeout=timeout)
    report: dict[str, Any] | None = None
    to_json = getattr(getattr(outcome, "report", None), "to_json", None)
    if callable(to_json):
        report = dict(to_json())
        report.pop("transcript", None)  # the state file keeps the findings, not the whole session
    return VerifyResult(url, bool(outcome.ok), str(outcome.detail), report)


Verifier = Callable[[str, bytes, str, float], VerifyResult]


@dataclass(frozen=True)
class DeployRequest:
    """One deploy of a lineage's live version: what to run and verify, and the seams it uses.

    Attributes:
        targets: targets to run, in order.
        verify: URLs to check afterwards (``smtp://``, ``submission://``, ``smtps://``).
        previous_version: the version to restore on failure (None: nothing to restore).
        rollback: False leaves the new version live on failure (``--no-rollback``).
        remember: store targets and URLs in the lineage settings on success.
        just_activated: the caller (issue, renew) has just made this version
            live, so any failure - even a bad remembered option (exit 2) - rolls
            back; `certkit deploy` changed nothing before a refusal.
        hook_timeout: seconds per hook (default: env CERTKIT_HOOK_TIMEOUT or 120).
        verify_timeout: seconds per network step of a verification.
        verifier: replaces :func:`verify_url` (tests).
        echo: prints progress lines.
        run: the subprocess runner handed to targets and hooks.
        settings: the lineage settings the caller already read in this run
            (None: read them under the state lock).
    """

    targets: Sequence[DeployTarget]
    verify: Sequence[str]
    previous_version: int | None
    rollback: bool = True
    remember: bool = True
    just_activated: bool = False
    hook_timeout: float | None = None
    verify_timeout: float = DEFAULT_VERIFY_TIMEOUT
    verifier: Verifier | None = None
    echo: Echo = print
    run: Runner = runner.run
    settings: LineageSettings | None = None


class DeployOptions(TypedDict, total=False):
    """The optional fields of :class:`DeployRequest`, as keywords of :func:`deploy_live_version`."""

    rollback: bool
    remember: bool
    just_activated: bool
    hook_timeout: float | None
    verify_timeout: float
    verifier: Verifier | None
    echo: Echo
    run: Runner
    settings: LineageSettings | None


@dataclass
class _Deployment:
    """A deploy in progress: the request, the lineage's settings and live version, and what ran so far."""

    store: Store
    settings: LineageSettings
    version: int
    request: DeployRequest
    started: list[_Step] = field(default_factory=list)
    results: list[VerifyResult] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.settings.name


def _context(job: _Deployment, target: DeployTarget, version: int, previous: int | None,
             env: dict[str, str]) -> DeployContext:
    options = dict(target.options)
    hook_timeout = job.request.hook_timeout
    if target.target.startswith("script:") and hook_timeout and "timeout" not in options:
        options["timeout"] = hook_timeout
    return DeployContext(
        target=target.target, store=job.store, name=job.name, settings=job.settings, version=version,
        previous_version=previous, paths=job.store.live_paths(job.name), hook_env=env,
        options=options, echo=job.request.echo, run=job.request.run,
    )


def _run_all(job: _Deployment, targets: Sequence[DeployTarget], version: int, previous: int | None,
             started: list[_Step]) -> None:
    """Run targets then the hook folder for the live ``version``; append each step to ``started``."""
    store, settings, echo = job.store, job.settings, job.request.echo
    modules = [registry.load(t.target) for t in targets]  # a missing module fails before any change
    if registry.needs_pfx(targets):
        hooks.ensure_pfx(store, settings, version)
    hooks.ensure_pfx_password_file(store, settings, version)
    env = hooks.hook_env(store, settings, version, previous)
    contexts = [_context(job, t, version, previous, env) for t in targets]
    for module, ctx in zip(modules, contexts, strict=True):
        preflight = getattr(module, "preflight", None)
        if preflight is not None:
            preflight(ctx)  # bad options/paths fail here, before any target changed anything
    for target, module, ctx in zip(targets, modules, contexts, strict=True):
        started.append(_Step(target.target, target, module, ctx))
        if not target.options.get("print"):  # --print output stays pasteable PowerShell
            echo(f"Deploying {settings.name} (version {version}) to {target.target}")
        module.deploy(ctx)
    for path in hooks.hook_dir_scripts(store, echo):
        started.append(_Step(f"hook {path}", None, None, None, str(path)))
        echo(f"Running deploy hook {path}")
        hooks.run_hook(hooks.script_argv(str(path)), env, what=f"deploy hook {path}",
                       timeout=job.request.hook_timeout, run=job.request.run, echo=echo)


def deploy_live_version(
    store: Store,
    name: str,
    *,
    targets: Sequence[DeployTarget],
    verify: Sequence[str],
    previous_version: int | None,
    **options: Unpack[DeployOptions],
) -> DeployOutcome:
    """Deploy the lineage's live version to ``targets``, run hooks, verify, roll back on failure.

    The keywords are the fields of :class:`DeployRequest`; :func:`deploy_request`
    takes one directly.

    Raises:
        HookError: a target or hook failed (after rollback when possible).
        VerificationError: a URL did not serve the new certificate (after rollback).
        UsageError: bad target options (exit 2; nothing was changed yet when
            the error comes from parsing).
    """
    return deploy_request(store, name, DeployRequest(targets, verify, previous_version, **options))


def deploy_request(store: Store, name: str, request: DeployRequest) -> DeployOutcome:
    """:func:`deploy_live_version` with its settings in one :class:`DeployRequest`."""
    with store.lock():
        settings = request.settings or store.load_settings(name)
        version = store.live_version(name)
        if version is None:
            raise NotFoundError(f"lineage {name!r} has no live version", f"run `certkit issue --name {name} ...`")
        job = _Deployment(store, settings, version, request)
        try:
            _check_names(request)
            _check_key_needed(settings, request.targets)
            if store.unfinished(name) is None:  # issue/renew wrote theirs before the version went live
                store.mark_unfinished(name, "deploy", version, request.previous_version, clock.now_iso(),
                                      request.targets, request.verify)
            _run_all(job, request.targets, version, request.previous_version, job.started)
            _verify_all(job)
        except (CertkitError, OSError) as raised:
            # An OSError (a config file a target cannot read, a full disk) rolls back like any failure.
            exc = raised if isinstance(raised, CertkitError) else _os_error(raised)
            failure = _handle_failure(job, exc)
            if failure is None:
                raise
            raise failure from exc
        _finish(job)
        return DeployOutcome(
            name, version,
            targets=[t.target for t in request.targets],
            hooks=[s.path for s in job.started if s.target is None],
            verified=job.results,
        )


def _check_names(request: DeployRequest) -> None:
    """Unknown target names and malformed --verify URLs fail (exit 2) before anything runs."""
    for target in request.targets:
        registry.kind_of(target.target)
    if request.verify and request.verifier is None:
        from certkit.check import parse_target as parse_url

        for url in request.verify:
            parse_url(url)  # before any server is touched


def _check_key_needed(settings: LineageSettings, targets: Sequence[DeployTarget]) -> None:
    """A lineage issued for a CSR has no key here: only script: targets (cert and chain) can use it (exit 2)."""
    needing = [t.target for t in targets if settings.csr and not t.target.lower().startswith("script:")]
    if needing:
        raise UsageError(f"{settings.name} has no private key here (issued for a CSR), and {', '.join(needing)} "
                         "needs one", "install the certificate on the server that made the CSR: "
                         f"certkit export {settings.name} --format pem, or a script:PATH target that copies it there")


def _verify_all(job: _Deployment) -> None:
    """Check every --verify URL serves the live version; the first that does not raises VerificationError."""
    check = job.request.verifier or verify_url
    cert_pem = job.store.version_paths(job.name, job.version).cert.read_bytes()
    expected = job.settings.domains[0]
    for url in job.request.verify:
        job.request.echo(f"Verifying {url} serves version {job.version} for {expected}")
        result = check(url, cert_pem, expected, job.request.verify_timeout)
        job.results.append(result)
        _echo_result(job.request.echo, result)
        if not result.ok:
            detail = result.detail.removeprefix(f"{url}: ")  # the check's detail names the URL too
            raise VerificationError(f"{url} does not serve version {job.version} correctly: {detail}",
                                    "see the check output above")


def _echo_result(echo: Echo, result: VerifyResult) -> None:
    echo(f"  {'ok' if result.ok else 'FAILED'}: {result.detail}")
    for finding in (result.report or {}).get("checks", []):
        if result.ok and finding.get("status") == "FAIL":  # audit findings that do not fail a deploy
            echo(f"  note: {finding.get('id')} FAIL: {finding.get('detail')}")


def _handle_failure(job: _Deployment, exc: CertkitError) -> CertkitError | None:
    """Record, roll back if needed, clear the marker; the error to raise (None: re-raise ``exc``)."""
    previous = job.request.previous_version
    if job.results:
        _record_check(job.store, job.name, job.version, job.results)
    if exc.exit_code == 2 and len(job.started) <= 1 and not job.results and not job.request.just_activated:
        # Refused before it changed anything (bad option, Windows-only target here): nothing to undo.
        # After issue/renew the new version is already live, so that case rolls back.
        _clear_unless_owed(job.store, job.name, job.version, previous)
        return None
    failure = _fail(job, exc)
    if job.request.just_activated:
        _clear_unless_owed(job.store, job.name, job.version, previous)
    else:  # `certkit deploy`: the version was live before; what it changed is restored, nothing is owed
        job.store.clear_unfinished(job.name)
    return failure


def _finish(job: _Deployment) -> None:
    """After a successful deploy: record the check, clear the marker, remember targets and URLs."""
    if job.results:
        _record_check(job.store, job.name, job.version, job.results)
    job.store.clear_unfinished(job.name)
    if job.request.remember:
        settings = job.settings
        # A --print run showed commands and deployed nothing: it is not a target to run again.
        deployed = [t for t in job.request.targets if not t.options.get("print")]
        job.store.save_settings(replace(
            settings,
            deploy=merge_targets(settings.deploy, deployed),
            verify=list(dict.fromkeys([*settings.verify, *job.request.verify])),
        ))


def _clear_unless_owed(store: Store, name: str, version: int, previous: int | None) -> None:
    """After a failed deploy: the marker stays only while the new version is live with its deploy owed."""
    if store.live_version(name) != version or version == previous:
        store.clear_unfinished(name)


def _os_error(exc: OSError) -> OperationError:
    where = f" ({exc.filename})" if exc.filename else ""
    return OperationError(f"{exc.strerror or exc}{where}", "check the file's permissions and the disk")


def _record_check(store: Store, name: str, version: int, results: list[VerifyResult]) -> None:
    failed = next((r for r in results if not r.ok), None)
    shown = failed or results[-1]
    store.update_state(name, last_check={
        "time": clock.now_iso(),
        "ok": failed is None,
        "target": shown.url,
        "detail": shown.detail,
        "version": version,
        "results": [{"target": r.url, "ok": r.ok, "detail": r.detail, "report": r.report} for r in results],
    })


def _failure_class(exc: CertkitError) -> type[CertkitError]:
    """The error class a failed deploy raises: verification, hook, or (exit 2 in a target) the original's."""
    if isinstance(exc, VerificationError):
        return VerificationError
    if not isinstance(exc, HookError) and exc.exit_code != 1:
        return type(exc)  # a usage error inside a target stays exit 2
    return HookError


def _what_failed(started: list[_Step], exc: CertkitError) -> str:
    """The first line of the failure: the error, prefixed with the target unless the message names it."""
    failed_label = started[-1].label if started and not isinstance(exc, VerificationError) else None
    named = failed_label is None or failed_label.startswith(("hook ", "script:"))
    return exc.message if named else f"{failed_label} failed: {exc.message}"


def _fail(job: _Deployment, exc: CertkitError) -> CertkitError:
    """Roll back if asked and possible; return the error to raise (what failed + what was restored)."""
    cls, what = _failure_class(exc), _what_failed(job.started, exc)
    version, previous = job.version, job.request.previous_version
    if not job.request.rollback:
        return cls(f"{what}\nversion {version} stays live (--no-rollback); nothing was restored",
                   "fix the problem and run `certkit deploy` again, or roll back by re-issuing")
    if not job.request.just_activated:
        return _fail_in_place(job, cls, what)
    if previous is None or not job.store.version_dir(job.name, previous).is_dir():
        return cls(f"{what}\nthere is no previous version to restore; version {version} stays live",
                   "fix the problem and run `certkit deploy` again")
    job.request.echo(f"Rolling back {job.name} to version {previous}")
    problems: list[str] = []
    # The previous version goes live first, so a target that restores its configuration and
    # reloads (postfix) serves it straight away; that is its whole undo. Targets without a
    # rollback() (scripts, aiosmtpd, Windows, the hook folder) run again with the previous version.
    job.store.activate(job.name, previous)
    undone = _undo_targets(job.started, problems)
    redone = _redeploy_previous(job, exc, previous, problems)
    message = f"{what}\n{_restored(previous, undone, redone)}"
    if problems:
        message += "\nrollback problems:\n  " + "\n  ".join(problems)
        return cls(message, "the previous version is live, but check the servers above by hand")
    return cls(message, "fix the problem and run the command again "
                        f"(`certkit renew --force {job.name}` issues and deploys a fresh version)")


def _fail_in_place(job: _Deployment, cls: type[CertkitError], what: str) -> CertkitError:
    """`certkit deploy` failed: undo the target configuration it changed; the live version stays.

    The version was live before the command, so moving it back to an older one
    would downgrade the lineage for a problem this run did not cause (a
    mistyped --verify URL once did exactly that).
    """
    problems: list[str] = []
    undone = _undo_targets(job.started, problems)
    restored = f"version {job.version} stays live (it was live before this deploy)"
    if undone:
        restored += f"; {', '.join(reversed(undone))}: configuration restored and reloaded"
    message = f"{what}\n{restored}"
    if problems:
        message += "\nrollback problems:\n  " + "\n  ".join(problems)
        return cls(message, "check the servers above by hand")
    return cls(message, "fix the problem and run `certkit deploy` again")


def _undo_targets(started: list[_Step], problems: list[str]) -> list[str]:
    """Call ``rollback(ctx)`` of every started target that has one, newest first; the labels undone."""
    undone: list[str] = []
    for step in reversed(started):
        undo = getattr(step.module, "rollback", None) if step.module else None
        if undo is None or step.ctx is None:
            continue
        try:
            undo(step.ctx)
            undone.append(step.label)
        except (CertkitError, OSError) as err:
            problems.append(f"undoing {step.label}: {err}")
    return undone


def _redeploy_previous(job: _Deployment, exc: CertkitError, previous: int, problems: list[str]) -> list[_Step]:
    """Run the started targets without a rollback() (and the hook folder) again with ``previous``."""
    started = job.started
    # A step that refused (exit 2: bad remembered option, Windows-only target here) changed
    # nothing and would only refuse again.
    refused = started[-1] if started and exc.exit_code == 2 else None
    rerun_targets = [s.target for s in started
                     if s.target is not None and not hasattr(s.module, "rollback") and s is not refused]
    redone: list[_Step] = []
    try:
        _run_all(job, rerun_targets, previous, None, redone)
    except CertkitError as err:
        problems.append(f"re-running {redone[-1].label if redone else 'the targets'} "
                        f"with version {previous}: {err}")
        redone = redone[:-1]  # the failed one was not deployed again
    except OSError as err:  # pragma: no cover - defensive: never lose the original error
        problems.append(f"re-running the targets: {err}")
    return redone


def _restored(previous: int, undone: list[str], redone: list[_Step]) -> str:
    """The line saying what the rollback restored."""
    restored = f"version {previous} is live again"
    if undone:
        restored += f"; {', '.join(reversed(undone))}: configuration restored and reloaded"
    if redone:
        restored += "; deployed again to " + ", ".join(s.label for s in redone)
    return restored
