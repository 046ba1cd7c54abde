"""certkit's own environment variables, read in one place.

Each is read when needed (never cached at import) and a bad value is a
usage error (exit 2) that names the variable and shows a good value, so a
typo in a unit file or a shell profile never ends in a traceback:

    CERTKIT_HOME            the state directory (read by click, see cli.py)
    CERTKIT_LOCK_WAIT       seconds a second certkit process waits for the lock
    CERTKIT_HOOK_TIMEOUT    seconds a deploy hook may run
    CERTKIT_DNS_WAIT        seconds dns-01 waits for its TXT records (0: no polling; a lineage's --dns-wait wins)
    CERTKIT_JITTER_MAX      longest `renew --jitter` wait (read by click)
    CERTKIT_PFX_PASSWORD    PFX password (a secret: never passed to child processes)
"""

from __future__ import annotations

import math
import os

from certkit.errors import UsageError

LOCK_WAIT = "CERTKIT_LOCK_WAIT"
HOOK_TIMEOUT = "CERTKIT_HOOK_TIMEOUT"
# Secrets: never passed to child processes (runner.scrub), masked in the log file (journal).
SECRET_ENV = ("CERTKIT_PFX_PASSWORD",)
DNS_WAIT = "CERTKIT_DNS_WAIT"


def seconds(name: str, default: float, *, allow_zero: bool = False) -> float:
    """A duration in seconds from environment variable ``name``, or ``default`` when unset or empty."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    example = f"set it like {name}={default:g}"
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number of seconds", example) from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        least = "zero or more" if allow_zero else "more than zero"
        raise UsageError(f"{name}={raw!r} must be a finite number of seconds, {least}", example)
    return value
