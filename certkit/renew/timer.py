"""Schedules for `certkit renew --jitter`: systemd units, a cron.d line, a Windows task.

Everything is built in memory first (:func:`plan`): ``timer install --print``
shows exactly what ``timer install`` would write and run. Each schedule runs
twice a day with a random delay, as certbot's packaged timers do, so the
world's certkit installations do not all call their CA at the same minute,
and each bakes in the absolute certkit program and the state directory in
use, because a timer runs with a bare environment (no CERTKIT_HOME, a short
PATH).
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from certkit import fsguard, runner
from certkit.errors import OperationError, UsageError

KINDS = ("systemd", "cron", "windows")
UNIT = "certkit-renew"
TASK_NAME = "certkit-renew"
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_CRON_FILE = Path("/etc/cron.d/certkit")
RANDOM_DELAY_S = 43200  # 12 h, as Debian's certbot.timer: spreads load on the CA over the day
RUN_TIMEOUT_S = 3600  # a hung hook must not keep the oneshot unit "activating" forever

Runner = Callable[[Sequence[str]], "tuple[int, str]"]


@dataclass(frozen=True)
class PlannedFile:
    """A file the schedule consists of."""

    path: Path
    content: bytes
    mode: int = 0o644


@dataclass
class TimerPlan:
    """What `timer install` writes and runs for one kind."""

    kind: str
    command: list[str]
    files: list[PlannedFile] = field(default_factory=list)
    enable: list[list[str]] = field(default_factory=list)  # run after writing, when they can work here
    manual: list[str] = field(default_factory=list)  # what the user runs when certkit cannot


def default_kind() -> str:
    """windows on Windows; systemd when it is the running init (``/run/systemd/system``); else cron."""
    if os.name == "nt":
        return "windows"
    return "systemd" if Path("/run/systemd/system").is_dir() else "cron"


def certkit_program() -> list[str]:
    """The absolute argv prefix that starts this certkit.

    The console script when certkit was started through it (``sys.argv[0]``)
    or found on PATH; otherwise this interpreter with ``-m certkit``.
    """
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name.lower().startswith("certkit") and argv0.suffix.lower() in ("", ".exe"):
        resolved = Path(shutil.which(str(argv0)) or argv0).absolute()
        if resolved.is_file():
            return [str(resolved)]
    found = shutil.which("certkit")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "certkit"]


def renew_command(home: Path, program: Sequence[str] | None = None, quiet: bool = False) -> list[str]:
    """``certkit --home HOME renew --jitter`` with absolute paths."""
    # Every argument lands in a unit file or cron line: a newline would add a line of its own.
    folder = fsguard.reject_control_chars(str(Path(home).absolute()), "--home")
    prog = [fsguard.reject_control_chars(arg, "certkit's program path") for arg in (program or certkit_program())]
    argv = [*prog, "--home", folder, "renew", "--jitter"]
    return [*argv, "--quiet"] if quiet else argv


# ----- systemd -----------------------------------------------------------------

def _systemd_quote(arg: str) -> str:
    # systemd.service(5) "Command lines": specifiers start with %, variables with $;
    # quote words holding whitespace or quotes, C-style escapes inside.
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not any(c in arg for c in " \t\"'\\;"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_units(command: Sequence[str]) -> tuple[str, str]:
    """The text of ``certkit-renew.service`` and ``certkit-renew.timer``."""
    exec_start = " ".join(_systemd_quote(a) for a in command)
    service = f"""\
# Written by `certkit timer install`; remove with `certkit timer remove`.
[Unit]
Description=certkit: renew due certificates, deploy and verify them
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
# A failed renewal exits 1: the unit shows "failed" and the journal holds the line saying why.
ExecStart={exec_start}
TimeoutStartSec={RUN_TIMEOUT_S}
"""
    timer = f"""\
# Written by `certkit timer install`; remove with `certkit timer remove`.
[Unit]
Description=certkit: renew certificates twice a day

[Timer]
OnCalendar=*-*-* 00,12:00:00
RandomizedDelaySec={RANDOM_DELAY_S}
# Run at boot when a scheduled run was missed while the machine was off.
Persistent=true

[Install]
WantedBy=timers.target
"""
    return service, timer


# ----- cron ----------------------------------------------------------------------

def cron_text(command: Sequence[str], rng: random.Random | None = None) -> str:
    """An /etc/cron.d file: twice a day at a minute and hours picked at install time."""
    rng = rng or random.Random()
    minute, hour = rng.randrange(60), rng.randrange(12)
    # crontab(5): an unescaped % ends the command; cron runs /bin/sh, so shell-quote every word.
    line = " ".join(shlex.quote(a) for a in command).replace("%", "\\%")
    return (
        "# Written by `certkit timer install`; remove with `certkit timer remove`.\n"
        "# Renews due certificates twice a day; cron mails any output (renewals and failures only).\n"
        "SHELL=/bin/sh\n"
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        f"{minute} {hour},{hour + 12} * * * root {line}\n"
    )


# ----- Windows Task Scheduler ------------------------------------------------------

def _xml_escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def windows_task_xml(command: Sequence[str]) -> str:
    """A Task Scheduler 1.2 task: SYSTEM, twice a day, random delay, catch up when missed."""
    program, arguments = command[0], subprocess.list2cmdline(list(command[1:]))
    delay = f"PT{RANDOM_DELAY_S // 3600}H"
    triggers = "".join(
        f"""
    <CalendarTrigger>
      <StartBoundary>2026-01-01T{hour:02d}:00:00</StartBoundary>
      <Enabled>true</Enabled>
      <RandomDelay>{delay}</RandomDelay>
      <ScheduleByDay><DaysInterval>1</DaysInterval></ScheduleByDay>
    </CalendarTrigger>"""
        for hour in (0, 12)
    )
    return f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>certkit: renew due certificates twice a day (certkit timer install)</Description>
    <URI>\\{TASK_NAME}</URI>
  </RegistrationInfo>
  <Triggers>{triggers}
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>S-1-5-18</UserId>
      <RunLevel>HighestAvailable</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <StartWhenAvailable>true</StartWhenAvailable>
    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>
    <ExecutionTimeLimit>PT{RUN_TIMEOUT_S // 3600}H</ExecutionTimeLimit>
    <Enabled>true</Enabled>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{_xml_escape(program)}</Command>
      <Arguments>{_xml_escape(arguments)}</Arguments>
    </Exec>
  </Actions>
</Task>
"""


def schtasks_create(xml_path: Path) -> list[str]:
    """The schtasks command that registers the task from its XML (replacing an older one)."""
    return ["schtasks", "/Create", "/XML", str(xml_path), "/TN", TASK_NAME, "/F"]


# ----- plans ---------------------------------------------------------------------

def _systemd_running() -> bool:
    return os.name != "nt" and Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def plan(
    kind: str,
    home: Path,
    *,
    unit_dir: Path | None = None,
    cron_file: Path | None = None,
    program: Sequence[str] | None = None,
    rng: random.Random | None = None,
) -> TimerPlan:
    """Everything `timer install --kind KIND` would write and run.

    Raises:
        UsageError: an unknown kind.
    """
    if kind not in KINDS:
        raise UsageError(f"unknown timer kind {kind!r}", "use systemd, cron or windows")
    if kind == "systemd":
        command = renew_command(home, program)
        service, timer = systemd_units(command)
        folder = Path(unit_dir or DEFAULT_UNIT_DIR).absolute()
        out = TimerPlan(kind, command, [PlannedFile(folder / f"{UNIT}.service", service.encode()),
                                        PlannedFile(folder / f"{UNIT}.timer", timer.encode())])
        steps = [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", f"{UNIT}.timer"]]
        if _systemd_running() and folder == DEFAULT_UNIT_DIR:
            out.enable = steps
        else:
            out.manual = [" ".join(s) for s in steps]
            if folder != DEFAULT_UNIT_DIR:
                out.manual.insert(0, f"link or copy the two units into {DEFAULT_UNIT_DIR} (or another unit directory)")
        return out
    if kind == "cron":
        command = renew_command(home, program, quiet=True)
        path = Path(cron_file or DEFAULT_CRON_FILE).absolute()
        return TimerPlan(kind, command, [PlannedFile(path, cron_text(command, rng).encode())])
    command = renew_command(home, program)
    folder = Path(unit_dir).absolute() if unit_dir else Path(home).absolute()
    xml_path = folder / f"{TASK_NAME}.xml"
    out = TimerPlan(kind, command, [PlannedFile(xml_path, windows_task_xml(command).encode("utf-16"))])
    create = schtasks_create(xml_path)
    if os.name == "nt":
        out.enable = [create]
    else:
        out.manual = ["on the Windows server, as Administrator: " + subprocess.list2cmdline(create)]
    return out


def show(p: TimerPlan) -> str:
    """The human text of a plan (`--print`)."""
    parts = []
    for f in p.files:
        text = f.content.decode("utf-16") if p.kind == "windows" else f.content.decode()
        parts.append(f"# ---- {f.path}\n{text.rstrip()}\n")
    for step in p.enable:
        parts.append(f"# then run: {subprocess.list2cmdline(step) if p.kind == 'windows' else shlex.join(step)}")
    for note in p.manual:
        parts.append(f"# then: {note}")
    return "\n".join(parts)


def _default_runner(argv: Sequence[str]) -> tuple[int, str]:
    result = runner.run(list(argv), timeout=60, what=argv[0])
    return result.returncode, result.output_tail(5)


def install(p: TimerPlan, run: Runner = _default_runner) -> list[str]:
    """Write the plan's files and run its enable steps; returns lines for the user.

    Raises:
        OperationError: a file cannot be written (usually: not root) or an
            enable step fails.
    """
    from certkit.atomicfile import atomic_write

    lines: list[str] = []
    for f in p.files:
        try:
            f.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(f.path, f.content, f.mode)
        except OSError as exc:
            hint = "run it as root (or Administrator), or choose another place with --unit-dir"
            if p.kind == "cron":
                hint = ("run it as root, or add the line from `certkit timer install --kind cron --print` "
                        "without its `root` field to your own `crontab -e`")
            raise OperationError(f"cannot write {f.path}: {exc.strerror or exc}", hint) from exc
        lines.append(f"wrote {f.path}")
    for step in p.enable:
        code, output = run(step)
        if code != 0:
            raise OperationError(runner.failure_message(" ".join(step), code, output),
                                 f"the files are in place; fix the cause and run `{' '.join(step)}`")
        lines.append(f"ran {' '.join(step)}")
    lines.extend(f"to finish: {note}" for note in p.manual)
    return lines


def remove(
    *,
    kind: str | None = None,
    unit_dir: Path | None = None,
    cron_file: Path | None = None,
    home: Path | None = None,
    run: Runner = _default_runner,
) -> list[str]:
    """Disable and delete whatever schedule `timer install` made (every kind, unless ``kind``)."""
    lines: list[str] = []
    kinds = [kind] if kind else list(KINDS)
    if "systemd" in kinds:
        folder = Path(unit_dir or DEFAULT_UNIT_DIR).absolute()
        files = [folder / f"{UNIT}.timer", folder / f"{UNIT}.service"]
        if any(f.exists() for f in files):
            if _systemd_running() and folder == DEFAULT_UNIT_DIR:
                run(["systemctl", "disable", "--now", f"{UNIT}.timer"])
            lines += _delete(files)
            if _systemd_running() and folder == DEFAULT_UNIT_DIR:
                run(["systemctl", "daemon-reload"])
    if "cron" in kinds:
        lines += _delete([Path(cron_file or DEFAULT_CRON_FILE).absolute()])
    if "windows" in kinds:
        xml_dir = Path(unit_dir).absolute() if unit_dir else (Path(home).absolute() if home else None)
        if os.name == "nt":
            code, _ = run(["schtasks", "/Delete", "/TN", TASK_NAME, "/F"])
            if code == 0:
                lines.append(f"removed the scheduled task {TASK_NAME}")
        if xml_dir is not None:
            lines += _delete([xml_dir / f"{TASK_NAME}.xml"])
    return lines


def _delete(paths: list[Path]) -> list[str]:
    lines = []
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise OperationError(f"cannot remove {path}: {exc.strerror or exc}",
                                 "run it as root (or Administrator)") from exc
        lines.append(f"removed {path}")
    return lines
