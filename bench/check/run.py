"""Benchmark `certkit check` against openssl s_client and swaks, side by side.

    python bench/check/run.py [--runs 15] [--fleet 1000] [--swaks-sample 30] [--concurrency 100]

All servers run in their own process (bench/check/fleet_server.py, asyncio).

1. core: `certkit check --quick` (banner, EHLO, STARTTLS, verified handshake,
   EHLO, QUIT) vs `openssl s_client -starttls smtp -verify_return_error`,
   alternating, medians. Goal <= 2x.
2. audit: the whole `certkit check` of one endpoint vs the same openssl run. Goal <= 10x.
3. fleet: N loopback endpoints (one asyncio process, bench/check/fleet_server.py)
   with `certkit check --targets --quick --concurrency C` vs a sequential
   `swaks -tls --quit-after TLS --tls-verify` loop (timed over a sample and
   extrapolated to N: said so in the output). Goal >= 50x. Peak RSS at N/10
   vs N targets (memory flat).

Every command runs as the user would run it: the installed `certkit` script
next to this interpreter (not a pyenv shim), openssl and swaks from PATH.
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.servers.zoo import NAME, Leaf, ZooPki  # noqa: E402


def certkit_cmd() -> list[str]:
    script = Path(sys.executable).parent / "certkit"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "certkit"]


# As installed: pip compiles bytecode at install time, so the runs may write and
# use __pycache__ (a PYTHONDONTWRITEBYTECODE=1 shell would recompile every
# certkit module on every run, about 10 ms).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str], **kw: object) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          env=ENV, **kw)  # type: ignore[call-overload]
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr[-800:]}")
    return elapsed


def alternate(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {k: [] for k in commands}
    for argv in commands.values():  # warm-up: page cache, pyc files
        timed(argv)
    for _ in range(runs):
        for name, argv in commands.items():
            samples[name].append(timed(argv))
    return {k: statistics.median(v) for k, v in samples.items()}


def rss_and_wall(argv: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS KiB) of one run, via /usr/bin/time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        started = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name, *argv], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
        wall = time.perf_counter() - started
        if proc.returncode not in (0, 1):
            raise SystemExit(f"fleet run failed: {proc.stderr[-800:]}")
        return wall, int(out.read().strip().splitlines()[-1])


def start_servers(leaf: Leaf, count: int, portfile: Path) -> tuple[subprocess.Popen[bytes], list[int]]:
    """``count`` submission endpoints in their own process (fleet_server.py), and their ports."""
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fleet_server.py")), str(leaf.cert),
                               str(leaf.key), str(count), str(portfile)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not portfile.exists():
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise SystemExit("bench server did not start")
        time.sleep(0.05)
    return server, [int(p) for p in portfile.read_text().split()]


def fleet(args: argparse.Namespace, pki: ZooPki, leaf: Leaf, tmp: Path, ck: list[str], trust: list[str],
          key: str) -> dict[str, object]:
    """N endpoints served with ``leaf``: certkit --targets vs a sequential swaks sample, peak RSS."""
    server, ports = start_servers(leaf, args.fleet, tmp / f"ports-{key}")
    try:
        full_list, tenth_list = tmp / f"targets-{key}", tmp / f"targets-tenth-{key}"
        full_list.write_text("".join(f"submission://127.0.0.1:{p}\n" for p in ports))
        tenth_list.write_text("".join(f"submission://127.0.0.1:{p}\n" for p in ports[: len(ports) // 10]))
        base = [*ck, "check", "--json", "--concurrency", str(args.concurrency), *trust]
        rss_and_wall([*base, "--quick", "--targets", str(tenth_list)])  # warm-up
        quick_wall, quick_rss = rss_and_wall([*base, "--quick", "--targets", str(full_list)])
        _, tenth_rss = rss_and_wall([*base, "--quick", "--targets", str(tenth_list)])
        full_wall, full_rss = rss_and_wall([*base, "--targets", str(full_list)])
        sample = ports[: args.swaks_sample]
        swaks_started = time.perf_counter()
        for p in sample:
            timed(["swaks", "--server", "127.0.0.1", "--port", str(p), "-tls", "--quit-after", "TLS",
                   "--tls-verify", "--tls-ca-path", str(pki.ca_file), "--tls-sni", NAME])
        swaks_each = (time.perf_counter() - swaks_started) / len(sample)
    finally:
        server.terminate()
        server.wait(10)
    swaks_total = swaks_each * len(ports)
    f: dict[str, object] = {
        "endpoints": len(ports),
        "server_key": key,
        "concurrency": args.concurrency,
        "certkit_quick_s": round(quick_wall, 2),
        "certkit_full_audit_s": round(full_wall, 2),
        "swaks_each_ms": round(swaks_each * 1000, 1),
        "swaks_sample": len(sample),
        "swaks_extrapolated_s": round(swaks_total, 1),
        "speedup_quick": round(swaks_total / quick_wall, 1),
        "speedup_full_audit": round(swaks_total / full_wall, 1),
        "rss_kib_tenth": tenth_rss,
        "rss_kib_all_quick": quick_rss,
        "rss_kib_all_full": full_rss,
    }
    n = len(ports)
    print(f"fleet of {n} endpoints ({key} server key), --concurrency {args.concurrency}: "
          f"--quick {f['certkit_quick_s']} s, full audit {f['certkit_full_audit_s']} s")
    print(f"  swaks -tls --quit-after TLS --tls-verify: {f['swaks_each_ms']} ms each over a sequential sample of "
          f"{len(sample)}, extrapolated to {n}: {f['swaks_extrapolated_s']} s")
    print(f"  speed-up vs the swaks loop: --quick {f['speedup_quick']}x, full audit {f['speedup_full_audit']}x "
          "(goal >= 50x)")
    print(f"  peak RSS: {tenth_rss} KiB at {n // 10} targets, {quick_rss} KiB at {n} (--quick), "
          f"{full_rss} KiB at {n} (full audit)")
    return f


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--fleet", type=int, default=1000)
    parser.add_argument("--swaks-sample", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--fleet-keys", default="ec256,rsa2048", help="server key types of fleet runs")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the figures here")
    args = parser.parse_args()
    for tool in ("openssl", "swaks"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed for this benchmark")
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="certkit-bench-check-") as tmp:
        pki = ZooPki(Path(tmp) / "pki")
        leaf = pki.leaf("bench", key="rsa2048")
        server, ports = start_servers(leaf, 1, Path(tmp) / "single-port")
        port = ports[0]
        url = f"submission://127.0.0.1:{port}"
        trust = ["--cafile", str(pki.ca_file), "--name", NAME]
        ck = certkit_cmd()
        openssl = ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}",
                   "-CAfile", str(pki.ca_file), "-verify_return_error", "-verify_hostname", NAME,
                   "-servername", NAME]
        try:
            med = alternate({
                "openssl": openssl,
                "certkit_quick": [*ck, "check", "--quick", url, *trust],
                "certkit_full": [*ck, "check", url, *trust],
                "python_startup": [sys.executable, "-c", "pass"],
                "certkit_version": [*ck, "--version"],
            }, args.runs)
        finally:
            server.terminate()
            server.wait(10)
        results["single"] = {k: round(v * 1000, 1) for k, v in med.items()}
        results["core_ratio"] = round(med["certkit_quick"] / med["openssl"], 1)
        results["audit_ratio"] = round(med["certkit_full"] / med["openssl"], 1)
        print(f"single endpoint, medians of {args.runs} alternating runs (ms): {results['single']}")
        print(f"core (certkit check --quick / openssl s_client): {results['core_ratio']}x (goal <= 2x)")
        print(f"audit (certkit check / openssl s_client): {results['audit_ratio']}x (goal <= 10x)")

        if args.fleet <= 0:
            print(json.dumps(results))
            return
        for key in args.fleet_keys.split(","):
            results[f"fleet_{key}"] = fleet(args, pki, pki.leaf(f"fleet-{key}", key=key), Path(tmp), ck, trust, key)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
