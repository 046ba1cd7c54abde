"""dns-01 (RFC 8555 section 8.4) through the user's hook, with optional resolver polling.

The hook protocol itself (environment, ordering, cleanup) is
:mod:`certkit.dnshook`, shared with DANE's TLSA records; here the records
are TXT records named ``_acme-challenge.<domain>``. Cleanup always runs,
and its failures are reported, not fatal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from certkit import dnshook, hostport
from certkit.errors import AcmeError
from certkit.polling import Backoff

PROPAGATION_TIMEOUT = 180.0


# A TXT record for one authorization: the hook protocol's record (type TXT, the default).
TxtRecord = dnshook.DnsRecord
check_runnable = dnshook.check_runnable
present = dnshook.present
cleanup = dnshook.cleanup


def parse_resolver(spec: str) -> tuple[str, int]:
    """``HOST[:PORT]`` / ``[v6]:PORT`` -> (host, port), default port 53."""
    return hostport.dns_server(spec, "--dns-resolver")


def wait_visible(resolver: str, records: Sequence[TxtRecord], timeout: float = PROPAGATION_TIMEOUT,
                 sleep: Callable[[float], None] = time.sleep) -> None:
    """Poll ``resolver`` until every record's value is served; AcmeError at the deadline."""
    import dns.exception
    import dns.message
    import dns.query
    import dns.rdatatype

    host, port = parse_resolver(resolver)
    wanted: dict[str, set[str]] = {}
    for record in records:
        wanted.setdefault(record.name.rstrip(".") + ".", set()).add(record.value)
    backoff = Backoff(deadline=time.monotonic() + timeout, cap=5.0, sleep=sleep)
    while True:
        missing: list[str] = []
        for name, values in wanted.items():
            seen: set[str] = set()
            try:
                answer = dns.query.udp(dns.message.make_query(name, dns.rdatatype.TXT), host, port=port, timeout=2)
                for rrset in answer.answer:
                    for rdata in rrset:
                        seen.add(b"".join(rdata.strings).decode("ascii", "replace"))
            except (dns.exception.DNSException, OSError):
                pass
            if not values <= seen:
                missing.append(name.rstrip("."))
        if not missing:
            return
        if not backoff.wait():
            raise AcmeError(f"the TXT records {', '.join(missing)} did not appear at {resolver} "
                            f"within {timeout:.0f} s",
                            "check that the DNS hook really publishes them (and on which DNS servers)")
