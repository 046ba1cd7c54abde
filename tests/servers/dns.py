"""A DNSSEC lab on loopback: Knot DNS serving a signed zone (``dane.test``) and an unsigned one
(``plain.test``), and unbound validating with the signed zone's trust anchor.

``start_dns_lab(workdir)`` works outside pytest too::

    lab = start_dns_lab(Path("/tmp/lab"))
    lab.add("_25._tcp.mx.dane.test", "TLSA", "3 1 1 ...")   # a dynamic update; Knot re-signs
    ... kdig @127.0.0.1 -p {lab.resolver_port} +dnssec _25._tcp.mx.dane.test TLSA ...
    lab.stop()

Knot signs ``dane.test`` itself (automatic DNSSEC, ECDSA P-256, TTL 1 s
everywhere so caches expire at once) and takes RFC 2136 updates from
127.0.0.1; :attr:`DnsLab.hook` is a ``--dns-hook`` script that publishes
through those updates (knsupdate), TXT and TLSA alike. unbound runs with
``do-not-query-localhost: no``, stub zones pointing at Knot, the ``test.``
default local zone lifted, and the zone's KSK as its trust anchor - no
``domain-insecure``: ``plain.test`` is insecure only because nothing
anchors it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers.net import free_port

SIGNED, UNSIGNED, PARENT = "dane.test", "plain.test", "test"
TOOLS = ("knotd", "knsupdate", "kdig", "unbound")

ZONE = """$TTL 1
@ SOA ns1.{zone}. admin.{zone}. 1 60 60 3600 1
@ NS ns1.{zone}.
ns1 A 127.0.0.1
mx A 127.0.0.1
mta-sts A 127.0.0.1
@ MX 10 mx.{zone}.
"""

KNOT_CONF = """server:
    rundir: "{dir}/run"
    listen: 127.0.0.1@{port}
    user: {user}
database:
    storage: "{dir}/db"
log:
  - target: {dir}/knot.log
    any: info
acl:
  - id: local-update
    address: 127.0.0.1
    action: update
policy:
  - id: lab
    algorithm: ecdsap256sha256
    ksk-lifetime: 0
    zsk-lifetime: 0
    dnskey-ttl: 1
    zone-max-ttl: 1
template:
  - id: default
    storage: "{dir}/zones"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: changes
    acl: local-update
zone:
  - domain: {signed}
    dnssec-signing: on
    dnssec-policy: lab
  - domain: {unsigned}
  - domain: {parent}
    dnssec-signing: on
    dnssec-policy: lab
"""

PARENT_ZONE = """$TTL 1
@ SOA ns1.{signed}. admin.{signed}. 1 60 60 3600 1
@ NS ns1.{signed}.
{signed_label} NS ns1.{signed}.
{unsigned_label} NS ns1.{unsigned}.
"""

UNBOUND_CONF = """server:
    interface: 127.0.0.1
    port: {port}
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    use-syslog: no
    logfile: "{dir}/unbound.log"
    do-not-query-localhost: no
    trust-anchor-file: "{anchor}"
    cache-max-ttl: 1
    cache-max-negative-ttl: 1
    access-control: 127.0.0.0/8 allow
    local-zone: "test." nodefault
    qname-minimisation: no
    module-config: "validator iterator"
stub-zone:
    name: "{signed}"
    stub-addr: 127.0.0.1@{knot}
stub-zone:
    name: "{unsigned}"
    stub-addr: 127.0.0.1@{knot}
stub-zone:
    name: "{parent}"
    stub-addr: 127.0.0.1@{knot}
remote-control:
    control-enable: no
"""

HOOK = """#!/bin/sh
# --dns-hook for the lab: RFC 2136 updates to Knot (TXT and TLSA), every call logged.
set -eu
echo "$CERTKIT_DNS_ACTION ${{CERTKIT_DNS_TYPE:-TXT}} $CERTKIT_DNS_NAME $CERTKIT_DNS_VALUE" >> "{log}"
name="${{CERTKIT_DNS_NAME%.}}"
zone=$(echo "$name" | awk -F. '{{print $(NF-1)"."$NF}}')
type="${{CERTKIT_DNS_TYPE:-TXT}}"
value="$CERTKIT_DNS_VALUE"
[ "$type" = TXT ] && value="\\"$value\\""
if [ "$CERTKIT_DNS_ACTION" = present ]; then op="add $name. 1"; else op="delete $name."; fi
printf 'server 127.0.0.1 {port}\\nzone %s.\\nupdate %s %s %s\\nsend\\n' "$zone" "$op" "$type" "$value" | knsupdate
"""


@dataclass
class DnsLab:
    """The running lab: Knot (authoritative) and unbound (validating), their ports and files."""

    workdir: Path
    knot_port: int
    resolver_port: int
    anchor: Path  # dane.test's KSK (unbound's trust anchor)
    parent_anchor: Path  # test.'s KSK: dane.test is secured from it through a DS record
    hook: Path
    hook_log: Path
    procs: list[subprocess.Popen[bytes]]
    wrap: list[str] = field(default_factory=list)  # e.g. ["ip", "netns", "exec", NAME]: where the lab runs

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.knot_port}"

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.resolver_port}"

    def update(self, zone: str, *commands: str) -> None:
        """Send one RFC 2136 update (``update add ...`` lines) to Knot."""
        script = f"server 127.0.0.1 {self.knot_port}\nzone {zone}.\n" + "".join(f"{c}\n" for c in commands) + "send\n"
        subprocess.run([*self.wrap, "knsupdate"], input=script.encode(), check=True, timeout=10, capture_output=True)

    def add(self, name: str, rtype: str, value: str) -> None:
        self.update(_zone_of(name), f"update add {name}. 1 {rtype} {value}")

    def delete(self, name: str, rtype: str, value: str | None = None) -> None:
        self.update(_zone_of(name), f"update delete {name}. {rtype} {value or ''}".rstrip())

    def authoritative(self, name: str, rtype: str = "TLSA") -> list[str]:
        """What Knot itself serves (kdig +short), upper/lower case as Knot prints it."""
        out = subprocess.run([*self.wrap, "kdig", "@127.0.0.1", "-p", str(self.knot_port), "+short", "+norecurse",
                              name, rtype],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _zone_of(name: str) -> str:
    return ".".join(name.rstrip(".").split(".")[-2:])


def start_dns_lab(workdir: Path, wrap: Sequence[str] = (), resolver_port: int | None = None) -> DnsLab:
    """Start Knot and unbound on free loopback ports, with ``dane.test`` signed and anchored.

    ``wrap`` prefixes every command (``ip netns exec NAME`` runs the lab in a network namespace, where
    unbound can take ``resolver_port=53`` for programs that read resolv.conf).
    """
    for sub in ("run", "db", "zones"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    for zone in (SIGNED, UNSIGNED):
        (workdir / "zones" / f"{zone}.zone").write_text(ZONE.format(zone=zone))
    (workdir / "zones" / f"{PARENT}.zone").write_text(PARENT_ZONE.format(
        signed=SIGNED, unsigned=UNSIGNED, signed_label=SIGNED.split(".")[0], unsigned_label=UNSIGNED.split(".")[0]))
    knot_port, resolver_port = free_port(), resolver_port or free_port()
    import pwd

    user = pwd.getpwuid(os.getuid()).pw_name
    (workdir / "knot.conf").write_text(KNOT_CONF.format(dir=workdir, port=knot_port, user=user, signed=SIGNED,
                                                         unsigned=UNSIGNED, parent=PARENT))
    knot = subprocess.Popen([*wrap, "knotd", "-c", str(workdir / "knot.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    procs = [knot]
    lab = DnsLab(workdir, knot_port, resolver_port, workdir / "anchor.keys", workdir / "parent-anchor.keys",
                 workdir / "hook.sh",
                 workdir / "hook.log", procs, list(wrap))
    try:
        if not _answers(knot_port, list(wrap)):
            raise RuntimeError(f"knotd did not start: {(workdir / 'knot.log').read_text(errors='replace')[-2000:]}")
        ksk = _wait_ksk(knot_port, list(wrap), SIGNED)
        lab.anchor.write_text(ksk)
        lab.parent_anchor.write_text(_wait_ksk(knot_port, list(wrap), PARENT))
        lab.update(PARENT, f"update add {SIGNED}. 1 DS {_ds_of(ksk)}")  # the signed zone, secured from its parent
        (workdir / "unbound.conf").write_text(UNBOUND_CONF.format(dir=workdir, port=resolver_port, anchor=lab.anchor,
                                                                  signed=SIGNED, unsigned=UNSIGNED, parent=PARENT,
                                                                  knot=knot_port))
        procs.append(subprocess.Popen([*wrap, "unbound", "-c", str(workdir / "unbound.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL))
        if not _answers(resolver_port, list(wrap)):
            raise RuntimeError("unbound did not start: "
                               f"{(workdir / 'unbound.log').read_text(errors='replace')[-2000:]}")
        lab.hook.write_text(HOOK.format(log=lab.hook_log, port=knot_port))
        lab.hook.chmod(0o755)
    except BaseException:
        lab.stop()
        raise
    return lab


def _answers(port: int, wrap: list[str], timeout: float = 15) -> bool:
    """Whether a DNS server on 127.0.0.1:port answers (asked with kdig, so it works inside ``wrap`` too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = subprocess.run([*wrap, "kdig", "@127.0.0.1", "-p", str(port), "+time=1", "+retry=0", SIGNED, "SOA"],
                             capture_output=True, text=True, timeout=10)
        if "status: NOERROR" in res.stdout:
            return True
        time.sleep(0.1)
    return False


def _ds_of(ksk_line: str) -> str:
    """The DS record data (SHA-256) for a DNSKEY line in zone-file form."""
    import dns.dnssec
    import dns.rrset

    parts = ksk_line.split()
    rrset = dns.rrset.from_text(parts[0], 1, "IN", "DNSKEY", " ".join(parts[4:]))
    return str(dns.dnssec.make_ds(rrset.name, rrset[0], "SHA256"))


def _wait_ksk(port: int, wrap: list[str], zone: str) -> str:
    """A signed zone's KSK (DNSKEY flags 257) in zone-file form, once Knot serves it."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        out = subprocess.run([*wrap, "kdig", "@127.0.0.1", "-p", str(port), "+norecurse", zone, "DNSKEY"],
                             capture_output=True, text=True, timeout=10).stdout
        keys = [ln for ln in out.splitlines() if "\tDNSKEY\t257 " in ln and not ln.startswith(";")]
        if keys:
            return "\n".join(keys) + "\n"
        time.sleep(0.1)
    raise RuntimeError("knotd served no DNSKEY for the signed zone")


@pytest.fixture(scope="module")
def dns_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsLab]:
    """Knot + unbound for one test module (skips, or fails under CI, without the tools)."""
    from tests.conftest import skip_or_fail

    missing = [tool for tool in TOOLS if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()]
    if missing:
        skip_or_fail(f"{', '.join(missing)} not installed (Debian knot, knot-dnsutils, unbound)")
    workdir = tmp_path_factory.mktemp("dnslab")
    try:
        lab = start_dns_lab(workdir)
    except (RuntimeError, OSError) as exc:
        skip_or_fail(f"the DNS lab did not start: {exc}")
        raise
    try:
        yield lab
    finally:
        lab.stop()
