"""The served certificate's checks: name-match, expected-cert, key, signature, EKU, time-left, chain-complete.

Pure judgements on what the main handshake produced (the parsed leaf,
:class:`~certkit.check.certinfo.CertFacts`, and the served chain); nothing
here touches the network. chain-order, key-usage and the other chain facts
live in :mod:`certkit.check.chainfacts`.
"""

from __future__ import annotations

import datetime as dt

from certkit.check import certinfo
from certkit.check import chain as chain_check
from certkit.check.certinfo import CertFacts
from certkit.check.checklist import FIX
from certkit.check.options import CheckOptions
from certkit.check.report import FAIL, PASS, WARN, CheckReport
from certkit.check.target import Target


def certificate_checks(target: Target, opts: CheckOptions, report: CheckReport, facts: CertFacts) -> None:
    name = opts.name or target.host
    served = ", ".join(facts.names) or "none"
    if certinfo.name_matches(name, facts.dns_names, facts.ip_names):
        report.add("name-match", PASS, f"{name} matches the certificate's SAN ({served})")
    else:
        report.add("name-match", FAIL, f"{name} is not among the certificate's SAN names ({served}); the subject "
                   "CN is not used (RFC 6125)", FIX["name-match"])
    expected = opts.expected_der()
    if expected is not None or opts.expected_sha256:
        import hashlib

        want = hashlib.sha256(expected).hexdigest() if expected is not None else str(opts.expected_sha256)
        if facts.sha256 == want:
            report.add("expected-cert", PASS, f"served the expected certificate (sha256 {want[:16]}...)")
        else:
            report.add("expected-cert", FAIL, f"served sha256 {facts.sha256[:16]}... ({facts.subject}, until "
                       f"{facts.not_after:%Y-%m-%d}), expected sha256 {want[:16]}...", FIX["expected-cert"])
    _key_checks(opts, report, facts)
    now = opts.now() if opts.now else dt.datetime.now(dt.timezone.utc)
    lifetime = (facts.not_after - facts.not_before).total_seconds()
    left = (facts.not_after - now).total_seconds()
    days = left / 86400
    until = f"{facts.not_after:%Y-%m-%d %H:%M} UTC"
    if now < facts.not_before:
        report.add("time-left", FAIL, f"not valid before {facts.not_before:%Y-%m-%d %H:%M} UTC", FIX["time-left"])
    elif left <= 0:
        report.add("time-left", FAIL, f"EXPIRED on {until}", FIX["time-left"])
    elif left < 48 * 3600:
        report.add("time-left", FAIL, f"expires in {left / 3600:.0f} hours ({until})", FIX["time-left"])
    elif lifetime > 0 and left < lifetime / 3:
        report.add("time-left", WARN, f"{days:.0f} days left, under a third of its lifetime (until {until})",
                   FIX["time-left"])
    else:
        share = f", {100 * left / lifetime:.0f}% of its lifetime" if lifetime > 0 else ""
        report.add("time-left", PASS, f"{days:.0f} days left (until {until}{share})")


def _key_checks(opts: CheckOptions, report: CheckReport, facts: CertFacts) -> None:
    bits, kind = facts.key_bits or 0, facts.key_kind
    if kind == "rsa" and bits < 2048:
        report.add("key-strength", FAIL, f"RSA {bits} bits: breakable, refused by current clients",
                   FIX["key-strength"])
    elif kind == "rsa" and bits == 2048 and opts.strict:
        report.add("key-strength", WARN, "RSA 2048 bits (--strict asks for 3072+ or ECDSA)", FIX["key-strength"])
    elif kind == "dsa" or (kind == "ec" and bits < 256):
        report.add("key-strength", FAIL, f"{facts.key}: too weak", FIX["key-strength"])
    else:
        report.add("key-strength", PASS, f"{facts.key}")
    sig = (facts.signature_hash or "").lower()
    if sig in ("sha1", "md5", "md2", "md4") or "sha1" in sig or "md5" in sig:
        report.add("signature-hash", FAIL, f"signed with {sig.upper()}: forgeable, refused by current clients",
                   FIX["signature-hash"])
    else:
        report.add("signature-hash", PASS, f"signed with {sig.upper() or facts.key}")
    if facts.eku is None:
        report.add("eku-server-auth", PASS, "no extended key usage (valid for any purpose)")
    elif "serverAuth" in facts.eku or "anyExtendedKeyUsage" in facts.eku:
        report.add("eku-server-auth", PASS, "serverAuth extended key usage present")
    else:
        report.add("eku-server-auth", FAIL, f"extended key usage {', '.join(facts.eku)} lacks serverAuth",
                   FIX["eku-server-auth"])


def chain_complete(opts: CheckOptions, report: CheckReport, served: list[bytes]) -> None:
    """chain-complete: the served chain must lead to a trust anchor, whatever --expect pins (issue 11.4)."""
    where = f"--cafile {opts.cafile}" if opts.cafile else "the system trust store"
    trusted = report.get("chain-trust")
    if not opts.cafile and not opts.expected_pem and trusted is not None and trusted.status == PASS:
        # OpenSSL just built the path to the system store: no need to read the store again (~50 ms).
        report.add("chain-complete", PASS, f"the served chain leads to a trust anchor in {where}")
        return
    result = chain_check.judge(served, opts.anchor_names, where)
    report.add(result.id, result.status, result.detail, result.fix)


__all__ = ["certificate_checks", "chain_complete"]
