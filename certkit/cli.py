"""certkit's command line: parse, call, print. The work lives in the other modules.

Start-up stays light: only click is imported at module level, so `--help`
and `--version` never load cryptography, acme, josepy, requests or aiosmtpd.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

from certkit import __version__
from certkit.commands import store_from
from certkit.commands.check import check_command
from certkit.commands.deploy import deploy_command
from certkit.commands.renew import renew_command
from certkit.commands.smtpd import smtpd_command
from certkit.commands.timer import timer_command
from certkit.errors import CertkitError

KEY_CHOICES = ["rsa2048", "rsa3072", "rsa4096", "ec256", "ec384"]


class CertkitGroup(click.Group):
    """Maps CertkitError to `error: ...` and its exit code; click's own usage errors keep exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CertkitError as exc:
            fail(exc)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().main(*args, **kwargs)
        except CertkitError as exc:  # raised while parsing (callbacks)
            fail(exc)


def fail(exc: CertkitError) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


def _check_home_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse control characters in --home / CERTKIT_HOME before any command uses it."""
    from certkit.fsguard import reject_control_chars

    # A newline here once became an extra cron line / ExecStartPre in `timer install`.
    return None if value is None else reject_control_chars(value, "--home / CERTKIT_HOME")


@click.group(cls=CertkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="certkit")
@click.option("--home", envvar="CERTKIT_HOME", type=click.Path(file_okay=False), callback=_check_home_option,
              help="State directory (env CERTKIT_HOME). Default: /etc/certkit as root, "
                   "%ProgramData%\\certkit on Windows, else $XDG_CONFIG_HOME/certkit.")
def cli(home: str | None) -> None:
    """certkit: certificates for SMTP submission (587 + AUTH + STARTTLS).

    Issue (self-signed or ACME), export (PEM, PFX, DER), deploy (Postfix,
    IIS/Exchange, aiosmtpd, scripts), check a server, renew on a timer.
    """


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
        click.option("--dns-hook", default=None, help="Command run to add/remove dns-01 TXT records."),
        click.option("--dns-resolver", default=None, help="HOST[:PORT] polled until TXT records are visible."),
        click.option("--profile", default=None, help="ACME certificate profile name."),
        click.option("--ca-bundle", type=click.Path(dir_okay=False), default=None,
                     help="Trust anchors for the ACME server's HTTPS."),
        click.option("--preferred-chain", default=None, help="Prefer the chain whose root has this CN."),
        click.option("--reuse-key", is_flag=True, help="Keep the previous key (DANE TLSA 3 1 1 users)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command("issue")
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
@click.option("--pfx", is_flag=True, help="Also write a PFX (PKCS#12) for Windows.")
@click.option("--pfx-password-file", type=click.Path(dir_okay=False), default=None)
@click.option("--pfx-encryption", type=click.Choice(["auto", "legacy", "modern"]), default="auto")
@click.option("--trust", is_flag=True, help="Add the self-signed certificate to the OS trust store.")
@click.option("--trust-store-dir", type=click.Path(file_okay=False), default=None)
@click.option("--deploy", "deploy_targets", multiple=True, metavar="TARGET",
              help="Deploy target (postfix, iis, exchange, aiosmtpd, script:PATH); repeatable.")
@click.option("--verify", "verify_urls", multiple=True, metavar="URL", help="Check URL after deploying.")
@click.option("--json", "as_json", is_flag=True, help="Print the lineage record as JSON.")
@click.pass_context
def issue_command(ctx: click.Context, /, **opts: Any) -> None:
    """Issue a certificate for --cn (self-signed by default, or --acme)."""
    from certkit.commands import issue as commands_issue

    commands_issue.run_issue(store_from(ctx), opts)


@cli.command("selfssl", context_settings={"ignore_unknown_options": True})
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
    from certkit.commands import issue as commands_issue

    commands_issue.run_selfssl(store_from(ctx), args, allow_weak, as_json, trust_store_dir)


@cli.command("export")
@click.argument("lineage")
@click.option("--format", "fmt", type=click.Choice(["pem", "pfx", "der"]), required=True)
@click.option("--out", type=click.Path(), default=None,
              help="pem: a folder; pfx/der: a file. Default: in the current folder.")
@click.option("--pfx-encryption", type=click.Choice(["auto", "legacy", "modern"]), default="auto")
@click.option("--pfx-password-file", type=click.Path(dir_okay=False), default=None)
@click.option("--friendly-name", default=None, help="PFX friendly name shown by Windows.")
@click.pass_context
def export_command(ctx: click.Context, /, **opts: Any) -> None:
    """Write a lineage's live certificate as PEM files, a PFX or DER."""
    from certkit.commands import issue as commands_issue

    commands_issue.run_export(store_from(ctx), opts)


@cli.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """List lineages: names, expiry, next renewal, deploy targets, last check."""
    from certkit import records

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
        click.echo(json.dumps(recs, indent=2))
    elif not recs:
        click.echo(f"No certificates in {store.home} yet - run `certkit issue --cn HOST`.")
    else:
        for rec in recs:
            click.echo(f"{rec['name']}: error: {rec['error']}" if "error" in rec else summary_line(rec))
    if broken:
        sys.exit(1)


@cli.command("show")
@click.argument("lineage")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show_command(ctx: click.Context, lineage: str, as_json: bool) -> None:
    """Show one lineage: names, serial, key, validity, files, deploy targets, last check."""
    from certkit import records

    rec = records.record(store_from(ctx), lineage)
    if as_json:
        click.echo(json.dumps(rec, indent=2))
        return
    click.echo(describe_record(rec))


def summary_line(rec: dict[str, Any]) -> str:
    """One line per lineage for `certkit list`."""
    if rec["not_after"] is None:
        return f"{rec['name']}: no live version"
    targets = ",".join(t["target"] for t in rec["deploy"]) or "-"
    check = rec.get("last_check") or {}
    renewal = rec.get("last_renewal") or {}
    parts = [
        f"{rec['name']}",
        f"expires {rec['not_after'][:10]} ({rec['days_left']} days)",
        f"renew after {rec['renew_after'][:10]}",
        f"deploy {targets}",
    ]
    if check:
        parts.append(f"last check {'ok' if check.get('ok') else 'FAILED'}")
    if renewal:
        parts.append(f"last renewal {'ok' if renewal.get('ok') else 'FAILED'}")
    return "  ".join(parts)


def describe_record(rec: dict[str, Any]) -> str:
    """The human form of a lineage record (show, issue)."""
    lines = [f"{rec['name']}  ({'self-signed' if rec['source'] == 'self-signed' else rec['source']})"]
    lines += [f"  names:        {', '.join(rec['domains'])}"]
    lines += [f"  key:          {rec['key_type']}"]
    if rec["not_after"]:
        lines += [
            f"  serial:       {rec['serial']}",
            f"  valid:        {rec['not_before']} to {rec['not_after']} ({rec['days_left']} days left)",
            f"  renew after:  {rec['renew_after']}",
            f"  sha256:       {rec['sha256']}",
            f"  thumbprint:   {rec['thumbprint']}",
            f"  version:      {rec['version']} of {len(rec['versions'])}",
        ]
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


cli.add_command(check_command)
cli.add_command(deploy_command)
cli.add_command(renew_command)
cli.add_command(smtpd_command)
cli.add_command(timer_command)


def main() -> None:
    cli(prog_name="certkit")
