"""Worst-case wall time of `certkit check` against hostile servers (issue 10 item 11).

    python bench/check_hostile.py [--code DIR] [--delay 9] [--fleet 20] [--concurrency 10] [--only NAME]

Scenarios (servers: tests/servers/slow.py, each in its own process):

1. ``slow``: one server that answers the banner and every reply ``--delay``
   seconds late (STARTTLS and TLS included); `certkit check` with default
   options, then with ``--deadline 10``.
2. ``fleet``: ``--fleet`` servers that accept STARTTLS and then never speak TLS,
   checked with ``--targets --concurrency C`` (default options, then
   ``--deadline 10``).

``--code DIR`` runs the certkit source tree in DIR (e.g. an export of main,
for a before/after pair); the servers always come from this tree. Options a
tree does not know (``--deadline`` on an old tree) are reported as such.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers.slow import slow_servers  # noqa: E402
from tests.servers.zoo import NAME, ZooPki  # noqa: E402


def run_check(code: Path, args: list[str]) -> tuple[float, int, str]:
    """(seconds, exit code, last stderr line) of one `python -m certkit check` run from ``code``."""
    env = dict(os.environ, PYTHONPATH=str(code))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "certkit", "check", *args], capture_output=True, text=True,
                          env=env, cwd=str(code), stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    tail = (proc.stderr.strip().splitlines() or [""])[-1]
    return elapsed, proc.returncode, tail[:160]


def show(label: str, result: tuple[float, int, str]) -> None:
    elapsed, code, tail = result
    print(f"{label:<48} {elapsed:7.1f} s  exit {code}  {tail}", flush=True)


def slow_scenario(code: Path, pki: ZooPki, delay: float) -> None:
    leaf = pki.leaf("hostile", key="rsa2048")
    with slow_servers(delay=delay, cert=leaf.cert, key=leaf.key) as ports:
        url = f"submission://127.0.0.1:{ports[0]}"
        base = [url, "--cafile", str(pki.ca_file), "--name", NAME, "--no-transcript"]
        show(f"slow server ({delay:g} s a reply), default options", run_check(code, base))
        show(f"slow server ({delay:g} s a reply), --deadline 10", run_check(code, [*base, "--deadline", "10"]))


def fleet_scenario(code: Path, pki: ZooPki, count: int, concurrency: int, workdir: Path) -> None:
    with slow_servers(count, stall_tls=True) as ports:
        targets = workdir / "targets.txt"
        targets.write_text("".join(f"submission://127.0.0.1:{p}\n" for p in ports))
        base = ["--targets", str(targets), "--concurrency", str(concurrency), "--cafile", str(pki.ca_file),
                "--json"]
        label = f"fleet of {count} stalled-TLS targets, --concurrency {concurrency}"
        show(f"{label}, default", run_check(code, base))
        show(f"{label}, --deadline 10", run_check(code, [*base, "--deadline", "10"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", type=Path, default=ROOT, help="certkit source tree to run (default: this one)")
    parser.add_argument("--delay", type=float, default=9.0)
    parser.add_argument("--fleet", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--only", choices=("slow", "fleet"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="certkit-hostile-") as tmp:
        pki = ZooPki(Path(tmp) / "pki")
        print(f"certkit from {args.code.resolve()}")
        if args.only in (None, "slow"):
            slow_scenario(args.code.resolve(), pki, args.delay)
        if args.only in (None, "fleet"):
            fleet_scenario(args.code.resolve(), pki, args.fleet, args.concurrency, Path(tmp))


if __name__ == "__main__":
    main()
