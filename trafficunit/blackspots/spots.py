"""Black spots: accident-prone points and sections by a profile (:func:`find_black_spots`).

Points are circles around a centre accident (worst qualifying circle first, each accident in
one point); sections are sliding windows along screening lines (:mod:`.sections`).
"""

from __future__ import annotations

import heapq
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .._errors import TrafficUnitWarning, ValidationError
from .._validate import metric_crs
from ..risk import (
    _attribute_notes,
    _units_frame,
    accidents,
    describe_events,
    dominant_phrases,
)
from ..settings import RiskSettings
from ..timefilter import Period, _data_period, as_period, event_years
from .profiles import (
    _CASUALTY_PROXY,
    BlackSpotProfile,
    _evaluate,
    _event_ids,
    _fields,
    _rule,
    _sum_columns,
    get_profile,
)
from .sections import _section_spots

__all__ = ["find_black_spots"]


def _default_period(acc: pd.DataFrame, years: float) -> Period | None:
    """The latest ``years`` whole years of the data, never starting before the data does."""
    span = _data_period(acc)
    y = event_years(acc).dropna()
    if len(y) == 0 or span is None:
        return None
    end = pd.Timestamp(year=int(y.max()) + 1, month=1, day=1)
    if float(years).is_integer():
        start = pd.Timestamp(year=int(y.max()) - int(years) + 1, month=1, day=1)
    else:
        start = end - pd.Timedelta(days=round(years * 365.25))
    return Period(max(start, span.start), min(end, span.end))


def find_black_spots(
    units: gpd.GeoDataFrame,
    joined: pd.DataFrame,
    *,
    profile: str | BlackSpotProfile | Mapping[str, Any] = "default",
    period: Any = None,
    types: Iterable[str] = ("point", "section"),
    corridors: bool = True,
    settings: RiskSettings | None = None,
) -> gpd.GeoDataFrame:
    """Accident-prone points and sections by a named or user-defined profile.

    Parameters
    ----------
    units
        Traffic units (:func:`trafficunit.build_units`).
    joined
        Accidents joined to the units (:func:`trafficunit.assign`); a GeoDataFrame for points.
    profile
        ``"default"``, ``"kr-molit"``, ``"in-morth"``, ``"pt-ansr"``, a registered name, a
        :class:`~trafficunit.blackspots.profiles.BlackSpotProfile` or a mapping of its fields.
    period
        ``(start, end)``; default the latest ``profile.years`` whole years of data, never
        before the data's first day (a year of data is reported as that year, with a warning
        that the profile is defined over more); ``attrs["period_label"]`` says which.
    types
        ``"point"`` and/or ``"section"``.
    corridors
        Screen divided roads as one corridor (:func:`road_corridors`); False: every
        carriageway on its own.

    An accident counts in at most one point and at most one section (windows are chosen
    best first and give up the accidents of the sections already chosen); a point and a
    section may share accidents, and ``overlap_crashes`` / ``overlap_spot_ids`` say which.

    Returns
    -------
    geopandas.GeoDataFrame
        In the units' CRS, worst first: ``spot_id``, ``type``, ``road``, ``unit_ids``
        (';'-joined), ``length_m`` (0 for points), ``radius_m``, ``start_m``/``end_m`` along
        the road (sections), ``crashes``, ``K``..``O``, ``KA``, ``deaths``,
        ``serious_injuries``, ``minor_injuries``, ``epdo``, ``index``, ``rule``,
        ``explanation``, ``event_ids``, geometry (point or line). Sections also have
        ``segment_crashes`` (on the section's own segments) and ``junction_crashes`` (on the
        intersections inside it), ``corridor`` and ``carriageways``. Every spot has
        ``overlap_crashes`` (its accidents that are also in a spot of the other type) and
        ``overlap_spot_ids``. ``.attrs`` has the profile, period and a report.
    """
    cfg = settings or RiskSettings()
    p = get_profile(profile)
    types = tuple(types)
    bad = set(types) - {"point", "section"}
    if bad:
        raise ValidationError(f"unknown black-spot types {sorted(bad)}; use 'point', 'section'")
    u = _units_frame(units)
    acc, per, report = _accidents_in_period(joined, p, period)
    fields, approx = _fields(acc, cfg)
    report["approximated_fields"] = _approximated(approx, p)
    frames = []
    if "point" in types:
        frames.append(_point_spots(acc, fields, u, p, per))
    if "section" in types:
        frames.append(_section_spots(acc, fields, u, p, per, cfg, corridors))
    frames = [f for f in frames if len(f)]
    if frames:
        out = pd.concat(frames, ignore_index=True)
    else:
        out = pd.DataFrame(columns=["type", "epdo", "crashes", "geometry"])
    out = _ranked(out)
    if len(out):
        out["explanation"] = _explain_spots(acc, out, u)
    else:
        out["explanation"] = pd.Series(dtype=object)
    gdf = gpd.GeoDataFrame(out, geometry="geometry", crs=u.crs)
    gdf.attrs = {
        "profile": {
            "name": p.name,
            "description": p.description,
            "source": p.source,
            "criteria": [str(c) for c in p.criteria],
            "combine": p.combine,
            "point_radius_m": p.point_radius_m,
            "window_m": p.window_m,
            "step_m": p.step_m,
        },
        "period": per.to_json(),
        "period_label": per.label()
        + (" (given)" if period is not None else f" (the latest {p.years:g} years of the data)"),
        "report": {
            k: (int(v) if isinstance(v, int | np.integer) else v) for k, v in report.items()
        },
    }
    return gdf


def _accidents_in_period(
    joined: pd.DataFrame, p: BlackSpotProfile, period: Any
) -> tuple[pd.DataFrame, Period, dict[str, Any]]:
    """The accidents of the period given, else of the profile's latest years of data."""
    acc_all, _, report = accidents(joined, period=None)
    per = as_period(period) if period is not None else _default_period(acc_all, p.years)
    if per is None:
        raise ValidationError("the accidents carry no time or year; give period=(start, end)")
    acc, _, report = accidents(joined, period=per)
    if abs(per.years - p.years) > 0.1 * p.years:
        warnings.warn(
            f"period {per.label()} is {per.years:.1f} years but profile {p.name!r} is defined "
            f"over {p.years:g}; thresholds are applied unchanged",
            TrafficUnitWarning,
            stacklevel=3,
        )
    return acc, per, dict(report)


def _approximated(approx: list[str], p: BlackSpotProfile) -> list[str]:
    """The casualty fields the profile uses that the data lacks (a warning says so)."""
    used_fields = {c.field for c in (*p.criteria, *(p.section_criteria or ()))}
    if "index" in used_fields:
        used_fields |= set(p.index_weights)
    approx_used = sorted(set(approx) & used_fields)
    if approx_used:
        warnings.warn(
            f"the accidents have no {approx_used} column(s); approximated by accident counts "
            f"({', '.join(f'{c}≈{_CASUALTY_PROXY[c]}' for c in approx_used)}), a lower bound",
            TrafficUnitWarning,
            stacklevel=3,
        )
    return approx_used


def _ranked(out: pd.DataFrame) -> pd.DataFrame:
    """Spots worst first with their ids, section-only columns typed alike, overlaps."""
    out = out.sort_values(["epdo", "crashes"], ascending=False, kind="stable", ignore_index=True)
    prefix = np.where(out["type"] == "point", "BP", "BS")
    rank = out.groupby("type").cumcount() + 1 if len(out) else pd.Series(dtype=int)
    out.insert(0, "spot_id", [f"{a}{b:04d}" for a, b in zip(prefix, rank, strict=True)])
    # section-only columns: typed the same whatever the mix of spots (files share a schema)
    for col in ("segment_crashes", "junction_crashes", "carriageways"):
        out[col] = (
            pd.to_numeric(out[col], errors="coerce").astype("Int64")
            if col in out.columns
            else pd.array([pd.NA] * len(out), dtype="Int64")
        )
    corridor = out["corridor"] if "corridor" in out.columns else pd.Series(False, index=out.index)
    out["corridor"] = corridor.astype("boolean").fillna(False).astype(bool)
    out["overlap_crashes"], out["overlap_spot_ids"] = _overlaps(out)
    return out


def _overlaps(spots: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per spot: accidents it shares with spots of the other type, and those spots' ids."""
    n = len(spots)
    counts = np.zeros(n, dtype=np.int64)
    other = np.full(n, "", dtype=object)
    if n == 0 or "event_ids" not in spots.columns:
        return counts, other
    ev = spots["event_ids"].fillna("").astype(str).str.split(";").explode()
    flat = pd.DataFrame(
        {
            "spot": ev.index.to_numpy(),
            "event": ev.to_numpy(dtype=object),
            "type": spots["type"].to_numpy(dtype=object)[ev.index.to_numpy()],
            "id": spots["spot_id"].to_numpy(dtype=object)[ev.index.to_numpy()],
        }
    )
    flat = flat.loc[flat["event"] != ""]
    pair = flat.merge(flat, on="event", suffixes=("", "_o"))
    pair = pair.loc[pair["type"] != pair["type_o"]]
    if len(pair) == 0:
        return counts, other
    counts = np.asarray(
        pair.drop_duplicates(["spot", "event"])
        .groupby("spot")
        .size()
        .reindex(range(n), fill_value=0),
        dtype=np.int64,
    )
    ids = pair.groupby("spot")["id_o"].agg(lambda s: ";".join(sorted(set(s))))
    other = ids.reindex(range(n)).fillna("").to_numpy(dtype=object)
    return counts, other


def _point_spots(
    acc: pd.DataFrame, fields: pd.DataFrame, u: gpd.GeoDataFrame, p: BlackSpotProfile, per: Period
) -> pd.DataFrame:
    if not isinstance(acc, gpd.GeoDataFrame) or acc.crs is None or len(acc) == 0:
        if len(acc):
            warnings.warn(
                "joined has no geometry/CRS; point black spots skipped",
                TrafficUnitWarning,
                stacklevel=3,
            )
        return pd.DataFrame()
    geoms = acc.geometry.to_numpy()
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    acc = acc.loc[ok]
    fields = fields.loc[ok]
    mcrs = metric_crs(u)
    pts_m = gpd.GeoSeries(shapely.point_on_surface(acc.geometry.to_numpy()), crs=acc.crs).to_crs(
        mcrs
    )
    pts = pts_m.to_numpy()
    n = len(pts)
    if n == 0:
        return pd.DataFrame()
    from scipy.sparse import csr_array

    # circle c holds rows mi[indptr[c]:indptr[c + 1]], ascending
    indptr, mi = _circles(pts, p.point_radius_m)
    circles = csr_array((np.ones(len(mi)), mi, indptr), shape=(n, n))
    f = fields.to_numpy(dtype=float)
    cols = list(fields.columns)
    # each circle's sums, added in row order like one bincount per field
    sums = np.ascontiguousarray(circles @ f)
    chosen = _greedy_circles(sums, f, indptr, mi, cols, p)
    if not chosen:
        return pd.DataFrame()
    ids = _event_ids(acc)
    unit = acc["unit_id"].astype(object).to_numpy()
    member_rows = [m for _, m in chosen]
    spot_sums = pd.DataFrame([f[m].sum(axis=0) for m in member_rows], columns=cols)
    out = _sum_columns(spot_sums, p)
    out.insert(0, "type", "point")
    out.insert(1, "road", [_common_road(acc, m) for m in member_rows])
    out["unit_ids"] = [";".join(sorted({str(x) for x in unit[m]})) for m in member_rows]
    out["length_m"] = 0.0
    out["radius_m"] = p.point_radius_m
    out["start_m"] = np.nan
    out["end_m"] = np.nan
    out["rule"] = _rule(p, per, "point", p.criteria, f"within {p.point_radius_m:g} m")
    out["event_ids"] = [";".join(ids[m]) for m in member_rows]
    centre = gpd.GeoSeries(pts[[b for b, _ in chosen]], crs=mcrs).to_crs(u.crs)
    out["geometry"] = centre.to_numpy()
    return out


def _circles(pts: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Each point's circle as CSR ``(indptr, rows)``: the rows within ``radius``, ascending.

    Within is :func:`shapely.dwithin` (``distance <= radius``, itself included). A KD-tree finds
    the pairs within a hair more than ``radius``; pairs whose numpy distance is within 1e-9 of
    ``radius`` (relative) are decided by shapely itself, so float rounding can not tell them
    apart from a shapely query.
    """
    from scipy.spatial import cKDTree

    n = len(pts)
    xy = shapely.get_coordinates(pts)
    pairs = cKDTree(xy).query_pairs(radius * (1 + 1e-9), output_type="ndarray")
    i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    d2 = ((xy[i] - xy[j]) ** 2).sum(axis=1)
    keep = d2 <= (radius * (1 - 1e-9)) ** 2
    edge = np.flatnonzero(~keep & (d2 <= (radius * (1 + 1e-9)) ** 2))
    keep[edge] = shapely.dwithin(pts[i[edge]], pts[j[edge]], radius)
    i, j = i[keep], j[keep]
    # both directions and the centre itself, sorted by (circle, row): rows ascend per circle
    key = np.concatenate([i * n + j, j * n + i, np.arange(n, dtype=np.int64) * (n + 1)])
    key.sort()
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(key // n, minlength=n), out=indptr[1:])
    return indptr, key % n


def _greedy_circles(
    sums: np.ndarray,
    f: np.ndarray,
    indptr: np.ndarray,
    mi: np.ndarray,
    cols: list[str],
    p: BlackSpotProfile,
    rescan: bool = False,
) -> list[tuple[int, np.ndarray]]:
    """Worst qualifying circle first, each accident in one circle: (centre, member rows).

    ``sums`` (updated in place) holds each circle's field sums; circle ``c`` holds the rows
    ``mi[indptr[c]:indptr[c + 1]]`` (ascending). Worst is the largest (epdo, crashes), then the
    lowest centre. Taking a circle's accidents only lowers the other circles' sums when no field
    is negative, so a lazy heap finds the same circles as rescanning all of them every time (in
    O(pairs log n) instead of O(n) per circle); ``rescan`` (or a negative field): rescan. The
    heap re-evaluates the criteria at once for the circles a chosen circle changed.
    """
    alive = np.ones(len(sums), dtype=bool)
    chosen: list[tuple[int, np.ndarray]] = []
    epdo_k, crash_k = cols.index("epdo"), cols.index("crashes")
    weights = np.asarray(list(p.index_weights.values()), dtype=float)
    if rescan or not (np.all(f >= 0) and np.all(weights >= 0)):
        while True:
            q = _evaluate({c: sums[:, k] for k, c in enumerate(cols)}, p, p.criteria) & alive
            if not q.any():
                return chosen
            cand = np.flatnonzero(q)
            best = int(cand[np.lexsort((cand, -sums[cand, crash_k], -sums[cand, epdo_k]))[0]])
            chosen.append((best, _take_circle(best, sums, f, indptr, mi, alive)[0]))
    # qualifies[c]: circle c is free and meets the criteria (kept up to date as sums change)
    qualifies = _evaluate({c: sums[:, k] for k, c in enumerate(cols)}, p, p.criteria)
    cand = np.flatnonzero(qualifies)
    # (-epdo, -crashes, centre): sums only fall, so a stored key is never worse than the current
    heap = list(
        zip(
            (-sums[cand, epdo_k]).tolist(),
            (-sums[cand, crash_k]).tolist(),
            cand.tolist(),
            strict=True,
        )
    )
    heapq.heapify(heap)
    while heap:
        neg_epdo, neg_crashes, best = heap[0]
        if not qualifies[best]:
            heapq.heappop(heap)  # taken, or sums only fall: it never qualifies again
            continue
        now = (float(-sums[best, epdo_k]), float(-sums[best, crash_k]))
        if now != (neg_epdo, neg_crashes):
            heapq.heapreplace(heap, (*now, best))
            continue
        heapq.heappop(heap)
        members, touched = _take_circle(best, sums, f, indptr, mi, alive)
        chosen.append((best, members))
        # the criteria per circle, row by row: the same as evaluating one circle at a time
        now_ok = _evaluate({c: sums[touched, k] for k, c in enumerate(cols)}, p, p.criteria)
        qualifies[touched] = now_ok & alive[touched]
    return chosen


def _take_circle(
    best: int,
    sums: np.ndarray,
    f: np.ndarray,
    indptr: np.ndarray,
    mi: np.ndarray,
    alive: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The circle's accidents still free, taken: out of ``alive`` and of every circle's sums.

    Returns the members and the circles whose sums changed (with repeats).
    """
    members = mi[indptr[best] : indptr[best + 1]]
    members = members[alive[members]]
    alive[members] = False
    # remove the members from every circle that contains them (pairs are symmetric)
    starts, counts = indptr[members], indptr[members + 1] - indptr[members]
    rows = np.repeat(members, counts)
    offset = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    idx = mi[offset + np.arange(len(rows))]
    # in the same order as one subtraction per pair: the sums are bit for bit those of a rescan
    for k in range(f.shape[1]):
        np.subtract.at(sums[:, k], idx, f[rows, k])
    return members, idx


def _common_road(acc: pd.DataFrame, rows: np.ndarray) -> Any:
    if "road_name" not in acc.columns:
        return None
    v = acc["road_name"].iloc[rows].dropna().astype(str)
    return v.mode().iloc[0] if len(v) else None


def _explain_spots(acc: pd.DataFrame, spots: pd.DataFrame, units: pd.DataFrame) -> pd.Series:
    ids = acc["event_id"].astype(str) if "event_id" in acc.columns else acc.index.astype(str)
    per_spot = spots["event_ids"].fillna("").str.split(";").explode()
    per_spot = per_spot[per_spot != ""]
    pos = pd.Index(ids).get_indexer(pd.Index(per_spot.to_numpy()))
    ok = pos >= 0
    rows = acc.iloc[pos[ok]]
    groups = pd.Series(per_spot.index.to_numpy()[ok], index=rows.index)
    desc = describe_events(rows, groups)
    desc = desc.reindex(spots.index)
    text = desc["severity_mix"].fillna("").astype(str)
    text = text + dominant_phrases(desc)
    # attributes of the spot's units that stand out (speed limit, lighting, lanes...)
    notes = _attribute_notes(units.assign(reference_population=units["kind"]))
    per_unit = spots["unit_ids"].fillna("").str.split(";").explode()
    per_unit = per_unit[per_unit != ""]
    found = notes.reindex(pd.Index(per_unit.to_numpy())).to_numpy(dtype=object)
    flat = pd.DataFrame({"spot": per_unit.index.to_numpy(), "note": found}).dropna()
    flat = flat.assign(note=flat["note"].str.split("; ")).explode("note")
    flat = flat.loc[flat["note"].notna() & (flat["note"] != "")]
    # one note per kind ("speed limit # km/h ...", "# legs"): the first unit's
    flat = flat.assign(kind=flat["note"].str.replace(r"\d+(\.\d+)?", "#", regex=True))
    flat = flat.drop_duplicates(["spot", "kind"])
    attrs = flat.groupby("spot")["note"].agg(lambda s: "; ".join(list(s)[:3])).reindex(spots.index)
    text = text + np.where(attrs.notna(), "; " + attrs.fillna(""), "")
    return text.str.strip("; ")
