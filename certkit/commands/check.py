"""`certkit check` (click command; the work lives in certkit.check)."""

from __future__ import annotations

import click

from certkit.errors import NotBuiltError


@click.command("check", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def check_command(args: tuple[str, ...]) -> None:
    """Audit an SMTP server: STARTTLS session, certificate, TLS, AUTH policy."""
    raise NotBuiltError("`certkit check` is not built yet")
