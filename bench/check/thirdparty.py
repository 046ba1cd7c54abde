"""`certkit check` vs `openssl s_client -starttls smtp` vs `testssl.sh -p -S -s` on one Dovecot submission.

Usage (root; Debian dovecot-core, dovecot-submissiond, openssl, testssl.sh):

    python bench/check/thirdparty.py --runs 3

Starts the test suite's private Dovecot submission (tests/servers/
dovecot_submission.py) on 127.0.0.2 with a root/intermediate/leaf chain,
then runs the three tools alternately, each as a fresh process, and prints
the wall times and medians. certkit's figure includes Python's start-up;
its JSON ``elapsed_ms`` (the audit alone) is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.servers import dovecot_submission as dovecot  # noqa: E402
from tests.servers.chain_pki import NAME, make_chain  # noqa: E402


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, input="", capture_output=True, text=True, env=env, timeout=300)
    return time.perf_counter() - start, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="certkit-bench-", dir="/tmp"))
    base.chmod(0o755)  # Dovecot's unprivileged processes traverse it
    pki = make_chain(base / "pki")
    server = dovecot.start_dovecot_submission(base / "dovecot", pki.fullchain, pki.leaf_key)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    tools = {
        "certkit check": [sys.executable, "-m", "certkit", "check", server.url, "--name", NAME, "--cafile",
                          str(pki.root), "--json"],
        "openssl s_client": ["openssl", "s_client", "-starttls", "smtp", "-connect", server.address, "-servername",
                             NAME, "-CAfile", str(pki.root), "-verify_return_error"],
        "testssl -p -S -s": ["testssl", "-t", "smtp", "-p", "-S", "-s", "--nodns", "none", "--add-ca",
                             str(pki.root), "--color", "0", server.address],
    }
    walls: dict[str, list[float]] = {name: [] for name in tools}
    audit_ms: list[int] = []
    try:
        for _ in range(args.runs):
            for name, argv in tools.items():
                wall, out = timed(argv, env)
                walls[name].append(wall)
                if name == "certkit check":
                    audit_ms.append(int(json.loads(out)["elapsed_ms"]))
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    for name, times in walls.items():
        print(f"{name:18} median {statistics.median(times):8.3f} s  runs {[round(t, 3) for t in times]}")
    print(f"certkit elapsed_ms (audit only): median {statistics.median(audit_ms)}  runs {audit_ms}")


if __name__ == "__main__":
    main()
