"""Waiting until dns-01 TXT records are visible, before the CA is asked to look (RFC 8555 section 8.4).

``--dns-resolver`` says where to look:

- ``HOST[:PORT]``: one resolver, asked with recursion (what the CA's resolvers will do, minus their cache).
- ``authoritative`` (or ``authoritative@HOST[:PORT]``): every name server of the record's zone, asked
  directly without recursion (RD=0); the zone cut and its NS addresses are looked up through the
  system resolver (or HOST[:PORT]). A record counts as visible only when all of them serve it: the
  CA may ask any of them, and a lagging secondary is the usual reason a validation fails.

``--dns-wait SECONDS`` (lineage setting ``dns_wait``, else env ``CERTKIT_DNS_WAIT``, else 180) bounds
the wait; 0 turns polling off. While waiting, a status line says what is still missing; at the
deadline the error names each record, the values expected, every server asked and what it answered.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from certkit import envvars, hostport
from certkit.acme.dns01 import TxtRecord
from certkit.callbacks import Echo
from certkit.errors import AcmeError, UsageError
from certkit.polling import Backoff
from certkit.progress import StatusLine

DEFAULT_WAIT = 180.0
MAX_WAIT = 3600.0
AUTHORITATIVE = "authoritative"
QUERY_TIMEOUT = 2.0
DNS_PORT = 53  # name servers are asked on the DNS port (RFC 1035 4.2)


@dataclass(frozen=True)
class Where:
    """A parsed --dns-resolver: a resolver, or the zone's own servers (found through ``lookup``)."""

    text: str
    authoritative: bool
    address: tuple[str, int] | None  # the resolver (or, authoritative: the lookup resolver; None = system)


def parse_resolver(spec: str) -> tuple[str, int]:
    """``HOST[:PORT]`` / ``[v6]:PORT`` -> (host, port), default port 53."""
    return hostport.dns_server(spec, "--dns-resolver")


def parse_where(spec: str) -> Where:
    """Parse --dns-resolver (see the module docstring); UsageError (exit 2) when malformed."""
    head, at, rest = spec.partition("@")
    if head.strip().lower() == AUTHORITATIVE:
        if at and not rest.strip():
            raise UsageError(f"--dns-resolver {spec!r}: nothing after '@'",
                             "write authoritative@HOST[:PORT] (the resolver that finds the zone's servers)")
        return Where(spec, True, parse_resolver(rest.strip()) if at else None)
    return Where(spec, False, parse_resolver(spec))


def wait_seconds(setting: float | None) -> float:
    """The propagation wait: the lineage's ``dns_wait``, else env CERTKIT_DNS_WAIT, else 180 s."""
    if setting is not None:
        value, source = float(setting), "--dns-wait"
    else:
        value, source = envvars.seconds(envvars.DNS_WAIT, DEFAULT_WAIT, allow_zero=True), envvars.DNS_WAIT
    if value > MAX_WAIT:
        raise UsageError(f"{source} {value:g} is longer than {MAX_WAIT:g} seconds",
                         "give at most 3600 (the CA's authorization would wait that long too)")
    return value


@dataclass(frozen=True)
class Server:
    """One DNS server to ask: its label in messages, address, port, whether to ask for recursion."""

    label: str
    host: str
    port: int
    recursive: bool


@dataclass
class Answer:
    """What one server said about one record name: the TXT values, or why there are none."""

    server: Server
    values: frozenset[str] = frozenset()
    problem: str = ""  # what went wrong, as a predicate ("did not answer ..."); "" for an answer with authority
    unreachable: bool = False  # an address this host has no route to (IPv6 on an IPv4-only host): not counted

    def describe(self, wanted: set[str]) -> str:
        if self.problem:
            return f"{self.server.label} {self.problem}"
        if not self.values:
            return f"{self.server.label} answered nothing (no TXT record of that name)"
        missing = wanted - self.values
        if not missing:
            return f"{self.server.label} serves it"
        others = sorted(self.values - wanted)
        shown = ", ".join(f'"{v}"' for v in others[:3]) + (", ..." if len(others) > 3 else "")
        if others and missing == wanted:
            return f"{self.server.label} answered other values: {shown}"
        return f"{self.server.label} lacks {len(missing)} of the {len(wanted)} values" + \
            (f" (it also has {shown})" if others else "")


def _query(server: Server, name: str, timeout: float) -> Answer:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    query = dns.message.make_query(name, dns.rdatatype.TXT)
    if not server.recursive:
        query.flags &= ~dns.flags.RD
    try:
        response, _tcp = dns.query.udp_with_fallback(query, server.host, port=server.port, timeout=timeout)
    except dns.exception.Timeout:
        return Answer(server, problem=f"did not answer (timeout after {timeout:g} s)")
    except OSError as exc:
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            # This host cannot reach that address family at all; the CA's resolvers can. Say so, do not wait on it.
            return Answer(server, problem=f"could not be asked from here ({exc.strerror}); not counted",
                          unreachable=True)
        return Answer(server, problem=f"could not be asked ({exc.strerror or exc})")
    except dns.exception.DNSException as exc:
        return Answer(server, problem=f"could not be asked ({exc})")
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return Answer(server, problem="answered NXDOMAIN (no such name)")
    if rcode != dns.rcode.NOERROR:
        return Answer(server, problem=f"answered {dns.rcode.to_text(rcode)}")
    if not server.recursive and not response.flags & dns.flags.AA:
        return Answer(server, problem="answered without authority (a referral: it does not serve the zone)")
    values = {b"".join(rdata.strings).decode("ascii", "replace")
              for rrset in response.answer if rrset.rdtype == dns.rdatatype.TXT for rdata in rrset}
    return Answer(server, frozenset(values))


def _lookup_resolver(where: Where, timeout: float) -> Any:
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=where.address is None)
    if where.address is not None:
        resolver.nameservers = [where.address[0]]
        resolver.port = where.address[1]
    resolver.lifetime = timeout
    return resolver


def zone_servers(where: Where, name: str, timeout: float = QUERY_TIMEOUT * 2) -> tuple[str, list[Server]]:
    """The zone holding ``name`` and the addresses of its name servers (asked without recursion).

    Raises:
        LookupError: the zone or its servers cannot be found (the message says what failed).
    """
    import dns.exception
    import dns.resolver

    asked = f"{where.address[0]}:{where.address[1]}" if where.address else "the system resolver"
    try:
        resolver = _lookup_resolver(where, timeout)
        zone = dns.resolver.zone_for_name(name, resolver=resolver, lifetime=timeout)
        ns_names = sorted(str(r.target) for r in resolver.resolve(zone, "NS"))
    except (dns.exception.DNSException, OSError) as exc:
        raise LookupError(f"cannot find the zone of {name.rstrip('.')} and its name servers through {asked}: "
                          f"{exc}") from exc
    servers: list[Server] = []
    for ns in ns_names:
        for rdtype in ("A", "AAAA"):
            try:
                addresses = [r.address for r in resolver.resolve(ns, rdtype)]
            except (dns.exception.DNSException, OSError):
                continue
            servers += [Server(f"{ns.rstrip('.')} ({a})", a, DNS_PORT, False) for a in sorted(addresses)]
    if not servers:
        raise LookupError(f"the name servers of {str(zone).rstrip('.')} ({', '.join(ns_names)}) have no "
                          f"address that {asked} knows")
    return str(zone), servers


@dataclass
class _Poll:
    """One propagation wait: what is wanted, where it is looked for, what was seen last."""

    where: Where
    wanted: dict[str, set[str]]
    servers: dict[str, list[Server]] = field(default_factory=dict)
    lookup_problem: dict[str, str] = field(default_factory=dict)
    answers: dict[str, list[Answer]] = field(default_factory=dict)

    def servers_for(self, name: str, timeout: float) -> list[Server]:
        if name not in self.servers:
            if not self.where.authoritative:
                assert self.where.address is not None
                host, port = self.where.address
                return [Server(f"{host}:{port}" if port != DNS_PORT else host, host, port, True)]
            try:
                self.servers[name] = zone_servers(self.where, name, 2 * timeout)[1]
            except LookupError as exc:
                self.lookup_problem[name] = str(exc)
                return []
            self.lookup_problem.pop(name, None)
        return self.servers[name]

    def missing(self, timeout: float) -> list[str]:
        """Ask every server about every record still missing; the names still missing."""
        still = []
        for name, values in self.wanted.items():
            self.answers[name] = [_query(s, name, timeout) for s in self.servers_for(name, timeout)]
            counted = [a for a in self.answers[name] if not a.unreachable]
            if not counted or any(a.problem or not values <= a.values for a in counted):
                still.append(name)
        return still

    def report(self, names: Sequence[str]) -> str:
        lines = []
        for name in names:
            values = self.wanted[name]
            shown = " and ".join(f'"{v}"' for v in sorted(values))
            lines.append(f"  {name.rstrip('.')} TXT {shown}:")
            if name in self.lookup_problem:
                lines.append(f"    {self.lookup_problem[name]}")
            lines += [f"    {a.describe(values)}" for a in self.answers.get(name, [])]
        return "\n".join(lines)


def wait_visible(where_spec: str, records: Sequence[TxtRecord], timeout: float, *,
                 progress: StatusLine | None = None, echo: Echo | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
    """Poll until every record's values are served where ``where_spec`` says; AcmeError at the deadline.

    ``timeout`` 0 returns at once (polling off). ``progress`` shows the state while waiting (else
    plain lines through ``echo``, when given).
    """
    if timeout <= 0 or not records:
        return
    where = parse_where(where_spec)
    status = progress or StatusLine(echo or (lambda _line: None))
    poll = _Poll(where, {})
    for record in records:
        poll.wanted.setdefault(record.name.rstrip(".") + ".", set()).add(record.value)
    start = clock()
    backoff = Backoff(deadline=start + timeout, cap=5.0, sleep=sleep, clock=clock)
    place = "the zone's name servers" if where.authoritative else where.text
    total = len(poll.wanted)
    while True:
        left = max(0.2, min(QUERY_TIMEOUT, backoff.remaining()))
        missing = poll.missing(left)
        elapsed = clock() - start
        if not missing:
            status.done(f"dns-01: {total} TXT record name(s) visible at {place} after {elapsed:.1f} s")
            return
        status.update(f"dns-01: waiting for {len(missing)} of {total} TXT record name(s) at {place} "
                      f"({missing[0].rstrip('.')}), {elapsed:.0f} of {timeout:g} s")
        if not backoff.wait():
            status.done()
            raise AcmeError(f"the dns-01 TXT record(s) did not appear at {place} within {timeout:g} s:\n"
                            + poll.report(missing) + "\n", hint_for_wait(timeout))


def hint_for_wait(timeout: float) -> str:
    return ("make the --dns-hook publish the TXT record in the zone those servers serve (run it by hand with "
            "CERTKIT_DNS_ACTION=present, CERTKIT_DNS_NAME and CERTKIT_DNS_VALUE set, then ask them with "
            f"`kdig @SERVER NAME TXT`); if it does and the provider is slow, raise --dns-wait (now {timeout:g} s)")
