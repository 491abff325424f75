"""Time zones: given, or looked up from the positions (timezonefinder)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import shapely

from .._validate import time_zone
from .coords import _lonlat
from .report import _Report
from .schema import _TIME_FIELDS
from .values import _Times


def _time_zone(
    tz: str | None,
    origin: Mapping[str, str],
    geoms: np.ndarray,
    usable: np.ndarray,
    cols: Mapping[str, list[str]],
    report: _Report,
) -> tuple[str, np.ndarray | None]:
    """(zone the times are stored in, each row's zone when the rows lie in several).

    Naive times are local time where the event happened: ``tz`` when given, else the zone
    looked up from the positions."""
    if tz is not None:
        time_zone(
            tz,
            "; give an IANA name such as 'Asia/Shanghai', 'Europe/Helsinki' or 'UTC' with tz=",
        )
        report.tz, report.tz_how = tz, origin.get("tz", "given")
        return tz, None
    if not any(f in cols for f in _TIME_FIELDS):
        report.tz, report.tz_how = "UTC", "no times in the file"
        return "UTC", None
    idx = np.flatnonzero(usable)
    zones = np.full(len(geoms), None, dtype=object)
    if len(idx):
        lon, lat = _lonlat(geoms[idx])
        zones[idx] = zones_at(lon, lat)
    counts = Counter(z for z in zones[idx] if z is not None)
    report.tz_zones = dict(counts.most_common())
    if not counts:
        report.tz, report.tz_how = "UTC", "UTC: no usable position to look the zone up from"
        return "UTC", None
    if len(counts) == 1:
        zone = next(iter(counts))
        report.tz, report.tz_how = zone, "looked up from the coordinates"
        return zone, None
    report.tz = "UTC"
    report.tz_how = (
        f"each row's own zone, looked up from its coordinates ({_zone_counts(report)}); "
        "stored in UTC, hour is the local hour"
    )
    return "UTC", zones


def _zone_counts(report: _Report) -> str:
    return ", ".join(f"{z} {c:,}" for z, c in list(report.tz_zones.items())[:4])


def _describe_time(
    src: list[str],
    fmt: str | None,
    t: _Times,
    *,
    hours_col: list[str] | None,
    report: _Report,
) -> str:
    cols = " joined with ".join(repr(c) for c in src)
    n_year = int(t.year_only.sum())
    if n_year and not t.value.notna().any():
        return f"year only, from {cols} (time left empty, year set)"
    parts = [f"from {cols}"]
    if fmt:
        parts.append(f"format {fmt!r}")
    if t.date_only:
        parts.append(f"dates only, hour from {hours_col[0]!r}" if hours_col else "dates only")
    if n_year:
        parts.append(f"{n_year:,} year-only values")
    if t.naive:
        parts.append(f"written without a zone: local time in {report.tz}")
    return ", ".join(parts)


_TZ_FINDER: Any = None


_ZONE_SHAPES: dict[str, Any] = {}
#: Up to this many distinct positions the zones are looked up one by one; above it, in bulk.
_ZONE_LOOP_MAX = 50_000
#: Bulk lookups test at most this many zones' boundaries (else one by one).
_ZONE_BULK_ZONES = 8


def _tz_finder() -> Any:
    global _TZ_FINDER
    if _TZ_FINDER is None:
        from timezonefinder import TimezoneFinder

        _TZ_FINDER = TimezoneFinder()
    return _TZ_FINDER


def _zone_shape(name: str) -> Any:
    """The zone's boundary as a shapely (multi)polygon, from timezonefinder (cached)."""
    if name not in _ZONE_SHAPES:
        polys = [
            shapely.Polygon(np.column_stack(r[0]), [np.column_stack(h) for h in r[1:]])
            for r in _tz_finder().get_geometry(tz_name=name, coords_as_pairs=False)
        ]
        _ZONE_SHAPES[name] = shapely.MultiPolygon(polys) if polys else None
    return _ZONE_SHAPES[name]


def zones_at(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """IANA time-zone name at each longitude/latitude (``None`` where not finite).

    Looked up with `timezonefinder` (offline boundaries of timezone-boundary-builder), once
    per distinct position rounded to 1e-4 degrees (about 10 m). Many distinct positions are
    tested in one vectorised call per zone against the boundaries (clipped to the data's
    extent) of the zones a sample of them lies in; positions left over (at sea, on a
    boundary, in an enclave the sample missed) are looked up one by one.
    """
    tf = _tz_finder()
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    out = np.full(len(lon), None, dtype=object)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        return out
    # one int64 key per position rounded to 1e-4 degrees (np.unique on rows is slow)
    ix = np.round(lon[ok] * 1e4).astype(np.int64) + 1_800_000
    iy = np.round(lat[ok] * 1e4).astype(np.int64) + 900_000
    keys, inv = np.unique(ix * 2_000_000 + iy, return_inverse=True)
    uniq = np.column_stack(
        [(keys // 2_000_000 - 1_800_000) / 1e4, (keys % 2_000_000 - 900_000) / 1e4]
    )
    names = np.full(len(uniq), None, dtype=object)
    todo = np.arange(len(uniq))
    if len(uniq) > _ZONE_LOOP_MAX:
        pick = np.random.default_rng(0).choice(len(uniq), min(2_000, len(uniq)), replace=False)
        found = {tf.timezone_at(lng=float(a), lat=float(b)) for a, b in uniq[pick]}
        zones = sorted(z for z in found if z and not z.startswith("Etc/"))
        if len(zones) <= _ZONE_BULK_ZONES:
            (x0, y0), (x1, y1) = uniq.min(axis=0) - 0.01, uniq.max(axis=0) + 0.01
            for name in zones:
                shape = _zone_shape(name)
                if shape is None or not len(todo):
                    continue
                part = shapely.clip_by_rect(shape, x0, y0, x1, y1)
                inside = shapely.contains_xy(part, uniq[todo, 0], uniq[todo, 1])
                names[todo[inside]] = name
                todo = todo[~inside]
    for k in todo:
        names[k] = tf.timezone_at(lng=float(uniq[k, 0]), lat=float(uniq[k, 1]))
    out[ok] = names[np.asarray(inv).ravel()]
    return out
