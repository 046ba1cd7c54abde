"""Deploy targets `iis` and `exchange`: the shipped PowerShell scripts.

On Windows, ``deploy(ctx)`` runs ``powershell/iis.ps1`` or ``powershell/exchange.ps1``
through the hook runner: Windows PowerShell with ``-NoProfile
-NonInteractive -ExecutionPolicy Bypass -File``, the contract's hook
environment (``CERTKIT_PFX``, ``CERTKIT_PFX_PASSWORD_FILE``,
``CERTKIT_THUMBPRINT``, ``CERTKIT_PREVIOUS_THUMBPRINT``...), and only
non-secret options as script parameters. The PFX password never appears on
a command line: the scripts read it from the password file.

Elsewhere the scripts cannot run (no certificate store, no IIS), so
``deploy(ctx)`` exits 2 and says how to run them on the Windows server;
with the ``print`` option it prints the exact PowerShell lines instead.

Options (``ctx.options``):
    iis: ``site`` (name or numeric id), ``port`` (default 443), ``host``
        (binding host name), ``sni`` (SNI binding for ``host``),
        ``smtp_fqdn`` (IIS 6 SMTP virtual server / Exchange 2003), ``print``.
    exchange: ``services`` (default "SMTP"), ``remove_previous``, ``print``.

The scripts change Windows' own stores; a rollback re-runs them with the
previous version live (its certificate is still in the machine store).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from certkit.deploy.base import DeployContext
from certkit.errors import UsageError

SCRIPTS = {"iis": "iis.ps1", "exchange": "exchange.ps1"}
POWERSHELL = "powershell.exe"
# Exchange's management snap-ins load only in Windows PowerShell (5.1 and
# older), not in pwsh 7, so the scripts are always run with powershell.exe.
POWERSHELL_FLAGS = ("-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")
# Hook variables the scripts read (printed for a manual run).
SCRIPT_VARIABLES = ("CERTKIT_NAME", "CERTKIT_DOMAINS", "CERTKIT_PFX", "CERTKIT_PFX_PASSWORD_FILE",
                    "CERTKIT_THUMBPRINT", "CERTKIT_NOT_AFTER", "CERTKIT_PREVIOUS_THUMBPRINT")
HOOK_TIMEOUT = 300.0  # Import-ExchangeCertificate + service restarts can take minutes


def script_dir() -> Path:
    """The shipped PowerShell scripts: package data beside this module (one copy, in the wheel too)."""
    return Path(__file__).resolve().parent / "powershell"


def kind(target: str) -> str:
    """"iis" or "exchange" from a target name; UsageError for anything else."""
    base = target.split(":", 1)[0].lower()
    if base not in SCRIPTS:
        raise UsageError(f"certkit.deploy.windows does not handle target {target!r}", "use iis or exchange")
    return base


def script_args(target: str, options: Mapping[str, Any]) -> list[str]:
    """The script parameters for ``options`` (never a secret)."""
    args: list[str] = []
    if kind(target) == "iis":
        if options.get("site"):
            args += ["-Site", str(options["site"])]
        if options.get("port"):
            args += ["-Port", str(int(options["port"]))]
        if options.get("host"):
            args += ["-HostHeader", str(options["host"])]
        if options.get("sni"):
            if not options.get("host"):
                raise UsageError("an SNI binding needs a host name", "add --host mail.example.com")
            args.append("-Sni")
        if options.get("smtp_fqdn"):
            args += ["-SmtpFqdn", str(options["smtp_fqdn"])]
    else:
        services = str(options.get("services") or "SMTP").replace(" ", "")
        bad = [s for s in services.split(",") if s.upper() not in {"SMTP", "IIS", "IMAP", "POP", "UM", "UMCALLROUTER"}]
        if bad or not services:
            raise UsageError(f"unknown Exchange service(s) {', '.join(bad) or services!r}",
                             "use a comma-separated list of SMTP, IIS, IMAP, POP")
        args += ["-Services", services.upper()]
        if options.get("remove_previous"):
            args.append("-RemovePrevious")
    return args


def powershell_argv(target: str, options: Mapping[str, Any], scripts: Path | None = None,
                    exe: str = POWERSHELL) -> list[str]:
    """The full command line certkit runs for ``target`` (argv list, no shell)."""
    script = (scripts or script_dir()) / SCRIPTS[kind(target)]
    return [exe, *POWERSHELL_FLAGS, "-File", str(script), *script_args(target, options)]


def ps_quote(value: str) -> str:
    """A PowerShell single-quoted literal ('' escapes a quote; nothing is expanded)."""
    return "'" + value.replace("'", "''") + "'"


def printable_commands(target: str, options: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """PowerShell lines that run the script by hand: set the variables, then call it.

    Paths are the ones on this machine: copy the PFX and its password file to
    the Windows server and adjust them. No password is printed.
    """
    lines = [f"$env:{name} = {ps_quote(env.get(name, ''))}" for name in SCRIPT_VARIABLES]
    argv = powershell_argv(target, options, scripts=Path("."))
    argv[argv.index("-File") + 1] = ".\\" + SCRIPTS[kind(target)]
    lines.append(" ".join(a if a.replace("-", "").replace(".", "").replace("\\", "").isalnum() else ps_quote(a)
                          for a in argv))
    return lines


def deploy(ctx: DeployContext, *, on_windows: bool | None = None) -> None:
    """Run (Windows), print (``print`` option) or explain (elsewhere) the target's script."""
    from certkit.deploy import hooks

    name = kind(ctx.target)
    windows = (os.name == "nt") if on_windows is None else on_windows
    if ctx.options.get("print"):
        ctx.echo(f"# {name}: in an elevated Windows PowerShell on the server, in a folder holding "
                 f"{SCRIPTS[name]} (from {script_dir()}):")
        if not windows:
            ctx.echo("# copy the PFX and its password file there too and change the two paths below")
        for line in printable_commands(ctx.target, ctx.options, ctx.hook_env):
            ctx.echo(line)
        return
    if not windows:
        # Directions go in the message itself: callers that wrap the error keep it.
        raise UsageError(
            f"the {name} target runs {SCRIPTS[name]} with Windows PowerShell on the Windows server itself, "
            f"not here: run `certkit deploy {ctx.name} --to {name}` there, or copy "
            f"{script_dir() / SCRIPTS[name]}, the PFX "
            f"({ctx.hook_env.get('CERTKIT_PFX') or f'certkit export {ctx.name} --format pfx'}) and its "
            f"password file to it and run the commands that --print shows")
    if not ctx.hook_env.get("CERTKIT_PFX"):
        raise UsageError(f"lineage {ctx.name} has no PFX for {name}",
                         f"issue it with --pfx, or certkit export {ctx.name} --format pfx")
    result = hooks.run_hook(powershell_argv(ctx.target, ctx.options), ctx.hook_env, what=SCRIPTS[name],
                            timeout=HOOK_TIMEOUT, run=ctx.run)
    for line in result.stdout.splitlines():
        if line.strip():
            ctx.echo(f"{name}: {line.rstrip()}")
