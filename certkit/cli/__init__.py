"""certkit's command line: parse, call, print. The work lives in the other packages.

One module per command group (issue.py: issue/selfssl/export, with issue_run.py
and export_run.py doing their work; lineages.py: list/show/targets; lifecycle.py:
rollback/prune/delete; revoke.py, account.py; ca.py (the private CA); check.py
(+ check_dns.py: --dane, --mta-sts; check_targets.py: --targets lines); deploy.py,
renew.py, smtpd.py, timer.py, dane.py: dane/mta-sts; metrics.py; completion.py);
context.py hands them the Store; records.py builds the show/list JSON. Commands may
import anything below them, never this package's __init__.

Start-up stays light: only click is imported at module level, so `--help`
and `--version` never load cryptography, acme, josepy, requests or aiosmtpd.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from certkit import __version__
from certkit.cli.account import account_command
from certkit.cli.ca import ca_command
from certkit.cli.check import check_command
from certkit.cli.completion import completion_command
from certkit.cli.dane import dane_command, mta_sts_command
from certkit.cli.deploy import deploy_command
from certkit.cli.issue import export_command, issue_command, selfssl_command
from certkit.cli.lifecycle import delete_command, prune_command, rollback_command
from certkit.cli.lineages import list_command, show_command, targets_command
from certkit.cli.metrics import metrics_command
from certkit.cli.renew import renew_command
from certkit.cli.revoke import revoke_command
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
        except Exception as exc:  # a bug: one line for the user, the traceback for the log file
            import logging
            import traceback

            logging.getLogger("certkit").debug("".join(traceback.format_exception(exc)).rstrip())
            click.echo(f"error: unexpected {type(exc).__name__}: {exc} - this is a bug in certkit; please report it "
                       "with the end of HOME/logs/certkit.log (certkit -v shows the traceback)", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


GLOBAL_OPTIONS = ("--home",)  # the group's options that take a value
GLOBAL_FLAGS = ("-v", "--verbose", "-vv")
COMMAND_FLAGS = ("--json",)  # the subcommand's, also accepted before it (`certkit --json list`)


def hoist_global_options(args: list[str]) -> list[str]:
    """Move the group's options given after the subcommand to the front, as users of
    certbot expect (`certkit issue --cn X --home D`), and a subcommand's ``--json``
    given before it to its end (`certkit --json list`); nothing after ``--`` is touched."""
    front: list[str] = []  # the group's options
    rest: list[str] = []  # the subcommand and its arguments
    moved_back: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name = arg.split("=", 1)[0]
        if arg == "--":
            rest.extend(moved_back + args[i:])
            return front + rest
        if arg in GLOBAL_FLAGS:
            front.append(arg)
        elif arg in COMMAND_FLAGS and not rest:
            moved_back.append(arg)
        elif name in GLOBAL_OPTIONS and "=" not in arg and i + 1 < len(args):
            front.extend(args[i:i + 2])
            i += 1
        elif ("=" in arg and name in GLOBAL_OPTIONS) or (not rest and arg.startswith("-")):
            front.append(arg)  # `--home=D`, or before the subcommand: `--version`, `--help`
        else:
            rest.append(arg)
        i += 1
    return front + rest + moved_back


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
@click.option("-v", "--verbose", count=True,
              help="Print debug details (ACME requests, programs run) on stderr; the log file "
                   "HOME/logs/certkit.log always has them.")
def cli(home: str | None, verbose: int) -> None:
    """certkit: certificates for SMTP submission (587 + AUTH + STARTTLS).

    Issue (self-signed or ACME), export (PEM, PFX, DER), deploy (Postfix,
    IIS/Exchange, aiosmtpd, scripts), check a server, renew on a timer,
    publish DANE (TLSA) and MTA-STS records.
    """
    from certkit import journal

    journal.set_verbose(verbose)


for command in (issue_command, selfssl_command, export_command, list_command, show_command, targets_command,
                rollback_command, prune_command, delete_command, revoke_command, completion_command,
                metrics_command):
    cli.add_command(command)
cli.add_command(account_command)
cli.add_command(ca_command)
cli.add_command(check_command)
cli.add_command(deploy_command)
cli.add_command(renew_command)
cli.add_command(smtpd_command)
cli.add_command(timer_command)
cli.add_command(dane_command)
cli.add_command(mta_sts_command)


def main() -> None:
    from certkit import journal

    journal.start(sys.argv[1:])  # the log file gets this command's lines once it touches the state directory
    try:
        cli(prog_name="certkit")
    except SystemExit as exc:
        journal.finish(exc.code)
        raise
