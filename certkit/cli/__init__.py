"""certkit's command line: parse, call, print. The work lives in the other packages.

One module per command group (issue.py: issue/selfssl/export, lineages.py:
list/show, check.py (+ check_dns.py: --dane, --mta-sts), deploy.py, renew.py,
smtpd.py, timer.py, dane.py: dane/mta-sts); context.py
hands them the Store; records.py builds the show/list JSON. Commands may
import anything below them, never this package's __init__.

Start-up stays light: only click is imported at module level, so `--help`
and `--version` never load cryptography, acme, josepy, requests or aiosmtpd.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from certkit import __version__
from certkit.cli.check import check_command
from certkit.cli.completion import completion_command
from certkit.cli.dane import dane_command, mta_sts_command
from certkit.cli.deploy import deploy_command
from certkit.cli.issue import export_command, issue_command, selfssl_command
from certkit.cli.lifecycle import delete_command, prune_command, rollback_command
from certkit.cli.lineages import list_command, show_command, targets_command
from certkit.cli.renew import renew_command
from certkit.cli.smtpd import smtpd_command
from certkit.cli.timer import timer_command
from certkit.errors import CertkitError


class CertkitGroup(click.Group):
    """Maps CertkitError to `error: ...` and its exit code; click's own usage errors keep exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CertkitError as exc:
            fail(exc)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False  # click's own errors become one `error: ... - fix` line below
        try:
            code = super().main(*args, **kwargs)
        except CertkitError as exc:  # raised while parsing (callbacks)
            fail(exc)
        except click.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:  # bare `certkit`: the help
                click.echo(exc.ctx.get_help())
                sys.exit(2)
            where = exc.ctx.command_path if exc.ctx is not None else "certkit"
            click.echo(f"error: {exc.format_message().rstrip('.')} - see `{where} --help`", err=True)
            sys.exit(2)
        except click.ClickException as exc:  # e.g. a file option that cannot be opened
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


GLOBAL_OPTIONS = ("--home",)  # the group's options that take a value


def hoist_global_options(args: list[str]) -> list[str]:
    """Move the group's options given after the subcommand to the front, as users of
    certbot expect (`certkit issue --cn X --home D`); nothing after ``--`` is touched."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS and rest:  # before the subcommand click parses it itself
            if "=" in arg:
                front.append(arg)
            elif i + 1 < len(args):
                front.extend(args[i:i + 2])
                i += 1
            else:
                rest.append(arg)  # no value: the subcommand's parser reports it
        else:
            rest.append(arg)
        i += 1
    return front + rest


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
    IIS/Exchange, aiosmtpd, scripts), check a server, renew on a timer,
    publish DANE (TLSA) and MTA-STS records.
    """


for command in (issue_command, selfssl_command, export_command, list_command, show_command, targets_command,
                rollback_command, prune_command, delete_command, completion_command):
    cli.add_command(command)
cli.add_command(check_command)
cli.add_command(deploy_command)
cli.add_command(renew_command)
cli.add_command(smtpd_command)
cli.add_command(timer_command)
cli.add_command(dane_command)
cli.add_command(mta_sts_command)


def main() -> None:
    cli(prog_name="certkit")
