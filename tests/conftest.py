"""Shared fixtures. Server fixtures live in tests/servers/*.py (loaded below).

Integration fixtures skip with the reason when their server cannot start,
except under CI=true, where a missing tool is a failure (scripts/test
installs everything).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.servers.pebble",
    "tests.servers.postfix",
    "tests.servers.zoo",
    "tests.servers.smtpd",
]

IN_CI = os.environ.get("CI") == "true"


def skip_or_fail(reason: str) -> None:
    """Skip locally, fail in CI (where scripts/test must have installed everything)."""
    if IN_CI:
        pytest.fail(f"required for CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bind 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh state directory, also exported as CERTKIT_HOME for CLI runs."""
    path = tmp_path / "certkit-home"
    monkeypatch.setenv("CERTKIT_HOME", str(path))
    monkeypatch.delenv("CERTKIT_PFX_PASSWORD", raising=False)
    yield path
