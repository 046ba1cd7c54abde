"""What every command needs from the group: the state directory (--home / CERTKIT_HOME / default)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
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
