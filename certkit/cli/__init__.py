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
from certkit.errors import CertkitError

# Each command's module is imported only when that command runs (or --help lists them all):
# a command pays for its own imports, not for the other twenty.
LAZY_COMMANDS = {
    "account": "account:account_command", "ca": "ca:ca_command", "check": "check:check_command",
    "completion": "completion:completion_command", "dane": "dane:dane_command", "mta-sts": "dane:mta_sts_command",
    "deploy": "deploy:deploy_command", "issue": "issue:issue_command", "selfssl": "issue:selfssl_command",
    "export": "issue:export_command", "rollback": "lifecycle:rollback_command", "prune": "lifecycle:prune_command",
    "delete": "lifecycle:delete_command", "list": "lineages:list_command", "show": "lineages:show_command",
    "targets": "lineages:targets_command", "metrics": "metrics:metrics_command", "renew": "renew:renew_command",
    "revoke": "revoke:revoke_command", "smtpd": "smtpd:smtpd_command", "timer": "timer:timer_command",
}


class CertkitGroup(click.Group):
    """Maps CertkitError to `error: ...` and its exit code; click's own usage errors keep exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CertkitError as exc:
            fail(exc)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            import importlib

            module, attr = LAZY_COMMANDS[cmd_name].split(":")
            self.add_command(getattr(importlib.import_module(f"certkit.cli.{module}"), attr), cmd_name)
        return self.commands.get(cmd_name)

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
            import traceback

            from certkit import journal

            journal.logger().debug("".join(traceback.format_exception(exc)).rstrip())
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


def main() -> None:
    from certkit import journal

    journal.start(sys.argv[1:])  # the log file gets this command's lines once it touches the state directory
    try:
        cli(prog_name="certkit")
    except SystemExit as exc:
        journal.finish(exc.code)
        raise
