"""What a check produces: one result per check id, a report per target, text and JSON forms.

Check ids are stable (docs/check.md lists them); scripts match on them.
Statuses: PASS, WARN, FAIL, SKIP for a check that could not run because
an earlier step failed (the earlier step carries the FAIL), and UNKNOWN for
a probe that ran but whose answer does not tell (a server that refused for
want of a client certificate says nothing about TLS 1.0). Only FAIL makes a
report fail; UNKNOWN, like WARN, does not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

PASS, WARN, FAIL, SKIP, UNKNOWN = "PASS", "WARN", "FAIL", "SKIP", "UNKNOWN"
STATUSES = (PASS, WARN, FAIL, SKIP, UNKNOWN)


@dataclass
class CheckResult:
    """One line of the checklist.

    Attributes:
        id: stable identifier, e.g. "starttls-offered".
        status: PASS, WARN, FAIL, SKIP or UNKNOWN.
        detail: one line saying what was seen.
        fix: on FAIL/WARN, what to change (one line).
    """

    id: str
    status: str
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": self.status, "detail": self.detail}
        if self.fix and self.status in (FAIL, WARN):
            out["fix"] = self.fix
        return out


class LiveTranscript(list[str]):
    """A transcript that also hands each line to ``show`` as it is recorded (a terminal sees the
    session as it happens, not all at once after the last timeout)."""

    def __init__(self, show: Callable[[str], None]) -> None:
        super().__init__()
        self._show = show

    def append(self, line: str) -> None:
        super().append(line)
        self._show(line)


@dataclass
class CheckReport:
    """Everything `certkit check` found for one target.

    Attributes:
        target: the URL exactly as given.
        checks: results in the order they ran.
        certificate: facts about the served leaf certificate (empty if none was seen).
        transcript: the telnet-style session, secrets redacted.
        elapsed_ms: wall time of the whole check.
        line: the line of the --targets file the target came from (None: the command line).
    """

    target: str
    checks: list[CheckResult] = field(default_factory=list)
    certificate: dict[str, Any] = field(default_factory=dict)
    transcript: list[str] = field(default_factory=list)
    elapsed_ms: int = 0
    line: int | None = None

    @property
    def ok(self) -> bool:
        """True when no check FAILed."""
        return not any(c.status == FAIL for c in self.checks)

    @property
    def failed(self) -> list[str]:
        """Ids of the FAILed checks, in order."""
        return [c.id for c in self.checks if c.status == FAIL]

    def get(self, check_id: str) -> CheckResult | None:
        """The result with ``check_id``, or None when it was not part of this run."""
        for c in self.checks:
            if c.id == check_id:
                return c
        return None

    def add(self, check_id: str, status: str, detail: str, fix: str = "") -> CheckResult:
        """Append (or replace) the result for ``check_id``."""
        result = CheckResult(check_id, status, detail, fix)
        for i, c in enumerate(self.checks):
            if c.id == check_id:
                self.checks[i] = result
                return result
        self.checks.append(result)
        return result

    def skip(self, ids: Iterable[str], why: str) -> None:
        """Mark checks that could not run because of an earlier FAIL."""
        for check_id in ids:
            if self.get(check_id) is None:
                # Callers pass the reason alone; never "not run: not run: ..." (issue 11.11).
                self.add(check_id, SKIP, f"not run: {why.removeprefix('not run: ')}")

    def summary(self, when: str) -> dict[str, Any]:
        """The few facts kept per endpoint after a check (``certkit metrics`` reads them), ``when`` its time."""
        return {
            "time": when,
            "ok": self.ok,
            "failed": self.failed,
            "warn": sum(1 for c in self.checks if c.status == WARN),
            "elapsed_ms": self.elapsed_ms,
            "not_after": self.certificate.get("not_after"),
        }

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON object for one target."""
        out: dict[str, Any] = {
            "target": self.target,
            "ok": self.ok,
            "checks": [c.to_json() for c in self.checks],
            "certificate": self.certificate,
            "transcript": list(self.transcript),
            "elapsed_ms": self.elapsed_ms,
        }
        if self.line is not None:
            out["line"] = self.line
        return out


def render_text(report: CheckReport, *, transcript: bool = True) -> str:
    """The human form: the session, then one line per check (fix indented below a FAIL/WARN)."""
    lines: list[str] = []
    if transcript and report.transcript:
        lines.extend(report.transcript)
        lines.append("")
    shown = [c for c in report.checks if c.status != SKIP]
    skipped = [c for c in report.checks if c.status == SKIP]
    width = max((len(c.id) for c in shown), default=0)
    column = max((len(c.status) for c in shown), default=4)  # 4, or 7 when an UNKNOWN is shown
    for c in shown:
        lines.append(f"{c.status:<{column}}  {c.id:<{width}}  {c.detail}")
        if c.fix and c.status in (FAIL, WARN):
            lines.append(f"{'':<{column}}  {'':<{width}}  fix: {c.fix}")
    groups: dict[str, list[str]] = {}
    for c in skipped:  # one line per reason: most stand behind the same earlier FAIL
        groups.setdefault(c.detail.removeprefix("not run: "), []).append(c.id)
    for why, ids in groups.items():
        lines.append(f"SKIP  {len(ids)} check{'s' if len(ids) > 1 else ''} not run ({why}): {', '.join(ids)}")
    counts = {s: sum(1 for c in report.checks if c.status == s) for s in STATUSES}
    verdict = "OK" if report.ok else "FAILED"
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    lines.append(f"{report.target}: {verdict} ({summary}) in {report.elapsed_ms} ms")
    return "\n".join(lines)
