"""MTA-STS (RFC 8461) and TLS-RPT (RFC 8460): the policy file and the two TXT records that announce them.

The policy id is derived from the policy text (its SHA-256, 20 hex digits),
so it changes exactly when the policy changes - senders re-fetch the
policy when the id in ``_mta-sts.DOMAIN`` changes, and only then.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from certkit import names
from certkit.errors import UsageError

MODES = ("testing", "enforce", "none")
DEFAULT_MAX_AGE = 604800  # one week, as RFC 8461's examples; senders cache the policy this long
MAX_MAX_AGE = 31557600  # RFC 8461 section 3.2: at most one year


@dataclass(frozen=True)
class Policy:
    """One domain's MTA-STS policy."""

    domain: str
    mx: tuple[str, ...]
    mode: str = "testing"
    max_age: int = DEFAULT_MAX_AGE
    rua: tuple[str, ...] = field(default_factory=tuple)

    def text(self) -> str:
        """The policy file (``.well-known/mta-sts.txt``), CRLF-terminated lines as RFC 8461's examples."""
        lines = ["version: STSv1", f"mode: {self.mode}", *(f"mx: {m}" for m in self.mx), f"max_age: {self.max_age}"]
        return "".join(line + "\r\n" for line in lines)

    @property
    def id(self) -> str:
        return hashlib.sha256(self.text().encode()).hexdigest()[:20]

    def sts_record(self) -> tuple[str, str]:
        return f"_mta-sts.{self.domain}", f"v=STSv1; id={self.id}"

    def tlsrpt_record(self) -> tuple[str, str]:
        return f"_smtp._tls.{self.domain}", "v=TLSRPTv1; rua=" + ",".join(self.rua)

    def zone_lines(self, ttl: int = 3600) -> list[str]:
        return [f'{name}. {ttl} IN TXT "{value}"' for name, value in (self.sts_record(), self.tlsrpt_record())]

    def to_json(self) -> dict[str, Any]:
        sts, rpt = self.sts_record(), self.tlsrpt_record()
        return {"domain": self.domain, "mode": self.mode, "mx": list(self.mx), "max_age": self.max_age,
                "id": self.id, "policy": self.text(), "policy_url": f"https://mta-sts.{self.domain}/.well-known/"
                "mta-sts.txt", "records": [{"name": sts[0], "type": "TXT", "value": sts[1]},
                                          {"name": rpt[0], "type": "TXT", "value": rpt[1]}],
                "certificate_name": f"mta-sts.{self.domain}"}


def make_policy(domain: str, mx: Sequence[str], mode: str = "testing", max_age: int = DEFAULT_MAX_AGE,
                rua: Sequence[str] = ()) -> Policy:
    """A checked policy: MX patterns are host names or ``*.`` plus one label (RFC 8461 section 3.2)."""
    domain = names.parse_name(domain).value
    if domain.startswith("*."):
        raise UsageError(f"{domain} is a wildcard", "give the mail domain, e.g. example.com")
    if not mx:
        raise UsageError("no --mx given", "name every MX host: --mx mx1.example.com --mx mx2.example.com")
    patterns = []
    for host in mx:
        ident = names.parse_name(host)
        if ident.kind != "dns":
            raise UsageError(f"--mx {host} is not a host name", "MTA-STS matches MX names, not addresses")
        patterns.append(ident.value)
    if mode not in MODES:
        raise UsageError(f"--mode {mode} is not one of {', '.join(MODES)}", "start with --mode testing")
    if not 0 < max_age <= MAX_MAX_AGE:
        raise UsageError(f"--max-age {max_age} is out of range", f"1 to {MAX_MAX_AGE} seconds (one year)")
    reports = list(rua) or [f"mailto:tlsrpt@{domain}"]
    for uri in reports:
        if not uri.startswith(("mailto:", "https://")) or any(c in uri for c in ' ;,"\\') or ord(min(uri)) < 33:
            raise UsageError(f"--rua {uri!r} is not a mailto: or https: URI", "e.g. --rua mailto:tlsrpt@example.com")
    return Policy(domain, tuple(dict.fromkeys(patterns)), mode, max_age, tuple(reports))
