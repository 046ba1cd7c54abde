"""`certkit renew` (click command; the work lives in certkit.renew)."""

from __future__ import annotations

import click

from certkit.errors import NotBuiltError


@click.command("renew", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def renew_command(args: tuple[str, ...]) -> None:
    """Renew due lineages, deploy, verify, roll back on failure."""
    raise NotBuiltError("`certkit renew` is not built yet")
