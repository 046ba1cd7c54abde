"""The command line's surface: every command and option explains itself, every report has --json."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from certkit.cli import cli

pytestmark = pytest.mark.unit

# Commands that print no report to parse: a shell script, a server's log, an interactive prompt.
NO_JSON = {
    "certkit": "the group: --json given before a subcommand is that subcommand's",
    "certkit completion": "prints a shell completion script",
    "certkit metrics": "prints the Prometheus text format, itself the machine-readable form",
    "certkit smtpd": "runs a server",
    "certkit smtpd adduser": "an interactive password prompt",
}


def leaf_commands() -> list[tuple[str, click.Command]]:
    """Every command a user runs: leaves, and groups that run on their own (`certkit smtpd`); the root too."""
    from tests.cli_reference import commands

    found = [(path, command) for path, command, _ctx in commands()]
    return found


def test_every_command_and_option_has_help_text() -> None:
    missing = [f"{path} {p.opts[0]}" for path, command in leaf_commands() for p in command.params
               if isinstance(p, click.Option) and not (p.help or "").strip()]
    missing += [path for path, command in leaf_commands() if not (command.help or "").strip()]
    assert not missing, f"no help text: {missing}"


def test_every_reporting_command_has_json() -> None:
    lacking = [path for path, command in leaf_commands() if path not in NO_JSON
               and not any("--json" in p.opts for p in command.params if isinstance(p, click.Option))]
    assert not lacking, f"no --json: {lacking}"


def invoke(home: Path, *args: str) -> click.testing.Result:
    result = CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_lifecycle_and_export_json_reports(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for _ in range(4):
        invoke(home, "issue", "--cn", "a.example.org")
    rolled = json.loads(invoke(home, "rollback", "a.example.org", "--json").stdout)
    assert rolled == {"lineage": "a.example.org", "live_version": 3, "previous_version": 4, "deployed_to": [],
                      "verified": []}
    pruned = json.loads(invoke(home, "prune", "--keep", "1", "--json").stdout)
    assert pruned == [{"lineage": "a.example.org", "removed": [1], "kept": [2, 3, 4]}]
    exported = json.loads(invoke(home, "export", "a.example.org", "--format", "der", "--out",
                                 str(tmp_path / "a.der"), "--json").stdout)
    assert exported["version"] == 3 and exported["files"] == [str(tmp_path / "a.der")]
    assert (tmp_path / "a.der").read_bytes()[:1] == b"\x30"  # a DER SEQUENCE
    pfx = json.loads(invoke(home, "export", "a.example.org", "--format", "PFX", "--out", str(tmp_path / "a.pfx"),
                            "--pfx-encryption", "legacy", "--json").stdout)
    assert pfx["pfx_encryption"] == "legacy" and Path(pfx["password_file"]).stat().st_mode & 0o077 == 0
    deleted = json.loads(invoke(home, "delete", "a.example.org", "--json").stdout)
    assert deleted["lineage"] == "a.example.org" and deleted["still_deployed_to"] == []
    assert not (home / "lineages" / "a.example.org").exists()


def test_timer_print_as_json_writes_nothing(tmp_path: Path) -> None:
    cron = tmp_path / "certkit.cron"
    plan = json.loads(invoke(tmp_path / "home", "timer", "install", "--kind", "cron", "--cron-file", str(cron),
                             "--print", "--json").stdout)
    assert plan["kind"] == "cron" and plan["files"] == [str(cron)] and plan["installed"] is False
    assert "renew" in plan["command"] and not cron.exists()


def test_private_ca_commands_report_json(tmp_path: Path) -> None:
    home = tmp_path / "home"
    created = json.loads(invoke(home, "ca", "create", "office", "--permit", "example.org", "--key", "ec256",
                                "--json").stdout)
    assert created["name"] == "office" and created["permit"] == ["example.org"]
    exported = json.loads(invoke(home, "ca", "export", "office", "--format", "der", "--out",
                                 str(tmp_path / "office.cer"), "--json").stdout)
    assert exported == {"name": "office", "format": "der", "file": str(tmp_path / "office.cer"), "generations": [1]}
    rotated = json.loads(invoke(home, "ca", "rotate", "office", "--json").stdout)
    assert [g["current"] for g in rotated["generations"]] == [False, True]


def test_docs_cli_md_lists_every_command_and_option() -> None:
    from tests import cli_reference

    current = cli_reference.CLI_MD.read_text(encoding="utf-8")
    assert cli_reference.updated_text(current) == current, \
        "docs/cli.md's reference is out of date: run `python3 -m tests.cli_reference`"
    for path, command, _ctx in cli_reference.commands():
        assert f"### {path}\n" in current
        for param in command.params:
            if isinstance(param, click.Option) and "--help" not in param.opts:
                assert any(f"`{o}" in current or f", {o}" in current for o in param.opts), \
                    f"{path} {param.opts[0]} is not in docs/cli.md"


def test_a_command_imports_only_its_own_module() -> None:
    """`certkit list` does not pay for the imports of check, ca, dane or the other commands."""
    import subprocess
    import sys

    code = ("import sys\nfrom certkit.cli import cli\n"
            "cli.get_command(None, 'list')\n"
            "print(sorted(m for m in sys.modules if m.startswith('certkit.cli.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "certkit.cli.lineages" in loaded
    for other in ("check", "ca", "dane", "account", "deploy", "smtpd", "metrics"):
        assert f"'certkit.cli.{other}'" not in loaded, f"certkit.cli.{other} is imported for `certkit list`"
