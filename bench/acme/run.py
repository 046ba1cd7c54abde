"""ACME issuance: certkit vs certbot vs lego against one local Pebble, real http-01.

    python bench/acme/run.py [--runs 5] [--lineages 20] [--skip-batch]

Part 1 (single issuance): each tool issues one certificate (ECDSA P-256,
fresh state folder, so account registration is included), alternating
certkit / certbot / lego, ``--runs`` times each; wall time of the whole
command, medians and ratios.

Part 2 (batch): ``--lineages`` certificates; certkit issues them
concurrently from one process (``certkit.issuing.issue`` in threads, one
shared account and one shared http-01 responder), certbot one by one with
one reused account (its fastest honest mode).

Pebble runs with ``PEBBLE_VA_NOSLEEP=1`` and nonce rejection off
(``PEBBLE_WFE_NONCEREJECT=0``) so that a peer's random badNonce failure does
not spoil a run; its validation still fetches every token over HTTP.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.servers.pebble import PebbleServer, start_pebble  # noqa: E402


def run(argv: list[str], env: dict[str, str], what: str, made: Path | None = None) -> float:
    """Wall time of one command; it must exit 0 and (when given) produce the certificate file ``made``."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or (made is not None and not made.is_file()):
        raise SystemExit(f"{what} failed (exit {proc.returncode}, {made} made: {made is None or made.is_file()}):"
                         f"\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return elapsed


def certkit_once(pebble: PebbleServer, work: Path, name: str) -> float:
    env = {**os.environ, "CERTKIT_HOME": str(work / "certkit"), "PYTHONPATH": str(ROOT)}
    certkit = shutil.which("certkit")
    head = [certkit] if certkit else [sys.executable, "-m", "certkit"]
    return run([*head, "issue", "--cn", name, "--key", "ec256", "--acme", "--server", pebble.directory_url,
                "--ca-bundle", str(pebble.ca_bundle), "--http-port", str(pebble.http_port),
                "--http-address", "127.0.0.1", "--agree-tos"], env, "certkit",
               work / "certkit" / "lineages" / name / "live" / "cert.pem")


def certbot_args(pebble: PebbleServer, state: Path, name: str) -> list[str]:
    return ["certbot", "certonly", "--standalone", "--non-interactive", "--agree-tos",
            "--register-unsafely-without-email", "--server", pebble.directory_url,
            "--http-01-port", str(pebble.http_port), "--http-01-address", "127.0.0.1",
            "--key-type", "ecdsa", "--config-dir", str(state / "config"), "--work-dir", str(state / "work"),
            "--logs-dir", str(state / "logs"), "-d", name]


def certbot_env(pebble: PebbleServer) -> dict[str, str]:
    return {**os.environ, "REQUESTS_CA_BUNDLE": str(pebble.ca_bundle)}


def certbot_once(pebble: PebbleServer, work: Path, name: str) -> float:
    return run(certbot_args(pebble, work / "certbot", name), certbot_env(pebble), "certbot",
               work / "certbot" / "config" / "live" / name / "fullchain.pem")


def lego_once(pebble: PebbleServer, work: Path, name: str) -> float:
    env = {**os.environ, "LEGO_CA_CERTIFICATES": str(pebble.ca_bundle)}
    return run(["lego", "--server", pebble.directory_url, "--accept-tos", "--email", "bench@example.com",
                "--key-type", "ec256", "--http", "--http.port", f"127.0.0.1:{pebble.http_port}",
                "--path", str(work / "lego"), "--domains", name, "run"], env, "lego",
               work / "lego" / "certificates" / f"{name}.crt")


def median(values: list[float]) -> float:
    return statistics.median(values)


def single(pebble: PebbleServer, runs: int) -> dict[str, list[float]]:
    tools = {"certkit": certkit_once, "certbot": certbot_once}
    if shutil.which("lego"):
        tools["lego"] = lego_once
    times: dict[str, list[float]] = {t: [] for t in tools}
    for i in range(runs):
        for tool, once in tools.items():  # alternating: one run of each tool per round
            work = Path(tempfile.mkdtemp(prefix=f"bench-{tool}-"))
            try:
                times[tool].append(once(pebble, work, f"{tool}-{i}-{os.getpid()}.example.com"))
            finally:
                shutil.rmtree(work, ignore_errors=True)
        print(f"  round {i + 1}: " + ", ".join(f"{t} {v[-1]:.2f} s" for t, v in times.items()), flush=True)
    return times


def batch_certkit(pebble: PebbleServer, count: int) -> float:
    from certkit.issuing import issue
    from certkit.settings import AcmeSettings, LineageSettings
    from certkit.store import Store

    home = Path(tempfile.mkdtemp(prefix="bench-certkit-batch-"))
    try:
        store = Store(home)
        errors: list[BaseException] = []

        def one(i: int) -> None:
            settings = LineageSettings(
                name=f"batch{i}.example.com", domains=[f"batch{i}.example.com"], key_type="ec256",
                acme=AcmeSettings(server=pebble.directory_url, agree_tos=True, ca_bundle=str(pebble.ca_bundle),
                                  http_port=pebble.http_port, http_address="127.0.0.1"))
            try:
                issue(store, settings, echo=lambda s: None)
            except BaseException as exc:
                errors.append(exc)

        start = time.perf_counter()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        if errors:
            raise SystemExit(f"certkit batch failed: {errors[0]}")
        assert len(store.names()) == count
        return elapsed
    finally:
        shutil.rmtree(home, ignore_errors=True)


def batch_certbot(pebble: PebbleServer, count: int) -> float:
    state = Path(tempfile.mkdtemp(prefix="bench-certbot-batch-"))
    try:
        run(certbot_args(pebble, state, "warmup.example.com"), certbot_env(pebble), "certbot")  # the account
        start = time.perf_counter()
        for i in range(count):
            run(certbot_args(pebble, state, f"cb-batch{i}.example.com"), certbot_env(pebble), "certbot")
        return time.perf_counter() - start
    finally:
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lineages", type=int, default=20)
    parser.add_argument("--skip-batch", action="store_true")
    args = parser.parse_args()
    for tool in ("certbot", "pebble"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="bench-pebble-"))
    pebble = start_pebble(workdir, env_overrides={"PEBBLE_WFE_NONCEREJECT": "0"})
    try:
        print(f"Pebble at {pebble.directory_url}, http-01 on 127.0.0.1:{pebble.http_port}")
        print(f"Single issuance, {args.runs} alternating runs each:")
        times = single(pebble, args.runs)
        med = {t: median(v) for t, v in times.items()}
        print("\n| tool | median | min | max | certkit is faster by |")
        print("| --- | --- | --- | --- | --- |")
        for tool, values in times.items():
            ratio = med[tool] / med["certkit"]
            print(f"| {tool} | {med[tool]:.2f} s | {min(values):.2f} s | {max(values):.2f} s | "
                  f"{'-' if tool == 'certkit' else f'{ratio:.1f}x'} |")
        if not args.skip_batch:
            print(f"\nBatch of {args.lineages} lineages:")
            ck = batch_certkit(pebble, args.lineages)
            print(f"  certkit, concurrent in one process: {ck:.2f} s ({ck / args.lineages * 1000:.0f} ms per cert)",
                  flush=True)
            cb = batch_certbot(pebble, args.lineages)
            print(f"  certbot, one by one (account reused): {cb:.2f} s ({cb / args.lineages:.2f} s per cert)")
            print(f"  certkit is {cb / ck:.1f}x faster")
    finally:
        pebble.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
