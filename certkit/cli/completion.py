"""`certkit completion bash|zsh|fish|powershell`: the script that makes a shell complete certkit.

bash, zsh and fish use click's completion (commands, options, choices, and
lineage names from the state directory). PowerShell has no click support:
its script completes commands and options from certkit's own help.
"""

from __future__ import annotations

import click

PROG = "certkit"
COMPLETE_VAR = "_CERTKIT_COMPLETE"
INSTALL = {
    "bash": 'eval "$(certkit completion bash)"   # in ~/.bashrc',
    "zsh": 'eval "$(certkit completion zsh)"    # in ~/.zshrc',
    "fish": "certkit completion fish > ~/.config/fish/completions/certkit.fish",
    "powershell": "certkit completion powershell | Out-String | Invoke-Expression   # in $PROFILE",
}

POWERSHELL = r"""# certkit completion for PowerShell: commands and options, from certkit's help.
Register-ArgumentCompleter -Native -CommandName certkit -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)
    $words = $commandAst.CommandElements | ForEach-Object { $_.ToString() }
    if ($words.Count -le 2 -and -not $wordToComplete.StartsWith('-')) {
        $help = certkit --help
    } else {
        $help = certkit $words[1] --help
    }
    $candidates = $help | Select-String -Pattern '^\s+(--?[\w-]+|[a-z][\w-]+)\s' -AllMatches |
        ForEach-Object { $_.Matches[0].Groups[1].Value }
    $candidates | Where-Object { $_ -like "$wordToComplete*" } | Sort-Object -Unique |
        ForEach-Object { [System.Management.Automation.CompletionResult]::new($_, $_, 'ParameterValue', $_) }
}
"""


@click.command("completion")
@click.argument("shell", type=click.Choice(sorted(INSTALL), case_sensitive=False))
@click.pass_context
def completion_command(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh, fish, powershell); see docs/cli.md."""
    shell = shell.lower()
    if shell == "powershell":
        click.echo(POWERSHELL, nl=False)
        return
    from click.shell_completion import get_completion_class

    group = ctx.find_root().command  # the whole command tree (this module never imports the group)
    complete_class = get_completion_class(shell)
    assert complete_class is not None  # the Choice above only lets through shells click knows
    click.echo(f"install: {INSTALL[shell]}", err=True)
    click.echo(complete_class(group, {}, PROG, COMPLETE_VAR).source())


def complete_lineage(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """Lineage names in the state directory that start with what was typed (for shell completion)."""
    from certkit.cli.context import home_from
    from certkit.store import Store

    try:
        names = Store(home_from(ctx)).names()
    except Exception:  # completion must never print a traceback into the user's shell
        return []
    return [n for n in names if n.startswith(incomplete)]
