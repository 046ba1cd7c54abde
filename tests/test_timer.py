"""Timers: systemd units (checked by systemd-analyze), cron.d line, Windows task XML, install/remove."""

from __future__ import annotations

import os
import random
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from certkit.cli import cli
from certkit.renew import timer

TASK_NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}


def test_systemd_units_pass_systemd_analyze(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        from tests.conftest import skip_or_fail

        skip_or_fail("systemd-analyze is not installed")
    home = tmp_path / "state dir with space%"
    units = tmp_path / "units"
    result = CliRunner().invoke(cli, ["--home", str(home), "timer", "install", "--kind", "systemd",
                                      "--unit-dir", str(units)])
    assert result.exit_code == 0, result.output
    service, timer_file = units / "certkit-renew.service", units / "certkit-renew.timer"
    proc = subprocess.run(["systemd-analyze", "verify", str(timer_file), str(service)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # not even a warning
    text = timer_file.read_text()
    assert "OnCalendar=*-*-* 00,12:00:00" in text and "Persistent=true" in text
    assert "RandomizedDelaySec=43200" in text and "WantedBy=timers.target" in text
    exec_start = next(ln for ln in service.read_text().splitlines() if ln.startswith("ExecStart="))
    # The state directory in use is baked in, quoted for systemd (space) with % escaped.
    assert '--home "' + str(home.absolute()).replace("%", "%%") + '" renew' in exec_start
    assert exec_start.endswith("renew --jitter")
    assert Path(exec_start.split()[0].removeprefix("ExecStart=")).is_absolute()
    assert "Type=oneshot" in service.read_text()
    assert "to finish: systemctl daemon-reload" in result.output  # not the system's unit dir: say what to run


def test_systemd_rejects_what_it_should(tmp_path: Path) -> None:
    """The verify step is a real check: a broken calendar fails it."""
    if shutil.which("systemd-analyze") is None:
        from tests.conftest import skip_or_fail

        skip_or_fail("systemd-analyze is not installed")
    service, timer_text = timer.systemd_units(["/bin/true"])
    (tmp_path / "certkit-renew.service").write_text(service)
    (tmp_path / "certkit-renew.timer").write_text(timer_text.replace("00,12:00:00", "99:99"))
    proc = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "certkit-renew.timer")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0


def test_print_writes_nothing(tmp_path: Path) -> None:
    runner = CliRunner()
    for kind, extra in (("systemd", ["--unit-dir", str(tmp_path / "u")]),
                        ("cron", ["--cron-file", str(tmp_path / "cron")]),
                        ("windows", ["--unit-dir", str(tmp_path / "w")])):
        result = runner.invoke(cli, ["--home", str(tmp_path / "h"), "timer", "install", "--kind", kind,
                                     "--print", *extra])
        assert result.exit_code == 0, result.output
        assert "renew --jitter" in result.output and str((tmp_path / "h").absolute()) in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_cron_file_install_and_remove(tmp_path: Path) -> None:
    cron = tmp_path / "cron.d" / "certkit"
    home = tmp_path / "it's home"
    runner = CliRunner()
    result = runner.invoke(cli, ["--home", str(home), "timer", "install", "--kind", "cron", "--cron-file", str(cron)])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in cron.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "SHELL=/bin/sh" and lines[1].startswith("PATH=")
    fields = lines[2].split(None, 6)
    minute, hours, user, command = fields[0], fields[1], fields[5], fields[6]
    h1, h2 = (int(h) for h in hours.split(","))
    assert 0 <= int(minute) < 60 and h2 == h1 + 12 and fields[2:5] == ["*", "*", "*"] and user == "root"
    argv = shlex.split(command)  # what /bin/sh will run: the quoting survives the apostrophe
    assert argv[-3:] == ["renew", "--jitter", "--quiet"]
    assert argv[argv.index("--home") + 1] == str(home.absolute())
    result = runner.invoke(cli, ["timer", "remove", "--kind", "cron", "--cron-file", str(cron)])
    assert result.exit_code == 0 and f"removed {cron}" in result.output and not cron.exists()
    result = runner.invoke(cli, ["timer", "remove", "--kind", "cron", "--cron-file", str(cron)])
    assert result.exit_code == 0 and "no certkit renewal schedule found" in result.output


def test_cron_percent_is_escaped() -> None:
    text = timer.cron_text(["/usr/bin/certkit", "--home", "/srv/50%", "renew"], random.Random(0))
    assert "/srv/50\\%" in text


def test_unwritable_place_fails_with_a_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "h"), "timer", "install", "--kind", "cron",
                                      "--cron-file", str(blocker / "certkit")])
    assert result.exit_code == 1
    assert "error: cannot write" in result.output and "crontab -e" in result.output


def test_windows_task_xml(tmp_path: Path) -> None:
    home = tmp_path / "Program Data" / "certkit"
    result = CliRunner().invoke(cli, ["--home", str(home), "timer", "install", "--kind", "windows"])
    assert result.exit_code == 0, result.output
    xml_path = home / "certkit-renew.xml"
    raw = xml_path.read_bytes()
    assert raw[:2] in (b"\xff\xfe", b"\xfe\xff")  # UTF-16 with BOM, as schtasks /XML expects
    root = ET.fromstring(raw.decode("utf-16").split("?>", 1)[1])
    assert root.find("t:Principals/t:Principal/t:UserId", TASK_NS).text == "S-1-5-18"  # SYSTEM
    triggers = root.findall("t:Triggers/t:CalendarTrigger", TASK_NS)
    assert [t.find("t:StartBoundary", TASK_NS).text[-8:] for t in triggers] == ["00:00:00", "12:00:00"]
    assert all(t.find("t:RandomDelay", TASK_NS).text == "PT12H" for t in triggers)
    assert root.find("t:Settings/t:StartWhenAvailable", TASK_NS).text == "true"
    args = root.find("t:Actions/t:Exec/t:Arguments", TASK_NS).text
    assert f'--home "{home.absolute()}" renew --jitter' in args
    assert f"schtasks /Create /XML \"{xml_path}\" /TN certkit-renew /F" in result.output
    result = CliRunner().invoke(cli, ["--home", str(home), "timer", "remove", "--kind", "windows"])
    assert result.exit_code == 0 and not xml_path.exists()


def test_program_is_absolute_and_runs(tmp_path: Path) -> None:
    argv = timer.renew_command(tmp_path, quiet=False)
    assert Path(argv[0]).is_absolute()
    proc = subprocess.run([*argv[: argv.index("--home")], "--version"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "certkit" in proc.stdout


def test_enable_steps_run_and_failures_are_reported(tmp_path: Path) -> None:
    p = timer.plan("systemd", tmp_path / "h", unit_dir=tmp_path / "u", program=["/usr/bin/certkit"])
    p.enable = [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", "certkit-renew.timer"]]
    ran: list[list[str]] = []
    lines = timer.install(p, run=lambda argv: (ran.append(list(argv)), (0, ""))[1])
    assert ran == p.enable and "ran systemctl enable --now certkit-renew.timer" in lines
    from certkit.errors import OperationError

    with pytest.raises(OperationError, match="exited with status 1"):
        timer.install(p, run=lambda argv: (1, "Failed to connect to bus"))


@pytest.mark.integration  # a second or more of real processes
def test_scheduled_commands_run_and_report_failure(tmp_path: Path) -> None:
    """Run the exact command each schedule holds: exit 1 and a FAILED line when a renewal fails."""
    from certkit.issuing import issue
    from certkit.settings import LineageSettings, PfxSettings
    from certkit.store import Store

    home = tmp_path / "home"
    store = Store(home)
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    issue(store, LineageSettings(name="ok.example", domains=["ok.example"], key_type="ec256", days=90),
          echo=lambda _: None)
    issue(store, LineageSettings(name="broken.example", domains=["broken.example"], key_type="ec256", days=1,
                                 pfx=PfxSettings(enabled=True, password_file=str(pw))), echo=lambda _: None)
    program = timer.certkit_program()
    cron_line = timer.cron_text(timer.renew_command(home, program, quiet=True)).splitlines()[-1]
    cron_cmd = cron_line.split(None, 6)[6]
    service, _ = timer.systemd_units(timer.renew_command(home, program))
    exec_start = next(ln for ln in service.splitlines() if ln.startswith("ExecStart=")).removeprefix("ExecStart=")
    env = {**{k: v for k, v in os.environ.items() if k != "CERTKIT_HOME"}, "CERTKIT_JITTER_MAX": "0"}
    # Nothing due: success, and cron's --quiet keeps the mailbox empty.
    proc = subprocess.run(["/bin/sh", "-c", cron_cmd], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stderr
    pw.unlink()
    with store.lock():  # make broken.example due now, as an interrupted earlier run would
        store.update_state("broken.example", renewing={"time": "2026-01-01T00:00:00Z", "from_version": 1})
    for argv in (shlex.split(cron_cmd), shlex.split(exec_start)):
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "FAILED    broken.example: cannot read the PFX password file" in proc.stdout
        assert "error: renewal failed for 1 of 2 lineage(s): broken.example" in proc.stderr
        assert "Traceback" not in proc.stderr
        with store.lock():
            store.update_state("broken.example", renewing={"time": "2026-01-01T00:00:00Z", "from_version": 1})


def test_default_kind_and_remove_everything(tmp_path: Path) -> None:
    expected = "systemd" if Path("/run/systemd/system").is_dir() else "cron"
    assert timer.default_kind() == expected
    units, cron = tmp_path / "units", tmp_path / "cron.d" / "certkit"
    runner = CliRunner()
    home = ["--home", str(tmp_path / "h")]
    assert runner.invoke(cli, [*home, "timer", "install", "--kind", "systemd", "--unit-dir", str(units)]).exit_code == 0
    assert runner.invoke(cli, [*home, "timer", "install", "--kind", "cron", "--cron-file", str(cron)]).exit_code == 0
    result = runner.invoke(cli, [*home, "timer", "remove", "--unit-dir", str(units), "--cron-file", str(cron)])
    assert result.exit_code == 0, result.output
    assert "removed" in result.output and not cron.exists() and list(units.iterdir()) == []
    result = runner.invoke(cli, ["timer", "install", "--kind", "launchd"])
    assert result.exit_code == 2 and "launchd" in result.output


def test_place_flags_pick_the_kind_and_never_write_elsewhere(tmp_path: Path) -> None:
    """--unit-dir without --kind installs systemd units there (it once wrote /etc/cron.d instead)."""
    runner = CliRunner()
    home = ["--home", str(tmp_path / "h")]
    units = tmp_path / "units"
    result = runner.invoke(cli, [*home, "timer", "install", "--unit-dir", str(units), "--print"])
    assert result.exit_code == 0, result.output
    assert "[Timer]" in result.output and "cron" not in result.output
    cron = tmp_path / "certkit.cron"
    result = runner.invoke(cli, [*home, "timer", "install", "--cron-file", str(cron)])
    assert result.exit_code == 0, result.output
    assert "renew --jitter" in cron.read_text()
    for argv in (["--kind", "cron", "--unit-dir", str(units)], ["--kind", "systemd", "--cron-file", str(cron)],
                 ["--unit-dir", str(units), "--cron-file", str(cron)]):
        result = runner.invoke(cli, [*home, "timer", "install", *argv])
        assert result.exit_code == 2 and "error:" in result.output, argv
    assert not units.exists()
