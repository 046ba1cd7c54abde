"""The one place certkit starts other programs.

Every subprocess (deploy hooks, postconf, update-ca-certificates, PowerShell)
goes through :func:`run`: an argv list (never a shell string), an explicit
environment built from a copy of ``os.environ`` (certkit's own environment is
never modified), a timeout, and captured output that error messages can show.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from certkit import envvars, journal
from certkit.errors import CertkitError, HookError, OperationError, UsageError

_log = journal.logger()

DEFAULT_TIMEOUT = 120.0
# certkit's own secret inputs: no child (hook, postconf, PowerShell) ever inherits them;
# the PFX password reaches hooks only as CERTKIT_PFX_PASSWORD_FILE.
SECRET_ENV = envvars.SECRET_ENV
# A hook's output kept in memory for the error message: the last lines, each cut short.
TAIL_LINES = 50
TAIL_LINE_CHARS = 2000
# Lines echoed live (prefixed) before certkit stops echoing a chatty hook.
ECHO_LINES = 200
_CHUNK = 64 * 1024
# CSI / OSC / other ESC sequences, then any control character except tab.
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_]?)|\x9b[0-?]*[ -/]*[@-~]")
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def clean_line(text: str) -> str:
    """``text`` safe to echo: terminal escape sequences and control characters removed
    (a hook must not be able to clear the screen or rewrite earlier lines)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def clean_line_block(text: str) -> str:
    """:func:`clean_line` for each line of ``text``."""
    return "\n".join(clean_line(line) for line in text.splitlines())


@dataclass(frozen=True)
class Result:
    """What a finished command left behind."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def output_tail(self, lines: int = 20) -> str:
        """The last lines of stdout+stderr, for an error message."""
        text = (self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr).strip()
        return "\n".join(text.splitlines()[-lines:])


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of certkit's environment plus ``extra``, minus certkit's secrets (os.environ untouched).

    The one place child environments are built: :func:`run` also passes any
    ``env`` it is given through :func:`scrub`, so no caller can leak a secret.
    """
    env = dict(os.environ)
    if extra:
        env.update(extra)
    return scrub(env)


def scrub(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without certkit's secret variables."""
    return {k: v for k, v in env.items() if k not in SECRET_ENV}


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    cwd: str | None = None,
    input_text: str | None = None,
    check: bool = False,
    what: str | None = None,
    hook: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> Result:
    """Run ``argv`` and capture its output.

    Args:
        argv: program and arguments; no shell is involved.
        env: the complete child environment (default: a copy of certkit's).
        timeout: seconds before the child is killed and HookError raised.
        cwd: working directory for the child.
        input_text: text fed on stdin (secrets go here, never on argv).
        check: raise HookError when the exit status is not 0.
        what: a short label for messages ("deploy hook postfix").
        hook: run it like a deploy hook: output through temp files instead of
            pipes (a daemon the hook starts in the background keeps its stdout
            open, and pipes would make certkit wait for that daemon), in its
            own process group that is killed as a whole on timeout. Only a
            bounded tail of its output is kept (a hook may print gigabytes).
        on_line: with ``hook``: called with each output line as it arrives,
            escape sequences stripped (at most ECHO_LINES lines).

    Raises:
        HookError: timeout, or non-zero exit with ``check``.
        OperationError: the program could not be started.
    """
    label = what or argv[0]
    started = time.monotonic()
    try:
        result = _run_once(argv, env, timeout, cwd, input_text, label, hook, on_line)
    except CertkitError as exc:
        _log.debug("ran %s (%s): %s", label, shlex.join(argv), exc.message)
        raise
    _log.debug("ran %s (%s): exit %d in %.2f s", label, shlex.join(argv), result.returncode,
               time.monotonic() - started)
    return _checked(result, label) if check else result


def _run_once(argv: Sequence[str], env: Mapping[str, str] | None, timeout: float, cwd: str | None,
              input_text: str | None, label: str, hook: bool, on_line: Callable[[str], None] | None) -> Result:
    if hook:
        return _run_spooled(argv, child_env() if env is None else scrub(env), timeout, cwd, input_text,
                            label, on_line)
    try:
        proc = subprocess.run(
            list(argv),
            env=child_env() if env is None else scrub(env),
            cwd=cwd,
            input=input_text,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=None if input_text is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise HookError(
            f"{label} did not finish within {timeout:g} s and was stopped",
            "make it faster or raise the timeout",
        ) from exc
    except OSError as exc:
        raise _start_error(argv[0], exc) from exc
    return Result(tuple(argv), proc.returncode, proc.stdout or "", proc.stderr or "")


def _start_error(program: str, exc: OSError) -> OperationError:
    """Why ``program`` could not be started, in words that point at the fix."""
    import errno

    if exc.errno == errno.ENOENT and os.path.isfile(program):
        # The file is there: the kernel could not find the interpreter its #! line names.
        return OperationError(f"cannot run {program}: the interpreter on its #! line does not exist",
                              "fix its first line, e.g. #!/bin/sh")
    if exc.errno == errno.ENOEXEC:
        return OperationError(f"cannot run {program}: it is not a program and has no #! line",
                              "add a first line such as #!/bin/sh")
    return OperationError(f"cannot run {program}: {exc.strerror or exc}", "check that it exists and is executable")


def hook_timeout() -> float:
    """Seconds any user hook may run (deploy, dns-01, pre/post): env ``CERTKIT_HOOK_TIMEOUT``, else 120."""
    return envvars.seconds(envvars.HOOK_TIMEOUT, DEFAULT_TIMEOUT)


def command_argv(command: str, option: str) -> list[str]:
    """A user's command string as argv (shell-like quoting, never run through a shell); exit 2 if unusable."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"{option} {command!r} cannot be parsed: {exc}", "check the quotes") from None
    if not argv:
        raise UsageError(f"{option} is empty", f"pass the command to run for {option}")
    return argv


def failure_message(label: str, returncode: int, output: str, prefix: str = "") -> str:
    """``LABEL exited with status N`` and the cleaned end of its output: one shape for every failed program."""
    tail = "\n".join(prefix + line for line in clean_line_block(output).splitlines())
    return f"{label} exited with status {returncode}" + (f":\n{tail}" if tail else "")


def _checked(result: Result, label: str) -> Result:
    """``result``, or HookError with its output's tail when it failed (``check=True``)."""
    if not result.ok:
        raise HookError(failure_message(label, result.returncode, result.output_tail()),
                        "fix the command above and run again")
    return result


class _Tail:
    """Reads a spool file as it grows: echoes lines, keeps only the last ones in memory."""

    def __init__(self, fd: int, on_line: Callable[[str], None] | None) -> None:
        self.fd, self.on_line = fd, on_line
        self.offset = 0
        self.partial = b""
        self.lines: deque[str] = deque(maxlen=TAIL_LINES)
        self.echoed = 0
        self.dropped = 0

    def poll(self) -> None:
        while True:
            chunk = os.pread(self.fd, _CHUNK, self.offset)
            if not chunk:
                return
            self.offset += len(chunk)
            *complete, rest = (self.partial + chunk).split(b"\n")
            # An endless line must not grow without bound either: keep its start only.
            self.partial = rest[: TAIL_LINE_CHARS * 4]
            for raw in complete:
                self._line(raw)

    def finish(self) -> str:
        self.poll()
        if self.partial:
            self._line(self.partial)
            self.partial = b""
        if self.on_line and self.dropped:
            self.on_line(f"... {self.dropped} more line(s) not shown")
        return "\n".join(self.lines)

    def _line(self, raw: bytes) -> None:
        line = clean_line(raw.decode(errors="replace").rstrip("\r"))[:TAIL_LINE_CHARS]
        self.lines.append(line)
        if self.on_line:
            if self.echoed < ECHO_LINES:
                self.echoed += 1
                self.on_line(line)
            else:
                self.dropped += 1


def _run_spooled(
    argv: Sequence[str],
    env: Mapping[str, str],
    timeout: float,
    cwd: str | None,
    input_text: str | None,
    label: str,
    on_line: Callable[[str], None] | None = None,
) -> Result:
    """``run(hook=True)``: wait for the process itself, not for EOF on its output."""
    import tempfile
    import time

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=os.name != "nt",
            )
        except OSError as exc:
            raise _start_error(argv[0], exc) from exc
        tails = (_Tail(out.fileno(), on_line), _Tail(err.fileno(), on_line))
        deadline = time.monotonic() + timeout
        try:
            if input_text is not None and proc.stdin is not None:
                try:
                    proc.stdin.write(input_text.encode())
                    proc.stdin.close()
                except BrokenPipeError:
                    pass  # the hook did not read its input; its exit status tells
            # Read the spool files while the hook runs: memory stays at the tail, output streams.
            while True:
                try:
                    proc.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    for tail in tails:
                        tail.poll()
                    if time.monotonic() > deadline:
                        raise
        except subprocess.TimeoutExpired as exc:
            _kill_group(proc)
            raise HookError(
                f"{label} did not finish within {timeout:g} s and was stopped",
                "make it faster or raise the timeout",
            ) from exc
        except BaseException:
            _kill_group(proc)  # Ctrl-C: the hook has its own session and would not get the signal
            raise
        return Result(tuple(argv), proc.returncode, tails[0].finish(), tails[1].finish())


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the process and everything it started (its session/process group on POSIX)."""
    if os.name != "nt":
        import signal

        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    else:  # pragma: no cover - Windows
        proc.kill()
    proc.wait()
