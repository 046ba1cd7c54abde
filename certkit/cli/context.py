"""What every command needs from the group: the state directory (--home / CERTKIT_HOME / default)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from certkit.callbacks import Echo
    from certkit.store import Store


def home_from(ctx: click.Context) -> Path:
    """The state directory: --home / CERTKIT_HOME (either side of the subcommand), else the platform default."""
    from certkit.homedir import default_home

    home = ctx.find_root().params.get("home")
    return Path(home) if home else default_home()


def store_from(ctx: click.Context) -> Store:
    """The Store for :func:`home_from`."""
    from certkit.store import Store

    return Store(home_from(ctx))


def progress_echo(as_json: bool) -> Echo:
    """Where a command's progress lines go: stdout, or stderr under --json (stdout is for the JSON)."""
    if as_json:
        return lambda line: click.echo(line, err=True)
    return click.echo


def echo_json(value: Any) -> None:
    """The one JSON shape every --json prints: indented, keys in the order built."""
    click.echo(json.dumps(value, indent=2))
