"""IIS/Exchange: the shipped PowerShell scripts parse, and certkit builds the right command lines."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from certkit import issuing, runner
from certkit.cli import cli
from certkit.deploy import hooks, windows
from certkit.deploy.base import DeployContext
from certkit.errors import HookError, UsageError
from certkit.settings import LineageSettings, PfxSettings
from certkit.store import Store
from tests.conftest import skip_or_fail

SCRIPTS = {name: windows.script_dir() / file for name, file in windows.SCRIPTS.items()}
PASSWORD = "pfx pass 'quoted' $notexpanded"


def parser() -> Any:
    try:
        import tree_sitter
        import tree_sitter_powershell
    except ImportError:
        skip_or_fail("tree-sitter and tree-sitter-powershell are not installed (pip install them)")
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


def walk(node: Any) -> Any:
    yield node
    for child in node.children:
        yield from walk(child)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_parses_without_errors(name: str) -> None:
    tree = parser().parse(SCRIPTS[name].read_bytes())
    bad = [(n.type, n.start_point) for n in walk(tree.root_node) if n.type == "ERROR" or n.is_missing]
    assert not bad, f"{name}: {bad}"
    assert not tree.root_node.has_error


def test_parser_catches_broken_powershell() -> None:
    tree = parser().parse(b"function f( { if ($x -eq ) ")
    assert tree.root_node.has_error


def script_params(name: str) -> set[str]:
    """Parameter names declared in the script's top-level param() block (from the syntax tree)."""
    tree = parser().parse(SCRIPTS[name].read_bytes())
    blocks = [n for n in walk(tree.root_node) if n.type == "param_block"]
    assert blocks, f"{name} has no param block"
    text = blocks[0].text.decode()
    return {m.lower() for m in re.findall(r"\$(\w+)", text)}


@pytest.mark.parametrize("name,options", [
    ("iis", {"site": "Default Web Site", "port": 8443, "host": "mail.example.test", "sni": True,
             "smtp_fqdn": "mail.example.test"}),
    ("exchange", {"services": "SMTP,IIS", "remove_previous": True}),
])
def test_every_parameter_certkit_passes_is_declared(name: str, options: dict[str, Any]) -> None:
    declared = script_params(name)
    passed = [a[1:].lower() for a in windows.script_args(name, options) if a.startswith("-")]
    assert passed and set(passed) <= declared, (passed, declared)
    assert not any("password" in p for p in declared)  # secrets come from the environment only


def test_scripts_read_the_hook_environment_and_never_put_a_password_on_argv() -> None:
    for name, path in SCRIPTS.items():
        text = path.read_text()
        for var in ("CERTKIT_PFX", "CERTKIT_PFX_PASSWORD_FILE", "CERTKIT_THUMBPRINT"):
            assert f'"{var}"' in text, (name, var)
        assert "exit 1" in text and '$ErrorActionPreference = "Stop"' in text
        assert not re.search(r"certutil[^\n]*\s-p\s", text, re.IGNORECASE)
    iis = SCRIPTS["iis"].read_text()
    assert "Import-PfxCertificate -FilePath $PfxPath -CertStoreLocation Cert:\\LocalMachine\\My" in iis
    assert "certutil.exe -f -importPFX My $PfxPath" in iis
    assert "IIS:\\SslBindings\\!" in iis and "-SSLFlags" in iis  # SNI binding
    assert "Requires TLS encryption" in iis  # the printed IIS 6 / Exchange 2003 step
    exchange = SCRIPTS["exchange"].read_text()
    assert "Enable-ExchangeCertificate -Thumbprint $thumbprint -Services $serviceText -Force" in exchange
    assert "Import-ExchangeCertificate -FileData" in exchange
    assert "Remove-ExchangeCertificate -Thumbprint $previous -Confirm:$false" in exchange
    assert "CERTKIT_PREVIOUS_THUMBPRINT" in exchange and "CERTKIT_PREVIOUS_CERT" in exchange


class Recorder:
    """A runner that records each call and answers with a canned result."""

    def __init__(self, returncode: int = 0, stdout: str = "ok\n", stderr: str = "") -> None:
        self.calls: list[dict[str, Any]] = []
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    def __call__(self, argv: list[str], **kw: Any) -> runner.Result:
        self.calls.append({"argv": list(argv), **kw})
        return runner.Result(tuple(argv), self.returncode, self.stdout, self.stderr)


def make_ctx(home: Path, target: str, options: dict[str, Any], run: Any = runner.run,
             previous: bool = True) -> tuple[DeployContext, list[str]]:
    store = Store(home)
    pw_file = home.parent / "pfx-password"
    pw_file.write_text(PASSWORD + "\n")
    settings = LineageSettings(name="mail.test", domains=["mail.test"], key_type="ec256",
                               pfx=PfxSettings(enabled=True, password_file=str(pw_file)))
    issuing.issue(store, settings, echo=lambda _: None)
    if previous:
        issuing.issue(store, settings, echo=lambda _: None)
    version = store.live_version("mail.test") or 1
    prev = version - 1 if version > 1 else None
    env = hooks.hook_env(store, store.load_settings("mail.test"), version, prev)
    lines: list[str] = []
    ctx = DeployContext(target=target, store=store, name="mail.test", settings=store.load_settings("mail.test"),
                        version=version, previous_version=prev, paths=store.live_paths("mail.test"),
                        hook_env=env, options=options, echo=lines.append, run=run)
    return ctx, lines


def test_iis_command_line_on_windows(home: Path) -> None:
    rec = Recorder(stdout="imported X\nsite Default Web Site now serves X on port 443\n")
    ctx, lines = make_ctx(home, "iis", {"site": "Default Web Site", "port": 443, "host": "mail.test", "sni": True},
                          run=rec)
    windows.deploy(ctx, on_windows=True)
    assert len(rec.calls) == 1
    call = rec.calls[0]
    assert call["argv"] == ["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass",
                            "-File", str(SCRIPTS["iis"]), "-Site", "Default Web Site", "-Port", "443",
                            "-HostHeader", "mail.test", "-Sni"]
    env = call["env"]
    assert env["CERTKIT_PFX"].endswith("cert.pfx") and Path(env["CERTKIT_PFX"]).is_file()
    assert Path(env["CERTKIT_PFX_PASSWORD_FILE"]).read_text().strip() == PASSWORD
    assert re.fullmatch(r"[0-9A-F]{40}", env["CERTKIT_THUMBPRINT"])
    assert "PATH" in env  # certkit's environment is inherited
    assert all(PASSWORD not in arg for arg in call["argv"])
    assert call["timeout"] >= 120
    assert lines == ["iis: imported X", "iis: site Default Web Site now serves X on port 443"]


def test_exchange_command_line_and_previous_thumbprint(home: Path) -> None:
    rec = Recorder()
    ctx, _ = make_ctx(home, "exchange", {"services": "smtp, iis", "remove_previous": True}, run=rec)
    windows.deploy(ctx, on_windows=True)
    argv, env = rec.calls[0]["argv"], rec.calls[0]["env"]
    assert argv[5:] == ["-File", str(SCRIPTS["exchange"]), "-Services", "SMTP,IIS", "-RemovePrevious"]
    assert re.fullmatch(r"[0-9A-F]{40}", env["CERTKIT_PREVIOUS_THUMBPRINT"])
    assert env["CERTKIT_PREVIOUS_THUMBPRINT"] != env["CERTKIT_THUMBPRINT"]


def test_script_failure_is_a_hook_error(home: Path) -> None:
    rec = Recorder(returncode=1, stdout="", stderr="exchange.ps1: the Exchange management tools are not installed")
    ctx, _ = make_ctx(home, "exchange", {}, run=rec, previous=False)
    with pytest.raises(HookError, match="management tools are not installed"):
        windows.deploy(ctx, on_windows=True)
    assert rec.calls[0]["argv"][-2:] == ["-Services", "SMTP"]


def test_elsewhere_exit_2_with_directions(home: Path) -> None:
    rec = Recorder()
    ctx, _ = make_ctx(home, "iis", {"site": "1"}, run=rec, previous=False)
    with pytest.raises(UsageError) as exc:
        windows.deploy(ctx, on_windows=False)
    assert exc.value.exit_code == 2
    assert "Windows server" in str(exc.value) and "--print" in str(exc.value)
    assert rec.calls == []


def test_print_shows_exact_commands_without_secrets(home: Path) -> None:
    rec = Recorder()
    ctx, lines = make_ctx(home, "iis", {"site": "O'Brien site", "port": 443, "print": True}, run=rec)
    windows.deploy(ctx, on_windows=False)
    assert rec.calls == []
    text = "\n".join(lines)
    assert f"$env:CERTKIT_PFX = '{ctx.hook_env['CERTKIT_PFX']}'" in text
    assert f"$env:CERTKIT_THUMBPRINT = '{ctx.hook_env['CERTKIT_THUMBPRINT']}'" in text
    assert ("powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File .\\iis.ps1 "
            "-Site 'O''Brien site' -Port 443") in text
    assert PASSWORD not in text
    # The printed lines are valid PowerShell.
    tree = parser().parse("\n".join(lines[1:]).encode())
    assert not tree.root_node.has_error


def test_bad_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="needs a host name"):
        windows.script_args("iis", {"sni": True})
    with pytest.raises(UsageError, match="unknown Exchange service"):
        windows.script_args("exchange", {"services": "SMTP,FTP"})
    with pytest.raises(UsageError):
        windows.kind("postfix")


def test_cli_deploy_iis_on_linux_exits_2(home: Path) -> None:
    result = CliRunner().invoke(cli, ["issue", "--cn", "mail.test", "--key", "ec256", "--pfx"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["deploy", "mail.test", "--to", "iis", "--site", "Default Web Site"])
    assert result.exit_code == 2, result.output
    assert "PowerShell" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["deploy", "mail.test", "--to", "iis", "--site", "Default Web Site", "--print"])
    assert "iis.ps1 -Site 'Default Web Site'" in result.output, result.output


def test_powershell_completion_script_parses() -> None:
    """`certkit completion powershell` is PowerShell that a parser accepts (it cannot run here)."""
    result = CliRunner().invoke(cli, ["completion", "powershell"])
    assert result.exit_code == 0
    tree = parser().parse(result.stdout.encode())
    assert not tree.root_node.has_error
    assert "Register-ArgumentCompleter" in result.stdout
