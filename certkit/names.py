"""Certificate names: DNS names, wildcards, IDN and IP addresses.

Names are checked once, here, and come out as :class:`Identity` values in
their wire form (lower-case A-labels for DNS, compressed text for IPs).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from certkit.errors import NameError_

MAX_NAME = 253  # RFC 1035 2.3.4, without the trailing dot
MAX_LABEL = 63
MAX_CN = 64  # RFC 5280 ub-common-name

_LDH = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


@dataclass(frozen=True)
class Identity:
    """One certificate name.

    Attributes:
        value: wire form: lower-case A-label DNS name, or compressed IP text.
        kind: "dns" or "ip".
        display: what the user typed after normalising (U-labels kept), for messages.
    """

    value: str
    kind: str
    display: str

    @property
    def is_wildcard(self) -> bool:
        return self.kind == "dns" and self.value.startswith("*.")

    @property
    def is_ip(self) -> bool:
        return self.kind == "ip"

    def __str__(self) -> str:
        return self.value


def _reject(raw: str, why: str, fix: str = "use a host name like mail.example.com") -> NameError_:
    return NameError_(f"invalid name {raw!r}: {why}", fix)


def _to_alabel(label: str, raw: str) -> str:
    if label.isascii():
        return label.lower()
    import idna  # imported here: only IDN input needs it

    try:
        return idna.encode(label, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise _reject(raw, f"not a valid internationalised label ({exc})") from exc


def parse_name(raw: str) -> Identity:
    """Check one name and return its :class:`Identity`.

    Accepts DNS names (one trailing dot dropped), a wildcard as the whole
    left-most label, internationalised names (converted to punycode, IDNA
    2008 with UTS 46 mapping), IPv4 and IPv6 (brackets allowed).

    Raises:
        NameError_: with the reason and the fix (exit 2).
    """
    if not isinstance(raw, str) or raw == "":
        raise _reject(str(raw), "the name is empty")
    if any(ch.isspace() for ch in raw):
        raise _reject(raw, "names cannot contain spaces, tabs or line breaks")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        raise _reject(raw, "names cannot contain control characters")

    text = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        return Identity(address.compressed, "ip", address.compressed)

    name = raw[:-1] if raw.endswith(".") else raw
    if name == "" or name.startswith(".") or ".." in name:
        raise _reject(raw, "empty label (two dots in a row, or a leading dot)")
    labels = name.split(".")
    wildcard = labels[0] == "*"
    if wildcard:
        labels = labels[1:]
        if len(labels) < 2:
            raise _reject(raw, "a wildcard needs at least two labels after '*.'",
                          "use *.example.com, not *.com or *")
    if any("*" in label for label in labels):
        raise _reject(raw, "'*' is allowed only as the whole left-most label",
                      "use *.example.com")
    alabels = [_to_alabel(label, raw) for label in labels]
    for label in alabels:
        if len(label) > MAX_LABEL:
            raise _reject(raw, f"label {label[:20]!r}... is longer than {MAX_LABEL} characters")
        if "_" in label:
            raise _reject(raw, "underscores are not allowed in host names")
        if not _LDH.match(label):
            raise _reject(raw, f"label {label!r} may hold only letters, digits and inner hyphens")
    if alabels[-1].isdigit():
        raise _reject(raw, "the last label cannot be all digits (not an IP address either)")
    value = ".".join((["*"] if wildcard else []) + alabels)
    if len(value) > MAX_NAME:
        raise _reject(raw, f"{len(value)} characters, more than the {MAX_NAME} DNS allows")
    display = name.lower() if name.isascii() else name
    return Identity(value, "dns", display)


def parse_names(cn: str, sans: Iterable[str] = ()) -> list[Identity]:
    """The CN first, then every SAN, checked and without duplicates.

    The CN is always also a SAN (browsers and MTAs ignore the CN when SANs
    exist, RFC 6125 6.4.4).
    """
    result: list[Identity] = []
    seen: set[str] = set()
    for raw in [cn, *sans]:
        ident = parse_name(raw)
        if ident.value not in seen:
            seen.add(ident.value)
            result.append(ident)
    return result


def common_name_for(identities: list[Identity]) -> str | None:
    """The subject CN: the first name, or None when it exceeds 64 characters.

    A longer name still appears as a SAN (which is what clients match);
    the certificate then has an empty subject, as RFC 5280 4.2.1.6 allows
    when the SAN extension is critical.
    """
    first = identities[0].value
    return first if len(first) <= MAX_CN else None
