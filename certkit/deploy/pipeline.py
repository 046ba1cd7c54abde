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
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from certkit import clock, runner
from certkit.deploy import hooks
from certkit.deploy import targets as registry
from certkit.deploy.base import DeployContext
from certkit.errors import CertkitError, HookError, NotFoundError, OperationError, VerificationError
from certkit.settings import DeployTarget, LineageSettings, merge_targets
from certkit.store import Store

Echo = Callable[[str], None]
Runner = Callable[..., runner.Result]
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


def _context(store: Store, settings: LineageSettings, target: DeployTarget, version: int,
             previous: int | None, env: dict[str, str], echo: Echo, run: Runner,
             hook_timeout: float | None) -> DeployContext:
    options = dict(target.options)
    if target.target.startswith("script:") and hook_timeout and "timeout" not in options:
        options["timeout"] = hook_timeout
    return DeployContext(
        target=target.target, store=store, name=settings.name, settings=settings, version=version,
        previous_version=previous, paths=store.live_paths(settings.name), hook_env=env,
        options=options, echo=echo, run=run,
    )


def _run_all(store: Store, settings: LineageSettings, targets: Sequence[DeployTarget], version: int,
             previous: int | None, echo: Echo, run: Runner, hook_timeout: float | None,
             started: list[_Step]) -> None:
    """Run targets then the hook folder for the live ``version``; append each step to ``started``."""
    modules = [registry.load(t.target) for t in targets]  # a missing module fails before any change
    if registry.needs_pfx(targets):
        hooks.ensure_pfx(store, settings, version)
    hooks.ensure_pfx_password_file(store, settings, version)
    env = hooks.hook_env(store, settings, version, previous)
    contexts = [_context(store, settings, t, version, previous, env, echo, run, hook_timeout) for t in targets]
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
                       timeout=hook_timeout, run=run, echo=echo)


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


def deploy_live_version(
    store: Store,
    name: str,
    *,
    targets: Sequence[DeployTarget],
    verify: Sequence[str],
    previous_version: int | None,
    rollback: bool = True,
    echo: Echo = print,
    run: Runner = runner.run,
    hook_timeout: float | None = None,
    verify_timeout: float = DEFAULT_VERIFY_TIMEOUT,
    verifier: Verifier | None = None,
    remember: bool = True,
    just_activated: bool = False,
) -> DeployOutcome:
    """Deploy the lineage's live version to ``targets``, run hooks, verify, roll back on failure.

    Args:
        store: the state directory.
        name: lineage name.
        targets: targets to run, in order.
        verify: URLs to check afterwards (``smtp://``, ``submission://``, ``smtps://``).
        previous_version: the version to restore on failure (None: nothing to restore).
        rollback: False leaves the new version live on failure (``--no-rollback``).
        echo: prints progress lines.
        run: the subprocess runner handed to targets and hooks.
        hook_timeout: seconds per hook (default: env CERTKIT_HOOK_TIMEOUT or 120).
        verify_timeout: seconds per network step of a verification.
        verifier: replaces :func:`verify_url` (tests).
        remember: store targets and URLs in the lineage settings on success.
        just_activated: the caller (issue, renew) has just made this version
            live, so any failure - even a bad remembered option (exit 2) - rolls
            back; `certkit deploy` changed nothing before a refusal.

    Raises:
        HookError: a target or hook failed (after rollback when possible).
        VerificationError: a URL did not serve the new certificate (after rollback).
        UsageError: bad target options (exit 2; nothing was changed yet when
            the error comes from parsing).
    """
    check = verifier or verify_url
    with store.lock():
        settings = store.load_settings(name)
        version = store.live_version(name)
        if version is None:
            raise NotFoundError(f"lineage {name!r} has no live version", f"run `certkit issue --name {name} ...`")
        started: list[_Step] = []
        results: list[VerifyResult] = []
        try:
            for target in targets:
                registry.kind_of(target.target)  # unknown names fail before anything runs
            if verify and verifier is None:
                from certkit.check import parse_target as parse_url

                for url in verify:
                    parse_url(url)  # a malformed --verify URL is exit 2 before any server is touched
            if store.unfinished(name) is None:  # issue/renew wrote theirs before the version went live
                store.mark_unfinished(name, "deploy", version, previous_version, clock.now_iso(), targets, verify)
            _run_all(store, settings, targets, version, previous_version, echo, run, hook_timeout, started)
            cert_pem = store.version_paths(name, version).cert.read_bytes()
            for url in verify:
                echo(f"Verifying {url} serves version {version} for {settings.domains[0]}")
                result = check(url, cert_pem, settings.domains[0], verify_timeout)
                results.append(result)
                echo(f"  {'ok' if result.ok else 'FAILED'}: {result.detail}")
                for finding in (result.report or {}).get("checks", []):
                    if result.ok and finding.get("status") == "FAIL":  # audit findings that do not fail a deploy
                        echo(f"  note: {finding.get('id')} FAIL: {finding.get('detail')}")
                if not result.ok:
                    detail = result.detail.removeprefix(f"{url}: ")  # the check's detail names the URL too
                    raise VerificationError(f"{url} does not serve version {version} correctly: {detail}",
                                            "see the check output above")
        except (CertkitError, OSError) as raised:
            # An OSError (a config file a target cannot read, a full disk) rolls back like any failure.
            exc = raised if isinstance(raised, CertkitError) else _os_error(raised)
            if results:
                _record_check(store, name, version, results)
            if exc.exit_code == 2 and len(started) <= 1 and not results and not just_activated:
                # Refused before it changed anything (bad option, Windows-only target here): nothing to undo.
                # After issue/renew the new version is already live, so that case rolls back.
                _clear_unless_owed(store, name, version, previous_version)
                raise
            failure = _fail(store, settings, exc, started, version, previous_version, rollback,
                            echo, run, hook_timeout)
            _clear_unless_owed(store, name, version, previous_version)
            raise failure from exc
        if results:
            _record_check(store, name, version, results)
        store.clear_unfinished(name)
        if remember:
            fresh = store.load_settings(name)
            # A --print run showed commands and deployed nothing: it is not a target to run again.
            fresh.deploy = merge_targets(fresh.deploy, [t for t in targets if not t.options.get("print")])
            fresh.verify = list(dict.fromkeys([*fresh.verify, *verify]))
            store.save_settings(fresh)
        return DeployOutcome(
            name, version,
            targets=[t.target for t in targets],
            hooks=[s.path for s in started if s.target is None],
            verified=results,
        )


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


def _fail(
    store: Store,
    settings: LineageSettings,
    exc: CertkitError,
    started: list[_Step],
    version: int,
    previous: int | None,
    rollback: bool,
    echo: Echo,
    run: Runner,
    hook_timeout: float | None,
) -> CertkitError:
    """Roll back if asked and possible; return the error to raise (what failed + what was restored)."""
    failed_label = started[-1].label if started and not isinstance(exc, VerificationError) else None
    named = failed_label is None or failed_label.startswith(("hook ", "script:"))  # the message names it
    what = exc.message if named else f"{failed_label} failed: {exc.message}"
    cls: type[CertkitError] = VerificationError if isinstance(exc, VerificationError) else HookError
    if not isinstance(exc, (HookError, VerificationError)) and exc.exit_code != 1:
        cls = type(exc)  # a usage error inside a target stays exit 2
    if not rollback:
        return cls(f"{what}\nversion {version} stays live (--no-rollback); nothing was restored",
                   "fix the problem and run `certkit deploy` again, or roll back by re-issuing")
    if previous is None or not store.version_dir(settings.name, previous).is_dir():
        return cls(f"{what}\nthere is no previous version to restore; version {version} stays live",
                   "fix the problem and run `certkit deploy` again")
    echo(f"Rolling back {settings.name} to version {previous}")
    problems: list[str] = []
    # The previous version goes live first, so a target that restores its configuration and
    # reloads (postfix) serves it straight away; that is its whole undo. Targets without a
    # rollback() (scripts, aiosmtpd, Windows, the hook folder) run again with the previous version.
    store.activate(settings.name, previous)
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
    # A step that refused (exit 2: bad remembered option, Windows-only target here) changed
    # nothing and would only refuse again.
    refused = started[-1] if started and exc.exit_code == 2 else None
    rerun_targets = [s.target for s in started
                     if s.target is not None and not hasattr(s.module, "rollback") and s is not refused]
    redone: list[_Step] = []
    try:
        _run_all(store, settings, rerun_targets, previous, None, echo, run, hook_timeout, redone)
    except CertkitError as err:
        problems.append(f"re-running {redone[-1].label if redone else 'the targets'} "
                        f"with version {previous}: {err}")
        redone = redone[:-1]  # the failed one was not deployed again
    except OSError as err:  # pragma: no cover - defensive: never lose the original error
        problems.append(f"re-running the targets: {err}")
    restored = f"version {previous} is live again"
    if undone:
        restored += f"; {', '.join(reversed(undone))}: configuration restored and reloaded"
    if redone:
        restored += "; deployed again to " + ", ".join(s.label for s in redone)
    message = f"{what}\n{restored}"
    if problems:
        message += "\nrollback problems:\n  " + "\n  ".join(problems)
        return cls(message, "the previous version is live, but check the servers above by hand")
    return cls(message, "fix the problem and run the command again "
                        f"(`certkit renew --force {settings.name}` issues and deploys a fresh version)")
