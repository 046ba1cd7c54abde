"""The one place certkit starts other programs.

Every subprocess (deploy hooks, postconf, update-ca-certificates, PowerShell)
goes through :func:`run`: an argv list (never a shell string), an explicit
environment built from a copy of ``os.environ`` (certkit's own environment is
never modified), a timeout, and captured output that error messages can show.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from certkit.errors import HookError, OperationError

DEFAULT_TIMEOUT = 120.0


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
    """A copy of certkit's environment plus ``extra`` (os.environ untouched)."""
    env = dict(os.environ)
    if extra:
        env.update(extra)
    return env


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
            own process group that is killed as a whole on timeout.

    Raises:
        HookError: timeout, or non-zero exit with ``check``.
        OperationError: the program could not be started.
    """
    label = what or argv[0]
    if hook:
        result = _run_spooled(argv, env, timeout, cwd, input_text, label)
        return _checked(result, label) if check else result
    try:
        proc = subprocess.run(
            list(argv),
            env=dict(env) if env is not None else child_env(),
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
    result = Result(tuple(argv), proc.returncode, proc.stdout or "", proc.stderr or "")
    return _checked(result, label) if check else result


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


def _checked(result: Result, label: str) -> Result:
    """``result``, or HookError with its output's tail when it failed (``check=True``)."""
    if not result.ok:
        tail = result.output_tail()
        raise HookError(f"{label} exited with status {result.returncode}" + (f":\n{tail}" if tail else ""),
                        "fix the command above and run again")
    return result


def _run_spooled(
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    timeout: float,
    cwd: str | None,
    input_text: str | None,
    label: str,
) -> Result:
    """``run(hook=True)``: wait for the process itself, not for EOF on its output."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                list(argv),
                env=dict(env) if env is not None else child_env(),
                cwd=cwd,
                stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=os.name != "nt",
            )
        except OSError as exc:
            raise _start_error(argv[0], exc) from exc
        try:
            proc.communicate(input_text.encode() if input_text is not None else None, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            _kill_group(proc)
            raise HookError(
                f"{label} did not finish within {timeout:g} s and was stopped",
                "make it faster or raise the timeout",
            ) from exc
        except BaseException:
            _kill_group(proc)  # Ctrl-C: the hook has its own session and would not get the signal
            raise
        out.seek(0)
        err.seek(0)
        return Result(tuple(argv), proc.returncode, out.read().decode(errors="replace"),
                      err.read().decode(errors="replace"))


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
