"""`certkit timer` (click group; unit files live in certkit.timer)."""

from __future__ import annotations

from pathlib import Path

import click


def _home(ctx: click.Context) -> Path:
    from certkit.cli.context import home_from

    return home_from(ctx)


@click.group("timer")
def timer_command() -> None:
    """Schedule `certkit renew --jitter` twice a day (systemd, cron, Windows)."""


@timer_command.command("install")
@click.option("--kind", type=click.Choice(["systemd", "cron", "windows"]), default=None,
              help="Default: windows on Windows, systemd when it runs, else cron.")
@click.option("--print", "print_only", is_flag=True, help="Show what would be installed; write nothing.")
@click.option("--unit-dir", type=click.Path(file_okay=False), default=None,
              help="systemd: unit folder (default /etc/systemd/system); windows: where the task XML goes "
                   "(default: the state directory).")
@click.option("--cron-file", type=click.Path(dir_okay=False), default=None,
              help="cron: the file to write (default /etc/cron.d/certkit).")
@click.option("--json", "as_json", is_flag=True, help="Print the schedule (kind, command, files) as JSON.")
@click.pass_context
def install_command(ctx: click.Context, kind: str | None, print_only: bool, unit_dir: str | None,
                    cron_file: str | None, as_json: bool) -> None:
    """Install the renewal schedule (twice a day, random delay, --home baked in)."""
    from certkit.errors import UsageError
    from certkit.renew import timer

    if kind is None and (unit_dir or cron_file):
        # The place given says which kind is meant: never write the default kind's file elsewhere.
        kind = "cron" if cron_file else ("windows" if timer.default_kind() == "windows" else "systemd")
    if unit_dir and cron_file:
        raise UsageError("--unit-dir and --cron-file belong to different kinds", "give one of them")
    if (kind == "cron" and unit_dir) or (kind in ("systemd", "windows") and cron_file):
        flag = "--unit-dir" if unit_dir else "--cron-file"
        raise UsageError(f"{flag} does not apply to --kind {kind}",
                         "use --unit-dir with systemd or windows, --cron-file with cron")
    plan = timer.plan(kind or timer.default_kind(), _home(ctx),
                      unit_dir=Path(unit_dir) if unit_dir else None,
                      cron_file=Path(cron_file) if cron_file else None)
    if print_only and not as_json:
        click.echo(timer.show(plan))
        return
    done = [] if print_only else timer.install(plan)
    if as_json:
        from certkit.cli.context import echo_json

        echo_json({"kind": plan.kind, "command": plan.command, "files": [str(f.path) for f in plan.files],
                   "installed": not print_only, "actions": done, "manual": plan.manual})
        return
    for line in done:
        click.echo(line)
    click.echo(f"certkit renew will run twice a day as: {' '.join(plan.command)}")


@timer_command.command("remove")
@click.option("--kind", type=click.Choice(["systemd", "cron", "windows"]), default=None,
              help="Default: remove every kind found.")
@click.option("--unit-dir", type=click.Path(file_okay=False), default=None,
              help="systemd/windows: the folder `timer install --unit-dir` wrote to.")
@click.option("--cron-file", type=click.Path(dir_okay=False), default=None,
              help="cron: the file `timer install --cron-file` wrote.")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
@click.pass_context
def remove_command(ctx: click.Context, kind: str | None, unit_dir: str | None, cron_file: str | None,
                   as_json: bool) -> None:
    """Disable and delete the renewal schedule."""
    from certkit.renew import timer

    lines = timer.remove(kind=kind, unit_dir=Path(unit_dir) if unit_dir else None,
                         cron_file=Path(cron_file) if cron_file else None, home=_home(ctx))
    if as_json:
        from certkit.cli.context import echo_json

        echo_json({"removed": lines})
        return
    for line in lines or ["no certkit renewal schedule found"]:
        click.echo(line)
