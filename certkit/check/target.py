"""Check targets: `smtp://`, `submission://`, `smtps://` URLs and bare `host:port`."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cached_property

from certkit import hostport
from certkit.errors import UsageError

# scheme -> (default port, mode). Mode decides the policy checks:
# "smtp" (STARTTLS, MX-style), "submission" (STARTTLS + RFC 6409 policy), "smtps" (RFC 8314 implicit TLS).
SCHEMES = {
    "smtp": (25, "smtp"),
    "submission": (587, "submission"),
    "smtps": (465, "smtps"),
}


@dataclass(frozen=True)
class Target:
    """One endpoint to check.

    Attributes:
        url: the text exactly as the user gave it (reports repeat it).
        host: host name or IP address (no brackets).
        port: TCP port.
        mode: "smtp", "submission" or "smtps".
    """

    url: str
    host: str
    port: int
    mode: str

    @property
    def implicit_tls(self) -> bool:
        return self.mode == "smtps"

    @property
    def submission(self) -> bool:
        """Submission policy applies: port 587 service or implicit-TLS submission (RFC 8314)."""
        return self.mode in ("submission", "smtps")

    @cached_property
    def host_is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def _bad(url: str, why: str) -> UsageError:
    return UsageError(
        f"invalid target {url!r}: {why}",
        "use smtp://HOST[:25], submission://HOST[:587], smtps://HOST[:465] or HOST:PORT",
    )


def _split_host_port(url: str, rest: str) -> tuple[str, int | None]:
    try:
        host, port_text = hostport.split(rest.rstrip("/"))
    except hostport.HostPortError as exc:
        raise _bad(url, str(exc)) from None
    if not host:
        raise _bad(url, "no host")
    if "/" in host or "@" in host or " " in host:
        raise _bad(url, "a host name cannot contain '/', '@' or spaces")
    _check_host(url, host)
    if port_text is None:
        return host, None
    try:
        return host, hostport.port_number(port_text)
    except hostport.HostPortError as exc:
        raise _bad(url, str(exc)) from None


def _check_host(url: str, host: str) -> None:
    """An IP address, or a name the resolver can be asked about (labels of 1-63 octets, IDN allowed)."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        encoded = host.rstrip(".").encode("idna")
    except UnicodeError:
        raise _bad(url, f"{host!r} is not a host name (empty or over-long label)") from None
    if not encoded or len(encoded) > 253:
        raise _bad(url, f"{host!r} is not a host name")


def parse_target(url: str) -> Target:
    """Parse a target URL.

    A bare ``host:port`` means implicit TLS for port 465 and STARTTLS
    otherwise; port 587 also gets the submission policy.

    Raises:
        UsageError: unknown scheme, missing host, bad port.
    """
    text = url.strip()
    if not text:
        raise _bad(url, "empty")
    if "://" in text:
        scheme, rest = text.split("://", 1)
        scheme = scheme.lower()
        if scheme not in SCHEMES:
            raise _bad(url, f"unknown scheme {scheme!r}")
        default_port, mode = SCHEMES[scheme]
        host, port = _split_host_port(url, rest)
        return Target(url, host, port or default_port, mode)
    host, port = _split_host_port(url, text)
    if port is None:
        raise _bad(url, "a target without a scheme needs a port (HOST:PORT)")
    mode = "smtps" if port == 465 else "submission" if port == 587 else "smtp"
    return Target(url, host, port, mode)
