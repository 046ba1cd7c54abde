"""Private keys: the key types certkit offers and their generation."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certkit.errors import UsageError, WeakKeyError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_CURVES = {"ec256": ec.SECP256R1, "ec384": ec.SECP384R1}


DEFAULT_KEY_TYPE = "rsa2048"
KEY_TYPES = ("rsa2048", "rsa3072", "rsa4096", "ec256", "ec384")
_WEAK_RSA = ("rsa1024", "rsa1536")

WEAK_KEY_HINT = (
    "1024-bit RSA is within reach of attackers (NIST disallowed it after 2013) and CAs and modern clients refuse it; "
    "use 2048 bits (rsa2048, or /K:2048 with selfssl), which every Windows since Server 2003 accepts"
)


def check_key_type(key_type: str, allow_weak: bool = False) -> str:
    """Validate a key type name; refuse keys under 2048 bits without allow_weak.

    Raises:
        WeakKeyError: rsa1024/rsa1536 without allow_weak (exit 2).
        UsageError: an unknown key type.
    """
    kt = key_type.lower()
    if kt in KEY_TYPES:
        return kt
    if kt in _WEAK_RSA:
        if allow_weak:
            return kt
        raise WeakKeyError(f"refusing a {kt[3:]}-bit RSA key", WEAK_KEY_HINT + " (or pass --allow-weak)")
    raise UsageError(f"unknown key type {key_type!r}", f"choose one of {', '.join(KEY_TYPES)}")


def generate(key_type: str) -> PrivateKey:
    """A new private key of ``key_type`` (already validated)."""
    if key_type.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    return ec.generate_private_key(_CURVES[key_type]())


def key_type_of(key: object) -> str:
    """The certkit key type name of a private or public key."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"rsa{key.key_size}"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return f"ec{key.curve.key_size}"
    return type(key).__name__


def describe(key_type: str) -> str:
    """Human form: "RSA 2048" / "ECDSA P-256"."""
    if key_type.startswith("rsa"):
        return f"RSA {key_type[3:]}"
    return f"ECDSA P-{key_type[2:]}"


def to_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM (protected by file mode 0600, as servers need it)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_pem(data: bytes) -> PrivateKey:
    """Load a PEM private key written by certkit (or any unencrypted PEM key)."""
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise UsageError("unsupported private key type", "use an RSA or ECDSA key")
    return key
