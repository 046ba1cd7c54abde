"""A zone on two real authoritative name servers (Knot DNS), on loopback, for dns-01 waits.

Name servers are asked on port 53 (that is what NS records mean), so each
``knotd`` listens on port 53 of its own random 127.x.y.z address (needs root,
as CI runs); both serve ``example.test`` with NS ``ns1``/``ns2`` pointing at
those addresses, each from its own copy of the zone, so one can be made to
lag behind the other (a secondary that has not caught up)::

    zone = start_zone(Path("/tmp/work"))
    zone.servers            # ["127.x.y.1", "127.x.y.2"] (ns1, ns2)
    zone.set_txt(0, "_acme-challenge.mail.example.test", "value")   # on ns1 only
    zone.clear_txt(0, "_acme-challenge.mail.example.test")
    zone.stop()

Fixture: ``auth_zone`` (module scope). Records can also be changed by any
program with ``knotc -s SOCKET zone-begin/zone-set/zone-commit`` (``zone.sockets``).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers.processes import stop_all

ZONE = "example.test"
START_TIMEOUT = 10.0



class AuthDnsUnavailable(RuntimeError):
    """knotd is missing, port 53 cannot be bound, or the server did not start."""


def _free_address_pair() -> tuple[str, str]:
    """Two 127.a.b.1/.2 addresses whose port 53 (UDP and TCP) is free."""
    rng = random.Random()
    for _ in range(50):
        base = f"127.{rng.randint(100, 250)}.{rng.randint(1, 250)}"
        pair = (f"{base}.1", f"{base}.2")
        try:
            for address in pair:
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    with socket.socket(socket.AF_INET, kind) as probe:
                        probe.bind((address, 53))
        except OSError:
            continue
        return pair
    raise AuthDnsUnavailable("no free 127.x.y.z:53 address pair")


def _zone_text(servers: tuple[str, str]) -> str:
    return (f"$ORIGIN {ZONE}.\n$TTL 60\n"
            f"@ SOA ns1.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 60\n"
            f"@ NS ns1.{ZONE}.\n@ NS ns2.{ZONE}.\n"
            f"ns1 A {servers[0]}\nns2 A {servers[1]}\n")


def _config(workdir: Path, address: str) -> str:
    return f"""server:
    rundir: "{workdir}"
    listen: {address}@53
database:
    storage: "{workdir}/db"
control:
    listen: "{workdir}/knot.sock"
log:
  - target: "{workdir}/knot.log"
    any: info
template:
  - id: default
    storage: "{workdir}"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: none
    semantic-checks: off
zone:
  - domain: {ZONE}
"""


@dataclass
class AuthZone:
    """``example.test`` served by two knotd processes (see the module docstring)."""

    workdir: Path
    servers: tuple[str, str]
    sockets: list[Path] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def knotc(self, index: int, *args: str) -> None:
        proc = subprocess.run(["knotc", "-s", str(self.sockets[index]), *args], capture_output=True, text=True,
                              timeout=10)
        if proc.returncode != 0 or "error" in proc.stdout.lower():
            raise AuthDnsUnavailable(f"knotc {' '.join(args)}: {proc.stdout}{proc.stderr}")

    def _edit(self, index: int, action: str, *record: str) -> None:
        self.knotc(index, "zone-begin", ZONE)
        try:
            self.knotc(index, action, ZONE, *record)
        except AuthDnsUnavailable:
            self.knotc(index, "zone-abort", ZONE)
            raise
        self.knotc(index, "zone-commit", ZONE)

    def set_txt(self, index: int, name: str, value: str) -> None:
        """Add TXT ``value`` at ``name`` (absolute, in example.test) on server ``index`` (0: ns1, 1: ns2)."""
        self._edit(index, "zone-set", name.rstrip(".") + ".", "60", "TXT", f'"{value}"')

    def clear_txt(self, index: int, name: str) -> None:
        """Remove every TXT record at ``name`` on server ``index`` (nothing there is fine)."""
        with contextlib.suppress(AuthDnsUnavailable):
            self._edit(index, "zone-unset", name.rstrip(".") + ".", "TXT")

    def stop(self) -> None:
        stop_all(self.procs)


def _wait_ready(zone: AuthZone, index: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        proc = zone.procs[index]
        if proc.poll() is not None:
            log = zone.workdir / f"ns{index + 1}" / "knot.log"
            raise AuthDnsUnavailable(f"knotd exited: {log.read_text(errors='replace')[-1500:] if log.exists() else ''}")
        status = subprocess.run(["knotc", "-s", str(zone.sockets[index]), "zone-status", ZONE],
                                capture_output=True, text=True, timeout=5)
        if status.returncode == 0 and "serial: 1" in status.stdout:
            return
        time.sleep(0.05)
    raise AuthDnsUnavailable("knotd did not load the zone in time")


def start_zone(workdir: Path) -> AuthZone:
    """Start the two name servers of example.test (see the module docstring)."""
    if shutil.which("knotd") is None or shutil.which("knotc") is None:
        raise AuthDnsUnavailable("knotd/knotc are not installed (Debian package knot)")
    if os.geteuid() != 0:
        raise AuthDnsUnavailable("binding port 53 needs root")
    servers = _free_address_pair()
    zone = AuthZone(workdir, servers)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        for index, address in enumerate(servers):
            folder = workdir / f"ns{index + 1}"
            (folder / "db").mkdir(parents=True)
            (folder / f"{ZONE}.zone").write_text(_zone_text(servers))
            (folder / "knot.conf").write_text(_config(folder, address))
            zone.sockets.append(folder / "knot.sock")
            zone.procs.append(subprocess.Popen(["knotd", "-c", str(folder / "knot.conf")],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for index in range(2):
            _wait_ready(zone, index, deadline)
    except BaseException:
        zone.stop()
        raise
    return zone


@pytest.fixture(scope="module")
def auth_zone() -> Iterator[AuthZone]:
    """example.test on two knotd name servers (ns1, ns2) at 127.x.y.1:53 and 127.x.y.2:53."""
    from tests.conftest import skip_or_fail

    workdir = Path(tempfile.mkdtemp(prefix="certkit-authdns-"))
    try:
        zone = start_zone(workdir)
    except AuthDnsUnavailable as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        skip_or_fail(str(exc))
        raise
    try:
        yield zone
    finally:
        zone.stop()
        shutil.rmtree(workdir, ignore_errors=True)
