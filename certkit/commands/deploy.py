"""`certkit deploy` (click command; the work lives in certkit.deploy)."""

from __future__ import annotations

import click

from certkit.errors import NotBuiltError


@click.command("deploy", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def deploy_command(args: tuple[str, ...]) -> None:
    """Put a lineage's certificate into servers, verify, roll back on failure."""
    raise NotBuiltError("`certkit deploy` is not built yet")
