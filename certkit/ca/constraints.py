"""Name constraints of a private CA (RFC 5280 4.2.1.10): what it may sign for, as values and as the extension.

A permitted DNS subtree ``example.com`` covers ``example.com`` and every
name under it (``mail.example.com``, ``*.example.com``), which is how
OpenSSL, Windows CryptoAPI and NSS read it. IP ranges are CIDR blocks.
When DNS subtrees are given and no IP range is, every IP address is
excluded (``0.0.0.0/0`` and ``::/0``): otherwise the CA could still sign
for any address, since constraints only bind the name types they list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509

from certkit import names
from certkit.errors import UsageError

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_ALL_IPS = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


@dataclass(frozen=True)
class Constraints:
    """What a CA may sign for: DNS subtrees and IP ranges (both empty: anything)."""

    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    networks: tuple[IpNetwork, ...] = field(default=(), compare=False, repr=False)

    @property
    def unconstrained(self) -> bool:
        return not self.dns and not self.ips

    def describe(self) -> str:
        """``example.com, 10.0.0.0/8`` or ``any name`` for messages."""
        listed = [*self.dns, *self.ips]
        if not listed:
            return "any name (no name constraints)"
        if self.dns and not self.ips:
            listed.append("no IP addresses")
        return ", ".join(listed)


def parse(dns: Sequence[str], ips: Sequence[str]) -> Constraints:
    """Check ``--permit`` and ``--permit-ip`` values (exit 2 with the fix when one is wrong)."""
    subtrees: list[str] = []
    for raw in dns:
        ident = names.parse_name(raw)
        if ident.is_ip:
            raise UsageError(f"--permit {raw} is an IP address", f"use --permit-ip {raw}/32 for one address")
        if ident.is_wildcard:
            raise UsageError(f"--permit {raw} is a wildcard",
                             f"use --permit {ident.value[2:]} (it covers every name under it)")
        subtrees.append(ident.value)
    networks: list[IpNetwork] = []
    for raw in ips:
        try:
            networks.append(ipaddress.ip_network(raw.strip(), strict=True))
        except ValueError as exc:
            raise UsageError(f"--permit-ip {raw!r} is not a network ({exc})",
                             "write an address range like 10.0.0.0/8, 192.168.1.0/24 or fd00::/8") from None
    return Constraints(tuple(dict.fromkeys(subtrees)), tuple(dict.fromkeys(str(n) for n in networks)),
                       tuple(dict.fromkeys(networks)))


def extension(constraints: Constraints) -> x509.NameConstraints | None:
    """The NameConstraints extension for ``constraints`` (None when the CA is unconstrained)."""
    if constraints.unconstrained:
        return None
    permitted: list[x509.GeneralName] = [x509.DNSName(d) for d in constraints.dns]
    permitted += [x509.IPAddress(n) for n in constraints.networks]
    excluded: list[x509.GeneralName] | None = None
    if constraints.dns and not constraints.ips:
        excluded = [x509.IPAddress(n) for n in _ALL_IPS]
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded)


def outside(constraints: Constraints, identities: Sequence[names.Identity]) -> list[str]:
    """The names in ``identities`` that ``constraints`` do not permit (empty: all fine)."""
    if constraints.unconstrained:
        return []
    bad: list[str] = []
    for ident in identities:
        if ident.is_ip:
            address = ipaddress.ip_address(ident.value)
            ok = any(address.version == n.version and address in n for n in constraints.networks)
        elif not constraints.dns:
            ok = True  # only IP ranges listed: DNS names are not constrained
        else:
            host = ident.value[2:] if ident.is_wildcard else ident.value
            ok = any(host == d or host.endswith("." + d) for d in constraints.dns)
        if not ok:
            bad.append(ident.value)
    return bad
