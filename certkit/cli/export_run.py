"""What `certkit export` does between parsing and printing: PEM files, a PFX, or DER.

Kept out of the command module so that `certkit --help` imports none of it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from certkit import export, keys
from certkit import x509 as cx
from certkit.atomicfile import atomic_write
from certkit.errors import NotFoundError, UsageError
from certkit.export import default_friendly_name
from certkit.secretfile import read_secret_file
from certkit.store import Store, VersionFiles


def _pfx_password(password_file: str | None) -> tuple[str, bool]:
    """Password from a file, env CERTKIT_PFX_PASSWORD, a terminal prompt, else generated."""
    if password_file:
        return read_secret_file(password_file, "PFX password"), False
    env = os.environ.get("CERTKIT_PFX_PASSWORD")
    if env:
        return env, False
    if sys.stdin.isatty() and sys.stderr.isatty():
        value = click.prompt("PFX password (empty: generate one)", hide_input=True,
                             confirmation_prompt=True, default="", show_default=False, err=True)
        if value:
            return value, False
    return export.generate_password(), True


def run_export(store: Store, opts: dict[str, Any]) -> None:
    name = opts["lineage"]
    store.require(name)
    version = store.live_version(name)
    if version is None:
        raise NotFoundError(f"lineage {name!r} has no live version", f"run `certkit issue --cn {name}` first")
    files = store.read_version(name, version)
    fmt = opts["fmt"]
    report: dict[str, Any] = {"lineage": name, "version": version, "format": fmt}
    if fmt == "pem":
        lines = _export_pem(name, version, files, opts["out"], report)
    else:
        lines = _export_file(name, files, fmt, opts, report)
    if opts.get("as_json"):
        from certkit.cli.context import echo_json

        echo_json(report)
        return
    for line in lines:
        click.echo(line)


def _export_pem(name: str, version: int, files: VersionFiles, out: str | None, report: dict[str, Any]) -> list[str]:
    out_dir = Path(out or name).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} is a file", "--out for pem is a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {
        "cert.pem": (files.cert_pem, 0o644),
        "chain.pem": (files.chain_pem, 0o644),
        "fullchain.pem": (files.cert_pem + files.chain_pem, 0o644),
        "privkey.pem": (files.key_pem, 0o600),
    }
    if not files.key_pem:  # issued for a CSR: the key is on the server that made it
        del written["privkey.pem"]
    for fname, (data, mode) in written.items():
        atomic_write(out_dir / fname, data, mode)
    report["files"] = [str(out_dir / fname) for fname in written]
    return [f"Wrote {name} (version {version}) as PEM to {out_dir}/:", *(f"  {f}" for f in report["files"])]


def _export_file(name: str, files: VersionFiles, fmt: str, opts: dict[str, Any], report: dict[str, Any]) -> list[str]:
    certs = cx.load_chain(files.cert_pem + files.chain_pem)
    out = Path(opts["out"] or f"{name}.{fmt}").absolute()
    if out.is_dir():
        out = out / f"{name}.{fmt}"
    report["files"] = [str(out)]
    if fmt == "der":
        atomic_write(out, export.der_bytes(certs[0]), 0o644)
        return [f"Wrote the certificate of {name} (DER, no key) to {out}"]
    if not files.key_pem:
        raise UsageError(f"{name} has no private key here (it was issued for a CSR), and a PFX needs one",
                         f"export the certificate (certkit export {name} --format pem or der) and let the server "
                         "that made the CSR combine it with its key (Exchange: Import-ExchangeCertificate)")
    encryption = export.resolve_pfx_encryption(opts.get("pfx_encryption") or "auto")
    password, generated = _pfx_password(opts.get("pfx_password_file"))
    key = keys.load_pem(files.key_pem)
    friendly = opts.get("friendly_name") or default_friendly_name(name, certs[0])
    data = export.pfx_bytes(key, certs[0], certs[1:], password, encryption, friendly)
    atomic_write(out, data, 0o600)
    report.update(pfx_encryption=encryption, friendly_name=friendly, password_file=None)
    lines = [f"Wrote {name} as PFX ({encryption} encryption, chain included, friendly name {friendly!r}) to {out}"]
    if generated:
        pw_file = out.with_name(out.name + ".password")
        atomic_write(pw_file, password.encode() + b"\n", 0o600)
        report["password_file"] = str(pw_file)
        lines.append(f"  password: generated, saved to {pw_file} (mode 0600)")
    if encryption == "modern":
        lines.append("  Windows Server 2016 and older cannot import modern PFX files: use --pfx-encryption legacy")
    return lines
