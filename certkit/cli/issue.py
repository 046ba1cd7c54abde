"""`certkit issue`, `selfssl` and `export`: options and help (light); the work is in issue_run.py."""

from __future__ import annotations

from typing import Any

import click

from certkit.cli.completion import complete_lineage
from certkit.cli.context import store_from

KEY_CHOICES = ["rsa2048", "rsa3072", "rsa4096", "ec256", "ec384"]


def _acme_options(func: Any) -> Any:
    options = [
        click.option("--acme", "use_acme", is_flag=True, help="Get the certificate from an ACME CA."),
        click.option("--server", default=None,
                     help="ACME directory URL, or letsencrypt / letsencrypt-staging (default letsencrypt)."),
        click.option("--email", default=None, help="Account contact e-mail."),
        click.option("--agree-tos", is_flag=True, help="Agree to the CA's terms of service."),
        click.option("--eab-kid", default=None, help="External account binding key id."),
        click.option("--eab-hmac-key-file", type=click.Path(dir_okay=False), default=None,
                     help="File holding the EAB HMAC key (base64url)."),
        click.option("--challenge", type=click.Choice(["http-01", "dns-01"]), default=None),
        click.option("--http-port", type=click.IntRange(1, 65535), default=None,
                     help="Port of the standalone http-01 server (default 80)."),
        click.option("--http-address", default=None, help="Address the http-01 server listens on."),
        click.option("--webroot", type=click.Path(file_okay=False), default=None,
                     help="Write http-01 tokens under DIR/.well-known/acme-challenge/."),
        click.option("--dns-hook", default=None,
                     help="Command run to add/remove dns-01 TXT records (and TLSA records with --dane)."),
        click.option("--dns-resolver", default=None, help="HOST[:PORT] polled until TXT records are visible."),
        click.option("--profile", default=None, help="ACME certificate profile name."),
        click.option("--ca-bundle", type=click.Path(dir_okay=False), default=None,
                     help="Trust anchors for the ACME server's HTTPS."),
        click.option("--preferred-chain", default=None, help="Prefer the chain whose root has this CN."),
        click.option("--reuse-key", is_flag=True, help="Keep the previous key (DANE TLSA 3 1 1 users)."),
        click.option("--pre-hook", default=None,
                     help="Command run before each ACME order, e.g. to stop what holds port 80 (remembered)."),
        click.option("--post-hook", default=None,
                     help="Command run after each ACME order, whatever its outcome (remembered)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command("issue")
@click.option("--cn", required=True, help="The certificate's main name (CN and first SAN).")
@click.option("--san", multiple=True, help="Another name (DNS, *.wildcard, IP); repeatable.")
@click.option("--name", "lineage", default=None, help="Lineage name (default: the CN).")
@click.option("--key", "key_type", default="rsa2048", show_default=True,
              help="Key type: " + ", ".join(KEY_CHOICES) + ".")
@click.option("--allow-weak", is_flag=True, help="Permit RSA keys under 2048 bits (not recommended).")
@click.option("--days", type=click.IntRange(1, 36500), default=None,
              help="Validity of a self-signed certificate (default 365).")
@click.option("--self-signed", "self_signed", is_flag=True, help="Self-signed (the default).")
@_acme_options
@click.option("--dane", is_flag=True,
              help="DANE: keep a staged next key and publish TLSA records (3 1 1) through --dns-hook; "
                   "renewals wait until the next key's record is visible (docs/dane-mta-sts.md).")
@click.option("--dane-port", type=click.IntRange(1, 65535), default=None, help="TLSA port (default 25).")
@click.option("--dane-host", default=None, metavar="HOST", help="TLSA host, the MX name (default: --cn).")
@click.option("--dane-ca", is_flag=True, help="Also publish 2 1 1 for the issuing CA.")
@click.option("--dane-nameserver", multiple=True, metavar="HOST:PORT",
              help="Authoritative server asked whether a TLSA record is visible (default: the zone's NS); "
                   "repeatable.")
@click.option("--pfx", is_flag=True, help="Also write a PFX (PKCS#12) for Windows.")
@click.option("--pfx-password-file", type=click.Path(dir_okay=False), default=None)
@click.option("--pfx-encryption", type=click.Choice(["auto", "legacy", "modern"]), default="auto")
@click.option("--trust", is_flag=True, help="Add the self-signed certificate to the OS trust store.")
@click.option("--trust-store-dir", type=click.Path(file_okay=False), default=None)
@click.option("--deploy", "deploy_targets", multiple=True, metavar="TARGET",
              help="Deploy target (postfix, iis, exchange, aiosmtpd, script:PATH); repeatable.")
@click.option("--verify", "verify_urls", multiple=True, metavar="URL", help="Check URL after deploying.")
@click.option("--expand", is_flag=True,
              help="Let a re-issue change the lineage's names or key type (otherwise exit 2 with the difference).")
@click.option("--json", "as_json", is_flag=True, help="Print the lineage record as JSON.")
@click.pass_context
def issue_command(ctx: click.Context, /, **opts: Any) -> None:
    """Issue a certificate for --cn (self-signed by default, or --acme)."""
    from certkit.cli import issue_run

    issue_run.run_issue(store_from(ctx), opts)


@click.command("selfssl", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--allow-weak", is_flag=True, help="Permit /K:1024 (not recommended).")
@click.option("--trust-store-dir", type=click.Path(file_okay=False), default=None,
              help="Where /T puts the certificate (default: the system trust store).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def selfssl_command(ctx: click.Context, args: tuple[str, ...], allow_weak: bool, trust_store_dir: str | None,
                    as_json: bool) -> None:
    """SelfSSL-compatible: certkit selfssl /T /N:CN=host /K:2048 /V:365 [/S:site] [/P:port] [/Q].

    The IIS 6 Resource Kit line works as pasted, except that /K:1024 is
    refused (use /K:2048). /T trusts the certificate, /S and /P deploy to an
    IIS site on Windows.
    """
    from certkit.cli import issue_run

    issue_run.run_selfssl(store_from(ctx), args, allow_weak, as_json, trust_store_dir)


@click.command("export")
@click.argument("lineage", shell_complete=complete_lineage)
@click.option("--format", "fmt", type=click.Choice(["pem", "pfx", "p12", "der"], case_sensitive=False),
              required=True, callback=lambda _ctx, _param, value: {"p12": "pfx"}.get(value.lower(), value.lower()),
              help="pem (a folder of files), pfx (PKCS#12; p12 is the same), der (the certificate alone).")
@click.option("--out", type=click.Path(), default=None,
              help="pem: a folder; pfx/der: a file. Default: in the current folder.")
@click.option("--pfx-encryption", type=click.Choice(["auto", "legacy", "modern"]), default="auto")
@click.option("--pfx-password-file", type=click.Path(dir_okay=False), default=None)
@click.option("--friendly-name", default=None, help="PFX friendly name shown by Windows.")
@click.pass_context
def export_command(ctx: click.Context, /, **opts: Any) -> None:
    """Write a lineage's live certificate as PEM files, a PFX or DER."""
    from certkit.cli import issue_run

    issue_run.run_export(store_from(ctx), opts)
