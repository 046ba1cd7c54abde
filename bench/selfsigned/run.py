"""Self-signed issue and start-up: certkit vs openssl req vs mkcert, side by side.

    python bench/selfsigned/run.py [--runs 9] [--json]

Each round runs every contender once, in rotating order, so machine noise
hits all of them alike; the table shows medians, and ratios against
certkit (below 1.0 means certkit is faster). Every run makes a fresh key
and certificate in a temp folder; mkcert's CA is created once beforehand
(it is reused in real life too).
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
from collections.abc import Callable
from pathlib import Path


def timed(argv: list[str], env: dict[str, str], cwd: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {proc.stderr.decode(errors='replace')}")
    return elapsed


def install_certkit(venv: Path) -> str:
    """Install this checkout the way the README does (`pip install .`, not editable) into a venv.

    An editable install adds an import hook to every start, and a version
    manager's shim (pyenv) adds a shell wrapper: neither is what users run.
    """
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                    "--disable-pip-version-check", str(root)], check=True, capture_output=True)
    return str(venv / "bin" / "certkit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--certkit", help="certkit executable to time (default: a fresh `pip install .` in a venv)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="certkit-bench-"))
    certkit = args.certkit or install_certkit(work / "venv")
    env = {**os.environ, "CERTKIT_HOME": str(work / "home"), "CAROOT": str(work / "caroot")}
    counter = iter(range(10**6))

    def certkit_issue(key: str) -> Callable[[], float]:
        return lambda: timed([certkit, "issue", "--cn", f"h{next(counter)}.example.com", "--key", key],
                             env, str(work))

    contenders: dict[str, dict[str, Callable[[], float]]] = {
        "rsa2048": {
            "certkit issue --key rsa2048": certkit_issue("rsa2048"),
            "openssl req -x509 -newkey rsa:2048": lambda: timed(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "k.pem", "-out", "c.pem",
                 "-subj", "/CN=mail.example.com", "-addext", "subjectAltName=DNS:mail.example.com",
                 "-days", "365"], env, str(work)),
        },
        "ec256": {
            "certkit issue --key ec256": certkit_issue("ec256"),
            "openssl req -x509 -newkey ec P-256": lambda: timed(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", "k.pem", "-out", "c.pem", "-subj", "/CN=mail.example.com", "-days", "365"],
                env, str(work)),
        },
        "startup": {
            "certkit --version": lambda: timed([certkit, "--version"], env, str(work)),
            "python -c pass": lambda: timed([str(Path(certkit).parent / "python"), "-c", "pass"], env, str(work)),
        },
    }
    if shutil.which("mkcert"):
        subprocess.run(["mkcert", "-install"], env={**env, "TRUST_STORES": "none"}, capture_output=True)
        subprocess.run(["mkcert", "warmup.example.com"], env=env, cwd=str(work), capture_output=True, check=True)
        contenders["rsa2048"]["mkcert (RSA-2048)"] = lambda: timed(["mkcert", "mail.example.com"], env, str(work))
        contenders["ec256"]["mkcert -ecdsa"] = lambda: timed(["mkcert", "-ecdsa", "mail.example.com"], env,
                                                             str(work))

    results: dict[str, dict[str, float]] = {}
    for group, entries in contenders.items():
        times: dict[str, list[float]] = {name: [] for name in entries}
        names = list(entries)
        for _ in range(2):  # warm the page cache for every binary
            for name in names:
                entries[name]()
        for round_no in range(args.runs):
            order = names[round_no % len(names):] + names[:round_no % len(names)]
            for name in order:
                times[name].append(entries[name]())
        results[group] = {name: statistics.median(values) for name, values in times.items()}
    shutil.rmtree(work, ignore_errors=True)

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"medians of {args.runs} alternating runs (seconds); ratio = contender / certkit")
    for group, medians in results.items():
        base_name = next(iter(medians))
        base = medians[base_name]
        print(f"\n{group}")
        for name, value in medians.items():
            print(f"  {name:<40} {value:7.3f} s   {value / base:5.2f}x")


if __name__ == "__main__":
    main()
