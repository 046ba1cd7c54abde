"""`certkit deploy` (click command; the work lives in certkit.deploy).

    certkit deploy LINEAGE --to TARGET [--to TARGET]... [--verify URL]... [--no-rollback]

Without ``--to`` the lineage's remembered targets and verify URLs run again.
Per-target options (``--postfix-config-dir``, ``--setup-submission``,
``--site``...) apply to the target they belong to; giving one without its
target is a usage error (exit 2), so a typo never deploys half-configured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from certkit.cli.completion import complete_lineage
from certkit.cli.context import echo_json, store_from
from certkit.errors import UsageError

# CLI option -> (target kind, option name in the target's settings)
TARGET_FLAGS: dict[str, tuple[str, str]] = {
    "postfix_config_dir": ("postfix", "config_dir"),
    "setup_submission": ("postfix", "setup_submission"),
    "submission_listen": ("postfix", "submission_listen"),
    "site": ("iis", "site"),
    "port": ("iis", "port"),
    "sni": ("iis", "sni"),
    "host": ("iis", "host"),
    "smtp_fqdn": ("iis", "smtp_fqdn"),
    "services": ("exchange", "services"),
    "remove_previous": ("exchange", "remove_previous"),
    "pid_file": ("aiosmtpd", "pid_file"),
}
PRINT_TARGETS = ("iis", "exchange")


def _flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def build_targets(specs: tuple[str, ...], opts: dict[str, Any]) -> list[Any]:
    """DeployTargets from ``--to`` specs plus the per-target flags (exit 2 on a mismatch)."""
    from certkit.deploy.targets import kind_of, make_target, parse_target

    parsed = [parse_target(spec) for spec in specs]
    kinds = [kind_of(t.target).name for t in parsed]
    extra: dict[str, dict[str, Any]] = {}
    for key, (kind, option) in TARGET_FLAGS.items():
        value = opts.get(key)
        if value in (None, False, ""):
            continue
        if kind not in kinds:
            raise UsageError(f"{_flag_name(key)} belongs to the {kind} target",
                             f"add --to {kind}, or drop {_flag_name(key)}")
        extra.setdefault(kind, {})[option] = value
    if opts.get("print_only"):
        if not any(k in PRINT_TARGETS for k in kinds):
            raise UsageError("--print is for the iis and exchange targets", "add --to iis or --to exchange")
        for kind in PRINT_TARGETS:
            extra.setdefault(kind, {})["print"] = True
    if opts.get("submission_listen") and not opts.get("setup_submission"):
        current = next((t for t in parsed if t.target == "postfix"), None)
        if current is None or not current.options.get("setup_submission"):
            raise UsageError("--submission-listen needs --setup-submission",
                             "add --setup-submission to create or update the submission service")
    out = []
    seen: set[str] = set()
    for target, kind in zip(parsed, kinds, strict=True):
        if target.target in seen:
            raise UsageError(f"--to {target.target} is given twice", "give each target once")
        seen.add(target.target)
        out.append(make_target(target.target, {**target.options, **extra.get(kind, {})}))
    return out


def previous_of(versions: list[int], live: int) -> int | None:
    """The version before ``live`` (what a failed deploy goes back to)."""
    older = [v for v in versions if v < live]
    return older[-1] if older else None


@click.command("deploy")
@click.argument("lineage", shell_complete=complete_lineage)
@click.option("--remove", "remove", multiple=True, metavar="TARGET",
              help="Forget a remembered target or verify URL (as `certkit targets` lists it); deploys nothing.")
@click.option("--to", "to", multiple=True, metavar="TARGET",
              help="postfix, aiosmtpd, iis, exchange or script:PATH; repeatable. "
                   "Default: the lineage's remembered targets.")
@click.option("--verify", "verify", multiple=True, metavar="URL",
              help="After deploying, check that URL serves the new certificate (smtp://, submission://, smtps://).")
@click.option("--no-rollback", is_flag=True, help="On failure keep the new version live (nothing is restored).")
@click.option("--postfix-config-dir", type=click.Path(file_okay=False), default=None,
              help="postfix: configuration folder (default /etc/postfix).")
@click.option("--setup-submission", is_flag=True,
              help="postfix: create/update the submission service (STARTTLS required, AUTH after TLS).")
@click.option("--submission-listen", default=None, metavar="[ADDR:]PORT",
              help="postfix: where the submission service listens (default 587).")
@click.option("--site", default=None, help="iis: site name or id.")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="iis: binding port (default 443).")
@click.option("--sni", is_flag=True, help="iis: an SNI binding for the host name.")
@click.option("--host", default=None, help="iis: host name of the binding.")
@click.option("--smtp-fqdn", default=None,
              help="iis: FQDN of the IIS 6 SMTP virtual server / Exchange 2003 (the certificate's name).")
@click.option("--services", default=None, help="exchange: services to enable, e.g. SMTP,IIS.")
@click.option("--remove-previous", is_flag=True, help="exchange: remove the previous certificate afterwards.")
@click.option("--pid-file", type=click.Path(dir_okay=False), default=None,
              help="aiosmtpd: pid file of the running server to reload.")
@click.option("--print", "print_only", is_flag=True,
              help="iis/exchange: print the PowerShell command instead of running it.")
@click.option("--hook-timeout", type=click.FloatRange(min=0.1), default=None,
              help="Seconds a hook may run (default 120, env CERTKIT_HOOK_TIMEOUT).")
@click.option("--verify-timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds per network step of a verification.")
@click.option("--json", "as_json", is_flag=True, help="Print what was deployed and verified as JSON.")
@click.pass_context
def deploy_command(ctx: click.Context, /, lineage: str, to: tuple[str, ...], verify: tuple[str, ...],
                   no_rollback: bool, as_json: bool, hook_timeout: float | None, verify_timeout: float,
                   **opts: Any) -> None:
    """Put a lineage's certificate into servers, verify, roll back on failure."""

    store = store_from(ctx)
    remove = opts.pop("remove")
    if remove:
        if to or verify:
            raise UsageError("--remove forgets targets; it does not deploy", "drop --to/--verify, or run two commands")
        forget_targets(store, lineage, remove)
        return
    run_deploy_command(store, lineage, to, verify, no_rollback=no_rollback, as_json=as_json,
                       hook_timeout=hook_timeout, verify_timeout=verify_timeout, opts=opts)


def run_deploy_command(store: Any, lineage: str, to: tuple[str, ...], verify: tuple[str, ...], *,
                       no_rollback: bool, as_json: bool, hook_timeout: float | None, verify_timeout: float,
                       opts: dict[str, Any]) -> None:
    """What `certkit deploy` does between parsing and printing."""
    from certkit.deploy import hooks
    from certkit.deploy.pipeline import deploy_live_version
    from certkit.deploy.targets import format_target

    store.require(lineage)
    settings = store.load_settings(lineage)
    if opts.get("postfix_config_dir"):
        opts["postfix_config_dir"] = str(Path(opts["postfix_config_dir"]).absolute())
    if to:
        targets = build_targets(to, opts)
        urls = list(verify)
    else:
        given = [_flag_name(k) for k in TARGET_FLAGS if opts.get(k) not in (None, False, "")]
        if given or opts.get("print_only"):
            raise UsageError(f"{', '.join(given) or '--print'} needs --to TARGET",
                             "name the target the option is for")
        targets = list(settings.deploy)
        urls = list(dict.fromkeys([*settings.verify, *verify]))
        if not targets and not urls and not hooks.hook_dir_scripts(store):
            raise UsageError(f"nothing to deploy for {lineage}: no --to and no remembered targets",
                             f"run: certkit deploy {lineage} --to postfix (or aiosmtpd, iis, exchange, script:PATH)")
    live = store.live_version(lineage)
    if live is None:
        raise UsageError(f"lineage {lineage!r} has no live version", f"issue one: certkit issue --name {lineage} ...")
    echo = (lambda _line: None) if as_json else click.echo
    outcome = deploy_live_version(
        store, lineage, targets=targets, verify=urls,
        previous_version=previous_of(store.versions(lineage), live),
        rollback=not no_rollback, echo=echo, hook_timeout=hook_timeout, verify_timeout=verify_timeout,
    )
    if as_json:
        echo_json({
            "name": outcome.name,
            "version": outcome.version,
            "targets": [format_target(t) for t in targets],
            "hooks": outcome.hooks,
            "verified": [{"target": r.url, "ok": r.ok, "detail": r.detail} for r in outcome.verified],
        })
        return
    printed = [t for t in targets if t.options.get("print")]
    deployed = [t for t in targets if not t.options.get("print")]
    if deployed or outcome.hooks or not printed:
        done = ", ".join([format_target(t) for t in deployed] + outcome.hooks) or "no targets"
        click.echo(f"Deployed {lineage} version {outcome.version} to {done}.")
    if printed:
        click.echo(f"# Printed the commands for {', '.join(t.target for t in printed)}: nothing was changed "
                   "by them here, and they are not remembered.")
    for result in outcome.verified:
        click.echo(f"Verified: {result.detail}")
    if deployed:
        click.echo(f"Remembered: `certkit renew` and re-issues deploy {lineage} the same way.")


def forget_targets(store: Any, lineage: str, names: tuple[str, ...]) -> None:
    """Remove remembered deploy targets (by target name) or verify URLs from a lineage's settings."""
    from dataclasses import replace

    with store.lock():
        settings = store.load_settings(lineage)
        known = [t.target for t in settings.deploy] + list(settings.verify)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(f"{lineage} remembers no {', '.join(unknown)}",
                             f"it remembers: {', '.join(known) or 'nothing'} (see `certkit targets {lineage}`)")
        store.save_settings(replace(settings, deploy=[t for t in settings.deploy if t.target not in names],
                                    verify=[u for u in settings.verify if u not in names]))
    for name in names:
        click.echo(f"Forgot {name} for {lineage}: deploys and renewals no longer use it.")
