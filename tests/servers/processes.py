"""Child processes in the fixtures: stop a group of them, run one with its stderr on a terminal."""

from __future__ import annotations

import os
import select
import subprocess
from collections.abc import Mapping, Sequence


def stop_all(procs: list[subprocess.Popen[bytes]] | list[subprocess.Popen[str]]) -> None:
    """Terminate every process still running, kill those that ignore it for 5 s; empties ``procs``."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    procs.clear()


def run_with_stderr_on_a_terminal(argv: Sequence[str], env: Mapping[str, str] | None = None,
                                  timeout: float = 120) -> tuple[int, bytes, bytes]:
    """Run ``argv`` with stdout on a pipe and stderr on a pseudo-terminal: (exit status, stdout, stderr)."""
    import pty

    main, child = pty.openpty()
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=child, env=dict(env) if env else None,
                            close_fds=True)
    os.close(child)
    out, _ = proc.communicate(timeout=timeout)
    err = b""
    while select.select([main], [], [], 0.5)[0]:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the terminal's other side has closed
            break
        if not chunk:
            break
        err += chunk
    os.close(main)
    return proc.returncode, out, err
