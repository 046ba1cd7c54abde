"""`certkit metrics`: the state directory as Prometheus series (node_exporter textfile format).

Per lineage (label ``lineage``): the live certificate's not-before,
not-after and renewal-due times, whether a live certificate could be read,
and the last renewal's time, result, last success and consecutive
failures. Per endpoint (label ``endpoint``, the URL as given to `certkit
check`): the last check's time, result, duration, FAILed checks and the
served certificate's not-after. Times are Unix seconds
(``*_timestamp_seconds``), durations seconds, results 1 (success) or 0.
The series names are a public interface (docs/fleet.md, alert rules).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from certkit import endpoints
from certkit.atomicfile import atomic_write
from certkit.clock import parse_time
from certkit.errors import CertkitError, UsageError
from certkit.promtext import Family, render
from certkit.store import Store

TEXTFILE_NAME = "certkit.prom"


def _stamp(value: Any) -> float | None:
    moment = parse_time(value)
    return moment.timestamp() if moment else None


def lineage_families(store: Store) -> list[Family]:
    """The ``certkit_certificate_*`` and ``certkit_renewal_*`` families of every lineage in ``store``."""
    from certkit import x509 as cx  # not on `check --format prometheus`'s path, which needs no certificate parsing
    from certkit.renew import due

    live = Family("certkit_certificate_live", "gauge", "1 when the lineage has a readable live certificate, else 0.")
    info = Family("certkit_certificate_info", "gauge", "The live certificate's source, key type and serial (always 1).")
    nb = Family("certkit_certificate_not_before_timestamp_seconds", "gauge", "Start of the live certificate validity.")
    na = Family("certkit_certificate_not_after_timestamp_seconds", "gauge", "End of the live certificate's validity.")
    ra = Family("certkit_certificate_renew_after_timestamp_seconds", "gauge",
                "When `certkit renew` will renew the live certificate (1/3 of its lifetime left, or the CA's window).")
    families = [live, info, nb, na, ra, *_renewal_families(store)]
    for name in store.names():
        state = store.load_state(name)
        cert = cx.read_leaf(store.live_paths(name).cert) if store.live_version(name) is not None else None
        live.add(0 if cert is None else 1, lineage=name)
        if cert is None:
            continue
        try:
            settings = store.load_settings(name)
            info.add(1, lineage=name, source=settings.source, key_type=settings.key_type, serial=cx.serial_hex(cert))
        except CertkitError:
            pass  # damaged settings: the renewal series report it (renew fails on them)
        begin, end = cx.not_before(cert), cx.not_after(cert)
        ari = state.get("ari") if isinstance(state.get("ari"), dict) else None
        nb.add(begin.timestamp(), lineage=name)
        na.add(end.timestamp(), lineage=name)
        ra.add(due.renew_after(begin, end, ari).timestamp(), lineage=name)
    return families


def _renewal_families(store: Store) -> list[Family]:
    last = Family("certkit_renewal_last_timestamp_seconds", "gauge", "When `certkit renew` last renewed or tried to.")
    ok = Family("certkit_renewal_last_success", "gauge", "1 when the last renewal attempt succeeded, 0 when it failed.")
    good = Family("certkit_renewal_last_success_timestamp_seconds", "gauge", "When a renewal last succeeded.")
    fails = Family("certkit_renewal_consecutive_failures", "gauge", "Failed renewal attempts in a row.")
    for name in store.names():
        record = store.load_state(name).get("last_renewal")
        if not isinstance(record, dict) or _stamp(record.get("time")) is None:
            continue
        last.add(_stamp(record["time"]) or 0, lineage=name)
        ok.add(1 if record.get("ok") else 0, lineage=name)
        success = _stamp(record.get("last_success") or (record.get("time") if record.get("ok") else None))
        if success is not None:
            good.add(success, lineage=name)
        fails.add(int(record.get("consecutive_failures") or (0 if record.get("ok") else 1)), lineage=name)
    return [last, ok, good, fails]


def endpoint_families(results: Mapping[str, Mapping[str, Any]]) -> Iterator[Family]:
    """The ``certkit_check_*`` families of endpoint summaries (endpoint -> CheckReport.summary()).

    A generator: each family is built when it is asked for, so a caller that writes them out one by one
    (:func:`certkit.promtext.write`) holds one family of 10,000 endpoints at a time, not seven.
    """
    def each(name: str, help_text: str, value: Callable[[Mapping[str, Any]], float | None]) -> Family:
        family = Family(name, "gauge", help_text)
        for url, summary in results.items():
            got = value(summary)
            if got is not None:
                family.add(got, endpoint=url)
        return family

    yield each("certkit_check_last_timestamp_seconds", "When the endpoint was last checked.",
               lambda s: _stamp(s.get("time")))
    yield each("certkit_check_success", "1 when no check FAILed at the endpoint's last check, else 0.",
               lambda s: 1 if s.get("ok") else 0)
    yield each("certkit_check_duration_seconds", "Wall time of the endpoint's last check.",
               lambda s: float(s.get("elapsed_ms") or 0) / 1000)
    yield each("certkit_check_failed_checks", "Number of checks that FAILed at the last check.",
               lambda s: len(s.get("failed") or []))
    yield each("certkit_check_warning_checks", "Number of checks that WARNed at the last check.",
               lambda s: int(s.get("warn") or 0))
    failure = Family("certkit_check_failure", "gauge", "1 for each check id that FAILed at the endpoint's last check.")
    for url, summary in results.items():
        for check_id in summary.get("failed") or []:
            failure.add(1, endpoint=url, check=str(check_id))
    yield failure
    yield each("certkit_check_certificate_not_after_timestamp_seconds",
               "End of validity of the certificate the endpoint served at its last check.",
               lambda s: _stamp(s.get("not_after")))


def state_text(store: Store) -> str:
    """Everything `certkit metrics` reports for ``store``: counts, lineages, then endpoints."""
    checked = endpoints.load(store)
    lineages = Family("certkit_lineages", "gauge", "Lineages (certificates) in the state directory.")
    lineages.add(len(store.names()))
    counted = Family("certkit_check_endpoints", "gauge", "Endpoints with a recorded last check.")
    counted.add(len(checked))
    return render([lineages, counted, *lineage_families(store), *endpoint_families(checked)])


def write_textfile(folder: Path, text: str) -> Path:
    """``folder/certkit.prom`` replaced in one rename (node_exporter never reads half a file).

    Raises:
        UsageError: ``folder`` is not an existing directory.
        FileWriteError: it cannot be written.
    """
    if not folder.is_dir():
        raise UsageError(f"--textfile {folder}: no such directory",
                         "give node_exporter's --collector.textfile.directory (it must exist)")
    path = folder / TEXTFILE_NAME
    atomic_write(path, text.encode("utf-8"), 0o644)  # node_exporter runs as its own user
    return path
