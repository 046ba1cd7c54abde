"""`certkit rollback`, `prune` and `delete`: older versions made live again, removed, or the whole lineage.

Rollback goes through the same deploy pipeline as issue and renew: the
older version goes live, the remembered targets and hooks run with it, the
remembered URLs are verified, and a failure puts the version that was live
back (with its deploy run again). Prune keeps the newest versions, the live
one and the one a rollback would go to.
"""

from __future__ import annotations

import click

from certkit.cli.completion import complete_lineage
from certkit.cli.context import echo_json, progress_echo, store_from
from certkit.errors import UsageError

DEFAULT_KEEP = 3


@click.command("rollback")
@click.argument("lineage", shell_complete=complete_lineage)
@click.option("--to", "to_version", type=click.IntRange(min=1), default=None,
              help="The version to make live (default: the one before the live version).")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON (progress goes to stderr).")
@click.pass_context
def rollback_command(ctx: click.Context, lineage: str, to_version: int | None, as_json: bool) -> None:
    """Make an older version live again and re-run its deploy targets, with verify-and-restore."""
    from certkit import clock
    from certkit.deploy.targets import format_target
    from certkit.issuing import run_deploy

    echo = progress_echo(as_json)
    store = store_from(ctx)
    with store.lock():
        settings = store.load_settings(lineage)
        live = store.live_version(lineage)
        versions = store.versions(lineage)
        older = [v for v in versions if live is not None and v < live]
        target = to_version if to_version is not None else (older[-1] if older else None)
        if target is None:
            raise UsageError(f"{lineage} has no version before {live}", "see its versions with `certkit show`")
        if target == live or target not in versions:
            raise UsageError(f"{lineage} has no other version {target} to roll back to",
                             f"versions: {', '.join(map(str, versions))}; live: {live}")
        store.mark_unfinished(lineage, "rollback", target, live, clock.now_iso())
        store.activate(lineage, target)
        echo(f"Rolled {lineage} back to version {target} (was {live}); deploying it")
        run_deploy(store, settings, live, [], [], echo)
        store.clear_unfinished(lineage)
    if as_json:
        echo_json({"lineage": lineage, "live_version": target, "previous_version": live,
                   "deployed_to": [format_target(t) for t in settings.deploy], "verified": list(settings.verify)})
        return
    click.echo(f"Version {target} of {lineage} is live. `certkit renew` replaces it when it is due.")


@click.command("prune")
@click.argument("lineages", nargs=-1, shell_complete=complete_lineage)
@click.option("--keep", type=click.IntRange(min=1), default=DEFAULT_KEEP, show_default=True,
              help="Newest versions kept per lineage (the live one and the one before it always stay).")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON (progress goes to stderr).")
@click.pass_context
def prune_command(ctx: click.Context, lineages: tuple[str, ...], keep: int, as_json: bool) -> None:
    """Remove old versions (keys included) of every lineage, or of LINEAGE..."""
    store = store_from(ctx)
    done: list[dict[str, object]] = []
    with store.lock():
        for name in lineages or store.names():
            store.require(name)
            versions = store.versions(name)
            live = store.live_version(name)
            before_live = [v for v in versions if live is not None and v < live][-1:]
            kept = set(versions[-keep:]) | {v for v in (live, *before_live) if v is not None}
            gone = [v for v in versions if v not in kept]
            for version in gone:
                store.remove_version(name, version)
            done.append({"lineage": name, "removed": gone, "kept": sorted(kept)})
            if not as_json:
                shown = ", ".join(map(str, gone)) or "nothing"
                click.echo(f"{name}: removed {shown}; kept {', '.join(map(str, sorted(kept)))}")
    if as_json:
        echo_json(done)


@click.command("delete")
@click.argument("lineage", shell_complete=complete_lineage)
@click.option("--force", is_flag=True, help="Delete even though deploy targets still use the lineage.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON (progress goes to stderr).")
@click.pass_context
def delete_command(ctx: click.Context, lineage: str, force: bool, as_json: bool) -> None:
    """Remove a lineage: settings, every version and key, its live files (servers are not touched)."""
    from certkit.deploy.targets import format_target

    store = store_from(ctx)
    with store.lock():
        settings = store.load_settings(lineage)
        users = [format_target(t) for t in settings.deploy]
        if users and not force:
            raise UsageError(f"{lineage} is still deployed to {', '.join(users)}: those servers read its live files",
                             f"point them at another certificate first, then run: certkit delete {lineage} --force")
        live_dir = store.lineage_dir(lineage) / "live"
        store.remove_lineage(lineage)
    if users:
        click.echo(f"warning: {', '.join(users)} still point at {live_dir}; fix their configuration", err=True)
    if as_json:
        echo_json({"lineage": lineage, "deleted": str(store.lineage_dir(lineage)), "still_deployed_to": users})
        return
    click.echo(f"Deleted {lineage}: its settings, every version and key, and {live_dir}.")
    click.echo("Left as they are: server configurations, a trust-store copy (--trust), the ACME account; "
               "the certificate is not revoked.")
