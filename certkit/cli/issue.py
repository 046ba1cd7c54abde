"""`certkit issue`, `selfssl` and `export`: options and help (light); the work is in issue_run.py."""

from __future__ import annotations

from typing import Any

import click

from certkit.cli.completion import complete_lineage
from certkit.cli.context import store_from

KEY_CHOICES = ["rsa2048", "rsa3072", "rsa4096", "ec256", "ec384"]


def _dns_wait_value(_ctx: click.Context, _param: click.Parameter, value: float | None) -> float | None:
    import math

    if value is not None and not (math.isfinite(value) and 0 <= value <= 3600):
        raise click.BadParameter(f"{value:g} is not a number of seconds from 0 to 3600 (0: do not wait)")
    return value


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
        click.option("--challenge", type=click.Choice(["http-01", "dns-01"]), default=None,
                     help="http-01 (port 80 or --webroot; the default) or dns-01 (--dns-hook; needed for wildcards)."),
        click.option("--http-port", type=click.IntRange(1, 65535), default=None,
                     help="Port of the standalone http-01 server (default 80)."),
        click.option("--http-address", default=None, help="Address the http-01 server listens on."),
        click.option("--webroot", type=click.Path(file_okay=False), default=None,
                     help="Write http-01 tokens under DIR/.well-known/acme-challenge/."),
        click.option("--dns-hook", default=None,
                     help="Command run to add/remove dns-01 TXT records (and TLSA records with --dane)."),
        click.option("--dns-resolver", default=None, metavar="HOST[:PORT]|authoritative",
                     help="Wait until the dns-01 TXT records are visible at this resolver, or with 'authoritative' "
                          "at every name server of the zone, asked directly (authoritative@HOST[:PORT]: find "
                          "them through that resolver instead of the system's)."),
        click.option("--dns-wait", type=float, default=None, metavar="SECONDS", callback=_dns_wait_value,
                     help="Longest wait for the TXT records, remembered for renewals (default: env "
                          "CERTKIT_DNS_WAIT, else 180; 0: do not wait)."),
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
@click.option("--cn", default=None, help="The certificate's main name (CN and first SAN); required unless --csr.")
@click.option("--san", multiple=True, help="Another name (DNS, *.wildcard, IP); repeatable.")
@click.option("--name", "lineage", default=None, help="Lineage name (default: the CN).")
@click.option("--key", "key_type", default="rsa2048", show_default=True,
              help="Key type: " + ", ".join(KEY_CHOICES) + ".")
@click.option("--allow-weak", is_flag=True, help="Permit RSA keys under 2048 bits (not recommended).")
@click.option("--days", type=click.IntRange(1, 36500), default=None,
              help="Validity of a self-signed certificate (default 365).")
@click.option("--self-signed", "self_signed", is_flag=True, help="Self-signed (the default).")
@click.option("--ca", "ca", default=None, metavar="NAME",
              help="Sign with the private CA NAME (`certkit ca create`); renewals use it again.")
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
@click.option("--pfx-password-file", type=click.Path(dir_okay=False), default=None,
              help="File whose first line is the PFX password (else env CERTKIT_PFX_PASSWORD, "
                   "else a random one saved next to the PFX).")
@click.option("--pfx-encryption", type=click.Choice(["auto", "legacy", "modern"]), default="auto",
              help="PFX encryption: legacy (3DES/SHA-1, Windows Server 2003-2016), modern (AES-256), "
                   "auto (legacy only on old Windows).")
@click.option("--trust", is_flag=True, help="Add the self-signed certificate to the OS trust store.")
@click.option("--trust-store-dir", type=click.Path(file_okay=False), default=None,
              help="Where --trust puts the certificate (default: the system trust store).")
@click.option("--deploy", "deploy_targets", multiple=True, metavar="TARGET",
              help="Deploy target (postfix, iis, exchange, aiosmtpd, script:PATH); repeatable.")
@click.option("--verify", "verify_urls", multiple=True, metavar="URL", help="Check URL after deploying.")
@click.option("--expand", is_flag=True,
              help="Let a re-issue change the lineage's names or key type (otherwise exit 2 with the difference).")
@click.option("--csr", "csr_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Certify a CSR made elsewhere (PEM or DER; Exchange, IIS, openssl req): names and key come from "
                   "it, the key never leaves that server. Needs --acme.")
@click.option("--dry-run", is_flag=True,
              help="Run the whole ACME order (staging CA where there is one) and store nothing; deploy nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the lineage record as JSON.")
@click.pass_context
def issue_command(ctx: click.Context, /, **opts: Any) -> None:
    """Issue a certificate for --cn: self-signed by default, --ca NAME (private CA), --acme, or for a --csr."""
    from certkit.cli import issue_run

    issue_run.run_issue(store_from(ctx), opts)


@click.command("selfssl", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--allow-weak", is_flag=True, help="Permit /K:1024 (not recommended).")
@click.option("--trust-store-dir", type=click.Path(file_okay=False), default=None,
              help="Where /T puts the certificate (default: the system trust store).")
@click.option("--json", "as_json", is_flag=True, help="Print the lineage record as JSON.")
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
@click.option("--pfx-encryption", type=click.Choice(["auto", "legacy", "modern"]), default="auto",
              help="PFX encryption: legacy (3DES/SHA-1, Windows Server 2003-2016), modern (AES-256), "
                   "auto (legacy only on old Windows).")
@click.option("--pfx-password-file", type=click.Path(dir_okay=False), default=None,
              help="File whose first line is the PFX password (else env CERTKIT_PFX_PASSWORD, "
                   "else a random one saved next to the PFX).")
@click.option("--friendly-name", default=None, help="PFX friendly name shown by Windows.")
@click.option("--json", "as_json", is_flag=True, help="Print the files written as JSON.")
@click.pass_context
def export_command(ctx: click.Context, /, **opts: Any) -> None:
    """Write a lineage's live certificate as PEM files, a PFX or DER."""
    from certkit.cli import export_run

    export_run.run_export(store_from(ctx), opts)
