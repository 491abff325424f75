"""The state of one read: its options, the read summary (``events.attrs["report"]``), the
per-row drop reasons and the loaded source with its columns."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

import numpy as np
import pandas as pd

from ..settings import EventSettings


@dataclass
class _Report:
    """What :func:`read_events` read, kept and dropped, and why (``events.attrs["report"]``)."""

    source: str
    kind: str
    fmt: str = ""  # "format" in the report
    encoding: str | None = None
    encoding_how: str | None = None
    sep: str | None = None
    crs: str | None = None
    tz: str | None = None
    tz_how: str | None = None
    tz_zones: dict[str, int] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    time_built: str | None = None
    read_at: str | None = None
    hints: list[str] = field(default_factory=list)
    columns: dict[str, list[str]] = field(default_factory=dict)
    rows_read: int = 0
    rows_kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unknown_values: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data, in the order of the fields above."""
        out: dict[str, Any] = {}
        for f in dataclass_fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                v = list(v)
            elif isinstance(v, dict):
                v = dict(v)  # a Counter too
            out["format" if f.name == "fmt" else f.name] = v
        return out


class _Drops:
    """First drop reason per row, with a few example rows per reason."""

    def __init__(self, n: int, raw: pd.DataFrame) -> None:
        self.reason = np.full(n, None, dtype=object)
        self.raw = raw

    def mark(
        self, mask: np.ndarray, reason: str, column: str | Sequence[str] | None = None
    ) -> None:
        mask = np.asarray(mask, dtype=bool) & (self.reason == None)  # noqa: E711
        self.reason[mask] = reason
        self._columns = getattr(self, "_columns", {})
        if column is not None:
            self._columns[reason] = [column] if isinstance(column, str) else list(column)

    @property
    def keep(self) -> np.ndarray:
        return self.reason == None  # noqa: E711

    def count(self, reason: str) -> int:
        return int((self.reason == reason).sum())

    def fill(self, report: _Report, examples: int = 5) -> None:
        cols = getattr(self, "_columns", {})
        for reason, count in Counter(r for r in self.reason if r is not None).most_common():
            report.dropped[reason] = count
            rows = np.flatnonzero(self.reason == reason)[:examples]
            ex = []
            for r in rows:
                item: dict[str, Any] = {"row": int(r) + 1}
                for c in cols.get(reason, []):
                    if c in self.raw.columns:
                        v = self.raw[c].iloc[r]
                        item[c] = None if _isna(v) else str(v)
                ex.append(item)
            report.examples[reason] = ex


def _isna(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


@dataclass
class _Source:
    """The loaded table, which of its columns is which field, and the read's findings so far."""

    raw: pd.DataFrame
    name: str
    kind: str
    report: _Report
    drops: _Drops
    cols: dict[str, list[str]]  # standard field -> source column(s)
    how_built: dict[str, str]  # standard field -> how its column was chosen
    xcol: str | None
    ycol: str | None
    gcol: str | None  # the WKT / EWKT column
    file_geom: bool  # the file's own geometry is the position

    @property
    def n(self) -> int:
        return len(self.raw)

    @property
    def position_columns(self) -> list[str]:
        return [c for c in (self.gcol, self.xcol, self.ycol) if c]


@dataclass(frozen=True)
class _Options:
    """One read's options, once a preset and the arguments are merged (arguments win)."""

    kind: str
    mapping: dict[str, Any]  # standard field -> source column(s)
    origin: dict[str, str]  # field or option -> "given" / "preset NAME"
    vmaps: dict[str, Any]
    args: dict[str, Any]  # the other options that were given, by name
    strict: bool
    settings: EventSettings

    def get(self, name: str) -> Any:
        return self.args.get(name)
