"""`certkit smtpd` under attack: brute-force rate, a normal client's EHLO during a flood,
memory with 3000 stalled TLS handshakes (issue 10, items 12-13).

    python bench/smtpd_attack.py --runs 3                       # this tree
    python bench/smtpd_attack.py --runs 3 --code /tmp/certkit-old --old   # an older checkout

``--old`` runs a tree without the limits options (brute force on one
connection only, no option passed). Each figure is the median of ``--runs``.
Clients bind addresses in 127.0.0.0/8: 127.0.0.1 attacks, 127.0.0.2 is the
normal client, the stalled handshakes come from 150 addresses 127.0.1.x.
RSS is read from /proc/PID/status (VmRSS).
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers.smtpd import REPO, LineClient, SmtpdServer, auth_plain, issue_lineage, start_smtpd

NO_LIMITS = ("--max-per-ip", "4000", "--max-connections", "4000", "--auth-failures-per-ip", "0",
             "--auth-failures-per-connection", "0", "--auth-delay", "0")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def server(code: Path, extra: tuple[str, ...], old: bool) -> SmtpdServer:
    work = Path(tempfile.mkdtemp(prefix="smtpd-bench-"))
    issue_lineage(work / "home")
    return start_smtpd(work / "home", "mail.test", work / "smtpd", extra=() if old else extra,
                       auth_delay=None, code=code)


def brute_force(srv: SmtpdServer, seconds: float, stop: threading.Event, count: list[int]) -> None:
    """Wrong passwords as fast as the server answers; reconnect whenever it hangs up."""
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline and not stop.is_set():
        try:
            client = LineClient(srv.port, timeout=30)
            client.starttls()
            while time.monotonic() < deadline and not stop.is_set():
                reply = client.cmd(auth_plain(srv.user, f"guess-{n}"))
                n += 1
                if not reply.startswith("535"):
                    break
            client.close()
        except (OSError, AssertionError):
            time.sleep(0.05)
    count.append(n)


def guesses_per_minute(code: Path, extra: tuple[str, ...], old: bool, seconds: float) -> float:
    """Guesses the server evaluated (its FAILED log lines) in ``seconds`` from one IP, per minute."""
    srv = server(code, extra, old)
    try:
        brute_force(srv, seconds, threading.Event(), [])
        evaluated = srv.log().count(" FAILED")
    finally:
        srv.stop()
    return evaluated * 60 / seconds


def ehlo_latencies(code: Path, extra: tuple[str, ...], old: bool, seconds: float) -> list[float]:
    """Connect + banner + EHLO of a client on 127.0.0.2 every 0.2 s while 32 connections brute-force."""
    srv = server(code, extra, old)
    stop = threading.Event()
    counts: list[int] = []
    attackers = [threading.Thread(target=brute_force, args=(srv, seconds + 5, stop, counts)) for _ in range(32)]
    try:
        for thread in attackers:
            thread.start()
        time.sleep(2)  # let the flood build up
        samples = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            client = LineClient(srv.port, "127.0.0.2", timeout=60)
            client.reply()
            client.cmd("EHLO client.test")
            samples.append(time.monotonic() - started)
            client.cmd("QUIT")
            client.close()
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in attackers:
            thread.join()
        srv.stop()
    return samples


def open_stalled(port: int, smtps_port: int | None, n: int) -> list[socket.socket]:
    """``n`` clients that start a TLS handshake and then say nothing (half STARTTLS, half smtps)."""
    socks = []
    for i in range(n):
        source = (f"127.0.1.{1 + i % 150}", 0)
        try:
            if smtps_port is not None and i % 2:
                socks.append(socket.create_connection(("127.0.0.1", smtps_port), timeout=10, source_address=source))
                continue
            client = LineClient(port, source[0], timeout=10)
            if client.reply().startswith("220") and client.cmd("EHLO x").startswith("250"):
                client.cmd("STARTTLS")
            socks.append(client.sock)
        except OSError:
            pass
    return socks


def stalled_memory(code: Path, extra: tuple[str, ...], old: bool, n: int) -> tuple[float, float, float]:
    """RSS (MiB) idle, with ``n`` stalled handshakes open, and 3 s after the clients closed."""
    srv = server(code, extra, old)
    try:
        time.sleep(0.5)
        idle = rss_mib(srv.proc.pid)
        socks = open_stalled(srv.port, srv.smtps_port, n)
        time.sleep(1)
        peak = rss_mib(srv.proc.pid)
        for sock in socks:
            sock.close()
        time.sleep(3)
        after = rss_mib(srv.proc.pid)
    finally:
        srv.stop()
    return idle, peak, after


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--code", type=Path, default=REPO, help="source tree to run (default: this one)")
    parser.add_argument("--old", action="store_true", help="the tree has no limit options")
    parser.add_argument("--seconds", type=float, default=60, help="length of each brute-force run")
    parser.add_argument("--stalled", type=int, default=3000)
    parser.add_argument("--only", choices=("brute", "ehlo", "memory"), default=None)
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))  # 3000 sockets, also for the server
    runs = range(args.runs)
    for label, extra in (("defaults", ()), ("per-connection limits only", ("--auth-failures-per-ip", "0")),
                         ("limits off", NO_LIMITS)):
        if (args.old and label != "defaults") or args.only not in (None, "brute"):
            continue
        rate = median([guesses_per_minute(args.code, extra, args.old, args.seconds) for _ in runs])
        print(f"brute force, one IP, {label}: {rate:.0f} guesses/min evaluated "
              f"(first {args.seconds:g} s)", flush=True)
    for label, extra in (("defaults", ()), ("limits off", NO_LIMITS)):
        if (args.old and label != "defaults") or args.only not in (None, "ehlo"):
            continue
        lat = [ehlo_latencies(args.code, extra, args.old, 20) for _ in runs]
        print(f"EHLO during 32-connection brute force, {label}: median {median([median(x) for x in lat]):.3f} s, "
              f"max {median([max(x) for x in lat]):.3f} s ({sum(len(x) for x in lat)} samples)", flush=True)
    for label, extra in (("defaults", ()), ("caps raised, 120 s handshake timeout",
                                            ("--max-connections", "4000", "--max-per-ip", "4000",
                                             "--handshake-timeout", "120"))):
        if (args.old and label != "defaults") or args.only not in (None, "memory"):
            continue
        mem = [stalled_memory(args.code, extra, args.old, args.stalled) for _ in runs]
        idle, peak, after = (median([m[i] for m in mem]) for i in range(3))
        print(f"RSS with {args.stalled} stalled TLS handshakes, {label}: idle {idle:.0f} MiB, "
              f"open {peak:.0f} MiB, 3 s after close {after:.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
