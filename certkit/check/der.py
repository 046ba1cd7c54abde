"""Just enough DER to read what `certkit check` reports about a served certificate.

Why not cryptography: importing it costs about 22 ms here, a quarter of a
whole `certkit check` run (bench/check). The audit needs a handful of fields
- names, validity, key type and size, signature hash, SAN, EKU - which a
small reader of X.509's fixed structure (RFC 5280 4.1) gives directly. The
tests compare every field with cryptography's reading of the zoo's
certificates.

Malformed input raises ValueError (never IndexError or a silent wrong value).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

SEQUENCE, SET, INTEGER, BIT_STRING, OCTET_STRING, OID, BOOLEAN = 0x30, 0x31, 0x02, 0x03, 0x04, 0x06, 0x01
UTC_TIME, GENERALIZED_TIME = 0x17, 0x18

NAME_ATTRS = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
    "2.5.4.5": "serialNumber", "2.5.4.97": "organizationIdentifier", "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
}
SIG_HASH = {
    "1.2.840.113549.1.1.2": "md2", "1.2.840.113549.1.1.4": "md5", "1.2.840.113549.1.1.5": "sha1",
    "1.2.840.113549.1.1.14": "sha224", "1.2.840.113549.1.1.11": "sha256", "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512", "1.2.840.10045.4.1": "sha1", "1.2.840.10045.4.3.1": "sha224",
    "1.2.840.10045.4.3.2": "sha256", "1.2.840.10045.4.3.3": "sha384", "1.2.840.10045.4.3.4": "sha512",
    "1.2.840.10040.4.3": "sha1", "2.16.840.1.101.3.4.3.1": "sha224", "2.16.840.1.101.3.4.3.2": "sha256",
    "1.3.101.112": "", "1.3.101.113": "",  # Ed25519 / Ed448 sign the message itself
}
HASH_OIDS = {
    "1.3.14.3.2.26": "sha1", "2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512", "2.16.840.1.101.3.4.2.4": "sha224", "1.2.840.113549.2.5": "md5",
}
RSA_PSS = "1.2.840.113549.1.1.10"
CURVES = {"1.2.840.10045.3.1.7": 256, "1.3.132.0.34": 384, "1.3.132.0.35": 521, "1.3.132.0.33": 224,
          "1.2.840.10045.3.1.1": 192, "1.3.132.0.10": 256}
EKU_NAMES = {
    "1.3.6.1.5.5.7.3.1": "serverAuth", "1.3.6.1.5.5.7.3.2": "clientAuth", "1.3.6.1.5.5.7.3.3": "codeSigning",
    "1.3.6.1.5.5.7.3.4": "emailProtection", "1.3.6.1.5.5.7.3.8": "timeStamping", "1.3.6.1.5.5.7.3.9": "OCSPSigning",
    "2.5.29.37.0": "anyExtendedKeyUsage",
}


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at ``pos``."""
    if pos + 2 > end:
        raise ValueError("truncated DER")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > end:
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise ValueError("DER element runs past its container")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        tag, s, e = _tlv(data, start, end)
        out.append((tag, s, e))
        start = e
    return out


def _expect(item: tuple[int, int, int], tag: int) -> tuple[int, int, int]:
    if item[0] != tag:
        raise ValueError(f"expected DER tag {tag:#x}, found {item[0]:#x}")
    return item


def _oid(data: bytes, s: int, e: int) -> str:
    if s >= e:
        raise ValueError("empty OID")
    first = data[s]
    arcs = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    value = 0
    for byte in data[s + 1 : e]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    return ".".join(str(a) for a in arcs)


def _string(tag: int, raw: bytes) -> str:
    if tag == 0x1E:
        return raw.decode("utf-16-be", "replace")
    if tag == 0x1C:
        return raw.decode("utf-32-be", "replace")
    if tag == 0x14:
        return raw.decode("latin-1")
    return raw.decode("utf-8", "replace")


def _escape(value: str) -> str:
    """RFC 4514 2.4 escaping, as cryptography's rfc4514_string does it."""
    out = "".join("\\" + ch if ch in ',+"\\<>;' else ch for ch in value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out


def _name(data: bytes, s: int, e: int) -> str:
    rdns = []
    for _, rs, re_ in _children(data, s, e):  # SET OF AttributeTypeAndValue
        parts = []
        for _, as_, ae in _children(data, rs, re_):
            kids = _children(data, as_, ae)
            if len(kids) < 2:
                raise ValueError("bad name attribute")
            oid = _oid(data, *_expect(kids[0], OID)[1:])
            tag, vs, ve = kids[1]
            parts.append(f"{NAME_ATTRS.get(oid, oid)}={_escape(_string(tag, data[vs:ve]))}")
        rdns.append("+".join(parts))
    return ",".join(reversed(rdns)) or "(empty)"  # RFC 4514: most specific first


def _time(tag: int, raw: bytes) -> dt.datetime:
    text = raw.decode("ascii")
    if tag == UTC_TIME:
        year = int(text[:2])
        text = ("19" if year >= 50 else "20") + text  # RFC 5280 4.1.2.5.1
    elif tag != GENERALIZED_TIME:
        raise ValueError("bad time")
    if not text.endswith("Z") or len(text) != 15:
        raise ValueError(f"unsupported time {text!r}")
    if not text[:14].isdigit():
        raise ValueError(f"unsupported time {text!r}")
    # int slices, not strptime: strptime costs more than the rest of the certificate
    return dt.datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]),
                       int(text[12:14]), tzinfo=dt.timezone.utc)


def _int(raw: bytes) -> int:
    return int.from_bytes(raw, "big", signed=True)


@lru_cache(maxsize=64)  # a fleet often serves one certificate from many hosts; results are not mutated
def parse_certificate(der: bytes) -> dict[str, Any]:
    """The fields certkit check reports, from a DER certificate.

    Returns a dict with subject, issuer, serial (hex), not_before, not_after,
    key_kind, key_bits, signature_hash ("" for EdDSA, the OID when unknown),
    dns_names, ip_names, eku (None without the extension), self_signed.

    Raises:
        ValueError: not a DER X.509 certificate this reader understands.
    """
    _, cs, ce = _expect(_tlv(der, 0, len(der)), SEQUENCE)
    cert = _children(der, cs, ce)
    if len(cert) != 3:
        raise ValueError("a certificate has three parts")
    tbs = _children(der, *_expect(cert[0], SEQUENCE)[1:])
    if tbs and tbs[0][0] == 0xA0:  # [0] EXPLICIT version
        tbs = tbs[1:]
    if len(tbs) < 6:
        raise ValueError("short TBSCertificate")
    serial = _int(der[_expect(tbs[0], INTEGER)[1] : tbs[0][2]])
    issuer_item, validity, subject_item, spki = tbs[2], tbs[3], tbs[4], tbs[5]
    not_before, not_after = _validity(der, validity)
    key_kind, key_bits = _key(der, spki)
    signature_hash = _signature_hash(der, cert[1])
    dns, ips, eku = _extensions(der, tbs[6:])
    issuer_raw = der[issuer_item[1] : issuer_item[2]]
    subject_raw = der[subject_item[1] : subject_item[2]]
    return {
        "subject": _name(der, *_expect(subject_item, SEQUENCE)[1:]),
        "issuer": _name(der, *_expect(issuer_item, SEQUENCE)[1:]),
        "serial": format(serial, "x"),
        "not_before": not_before,
        "not_after": not_after,
        "key_kind": key_kind,
        "key_bits": key_bits,
        "signature_hash": signature_hash,
        "dns_names": dns,
        "ip_names": ips,
        "eku": eku,
        "self_signed": issuer_raw == subject_raw,
    }


def _validity(der: bytes, validity: tuple[int, int, int]) -> tuple[dt.datetime, dt.datetime]:
    """(notBefore, notAfter) of the Validity SEQUENCE."""
    times = _children(der, *_expect(validity, SEQUENCE)[1:])
    if len(times) != 2:
        raise ValueError("bad validity")
    not_before, not_after = (_time(t, der[s:e]) for t, s, e in times)
    return not_before, not_after


def _signature_hash(der: bytes, algorithm: tuple[int, int, int]) -> str:
    """The hash of the signatureAlgorithm ("" for EdDSA; the OID when unknown)."""
    sig_alg = _children(der, *_expect(algorithm, SEQUENCE)[1:])
    sig_oid = _oid(der, *_expect(sig_alg[0], OID)[1:])
    sig_hash = SIG_HASH.get(sig_oid)
    if sig_oid == RSA_PSS:
        sig_hash = _pss_hash(der, sig_alg)
    return sig_oid if sig_hash is None else sig_hash


def _extensions(der: bytes, rest: list[tuple[int, int, int]]) -> tuple[list[str], list[str], list[str] | None]:
    """(SAN DNS names, SAN IP addresses, EKU names or None) from what follows subjectPublicKeyInfo."""
    dns: list[str] = []
    ips: list[str] = []
    eku: list[str] | None = None
    for ext_oid, vs, ve in iter_extensions(der, rest):
        if ext_oid == "2.5.29.17":
            _, ss, se = _expect(_tlv(der, vs, ve), SEQUENCE)
            for gtag, gs, ge in _children(der, ss, se):
                if gtag == 0x82:
                    dns.append(der[gs:ge].decode("ascii", "replace"))
                elif gtag == 0x87:
                    ips.append(str(ipaddress.ip_address(der[gs:ge])))
        elif ext_oid == "2.5.29.37":
            _, ss, se = _expect(_tlv(der, vs, ve), SEQUENCE)
            oids = [_oid(der, *_expect(item, OID)[1:]) for item in _children(der, ss, se)]
            eku = [EKU_NAMES.get(o, o) for o in oids]
    return dns, ips, eku


def iter_extensions(der: bytes, fields: Iterable[tuple[int, int, int]]) -> Iterator[tuple[str, int, int]]:
    """(OID, start, end of the value's contents) of each extension among a TBSCertificate's fields."""
    for tag, s, e in fields:
        if tag != 0xA3:  # [3] EXPLICIT Extensions
            continue
        for _, xs, xe in _children(der, *_expect(_tlv(der, s, e), SEQUENCE)[1:]):
            parts = _children(der, xs, xe)
            ext_oid = _oid(der, *_expect(parts[0], OID)[1:])
            _, vs, ve = _expect(parts[-1], OCTET_STRING)
            yield ext_oid, vs, ve


def _key(der: bytes, spki: tuple[int, int, int]) -> tuple[str | None, int | None]:
    parts = _children(der, *_expect(spki, SEQUENCE)[1:])
    alg = _children(der, *_expect(parts[0], SEQUENCE)[1:])
    alg_oid = _oid(der, *_expect(alg[0], OID)[1:])
    _, bs, be = _expect(parts[1], BIT_STRING)
    if alg_oid == "1.2.840.113549.1.1.1":  # rsaEncryption: BIT STRING holds RSAPublicKey
        _, rs, re_ = _expect(_tlv(der, bs + 1, be), SEQUENCE)
        modulus = _expect(_children(der, rs, re_)[0], INTEGER)
        return "rsa", _int(der[modulus[1] : modulus[2]]).bit_length()
    if alg_oid == "1.2.840.10045.2.1":  # id-ecPublicKey, named curve parameter
        curve = _oid(der, *_expect(alg[1], OID)[1:]) if len(alg) > 1 and alg[1][0] == OID else ""
        return "ec", CURVES.get(curve)
    if alg_oid == "1.3.101.112":
        return "ed25519", 256
    if alg_oid == "1.3.101.113":
        return "ed448", 456
    if alg_oid == "1.2.840.10040.4.1":  # DSA: p in the parameters
        params = _children(der, *_expect(alg[1], SEQUENCE)[1:]) if len(alg) > 1 else []
        bits = _int(der[params[0][1] : params[0][2]]).bit_length() if params else None
        return "dsa", bits
    return alg_oid, None


def _pss_hash(der: bytes, sig_alg: list[tuple[int, int, int]]) -> str:
    """RSASSA-PSS names its hash in the parameters (RFC 4055 3.1; SHA-1 when absent)."""
    if len(sig_alg) < 2 or sig_alg[1][0] != SEQUENCE:
        return "sha1"
    for tag, s, e in _children(der, sig_alg[1][1], sig_alg[1][2]):
        if tag == 0xA0:
            _, hs, he = _expect(_tlv(der, s, e), SEQUENCE)
            first = _children(der, hs, he)[0]
            return HASH_OIDS.get(_oid(der, *_expect(first, OID)[1:]), "unknown")
    return "sha1"
