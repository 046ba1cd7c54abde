"""`certkit ca`: a private CA for internal mail servers (create, list, trust, untrust, export, rotate, retire).

Options and printing only; the CA itself is certkit.ca (imported inside the
commands, so `certkit --help` stays light).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from certkit.cli.context import echo_json, store_from


def _complete_ca(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    from certkit.ca.storage import names
    from certkit.cli.context import home_from
    from certkit.store import Store

    try:
        return [n for n in names(Store(home_from(ctx))) if n.startswith(incomplete)]
    except Exception:  # completion must never print a traceback into the user's shell
        return []


def _print_record(ctx: click.Context, name: str, **extra: Any) -> None:
    """--json: the CA's record after the command, plus what the command itself did."""
    from certkit.ca import exporting

    echo_json({**exporting.describe(store_from(ctx), name), **extra})


def _warn(text: str) -> None:
    click.secho(f"warning: {text}", fg="yellow", err=True)


@click.group("ca")
def ca_command() -> None:
    """A private CA: trust it once on every client, then issue and renew leaves with `issue --ca NAME`."""


@ca_command.command("create")
@click.argument("name")
@click.option("--permit", multiple=True, metavar="DOMAIN",
              help="A domain the CA may sign for (it and every name under it); repeatable.")
@click.option("--permit-ip", multiple=True, metavar="CIDR", help="An IP range the CA may sign for; repeatable.")
@click.option("--days", type=click.IntRange(1, 36500), default=3650, show_default=True,
              help="Validity of the CA certificate.")
@click.option("--key", "key_type", default="rsa3072", show_default=True,
              help="CA key type: rsa2048, rsa3072, rsa4096, ec256, ec384 (RSA for Windows Server 2003 clients).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False), default=None,
              help="Encrypt the CA key with the passphrase on this file's first line (remembered for renewals).")
@click.option("--json", "as_json", is_flag=True, help="Print the CA record (as `ca list --json` shows it) as JSON.")
@click.pass_context
def create_command(ctx: click.Context, name: str, permit: tuple[str, ...], permit_ip: tuple[str, ...], days: int,
                   key_type: str, passphrase_file: str | None, as_json: bool) -> None:
    """Create the private CA NAME: a root with name constraints (--permit) and path length 0."""
    from certkit import keys
    from certkit.ca import constraints, manage, storage

    limits = constraints.parse(permit, permit_ip)
    if limits.unconstrained:
        _warn(f"CA {name} has no --permit: it can sign for ANY name, so anyone who gets its key can "
              "impersonate any site to every client that trusts it; add --permit example.com")
    elif not limits.dns:
        _warn(f"CA {name} has only --permit-ip: DNS names are not constrained; add --permit example.com")
    pfile = str(Path(passphrase_file).absolute()) if passphrase_file else None
    store = store_from(ctx)
    record = manage.create(store, manage.NewCa(name, limits, days, key_type, pfile))
    if as_json:
        _print_record(ctx, name)
        return
    click.echo(f"Created the private CA {name} (generation 1):")
    click.echo(f"  may sign for   {limits.describe()}"
               + ("   (name constraints, critical)" if not limits.unconstrained else ""))
    protection = "encrypted with the passphrase file" if pfile else "not encrypted"
    click.echo(f"  key            {keys.describe(record.key_type)}, {protection}, mode 0600")
    click.echo(f"  valid until    {record.generation(1).not_after[:10]} ({days} days)")
    click.echo(f"  certificate    {storage.cert_path(store, name, 1)}")
    click.echo("")
    _next([(f"certkit issue --cn mail.{(limits.dns or ('example.com',))[0]} --ca {name}", "a mail server leaf"),
           (f"certkit ca export {name} --format der --out {name}.cer", "Windows clients: certutil -addstore Root"),
           (f"certkit ca trust {name}", "this machine trusts it too")])


def _next(steps: list[tuple[str, str]]) -> None:
    width = max(len(command) for command, _ in steps)
    click.echo("Next:")
    for command, why in steps:
        click.echo(f"  {command:<{width}}   # {why}")


@ca_command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print every CA as a JSON array.")
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """List the private CAs: constraints, generations, expiry, trust, lineages they sign."""
    from certkit.ca import exporting, storage

    store = store_from(ctx)
    recs = [exporting.describe(store, name) for name in storage.names(store)]
    if as_json:
        echo_json(recs)
        return
    if not recs:
        click.echo(f"No private CA in {store.home} yet - run `certkit ca create NAME --permit example.com`.")
    for rec in recs:
        _print_ca(rec)


def _print_ca(rec: dict[str, Any]) -> None:
    permits = ", ".join([*rec["permit"], *rec["permit_ip"]]) or "ANY name (no constraints)"
    click.echo(f"{rec['name']}  may sign for {permits}; {'trusted here' if rec['trusted'] else 'not trusted here'}")
    for gen in rec["generations"]:
        state = "current" if gen["current"] else ("retired" if gen["retired"] else "overlap (still exported)")
        click.echo(f"  G{gen['number']}  until {gen['not_after'][:10]}  {state}  sha256 {gen['sha256'][:16]}...  "
                   f"{gen['cert']}")
    for lineage, number in sorted(rec["lineages"].items()):
        click.echo(f"  signs {lineage} (live from G{number if number is not None else '?'})")


_TRUST_DIR = click.option("--trust-store-dir", type=click.Path(file_okay=False), default=None,
                          help="Anchor folder to use instead of the system trust store (tests, containers).")


@ca_command.command("trust")
@click.argument("name", shell_complete=_complete_ca)
@_TRUST_DIR
@click.option("--json", "as_json", is_flag=True, help="Print the CA record (as `ca list --json` shows it) as JSON.")
@click.pass_context
def trust_command(ctx: click.Context, name: str, trust_store_dir: str | None, as_json: bool) -> None:
    """Add the CA (every generation still in use) to this machine's trust store."""
    _set_trust(ctx, name, trust_store_dir, as_json, trusted=True)
    if not as_json:
        click.echo(f"Leaves signed by {name} are now trusted here, and renewals need no new trust step.")


@ca_command.command("untrust")
@click.argument("name", shell_complete=_complete_ca)
@_TRUST_DIR
@click.option("--json", "as_json", is_flag=True, help="Print the CA record (as `ca list --json` shows it) as JSON.")
@click.pass_context
def untrust_command(ctx: click.Context, name: str, trust_store_dir: str | None, as_json: bool) -> None:
    """Take every generation of the CA out of this machine's trust store."""
    _set_trust(ctx, name, trust_store_dir, as_json, trusted=False)


def _set_trust(ctx: click.Context, name: str, trust_store_dir: str | None, as_json: bool, *, trusted: bool) -> None:
    from certkit.ca import manage

    folder = str(Path(trust_store_dir).absolute()) if trust_store_dir else None
    notes = manage.set_trust(store_from(ctx), name, trusted, folder)
    if as_json:
        _print_record(ctx, name, notes=notes)
        return
    for note in notes:
        click.echo(note)


@ca_command.command("export")
@click.argument("name", shell_complete=_complete_ca)
@click.option("--format", "fmt", type=click.Choice(["pem", "der", "p7b"], case_sensitive=False), required=True,
              callback=lambda _ctx, _param, value: value.lower(),
              help="pem and p7b: every generation in use; der (.cer): one certificate.")
@click.option("--out", type=click.Path(), default=None, help="The file to write (default NAME-ca.pem/.cer/.p7b).")
@click.option("--generation", type=click.IntRange(1), default=None, help="Only this generation.")
@click.option("--json", "as_json", is_flag=True, help='Print {"name", "format", "file", "generations"} as JSON.')
@click.pass_context
def export_command(ctx: click.Context, name: str, fmt: str, out: str | None, generation: int | None,
                   as_json: bool) -> None:
    """Write the CA certificate for clients (never its key)."""
    from certkit.atomicfile import atomic_write
    from certkit.ca import exporting

    data, numbers = exporting.bundle(store_from(ctx), name, fmt, generation)
    path = Path(out or f"{name}-ca.{exporting.EXTENSIONS[fmt]}").absolute()
    if path.is_dir():
        path = path / f"{name}-ca.{exporting.EXTENSIONS[fmt]}"
    atomic_write(path, data, 0o644)
    if as_json:
        echo_json({"name": name, "format": fmt, "file": str(path), "generations": list(numbers)})
        return
    held = ", ".join(f"G{n}" for n in numbers)
    click.echo(f"Wrote the CA certificate of {name} ({fmt.upper()}, {held}; no key) to {path}")
    hints = {"der": f"Windows: certutil -addstore Root {path.name}",
             "p7b": f"Windows: Import-Certificate -FilePath {path.name} -CertStoreLocation Cert:\\LocalMachine\\Root",
             "pem": f"check: certkit check submission://HOST:587 --cafile {path.name}"}
    click.echo(f"  {hints[fmt]}")


@ca_command.command("rotate")
@click.argument("name", shell_complete=_complete_ca)
@click.option("--days", type=click.IntRange(1, 36500), default=None, help="Validity of the successor.")
@click.option("--json", "as_json", is_flag=True, help="Print the CA record (as `ca list --json` shows it) as JSON.")
@click.pass_context
def rotate_command(ctx: click.Context, name: str, days: int | None, as_json: bool) -> None:
    """Make the CA's successor generation; new and renewed leaves come from it, the old one stays trusted."""
    from certkit.ca import manage, storage

    store = store_from(ctx)
    record, notes = manage.rotate(store, name, days)
    if as_json:
        _print_record(ctx, name, notes=notes)
        return
    gen = record.generation(record.current)
    click.echo(f"Created generation {gen.number} of CA {name} (valid until {gen.not_after[:10]}); "
               "new and renewed certificates are signed by it from now on.")
    click.echo(f"  certificate    {storage.cert_path(store, name, gen.number)}")
    for note in notes:
        click.echo(f"  {note}")
    click.echo("Older generations stay trusted and in every export until `certkit ca retire`.")
    click.echo("")
    _next([(f"certkit ca export {name} --format p7b", "push old + new to every client now"),
           ("certkit renew --force LINEAGE", "once clients have it: move a leaf now"),
           (f"certkit ca retire {name}", "when no leaf comes from the old one")])


@ca_command.command("retire")
@click.argument("name", shell_complete=_complete_ca)
@click.option("--force", is_flag=True, help="Retire even while a lineage still serves a leaf from an old generation.")
@click.option("--json", "as_json", is_flag=True, help="Print the CA record (as `ca list --json` shows it) as JSON.")
@click.pass_context
def retire_command(ctx: click.Context, name: str, force: bool, as_json: bool) -> None:
    """End the overlap after a rotation: older generations leave the trust store and the exports."""
    from certkit.ca import manage

    numbers, notes = manage.retire(store_from(ctx), name, force)
    if as_json:
        _print_record(ctx, name, retired=list(numbers), notes=notes)
        return
    if not numbers:
        click.echo(f"CA {name} has no older generation in use: nothing to retire.")
        return
    click.echo(f"Retired generation {', '.join(str(n) for n in numbers)} of CA {name}.")
    for note in notes:
        click.echo(f"  {note}")
