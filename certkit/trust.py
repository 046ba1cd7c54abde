"""Adding a certificate to the OS trust store (SelfSSL's /T, a private CA) and taking it out again."""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Callable
from pathlib import Path

from certkit import runner
from certkit.atomicfile import atomic_write
from certkit.errors import OperationError
from certkit.runner import Result

# Debian/Ubuntu; update-ca-certificates picks up *.crt files here.
DEFAULT_ANCHOR_DIR = Path("/usr/local/share/ca-certificates")


def install(cert_pem: bytes, name: str, store_dir: str | None = None, run: Callable[..., Result] | None = None) -> str:
    """Trust ``cert_pem`` and say where it went.

    Linux: write ``certkit-NAME.crt`` into the anchors folder and run
    ``update-ca-certificates`` when it exists (only for the system folder:
    an explicit ``store_dir`` is for tests and containers that rebuild
    their own bundle). Windows: ``certutil -addstore -f Root``.

    Returns:
        A one-line description of what was done, for the user.
    """
    run = run or runner.run
    if store_dir is None and platform.system() == "Windows":  # pragma: no cover - Windows
        tmp = Path(os.environ.get("TEMP", ".")) / f"certkit-{name}.crt"
        tmp.write_bytes(cert_pem)
        try:
            run(["certutil", "-addstore", "-f", "Root", str(tmp)], check=True, what="certutil -addstore Root")
        finally:
            tmp.unlink(missing_ok=True)
        return "added to the Windows Trusted Root store (LocalMachine\\Root)"
    folder = Path(store_dir) if store_dir else DEFAULT_ANCHOR_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"certkit-{name}.crt"
        atomic_write(target, cert_pem, 0o644)
    except OSError as exc:
        raise OperationError(
            f"cannot add the certificate to {folder}: {exc.strerror}",
            "run as root, or pass --trust-store-dir DIR",
        ) from exc
    if store_dir is None and shutil.which("update-ca-certificates"):
        run(["update-ca-certificates"], check=True, what="update-ca-certificates")
        return f"trusted: {target} (update-ca-certificates ran)"
    return f"trusted: {target}"


def remove(name: str, store_dir: str | None = None, serial: str | None = None,
           run: Callable[..., Result] | None = None) -> str:
    """Take back what :func:`install` did for ``name``; say what was done.

    Linux: delete ``certkit-NAME.crt`` from the anchors folder (and run
    ``update-ca-certificates --fresh`` for the system folder). Windows:
    ``certutil -delstore Root SERIAL`` (``serial``: hex, as certutil shows it).
    A certificate that is not there is not an error: the result is the same.
    """
    run = run or runner.run
    if store_dir is None and platform.system() == "Windows":  # pragma: no cover - Windows
        run(["certutil", "-delstore", "Root", serial or name], check=True, what="certutil -delstore Root")
        return "removed from the Windows Trusted Root store (LocalMachine\\Root)"
    folder = Path(store_dir) if store_dir else DEFAULT_ANCHOR_DIR
    target = folder / f"certkit-{name}.crt"
    try:
        target.unlink()
    except FileNotFoundError:
        return f"not trusted: {target} was not there"
    except OSError as exc:
        raise OperationError(f"cannot remove {target}: {exc.strerror}",
                             "run as root, or pass --trust-store-dir DIR") from exc
    if store_dir is None and shutil.which("update-ca-certificates"):
        run(["update-ca-certificates", "--fresh"], check=True, what="update-ca-certificates")
        return f"untrusted: removed {target} (update-ca-certificates ran)"
    return f"untrusted: removed {target}"
