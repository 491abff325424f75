"""The last stages of a read: drops counted and reported (or refused with ``strict``), then the
output frame in the kind's standard schema, with the unused source columns after it."""

from __future__ import annotations

import warnings
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from .._errors import TrafficUnitWarning, ValidationError
from .report import _Source
from .schema import FIELDS

#: Columns the join adds: a source column of that name is kept as ``src_NAME``.
_JOIN_COLUMNS = {"geometry", "unit_id", "distance_m", "measure_m", "match", "overlap_m"}
_COUNTS = ("deaths", "serious_injuries", "minor_injuries", "injuries")


def _settle_drops(src: _Source, strict: bool) -> np.ndarray:
    """Fill the report with the drops; warn about them, or raise with ``strict``. The rows kept."""
    report, n = src.report, src.n
    src.drops.fill(report)
    keep = src.drops.keep
    report.rows_kept = int(keep.sum())
    n_dropped = n - report.rows_kept
    if not n_dropped:
        return keep
    summary = ", ".join(f"{c} {r}" for r, c in report.dropped.most_common())
    examples = "; ".join(
        f"{r}: " + ", ".join(_fmt_example(e) for e in ex[:3]) for r, ex in report.examples.items()
    )
    unknown_msg = ""
    if report.unknown_values.get("severity"):
        vals = ", ".join(repr(v) for v in report.unknown_values["severity"])
        unknown_msg = f" Unknown severity values: {vals} (map them with severity_map=)."
    if strict:
        raise ValidationError(
            f"{src.name}: {n_dropped} of {n} rows are unusable ({summary}). Examples: "
            f"{examples}.{unknown_msg}"
        )
    warnings.warn(
        f"{src.name}: dropped {n_dropped} of {n} rows ({summary}).{unknown_msg} See "
        ".attrs['report'] for examples; strict=True raises instead.",
        TrafficUnitWarning,
        stacklevel=4,  # here, _read, read_events, then the caller
    )
    return keep


def _assemble(
    src: _Source,
    out: dict[str, Any],
    hours_src: pd.Series | None,
    ids: pd.Series,
    geoms: np.ndarray,
    keep: np.ndarray,
    buffer_m: float | None,
) -> gpd.GeoDataFrame:
    """The kept rows in the standard schema of the kind, EPSG:4326, with the read summary in
    ``.attrs["report"]`` and each dropped input row's reason in ``.attrs["dropped_rows"]``."""
    raw, kind = src.raw, src.kind
    result = pd.DataFrame(index=raw.index)
    result["event_id"] = ids
    result["kind"] = kind
    if kind == "accident":
        _accident_columns(result, out, hours_src)
    elif kind == "hazard":
        result["category"] = out.get("category", _na(raw.index, "string"))
        result["grade"] = out.get(
            "grade", pd.Series("general", index=raw.index, dtype="string")
        ).fillna("general")
        result["status"] = out.get("status", _na(raw.index, "string"))
        result["reported_at"] = out["reported_at"]
    else:
        _workzone_columns(result, out, src)
    result["road_name"] = out.get("road_name", _na(raw.index, "string"))
    result = _with_source_columns(src, result)
    gdf = gpd.GeoDataFrame(result, geometry=gpd.GeoSeries(geoms, index=raw.index), crs=4326)
    if not keep.all():
        gdf = gdf.loc[keep].reset_index(drop=True)
    if buffer_m:
        gdf = _buffer(gdf, float(buffer_m))
    # input row (0-based, as text) -> why it was dropped, for callers reporting per item
    dropped = {str(int(i)): str(src.drops.reason[i]) for i in np.flatnonzero(~keep)}
    gdf.attrs = {"report": src.report.as_dict(), "dropped_rows": dropped}
    return gdf


def _na(index: pd.Index, dtype: str) -> pd.Series:
    return pd.Series(pd.NA, index=index, dtype=dtype)


def _accident_columns(
    result: pd.DataFrame, out: dict[str, Any], hours_src: pd.Series | None
) -> None:
    """Time, year, hour, severity (given, else from the counts), counts and conditions."""
    index = result.index
    time_s = out["time"]
    date_only = bool(out.get("_date_only", False))
    year = out.get("year")
    if year is None:
        year = time_s.dt.year.astype("Int64")
        ys = out.get("_year_only")
        if ys is not None:
            year = year.fillna(ys)
    else:
        year = year.fillna(time_s.dt.year.astype("Int64"))
    result["time"] = time_s
    result["year"] = year.astype("Int64")
    local_hour = out.get("_local_hour")
    if hours_src is not None:
        result["hour"] = hours_src
    elif not date_only and local_hour is not None:
        result["hour"] = local_hour
    elif not date_only:
        result["hour"] = time_s.dt.hour.astype("Int64")
    else:
        result["hour"] = _na(index, "Int64")
    counts = {c: out.get(c, _na(index, "Int64")) for c in _COUNTS}
    sev = out["severity"] if "severity" in out else _severity_from_counts(counts, index)
    result["severity"] = sev
    for c, v in counts.items():
        result[c] = v
    for c in ("collision_type", "light", "weather"):
        result[c] = out.get(c, _na(index, "string"))


def _workzone_columns(result: pd.DataFrame, out: dict[str, Any], src: _Source) -> None:
    """Site code, window (a window ending before it starts is noted, kept), lanes, status."""
    index = result.index
    result["site_code"] = out.get("site_code", _na(index, "string"))
    result["start"] = out["start"]
    result["end"] = out["end"]
    bad_window = (result["end"] < result["start"]).fillna(False).to_numpy()
    if bad_window.any():
        src.report.notes.append(
            f"{int(bad_window.sum())} work zones end before they start; kept as given"
        )
    result["lanes_taken"] = out.get("lanes_taken", pd.Series(np.nan, index=index, dtype="float64"))
    result["night_works"] = out.get("night_works", _na(index, "boolean"))
    result["status"] = out.get("status", _na(index, "string"))


def _with_source_columns(src: _Source, result: pd.DataFrame) -> pd.DataFrame:
    """The standard columns, then the source columns no field used (``src_`` + the name where
    it collides with a standard or join column)."""
    raw = src.raw
    used = {c for cs in src.cols.values() for c in cs}
    if src.gcol:
        used.add(src.gcol)
    if src.file_geom:
        used.add(str(raw.geometry.name))
    reserved = set(result.columns) | _JOIN_COLUMNS
    extras = {}
    for c in raw.columns:
        if c in used:
            continue
        if c == "kind" and (raw[c].astype("string") == src.kind).all():
            continue  # the file's own kind column, as trafficunit writes it
        new = f"src_{c}" if c in reserved else str(c)
        extras[new] = raw[c]
    if extras:
        result = pd.concat([result, pd.DataFrame(extras, index=raw.index)], axis=1)
    return result


def _field_summary(src: _Source) -> dict[str, str]:
    """Each standard field → where its values came from, in words (for the read summary)."""
    cols, kind, how = src.cols, src.kind, src.how_built
    out: dict[str, str] = {}
    pos = []
    if src.gcol:
        pos.append(f"WKT column {src.gcol!r}")
    if src.xcol:
        pos.append(f"x {src.xcol!r}, y {src.ycol!r}")
    if src.file_geom and not src.gcol:
        pos.append("the file's geometry")
    out["position"] = " + ".join(pos) + f" (crs {src.report.crs})"
    has_counts = [f for f in _COUNTS if f in cols]
    for fld in FIELDS[kind]:
        if fld in cols:
            names = " + ".join(repr(c) for c in cols[fld])
            out[fld] = f"{names} ({how.get(fld, 'given')})"
        elif fld == "event_id":
            out[fld] = "row number (no id column)"
        elif fld in ("year", "hour") and kind == "accident" and "time" in cols:
            out[fld] = "from time"
        elif fld == "severity" and has_counts:
            out[fld] = f"from the counts ({', '.join(has_counts)})"
        elif fld == "grade":
            out[fld] = "'general' (no grade column)"
        else:
            out[fld] = "-"
    return out


def _fmt_example(e: dict[str, Any]) -> str:
    vals = ", ".join(f"{k}={v!r}" for k, v in e.items() if k != "row")
    return f"row {e['row']}" + (f" ({vals})" if vals else "")


def _severity_from_counts(counts: dict[str, pd.Series], index: pd.Index) -> pd.Series:
    sev = pd.Series(pd.NA, index=index, dtype="string")
    given = [c for c in counts.values() if c.notna().any()]
    if not given:
        return sev
    known = pd.Series(False, index=index)
    for c in given:
        known |= c.notna()
    sev[known] = "O"
    for col, letter in (
        ("injuries", "B"),
        ("minor_injuries", "B"),
        ("serious_injuries", "A"),
        ("deaths", "K"),
    ):
        v = counts[col]
        sev[(v > 0).fillna(False)] = letter
    return sev


def _buffer(gdf: gpd.GeoDataFrame, metres: float) -> gpd.GeoDataFrame:
    if len(gdf) == 0:
        return gdf
    out = gdf.copy()
    metric = out.estimate_utm_crs()
    out["geometry"] = out.geometry.to_crs(metric).buffer(metres).to_crs(4326)
    return out
