"""`certkit smtpd` (click group; the server lives in certkit.smtpd)."""

from __future__ import annotations

import click

from certkit.errors import NotBuiltError


@click.group("smtpd", invoke_without_command=True)
@click.pass_context
def smtpd_command(ctx: click.Context) -> None:
    """Reference submission server on aiosmtpd (587, STARTTLS + AUTH)."""
    raise NotBuiltError("`certkit smtpd` is not built yet")
