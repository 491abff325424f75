"""What a permit allows (:class:`PermitRules`) and what a check found (:class:`TraceReport`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from .._errors import ValidationError
from ..routing import check_tz, parse_hhmm

_LABELS = json.loads(
    resources.files(__package__).joinpath("labels.json").read_text(encoding="utf-8")
)
#: What a finding is, in English and Chinese (reports and map layers carry both), from
#: ``labels.json`` beside this module.
FINDING_LABELS: dict[str, tuple[str, str]] = {
    kind: (words["en"], words["zh"]) for kind, words in _LABELS["findings"].items()
}
#: Why "keep right" is not checked (shown in every report), in English and Chinese.
KEEP_RIGHT_NOTE: dict[str, str] = dict(_LABELS["keep_right"])


@dataclass
class PermitRules:
    """What a permit allows: its route, daily windows, validity and speed caps.

    Attributes
    ----------
    unit_ids
        The permitted route (ordered unit ids).
    windows
        Daily windows ``[("22:00", "06:00"), ...]`` in ``tz`` (a window past midnight ends the
        next day); empty: any time.
    tz
        The permit's time zone.
    valid_from, valid_to
        Validity period (``None``: open).
    speed_caps_kmh
        Caps by road class (key ``"default"`` for the other classes), applied with the units'
        own limits (the lower one counts).
    """

    unit_ids: list[str]
    windows: list[tuple[str, str]] = field(default_factory=list)
    tz: str = "UTC"
    valid_from: Any = None
    valid_to: Any = None
    speed_caps_kmh: dict[str, float] = field(default_factory=dict)
    permit_id: str | None = None

    def inside(self, times: pd.Series) -> np.ndarray:
        """Whether each (tz-aware) time is inside a window and the validity period."""
        t = pd.to_datetime(times)
        if getattr(t.dtype, "tz", None) is None:
            raise ValidationError("trace times must be tz-aware to check windows")
        local = t.dt.tz_convert(check_tz(self.tz))
        ok = np.ones(len(t), bool)
        if self.windows:
            tod = (local - local.dt.normalize()).to_numpy()
            hit = np.zeros(len(t), bool)
            for a, b in self.windows:
                ta = parse_hhmm(a).to_timedelta64()
                tb = parse_hhmm(b).to_timedelta64()
                hit |= ((tod >= ta) & (tod < tb)) if tb > ta else ((tod >= ta) | (tod < tb))
            ok &= hit
        for bound, cmp in ((self.valid_from, np.greater_equal), (self.valid_to, np.less_equal)):
            if bound is not None:
                try:
                    edge = pd.Timestamp(bound)
                except (ValueError, TypeError) as exc:
                    raise ValidationError(f"unreadable validity bound {bound!r}") from exc
                edge = edge.tz_localize(self.tz) if edge.tzinfo is None else edge
                utc = t.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
                ok &= cmp(utc, edge.tz_convert("UTC").tz_localize(None).to_datetime64())
        return ok


@dataclass
class TraceReport:
    """Result of :func:`check_trace`.

    Attributes
    ----------
    matched
        One row per GPS point (:func:`trafficunit.match_trace`) plus ``on_route`` and
        ``inside_window``.
    findings
        One row per finding: ``kind`` (``off_route``, ``off_network``, ``unmatched``,
        ``speeding``, ``outside_window``), ``label_en``, ``label_zh``, ``start_time``,
        ``end_time``, ``duration_s``, ``length_m``, ``unit_id`` / ``limit_kmh`` /
        ``speed_kmh`` for speeding, and the line (EPSG:4326).
    summary
        Counts and totals, the units driven in order (``units``), and the keep-right note.
    """

    matched: gpd.GeoDataFrame
    findings: gpd.GeoDataFrame
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report: the summary and the findings (geometry as GeoJSON)."""
        return {"summary": self.summary, "findings": json.loads(self.to_geojson())["features"]}

    def to_geojson(self) -> str:
        """The findings as a GeoJSON FeatureCollection (a map layer, EPSG:4326)."""
        f = self.findings.copy()
        for c in ("start_time", "end_time"):
            f[c] = f[c].astype(str)
        return str(f.to_json(na="null", drop_id=True))

    def to_csv(self, path: str | Path) -> None:
        """The findings as CSV (geometry as WKT), written atomically."""
        from ..io import atomic_path

        table = pd.DataFrame(self.findings.assign(geometry=self.findings.geometry.to_wkt()))
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)


_FINDING_COLUMNS = [
    "kind",
    "label_en",
    "label_zh",
    "start_time",
    "end_time",
    "duration_s",
    "length_m",
    "points",
    "unit_id",
    "limit_kmh",
    "speed_kmh",
]
