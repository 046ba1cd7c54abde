"""What the issue 11 coverage probes cost one full `certkit check`: connections and wall time, before/after.

    python bench/check/coverage.py [--runs 3] [--before-rev REV] [--no-postfix]

"before" is the certkit package at REV (default: the merge base with main),
extracted with `git archive` into a temporary folder; "after" is this
working tree. Both run as `python -m certkit check URL --json` against the
same servers, alternating: an aiosmtpd server (zoo leaf, TLS 1.2 + 1.3)
and, when it can start, the test suite's private Postfix with STARTTLS on
its port-25 service. Connections are counted by a loopback TCP relay in
front of each server (one extra run each, not timed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from certkit.check.target import parse_target  # noqa: E402
from certkit.check.tlsfacts import CoverageProbe  # noqa: E402
from tests.servers.net import accept_in_threads, pipe  # noqa: E402
from tests.servers.zoo import NAME, ZooPki, aiosmtpd_server, server_context  # noqa: E402


def extract(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "certkit"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


@contextlib.contextmanager
def counting_relay(port: int) -> Iterator[tuple[int, list[int]]]:
    """A TCP relay to 127.0.0.1:port; yields (relay port, [connections accepted])."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    count = [0]

    def relay(client: socket.socket) -> None:
        count[0] += 1
        upstream = socket.create_connection(("127.0.0.1", port))
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)

    accept_in_threads(listener, relay)
    try:
        yield int(listener.getsockname()[1]), count
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()


def run_check(tree: Path, url: str, cafile: Path) -> tuple[float, int]:
    """(wall seconds of the process, the report's elapsed_ms)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "certkit", "check", url, "--cafile", str(cafile), "--name", NAME,
                           "--json", "--timeout", "5"], capture_output=True, env=env, timeout=120, cwd=tree)
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"check failed ({proc.returncode}): {proc.stderr.decode()[-800:]}")
    return wall, int(json.loads(proc.stdout)["elapsed_ms"])


def measure(label: str, scheme: str, port: int, trees: dict[str, Path], cafile: Path, runs: int) -> None:
    for name, tree in trees.items():
        with counting_relay(port) as (relay, count):
            run_check(tree, f"{scheme}://127.0.0.1:{relay}", cafile)
            time.sleep(0.2)  # let the last probe's connection be accepted and counted
        print(f"{label:9} {name:6} connections: {count[0]}")
    samples: dict[str, list[tuple[float, int]]] = {name: [] for name in trees}
    for _ in range(runs):
        for name, tree in trees.items():
            samples[name].append(run_check(tree, f"{scheme}://127.0.0.1:{port}", cafile))
    for name, values in samples.items():
        wall = statistics.median(v[0] for v in values)
        elapsed = statistics.median(v[1] for v in values)
        print(f"{label:9} {name:6} median of {runs}: process {wall * 1000:.0f} ms, audit elapsed_ms {elapsed:.0f}")
    alone = []
    for _ in range(runs):  # the probe thread by itself (it runs beside the main session in a full check)
        started = time.perf_counter()
        CoverageProbe(parse_target(f"{scheme}://127.0.0.1:{port}"), 5, "bench.example.test").run()
        alone.append(time.perf_counter() - started)
    print(f"{label:9} after  raw-hello probes alone, median of {runs}: {statistics.median(alone) * 1000:.1f} ms")


def postfix_port(leaf_cert: Path, leaf_key: Path) -> tuple[int, object] | None:
    from tests.servers.postfix import start_postfix, unavailable_reason

    if unavailable_reason():
        print(f"postfix skipped: {unavailable_reason()}")
        return None
    inst = start_postfix()
    inst.postconf("-e", f"smtpd_tls_chain_files = {leaf_key}, {leaf_cert}", "smtpd_tls_security_level = may",
                  "smtpd_tls_auth_only = yes")
    inst.reload()
    time.sleep(1)
    return inst.smtp_port, inst


def main() -> None:
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)  # aiosmtpd logs every refused probe handshake
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before-rev", default="")
    parser.add_argument("--no-postfix", action="store_true")
    args = parser.parse_args()
    rev = args.before_rev or subprocess.run(["git", "-C", str(ROOT), "merge-base", "HEAD", "main"],
                                            capture_output=True, text=True, check=True).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="certkit-bench-coverage-"))
    tmp.chmod(0o755)
    trees = {"before": extract(rev, tmp), "after": ROOT}
    pki = ZooPki(tmp / "pki")
    leaf = pki.leaf("good")
    print(f"before = {rev[:10]}, after = working tree")
    with aiosmtpd_server(server_context(leaf)) as port:
        measure("aiosmtpd", "submission", port, trees, pki.ca_file, args.runs)
    if not args.no_postfix:
        started = postfix_port(leaf.cert, leaf.key)
        if started is not None:
            port, inst = started
            try:
                measure("postfix", "smtp", port, trees, pki.ca_file, args.runs)
            finally:
                inst.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
