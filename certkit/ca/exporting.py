"""What clients get from a CA: PEM / DER / PKCS#7 bundles, and the `ca list` record."""

from __future__ import annotations

from typing import Any

from certkit import x509 as cx
from certkit.ca import storage
from certkit.ca.manage import constraints_of, issued_from
from certkit.store import Store

EXTENSIONS = {"pem": "pem", "der": "cer", "p7b": "p7b"}


def bundle(store: Store, name: str, fmt: str, generation: int | None = None) -> tuple[bytes, list[int]]:
    """The CA certificates clients should trust, as ``fmt``; and which generations it holds.

    ``pem`` and ``p7b`` carry every active generation (current first), so a
    client that imports the file during a rotation trusts old and new
    leaves; ``der`` holds one certificate: the current generation unless
    ``generation`` names another.
    """
    record = storage.load(store, name)
    if generation is not None:
        numbers = [record.generation(generation).number]
    elif fmt == "der":
        numbers = [record.current]
    else:
        numbers = [g.number for g in record.active]
    certs = [storage.read_cert(store, name, n) for n in numbers]
    if fmt == "pem":
        return b"".join(cx.to_pem(c) for c in certs), numbers
    if fmt == "der":
        return cx.to_der(certs[0]), numbers
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

    return pkcs7.serialize_certificates(certs, Encoding.DER), numbers


def describe(store: Store, name: str) -> dict[str, Any]:
    """The `ca list --json` record of one CA (no secret: no key, no passphrase)."""
    record = storage.load(store, name)
    gens = []
    for gen in record.generations:
        cert = storage.read_cert(store, name, gen.number)
        gens.append({
            "number": gen.number,
            "subject": cx.subject_text(cert),
            "not_before": gen.created,
            "not_after": gen.not_after,
            "sha256": gen.sha256,
            "thumbprint": cx.thumbprint(cert),
            "current": gen.number == record.current,
            "retired": gen.retired,
            "cert": str(storage.cert_path(store, name, gen.number)),
        })
    constraints = constraints_of(record)
    return {
        "name": name,
        "current_generation": record.current,
        "permit": list(constraints.dns),
        "permit_ip": list(constraints.ips),
        "name_constraints": not constraints.unconstrained,
        "key_type": record.key_type,
        "encrypted_key": record.passphrase_file is not None,
        "trusted": record.trusted,
        "trust_store_dir": record.trust_store_dir,
        "cert": str(storage.cert_path(store, name, record.current)),
        "generations": gens,
        "lineages": issued_from(store, name),
    }
