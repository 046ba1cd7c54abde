"""Renewal safety with real processes: kill -9 at random moments, two runs at once."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from certkit import keys
from certkit import x509 as cx
from certkit.issuing import issue
from certkit.settings import LineageSettings
from certkit.store import Store

pytestmark = pytest.mark.slow


def quiet(_: str) -> None:
    pass


def populate(home: Path, count: int, key_type: str) -> list[str]:
    store = Store(home)
    names = [f"lineage{i:02d}.example" for i in range(count)]
    for name in names:
        issue(store, LineageSettings(name=name, domains=[name], key_type=key_type, days=90), echo=quiet)
    return names


def certkit(home: Path, *args: str, lock_wait: float | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CERTKIT_HOME", "CERTKIT_LOCK_WAIT")}
    if lock_wait is not None:
        env["CERTKIT_LOCK_WAIT"] = str(lock_wait)
    # Own process group: the kill takes certkit and any hook it started, as systemd
    # stopping the unit's cgroup (or a power cut) would.
    return subprocess.Popen([sys.executable, "-m", "certkit", "--home", str(home), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


DEPLOY_HOOK = """#!/bin/sh
# Stands in for a server: remembers which certificate it was last given.
sleep 0.03
mkdir -p "$SERVED"
sha256sum < "$CERTKIT_CERT" | cut -c1-64 > "$SERVED/.$CERTKIT_NAME.tmp"
mv "$SERVED/.$CERTKIT_NAME.tmp" "$SERVED/$CERTKIT_NAME"
"""


def add_deploy_hook(home: Path, served: Path) -> None:
    hook_dir = home / "hooks" / "deploy"
    hook_dir.mkdir(parents=True)
    hook = hook_dir / "10-server"
    hook.write_text(DEPLOY_HOOK.replace("$SERVED", str(served)))
    hook.chmod(0o755)


def assert_servers_have_live_certs(home: Path, names: list[str], served: Path) -> None:
    import hashlib

    store = Store(home)
    for name in names:
        live = hashlib.sha256(store.live_paths(name).cert.read_bytes()).hexdigest()
        assert (served / name).read_text().strip() == live, f"{name}: the server was left with another certificate"


def assert_consistent(home: Path, names: list[str]) -> None:
    """Every live key matches its certificate (and combined.pem pairs them too); the lock is free."""
    store = Store(home)
    for name in names:
        paths = store.live_paths(name)
        cert = cx.load_chain(paths.cert.read_bytes())[0]
        assert cx.key_matches(cert, keys.load_pem(paths.key.read_bytes())), name
        combined = paths.combined.read_bytes()
        assert cx.key_matches(cx.load_chain(combined)[0], keys.load_pem(combined)), name
        assert store.live_version(name) in store.versions(name)
    assert not lock_held(home)


def lock_held(home: Path) -> bool:
    fd = os.open(home / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        assert exc.errno in (errno.EAGAIN, errno.EACCES)
        return True
    finally:
        os.close(fd)  # closing drops our flock, if we got it
    return False


def test_kill_9_at_random_moments_then_next_run_finishes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    names = populate(home, 6, "rsa2048")
    served = tmp_path / "served"
    add_deploy_hook(home, served)  # every renewal now also "deploys"; kills land between activate and deploy too
    durations = []
    for _ in range(2):  # the shorter of two full runs: a busy machine must not stretch the kill window
        started = time.monotonic()
        full = certkit(home, "renew", "--force", "--concurrency", "3")
        out, err = full.communicate(timeout=60)
        assert full.returncode == 0, err
        durations.append(time.monotonic() - started)
    duration = 0.9 * min(durations)
    seed = int(os.environ.get("CERTKIT_SAFETY_SEED", "20261202"))  # fixed: a failure repeats
    print(f"seed {seed}, full run {min(durations):.2f} s (CERTKIT_SAFETY_SEED={seed} repeats the kill points)")
    rng = random.Random(seed)
    killed_mid_run = 0
    for _ in range(10):
        proc = certkit(home, "renew", "--force", "--concurrency", "3")
        time.sleep(rng.uniform(0.05, duration))
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            killed_mid_run += 1
        proc.communicate(timeout=60)
        assert_consistent(home, names)  # seed in the failure message below
    assert killed_mid_run >= 4, f"seed {seed}: most runs should be killed mid-way"
    final = certkit(home, "renew", "--json")
    out, err = final.communicate(timeout=60)
    assert final.returncode == 0, f"seed {seed}: {err}"
    data = json.loads(out)
    assert data["failed"] == []
    store = Store(home)
    for name in names:
        state = store.load_state(name)
        assert not state.get("unfinished"), f"seed {seed}: {name} still marked as being renewed"
        assert state["last_renewal"]["ok"] is True
    assert_consistent(home, names)
    assert_servers_have_live_certs(home, names, served)  # interrupted deploys were finished
    # Nothing left to finish: a further run renews nothing.
    again = certkit(home, "renew", "--json")
    out, _ = again.communicate(timeout=60)
    assert json.loads(out)["renewed"] == []


def wait_for_lock(home: Path, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the first run ended before it was seen holding the lock: {proc.stderr.read()}")
        with contextlib.suppress(OSError):
            if (home / ".lock").read_text().strip() == str(proc.pid) and lock_held(home):
                return
        time.sleep(0.01)
    pytest.fail("the first run never took the lock")


def test_two_runs_at_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    names = populate(home, 4, "ec256")
    store = Store(home)
    with store.lock():  # renewals now make RSA-4096 keys (~0.5 s each): the first run holds the lock a while
        for name in names:
            settings = store.load_settings(name)
            settings.key_type = "rsa4096"
            store.save_settings(settings)
    # A second run that cannot wait long enough exits 1 and says who holds the lock.
    first = certkit(home, "renew", "--force", "--concurrency", "1")
    wait_for_lock(home, first)
    second = certkit(home, "renew", "--force", lock_wait=0.3)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 1
    assert f"another certkit process (pid {first.pid}) is working on {home}" in err
    assert "let it finish and run the command again" in err and "Traceback" not in err
    assert first.wait(timeout=120) == 0
    assert all(store.versions(n) == [1, 2] for n in names)  # the refused run changed nothing
    # A second run that can wait does so, then finds the work done (nothing renewed twice).
    first = certkit(home, "renew", "--force", "--concurrency", "1")
    wait_for_lock(home, first)
    second = certkit(home, "renew", "--json", lock_wait=120)
    out, err = second.communicate(timeout=150)
    assert first.wait(timeout=120) == 0
    assert second.returncode == 0, err
    data = json.loads(out)
    assert data["renewed"] == [] and sorted(data["not_due"]) == names
    assert all(store.versions(n) == [1, 2, 3] for n in names)
    assert_consistent(home, names)
