"""The "Every command and option" appendix of docs/cli.md, made from the command line itself.

    python3 -m tests.cli_reference          # rewrite the appendix
    (tests/test_cli_surface.py fails while it is out of date)

Each command gets its usage line, its help text's first paragraph and a
table of its options with their help, exactly as `certkit COMMAND --help`
shows them - so the reference cannot drift from the program.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from certkit.cli import cli

CLI_MD = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
BEGIN = "<!-- reference: made by `python3 -m tests.cli_reference`; do not edit by hand -->"
END = "<!-- end of reference -->"


def commands() -> list[tuple[str, click.Command, click.Context]]:
    """Every command a user runs, depth first, with a context for its help records."""
    found: list[tuple[str, click.Command, click.Context]] = []

    def walk(command: click.Command, path: str, parent: click.Context | None) -> None:
        ctx = click.Context(command, info_name=path.split()[-1], parent=parent)
        if not isinstance(command, click.Group) or command.invoke_without_command or parent is None:
            found.append((path, command, ctx))
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):  # the group imports a command's module on demand
                sub = command.get_command(ctx, name)
                assert sub is not None, name
                walk(sub, f"{path} {name}", ctx)

    walk(cli, "certkit", None)
    return found


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def reference() -> str:
    out = [BEGIN, "", "## Every command and option", "",
           "Made from the program's own help (`certkit COMMAND --help` says the same; every command takes "
           "`-h`/`--help`).", ""]
    for path, command, ctx in commands():
        usage = " ".join(command.collect_usage_pieces(ctx))
        out += [f"### {path}", "", f"`{path} {usage}`".replace(" `", "`"), ""]
        summary = (command.help or "").split("\n\n", 1)[0]
        out += [_cell(summary), ""]
        rows = [record for param in command.get_params(ctx) if (record := param.get_help_record(ctx))]
        # -h/--help is left out: every command has it (and click caches its form once a command ran).
        rows = [(opt, text) for opt, text in rows if not opt.endswith("--help")]
        if rows:
            out += ["| option | meaning |", "| --- | --- |"]
            out += [f"| `{_cell(opt)}` | {_cell(text)} |" for opt, text in rows]
            out.append("")
    out.append(END)
    return "\n".join(out) + "\n"


def updated_text(current: str) -> str:
    """``current`` (docs/cli.md) with the appendix replaced (or appended)."""
    if BEGIN in current:
        head = current[: current.index(BEGIN)]
        tail = current[current.index(END) + len(END):].lstrip("\n")
        return head + reference() + ("\n" + tail if tail else "")
    return current.rstrip("\n") + "\n\n" + reference()


def main() -> int:
    current = CLI_MD.read_text(encoding="utf-8")
    new = updated_text(current)
    if new != current:
        CLI_MD.write_text(new, encoding="utf-8")
        print(f"updated {CLI_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
