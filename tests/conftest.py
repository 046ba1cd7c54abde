"""Shared fixtures. Server fixtures live in tests/servers/*.py (loaded below).

Integration fixtures skip with the reason when their server cannot start,
except under CI=true, where a missing tool is a failure (scripts/test
installs everything).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.servers.pebble",
    "tests.servers.postfix",
    "tests.servers.zoo",
    "tests.servers.smtpd",
    "tests.servers.authdns",
    "tests.servers.dns",
]

IN_CI = os.environ.get("CI") == "true"

# Test modules that start real servers (Pebble, Postfix, Dovecot, certkit smtpd) or run for seconds;
# everything else is a unit test. `scripts/test -m unit` is the fast loop (under 30 s),
# `-m integration` the rest. A single slow test elsewhere carries @pytest.mark.integration itself.
INTEGRATION_MODULES = {
    "test_acme", "test_renew_acme", "test_postfix", "test_check_postfix", "test_smtpd", "test_smtpd_attacks",
    "test_check_smtpd", "test_check_weak_suites", "test_check_thirdparty", "test_check_coverage",
    "test_check_budget", "test_safety", "test_guide", "test_private_ca_servers", "test_acme_lifecycle",
    "test_dane", "test_mta_sts", "test_dane_postfix",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in INTEGRATION_MODULES or item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


def skip_or_fail(reason: str) -> None:
    """Skip locally, fail in CI (where scripts/test must have installed everything)."""
    if IN_CI:
        pytest.fail(f"required for CI: {reason}")
    pytest.skip(reason)




@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh state directory, also exported as CERTKIT_HOME for CLI runs."""
    path = tmp_path / "certkit-home"
    monkeypatch.setenv("CERTKIT_HOME", str(path))
    monkeypatch.delenv("CERTKIT_PFX_PASSWORD", raising=False)
    yield path


# Places where certkit, run as root with default paths, would change the machine
# itself. Tests must always point certkit elsewhere (--trust-store-dir,
# --unit-dir, --cron-file, private Postfix config dirs).
MACHINE_PLACES = [
    Path("/usr/local/share/ca-certificates"),
    Path("/etc/cron.d"),
    Path("/etc/systemd/system"),
    Path("/etc/certkit"),
]


def _machine_snapshot() -> dict[str, float]:
    seen: dict[str, float] = {}
    for place in MACHINE_PLACES:
        if place.is_dir():
            for entry in place.iterdir():
                if "certkit" in entry.name or place.name == "certkit":
                    seen[str(entry)] = entry.lstat().st_mtime
    main_cf = Path("/etc/postfix/main.cf")
    if main_cf.is_file():
        seen[str(main_cf) + ":tls"] = float(sum(1 for line in main_cf.read_text().splitlines()
                                               if line.startswith("smtpd_tls_")))
    return seen


@pytest.fixture(scope="session", autouse=True)
def machine_untouched() -> Iterator[None]:
    """Fail the run if any test left certkit files in the machine's own trust store,
    cron, systemd units or /etc/certkit, or added TLS settings to the system main.cf."""
    before = _machine_snapshot()
    yield
    after = _machine_snapshot()
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"tests changed the machine itself: {changed}"
