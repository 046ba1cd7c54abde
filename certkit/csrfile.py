"""CSRs made elsewhere (`certkit issue --csr FILE`): read, check, and take the names and key type from them.

Exchange (``New-ExchangeCertificate -GenerateRequest``), IIS, appliances
and ``openssl req -new`` make a key and a CSR on their own server; the key
never leaves it. certkit accepts the CSR as PEM (``CERTIFICATE REQUEST`` or
Windows' ``NEW CERTIFICATE REQUEST``, UTF-8 or the UTF-16 Windows
PowerShell writes) or DER, checks its signature (proof that whoever made it
holds the key), and refuses what a CA would refuse: no names, a weak or
unusual key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certkit import names
from certkit.errors import UsageError, WeakKeyError
from certkit.keys import WEAK_KEY_HINT

MAX_CSR_BYTES = 64 * 1024
_PEM_MARKERS = (b"-----BEGIN CERTIFICATE REQUEST-----", b"-----BEGIN NEW CERTIFICATE REQUEST-----")
_CURVES = {"secp256r1": "ec256", "secp384r1": "ec384"}


@dataclass(frozen=True)
class CsrInfo:
    """A checked CSR: its PEM form, its names (CN first) and the certkit key type of its key."""

    pem: bytes
    identities: list[names.Identity]
    key_type: str


def read_csr_file(path: str | Path, allow_weak: bool = False) -> CsrInfo:
    """Read and check the CSR in ``path`` (exit 2 with the reason when it cannot be used)."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_CSR_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read --csr {path}: {exc.strerror or exc}", "check the path") from exc
    if len(data) > MAX_CSR_BYTES:
        raise UsageError(f"--csr {path} is over {MAX_CSR_BYTES // 1024} KiB: not a CSR", "pass the request file")
    return parse_csr(data, str(path), allow_weak)


def parse_csr(data: bytes, source: str = "the CSR", allow_weak: bool = False) -> CsrInfo:
    """Check a CSR (PEM or DER): signature, names, key; see the module docstring."""
    csr = _load(data, source)
    if not csr.is_signature_valid:
        raise UsageError(f"{source}: the CSR's signature does not verify (damaged, or edited after signing)",
                         "make the request again on the server that holds the key")
    return CsrInfo(csr.public_bytes(serialization.Encoding.PEM), _identities(csr, source),
                   _key_type(csr, source, allow_weak))


def _load(data: bytes, source: str) -> x509.CertificateSigningRequest:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # Windows PowerShell 5 `Out-File` / `>` writes UTF-16
        data = data.decode("utf-16").encode("ascii", "replace")
    data = data.lstrip(b"\xef\xbb\xbf")
    try:
        if any(marker in data for marker in _PEM_MARKERS):
            return x509.load_pem_x509_csr(data.replace(b"NEW CERTIFICATE REQUEST", b"CERTIFICATE REQUEST"))
        if data[:1] == b"\x30":
            return x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise UsageError(f"{source} is not a readable certificate request: {exc}",
                         "pass the CSR file as the server wrote it (PEM or DER)") from None
    raise UsageError(f"{source} is not a certificate request (no BEGIN CERTIFICATE REQUEST line, not DER)",
                     "pass the CSR file as the server wrote it (PEM or DER), not a certificate or a key")


def _identities(csr: x509.CertificateSigningRequest, source: str) -> list[names.Identity]:
    raw: list[str] = [str(a.value) for a in csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        raw += [str(v) for v in san.get_values_for_type(x509.DNSName)]
        raw += [str(v) for v in san.get_values_for_type(x509.IPAddress)]
    if not raw:
        raise UsageError(f"{source} names no host (no CN, no subjectAltName)",
                         "make the request again with the server's name, e.g. -subj /CN=mail.example.com")
    return names.parse_names(raw[0], raw[1:])


def _key_type(csr: x509.CertificateSigningRequest, source: str, allow_weak: bool) -> str:
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048 and not allow_weak:
            raise WeakKeyError(f"{source} carries a {key.key_size}-bit RSA key",
                               WEAK_KEY_HINT + "; make a new key and request on that server (or pass --allow-weak)")
        return f"rsa{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVES:
        return _CURVES[key.curve.name]
    what = f"an ECDSA {key.curve.name} key" if isinstance(key, ec.EllipticCurvePublicKey) else \
        f"a {type(key).__name__.lstrip('_')} key"
    raise UsageError(f"{source} carries {what}, which public CAs do not certify",
                     "make the request with an RSA (2048 bits or more) or ECDSA P-256/P-384 key")
