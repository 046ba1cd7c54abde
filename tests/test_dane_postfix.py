"""A real DANE client accepts certkit's records: Postfix with ``smtp_tls_security_level = dane`` delivers to an
MX serving a certkit lineage, before and after a rollover, and refuses once the TLSA record is wrong.

Everything runs in a network namespace of its own (``ip netns``): there,
unbound can listen on port 53 for Postfix's resolver (``ip netns exec``
bind-mounts ``/etc/netns/NAME/resolv.conf``, with ``options trust-ad`` so
glibc passes the AD bit on), the MX listens on 127.0.0.1:25, and the
sending Postfix uses 127.0.0.2 so 127.0.0.1 is not "myself". Root only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.dns import DnsLab, start_dns_lab
from tests.servers.postfix import _date_back, _edit_alternate_dirs, unavailable_reason

pytestmark = [pytest.mark.integration, pytest.mark.postfix, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent
MX = "mx.dane.test"

SENDER_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = sender.certkit.test
mydomain = certkit.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.2
inet_protocols = ipv4
alias_maps =
alias_database =
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
smtp_dns_support_level = dnssec
smtp_tls_security_level = dane
smtp_tls_loglevel = 1
smtp_host_lookup = dns
# Every message looks the TLSA records up again: no cached connection, and a fresh smtp process
# each time (smtp(8) keeps TLSA records it looked up in memory for their TTL).
smtp_connection_cache_on_demand = no
max_use = 1
"""

SENDER_MASTER_CF = "".join(f"{line}\n" for line in [
    "pickup    unix  n - n 60 1 pickup", "cleanup   unix  n - n - 0 cleanup", "qmgr      unix  n - n 300 1 qmgr",
    "tlsmgr    unix  - - n 1000? 1 tlsmgr", "rewrite   unix  - - n - - trivial-rewrite",
    "bounce    unix  - - n - 0 bounce", "defer     unix  - - n - 0 bounce", "trace     unix  - - n - 0 bounce",
    "verify    unix  - - n - 1 verify", "flush     unix  n - n 1000? 0 flush", "proxymap  unix  - - n - - proxymap",
    "smtp      unix  - - n - - smtp", "relay     unix  - - n - - smtp", "showq     unix  n - n - - showq",
    "error     unix  - - n - - error", "retry     unix  - - n - - error", "discard   unix  - - n - - discard",
    "anvil     unix  - - n - 1 anvil", "scache    unix  - - n - 1 scache", "postlog   unix-dgram n - n - 1 postlogd",
])


@dataclass
class World:
    """The namespace and what runs in it."""

    name: str
    base: Path
    lab: DnsLab

    @property
    def wrap(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    @property
    def home(self) -> Path:
        return self.base / "home"

    @property
    def maillog(self) -> Path:
        return self.base / "postfix" / "maillog"

    def certkit(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO), "CERTKIT_HOME": str(self.home)}
        return subprocess.run([*self.wrap, sys.executable, "-m", "certkit", *args], capture_output=True, text=True,
                              env=env, timeout=120, stdin=subprocess.DEVNULL)

    def send(self, subject: str) -> None:
        message = f"From: a@sender.certkit.test\nTo: user@dane.test\nSubject: {subject}\n\nhello\n"
        subprocess.run([*self.wrap, "sendmail", "-C", str(self.base / "postfix" / "etc"), "-f",
                        "a@sender.certkit.test", "user@dane.test"], input=message, text=True, check=True, timeout=30)

    def resolved(self, name: str) -> list[str]:
        """What the namespace's validating resolver (unbound on port 53) answers now."""
        out = subprocess.run([*self.wrap, "kdig", "+short", name, "TLSA"], capture_output=True, text=True,
                             timeout=10).stdout
        return [line.strip().lower() for line in out.splitlines() if line.strip()]


def _netns(name: str) -> None:
    for argv in (["ip", "netns", "add", name], ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                 ["ip", "netns", "exec", name, "ip", "addr", "add", "127.0.0.2/8", "dev", "lo"]):
        subprocess.run(argv, check=True, capture_output=True, timeout=10)
    etc = Path("/etc/netns") / name
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions trust-ad\n")


def _drop_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
    shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
    with __import__("contextlib").suppress(OSError):
        Path("/etc/netns").rmdir()  # only when no other namespace uses it


def _start_sender(world: World) -> None:
    base = world.base / "postfix"
    for sub, mode in (("etc", 0o755), ("queue", 0o755), ("data", 0o700)):
        (base / sub).mkdir(parents=True, mode=mode)
    shutil.chown(base / "data", "postfix", "postfix")
    (base / "etc" / "main.cf").write_text(SENDER_MAIN_CF.format(base=base))
    (base / "etc" / "master.cf").write_text(SENDER_MASTER_CF)
    _date_back(base / "etc" / "main.cf", base / "etc" / "master.cf")
    world.maillog.touch()
    _edit_alternate_dirs(add=str(base / "etc"))
    res = subprocess.run([*world.wrap, "postfix", "-c", str(base / "etc"), "start"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr + world.maillog.read_text(errors="replace")


@pytest.fixture
def world() -> Iterator[World]:
    reason = unavailable_reason()
    if reason or os.geteuid() != 0 or shutil.which("ip") is None:
        from tests.conftest import skip_or_fail

        skip_or_fail(reason or "needs root and iproute2 (ip netns)")
    name = f"certkit-dane-{os.getpid()}"
    base = Path(tempfile.mkdtemp(prefix="certkit-dane-pf-", dir="/tmp"))
    base.chmod(0o755)  # the postfix user traverses it
    _netns(name)
    lab = None
    try:
        lab = start_dns_lab(base / "dns", ["ip", "netns", "exec", name], resolver_port=53)
        w = World(name, base, lab)
        _start_sender(w)
        yield w
    finally:
        etc = base / "postfix" / "etc"
        if etc.is_dir():
            subprocess.run(["ip", "netns", "exec", name, "postfix", "-c", str(etc), "stop"], capture_output=True,
                           timeout=60)
            _edit_alternate_dirs(remove=str(etc))
        if lab is not None:
            lab.stop()
        _drop_netns(name)
        shutil.rmtree(base, ignore_errors=True)


class Sink:
    """The MX on 127.0.0.1:25 in the namespace, serving the lineage's live certificate."""

    def __init__(self, world: World) -> None:
        live = world.home / "lineages" / MX / "live"
        self.proc = subprocess.Popen(
            [*world.wrap, "env", f"PYTHONPATH={REPO}", sys.executable, "-m", "tests.servers.mx_sink",
             str(live / "fullchain.pem"), str(live / "privkey.pem"), "25", str(world.base / "mail")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)


def deliver(world: World, subject: str) -> str:
    """Send one message and return the maillog lines of its first delivery attempt."""
    before = world.maillog.read_text(errors="replace")
    world.send(subject)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = world.maillog.read_text(errors="replace")[len(before):]
        if re.search(r"status=(sent|deferred|bounced)", new):
            return new
        time.sleep(0.2)
    raise AssertionError(f"no delivery attempt for {subject!r}:\n{world.maillog.read_text(errors='replace')}")


def test_postfix_dane_delivers_through_a_rollover(world: World) -> None:
    res = world.certkit("issue", "--cn", MX, "--key", "ec256", "--dane", "--dns-hook", str(world.lab.hook),
                        "--dane-nameserver", world.lab.nameserver)
    assert res.returncode == 0, res.stdout + res.stderr
    with Sink(world):
        first = deliver(world, "before the rollover")
    assert f"Verified TLS connection established to {MX}[127.0.0.1]:25" in first, first
    assert "status=sent (250 2.0.0 stored)" in first, first

    res = world.certkit("renew", "--force", MX)
    assert res.returncode == 0, res.stdout + res.stderr
    with Sink(world):  # the MX now serves version 2, whose key was the staged next key
        second = deliver(world, "after the rollover")
        assert f"Verified TLS connection established to {MX}[127.0.0.1]:25" in second, second
        assert "status=sent" in second, second

        # A record set that names another key: Postfix refuses to deliver (it really checks).
        world.lab.delete(f"_25._tcp.{MX}", "TLSA")
        world.lab.add(f"_25._tcp.{MX}", "TLSA", "3 1 1 " + "00" * 32)
        wrong = ["3 1 1 " + "00" * 32]
        deadline = time.monotonic() + 30
        while world.resolved(f"_25._tcp.{MX}") != wrong and time.monotonic() < deadline:
            time.sleep(0.2)  # until unbound's cached copy (TTL 1 s) has expired
        third = deliver(world, "wrong record")
    assert "no matching DANE TLSA records" in third and "status=deferred" in third, third
