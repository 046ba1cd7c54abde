"""The guide cannot rot: its commands run against the fixtures and print what it shows.

tests/guide_capture.py runs every ``guide:run`` block of docs/guide.md (a
private Postfix + Dovecot, `certkit smtpd` on loopback ports, Pebble for
ACME) and renders the output blocks; here the fresh output, with times,
serials, fingerprints and ports masked, must equal what the guide shows.
After an intended change in certkit's output, refresh the guide with
``python -m tests.guide_capture``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.guide_capture import GUIDES, Block, Result, mask, parse_guide, render, run_guide

ENGLISH, KOREAN = GUIDES
_SH_BLOCK_RE = re.compile(r"(<!-- guide:run [^>]*-->\s*\n)?```sh\n(.*?)```", re.S)
_CHECKLIST_RE = re.compile(r"^(PASS|WARN|FAIL|SKIP)\s+(\S+)", re.M)


def _blocks(path: Path, kind: str) -> list[Block]:
    return [b for b in parse_guide(path.read_text(encoding="utf-8")) if b.kind == kind]


def test_both_languages_run_the_same_commands_and_show_the_same_output() -> None:
    for kind in ("run", "output"):
        english = [(b.name, b.attrs, b.body) for b in _blocks(ENGLISH, kind)]
        korean = [(b.name, b.attrs, b.body) for b in _blocks(KOREAN, kind)]
        assert [e[0] for e in english] == [k[0] for k in korean], f"guide:{kind} blocks differ in name or order"
        for eng, kor in zip(english, korean, strict=True):
            assert eng == kor, f"guide:{kind} {eng[0]} differs between guide.md and guide.ko.md"


def test_every_certkit_command_in_a_shell_block_is_run() -> None:
    """A ```sh block holding a certkit command must be a guide:run block (PowerShell blocks run on Windows)."""
    for path in GUIDES:
        for match in _SH_BLOCK_RE.finditer(path.read_text(encoding="utf-8")):
            if match.group(1):
                continue
            lines = [ln.strip() for ln in match.group(2).splitlines()]
            stray = [ln for ln in lines if ln.startswith("certkit ")]
            assert not stray, f"{path.name}: not run by the tests: {stray}"


def test_every_output_block_has_a_run_block() -> None:
    runs = {b.name for b in _blocks(ENGLISH, "run")}
    for block in _blocks(ENGLISH, "output"):
        assert block.name in runs, f"guide:output {block.name} has no guide:run block"
        assert block.body.strip(), f"guide:output {block.name} is empty: run python -m tests.guide_capture"


@pytest.fixture(scope="module")
def guide_run() -> Iterator[dict[str, list[Result]]]:
    """Every guide:run block of the English guide, run once against fresh fixtures."""
    from tests.conftest import skip_or_fail
    from tests.servers.pebble import PebbleUnavailable
    from tests.servers.postfix import unavailable_reason

    reason = unavailable_reason()
    if reason:
        skip_or_fail(reason)
    try:
        results = run_guide(ENGLISH.read_text(encoding="utf-8"))
    except (PebbleUnavailable, RuntimeError) as exc:
        skip_or_fail(f"a guide fixture did not start: {exc}")
        raise  # unreachable
    yield results


@pytest.mark.postfix
@pytest.mark.pebble
def test_outputs_match_the_guide(guide_run: dict[str, list[Result]]) -> None:
    stale = []
    for block in _blocks(ENGLISH, "output"):
        fresh = mask(render(guide_run[block.name])).splitlines()
        shown = mask(block.body).splitlines()
        if fresh != shown:
            diff = "\n".join(difflib.unified_diff(shown, fresh, "guide", "fresh run", lineterm="", n=1))
            stale.append(f"{block.name}:\n{diff}")
    assert not stale, ("the guide's output is out of date - run `python -m tests.guide_capture`:\n"
                       + "\n\n".join(stale))


@pytest.mark.postfix
@pytest.mark.pebble
def test_every_check_in_the_guide_passes(guide_run: dict[str, list[Result]]) -> None:
    """Both Linux paths end verified: no FAIL on 25, 587 or 465, AUTH and the test send PASS on 587."""
    checks = {name: res for name, res in guide_run.items() if "/check-" in name}
    assert set(checks) >= {"postfix/check-587", "postfix/check-25", "postfix/check-465", "smtpd/check-587",
                           "smtpd/check-465"}
    for name, results in checks.items():
        out = results[-1].output
        statuses = dict((cid, st) for st, cid in _CHECKLIST_RE.findall(out))
        assert "FAIL" not in statuses.values(), f"{name}:\n{out}"
        assert results[-1].returncode == 0, f"{name}:\n{out}"
        if name.endswith("587"):
            for cid in ("plaintext-auth-refused", "plaintext-mail-refused", "chain-trust", "name-match",
                        "expected-cert", "tls10-refused", "relay-refused", "auth", "send-test"):
                assert statuses.get(cid) == "PASS", f"{name}: {cid} is {statuses.get(cid)}\n{out}"


@pytest.mark.postfix
@pytest.mark.pebble
def test_renewal_redeploys_and_verifies(guide_run: dict[str, list[Result]]) -> None:
    out = guide_run["postfix/renew-force"][-1].output
    assert "renewed   mail.example.com: version 2" in out
    assert "reloaded; serving /etc/certkit/lineages/mail.example.com/live/combined.pem (version 2)" in out
    assert "ok: submission://mail.example.com" in out
    assert "1 renewed, 0 not due, 0 failed" in out


def test_readme_demo_runs_as_written(tmp_path: Path) -> None:
    """The README's 30-second demo, pasted into bash (only the folder and the port changed)."""
    import subprocess

    from tests.guide_capture import REPO, World
    from tests.servers.net import free_port

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## 30-second demo", 1)[1]
    script = section.split("```sh\n", 1)[1].split("```", 1)[0]
    assert "certkit smtpd --listen" in script and "certkit check submission://" in script
    port = free_port()
    script = script.replace("/tmp/demo", str(tmp_path / "demo")).replace("5870", str(port))
    world = World("readme", tmp_path / "shim")
    res = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=world.env(), capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert re.search(rf"submission://127\.0\.0\.1:{port}: OK \(\d+ PASS\)", out), out  # every check PASSes
    assert "PASS  send-test" in out and "PASS  auth " in out, out
    assert list((tmp_path / "demo" / "mail" / "new").iterdir()), "the test message was not delivered"


_LINK_RE = re.compile(r"\]\(([^)\s]+)\)")
# Pages another part of the project is still writing (docs/check.md: the check reference).
PENDING = {"check.md"} - {p.name for p in ENGLISH.parent.glob("*.md")}


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S),
                       re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("doc", ["index.md", "guide.md", "guide.ko.md"])
def test_links_resolve(doc: str) -> None:
    path = ENGLISH.parent / doc
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for link in _LINK_RE.findall(text):
        if link.startswith(("http://", "https://")):
            continue
        target, _, anchor = link.partition("#")
        dest = (path.parent / target).resolve() if target else path
        if not dest.exists():
            if dest.name in PENDING:
                continue
            broken.append(f"{link} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{link} (no such heading)")
    assert not broken, f"{doc}: broken links: {broken}"
