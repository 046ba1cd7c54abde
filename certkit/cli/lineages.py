"""`certkit list` and `certkit show`: what the state directory holds, for people and scripts."""

from __future__ import annotations

import sys
from typing import Any

import click

from certkit.cli.completion import complete_lineage
from certkit.cli.context import echo_json, store_from
from certkit.errors import CertkitError


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print every lineage record as a JSON array.")
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """List lineages: names, expiry, next renewal, deploy targets, last check."""
    from certkit.cli import records

    store = store_from(ctx)
    # One damaged lineage must not hide the others: list them all, report it, exit 1.
    recs: list[dict[str, Any]] = []
    for name in store.names():
        try:
            recs.append(records.record(store, name))
        except CertkitError as exc:
            recs.append({"name": name, "error": str(exc)})
    broken = [r for r in recs if "error" in r]
    if as_json:
        echo_json(recs)
    elif not recs:
        click.echo(f"No certificates in {store.home} yet - run `certkit issue --cn HOST`.")
    else:
        for line in list_table(recs):
            click.echo(line)
    if broken:
        sys.exit(1)


@click.command("show")
@click.argument("lineage", shell_complete=complete_lineage)
@click.option("--json", "as_json", is_flag=True, help="Print the lineage record as JSON.")
@click.pass_context
def show_command(ctx: click.Context, lineage: str, as_json: bool) -> None:
    """Show one lineage: names, serial, key, validity, files, deploy targets, last check."""
    from certkit.cli import records

    rec = records.record(store_from(ctx), lineage)
    if as_json:
        echo_json(rec)
        return
    click.echo(describe_record(rec))


LIST_COLUMNS = ("LINEAGE", "EXPIRES", "DAYS LEFT", "RENEW AFTER", "DEPLOY", "LAST CHECK", "LAST RENEWAL")


def list_row(rec: dict[str, Any]) -> tuple[str, ...]:
    """One lineage's cells under LIST_COLUMNS."""
    if "error" in rec:
        return (rec["name"], "error: " + rec["error"], "", "", "", "", "")
    if rec["not_after"] is None:
        return (rec["name"], "no live version", "", "", "", "", "")
    check = rec.get("last_check") or {}
    renewal = rec.get("last_renewal") or {}
    return (
        rec["name"],
        rec["not_after"][:10] + (" REVOKED" if rec.get("revoked") else ""),
        str(rec["days_left"]),
        rec["renew_after"][:10],
        ",".join(t["target"] for t in rec["deploy"]) or "-",
        ("ok" if check.get("ok") else "FAILED") if check else "-",
        ("ok" if renewal.get("ok") else "FAILED") if renewal else "-",
    )


def list_table(recs: list[dict[str, Any]]) -> list[str]:
    """`certkit list`: a header and a row per lineage, columns as wide as their longest cell."""
    rows = [LIST_COLUMNS, *(list_row(rec) for rec in recs)]
    # An error or "no live version" spans the columns after the name: it does not widen them.
    widths = [max(len(row[i]) for row in rows if i == 0 or row[2] or row is LIST_COLUMNS)
              for i in range(len(LIST_COLUMNS))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def describe_record(rec: dict[str, Any]) -> str:
    """The human form of a lineage record (show, issue)."""
    lines = [f"{rec['name']}  ({'self-signed' if rec['source'] == 'self-signed' else rec['source']})"]
    lines += [f"  names:        {', '.join(rec['domains'])}"]
    lines += [f"  key:          {rec['key_type']}"]
    if rec.get("issuer_ca"):
        lines += [f"  issuer CA:    {rec['issuer_ca']} (generation {rec['issuer_ca_generation'] or '?'})"]
    if rec.get("csr"):
        lines += [f"  key file:     none here: issued for a CSR ({rec['csr']}); the key stays where it was made"]
    if rec["not_after"]:
        lines += [
            f"  serial:       {rec['serial']}",
            f"  valid:        {rec['not_before']} to {rec['not_after']} ({rec['days_left']} days left)",
            f"  renew after:  {rec['renew_after']}",
            f"  sha256:       {rec['sha256']}",
            f"  thumbprint:   {rec['thumbprint']}",
            f"  version:      {rec['version']} of {len(rec['versions'])}",
        ]
        revoked = rec.get("revoked")
        if revoked:
            lines.append(f"  revoked:      {revoked.get('time')} ({revoked.get('reason')}) - "
                         f"`certkit renew {rec['name']}` replaces it")
        for label, key in (("certificate", "cert"), ("private key", "key"), ("chain", "chain"),
                           ("fullchain", "fullchain"), ("key+chain", "combined"), ("pfx", "pfx")):
            if rec["paths"].get(key):
                lines.append(f"  {label + ':':<13} {rec['paths'][key]}")
    targets = ", ".join(t["target"] for t in rec["deploy"]) or "none"
    lines.append(f"  deploy:       {targets}")
    if rec["verify"]:
        lines.append(f"  verify:       {', '.join(rec['verify'])}")
    check = rec.get("last_check")
    if check:
        lines.append(f"  last check:   {'ok' if check.get('ok') else 'FAILED'} {check.get('time', '')}"
                     f" {check.get('target', '')}".rstrip())
    renewal = rec.get("last_renewal")
    if renewal:
        outcome = "ok" if renewal.get("ok") else f"FAILED: {renewal.get('error')}"
        lines.append(f"  last renewal: {renewal.get('time', '')} {outcome}")
    return "\n".join(lines)


@click.command("targets")
@click.argument("lineage", shell_complete=complete_lineage)
@click.option("--json", "as_json", is_flag=True, help="Print the targets and verify URLs as JSON.")
@click.pass_context
def targets_command(ctx: click.Context, lineage: str, as_json: bool) -> None:
    """List the deploy targets and verify URLs a lineage remembers (renew runs them again)."""
    from certkit.deploy.targets import format_target

    settings = store_from(ctx).load_settings(lineage)
    if as_json:
        echo_json({
            "name": lineage,
            "targets": [{"target": t.target, "options": t.options, "spec": format_target(t)} for t in settings.deploy],
            "verify": list(settings.verify),
        })
        return
    if not settings.deploy and not settings.verify:
        click.echo(f"{lineage} remembers no deploy targets - add one with: certkit deploy {lineage} --to postfix")
        return
    for target in settings.deploy:
        click.echo(f"target  {format_target(target)}")
    for url in settings.verify:
        click.echo(f"verify  {url}")
    click.echo(f"(forget one with: certkit deploy {lineage} --remove NAME)")
