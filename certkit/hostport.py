"""``HOST:PORT`` as users type it: ``mail.example.com:587``, ``[2001:db8::1]:587``, ``2001:db8::1``, ``587``.

One parser for every option that takes an address (`smtpd --listen`,
`--dns-resolver`, `--submission-listen`, check URLs), so IPv6 brackets and
port ranges behave the same everywhere.
"""

from __future__ import annotations

from certkit.errors import UsageError


class HostPortError(ValueError):
    """The text is not HOST[:PORT]; the message says what is wrong (callers add the option's name)."""


def split(text: str) -> tuple[str, str | None]:
    """(host, port text or None). Brackets are removed from an IPv6 host; a bare IPv6 address has no port.

    Raises:
        HostPortError: an unclosed ``[`` or something other than ``:PORT`` after ``]``.
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise HostPortError("unclosed '['")
        host, tail = text[1:end], text[end + 1:]
        if tail and not tail.startswith(":"):
            raise HostPortError("expected ':PORT' after ']'")
        return host, (tail[1:] if tail else None)
    if text.count(":") > 1:  # a bare IPv6 address
        return text, None
    if ":" in text:
        host, _, port = text.rpartition(":")
        return host, port
    return text, None


def port_number(text: str, *, allow_zero: bool = False) -> int:
    """A TCP port from text; HostPortError unless 1-65535 (0 too with ``allow_zero``: "any free port")."""
    low = 0 if allow_zero else 1
    if not text.isdigit() or not low <= int(text) <= 65535:
        raise HostPortError(f"port {text!r} is not a number from {low} to 65535")
    return int(text)


def parse(text: str, *, default_host: str | None = None, default_port: int | None = None,
          allow_zero: bool = False) -> tuple[str, int]:
    """(host, port) with defaults for what is left out; a text of digits only is a port.

    Raises:
        HostPortError: malformed, no host and no default, no port and no default, port out of range.
    """
    text = text.strip()
    if text.isdigit() and default_host is not None:
        return default_host, port_number(text, allow_zero=allow_zero)
    host, port_text = split(text)
    host = host or (default_host or "")
    if not host:
        raise HostPortError("no host")
    if port_text is None or port_text == "":
        if default_port is None:
            raise HostPortError("no port")
        return host, default_port
    return host, port_number(port_text, allow_zero=allow_zero)


def dns_server(spec: str, option: str) -> tuple[str, int]:
    """A DNS server option (``HOST[:PORT]``, default port 53) -> (IP address, port); a name is resolved once.

    Raises:
        UsageError: malformed, or a host name that does not resolve (the message names ``option``).
    """
    import ipaddress
    import socket

    try:
        host, port = parse(spec, default_port=53)
    except HostPortError as exc:
        raise UsageError(f"{option} {spec!r} is not HOST[:PORT] ({exc})", f"e.g. {option} 8.8.8.8:53") from None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            host = str(socket.getaddrinfo(host, None)[0][4][0])
        except OSError as exc:
            raise UsageError(f"{option} host {host!r} does not resolve", "use the server's IP") from exc
    return host, port
