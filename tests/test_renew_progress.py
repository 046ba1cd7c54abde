"""`certkit renew` over several lineages: a status line on a terminal that leaves clean output behind."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit, pytest.mark.skipif(os.name == "nt", reason="a POSIX pty")]

ROOT = Path(__file__).resolve().parents[1]


def renew_with_stderr_on_a_terminal(home: Path) -> tuple[int, bytes, bytes]:
    import pty

    main, child = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CERTKIT_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "renew", "--force"], stdout=subprocess.PIPE,
                            stderr=child, env=env, close_fds=True)
    os.close(child)
    out, _ = proc.communicate(timeout=120)
    err = b""
    while select.select([main], [], [], 0.5)[0]:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        err += chunk
    os.close(main)
    return proc.returncode, out, err


def test_the_status_line_counts_lineages_and_is_erased(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CERTKIT_HOME": str(home)}
    for name in ("a.example.org", "b.example.org", "c.example.org"):
        subprocess.run([sys.executable, "-m", "certkit", "issue", "--cn", name], env=env, check=True,
                       capture_output=True)
    code, out, err = renew_with_stderr_on_a_terminal(home)
    assert code == 0, err
    assert b"\r\x1b[K[renew: 1 of 3 done, 0 failed]" in err and b"\r\x1b[K[renew: 2 of 3 done, 0 failed]" in err
    assert err.rstrip(b"\r\n").endswith(b"\r\x1b[K")  # nothing of it is left on the screen
    summary = out.decode().splitlines()
    assert [line.split()[:2] for line in summary[:3]] == [["renewed", "a.example.org:"], ["renewed", "b.example.org:"],
                                                         ["renewed", "c.example.org:"]]
    assert b"[renew:" not in out
    piped = subprocess.run([sys.executable, "-m", "certkit", "renew", "--force"], env=env, capture_output=True)
    assert piped.returncode == 0 and b"[renew:" not in piped.stdout + piped.stderr  # no status line off a terminal
