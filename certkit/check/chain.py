"""`chain-complete`: does the chain the server sends lead to a trust anchor?

A client builds a path from the certificates the server sends to one it
already trusts; it does not fetch missing intermediates (mail clients and
MTAs do not follow AIA). Pinning the leaf (`--expect`) proves identity, not
that other clients can build that path (issue 11.4), so this is judged on its
own: the served certificates are chained by name, leaf first, until one is
self-signed (the end of any path) or names an issuer that is a trust anchor
(the system store or `--cafile`). Signatures are OpenSSL's business in
`chain-trust`; here only completeness is judged, and the certificate that is
missing is named.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from certkit.check.der import parse_certificate
from certkit.check.report import FAIL, PASS, WARN, CheckResult

_PEM_END = "-----END CERTIFICATE-----"
FIX_CHAIN = ("serve the intermediate certificates with the leaf: Postfix smtpd_tls_chain_files = privkey.pem, "
             "fullchain.pem; Dovecot ssl_cert = </path/fullchain.pem; aiosmtpd: ctx.load_cert_chain(fullchain.pem, "
             "privkey.pem); if the issuer is your private root, check with --cafile ROOT")


@dataclass(frozen=True)
class ChainEnd:
    """Where the served chain ends.

    Attributes:
        subject: the last served certificate on the path from the leaf.
        issuer: its issuer (the certificate a client must already have).
        complete: the end is self-signed or its issuer is a trust anchor.
        anchor: the trust anchor's name, or "" when the end is self-signed or missing.
        served: how many served certificates the path uses.
    """

    subject: str
    issuer: str
    complete: bool
    anchor: str
    served: int


def pem_certificates(text: str) -> list[bytes]:
    """DER of every certificate in a PEM text (others skipped)."""
    out = []
    for block in text.split(_PEM_END)[:-1]:
        start = block.find("-----BEGIN CERTIFICATE-----")
        if start >= 0:
            try:
                out.append(ssl.PEM_cert_to_DER_cert(block[start:] + _PEM_END + "\n"))
            except ValueError:
                continue
    return out


def anchor_subjects(ders: list[bytes]) -> frozenset[str]:
    """The subject names of trust anchors (certificates this reader cannot parse are left out)."""
    names = set()
    for der in ders:
        try:
            names.add(str(parse_certificate(der)["subject"]))
        except (ValueError, IndexError, KeyError):
            continue
    return frozenset(names)


def system_anchor_ders() -> list[bytes]:
    """The system trust store's certificates as OpenSSL loads them by default (its CA file)."""
    ctx = ssl.create_default_context()
    return [bytes(der) for der in ctx.get_ca_certs(binary_form=True)]


def chain_end(served: list[bytes], anchors: Callable[[], frozenset[str]]) -> ChainEnd:
    """Follow the served chain from the leaf (served[0]) by issuer name and say where it ends.

    ``anchors`` is asked only when the path does not end at a served self-signed
    certificate (reading the system store costs ~50 ms; a self-signed leaf needs none).

    Raises:
        ValueError: the leaf cannot be parsed.
    """
    facts = [_facts(der) for der in served]
    current = facts[0]
    if current is None:
        raise ValueError("the served leaf cannot be parsed")
    used = {0}
    while True:
        if current["self_signed"]:
            return ChainEnd(current["subject"], current["issuer"], True, "", len(used))
        if current["issuer"] in anchors():
            return ChainEnd(current["subject"], current["issuer"], True, current["issuer"], len(used))
        following = next((i for i, f in enumerate(facts)
                          if i not in used and f is not None and f["subject"] == current["issuer"]), None)
        if following is None:
            return ChainEnd(current["subject"], current["issuer"], False, "", len(used))
        used.add(following)
        current = facts[following]
        assert current is not None


def _facts(der: bytes) -> dict[str, Any] | None:
    try:
        return parse_certificate(der)
    except (ValueError, IndexError, KeyError):
        return None


def judge(served: list[bytes], anchors: Callable[[], frozenset[str]], where: str) -> CheckResult:
    """The chain-complete result for the served chain; ``where`` names the anchors (for the detail)."""
    try:
        end = chain_end(served, anchors)
    except ValueError as exc:
        return CheckResult("chain-complete", WARN, f"could not follow the served chain: {exc}")
    except OSError as exc:
        return CheckResult("chain-complete", WARN, f"could not read the trust anchors in {where}: {exc}")
    count = "the served certificate" if end.served == 1 else f"the {end.served} served certificates"
    if end.complete and end.anchor:
        return CheckResult("chain-complete", PASS, f"{count} lead{'s' if end.served == 1 else ''} to the trust "
                           f"anchor {end.anchor} ({where})")
    if end.complete:
        return CheckResult("chain-complete", PASS, f"{count} end{'s' if end.served == 1 else ''} at the self-signed "
                           f"{end.subject}")
    return CheckResult("chain-complete", FAIL, f"incomplete chain: the served chain ends at {end.subject}, whose "
                       f"issuer {end.issuer} is neither served nor a trust anchor in {where}: clients cannot build "
                       "a path", FIX_CHAIN)
