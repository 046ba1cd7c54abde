"""Fleet scale: a check of 10,000 loopback endpoints, and renewal of 1,000 lineages in one run.

    python bench/fleet/run.py check [--endpoints 10000] [--concurrency 50] [--servers 2] [--audit-sample 1000]
    python bench/fleet/run.py renew [--lineages 1000] [--concurrency 8] [--source self-signed|pebble|both]

check: bench/check/fleet_server.py serves N submission endpoints (``--servers``
processes, one port each endpoint; RLIMIT_NOFILE raised to the hard limit in
every process). ``certkit check --targets F --quick`` runs once over all of
them; its stdout (one line per target) is read as it comes, so the wall time
of each 1,000 and the certkit process's RSS (sampled from /proc every
0.1 s) at each 1,000 are known. Then the same with ``--format prometheus``
(every summary kept to the end) and ``--record`` (checks/endpoints.json
written), `certkit metrics` over the 10,000 recorded endpoints, and a
whole audit (no --quick) of ``--audit-sample`` endpoints.

renew: ``--lineages`` lineages issued in-process first (not timed), then one
``certkit renew --force`` process is timed with its RSS sampled;
self-signed EC P-256, and/or ACME against a local Pebble with real http-01
(bench/renew's set-up). Then ``certkit metrics`` over them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def certkit(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "certkit", "--home", str(home), *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}


LAST_CPU = [0.0]


def settle(seconds: float) -> None:
    """Let the previous phase's client sockets leave TIME_WAIT (60 s on Linux) before timing the next."""
    time.sleep(seconds)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler:
    """The peak RSS of a process, sampled every ``period`` seconds on a thread."""

    def __init__(self, pid: int, period: float = 0.1) -> None:
        self.pid, self.period, self.peak, self.last = pid, period, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = rss_kib(self.pid)
            if now:
                self.last, self.peak = now, max(self.peak, now)
            self._stop.wait(self.period)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_sampled(argv: list[str], per_line: Callable[[int, float, int], None] | None = None,
                stdout_path: Path | None = None) -> tuple[float, int, int]:
    """(wall seconds, peak RSS KiB, exit code); ``per_line(n, seconds, rss)`` after each output line.

    The child's CPU seconds (user + system) are left in ``LAST_CPU[0]``.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env(),
                            preexec_fn=raise_nofile)
    sampler = Sampler(proc.pid)
    assert proc.stdout is not None
    sink = open(stdout_path, "wb") if stdout_path else None
    lines = 0
    for line in proc.stdout:
        lines += 1
        if sink:
            sink.write(line)
        if per_line:
            per_line(lines, time.perf_counter() - start, sampler.last)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    LAST_CPU[0] = usage.ru_utime + usage.ru_stime
    if sink:
        sink.close()
    return wall, sampler.stop(), code


# ----- check -------------------------------------------------------------------------------------

def start_fleet_servers(cert: Path, key: Path, total: int, servers: int,
                        tmp: Path) -> tuple[list[subprocess.Popen[bytes]], list[int]]:
    procs, ports = [], []
    share = [total // servers + (1 if i < total % servers else 0) for i in range(servers)]
    for i, count in enumerate(share):
        portfile = tmp / f"ports{i}"
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "bench/check/fleet_server.py"), str(cert), str(key),
                                       str(count), str(portfile)], stdin=subprocess.DEVNULL))
    deadline = time.monotonic() + 300
    for i in range(servers):
        portfile = tmp / f"ports{i}"
        while not portfile.exists():
            if time.monotonic() > deadline or procs[i].poll() is not None:
                raise SystemExit("the fleet servers did not start")
            time.sleep(0.1)
        ports += [int(p) for p in portfile.read_text().split()]
    return procs, ports


def bench_check(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    home = tmp / "home"
    subprocess.run(certkit(home, "issue", "--cn", "fleet.example.test", "--san", "127.0.0.1", "--key", "ec256"),
                   check=True, capture_output=True, env=env())
    live = home / "lineages" / "fleet.example.test" / "live"
    procs, ports = start_fleet_servers(live / "fullchain.pem", live / "privkey.pem", args.endpoints, args.servers, tmp)
    try:
        targets = tmp / "targets"
        targets.write_text("".join(f"submission://127.0.0.1:{p}\n" for p in ports))
        sample = tmp / "sample"
        sample.write_text("".join(f"submission://127.0.0.1:{p}\n" for p in ports[:args.audit_sample]))
        base = ["check", "--expect", "fleet.example.test", "--name", "fleet.example.test",
                "--concurrency", str(args.concurrency), "--timeout", "30"]
        run_sampled(certkit(home, *base, "--quick", "--no-record", "--targets", str(sample)))  # warm-up
        settle(args.settle)
        marks: list[tuple[int, float, int]] = []

        def mark(n: int, seconds: float, rss: int) -> None:
            if n % 1000 == 0 and n <= args.endpoints:
                marks.append((n, seconds, rss))

        out = tmp / "text.out"
        wall, peak, code = run_sampled(certkit(home, *base, "--quick", "--no-record", "--targets", str(targets)),
                                       mark, out)
        cpu = LAST_CPU[0]
        failed = sum(1 for line in out.read_text().splitlines() if ": FAILED" in line)
        settle(args.settle)
        prom_out = tmp / "prom.out"
        p_wall, p_peak, _ = run_sampled(certkit(home, *base, "--quick", "--record", "--format", "prometheus",
                                                "--targets", str(targets)), None, prom_out)
        p_cpu = LAST_CPU[0]
        series = sum(1 for line in prom_out.read_text().splitlines() if line.startswith("certkit_check_success{"))
        m_start = time.perf_counter()
        metrics = subprocess.run(certkit(home, "metrics", "--textfile", str(tmp)), capture_output=True, env=env())
        m_wall = time.perf_counter() - m_start
        settle(args.settle)
        a_wall, a_peak, _ = run_sampled(certkit(home, *base, "--no-record", "--targets", str(sample)))
        a_cpu = LAST_CPU[0]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
    per_1000 = [round(b[1] - a[1], 2) for a, b in zip([(0, 0.0, 0), *marks], marks, strict=False)]
    return {
        "endpoints": args.endpoints, "concurrency": args.concurrency, "exit": code, "failed_targets": failed,
        "quick_wall_s": round(wall, 2), "quick_cpu_s": round(cpu, 1), "quick_per_1000_s": per_1000,
        "quick_rss_kib_at_each_1000": [m[2] for m in marks], "quick_peak_rss_kib": peak,
        "prometheus_record_wall_s": round(p_wall, 2), "prometheus_record_cpu_s": round(p_cpu, 1),
        "prometheus_record_peak_rss_kib": p_peak,
        "prometheus_success_series": series,
        "metrics_textfile_wall_s": round(m_wall, 2), "metrics_exit": metrics.returncode,
        "textfile_bytes": (tmp / "certkit.prom").stat().st_size if (tmp / "certkit.prom").exists() else 0,
        "audit_sample": args.audit_sample, "audit_wall_s": round(a_wall, 2), "audit_cpu_s": round(a_cpu, 1),
        "audit_peak_rss_kib": a_peak,
    }


# ----- renew -------------------------------------------------------------------------------------

def self_signed_setup(home: Path, count: int) -> list[str]:
    from certkit.issuing import issue
    from certkit.settings import LineageSettings
    from certkit.store import Store

    store = Store(home)
    names = [f"ss{i:04d}.bench.example" for i in range(count)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: issue(store, LineageSettings(name=n, domains=[n], key_type="ec256", days=90),
                                      echo=lambda _: None), names))
    return names


def timed_renew(home: Path, names: list[str], concurrency: int) -> dict[str, object]:
    report_path = home.parent / f"{home.name}.renew.json"
    wall, peak, code = run_sampled(certkit(home, "renew", "--force", "--concurrency", str(concurrency), "--json"),
                                   None, report_path)
    report = json.loads(report_path.read_text())
    assert sorted(report["renewed"]) == sorted(names), (code, report.get("failed", [])[:3])
    m_start = time.perf_counter()
    subprocess.run(certkit(home, "metrics"), check=True, capture_output=True, env=env())
    m_wall = time.perf_counter() - m_start
    return {"lineages": len(names), "concurrency": concurrency, "renew_wall_s": round(wall, 2),
            "renew_cpu_s": round(LAST_CPU[0], 1),
            "per_cert_s": round(wall / len(names), 4), "certs_per_s": round(len(names) / wall, 1),
            "peak_rss_kib": peak, "metrics_wall_s": round(m_wall, 2)}


def bench_renew(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    if args.source in ("self-signed", "both"):
        home = tmp / "ss-home"
        t0 = time.perf_counter()
        names = self_signed_setup(home, args.lineages)
        setup = time.perf_counter() - t0
        out["self-signed"] = {**timed_renew(home, names, args.concurrency), "setup_issue_s": round(setup, 1)}
    if args.source in ("pebble", "both"):
        sys.path.insert(0, str(ROOT / "bench" / "renew"))
        from run import certkit_setup  # type: ignore[import-not-found]  # bench/renew/run.py

        from tests.servers.pebble import start_pebble

        server = start_pebble(tmp / "pebble", env_overrides={"PEBBLE_WFE_NONCEREJECT": "0"})
        try:
            home = tmp / "acme-home"
            t0 = time.perf_counter()
            names = certkit_setup(server, home, args.lineages)
            setup = time.perf_counter() - t0
            out["pebble"] = {**timed_renew(home, names, args.concurrency), "setup_issue_s": round(setup, 1)}
        finally:
            server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    check = sub.add_parser("check")
    check.add_argument("--endpoints", type=int, default=10000)
    check.add_argument("--concurrency", type=int, default=50)
    check.add_argument("--servers", type=int, default=2)
    check.add_argument("--audit-sample", type=int, default=1000)
    check.add_argument("--settle", type=float, default=65.0, help="seconds between phases (TIME_WAIT)")
    renew = sub.add_parser("renew")
    renew.add_argument("--lineages", type=int, default=1000)
    renew.add_argument("--concurrency", type=int, default=8)
    renew.add_argument("--source", choices=["self-signed", "pebble", "both"], default="both")
    args = parser.parse_args()
    raise_nofile()
    tmp = Path(tempfile.mkdtemp(prefix="certkit-bench-fleet-"))
    try:
        result = bench_check(args, tmp) if args.what == "check" else bench_renew(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
