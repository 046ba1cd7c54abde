"""ACME account files in the state directory (``accounts/<host>-<hash>/``), part of :class:`certkit.store.Store`.

One folder per directory URL + e-mail (the e-mail picks the account; the
contact the CA holds may have been changed since, see ``account.json``).
Files, all 0600: ``key.json`` (the account key, a JWK), ``account.json``
(account URL, directory, e-mail, contact, status, dates) and, only while a
key rollover is under way, ``key-new.json`` (the new key, written before the
CA is asked; it replaces ``key.json`` in one rename once the CA accepted it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from certkit import fsguard
from certkit.atomicfile import atomic_write, fsync_dir

KEY_FILE = "key.json"
NEW_KEY_FILE = "key-new.json"
INFO_FILE = "account.json"


class AccountFiles:
    """The account part of the Store (a mixin: the Store supplies the home, the lock and folder creation)."""

    home: Path

    def _require_lock(self) -> None:  # pragma: no cover - the Store's
        raise NotImplementedError

    def _ensure_dir(self, path: Path) -> None:  # pragma: no cover - the Store's
        raise NotImplementedError

    @property
    def accounts_dir(self) -> Path:
        return self.home / "accounts"

    def account_dir(self, directory_url: str, email: str | None) -> Path:
        """Folder of the account for ``directory_url`` + ``email`` (may not exist)."""
        host = re.sub(r"[^A-Za-z0-9.-]", "_", urlsplit(directory_url).netloc) or "acme"
        digest = hashlib.sha256(f"{directory_url}\n{email or ''}".encode()).hexdigest()[:12]
        return self.accounts_dir / f"{host}-{digest}"

    def load_account(self, directory_url: str, email: str | None) -> dict[str, bytes] | None:
        """The account's files by name, or None when there is no account yet."""
        adir = self.account_dir(directory_url, email)
        if not (adir / KEY_FILE).is_file():
            return None
        fsguard.check_trusted(self.accounts_dir, "accounts folder")
        fsguard.check_trusted(adir, "account folder")
        return {p.name: p.read_bytes() for p in adir.iterdir() if p.is_file() and not p.name.startswith(".")}

    def save_account(self, directory_url: str, email: str | None, files: Mapping[str, bytes]) -> Path:
        """Write account files; every file is private (0600)."""
        self._require_lock()
        adir = self.account_dir(directory_url, email)
        self._ensure_dir(adir)
        for fname, data in files.items():
            atomic_write(adir / fname, data, 0o600)
        return adir

    def account_infos(self) -> list[tuple[Path, dict[str, Any]]]:
        """Every stored account's folder and ``account.json`` (an unreadable one as ``{}``), by folder name."""
        if not self.accounts_dir.is_dir():
            return []
        found: list[tuple[Path, dict[str, Any]]] = []
        for adir in sorted(self.accounts_dir.iterdir()):
            if not (adir / KEY_FILE).is_file():
                continue
            try:
                info = json.loads((adir / INFO_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                info = {}
            found.append((adir, info if isinstance(info, dict) else {}))
        return found

    def promote_account_key(self, directory_url: str, email: str | None) -> None:
        """Make the pending ``key-new.json`` the account key, in one rename (after the CA accepted it)."""
        self._require_lock()
        adir = self.account_dir(directory_url, email)
        os.replace(adir / NEW_KEY_FILE, adir / KEY_FILE)
        fsync_dir(adir)

    def drop_pending_account_key(self, directory_url: str, email: str | None) -> None:
        """Remove a ``key-new.json`` the CA never accepted."""
        self._require_lock()
        (self.account_dir(directory_url, email) / NEW_KEY_FILE).unlink(missing_ok=True)
