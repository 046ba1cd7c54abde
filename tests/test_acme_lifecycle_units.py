"""Unit tests for the lifecycle commands' pure parts: CSR reading, revocation reasons, dry-run servers."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from certkit.csrfile import parse_csr
from certkit.errors import UsageError

pytestmark = pytest.mark.unit


def make_csr(key: object, cn: str | None = "mail.example.com", sans: tuple[str, ...] = ()) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_windows_forms_are_read() -> None:
    pem = make_csr(RSA, sans=("mail.example.com", "autodiscover.example.com"))
    windows = pem.replace(b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST").replace(b"\n", b"\r\n")
    for data in (pem, windows, b"\xef\xbb\xbf" + windows, windows.decode().encode("utf-16")):
        info = parse_csr(data)
        assert [i.value for i in info.identities] == ["mail.example.com", "autodiscover.example.com"]
        assert info.key_type == "rsa2048" and info.pem.startswith(b"-----BEGIN CERTIFICATE REQUEST-----")


def test_names_cn_first_idn_as_punycode() -> None:
    info = parse_csr(make_csr(ec.generate_private_key(ec.SECP384R1()), cn="xn--bcher-kva.example",
                              sans=("mx.example.com", "xn--bcher-kva.example")))
    assert [i.value for i in info.identities] == ["xn--bcher-kva.example", "mx.example.com"]
    assert info.key_type == "ec384"


@pytest.mark.parametrize(("key", "cn", "message"), [
    (ed25519.Ed25519PrivateKey.generate(), "mail.example.com", "Ed25519"),
    (ec.generate_private_key(ec.SECP521R1()), "mail.example.com", "secp521r1"),
    (RSA, None, "names no host"),
])
def test_refused(key: object, cn: str | None, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_csr(make_csr(key, cn=cn))


def test_revocation_reasons_by_name_any_spelling() -> None:
    import click

    from certkit.cli.revoke import _reason

    ctx = click.Context(click.Command("revoke"))
    param = click.Option(["--reason"])
    assert _reason(ctx, param, "keyCompromise") == (1, "keyCompromise")
    assert _reason(ctx, param, "key-compromise") == (1, "keyCompromise")
    assert _reason(ctx, param, "CESSATION_OF_OPERATION") == (5, "cessationOfOperation")
    assert _reason(ctx, param, "4") == (4, "superseded")
    with pytest.raises(click.BadParameter):
        _reason(ctx, param, "cACompromise")  # the CA's business, not a subscriber's


def test_dry_run_server_mapping() -> None:
    from certkit.acme import LETSENCRYPT, LETSENCRYPT_STAGING, dry_run_server

    assert dry_run_server(LETSENCRYPT) == LETSENCRYPT_STAGING
    assert dry_run_server(LETSENCRYPT_STAGING) == LETSENCRYPT_STAGING
    assert dry_run_server("https://acme.example.net/dir") == "https://acme.example.net/dir"
