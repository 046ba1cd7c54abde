"""`certkit timer` (click group; unit files live in certkit.timer)."""

from __future__ import annotations

import click

from certkit.errors import NotBuiltError


@click.group("timer", invoke_without_command=True)
def timer_command() -> None:
    """Schedule `certkit renew --jitter` twice a day (systemd, cron, Windows)."""
    raise NotBuiltError("`certkit timer` is not built yet")
