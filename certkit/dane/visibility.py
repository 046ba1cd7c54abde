"""What the zone's authoritative servers serve for a TLSA name: the records and their TTL.

A rollover must not wait on a cache: certkit asks the authoritative
servers directly (no recursion), every one of them, because a resolver
may reach any. The servers are the lineage's ``nameservers`` when set
(``issue --dane-nameserver HOST:PORT``), else the zone's NS records found
through the system resolver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from certkit import hostport
from certkit.errors import OperationError

QUERY_TIMEOUT = 2.0
ATTEMPTS = 3


@dataclass
class Answer:
    """One server's TLSA answer: the record texts (``3 1 1 hex``), their TTL, or the error."""

    server: str
    texts: set[str] = field(default_factory=set)
    ttl: int = 0
    error: str | None = None


@dataclass
class Visibility:
    """Whether a record is served by every authoritative server, and the longest TTL they give it."""

    answers: list[Answer]

    def missing(self, text: str) -> list[str]:
        """The servers not serving ``text`` (or not answering)."""
        return [a.server for a in self.answers if a.error is not None or text not in a.texts]

    @property
    def ttl(self) -> int:
        """The longest TTL any server gives the record set (what the TTL x 2 wait is measured in)."""
        return max((a.ttl for a in self.answers if a.error is None), default=0)

    def served(self) -> set[str]:
        """Records any server serves."""
        return {t for a in self.answers for t in a.texts}


def servers(owner: str, configured: Sequence[str]) -> list[tuple[str, int]]:
    """The authoritative servers to ask about ``owner``: the configured ones, else the zone's NS (port 53)."""
    if configured:
        return [hostport.dns_server(spec, "--dane-nameserver") for spec in configured]
    import dns.exception
    import dns.resolver

    try:
        zone = dns.resolver.zone_for_name(owner)
        found: list[tuple[str, int]] = []
        for ns in dns.resolver.resolve(zone, "NS"):
            for rtype in ("A", "AAAA"):
                try:
                    found.extend((str(a), 53) for a in dns.resolver.resolve(ns.target, rtype))
                except dns.resolver.NoAnswer:
                    continue
    except dns.exception.DNSException as exc:
        raise OperationError(f"cannot find the authoritative servers of {owner}: {exc}",
                             "give them with `certkit issue ... --dane --dane-nameserver HOST:PORT`") from exc
    if not found:
        raise OperationError(f"the zone of {owner} lists no reachable name server",
                             "give them with --dane-nameserver HOST:PORT")
    return found


def ask(server: tuple[str, int], owner: str, timeout: float = QUERY_TIMEOUT) -> Answer:
    """The TLSA records ``server`` itself serves for ``owner`` (recursion off; TCP when the answer is truncated)."""
    import dns.exception
    import dns.flags
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    host, port = server
    label = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    query = dns.message.make_query(owner.rstrip(".") + ".", dns.rdatatype.TLSA)
    query.flags &= ~dns.flags.RD
    for attempt in range(ATTEMPTS):  # a lost UDP datagram is not a missing record
        try:
            response, _tcp = dns.query.udp_with_fallback(query, host, port=port, timeout=timeout)
            break
        except dns.exception.Timeout as exc:
            if attempt == ATTEMPTS - 1:
                return Answer(label, error=f"no answer ({exc})")
        except (dns.exception.DNSException, OSError) as exc:
            return Answer(label, error=str(exc) or type(exc).__name__)
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return Answer(label, error=dns.rcode.to_text(response.rcode()))
    answer = Answer(label)
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.TLSA:
            answer.ttl = max(answer.ttl, rrset.ttl)
            answer.texts.update(f"{r.usage} {r.selector} {r.mtype} {r.cert.hex()}" for r in rrset)
    return answer


def look(owner: str, configured: Sequence[str]) -> Visibility:
    """Ask every authoritative server of ``owner``."""
    return Visibility([ask(server, owner) for server in servers(owner, configured)])
