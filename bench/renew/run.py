"""Renewal of many ACME lineages against a local Pebble: certkit vs certbot, same machine, same run.

    python bench/renew/run.py [--lineages 50] [--certbot-lineages 10] [--concurrency 8] [--json]
    python bench/renew/run.py --certbot-lineages 0 --concurrency 16     # certkit alone

Both tools talk to one Pebble (real http-01 validation on loopback,
``PEBBLE_VA_NOSLEEP=1``). Pebble's nonce rejection is turned off
(``PEBBLE_WFE_NONCEREJECT=0``): Debian's certbot 2.1 on Python 3.11 crashes
with "AttributeError: can't set attribute" on an ACME error such as a second
badNonce in a row (certbot#9539), which over 50 lineages aborts its run.

- certkit: ``--lineages`` ACME lineages are issued first (not timed), then
  ``certkit renew --force --concurrency N`` is timed as one process.
- certbot: ``--certbot-lineages`` lineages made with ``certbot certonly
  --standalone`` (not timed), then ``certbot renew --force-renewal
  --no-random-sleep-on-renew`` is timed. certbot renews one certificate at a
  time, so its per-certificate rate does not depend on how many lineages
  it has; a sample keeps the benchmark short (``--certbot-lineages 50``
  runs the full set).

The comparison is certificates renewed per second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.servers.pebble import PebbleServer, start_pebble  # noqa: E402


def certkit_setup(server: PebbleServer, home: Path, count: int) -> list[str]:
    """Issue ``count`` ACME lineages in-process (setup, not timed)."""
    from certkit.issuing import issue
    from certkit.settings import AcmeSettings, LineageSettings
    from certkit.store import Store

    store = Store(home)
    names = [f"ck{i:03d}.bench.example" for i in range(count)]

    def one(name: str) -> None:
        acme = AcmeSettings(server=server.directory_url, agree_tos=True, ca_bundle=str(server.ca_bundle),
                            http_port=server.http_port, http_address="127.0.0.1")
        issue(store, LineageSettings(name=name, domains=[name], key_type="ec256", source=server.directory_url,
                                     acme=acme), echo=lambda _: None)

    from certkit.acme import http01

    responder = http01.acquire("127.0.0.1", server.http_port)  # one listener for all setup orders
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, names))
    finally:
        http01.release(responder)
    return names


def certkit_renew(home: Path, concurrency: int) -> tuple[float, dict[str, object]]:
    argv = [sys.executable, "-m", "certkit", "--home", str(home), "renew", "--force",
            "--concurrency", str(concurrency), "--json"]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"certkit renew failed: {proc.stderr[-3000:]}")
    return elapsed, json.loads(proc.stdout)


def certbot_base(server: PebbleServer, work: Path) -> list[str]:
    return ["certbot", "--config-dir", str(work / "config"), "--work-dir", str(work / "work"),
            "--logs-dir", str(work / "logs"), "--server", server.directory_url, "--non-interactive",
            "--no-eff-email"]


def certbot_env(server: PebbleServer) -> dict[str, str]:
    return {**os.environ, "REQUESTS_CA_BUNDLE": str(server.ca_bundle)}


def certbot_setup(server: PebbleServer, work: Path, count: int) -> list[str]:
    names = [f"cb{i:03d}.bench.example" for i in range(count)]
    for name in names:
        argv = [*certbot_base(server, work), "certonly", "--standalone", "--http-01-port", str(server.http_port),
                "--http-01-address", "127.0.0.1", "--agree-tos", "--register-unsafely-without-email",
                "--key-type", "ecdsa", "-d", name]
        for _attempt in range(3):  # setup only (not timed): ride over a crash like certbot#9539
            proc = subprocess.run(argv, capture_output=True, text=True, env=certbot_env(server), timeout=300)
            if proc.returncode == 0:
                break
        else:
            log = work / "logs" / "letsencrypt.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise SystemExit(f"certbot certonly failed: {proc.stderr[-2000:]}\n{tail}")
    return names


def certbot_renew(server: PebbleServer, work: Path) -> float:
    argv = [*certbot_base(server, work), "renew", "--force-renewal", "--no-random-sleep-on-renew"]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=certbot_env(server), timeout=3600)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"certbot renew failed: {proc.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lineages", type=int, default=50)
    parser.add_argument("--certbot-lineages", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("certbot") is None:
        raise SystemExit("certbot is not installed (Debian package certbot)")

    work = Path(tempfile.mkdtemp(prefix="certkit-bench-renew-"))
    server = start_pebble(work / "pebble", env_overrides={"PEBBLE_WFE_NONCEREJECT": "0"})
    try:
        t0 = time.perf_counter()
        certkit_names = certkit_setup(server, work / "certkit-home", args.lineages)
        certkit_issue_s = time.perf_counter() - t0
        certkit_s, report = certkit_renew(work / "certkit-home", args.concurrency)
        renewed = report["renewed"]
        assert isinstance(renewed, list) and sorted(renewed) == certkit_names, report

        certbot_issue_s = certbot_s = 0.0
        if args.certbot_lineages:
            t0 = time.perf_counter()
            certbot_setup(server, work / "certbot", args.certbot_lineages)
            certbot_issue_s = time.perf_counter() - t0
            certbot_s = certbot_renew(server, work / "certbot")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    certkit_rate = args.lineages / certkit_s
    if not args.certbot_lineages:  # --certbot-lineages 0: certkit alone (e.g. a --concurrency sweep)
        print(json.dumps({"lineages": args.lineages, "concurrency": args.concurrency,
                          "renew_s": round(certkit_s, 2), "certs_per_s": round(certkit_rate, 2)}))
        return
    certbot_rate = args.certbot_lineages / certbot_s
    result = {
        "certkit": {"lineages": args.lineages, "concurrency": args.concurrency, "renew_s": round(certkit_s, 2),
                    "per_cert_s": round(certkit_s / args.lineages, 3), "certs_per_s": round(certkit_rate, 2),
                    "setup_issue_s": round(certkit_issue_s, 1)},
        "certbot": {"lineages": args.certbot_lineages, "renew_s": round(certbot_s, 2),
                    "per_cert_s": round(certbot_s / args.certbot_lineages, 3),
                    "certs_per_s": round(certbot_rate, 2), "setup_issue_s": round(certbot_issue_s, 1)},
        "speedup": round(certkit_rate / certbot_rate, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print("| tool | lineages | renew wall | per certificate | certificates/s |")
    print("| --- | --- | --- | --- | --- |")
    for tool in ("certkit", "certbot"):
        r = result[tool]
        assert isinstance(r, dict)
        label = f"certkit (--concurrency {args.concurrency})" if tool == "certkit" else "certbot renew --force-renewal"
        print(f"| {label} | {r['lineages']} | {r['renew_s']} s | {r['per_cert_s']} s | {r['certs_per_s']} |")
    print(f"\ncertkit renews {result['speedup']}x as many certificates per second as certbot.")


if __name__ == "__main__":
    main()
