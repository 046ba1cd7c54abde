"""`certkit revoke`: ask the CA to revoke a lineage's live certificate; `renew` then replaces it."""

from __future__ import annotations

import click

from certkit.cli.completion import complete_lineage
from certkit.cli.context import echo_json, store_from

# RFC 5280 section 5.3.1 CRLReason codes that ACME CAs accept from subscribers (Let's Encrypt: 0, 1, 3, 4, 5;
# cACompromise, certificateHold, removeFromCRL and aACompromise are the CA's own business).
REASONS = {
    "unspecified": 0,
    "keyCompromise": 1,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "privilegeWithdrawn": 9,
}


def _reason(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, str]:
    """The reason by name, in any case and with or without dashes/underscores (key-compromise, KEYCOMPROMISE)."""
    folded = {name.lower(): name for name in REASONS}
    wanted = value.replace("-", "").replace("_", "").lower()
    if wanted.isdigit() and int(wanted) in REASONS.values():
        name = next(n for n, code in REASONS.items() if code == int(wanted))
        return REASONS[name], name
    if wanted not in folded:
        raise click.BadParameter(f"{value!r} is not a revocation reason; choose one of {', '.join(REASONS)}")
    return REASONS[folded[wanted]], folded[wanted]


@click.command("revoke")
@click.argument("lineage", shell_complete=complete_lineage)
@click.option("--reason", default="unspecified", show_default=True, callback=_reason, metavar="REASON",
              help="Why (RFC 5280): " + ", ".join(REASONS) + ". keyCompromise when the key leaked.")
@click.option("--with-cert-key", is_flag=True,
              help="Sign the request with the certificate's own key instead of the ACME account key (RFC 8555 7.6).")
@click.option("--json", "as_json", is_flag=True, help="Print the revocation record as JSON.")
@click.pass_context
def revoke_command(ctx: click.Context, lineage: str, reason: tuple[int, str], with_cert_key: bool,
                   as_json: bool) -> None:
    """Revoke LINEAGE's live certificate at its CA and mark the lineage revoked.

    Servers keep serving the revoked certificate until it is replaced: the
    next `certkit renew` (the timer's, or run it now) issues a new version
    and deploys it, whatever the dates say.
    """
    from certkit.issuing import revoke_live

    store = store_from(ctx)
    record = revoke_live(store, lineage, reason, with_cert_key=with_cert_key,
                         echo=lambda line: click.echo(line, err=True))
    if as_json:
        echo_json({"name": lineage, **record})
        return
    click.echo(f"Revoked {lineage} version {record['version']} (serial {record['serial']}, reason {record['reason']},"
               f" signed with the {record['signed_with']}).")
    click.echo(f"Servers still present it until it is replaced - run now: certkit renew {lineage}")
