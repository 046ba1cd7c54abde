"""`check --dane`: the TLSA records at ``_PORT._tcp.HOST``, DNSSEC, and RFC 7671 matching of the served chain.

DNSSEC comes either from the validating resolver (``--resolver HOST:PORT``,
default the system's first resolver: its AD bit), or from certkit's own
validation against a trust anchor (``--dnssec-anchor FILE``: DS or DNSKEY
records in zone-file form, as unbound's ``trust-anchor-file`` takes them),
walking DS records down from the anchor's zone to the zone that signed
the TLSA records. Verdicts (check id ``dane-tlsa``): PASS when a usable
record (DANE-EE 3, DANE-TA 2) matches and the answer is DNSSEC-secure;
WARN when the records are not DNSSEC-secure (DANE clients ignore them);
FAIL when there are no records, none matches, or validation fails (bogus).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certkit import hostport, tlsa
from certkit.check.report import FAIL, PASS, WARN, CheckResult
from certkit.errors import UsageError

CHECK_ID = "dane-tlsa"
FIX = ("publish `certkit dane LINEAGE` in the DNSSEC-signed zone (3 1 1 for the current and next key), "
       "or deploy the certificate whose key the records name")
FIX_DNSSEC = "sign the zone (DNSSEC) and publish its DS at the parent: DANE clients ignore unsigned TLSA records"


@dataclass(frozen=True)
class DaneOptions:
    """Where to ask and how to trust the answer."""

    resolver: tuple[str, int] | None = None  # None: the system's first resolver
    anchor: str | None = None  # trust-anchor file (DS/DNSKEY); None: trust the resolver's AD bit
    timeout: float = 5.0


def parse_options(resolver: str | None, anchor: str | None, timeout: float) -> DaneOptions:
    """--resolver / --dnssec-anchor as given on the command line (exit 2 when malformed)."""
    server = hostport.dns_server(resolver, "--resolver") if resolver else None
    if anchor is not None:
        read_anchor(anchor)
    return DaneOptions(server, anchor, timeout)


def read_anchor(path: str) -> Any:
    """The trust anchor file as {zone name: rrset} (DS and/or DNSKEY); UsageError when unreadable or empty."""
    import dns.exception
    import dns.name
    import dns.rdataclass
    import dns.rdatatype
    import dns.rrset

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --dnssec-anchor {path}: {exc}", "give a file of DS or DNSKEY records") from None
    anchors: dict[Any, Any] = {}
    for line in lines:
        tokens = line.split(";", 1)[0].split()
        kinds = [i for i, t in enumerate(tokens) if t.upper() in ("DS", "DNSKEY")]
        if not tokens or not kinds:
            continue
        at = kinds[0]
        try:
            rrset = dns.rrset.from_text(tokens[0], 3600, "IN", tokens[at], " ".join(tokens[at + 1:]))
        except (dns.exception.DNSException, ValueError) as exc:
            raise UsageError(f"--dnssec-anchor {path}: cannot read {line.strip()!r} ({exc})",
                             "one DS or DNSKEY record a line, zone-file form") from None
        key = (rrset.name, rrset.rdtype)
        if key in anchors:
            anchors[key].union_update(rrset)
        else:
            anchors[key] = rrset
    if not anchors:
        raise UsageError(f"--dnssec-anchor {path} holds no DS or DNSKEY record",
                         "e.g. `kdig DNSKEY example.com | grep 257 > anchor` or the zone's DS records")
    return anchors


class Bogus(Exception):
    """DNSSEC validation failed: the answer must not be used."""


def _query(opts: DaneOptions, name: Any, rdtype: Any) -> Any:
    import dns.flags
    import dns.message
    import dns.query
    import dns.resolver

    host, port = opts.resolver or (dns.resolver.get_default_resolver().nameservers[0], 53)
    query = dns.message.make_query(name, rdtype, want_dnssec=True, payload=1232)
    if opts.anchor:
        query.flags |= dns.flags.CD  # certkit validates itself: the resolver's verdict is not needed
    else:
        query.flags |= dns.flags.AD  # ask for the AD bit (RFC 6840 section 5.7)
    response, _tcp = dns.query.udp_with_fallback(query, str(host), port=int(port), timeout=opts.timeout)
    return response


def _rrsets(response: Any, name: Any, rdtype: Any) -> tuple[Any, Any]:
    """(rrset, its RRSIG rrset) from the answer section, either None when absent."""
    import dns.rdatatype

    data = sigs = None
    for rrset in response.answer:
        if rrset.name == name and rrset.rdtype == rdtype:
            data = rrset
        elif rrset.name == name and rrset.rdtype == dns.rdatatype.RRSIG and rrset.covers == rdtype:
            sigs = rrset
    return data, sigs


def _trusted_keys(opts: DaneOptions, anchors: Any, zone: Any, depth: int = 0) -> Any:
    """The DNSKEY rrset of ``zone``, validated from the anchor (walking DS records down); Bogus otherwise."""
    import dns.dnssec
    import dns.rdatatype

    if depth > 8:
        raise Bogus(f"no chain of trust from the anchor down to {zone}")
    keys, key_sigs = _rrsets(_query(opts, zone, dns.rdatatype.DNSKEY), zone, dns.rdatatype.DNSKEY)
    if keys is None or key_sigs is None:
        raise Bogus(f"{zone} serves no signed DNSKEY records")
    if (zone, dns.rdatatype.DNSKEY) in anchors:
        entry = anchors[(zone, dns.rdatatype.DNSKEY)]
        trusted = [k for k in keys if k in entry]
    else:
        ds_set = anchors.get((zone, dns.rdatatype.DS))
        if ds_set is None:
            response = _query(opts, zone, dns.rdatatype.DS)
            ds_set, ds_sigs = _rrsets(response, zone, dns.rdatatype.DS)
            if ds_set is None or ds_sigs is None:
                raise Bogus(f"no signed DS records for {zone} (the zone is not secured from the anchor)")
            parent = ds_sigs[0].signer
            _validate(ds_set, ds_sigs, _trusted_keys(opts, anchors, parent, depth + 1))
        trusted = [k for k in keys for ds in ds_set
                   if dns.dnssec.make_ds(zone, k, ds.digest_type) == ds]
    if not trusted:
        raise Bogus(f"none of {zone}'s DNSKEY records matches the trust anchor")
    import dns.rrset

    anchor_keys = dns.rrset.from_rdata_list(zone, keys.ttl, trusted)
    _validate(keys, key_sigs, anchor_keys)
    return keys


def _validate(rrset: Any, sigs: Any, keys: Any) -> None:
    import dns.dnssec
    import dns.exception

    try:
        dns.dnssec.validate(rrset, sigs, {keys.name: keys})
    except dns.exception.ValidationFailure as exc:
        raise Bogus(f"the signature over {rrset.name} {rrset.rdtype.name} does not validate ({exc})") from None


@dataclass
class Lookup:
    """The TLSA records found and whether DNSSEC vouches for them."""

    records: list[tlsa.Tlsa]
    secure: bool
    how: str  # "AD bit from 127.0.0.1:53" / "validated against the anchor" / why not


def lookup(owner: str, opts: DaneOptions) -> Lookup:
    """The TLSA records at ``owner``; Bogus when validation fails, OSError/DNSException when unreachable."""
    import dns.flags
    import dns.name
    import dns.rcode
    import dns.rdatatype

    name = dns.name.from_text(owner)
    response = _query(opts, name, dns.rdatatype.TLSA)
    if response.rcode() == dns.rcode.SERVFAIL:
        raise Bogus("the resolver answered SERVFAIL (a validating resolver does so for bogus DNSSEC)")
    rrset, sigs = _rrsets(response, name, dns.rdatatype.TLSA)
    records = [tlsa.Tlsa(r.usage, r.selector, r.mtype, r.cert) for r in rrset] if rrset is not None else []
    if opts.anchor:
        if rrset is None:
            return Lookup([], False, "no records")
        if sigs is None:
            return Lookup(records, False, "the answer carries no RRSIG (unsigned zone)")
        _validate(rrset, sigs, _trusted_keys(opts, read_anchor(opts.anchor), sigs[0].signer))
        return Lookup(records, True, f"validated against {opts.anchor}")
    server = opts.resolver or ("system resolver", 53)
    if response.flags & dns.flags.AD:
        return Lookup(records, True, f"AD bit from {server[0]}:{server[1]}")
    return Lookup(records, False, f"no AD bit from {server[0]}:{server[1]} (unsigned, or not a validating resolver)")


def check(host: str, port: int, chain_der: Sequence[bytes], opts: DaneOptions) -> CheckResult:
    """The ``dane-tlsa`` result for a served chain (leaf first)."""
    import dns.exception

    owner = tlsa.owner_name(host, port)
    try:
        found = lookup(owner, opts)
    except Bogus as exc:
        return CheckResult(CHECK_ID, FAIL, f"{owner}: DNSSEC validation failed: {exc}", FIX_DNSSEC)
    except (dns.exception.DNSException, OSError) as exc:
        return CheckResult(CHECK_ID, FAIL, f"{owner}: no answer from the resolver ({exc or type(exc).__name__})",
                           "check --resolver HOST:PORT (a validating resolver, e.g. unbound)")
    if not found.records:
        return CheckResult(CHECK_ID, FAIL, f"no TLSA records at {owner}", FIX)
    hits = tlsa.matches(found.records, chain_der)
    listed = ", ".join(r.text()[:20] + "..." for r in found.records)
    if not found.secure:
        seen = f"{len(hits)} of {len(found.records)} match" if hits else "none matches"
        return CheckResult(CHECK_ID, WARN, f"{owner}: TLSA records ({listed}) are not DNSSEC-secure: {found.how}; "
                           f"{seen} the served chain", FIX_DNSSEC)
    if not hits:
        return CheckResult(CHECK_ID, FAIL, f"{owner}: no TLSA record ({listed}) matches the served chain "
                           f"(DNSSEC: {found.how})", FIX)
    first = min(hits, key=lambda m: m.record.usage != tlsa.DANE_EE)  # name the leaf's own record when it matches
    what = "the leaf" if first.position == 0 else f"chain certificate {first.position}"
    return CheckResult(CHECK_ID, PASS, f"{owner}: {tlsa.USAGE_NAMES[first.record.usage]} "
                       f"{first.record.text()[:24]}... matches {what}; {len(found.records)} record(s), "
                       f"DNSSEC: {found.how}")
