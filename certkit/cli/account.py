"""`certkit account list|show|update|deactivate|rollover`: the ACME accounts under ``accounts/``.

An account is picked by ``--server URL [--email E]``, as `issue --acme`
picks it; with a single stored account (or a single one for the server)
the options may be left out. The work is in :mod:`certkit.acme.manage`.
"""

from __future__ import annotations

from typing import Any

import click

from certkit.cli.context import echo_json, store_from


def _pick_options(func: Any) -> Any:
    options = [
        click.option("--server", default=None,
                     help="The CA's directory URL (or letsencrypt / letsencrypt-staging), as given to issue."),
        click.option("--email", default=None, help="The e-mail the account was made with (picks among several)."),
        click.option("--ca-bundle", type=click.Path(dir_okay=False), default=None,
                     help="Trust anchors for the ACME server's HTTPS (as for issue)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _err(line: str) -> None:
    click.echo(line, err=True)


_json_option = click.option("--json", "as_json", is_flag=True, help="Print the account record afterwards as JSON.")


def _print_record(store: Any, directory_url: str, email: str | None) -> None:
    from certkit.acme import manage

    echo_json(manage.describe(manage.load(store, directory_url, email)))


@click.group("account")
def account_command() -> None:
    """List and manage ACME accounts (contact, deactivation, key rollover)."""


@account_command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of account records.")
@click.pass_context
def list_accounts(ctx: click.Context, as_json: bool) -> None:
    """List the stored ACME accounts (no request to any CA)."""
    from certkit.acme import manage

    store = store_from(ctx)
    records = [manage.describe(manage.load(store, str(info["directory"]), info.get("email")))
               for _dir, info in store.account_infos() if info.get("directory")]
    if as_json:
        echo_json(records)
    elif not records:
        click.echo(f"No ACME accounts in {store.home} yet - the first `certkit issue --acme` makes one.")
    else:
        for rec in records:
            contact = ", ".join(c.removeprefix("mailto:") for c in rec["contact"]) or "no contact"
            click.echo(f"{rec['server']}  {rec['email'] or '(no e-mail)'}  {rec['status']}  {contact}  {rec['uri']}")


@account_command.command("show")
@_pick_options
@click.option("--json", "as_json", is_flag=True, help="Print the account record as JSON.")
@click.pass_context
def show_account(ctx: click.Context, server: str | None, email: str | None, ca_bundle: str | None,
                 as_json: bool) -> None:
    """Show one account: what is stored, and its status and contact at the CA."""
    from certkit.acme import manage

    store = store_from(ctx)
    stored = manage.pick(store, server, email)
    rec = manage.describe(stored, manage.fetch(stored, ca_bundle, _err))
    if as_json:
        echo_json(rec)
        return
    labels = (("server", "server"), ("e-mail", "email"), ("account URL", "uri"), ("status", "status"),
              ("contact", "contact"), ("created", "created"), ("key", "key_type"),
              ("key thumbprint", "key_thumbprint"), ("key changed", "key_changed"), ("deactivated", "deactivated"))
    for label, key in labels:
        value = rec.get(key)
        if isinstance(value, list):
            value = ", ".join(v.removeprefix("mailto:") for v in value) or "none"
        if value is not None:
            click.echo(f"{label + ':':<16}{value}")


@account_command.command("update")
@_pick_options
@click.option("--new-email", "new_emails", multiple=True, metavar="ADDRESS",
              help="The contact address the CA should use from now on (repeatable; replaces the old ones). "
                   "Without it, --email is the new address (certbot's update_account --email).")
@_json_option
@click.pass_context
def update_account(ctx: click.Context, server: str | None, email: str | None, ca_bundle: str | None,
                   new_emails: tuple[str, ...], as_json: bool) -> None:
    """Change the account's contact e-mail at the CA (the account stays picked by its original --email)."""
    from certkit.acme import manage
    from certkit.errors import UsageError

    store = store_from(ctx)
    if not new_emails:
        if not email:
            raise UsageError("account update needs the new address",
                             "pass --new-email ADDRESS (or --email ADDRESS when the server has one account)")
        new_emails, email = (email,), None  # certbot habit: the account is the server's only one
    stored = manage.pick(store, server, email)
    remote = manage.update_contact(store, stored, list(new_emails), ca_bundle, _err)
    if as_json:
        _print_record(store, stored.directory_url, stored.email)
        return
    shown = ", ".join(c.removeprefix("mailto:") for c in remote.get("contact") or []) or "none"
    click.echo(f"Updated the account {stored.info.get('uri')}: contact {shown}.")


@account_command.command("deactivate")
@_pick_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (deactivation cannot be undone).")
@_json_option
@click.pass_context
def deactivate_account(ctx: click.Context, server: str | None, email: str | None, ca_bundle: str | None,
                       yes: bool, as_json: bool) -> None:
    """Deactivate the account at the CA for good (RFC 8555 7.3.6); its certificates stay valid."""
    from certkit.acme import manage

    store = store_from(ctx)
    stored = manage.pick(store, server, email)
    if not yes:
        click.confirm(f"Deactivate {stored.info.get('uri')} at {stored.directory_url} for good?", abort=True,
                      err=True)
    manage.deactivate(store, stored, ca_bundle, _err)
    if as_json:
        _print_record(store, stored.directory_url, stored.email)
        return
    click.echo(f"Deactivated {stored.info.get('uri')}. certkit will not use it again; lineages on this CA and "
               "e-mail need a new account: move its folder away, or issue with another --email.")


@account_command.command("rollover")
@_pick_options
@_json_option
@click.pass_context
def rollover_account(ctx: click.Context, server: str | None, email: str | None, ca_bundle: str | None,
                     as_json: bool) -> None:
    """Replace the account key with a new one (RFC 8555 7.3.5); the old key stops working at the CA."""
    from certkit.acme import manage

    store = store_from(ctx)
    stored = manage.pick(store, server, email)
    how = manage.rollover(store, stored, ca_bundle, _err)
    if as_json:
        _print_record(store, stored.directory_url, stored.email)
        return
    new = manage.load(store, stored.directory_url, stored.email)
    click.echo(f"Account {stored.info.get('uri')}: {how}; new key thumbprint {manage.thumbprint(new.jwk)}.")
