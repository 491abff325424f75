"""Checking a trace against a permit: off-route stretches, speeding, outside the windows."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from .._errors import ValidationError
from ..routing import Route, UnitGraph
from .report import _FINDING_COLUMNS, FINDING_LABELS, KEEP_RIGHT_NOTE, PermitRules, TraceReport


def _runs(flag: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True."""
    if not flag.any():
        return []
    d = np.diff(np.r_[0, flag.astype(np.int8), 0])
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _limits(graph: UnitGraph, rows: np.ndarray, caps: Mapping[str, float]) -> np.ndarray:
    """Speed limit (km/h) per unit row: the lower of its own and the permit's cap; NaN: none."""
    if "maxspeed_kmh" in graph.units.columns:
        own = pd.to_numeric(graph.units["maxspeed_kmh"], errors="coerce").to_numpy(float)[rows]
    else:
        own = np.full(len(rows), np.nan)
    if caps:
        cls = (
            graph.units["road_class"].astype(str).to_numpy()[rows]
            if "road_class" in graph.units
            else np.full(len(rows), "")
        )
        cap = pd.Series(cls).map(dict(caps)).astype(float).to_numpy()
        cap = np.where(np.isnan(cap), float(caps.get("default", np.nan)), cap)
        return np.fmin(own, cap)
    return own


def check_trace(
    units: gpd.GeoDataFrame | UnitGraph,
    trace: gpd.GeoDataFrame,
    rules: PermitRules | Route | Sequence[str] | None = None,
    *,
    speed_tolerance_kmh: float = 5.0,
    min_off_route_m: float = 50.0,
    off_route_gps_m: float = 40.0,
    matched: gpd.GeoDataFrame | None = None,
    **match_options: Any,
) -> TraceReport:
    """Check a GPS trace against a permit: off-route stretches, speeding, outside windows.

    Parameters
    ----------
    units
        Traffic units or their :class:`~trafficunit.routing.UnitGraph`.
    trace
        GPS points with ``time`` (tz-aware) and optionally ``speed_kmh`` (see :func:`read_trace`).
    rules
        The permit's :class:`PermitRules`, or just its route (a :class:`Route` or unit ids),
        or ``None`` (speeding against the units' limits only).
    speed_tolerance_kmh
        Speeding is a unit passage's median speed above the limit plus this (a speed from the
        matcher must be above it by more than its standard deviation, ``speed_sd_kmh``).
    min_off_route_m
        Shorter off-route pieces (a matching wobble at a junction) are not reported.
    off_route_gps_m
        An off-route stretch is reported only if a GPS point in it lies at least this far from
        the permitted units (a match onto a parallel road next to the route is not a detour).
    matched
        A result of :func:`trafficunit.match_trace` for this trace (else it is matched here,
        with ``match_options``).

    Returns
    -------
    TraceReport
    """
    from ..matching import match_trace

    graph = units if isinstance(units, UnitGraph) else UnitGraph(units)
    if isinstance(rules, Route):
        rules = PermitRules(unit_ids=list(rules.unit_ids))
    elif rules is not None and not isinstance(rules, PermitRules):
        rules = PermitRules(unit_ids=[str(u) for u in rules])
    if "time" not in trace.columns:
        raise ValidationError("trace: no 'time' column")
    if matched is None:
        matched = match_trace(graph, trace, **match_options)
    c = _Checked(graph, matched)
    state = c.m["state"].astype(str).to_numpy()
    # -- points off the network, and breaks in the match
    for kind, flag in (("off_network", state == "no_candidate"), ("unmatched", state == "break")):
        for i0, i1 in _runs(flag):
            a, b = max(i0 - 1, 0), min(i1 + 1, c.n - 1)
            c.add(kind, a, b, c.line(a, b), c.length(a, b))
    c.m["on_route"] = _off_route(c, rules, state, min_off_route_m, off_route_gps_m)
    speed_source, unchecked = _speeding(c, trace, rules, speed_tolerance_kmh)
    # -- outside the permitted hours
    inside = rules.inside(c.times) if rules is not None else np.ones(c.n, bool)
    c.m["inside_window"] = inside
    for i0, i1 in _runs(~inside):
        c.add("outside_window", i0, i1, c.line(i0, i1), c.length(i0, i1))
    findings = c.frame()
    by_kind = findings.groupby("kind")
    # the units driven, in order (from the matched path, units crossed between points included)
    path = matched.attrs.get("path")
    seq = (
        path["unit_id"].astype(str).tolist()
        if path is not None and len(path)
        else [str(u) for u in c.unit_id if u is not None]
    )
    times, n = c.times, c.n
    summary = {
        "points": n,
        "units": [u for i, u in enumerate(seq) if i == 0 or u != seq[i - 1]],
        "matched_share": float((state == "matched").mean()) if n else 0.0,
        "start_time": str(times.iloc[0]) if n else None,
        "end_time": str(times.iloc[-1]) if n else None,
        "length_m": float(c.step.sum()),
        "speed_source": speed_source,
        "units_without_limit": sorted(unchecked),
        "counts": {k: int(v) for k, v in by_kind.size().items()},
        "length_m_by_kind": {k: float(v) for k, v in by_kind["length_m"].sum().items()},
        "duration_s_by_kind": {k: float(v) for k, v in by_kind["duration_s"].sum().items()},
        "keep_right": KEEP_RIGHT_NOTE,
        "permit_id": rules.permit_id if rules is not None else None,
    }
    return TraceReport(matched=c.m, findings=findings, summary=summary)


class _Checked:
    """A matched trace being checked, and the findings so far."""

    def __init__(self, graph: UnitGraph, matched: gpd.GeoDataFrame) -> None:
        self.graph = graph
        self.m = matched.copy()
        self.path = matched.attrs.get("path")
        self.n = len(self.m)
        self.times = pd.to_datetime(self.m["time"])
        if getattr(self.times.dtype, "tz", None) is None:
            raise ValidationError("trace: times must be tz-aware (read_trace(..., tz=...))")
        uid = self.m["unit_id"]
        self.unit_id = uid.astype(object).where(uid.notna(), None).to_numpy()
        rows = graph.row_of.reindex(pd.Index(self.unit_id)).to_numpy()
        self.known = ~np.isnan(rows)
        self.rows = np.where(self.known, rows, 0).astype(np.int64)
        self.pts = shapely.get_coordinates(
            gpd.GeoSeries(self.m.geometry, crs=self.m.crs).to_crs(4326).to_numpy()
        )
        self.step = np.r_[0.0, _geo_steps(self.m)]
        self.findings: list[dict[str, Any]] = []

    def line(self, i0: int, i1: int) -> Any:
        c = self.pts[i0 : i1 + 1]
        return shapely.LineString(c) if len(c) > 1 else shapely.Point(c[0])

    def length(self, i0: int, i1: int) -> float:
        return float(self.step[i0 + 1 : i1 + 1].sum())

    def add(self, kind: str, i0: int, i1: int, geom: Any, length: float, **extra: Any) -> None:
        en, zh = FINDING_LABELS[kind]
        t0, t1 = self.times.iloc[i0], self.times.iloc[i1]
        self.findings.append(
            {
                "kind": kind,
                "label_en": en,
                "label_zh": zh,
                "start_time": t0,
                "end_time": t1,
                "duration_s": float((t1 - t0).total_seconds()),
                "length_m": float(length),
                "points": int(i1 - i0 + 1),
                "unit_id": extra.get("unit_id"),
                "limit_kmh": extra.get("limit_kmh", np.nan),
                "speed_kmh": extra.get("speed_kmh", np.nan),
                "geometry": geom,
            }
        )

    def frame(self) -> gpd.GeoDataFrame:
        """The findings, typed and in time order."""
        fdf = pd.DataFrame(self.findings, columns=[*_FINDING_COLUMNS, "geometry"])
        fdf["unit_id"] = fdf["unit_id"].astype("string")
        for c in ("start_time", "end_time"):
            fdf[c] = pd.to_datetime(fdf[c], utc=True)
        for c in ("duration_s", "length_m", "limit_kmh", "speed_kmh"):
            fdf[c] = fdf[c].astype(float)
        fdf["points"] = fdf["points"].astype("int64")
        fgdf = gpd.GeoDataFrame(fdf, geometry="geometry", crs=4326)
        return fgdf.sort_values(["start_time", "kind"], kind="stable").reset_index(drop=True)


def _off_route(
    c: _Checked, rules: PermitRules | None, state: np.ndarray, min_m: float, gps_m: float
) -> np.ndarray:
    """Whether each point is on the permitted route; off-route stretches added to findings
    (pieces of the matched path on units outside the route)."""
    on_route = np.ones(c.n, bool)
    if rules is None or not rules.unit_ids:
        return on_route
    graph = c.graph
    route_rows = graph.unit_rows(rules.unit_ids, "permit route")
    ok_unit = np.zeros(len(graph.ids), bool)
    ok_unit[route_rows] = True
    # links inside a junction on the route count as the junction
    jrow = graph.row_of.reindex(pd.Index(graph.junction)).to_numpy()
    inside_j = ~np.isnan(jrow)
    ok_unit[inside_j] |= ok_unit[np.where(inside_j, jrow, 0).astype(np.int64)][inside_j]
    on_route = c.known & ok_unit[c.rows]
    on_route |= state == "no_candidate"  # reported as off the network instead
    if c.path is not None and len(c.path):
        route_geom = shapely.union_all(graph.index.geoms[np.flatnonzero(ok_unit)])
        metric_pts = gpd.GeoSeries(c.m.geometry, crs=c.m.crs).to_crs(graph.crs).to_numpy()
        away = shapely.distance(metric_pts, route_geom)
        _off_route_from_path(graph, c.path, ok_unit, min_m, c.findings, c.times, away, gps_m)
    else:
        for i0, i1 in _runs(~on_route):
            if c.length(i0, i1) >= min_m:
                c.add("off_route", i0, i1, c.line(i0, i1), c.length(i0, i1))
    return on_route


def _speeding(
    c: _Checked, trace: gpd.GeoDataFrame, rules: PermitRules | None, tolerance: float
) -> tuple[str, set[str]]:
    """Speeding per unit passage added to the findings; (speed source, units without limit)."""
    n, m, graph = c.n, c.m, c.graph
    doubt = np.zeros(n)
    if (
        "speed_kmh" in trace.columns
        and pd.to_numeric(trace["speed_kmh"], errors="coerce").notna().any()
    ):
        speed = pd.to_numeric(trace["speed_kmh"], errors="coerce").to_numpy(float)
        source = "trace"
    else:
        speed = m["speed_kmh"].to_numpy(float) if "speed_kmh" in m else np.full(n, np.nan)
        # evidence of speeding must hold on the matched path and on the straight line: the
        # lower of the path speed and the chord speed over about 15 s (a longer chord cuts the
        # corners of an urban route and hides most speeding on short units, see
        # _chord_speed_kmh), and beyond the smoother's own uncertainty (one standard deviation)
        speed = np.fmin(speed, _chord_speed_kmh(m, c.times))
        if "speed_sd_kmh" in m:
            doubt = np.nan_to_num(m["speed_sd_kmh"].to_numpy(float))
        source = "matched"
    caps = rules.speed_caps_kmh if rules is not None else {}
    limit = np.where(c.known, _limits(graph, c.rows, caps), np.nan)
    unchecked: set[str] = set()
    if not n:
        return source, unchecked
    uid = c.unit_id
    passage = np.r_[True, uid[1:] != uid[:-1]]
    pid = np.cumsum(passage) - 1
    med = pd.Series(speed).groupby(pid).median().to_numpy()
    med_low = pd.Series(speed - doubt).groupby(pid).median().to_numpy()
    first = np.flatnonzero(passage)
    last = np.r_[first[1:] - 1, n - 1]
    lim_p = limit[first]
    for j in range(len(med)):
        i0, i1 = int(first[j]), int(last[j])
        if not c.known[i0] or graph.is_int[c.rows[i0]]:
            continue  # unmatched, or crossing a junction (no limit of its own)
        if np.isnan(lim_p[j]):
            unchecked.add(str(uid[i0]))
            continue
        if np.isfinite(med[j]) and med_low[j] > lim_p[j] + tolerance:
            r = c.rows[i0]
            geom = gpd.GeoSeries([graph.index.geoms[r]], crs=graph.crs).to_crs(4326).iloc[0]
            c.add(
                "speeding",
                i0,
                i1,
                geom,
                float(graph.length[r]),
                unit_id=str(uid[i0]),
                limit_kmh=float(lim_p[j]),
                speed_kmh=float(med[j]),
            )
    return source, unchecked


def _chord_speed_kmh(m: gpd.GeoDataFrame, times: pd.Series, window_s: float = 15.0) -> np.ndarray:
    """Straight-line speed over about ``window_s`` (at least two sampling intervals) around each
    point: never above the truth on a curve, and GPS noise averages out over the window.

    The window is short because the chord is the lower bound taken against the path speed: over
    30 s (about 350 m at 40 km/h) it cuts the corners of a route through residential streets
    and hid 11 of 13 passages driven 40 % over the limit on a 2.7 km Oslo route (15 s: 6 of 13
    missed, and still no finding on traces driven at the limit; ``tests/test_matching.py``).
    """
    n = len(m)
    if n < 2:
        return np.full(n, np.nan)
    t = (times - times.iloc[0]).dt.total_seconds().to_numpy()
    w = max(window_s, 2.0 * float(np.median(np.diff(t))))
    lo = np.clip(np.searchsorted(t, t - w / 2, side="left"), 0, n - 1)
    hi = np.clip(np.searchsorted(t, t + w / 2, side="right") - 1, 0, n - 1)
    g = m.geometry
    if m.crs is None or not pyproj.CRS.from_user_input(m.crs).is_projected:
        g = g.to_crs(g.estimate_utm_crs())
    xy = shapely.get_coordinates(g.to_numpy())
    d = np.hypot(*(xy[hi] - xy[lo]).T)
    dt = t[hi] - t[lo]
    return np.where(dt > 0, d / np.where(dt > 0, dt, 1.0) * 3.6, np.nan)


def _geo_steps(m: gpd.GeoDataFrame) -> np.ndarray:
    """Straight distances (metres) between consecutive points."""
    if len(m) < 2:
        return np.zeros(0)
    g = m.geometry
    crs = m.crs
    if crs is None or not pyproj.CRS.from_user_input(crs).is_projected:
        g = g.to_crs(g.estimate_utm_crs())
    xy = shapely.get_coordinates(g.to_numpy())
    return np.hypot(*np.diff(xy, axis=0).T)


def _off_route_from_path(
    graph: UnitGraph,
    path: pd.DataFrame,
    ok_unit: np.ndarray,
    min_m: float,
    findings: list[dict[str, Any]],
    times: pd.Series,
    away: np.ndarray,
    away_min_m: float,
) -> None:
    """Off-route stretches from the matched path: runs of pieces on units outside the route."""
    rows = graph.row_of.reindex(pd.Index(path["unit_id"].astype(str))).to_numpy().astype(np.int64)
    off = ~ok_unit[rows]
    chain = path["chain"].to_numpy()
    brk = np.r_[True, chain[1:] != chain[:-1]]
    flag = off.copy()
    # a short stretch back on the route (a crossing, a wobble of the match) does not split a
    # detour in two
    lengths = path["length_m"].to_numpy(float)
    on_runs = _runs(~flag)
    for a, b in on_runs:
        inner = a > 0 and b < len(flag) - 1 and not brk[a : b + 2].any()
        if inner and lengths[a : b + 1].sum() < min_m:
            flag[a : b + 1] = True
    en, zh = FINDING_LABELS["off_route"]
    for i0, i1 in _runs(flag):
        # a run never spans two chains
        cuts = [i0] + [i for i in range(i0 + 1, i1 + 1) if brk[i]] + [i1 + 1]
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            seg = path.iloc[a:b]
            length = float(seg["length_m"].sum())
            if length < min_m:
                continue
            parts = []
            for r, f, t in zip(rows[a:b], seg["from_m"], seg["to_m"], strict=True):
                if graph.is_int[r]:
                    continue  # a junction crossed: the line joins the segments either side
                piece = shapely.ops.substring(graph.index.geoms[r], min(f, t), max(f, t))
                c = shapely.get_coordinates(piece)
                parts.append(c if t >= f else c[::-1])
            line = shapely.LineString(np.concatenate(parts)) if sum(map(len, parts)) > 1 else None
            geom = gpd.GeoSeries([line], crs=graph.crs).to_crs(4326).iloc[0]
            t0, t1 = seg["t_start"].iloc[0], seg["t_end"].iloc[-1]
            ok_t = isinstance(t0, pd.Timestamp) and not pd.isna(t0)
            if ok_t:  # the GPS itself must leave the route: a wobble of the match does not
                during = ((times >= t0) & (times <= t1)).to_numpy()
                if during.any() and away[during].max() < away_min_m:
                    continue
            findings.append(
                {
                    "kind": "off_route",
                    "label_en": en,
                    "label_zh": zh,
                    "start_time": t0 if ok_t else pd.NaT,
                    "end_time": t1 if ok_t else pd.NaT,
                    "duration_s": float((t1 - t0).total_seconds()) if ok_t else math.nan,
                    "length_m": length,
                    "points": int(((times >= t0) & (times <= t1)).sum()) if ok_t else 0,
                    "unit_id": None,
                    "limit_kmh": math.nan,
                    "speed_kmh": math.nan,
                    "geometry": geom,
                }
            )
