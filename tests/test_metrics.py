"""Prometheus: `certkit metrics`, `certkit check --format prometheus`, the example alert rules.

Every exposition is read back with prometheus_client's own parser and
checked by `promtool check metrics`; the alert rules by `promtool check
rules` and `promtool test rules` (they fire on the series certkit writes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from certkit import clock, endpoints, promtext
from certkit.cli import cli
from certkit.issuing import issue
from certkit.renew import run as renew
from certkit.settings import LineageSettings, PfxSettings
from certkit.store import Store
from tests.conftest import skip_or_fail
from tests.servers.smtpd import SmtpdServer

REPO = Path(__file__).resolve().parent.parent
ALERTS = REPO / "docs" / "prometheus" / "certkit-alerts.yml"


def quiet(_: str) -> None:
    pass


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(name, sorted labels) -> value, through prometheus_client's parser (it raises on bad syntax)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        skip_or_fail("promtool not installed (Debian package prometheus)")
    return subprocess.run(["promtool", *args], input=stdin, capture_output=True, text=True, timeout=60)


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# ----- the exposition writer ------------------------------------------------------

@pytest.mark.unit
def test_label_values_are_escaped_and_read_back_exactly() -> None:
    nasty = 'smtp://a"b\\c\nd:25'
    family = promtext.Family("certkit_check_success", "gauge", "help with \\ and\nnewline")
    family.add(1, endpoint=nasty)
    family.add(0.25, endpoint="plain")
    text = promtext.render([family, promtext.Family("certkit_empty", "gauge", "no samples, not written")])
    assert "certkit_empty" not in text
    got = samples(text)
    assert got[("certkit_check_success", (("endpoint", nasty),))] == 1
    assert got[("certkit_check_success", (("endpoint", "plain"),))] == 0.25
    assert promtool("check", "metrics", stdin=text).returncode == 0


@pytest.mark.unit
def test_bad_metric_and_label_names_are_refused() -> None:
    with pytest.raises(ValueError):
        promtext.Family("certkit-bad", "gauge", "x")
    with pytest.raises(ValueError):
        promtext.Family("certkit_ok", "gauge", "x").add(1, __name__="reserved")
    assert promtext.format_value(float("nan")) == "NaN" and promtext.format_value(float("inf")) == "+Inf"


# ----- certkit metrics --------------------------------------------------------------

def _fleet_home(home: Path, tmp_path: Path) -> Store:
    """Two lineages: good.example renewed once, broken.example failing its renewal twice in a row."""
    store = Store(home)
    pw = tmp_path / "pfx-password"
    pw.write_text("s3cret\n")
    issue(store, LineageSettings(name="broken.example", domains=["broken.example"], key_type="ec256", days=1,
                                 pfx=PfxSettings(enabled=True, password_file=str(pw))), echo=quiet)
    issue(store, LineageSettings(name="good.example", domains=["good.example"], key_type="ec256", days=90),
          echo=quiet)
    pw.unlink()  # the next issue cannot read its PFX password: a real failure in the pipeline
    for _ in range(2):
        renew.run(store, force=True, echo=quiet)
    return store


@pytest.mark.unit
def test_metrics_report_expiry_renewal_due_and_renewal_results(home: Path, tmp_path: Path) -> None:
    _fleet_home(home, tmp_path)
    result = run_cli("--home", str(home), "metrics")
    assert result.exit_code == 0, result.output
    got = samples(result.output)
    show = json.loads(run_cli("--home", str(home), "show", "good.example", "--json").output)
    good = (("lineage", "good.example"),)
    broken = (("lineage", "broken.example"),)
    assert got[("certkit_lineages", ())] == 2
    assert got[("certkit_certificate_not_after_timestamp_seconds", good)] == \
        clock.parse_time(show["not_after"]).timestamp()  # type: ignore[union-attr]
    assert got[("certkit_certificate_renew_after_timestamp_seconds", good)] == \
        clock.parse_time(show["renew_after"]).timestamp()  # type: ignore[union-attr]
    assert got[("certkit_certificate_live", good)] == 1
    assert got[("certkit_renewal_last_success", good)] == 1
    assert got[("certkit_renewal_consecutive_failures", good)] == 0
    assert got[("certkit_renewal_last_success_timestamp_seconds", good)] == \
        clock.parse_time(show["last_renewal"]["time"]).timestamp()  # type: ignore[union-attr]
    assert got[("certkit_renewal_last_success", broken)] == 0
    assert got[("certkit_renewal_consecutive_failures", broken)] == 2
    assert ("certkit_renewal_last_success_timestamp_seconds", broken) not in got  # never renewed
    assert promtool("check", "metrics", stdin=result.output).returncode == 0


@pytest.mark.unit
def test_textfile_is_written_whole_readable_and_replaced(home: Path, tmp_path: Path) -> None:
    _fleet_home(home, tmp_path)
    textdir = tmp_path / "textfile"
    textdir.mkdir()
    (textdir / "certkit.prom").write_text("stale\n")
    result = run_cli("--home", str(home), "metrics", "--textfile", str(textdir))
    assert result.exit_code == 0, result.output
    assert f"wrote {textdir / 'certkit.prom'}" in result.output
    written = (textdir / "certkit.prom").read_text()
    assert "stale" not in written and samples(written)[("certkit_lineages", ())] == 2
    assert os.stat(textdir / "certkit.prom").st_mode & 0o777 == 0o644  # node_exporter runs as its own user
    assert sorted(p.name for p in textdir.iterdir()) == ["certkit.prom"]  # no temp file left behind
    missing = run_cli("--home", str(home), "metrics", "--textfile", str(tmp_path / "nope"))
    assert missing.exit_code == 2 and "no such directory" in missing.output


@pytest.mark.unit
def test_empty_home_still_says_zero_lineages(tmp_path: Path) -> None:
    result = run_cli("--home", str(tmp_path / "none"), "metrics")
    assert result.exit_code == 0
    assert samples(result.output) == {("certkit_lineages", ()): 0, ("certkit_check_endpoints", ()): 0}
    assert not (tmp_path / "none").exists()  # reading metrics creates nothing


@pytest.mark.unit
def test_stale_endpoints_are_dropped_when_the_file_is_rewritten(home: Path) -> None:
    store = Store(home)
    now = clock.utc_now()
    with store.lock():
        then = clock.parse_time("2020-01-01T00:00:00Z")
        assert then is not None
        endpoints.record(store, {"smtp://old.test": {"time": clock.iso(then), "ok": True}}, then)
        assert endpoints.load(store).keys() == {"smtp://old.test"}
        endpoints.record(store, {"smtp://new.test": {"time": clock.iso(now), "ok": False}}, now)
    assert endpoints.load(store).keys() == {"smtp://new.test"}


# ----- certkit check --format prometheus ---------------------------------------------

@pytest.mark.integration
def test_fleet_check_prints_and_records_endpoint_series(smtpd_server: SmtpdServer, tmp_path: Path) -> None:
    home = smtpd_server.home
    good = f"submission://127.0.0.1:{smtpd_server.port}"
    closed = "127.0.0.1:1"
    targets = tmp_path / "targets"
    targets.write_text(f"{good}\n# a comment\n{closed}\n")
    proc = subprocess.run(
        [*_certkit(home), "check", "--targets", str(targets), "--format", "prometheus", "--expect", "mail.test",
         "--name", "mail.test", "--quick", "--timeout", "5"],
        capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 1, proc.stderr  # the closed port FAILs
    got = samples(proc.stdout)
    assert got[("certkit_check_success", (("endpoint", good),))] == 1
    assert got[("certkit_check_success", (("endpoint", closed),))] == 0
    assert got[("certkit_check_failure", (("check", "connect"), ("endpoint", closed)))] == 1
    assert got[("certkit_check_failed_checks", (("endpoint", good),))] == 0
    show = json.loads(subprocess.run([*_certkit(home), "show", "mail.test", "--json"], capture_output=True,
                                     text=True, env=_env(), check=True).stdout)
    assert got[("certkit_check_certificate_not_after_timestamp_seconds", (("endpoint", good),))] == \
        clock.parse_time(show["not_after"]).timestamp()  # type: ignore[union-attr]
    assert "certkit_check_failure series" in proc.stderr
    assert promtool("check", "metrics", stdin=proc.stdout).returncode == 0
    # The same results are recorded in the home (it exists) and `certkit metrics` reports them.
    metrics = subprocess.run([*_certkit(home), "metrics"], capture_output=True, text=True, env=_env(), check=True)
    recorded = samples(metrics.stdout)
    assert recorded[("certkit_check_endpoints", ())] == 2
    assert recorded[("certkit_check_success", (("endpoint", good),))] == 1
    assert recorded[("certkit_check_success", (("endpoint", closed),))] == 0


@pytest.mark.unit
def test_check_format_flags(tmp_path: Path) -> None:
    clash = run_cli("--home", str(tmp_path / "h"), "check", "127.0.0.1:1", "--json", "--format", "text")
    assert clash.exit_code == 2 and "contradict" in clash.output
    # No state directory and no --record: nothing is created; --record creates it.
    run_cli("--home", str(tmp_path / "h"), "check", "127.0.0.1:1", "--timeout", "0.5", "--format", "json")
    assert not (tmp_path / "h").exists()
    plain = run_cli("--home", str(tmp_path / "h"), "check", "127.0.0.1:1", "--timeout", "0.5", "--record")
    assert plain.exit_code == 1
    assert endpoints.load(Store(tmp_path / "h"))["127.0.0.1:1"]["failed"] == ["connect"]


def _certkit(home: Path) -> list[str]:
    import sys

    return [sys.executable, "-m", "certkit", "--home", str(home)]


def _env() -> dict[str, str]:
    from tests.servers.smtpd import child_env

    return child_env()


# ----- the alert rules ---------------------------------------------------------------

@pytest.mark.unit
def test_alert_rules_are_valid_and_fire_on_certkit_series(tmp_path: Path) -> None:
    assert promtool("check", "rules", str(ALERTS)).returncode == 0
    tests = REPO / "tests" / "prometheus" / "certkit-alerts.test.yml"
    result = promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr
