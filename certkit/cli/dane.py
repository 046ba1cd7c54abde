"""`certkit dane` and `certkit mta-sts`: the DNS records that let other mail servers authenticate this one
(the work is in certkit.dane)."""

from __future__ import annotations

from pathlib import Path

import click

from certkit.cli.completion import complete_lineage
from certkit.cli.context import echo_json, store_from


@click.command("dane")
@click.argument("lineage", shell_complete=complete_lineage)
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="TCP port of the service (default 25).")
@click.option("--host", default=None, metavar="HOST", help="Host name the MX record names (default: the first name).")
@click.option("--ca", "with_ca", is_flag=True, default=None, help="Also 2 1 1 for the issuing CA (from the chain).")
@click.option("--ttl", type=click.IntRange(1, 86400), default=3600, show_default=True,
              help="TTL written in the zone-file lines.")
@click.option("--json", "as_json", is_flag=True, help='Print {"name", "ttl", "records": [...]}.')
@click.pass_context
def dane_command(ctx: click.Context, lineage: str, port: int | None, host: str | None, with_ca: bool | None,
                 ttl: int, as_json: bool) -> None:
    """Print the TLSA records to publish for LINEAGE: 3 1 1 for the current key and the staged next key.

    Publish them in a DNSSEC-signed zone. A lineage issued with --dane keeps
    a next key staged, so its record can be published long before the key
    goes live; `certkit renew` then switches keys only once that record has
    been visible for twice its TTL (docs/dane-mta-sts.md).
    """
    from certkit import names
    from certkit.dane.records import lineage_records

    store = store_from(ctx)
    settings = store.load_settings(lineage)
    if host is not None:
        host = names.parse_name(host).value
    found = lineage_records(store, settings, port=port, host=host, ca=with_ca or None)
    if as_json:
        echo_json(found.to_json(ttl))
        return
    click.echo(f"; TLSA records for lineage {lineage} (a DNSSEC-signed zone; DANE clients ignore unsigned ones)")
    for line in found.zone_lines(ttl):
        click.echo(line)
    if found.get("next") is None:
        click.echo("; no next key is staged: `certkit issue ... --dane` keeps one, so renewals never break DANE")


@click.command("mta-sts")
@click.argument("domain")
@click.option("--mx", "mx", multiple=True, required=True, metavar="HOST",
              help="An MX host name (or *.example.com) senders may deliver to; repeatable.")
@click.option("--mode", type=click.Choice(["testing", "enforce", "none"]), default="testing", show_default=True,
              help="testing: senders report but deliver anyway; enforce: senders refuse unauthenticated TLS.")
@click.option("--max-age", type=click.IntRange(1, 31557600), default=604800, show_default=True, metavar="SECONDS",
              help="How long senders cache the policy.")
@click.option("--rua", multiple=True, metavar="URI",
              help="Where TLS reports go (mailto: or https:; default mailto:tlsrpt@DOMAIN); repeatable.")
@click.option("--webroot", type=click.Path(file_okay=False), default=None,
              help="Write the policy to DIR/.well-known/mta-sts.txt (served as https://mta-sts.DOMAIN/...).")
@click.option("--json", "as_json", is_flag=True, help="Print the policy, its id and the records as JSON.")
def mta_sts_command(domain: str, mx: tuple[str, ...], mode: str, max_age: int, rua: tuple[str, ...],
                    webroot: str | None, as_json: bool) -> None:
    """MTA-STS for DOMAIN: the policy file, the _mta-sts TXT record (id changes only with the policy) and
    the _smtp._tls TLS-RPT record.

    The policy must be served over HTTPS as mta-sts.DOMAIN with a publicly
    trusted certificate: issue it like any lineage, e.g.
    `certkit issue --cn mta-sts.DOMAIN --acme --webroot DIR --agree-tos`.
    """
    from certkit.atomicfile import atomic_write
    from certkit.dane.mtasts import make_policy

    policy = make_policy(domain, mx, mode, max_age, rua)
    written = None
    if webroot is not None:
        written = Path(webroot).absolute() / ".well-known" / "mta-sts.txt"
        written.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(written, policy.text().encode(), 0o644)  # the web server must read it
    if as_json:
        echo_json({**policy.to_json(), "written": str(written) if written else None})
        return
    if written:
        click.echo(f"Wrote the policy (id {policy.id}) to {written}:")
    else:
        click.echo(f"The policy (id {policy.id}), to serve at https://mta-sts.{policy.domain}/.well-known/"
                   "mta-sts.txt:")
    for line in policy.text().splitlines():
        click.echo(f"  {line}")
    click.echo("")
    click.echo("Publish these TXT records:")
    for line in policy.zone_lines():
        click.echo(f"  {line}")
    click.echo("")
    click.echo("Next:")
    click.echo(f"  certkit issue --cn mta-sts.{policy.domain} --acme --webroot DIR --agree-tos   "
               "# the policy host's certificate")
    click.echo(f"  certkit check --mta-sts {policy.domain}   # prove senders can fetch and use it")
