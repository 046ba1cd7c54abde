"""What a renewal run decided and did, per lineage, and how it reads (the summary line, the JSON).

Pure values: certkit.renew.run makes them, the command line prints them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Decision", "LineageResult", "RenewReport", "summary_line"]


@dataclass(frozen=True)
class Decision:
    """Whether one lineage is due, and why."""

    name: str
    due: bool
    reason: str
    renew_after: dt.datetime | None = None
    resume_from: int | None = None  # set when an interrupted run left an `unfinished` marker: the version before
    resume_version: int | None = None  # ... and the version it was making live and deploying


@dataclass
class LineageResult:
    """What the run did with one lineage."""

    name: str
    status: str  # renewed | not_due | due (dry run) | failed | held_back (DANE: next key's TLSA not visible yet)
    reason: str
    version: int | None = None
    error: str | None = None
    not_after: str | None = None
    renew_after: str | None = None
    elapsed: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "status": self.status, "reason": self.reason, "version": self.version,
            "error": self.error, "not_after": self.not_after, "renew_after": self.renew_after,
            "elapsed_s": round(self.elapsed, 3),
        }


@dataclass
class RenewReport:
    """The outcome of one `certkit renew` run."""

    results: list[LineageResult] = field(default_factory=list)
    dry_run: bool = False

    def names(self, status: str) -> list[str]:
        return [r.name for r in self.results if r.status == status]

    @property
    def failed(self) -> list[LineageResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def held_back(self) -> list[LineageResult]:
        return [r for r in self.results if r.status == "held_back"]

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON (``renewed``, ``not_due``, ``failed``) plus details per lineage."""
        out: dict[str, Any] = {
            "renewed": self.names("renewed"),
            "not_due": self.names("not_due"),
            "failed": [{"name": r.name, "error": r.error} for r in self.failed],
        }
        if self.held_back:
            out["held_back"] = [{"name": r.name, "reason": r.error} for r in self.held_back]
        if self.dry_run:
            out["due"] = self.names("due")
            out["dry_run"] = True
        out["lineages"] = [r.as_dict() for r in self.results]
        return out


# ----- deciding ------------------------------------------------------------


def summary_line(result: LineageResult) -> str:
    """The one line per lineage a timer's journal shows."""
    if result.status == "renewed":
        until = f", valid until {result.not_after[:10]}" if result.not_after else ""
        return f"renewed   {result.name}: version {result.version}{until} ({result.reason})"
    if result.status == "not_due":
        return f"not due   {result.name}: {result.reason}"
    if result.status == "due":
        return f"due       {result.name}: {result.reason} (dry run: nothing changed)"
    if result.status == "held_back":
        return f"HELD BACK {result.name}: {result.error} (version {result.version} stays live)"
    return (f"FAILED    {result.name}: {result.error} "
            f"(version {result.version} stays live)" if result.version else
            f"FAILED    {result.name}: {result.error}")
