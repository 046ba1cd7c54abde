"""Renewal: due-ness, the run (self-signed), failures, concurrency, ARI, interrupted runs, the CLI."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from certkit import clock, keys
from certkit import x509 as cx
from certkit.cli import cli
from certkit.errors import AcmeError
from certkit.issuing import issue
from certkit.renew import ari as renew_ari
from certkit.renew import due, resources
from certkit.renew import run as renew
from certkit.settings import LineageSettings, PfxSettings
from certkit.store import Store

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def quiet(_: str) -> None:
    pass


def make(store: Store, name: str, days: int, key_type: str = "ec256", **kw: Any) -> LineageSettings:
    settings = LineageSettings(name=name, domains=[name, "alt." + name], key_type=key_type, days=days, **kw)
    issue(store, settings, echo=quiet)
    return settings


def live_cert(store: Store, name: str) -> Any:
    return cx.load_chain(store.live_paths(name).cert.read_bytes())[0]


def assert_live_consistent(store: Store, name: str) -> None:
    paths = store.live_paths(name)
    assert cx.key_matches(live_cert(store, name), keys.load_pem(paths.key.read_bytes()))
    combined = paths.combined.read_bytes()
    assert cx.key_matches(cx.load_chain(combined)[0], keys.load_pem(combined))


def later(hours: float) -> renew.Clock:
    moment = dt.datetime.now(UTC) + dt.timedelta(hours=hours)
    return lambda: moment


# ----- due-ness (pure) ---------------------------------------------------------

def test_due_rules_and_reasons() -> None:
    nb = NOW - dt.timedelta(days=60)
    na = nb + dt.timedelta(days=90)  # 30 days left: exactly 1/3
    assert due.explain(nb, na, NOW - dt.timedelta(days=1)) == (False, "31 days left; due from 2026-11-28T12:00:00Z")
    is_due, why = due.explain(nb, na, NOW)
    assert is_due and "30 of 90 days left, under 1/3" in why
    # 6-day certificate: due with 3 days left (1/2), not at 1/3.
    nb6, na6 = NOW, NOW + dt.timedelta(days=6)
    assert not due.is_due(nb6, na6, NOW + dt.timedelta(days=2, hours=23))
    assert due.is_due(nb6, na6, NOW + dt.timedelta(days=3))
    assert due.explain(nb6, na6, na6 + dt.timedelta(seconds=1))[1].startswith("expired on")
    # ARI window opening earlier wins, and says so.
    ari = {"start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z"}
    is_due, why = due.explain(nb, na, NOW - dt.timedelta(days=10), ari)
    assert is_due and "ARI" in why
    assert due.renew_after(nb, na, {"start": "garbage"}) == due.renew_after(nb, na)


def test_ari_moment_inside_the_window() -> None:
    window = {"start": "2026-12-01T00:00:00Z", "end": "2026-12-03T00:00:00Z"}
    assert due.pick_in_window(window, 0.5) == "2026-12-02T00:00:00Z"
    assert due.ari_moment({**window, "renew_at": "2026-12-02T00:00:00Z"}) == dt.datetime(2026, 12, 2, tzinfo=UTC)
    assert due.ari_moment({**window, "renew_at": "2027-01-01T00:00:00Z"}) == dt.datetime(2026, 12, 1, tzinfo=UTC)
    assert due.ari_moment(window) == dt.datetime(2026, 12, 1, tzinfo=UTC)  # no pick stored: the start
    assert due.pick_in_window({"start": "2026-12-03T00:00:00Z", "end": "2026-12-01T00:00:00Z"}, 0.5) is None
    nb, na = NOW - dt.timedelta(days=10), NOW + dt.timedelta(days=80)
    assert due.renew_after(nb, na, {**window, "renew_at": "2026-12-02T00:00:00Z"}) == dt.datetime(
        2026, 12, 2, tzinfo=UTC)


def test_ari_check_schedule() -> None:
    assert due.ari_check_due(None, NOW)
    assert due.ari_check_due({"checked": clock.iso(NOW - dt.timedelta(hours=7))}, NOW)
    assert not due.ari_check_due({"checked": clock.iso(NOW - dt.timedelta(hours=1))}, NOW)
    assert not due.ari_check_due({"retry_after": clock.iso(NOW + dt.timedelta(minutes=5))}, NOW)
    assert due.ari_check_due({"retry_after": clock.iso(NOW)}, NOW)


@given(
    lifetime_h=st.integers(min_value=1, max_value=400 * 24),
    at=st.floats(min_value=0, max_value=1.2),
)
def test_due_is_a_threshold_inside_the_lifetime(lifetime_h: int, at: float) -> None:
    nb = NOW
    na = NOW + dt.timedelta(hours=lifetime_h)
    when = due.renew_after(nb, na)
    assert nb < when < na
    now = nb + (na - nb) * at
    assert due.is_due(nb, na, now) == (now >= when) == due.explain(nb, na, now)[0]


# ----- the run -------------------------------------------------------------------

def test_backdated_short_lived_is_renewed_fresh_one_left_alone(home: Path) -> None:
    store = Store(home)
    make(store, "short.example", days=1, key_type="rsa2048")
    make(store, "fresh.example", days=90)
    old = live_cert(store, "short.example")
    lines: list[str] = []
    report = renew.run(store, clock=later(20), echo=quiet, report_line=lines.append)
    assert report.names("renewed") == ["short.example"]
    assert report.names("not_due") == ["fresh.example"]
    assert report.to_json()["failed"] == []
    new = live_cert(store, "short.example")
    assert new.serial_number != old.serial_number
    assert cx.dns_names(new) == ["short.example", "alt.short.example"]
    assert keys.key_type_of(keys.load_pem(store.live_paths("short.example").key.read_bytes())) == "rsa2048"
    assert store.live_version("short.example") == 2 and store.live_version("fresh.example") == 1
    assert_live_consistent(store, "short.example")
    state = store.load_state("short.example")
    assert state["last_renewal"]["ok"] is True and state["last_renewal"]["version"] == 2
    assert state["unfinished"] is None
    assert sorted(ln.split()[0] for ln in lines) == ["not", "renewed"]
    assert any(ln.startswith("renewed   short.example: version 2") for ln in lines)


def test_failure_is_recorded_and_others_still_run(home: Path, tmp_path: Path) -> None:
    store = Store(home)
    pw = tmp_path / "pfx-password"
    pw.write_text("s3cret\n")
    make(store, "broken.example", days=1, pfx=PfxSettings(enabled=True, password_file=str(pw)))
    make(store, "good.example", days=1)
    pw.unlink()  # the next issue cannot read its PFX password: a real failure inside the pipeline
    report = renew.run(store, clock=later(20), echo=quiet)
    assert report.names("renewed") == ["good.example"]
    failed = report.to_json()["failed"]
    assert [f["name"] for f in failed] == ["broken.example"]
    assert "PFX password" in failed[0]["error"]
    assert store.live_version("broken.example") == 1  # the previous version stays live
    last = store.load_state("broken.example")["last_renewal"]
    assert last["ok"] is False and "PFX password" in last["error"] and last["version"] == 1
    assert store.load_state("broken.example")["unfinished"] is None


def test_concurrent_run_renews_every_lineage_consistently(home: Path) -> None:
    store = Store(home)
    names = sorted(f"m{i}.example" for i in range(12))
    for name in names:
        make(store, name, days=30)
    report = renew.run(store, force=True, concurrency=6, echo=quiet)
    assert sorted(report.names("renewed")) == names
    for name in names:
        assert store.versions(name) == [1, 2] and store.live_version(name) == 2
        assert_live_consistent(store, name)
        assert not list(store.versions_dir(name).glob(".staging-*"))
    assert not store._lock.is_held()  # the lock is released


def test_bad_issue_in_one_thread_does_not_stop_the_others(home: Path) -> None:
    store = Store(home)
    for name in ("a.example", "b.example", "c.example"):
        make(store, name, days=30)

    def flaky(st: Store, settings: LineageSettings, echo: Any) -> Any:
        if settings.name == "b.example":
            raise AcmeError("the CA said no", "try later")
        if settings.name == "c.example":
            raise RuntimeError("a bug")
        return issue(st, settings, echo=echo)

    said: list[str] = []
    report = renew.run(store, force=True, issue_fn=flaky, echo=said.append)
    assert report.names("renewed") == ["a.example"]
    errors = {f["name"]: f["error"] for f in report.to_json()["failed"]}
    assert errors == {"b.example": "the CA said no - try later", "c.example": "unexpected RuntimeError: a bug"}
    assert any("Traceback" in s for s in said)


def test_dry_run_changes_nothing_and_jitter_only_when_due(home: Path) -> None:
    store = Store(home)
    make(store, "short.example", days=1)
    make(store, "fresh.example", days=90)
    before = {n: (store.versions(n), store.load_state(n)) for n in store.names()}
    slept: list[float] = []
    report = renew.run(store, dry_run=True, jitter=True, clock=later(20), sleep=slept.append, echo=quiet)
    assert report.names("due") == ["short.example"] and report.names("not_due") == ["fresh.example"]
    assert report.to_json()["dry_run"] is True and report.to_json()["renewed"] == []
    assert before == {n: (store.versions(n), store.load_state(n)) for n in store.names()}
    assert slept == []
    renew.run(store, jitter=True, sleep=slept.append, echo=quiet)  # nothing due now: no wait
    assert slept == []
    import random

    renew.run(store, jitter=True, jitter_max=300, clock=later(20), sleep=slept.append, rng=random.Random(1),
              echo=quiet)
    assert len(slept) == 1 and 0 <= slept[0] <= 300
    assert store.live_version("short.example") == 2


def test_interrupted_runs_are_finished(home: Path) -> None:
    store = Store(home)
    make(store, "a.example", days=90)
    make(store, "b.example", days=90)
    with store.lock():
        # a: killed before the new version went live -> issue again.
        store.update_state("a.example", renewing={"time": "2026-11-28T00:00:00Z", "from_version": 1})
        # b: killed after version 2 went live, before its deploy finished -> deploy again only.
        v2 = store.add_version("b.example", *_pem_pair())
        store.activate("b.example", v2)
        store.update_state("b.example", renewing={"time": "2026-11-28T00:00:00Z", "from_version": 1})
    decision = renew.decide(store, "a.example", dt.datetime.now(UTC))
    assert decision.due and "interrupted" in decision.reason
    report = renew.run(store, echo=quiet)
    assert sorted(report.names("renewed")) == ["a.example", "b.example"]
    assert store.versions("a.example") == [1, 2] and store.live_version("a.example") == 2
    assert store.versions("b.example") == [1, 2] and store.live_version("b.example") == 2  # no third version
    assert all(store.load_state(n)["unfinished"] is None for n in ("a.example", "b.example"))
    assert renew.run(store, echo=quiet).names("not_due") == ["a.example", "b.example"]


def _pem_pair() -> tuple[bytes, bytes]:
    from certkit.names import parse_names

    key = keys.generate("ec256")
    return keys.to_pem(key), cx.to_pem(cx.self_signed(key, parse_names("b.example"), 90))


def test_ari_window_is_fetched_stored_and_decides(home: Path) -> None:
    store = Store(home)
    settings = make(store, "acme.example", days=90)
    with store.lock():  # pretend the lineage came from an ACME CA; the fetcher stands in for it
        settings.source = "https://ca.invalid/dir"
        from certkit.settings import AcmeSettings

        settings.acme = AcmeSettings(server=settings.source)
        store.save_settings(settings)
    calls: list[str] = []
    now = dt.datetime.now(UTC)

    def fetcher(st: Store, s: LineageSettings, cert: Any) -> dict[str, Any]:
        calls.append(s.name)
        return {"start": clock.iso(now - dt.timedelta(days=2)), "end": clock.iso(now - dt.timedelta(hours=1))}

    renewed: list[str] = []

    def fake_issue(st: Store, s: LineageSettings, echo: Any) -> Any:
        renewed.append(s.name)
        return renew.LineageResult(s.name, "renewed", "", version=1)

    report = renew.run(store, clock=lambda: now, ari_fetcher=fetcher, issue_fn=fake_issue, echo=quiet)
    assert calls == ["acme.example"] and renewed == ["acme.example"]
    assert "ARI" in report.results[0].reason
    # The window was about the replaced certificate: forgotten after the renewal, asked again next run.
    assert store.load_state("acme.example")["ari"] is None

    def later_window(st: Store, s: LineageSettings, cert: Any) -> dict[str, Any]:
        calls.append(s.name)
        return {"start": clock.iso(now + dt.timedelta(days=20)), "end": clock.iso(now + dt.timedelta(days=21))}

    report = renew.run(store, clock=lambda: now, ari_fetcher=later_window, issue_fn=fake_issue, echo=quiet)
    assert calls == ["acme.example"] * 2 and report.names("not_due") == ["acme.example"]
    ari = store.load_state("acme.example")["ari"]
    assert ari["checked"] == clock.iso(now) and ari["retry_after"] == clock.iso(now + due.ARI_RECHECK)
    # RFC 9773 section 4.2: a random moment inside the window, kept while the window stays put.
    assert ari["start"] <= ari["renew_at"] <= ari["end"]
    picked = ari["renew_at"]
    with store.lock():
        renew_ari.refresh_ari(store, "acme.example", now + dt.timedelta(hours=7), later_window, quiet)
    assert store.load_state("acme.example")["ari"]["renew_at"] == picked
    calls.pop()
    renew.run(store, clock=lambda: now + dt.timedelta(hours=1), ari_fetcher=later_window, issue_fn=fake_issue,
              echo=quiet)
    assert calls == ["acme.example"] * 2  # not asked again before retry_after
    assert renewed == ["acme.example"]

    def down(st: Store, s: LineageSettings, cert: Any) -> dict[str, Any]:
        raise AcmeError("renewalInfo unreachable")

    said: list[str] = []
    with store.lock():
        store.update_state("acme.example", ari=None)
    report = renew.run(store, clock=lambda: now, ari_fetcher=down, issue_fn=fake_issue, echo=said.append)
    assert report.names("not_due") == ["acme.example"]  # an ARI failure only postpones the check
    assert any("could not fetch the renewal window" in s for s in said)


# ----- the command line ------------------------------------------------------------

def test_cli_json_exit_codes_and_list(home: Path, tmp_path: Path) -> None:
    store = Store(home)
    make(store, "fresh.example", days=90)
    runner = CliRunner()
    result = runner.invoke(cli, ["renew", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["renewed"] == [] and data["not_due"] == ["fresh.example"] and data["failed"] == []
    result = runner.invoke(cli, ["renew", "nope.example"])
    assert result.exit_code == 2 and "no lineage named 'nope.example'" in result.output
    result = runner.invoke(cli, ["renew", "--force", "fresh.example"])
    assert result.exit_code == 0, result.output
    assert "renewed   fresh.example: version 2" in result.output and "1 renewed, 0 not due, 0 failed" in result.output
    result = runner.invoke(cli, ["renew", "--quiet"])
    assert result.exit_code == 0 and result.output == ""
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    make(store, "broken.example", days=90, pfx=PfxSettings(enabled=True, password_file=str(pw)))
    pw.unlink()
    result = runner.invoke(cli, ["renew", "--force", "--json"])
    assert result.exit_code == 1
    out = result.stdout if hasattr(result, "stdout") else result.output
    data = json.loads(out[: out.rindex("}") + 1])
    assert data["renewed"] == ["fresh.example"] and data["failed"][0]["name"] == "broken.example"
    assert "error: renewal failed for 1 of 2 lineage(s): broken.example" in result.output
    assert "Traceback" not in result.output
    listing = runner.invoke(cli, ["list"]).output
    rows = {line.split()[0]: line.split() for line in listing.splitlines()}
    assert listing.splitlines()[0].split()[-2:] == ["LAST", "RENEWAL"]
    assert rows["broken.example"][-1] == "FAILED" and rows["fresh.example"][-1] == "ok"


def test_real_run_under_faketime(home: Path) -> None:
    """The installed code path end to end, with the clock moved by faketime (no injection)."""
    import shutil

    if shutil.which("faketime") is None:
        from tests.conftest import skip_or_fail

        skip_or_fail("faketime is not installed (Debian package faketime)")
    store = Store(home)
    make(store, "short.example", days=2)
    make(store, "fresh.example", days=90)
    cmd = ["faketime", "-f", "+40h", sys.executable, "-m", "certkit", "--home", str(home), "renew", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["renewed"] == ["short.example"] and data["not_due"] == ["fresh.example"]
    new = live_cert(store, "short.example")
    assert cx.not_before(new) > dt.datetime.now(UTC) + dt.timedelta(hours=30)  # issued "in the future"
    assert_live_consistent(store, "short.example")


def test_damaged_live_certificate_is_replaced(home: Path) -> None:
    store = Store(home)
    make(store, "ok.example", days=90)
    make(store, "damaged.example", days=90)
    target = store.version_paths("damaged.example", 1).cert
    target.chmod(0o644)
    target.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    report = renew.run(store, echo=quiet)
    assert report.names("renewed") == ["damaged.example"] and report.names("not_due") == ["ok.example"]
    assert "missing or unreadable" in report.results[0].reason
    assert_live_consistent(store, "damaged.example")


def test_lineages_deploying_to_one_server_take_turns(home: Path) -> None:
    import threading
    import time

    from certkit.settings import DeployTarget

    store = Store(home)
    postfix = [f"p{i}.example" for i in range(4)]
    plain = [f"s{i}.example" for i in range(4)]
    for name in postfix + plain:
        make(store, name, days=90)
    with store.lock():
        for name in postfix:
            settings = store.load_settings(name)
            settings.deploy = [DeployTarget("postfix", {"config_dir": "/etc/postfix"})]
            store.save_settings(settings)
    guard = threading.Lock()
    active = {"postfix": 0, "plain": 0}
    peak = {"postfix": 0, "plain": 0}

    def slow_issue(st: Store, settings: LineageSettings, echo: Any) -> Any:
        kind = "postfix" if settings.deploy else "plain"
        with guard:
            active[kind] += 1
            peak[kind] = max(peak[kind], active[kind])
        time.sleep(0.05)
        with guard:
            active[kind] -= 1
        return renew.LineageResult(settings.name, "renewed", "", version=1)

    report = renew.run(store, force=True, concurrency=8, issue_fn=slow_issue, echo=quiet)
    assert sorted(report.names("renewed")) == sorted(postfix + plain)
    assert peak["postfix"] == 1  # never two Postfix edits/reloads at once
    assert peak["plain"] > 1  # the others still run in parallel
    assert resources.shared_resources(store.load_settings("p0.example")) == ["deploy:postfix"]
    assert resources.shared_resources(store.load_settings("s0.example")) == []


def test_failure_that_leaves_a_new_version_live_is_finished_next_run(home: Path) -> None:
    from certkit.errors import HookError

    store = Store(home)
    make(store, "x.example", days=90)

    def half_done(st: Store, settings: LineageSettings, echo: Any) -> Any:
        v = st.add_version("x.example", *_pem_pair())
        st.activate("x.example", v)
        raise HookError("deploy failed and so did the rollback")

    report = renew.run(store, force=True, issue_fn=half_done, echo=quiet)
    assert report.failed[0].version == 2 and store.live_version("x.example") == 2
    assert store.load_state("x.example")["unfinished"]["from_version"] == 1  # kept: deploy still owed
    report = renew.run(store, echo=quiet)  # not forced: the marker makes it due; deploy only
    assert report.names("renewed") == ["x.example"] and "interrupted" in report.results[0].reason
    assert store.versions("x.example") == [1, 2] and store.load_state("x.example")["unfinished"] is None


def test_summary_lines_keep_name_order_however_threads_finish(home: Path) -> None:
    """Issue 13: the journal of a concurrent run lists lineages in a stable order."""
    import threading

    store = Store(home)
    names = ["a.example", "b.example", "c.example"]
    for name in names:
        make(store, name, days=30)
    later_done = {n: threading.Event() for n in names}

    def reverse_order_issue(st: Store, s: LineageSettings, echo: Any) -> Any:
        # c finishes first, then b, then a: each waits for the one after it.
        after = names[names.index(s.name) + 1:]
        for other in after:
            assert later_done[other].wait(30)
        try:
            return issue(st, s, echo=echo)
        finally:
            later_done[s.name].set()

    lines: list[str] = []
    renew.run(store, force=True, concurrency=3, issue_fn=reverse_order_issue, echo=quiet,
              report_line=lines.append)
    assert [line.split()[1].rstrip(":") for line in lines] == names
