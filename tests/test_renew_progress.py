"""`certkit renew` over several lineages: a status line on a terminal that leaves clean output behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.processes import run_with_stderr_on_a_terminal

pytestmark = [pytest.mark.unit, pytest.mark.skipif(os.name == "nt", reason="a POSIX pty")]

ROOT = Path(__file__).resolve().parents[1]


def test_the_status_line_counts_lineages_and_is_erased(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CERTKIT_HOME": str(home)}
    for name in ("a.example.org", "b.example.org", "c.example.org"):
        subprocess.run([sys.executable, "-m", "certkit", "issue", "--cn", name], env=env, check=True,
                       capture_output=True)
    code, out, err = run_with_stderr_on_a_terminal([sys.executable, "-m", "certkit", "renew", "--force"], env)
    assert code == 0, err
    assert b"\r\x1b[K[renew: 1 of 3 done, 0 failed]" in err and b"\r\x1b[K[renew: 2 of 3 done, 0 failed]" in err
    assert err.rstrip(b"\r\n").endswith(b"\r\x1b[K")  # nothing of it is left on the screen
    summary = out.decode().splitlines()
    assert [line.split()[:2] for line in summary[:3]] == [["renewed", "a.example.org:"], ["renewed", "b.example.org:"],
                                                         ["renewed", "c.example.org:"]]
    assert b"[renew:" not in out
    piped = subprocess.run([sys.executable, "-m", "certkit", "renew", "--force"], env=env, capture_output=True)
    assert piped.returncode == 0 and b"[renew:" not in piped.stdout + piped.stderr  # no status line off a terminal
