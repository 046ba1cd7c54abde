"""A root CA, an intermediate, a server leaf issued by the intermediate, and client certificates.

What the third-party server fixtures serve: ``fullchain`` (leaf + intermediate,
a correct server) or ``leaf`` alone (the incomplete chain of issue 11.4), and
what a client presents: ``client`` (issued by the client CA the servers trust)
or ``stranger`` (self-signed, trusted by nobody). Made in memory with
cryptography, written once under ``root``; ZooPki (tests/servers/zoo.py) has
no intermediate, hence this one.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NAME = "mail.example.test"
ROOT_CN, INTERMEDIATE_CN, CLIENT_CA_CN = "certkit test root", "certkit test intermediate", "certkit test client CA"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         encipher_only=False, decipher_only=False)


def _issue(subject: str, key: Any, issuer: tuple[x509.Name, Any] | None, *, ca: bool,
           sans: list[x509.GeneralName] | None = None, eku: x509.ObjectIdentifier | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    issuer_name, issuer_key = issuer if issuer else (_name(subject), key)
    builder = (
        x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=60 if not ca else 3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(_key_usage(ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class ChainFiles:
    """PEM files under one folder (paths) and the leaf's SHA-256 fingerprint."""

    root: Path
    intermediate: Path
    leaf: Path
    leaf_key: Path
    fullchain: Path
    client_ca: Path
    client: Path
    client_key: Path
    stranger: Path
    stranger_key: Path
    leaf_sha256: str


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_chain(folder: Path) -> ChainFiles:
    """Write root, intermediate, leaf (mail.example.test, 127.0.0.1, 127.0.0.2) and client certificates."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # Dovecot's unprivileged processes read nothing here, but its config process may drop root
    keys = {label: ec.generate_private_key(ec.SECP256R1())
            for label in ("root", "intermediate", "leaf", "client_ca", "client", "stranger")}
    root = _issue(ROOT_CN, keys["root"], None, ca=True)
    intermediate = _issue(INTERMEDIATE_CN, keys["intermediate"], (root.subject, keys["root"]), ca=True)
    sans: list[x509.GeneralName] = [x509.DNSName(NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                    x509.IPAddress(ipaddress.ip_address("127.0.0.2"))]
    leaf = _issue(NAME, keys["leaf"], (intermediate.subject, keys["intermediate"]), ca=False, sans=sans,
                  eku=ExtendedKeyUsageOID.SERVER_AUTH)
    client_ca = _issue(CLIENT_CA_CN, keys["client_ca"], None, ca=True)
    client = _issue("alice client", keys["client"], (client_ca.subject, keys["client_ca"]), ca=False,
                    eku=ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger = _issue("stranger client", keys["stranger"], None, ca=False, eku=ExtendedKeyUsageOID.CLIENT_AUTH)
    files = {
        "root.pem": _pem(root), "intermediate.pem": _pem(intermediate), "leaf.pem": _pem(leaf),
        "leaf.key": _key_pem(keys["leaf"]), "fullchain.pem": _pem(leaf) + _pem(intermediate),
        "client-ca.pem": _pem(client_ca), "client.pem": _pem(client), "client.key": _key_pem(keys["client"]),
        "stranger.pem": _pem(stranger), "stranger.key": _key_pem(keys["stranger"]),
    }
    for fname, data in files.items():
        (folder / fname).write_bytes(data)
        (folder / fname).chmod(0o600 if fname.endswith(".key") else 0o644)
    return ChainFiles(
        folder / "root.pem", folder / "intermediate.pem", folder / "leaf.pem", folder / "leaf.key",
        folder / "fullchain.pem", folder / "client-ca.pem", folder / "client.pem", folder / "client.key",
        folder / "stranger.pem", folder / "stranger.key",
        leaf.fingerprint(hashes.SHA256()).hex(),
    )
