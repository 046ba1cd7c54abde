"""`certkit metrics` (click command; the series are built in certkit.metrics)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("metrics")
@click.option("--textfile", "textfile_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Write DIR/certkit.prom (atomically) for node_exporter's textfile collector "
                   "instead of printing.")
@click.pass_context
def metrics_command(ctx: click.Context, textfile_dir: str | None) -> None:
    """Prometheus metrics: certificate expiry and renewal-due times, last renewal, last check per endpoint.

    Prints the text exposition format, or writes it to DIR/certkit.prom with
    --textfile (node_exporter --collector.textfile.directory=DIR). Times are
    Unix seconds; see docs/fleet.md for the series and alert rules.
    """
    from certkit.cli.context import store_from
    from certkit.metrics import state_text, write_textfile

    store = store_from(ctx)
    text = state_text(store)
    if textfile_dir is None:
        click.echo(text, nl=False)
        return
    path = write_textfile(Path(textfile_dir), text)
    click.echo(f"wrote {path} ({len(store.names())} lineage(s); state directory {store.home})")
