"""The state directory's invariants: modes, versions, atomic live switch, lock, kill -9."""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from certkit import keys
from certkit import x509 as cx
from certkit.errors import LockError, NotFoundError, UsageError
from certkit.names import parse_names
from certkit.settings import LineageSettings
from certkit.store import Store


def make_version(store: Store, name: str) -> int:
    key = keys.generate("ec256")
    cert = cx.self_signed(key, parse_names(name), 30)
    return store.add_version(name, keys.to_pem(key), cx.to_pem(cert), b"", pfx=b"PFX", pfx_password="pw")


def assert_live_consistent(store: Store, name: str) -> None:
    paths = store.live_paths(name)
    key = keys.load_pem(paths.key.read_bytes())
    cert = cx.load_chain(paths.cert.read_bytes())[0]
    assert cx.key_matches(cert, key)
    combined = paths.combined.read_bytes()
    ckey = keys.load_pem(combined)  # the key comes first
    ccert = cx.load_chain(combined)[0]
    assert cx.key_matches(ccert, ckey)


def test_versions_modes_and_live(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    with store.lock():
        store.save_settings(LineageSettings(name="mail.example.com", domains=["mail.example.com"]))
        v1 = make_version(store, "mail.example.com")
        store.activate("mail.example.com", v1)
        v2 = make_version(store, "mail.example.com")
    assert (v1, v2) == (1, 2)
    assert store.live_version("mail.example.com") == 1  # a new version is not live until activated
    with store.lock():
        store.activate("mail.example.com", v2)
    assert store.live_version("mail.example.com") == 2
    assert store.versions("mail.example.com") == [1, 2]
    assert_live_consistent(store, "mail.example.com")
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    paths = store.live_paths("mail.example.com")
    assert mode(store.home) == 0o700
    assert mode(store.lineage_dir("mail.example.com")) == 0o700
    assert mode(paths.key) == 0o600
    assert mode(paths.combined) == 0o600
    assert mode(paths.pfx) == 0o600
    assert mode(paths.pfx_password) == 0o600
    assert mode(paths.cert) == 0o644
    assert mode(store.lineage_dir("mail.example.com") / "settings.toml") == 0o600
    assert store.names() == ["mail.example.com"]
    assert store.load_settings("mail.example.com").domains == ["mail.example.com"]


def test_writes_need_the_lock(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    with pytest.raises(RuntimeError):
        store.update_state("x", a=1)


def test_bad_names_and_missing_lineage(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    for bad in ("../etc", "a/b", ".hidden", ""):
        with pytest.raises(UsageError):
            store.lineage_dir(bad)
    with pytest.raises(NotFoundError) as info:
        store.load_settings("nope.example.com")
    assert "certkit list" in str(info.value)
    with pytest.raises(UsageError):
        store.write_file("../outside", b"x")


def test_second_process_waits_then_fails_clearly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from certkit.store import Store
            with Store({str(home)!r}).lock():
                print("locked", flush=True)
                time.sleep(5)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        store = Store(home, lock_wait=0.3)
        start = time.monotonic()
        with pytest.raises(LockError) as info:
            with store.lock():
                pass
        assert time.monotonic() - start >= 0.3
        assert f"pid {holder.pid}" in str(info.value)
        assert info.value.exit_code == 1
    finally:
        holder.kill()
        holder.wait()
    with Store(home, lock_wait=2).lock():  # released when the holder died
        pass


SWITCHER = """
import sys
from certkit.store import Store
from certkit import keys, x509 as cx
from certkit.names import parse_names
store = Store(sys.argv[1])
name = "mail.example.com"
print("ready", flush=True)
while True:
    with store.lock():
        key = keys.generate("ec256")
        cert = cx.self_signed(key, parse_names(name), 30)
        v = store.add_version(name, keys.to_pem(key), cx.to_pem(cert), b"")
        store.activate(name, v)
        if v > 3:  # also switch back and forth between existing versions
            store.activate(name, v - 2)
            store.activate(name, v)
"""


@pytest.mark.integration  # seconds of real processes
def test_kill_9_at_random_points_never_breaks_live(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = Store(home)
    with store.lock():
        store.activate("mail.example.com", make_version(store, "mail.example.com"))
    rng = random.Random(25)
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", SWITCHER, str(home)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert_live_consistent(store, "mail.example.com")
        live = store.live_version("mail.example.com")
        assert live is not None and live in store.versions("mail.example.com")
    # The next run cleans staging leftovers and carries on.
    with store.lock():
        v = make_version(store, "mail.example.com")
        store.activate("mail.example.com", v)
    assert not list(store.versions_dir("mail.example.com").glob(".staging-*"))
    assert len(store.versions("mail.example.com")) > 3


def test_windows_acl_command_uses_well_known_sids() -> None:
    from certkit.homedir import windows_acl_argv

    argv = windows_acl_argv(Path(r"C:\ProgramData\certkit"))
    assert argv[:3] == ["icacls", r"C:\ProgramData\certkit", "/inheritance:r"]
    # Administrators and SYSTEM only, inherited by files (OI) and folders (CI); no user names.
    assert [a for a in argv if a.startswith("*")] == ["*S-1-5-32-544:(OI)(CI)F", "*S-1-5-18:(OI)(CI)F"]
