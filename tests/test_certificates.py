"""Keys and self-signed certificates, checked by openssl as an independent reader."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from certkit import keys
from certkit import x509 as cx
from certkit.errors import UsageError, WeakKeyError
from certkit.names import parse_names


def openssl_text(pem: bytes) -> str:
    return subprocess.run(["openssl", "x509", "-noout", "-text"], input=pem, capture_output=True,
                          check=True).stdout.decode()


@pytest.mark.parametrize("key_type", ["rsa2048", "ec256", "ec384"])
def test_key_types(key_type: str) -> None:
    key = keys.generate(key_type)
    assert keys.key_type_of(key) == key_type
    assert keys.load_pem(keys.to_pem(key)).public_key() == key.public_key()


def test_weak_keys_refused_with_fix() -> None:
    with pytest.raises(WeakKeyError) as info:
        keys.check_key_type("rsa1024")
    assert info.value.exit_code == 2
    assert "2048" in str(info.value) and "--allow-weak" in str(info.value)
    assert keys.check_key_type("rsa1024", allow_weak=True) == "rsa1024"
    with pytest.raises(UsageError):
        keys.check_key_type("dsa1024")


def test_self_signed_rsa_fields(tmp_path: Path) -> None:
    key = keys.generate("rsa2048")
    ids = parse_names("win.block25.or.kr", ["smtp.block25.or.kr", "127.0.0.1"])
    now = dt.datetime.now(dt.timezone.utc)
    cert = cx.self_signed(key, ids, 365, now=now)
    text = openssl_text(cx.to_pem(cert))
    assert "Signature Algorithm: sha256WithRSAEncryption" in text
    assert "Subject: CN = win.block25.or.kr" in text
    assert "DNS:win.block25.or.kr, DNS:smtp.block25.or.kr, IP Address:127.0.0.1" in text
    assert "CA:FALSE" in text
    assert "Digital Signature, Key Encipherment" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert "Subject Key Identifier" in text
    assert "Public-Key: (2048 bit)" in text
    # Backdated against clock skew, valid for the days asked.
    assert cx.not_before(cert) < now
    assert cx.not_after(cert) - now == dt.timedelta(days=365) - dt.timedelta(microseconds=now.microsecond)
    # Random serial, positive, at most 20 octets.
    assert 0 < cert.serial_number < 2**159
    # openssl verifies it as its own trust anchor, for the server purpose, with the name.
    pem = tmp_path / "c.pem"
    pem.write_bytes(cx.to_pem(cert))
    out = subprocess.run(
        ["openssl", "verify", "-CAfile", str(pem), "-purpose", "sslserver", "-verify_hostname",
         "smtp.block25.or.kr", str(pem)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_self_signed_ec_key_usage() -> None:
    key = keys.generate("ec256")
    cert = cx.self_signed(key, parse_names("mail.example.com"), 30)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment  # no RSA key transport for EC
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku


def test_long_name_goes_to_san_only() -> None:
    long_name = "a" * 60 + ".example.com"
    key = keys.generate("ec256")
    cert = cx.self_signed(key, parse_names(long_name), 30)
    assert len(cert.subject) == 0
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical  # RFC 5280 4.2.1.6: empty subject needs a critical SAN
    assert cx.dns_names(cert) == [long_name]


def test_csr_carries_every_name() -> None:
    key = keys.generate("rsa2048")
    csr = x509.load_pem_x509_csr(cx.make_csr(key, parse_names("mail.example.com", ["*.example.com"])))
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.example.com", "*.example.com"]
    assert csr.is_signature_valid


def test_fingerprints_match_openssl() -> None:
    key = keys.generate("rsa2048")
    cert = cx.self_signed(key, parse_names("mail.example.com"), 30)
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha1"], input=cx.to_pem(cert),
                         capture_output=True, check=True).stdout.decode()
    assert out.strip().split("=", 1)[1].replace(":", "") == cx.thumbprint(cert)
    assert cx.key_matches(cert, key)
    assert not cx.key_matches(cert, keys.generate("rsa2048"))
    assert isinstance(key, rsa.RSAPrivateKey)
