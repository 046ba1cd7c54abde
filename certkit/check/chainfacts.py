"""Facts about the served chain as a whole: its order, duplicates, and the leaf's keyUsage.

These need no extra connection: they read the certificates the main
session's handshake received (leaf first, in the order the server sent
them). Names are compared as DER bytes, as OpenSSL's chain building
does first; the authority/subject key identifiers must agree when both
are present (RFC 5280 4.2.1.1-2).
"""

from __future__ import annotations

from dataclasses import dataclass

from certkit.check.der import BIT_STRING, OCTET_STRING, SEQUENCE, _children, _expect, _name, _tlv, iter_extensions
from certkit.check.report import FAIL, PASS, WARN, CheckResult

# KeyUsage bit positions (RFC 5280 4.2.1.3).
KEY_USAGE_BITS = ["digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment", "keyAgreement",
                  "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"]

FIX_CHAIN_ORDER = ("serve the leaf first, then each issuer once, in order (fullchain.pem as certkit exports it: "
                   "Postfix smtpd_tls_chain_files = privkey.pem, fullchain.pem; aiosmtpd: "
                   "load_cert_chain(fullchain.pem)); "
                   "remove duplicates and certificates of other chains")
FIX_KEY_USAGE = ("re-issue the certificate: certkit issue --cn HOST sets keyUsage digitalSignature (EC) or "
                 "digitalSignature, keyEncipherment (RSA)")


@dataclass(frozen=True)
class ServedCert:
    """The parts of one served certificate that chain order and key usage depend on."""

    der: bytes
    subject: str
    subject_raw: bytes
    issuer_raw: bytes
    subject_key_id: bytes | None
    authority_key_id: bytes | None
    key_usage: frozenset[str] | None  # None: no keyUsage extension


def read_served(der: bytes) -> ServedCert:
    """Read a DER certificate's names, key identifiers and keyUsage.

    Raises:
        ValueError: not a certificate the DER reader understands.
    """
    _, cs, ce = _expect(_tlv(der, 0, len(der)), SEQUENCE)
    tbs = _children(der, *_expect(_children(der, cs, ce)[0], SEQUENCE)[1:])
    if tbs and tbs[0][0] == 0xA0:
        tbs = tbs[1:]
    if len(tbs) < 6:
        raise ValueError("short TBSCertificate")
    issuer, subject = tbs[2], tbs[4]
    ski = aki = None
    usage: frozenset[str] | None = None
    for ext_oid, vs, ve in iter_extensions(der, tbs[6:]):
        if ext_oid == "2.5.29.14":
            ski = der[slice(*_expect(_tlv(der, vs, ve), OCTET_STRING)[1:])]
        elif ext_oid == "2.5.29.35":
            kids = _children(der, *_expect(_tlv(der, vs, ve), SEQUENCE)[1:])
            aki = next((der[ks:ke] for ktag, ks, ke in kids if ktag == 0x80), None)
        elif ext_oid == "2.5.29.15":
            usage = _key_usage(der[slice(*_expect(_tlv(der, vs, ve), BIT_STRING)[1:])])
    return ServedCert(der, _name(der, *_expect(subject, SEQUENCE)[1:]), der[subject[1]:subject[2]],
                      der[issuer[1]:issuer[2]], ski, aki, usage)


def _key_usage(bits: bytes) -> frozenset[str]:
    value = bits[1:]  # first byte: unused bits count
    return frozenset(name for i, name in enumerate(KEY_USAGE_BITS)
                     if i // 8 < len(value) and value[i // 8] & (0x80 >> (i % 8)))


def issued_by(child: ServedCert, parent: ServedCert) -> bool:
    if child.issuer_raw != parent.subject_raw:
        return False
    return child.authority_key_id is None or parent.subject_key_id is None or \
        child.authority_key_id == parent.subject_key_id


def chain_order_result(chain: list[bytes]) -> CheckResult:
    """WARN when the served chain has duplicates or a certificate not issued by the next one."""
    check_id = "chain-order"
    try:
        served = [read_served(der) for der in chain]
    except (ValueError, IndexError) as exc:
        return CheckResult(check_id, WARN, f"the served chain could not be read: {exc}")
    if not served:
        return CheckResult(check_id, WARN, "the served chain is not available from this TLS library")
    problems: list[str] = []
    unique: list[ServedCert] = []
    for position, cert in enumerate(served, 1):
        first = next((i for i, seen in enumerate(unique, 1) if seen.der == cert.der), None)
        if first is not None:
            problems.append(f"certificate {position} ({cert.subject}) duplicates certificate {first}")
        else:
            unique.append(cert)
    for i in range(len(unique) - 1):
        child, parent = unique[i], unique[i + 1]
        if issued_by(child, parent):
            continue
        where = next((j for j, c in enumerate(unique) if j != i and issued_by(child, c)), None)
        if where is not None:
            problems.append(f"{child.subject} is followed by {parent.subject}, but its issuer is served as "
                            f"certificate {where + 1} (out of order)")
        else:
            problems.append(f"{parent.subject} did not issue {child.subject} (a certificate of another chain)")
    if problems:
        return CheckResult(check_id, WARN, "; ".join(problems), FIX_CHAIN_ORDER)
    if len(served) == 1:
        return CheckResult(check_id, PASS, "one certificate served (the leaf)")
    path = " <- ".join(c.subject for c in served)
    return CheckResult(check_id, PASS, f"{len(served)} certificates, each issued by the next: {path}")


def key_usage_result(leaf_der: bytes, key_kind: str | None) -> CheckResult:
    """keyUsage against the key type: RFC 5246/8446 (RSA), RFC 5480 3 and RFC 8813 (EC), RFC 8410 (EdDSA)."""
    check_id = "key-usage"
    try:
        usage = read_served(leaf_der).key_usage
    except (ValueError, IndexError) as exc:
        return CheckResult(check_id, WARN, f"keyUsage could not be read: {exc}")
    if usage is None:
        return CheckResult(check_id, PASS, "no keyUsage extension (any use allowed, RFC 5280 4.2.1.3)")
    listed = ", ".join(name for name in KEY_USAGE_BITS if name in usage) or "none"
    signs, encrypts = "digitalSignature" in usage, "keyEncipherment" in usage
    if key_kind == "rsa":
        if not (signs or encrypts):
            return CheckResult(check_id, FAIL, f"RSA key with keyUsage {listed}: neither digitalSignature nor "
                               "keyEncipherment, so no TLS key exchange may use it", FIX_KEY_USAGE)
        if not signs:
            return CheckResult(check_id, WARN, f"RSA key with keyUsage {listed}: without digitalSignature only "
                               "static-RSA suites may use it (no ECDHE, no TLS 1.3)", FIX_KEY_USAGE)
        return CheckResult(check_id, PASS, f"RSA key, keyUsage {listed}")
    if key_kind in ("ec", "ed25519", "ed448"):
        label = "EC" if key_kind == "ec" else key_kind.capitalize()
        if not signs:
            return CheckResult(check_id, FAIL, f"{label} key with keyUsage {listed}: without digitalSignature it "
                               "cannot sign the handshake (RFC 8813)", FIX_KEY_USAGE)
        if encrypts:
            return CheckResult(check_id, WARN, f"{label} key with keyUsage {listed}: keyEncipherment must not be set "
                               "for an EC key (RFC 5480 3, RFC 8813); strict clients refuse it", FIX_KEY_USAGE)
        return CheckResult(check_id, PASS, f"{label} key, keyUsage {listed}")
    return CheckResult(check_id, PASS, f"{key_kind or 'unknown'} key, keyUsage {listed}")


def certificate_findings(chain: list[bytes], key_kind: str | None) -> list[CheckResult]:
    """The checks that read the served chain: key-usage (leaf) and chain-order."""
    if not chain:
        return []
    return [key_usage_result(chain[0], key_kind), chain_order_result(chain)]
