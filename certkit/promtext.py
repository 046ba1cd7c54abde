"""The Prometheus text exposition format (version 0.0.4), as node_exporter's textfile collector reads it.

Pure: families in, text out. Each family is written once with its HELP and
TYPE lines and all its samples together (the format requires it); label
values are escaped (backslash, double quote, newline) and numbers written
so both Prometheus and promtool parse them (``NaN``, ``+Inf``).
See https://prometheus.io/docs/instrumenting/exposition_formats/.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass
class Family:
    """One metric family: its name, type, help text and samples (labels, value).

    Attributes:
        name: e.g. ``certkit_certificate_not_after_timestamp_seconds``.
        kind: ``gauge``, ``counter`` or ``untyped``.
        help: one line for the HELP comment.
        samples: (labels as (name, value) pairs, value) in the order they are added.
    """

    name: str
    kind: str
    help: str
    samples: list[tuple[tuple[tuple[str, str], ...], float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"invalid metric name {self.name!r}")  # a bug in the caller

    def add(self, value: float, **labels: str) -> None:
        """Add one sample; label names are checked, values are escaped when written."""
        for label in labels:
            if not _LABEL_RE.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r}")
        self.samples.append((tuple(labels.items()), value))


def escape_label(value: str) -> str:
    """A label value as the format wants it: ``\\``, ``"`` and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """Integers without a decimal point, NaN and infinities by their exposition names."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def sample_line(name: str, labels: tuple[tuple[str, str], ...], value: float) -> str:
    """One sample line, ``name{a="x",b="y"} value``."""
    if labels:
        inner = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels)
        return f"{name}{{{inner}}} {format_value(value)}"
    return f"{name} {format_value(value)}"


def family_text(family: Family) -> str:
    """One family's HELP, TYPE and sample lines ("" when it has no samples)."""
    if not family.samples:
        return ""
    head = [f"# HELP {family.name} {_escape_help(family.help)}", f"# TYPE {family.name} {family.kind}"]
    return "\n".join([*head, *(sample_line(family.name, labels, value) for labels, value in family.samples)]) + "\n"


def render(families: Iterable[Family]) -> str:
    """The exposition text of ``families`` (families without samples are left out)."""
    return "".join(family_text(f) for f in families)


def write(families: Iterable[Family], out: Callable[[str], object]) -> None:
    """Hand ``out`` the text one family at a time: with a generator of families, only one is in memory."""
    for family in families:
        text = family_text(family)
        if text:
            out(text)
