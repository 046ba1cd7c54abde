"""The last check result of every endpoint `certkit check` audited, kept in the state directory.

``checks/endpoints.json`` maps each endpoint (the URL as given) to the
summary of its last check (:meth:`certkit.check.report.CheckReport.summary`:
time, ok, failed check ids, WARN count, elapsed ms, the served certificate's
not-after). `certkit metrics` turns it into ``certkit_check_*`` series.
An endpoint not checked for :data:`MAX_AGE_DAYS` days is dropped the next
time the file is written, so a retired server stops being reported.
The file is advisory: a damaged one is read as empty and rewritten.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from certkit.clock import parse_time
from certkit.store import Store

RELPATH = "checks/endpoints.json"
MAX_AGE_DAYS = 30


def load(store: Store) -> dict[str, dict[str, Any]]:
    """Endpoint -> its last summary (empty when none was recorded or the file is damaged)."""
    data = store.read_file(RELPATH)
    if data is None:
        return {}
    try:
        parsed = json.loads(data)
    except ValueError:
        return {}
    endpoints = parsed.get("endpoints") if isinstance(parsed, dict) else None
    if not isinstance(endpoints, dict):
        return {}
    return {str(k): v for k, v in endpoints.items() if isinstance(v, dict)}


def record(store: Store, results: Mapping[str, dict[str, Any]], now: dt.datetime) -> int:
    """Merge ``results`` into the file (the caller holds the state lock); the number of endpoints kept."""
    merged = load(store)
    merged.update(results)
    cutoff = now - dt.timedelta(days=MAX_AGE_DAYS)
    kept = {url: s for url, s in merged.items() if (parse_time(s.get("time")) or now) >= cutoff}
    body = json.dumps({"version": 1, "endpoints": dict(sorted(kept.items()))}, separators=(",", ":"))
    store.write_file(RELPATH, (body + "\n").encode())
    return len(kept)
