"""The state directory: the only module that writes it.

Layout (``home`` is ``--home`` / ``CERTKIT_HOME``)::

    home/                         0700
      .lock                       flock: one mutating certkit per home
      accounts/<host>-<hash>/     one ACME account per directory URL + email
      lineages/<name>/            0700
        settings.toml             everything needed to issue again
        state.json                last check, last renewal, ARI window
        versions/0001/ ...        every issued version, never changed after creation:
            cert.pem chain.pem fullchain.pem privkey.pem combined.pem
            [cert.pfx pfx-password.txt]
        live -> versions/000N     the stable paths servers point at
        backups/                  files a deploy target changed (for rollback)

Crash safety: a version is written into a staging folder, fsynced and
renamed into place in one step, so a version folder is complete or absent.
Going live replaces the ``live`` symlink with ``os.replace`` of a new
symlink (no unlink-then-symlink window), so ``live/privkey.pem`` and
``live/cert.pem`` always belong together; the previous version stays for
rollback. Where symlinks are unavailable (Windows without the privilege),
``live`` is a folder whose files are replaced one by one, the key last
replaced first so a reader never pairs a new certificate with an old key for
longer than one rename.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certkit import envvars, fsguard, journal
from certkit.atomicfile import atomic_write, fsync_dir
from certkit.errors import NotFoundError, OperationError, UsageError
from certkit.homedir import windows_acl_argv
from certkit.settings import DeployTarget, LineageSettings, SettingsError
from certkit.statelock import StateLock
from certkit.storeaccounts import AccountFiles

VERSION_FILES = ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem", "combined.pem")
PRIVATE_FILES = {"privkey.pem", "combined.pem", "cert.pfx", "pfx-password.txt"}
# Used with fullmatch: "$" alone would also match before a trailing newline.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
# What `live` may point at: a version of its own lineage, nothing else.
_LIVE_TARGET_RE = re.compile(r"versions/[0-9]{4}")
DEFAULT_LOCK_WAIT = 10.0


def lineage_name_for(first_name: str) -> str:
    """Default lineage name for a first certificate name: ``*.x`` -> ``wildcard.x``,
    ``2001:db8::5`` -> ``ipv6-2001-db8--5`` (a colon is not a portable folder name)."""
    if first_name.startswith("*."):
        return "wildcard." + first_name[2:]
    if ":" in first_name:
        return "ipv6-" + first_name.replace(":", "-")
    return first_name


def check_lineage_name(name: str) -> str:
    fsguard.reject_control_chars(name, "lineage name")
    if not _NAME_RE.fullmatch(name) or name in (".", ".."):
        raise UsageError(
            f"invalid lineage name {name!r}",
            "use letters, digits, dots, hyphens and underscores (it becomes a folder name)",
        )
    return name


@dataclass(frozen=True)
class LivePaths:
    """The stable paths of a lineage's live files (valid while a version is live)."""

    dir: Path
    cert: Path
    key: Path
    chain: Path
    fullchain: Path
    combined: Path
    pfx: Path
    pfx_password: Path

    @classmethod
    def under(cls, folder: Path) -> LivePaths:
        return cls(
            dir=folder,
            cert=folder / "cert.pem",
            key=folder / "privkey.pem",
            chain=folder / "chain.pem",
            fullchain=folder / "fullchain.pem",
            combined=folder / "combined.pem",
            pfx=folder / "cert.pfx",
            pfx_password=folder / "pfx-password.txt",
        )


@dataclass(frozen=True)
class VersionFiles:
    """The PEM contents of one version."""

    key_pem: bytes
    cert_pem: bytes
    chain_pem: bytes


class Store(AccountFiles):
    """A certkit state directory."""

    def __init__(self, home: Path | str, lock_wait: float | None = None) -> None:
        # The home ends up in unit files, cron lines and hook variables: no control characters.
        fsguard.reject_control_chars(str(home), "state directory (--home)")
        self.home = Path(home).expanduser().absolute()
        self._lock = StateLock(self.home / ".lock", lock_wait if lock_wait is not None
                               else envvars.seconds(envvars.LOCK_WAIT, DEFAULT_LOCK_WAIT, allow_zero=True))

    # ----- paths -------------------------------------------------------
    @property
    def lineages_dir(self) -> Path:
        return self.home / "lineages"

    def lineage_dir(self, name: str) -> Path:
        return self.lineages_dir / check_lineage_name(name)

    # ----- trust (root acts only on what root controls) -------------------
    def check_home(self) -> None:
        """Refuse (exit 2, as root) a state directory another user owns or can write."""
        fsguard.check_trusted_chain(self.home, "state directory")
        if self.home.is_symlink():  # the link is root's; its target must be too
            fsguard.check_trusted(self.home, "state directory", follow=True)
        fsguard.check_trusted(self.lineages_dir, "lineages folder")

    def check_lineage(self, name: str) -> None:
        """Refuse (exit 2, as root) a lineage whose folder or settings another user controls."""
        self.check_home()
        ldir = self.lineage_dir(name)
        fsguard.check_trusted(ldir, "lineage folder")
        fsguard.check_trusted(ldir / "settings.toml", "settings file")
        fsguard.check_trusted(ldir / "versions", "versions folder")

    def versions_dir(self, name: str) -> Path:
        return self.lineage_dir(name) / "versions"

    def version_dir(self, name: str, version: int) -> Path:
        return self.versions_dir(name) / f"{version:04d}"

    def live_paths(self, name: str) -> LivePaths:
        return LivePaths.under(self.lineage_dir(name) / "live")

    def version_paths(self, name: str, version: int) -> LivePaths:
        return LivePaths.under(self.version_dir(name, version))

    # ----- lock --------------------------------------------------------
    @property
    def lock_wait(self) -> float:
        return self._lock.wait

    @lock_wait.setter
    def lock_wait(self, seconds: float) -> None:
        self._lock.wait = seconds

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold the state lock (re-entrant within this process).

        A second certkit process waits up to ``lock_wait`` seconds, then
        raises LockError naming the holder's pid.
        """
        return self._lock.held(self._prepare_home)

    def _prepare_home(self) -> None:
        """Before the first lock: the home exists (0700, ACL on Windows) and root may trust it."""
        if sys.platform == "win32" and not self.home.exists():  # pragma: no cover - Windows
            self._ensure_dir(self.home)
            from certkit import runner

            # mode 0700 means nothing on Windows: keys are protected by the folder's ACL,
            # which every file and subfolder inherits.
            runner.run(windows_acl_argv(self.home), check=True, what="icacls (restricting the state directory)")
        self._ensure_dir(self.home)
        self.check_home()
        journal.attach(self.home)  # from here on the command's lines reach logs/certkit.log

    def _require_lock(self) -> None:
        if not self._lock.is_held():
            raise RuntimeError("state directory written without holding the lock")  # a bug

    # ----- directories ---------------------------------------------------
    def _ensure_dir(self, path: Path) -> None:
        """Create ``path`` (and missing parents) as 0700 whatever the umask."""
        try:
            missing: list[Path] = []
            probe = path
            while not probe.exists() and not probe.is_symlink() and probe.parent != probe:
                missing.append(probe)
                probe = probe.parent
            for folder in reversed(missing):
                with contextlib.suppress(FileExistsError):  # a concurrent certkit made it
                    folder.mkdir(mode=0o700)
                    # mkdir's mode is masked by the umask (and Path.mkdir(parents=True)
                    # ignores it for parents): chmod sets it exactly.
                    os.chmod(folder, 0o700)
            if not path.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
        except OSError as exc:
            raise OperationError(
                f"cannot create {path}: {exc.strerror}",
                "choose a writable state directory with --home or CERTKIT_HOME",
            ) from exc

    # ----- lineages: reading ------------------------------------------
    def names(self) -> list[str]:
        """Every lineage with settings, sorted."""
        if not self.lineages_dir.is_dir():
            return []
        return sorted(p.name for p in self.lineages_dir.iterdir() if (p / "settings.toml").is_file())

    def exists(self, name: str) -> bool:
        return (self.lineage_dir(name) / "settings.toml").is_file()

    def require(self, name: str) -> None:
        if not self.exists(name):
            known = ", ".join(self.names()) or "none yet"
            raise NotFoundError(f"no lineage named {name!r} in {self.home}",
                                f"known lineages: {known}; see `certkit list`")

    def load_settings(self, name: str) -> LineageSettings:
        self.require(name)
        self.check_lineage(name)  # settings name scripts that root runs
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib

        path = self.lineage_dir(name) / "settings.toml"
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise OperationError(f"cannot read {path}: {exc}", "fix or restore the file") from exc
        try:
            settings = LineageSettings.from_dict(data)
        except SettingsError as exc:
            raise OperationError(f"{path}: {exc}", "fix the field or restore the file") from exc
        if settings.name != name:
            raise OperationError(f"{path}: field `name` is {settings.name!r}, but the folder is {name!r}",
                                 "fix the field or restore the file")
        return settings

    def load_state(self, name: str) -> dict[str, Any]:
        path = self.lineage_dir(name) / "state.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # state is advisory (last results); a damaged file is rebuilt
        return data if isinstance(data, dict) else {}

    def versions(self, name: str) -> list[int]:
        """Complete versions, oldest first."""
        vdir = self.versions_dir(name)
        if not vdir.is_dir():
            return []
        return sorted(int(p.name) for p in vdir.iterdir() if p.name.isdigit())

    def live_version(self, name: str) -> int | None:
        ldir = self.lineage_dir(name)
        live = ldir / "live"
        if live.is_symlink():
            target = os.readlink(live)
            # certkit writes "versions/NNNN"; anything else would make servers and hooks
            # use files from outside the lineage.
            if not _LIVE_TARGET_RE.fullmatch(target.replace(os.sep, "/")):
                raise UsageError(
                    f"{live} points at {target!r}, outside the lineage's versions",
                    f"remove the link (rm {live}) and run: certkit deploy {name} (or renew --force {name})",
                )
            fsguard.check_trusted(live, "live link")
            return int(Path(target).name)
        marker = live / ".version"
        if marker.is_file():
            return int(marker.read_text().strip())
        return None

    def read_version(self, name: str, version: int) -> VersionFiles:
        """The version's PEM files; ``key_pem`` is empty for a lineage issued for a CSR (no key file)."""
        paths = self.version_paths(name, version)
        try:
            cert_pem, chain_pem = paths.cert.read_bytes(), paths.chain.read_bytes()
            key_pem = paths.key.read_bytes() if paths.key.exists() else b""
        except FileNotFoundError as exc:
            raise NotFoundError(f"lineage {name!r} has no version {version}") from exc
        return VersionFiles(key_pem, cert_pem, chain_pem)

    def csr_path(self, name: str) -> Path:
        """Where a lineage issued for a CSR keeps it (`issue --csr`; `renew` sends it again)."""
        return self.lineage_dir(name) / "csr.pem"

    def save_csr(self, name: str, csr_pem: bytes) -> None:
        self._require_lock()
        atomic_write(self.csr_path(name), csr_pem, 0o644)

    # ----- lineages: writing ------------------------------------------
    def save_settings(self, settings: LineageSettings) -> None:
        import tomli_w

        self._require_lock()
        ldir = self.lineage_dir(settings.name)
        self._ensure_dir(self.lineages_dir)
        self._ensure_dir(ldir)
        self.check_lineage(settings.name)
        atomic_write(ldir / "settings.toml", tomli_w.dumps(settings.to_dict()).encode(), 0o600)

    # ----- the half-done marker ---------------------------------------
    # One marker for issue, renew and deploy: written before a new version goes
    # live or before deploy targets run, cleared when every target and hook has
    # run (or a rollback restored the previous version). A process killed in
    # between leaves it, and the next `renew` finishes the job.
    def mark_unfinished(self, name: str, by: str, version: int | None, from_version: int | None, when: str,
                        targets: Sequence[DeployTarget] = (), verify: Sequence[str] = ()) -> None:
        """Record the run in progress, with the targets and URLs given for it on the command line
        (they are remembered in the settings only once they succeed)."""
        self.update_state(name, unfinished={
            "by": by, "time": when, "version": version, "from_version": from_version,
            "targets": [{"target": t.target, "options": dict(t.options)} for t in targets],
            "verify": list(verify),
        })

    def unfinished(self, name: str) -> dict[str, Any] | None:
        """The marker a killed run left, or None (earlier versions named it ``renewing``)."""
        state = self.load_state(name)
        for key in ("unfinished", "renewing"):
            marker = state.get(key)
            if isinstance(marker, dict):
                return {"by": "renew", **marker} if key == "renewing" else marker
        return None

    def clear_unfinished(self, name: str) -> None:
        state = self.load_state(name)
        if state.get("unfinished") is not None or state.get("renewing") is not None:
            self.update_state(name, unfinished=None, renewing=None)

    def update_state(self, name: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the lineage's state.json and return the result."""
        self._require_lock()
        state = self.load_state(name)
        state.update(fields)
        ldir = self.lineage_dir(name)
        self._ensure_dir(ldir)
        atomic_write(ldir / "state.json", (json.dumps(state, indent=2, sort_keys=True) + "\n").encode(), 0o600)
        return state

    def add_version(
        self,
        name: str,
        key_pem: bytes,
        cert_pem: bytes,
        chain_pem: bytes = b"",
        pfx: bytes | None = None,
        pfx_password: str | None = None,
    ) -> int:
        """Store a new complete version (not live yet) and return its number."""
        self._require_lock()
        vdir = self.versions_dir(name)
        self._ensure_dir(vdir)
        self.check_lineage(name)
        for leftover in vdir.glob(".staging-*"):  # an earlier crash mid-write
            shutil.rmtree(leftover, ignore_errors=True)
        version = (max(self.versions(name), default=0)) + 1
        staging = vdir / f".staging-{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir(mode=0o700)
        os.chmod(staging, 0o700)  # mkdir's mode is masked by the umask
        fullchain = cert_pem + chain_pem
        files: dict[str, bytes] = {
            "cert.pem": cert_pem,
            "chain.pem": chain_pem,
            "fullchain.pem": fullchain,
            "privkey.pem": key_pem,
            # Key first, then the chain: Postfix smtpd_tls_chain_files reads one file.
            "combined.pem": key_pem + fullchain,
        }
        if not key_pem:  # issued for a CSR: the key is on the server that made it
            del files["privkey.pem"], files["combined.pem"]
        if pfx is not None:
            files["cert.pfx"] = pfx
            if pfx_password is not None:
                files["pfx-password.txt"] = pfx_password.encode() + b"\n"
        for fname, data in files.items():
            atomic_write(staging / fname, data, 0o600 if fname in PRIVATE_FILES else 0o644)
        os.rename(staging, self.version_dir(name, version))
        fsync_dir(vdir)
        return version

    def add_pfx(self, name: str, version: int, pfx: bytes, pfx_password: str | None) -> Path:
        """Add (or replace) the PFX of an existing version."""
        self._require_lock()
        paths = self.version_paths(name, version)
        if not paths.dir.is_dir():
            raise NotFoundError(f"lineage {name!r} has no version {version}")
        if pfx_password is not None:
            atomic_write(paths.pfx_password, pfx_password.encode() + b"\n", 0o600)
        atomic_write(paths.pfx, pfx, 0o600)
        return paths.pfx

    def activate(self, name: str, version: int) -> None:
        """Make ``version`` the live one, atomically."""
        self._require_lock()
        ldir = self.lineage_dir(name)
        if not self.version_dir(name, version).is_dir():
            raise NotFoundError(f"lineage {name!r} has no version {version}")
        live = ldir / "live"
        target = os.path.join("versions", f"{version:04d}")
        tmp = ldir / "live.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        try:
            os.symlink(target, tmp, target_is_directory=True)
        except (OSError, NotImplementedError):
            self._activate_by_copy(name, version)
            return
        os.replace(tmp, live)
        fsync_dir(ldir)

    def _activate_by_copy(self, name: str, version: int) -> None:
        live = self.lineage_dir(name) / "live"
        self._ensure_dir(live)
        src = self.version_dir(name, version)
        for fname in sorted(os.listdir(src), key=lambda f: f != "privkey.pem"):
            atomic_write(live / fname, (src / fname).read_bytes(),
                         0o600 if fname in PRIVATE_FILES else 0o644)
        for stale in set(os.listdir(live)) - set(os.listdir(src)) - {".version"}:
            with contextlib.suppress(OSError):
                os.unlink(live / stale)
        atomic_write(live / ".version", f"{version}\n".encode(), 0o644)

    # ----- free-form files (backups, deploy bookkeeping) ---------------
    def _safe_path(self, relpath: str) -> Path:
        path = Path(os.path.normpath(self.home / relpath))
        if self.home not in path.parents:
            raise UsageError(f"path {relpath!r} is outside the state directory")
        return path

    def write_file(self, relpath: str, data: bytes, private: bool = True) -> Path:
        """Write a file under the state directory (e.g. ``lineages/x/backups/...``)."""
        path = self._safe_path(relpath)
        self._require_lock()
        self._ensure_dir(path.parent)
        atomic_write(path, data, 0o600 if private else 0o644)
        return path

    def read_file(self, relpath: str) -> bytes | None:
        path = self._safe_path(relpath)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def remove_version(self, name: str, version: int) -> None:
        """Delete a stored version (never the live one)."""
        self._require_lock()
        if version == self.live_version(name):
            raise UsageError(f"version {version} of {name!r} is live", "make another version live first")
        shutil.rmtree(self.version_dir(name, version))

    def remove_lineage(self, name: str) -> None:
        """Delete a lineage: its settings, every version and its live paths."""
        self._require_lock()
        self.require(name)
        shutil.rmtree(self.lineage_dir(name))

    def remove_tree(self, relpath: str) -> None:
        self._require_lock()
        shutil.rmtree(self._safe_path(relpath), ignore_errors=True)
