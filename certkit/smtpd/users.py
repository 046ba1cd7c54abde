"""The users file of `certkit smtpd`: one ``user:scrypt$...`` line per user.

Format of each line (``#`` comments and blank lines ignored)::

    alice:scrypt$16384$8$1$<salt, base64>$<hash, base64>

The hash is ``hashlib.scrypt(password, salt, n, r, p, dklen=32)`` with a
random 16-byte salt per user (RFC 7914 parameters n=2^14, r=8, p=1: about
16 MiB and a few tens of milliseconds per check). The file is written 0600
through a temp file and rename, so a running server re-reading it on SIGHUP
never sees half a file.

Whoever can write the file decides who may log in, so it is refused (exit 2)
when group or others can write it, and, when certkit runs as root, when it
(or its folder) belongs to another user (:mod:`certkit.fsguard` rules).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from certkit import fsguard
from certkit.errors import UsageError

SCHEME = "scrypt"
N, R, P = 2**14, 8, 1
DKLEN = 32
MAXMEM = 64 * 1024 * 1024
# Compared against when the user does not exist, so an unknown name costs
# the same time as a wrong password (no user enumeration by timing).
_DUMMY = f"{SCHEME}${N}${R}${P}${base64.b64encode(b'0' * 16).decode()}${base64.b64encode(b'0' * DKLEN).decode()}"


def hash_password(password: str, salt: bytes | None = None) -> str:
    """The stored form of ``password``: ``scrypt$n$r$p$salt$hash``."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=N, r=R, p=P, maxmem=MAXMEM, dklen=DKLEN)
    return f"{SCHEME}${N}${R}${P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(stored: str, password: str) -> bool:
    """True when ``password`` matches the stored hash (constant-time compare)."""
    try:
        scheme, n, r, p, salt_b64, hash_b64 = stored.split("$")
        if scheme != SCHEME:
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(hash_b64)
        digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=int(n), r=int(r), p=int(p),
                                maxmem=MAXMEM, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def check_username(user: str) -> str:
    """Refuse names the file format cannot hold (exit 2)."""
    if not user or len(user) > 256 or any(c in user for c in ":\r\n\0") or user != user.strip():
        raise UsageError(f"invalid user name {user!r}",
                         "use a non-empty name without ':' or line breaks, e.g. alice@example.com")
    return user


def check_users_file(path: Path) -> None:
    """Refuse a users file another user could write (exit 2, with the fix)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return  # reported as missing by the caller
    except OSError as exc:
        raise UsageError(f"cannot examine users file {path}: {exc.strerror}", "check its permissions") from exc
    # Refused whoever runs the server: a file others can write lets them add a login.
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UsageError(f"users file {path} is writable by group or others (mode {stat.S_IMODE(mode):04o}): "
                         "anyone who can write it can add a login",
                         f"chmod 600 {path}")
    fsguard.check_trusted_chain(path, "users file")


def load_users(path: str | Path) -> dict[str, str]:
    """Read the users file into {user: stored hash}; exit 2 when missing, malformed or writable by others."""
    path = Path(path)
    check_users_file(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UsageError(f"users file {path} does not exist",
                         f"create it with: certkit smtpd adduser {path} USER") from exc
    except OSError as exc:
        raise UsageError(f"cannot read users file {path}: {exc.strerror}", "check its permissions") from exc
    except UnicodeDecodeError:
        raise UsageError(f"users file {path} is not UTF-8 text",
                         f"point --users at the file `certkit smtpd adduser {path} USER` writes") from None
    users: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, stored = line.partition(":")
        if not sep or not stored.startswith(SCHEME + "$") or stored.count("$") != 5:
            raise UsageError(f"{path}:{number}: not a `user:scrypt$...` line",
                             "fix or remove that line, or recreate it with certkit smtpd adduser")
        users[user] = stored
    return users


def verify(users: dict[str, str], user: str, password: str) -> bool:
    """True when ``user`` exists and ``password`` is right; same cost either way."""
    stored = users.get(user)
    ok = verify_password(stored or _DUMMY, password)
    return ok and stored is not None


def add_user(path: str | Path, user: str, password: str) -> bool:
    """Add or replace ``user`` in the users file (created 0600). Returns True if it was new."""
    from certkit.atomicfile import atomic_write

    check_username(user)
    if not password:
        raise UsageError("the password is empty", "choose a non-empty password")
    path = Path(path)
    lines: list[str] = []
    new = True
    if path.exists():
        load_users(path)  # refuse to rewrite a malformed file
        for raw in path.read_text(encoding="utf-8").splitlines():
            if raw.strip().partition(":")[0] == user and not raw.lstrip().startswith("#"):
                if new:
                    lines.append(f"{user}:{hash_password(password)}")
                new = False
                continue
            lines.append(raw)
    if new:
        lines.append(f"{user}:{hash_password(password)}")
    if not path.parent.exists():
        raise UsageError(f"folder {path.parent} does not exist", "create it first or choose another path")
    atomic_write(path, ("\n".join(lines) + "\n").encode("utf-8"), 0o600)
    if os.name != "nt":
        os.chmod(path, 0o600)
    return new
