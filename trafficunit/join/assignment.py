"""The join (:func:`assign`) and what it reports when events do not match."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, cast, overload

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from .._errors import ValidationError
from .._gcpause import gc_paused
from .._validate import require_gdf
from ..settings import EVENT_KINDS, JoinSettings
from .columnar import PointTable
from .index import _INTERSECTION, _MATCHED, _OUTSIDE, MATCH_STATUSES, UnitIndex, _threshold_table
from .points import _assign_points, _PointResult
from .shapes import _assign_shapes, _PairResult


@overload  # geopandas is untyped: this overload takes any GeoDataFrame
def assign(
    units: gpd.GeoDataFrame | UnitIndex,
    events: gpd.GeoDataFrame,
    *,
    max_distance_m: float | Mapping[str, float] | None = None,
    name_aware: bool | None = None,
    intersection_precedence: bool | None = None,
    crs: Any = None,
    settings: JoinSettings | None = None,
) -> gpd.GeoDataFrame: ...


@overload
def assign(  # type: ignore[overload-cannot-match]
    units: gpd.GeoDataFrame | UnitIndex,
    events: PointTable,
    *,
    max_distance_m: float | Mapping[str, float] | None = None,
    name_aware: bool | None = None,
    intersection_precedence: bool | None = None,
    crs: Any = None,
    settings: JoinSettings | None = None,
) -> PointTable: ...


@gc_paused()
def assign(
    units: gpd.GeoDataFrame | UnitIndex,
    events: gpd.GeoDataFrame | PointTable,
    *,
    max_distance_m: float | Mapping[str, float] | None = None,
    name_aware: bool | None = None,
    intersection_precedence: bool | None = None,
    crs: Any = None,
    settings: JoinSettings | None = None,
) -> gpd.GeoDataFrame | PointTable:
    """Attach events to the traffic units they belong to.

    A point event goes to one unit (or to none, the reason in ``match``); a line or polygon
    event goes to every unit it touches, one row per (event, unit) pair. The rules are in the
    module docs.

    Parameters
    ----------
    units
        Traffic units (``tu.build_units``) or a :class:`UnitIndex` built from them.
    events
        Events from ``tu.read_events`` (any CRS; a ``kind`` column chooses the distances,
        else they are accidents; ``road_name`` enables name-aware matching), or point events
        stored columnar (:class:`~trafficunit.join.columnar.PointTable`: joined without a
        shapely point, and returned as one).
    max_distance_m
        Largest snap distance of a point to a segment, metres: one number for every event,
        or a mapping by the unit's ``road_class`` (``{"motorway": 40, "default": 25}``).
        Default: ``settings.max_distance_m`` by event kind (accident 25 m, hazard 20 m,
        work zone 25 m) with ``settings.max_distance_m_by_class`` overrides. For line and
        polygon events the tolerance is ``settings.line_tolerance_m`` /
        ``polygon_tolerance_m`` (or ``max_distance_m`` when it is a number).
    name_aware, intersection_precedence
        Override the settings' rules (see the module docs).
    crs
        Metric CRS for the work (default: the units' UTM zone).
    settings
        :class:`~trafficunit.settings.JoinSettings`.

    Returns
    -------
    geopandas.GeoDataFrame
        In the events' CRS: one row per point event (unmatched ones included) and one row per
        (event, unit) pair for line and polygon events, event rows in input order. Columns: the
        event columns, ``unit_id`` (``<NA>`` when unmatched), ``distance_m`` (to the unit; to
        the nearest unit for ``"too_far"``), ``measure_m`` (along the unit from its first
        vertex, metres; 0 for intersections), ``match`` (``"matched"``, ``"intersection"``,
        ``"too_far"``, ``"outside"``) and ``overlap_m`` (line/polygon events). The match
        report is ``.attrs["report"]``.

    Examples
    --------
    >>> import geopandas as gpd, pandas as pd, shapely, trafficunit as tu
    >>> units = gpd.GeoDataFrame(
    ...     {"kind": ["segment"], "radius_m": [float("nan")], "name": ["Main St"]},
    ...     geometry=[shapely.LineString([(0, 0), (100, 0)])], crs=3067,
    ...     index=pd.Index(["S1"], name="unit_id"))
    >>> events = gpd.GeoDataFrame({"event_id": ["a", "b"]},
    ...     geometry=[shapely.Point(40, 5), shapely.Point(40, 80)], crs=3067)
    >>> j = tu.assign(units, events, max_distance_m=25)
    >>> j[["unit_id", "distance_m", "measure_m", "match"]].values.tolist()
    [['S1', 5.0, 40.0, 'matched'], [<NA>, nan, nan, 'outside']]
    """
    cfg = settings or JoinSettings()
    if isinstance(events, PointTable):
        table: PointTable | None = events
        frame: pd.DataFrame = events.frame
    else:
        table, frame = None, require_gdf(events, "events")
    ix = units if isinstance(units, UnitIndex) else UnitIndex(units, crs=crs, settings=cfg)
    name_aware = cfg.name_aware if name_aware is None else name_aware
    int_prec = (
        cfg.intersection_precedence
        if intersection_precedence is None
        else (intersection_precedence)
    )
    kind_codes, kinds = _event_kinds(frame)
    classes = [str(c) for c in ix.classes]
    dist_table = _threshold_table(kinds, classes, max_distance_m, cfg, cfg.max_distance_m)
    line_tol = _line_tolerances(kinds, dist_table, max_distance_m, cfg)
    if table is not None:
        work = _WorkGeometries.of_xy(table, ix)
    else:
        work = _WorkGeometries.of(cast(gpd.GeoDataFrame, frame), ix)
    types, missing, is_point = work.types, work.missing, work.is_point

    names = _road_names(frame) if name_aware else None
    pidx = np.flatnonzero(is_point)
    # every event a point (the usual accidents): the arrays themselves, no copies
    every = len(pidx) == len(frame)
    pres = _assign_points(
        ix,
        work.x if every else work.x[pidx],
        work.y if every else work.y[pidx],
        kind_codes if every else kind_codes[pidx],
        names if every or names is None else names[pidx],
        dist_table,
        name_aware=name_aware,
        intersection_precedence=int_prec,
        area_buffer_m=cfg.area_buffer_m,
        name_extra_m=cfg.name_extra_distance_m,
    )
    sidx = np.flatnonzero(~is_point & ~missing)
    shapes = None
    if len(sidx):
        tol = np.array([line_tol[kinds[k]] for k in kind_codes[sidx]], dtype=float)
        tol[np.isin(types[sidx], [3, 6])] = _polygon_tolerance(max_distance_m, cfg)
        shapes = _assign_shapes(ix, work.shapes(sidx), tol, cfg, intersection_precedence=int_prec)
    if ix is not units:
        # an index made for this call: its pieces' trees are not queried again
        ix.release_trees()

    rows = _Rows.of(len(events), pidx, pres, sidx, shapes)
    per_pair = shapes is not None
    # release what the rows no longer need before the output columns are made
    del pidx, sidx, shapes, kind_codes, names, types, missing, is_point
    report = _report(
        len(rows.event), frame, rows.status, rows.event, rows.dist, pres, dist_table, kinds, ix
    )
    del pres
    dmax = float(dist_table.max()) if dist_table.size else 0.0
    report["diagnosis"] = _diagnose(frame, work, report, ix, cfg, dmax)
    del work
    out = rows.frame(frame, ix, per_pair=per_pair)
    out.attrs = {"report": report}
    return cast(gpd.GeoDataFrame, out) if table is None else table.with_frame(out)


def _event_kinds(events: gpd.GeoDataFrame) -> tuple[np.ndarray, list[str]]:
    """Each event's kind as a code into the kinds present (no ``kind`` column: accidents)."""
    if "kind" in events.columns:
        # factorised as Arrow strings: no Python string per event
        kinds_raw = events["kind"].astype("string").fillna("accident")
    else:
        kinds_raw = pd.Series("accident", index=events.index, dtype="string")
    kind_codes, found = pd.factorize(kinds_raw)
    kinds = [str(k) for k in found]
    unknown = set(kinds) - set(EVENT_KINDS)
    if unknown:
        raise ValidationError(
            f"events have unknown kind(s) {sorted(unknown)}; use {', '.join(EVENT_KINDS)}"
        )
    return kind_codes, kinds


def _line_tolerances(
    kinds: list[str],
    table: np.ndarray,
    max_distance_m: float | Mapping[str, float] | None,
    cfg: JoinSettings,
) -> dict[str, float]:
    """How far from a line event a unit may run, by event kind."""
    if isinstance(max_distance_m, int | float):
        return {k: float(max_distance_m) for k in kinds}
    return {k: float(cfg.line_tolerance_m.get(k, table[i].max())) for i, k in enumerate(kinds)}


def _polygon_tolerance(
    max_distance_m: float | Mapping[str, float] | None, cfg: JoinSettings
) -> float:
    """How far from a polygon event a unit may run."""
    if isinstance(max_distance_m, int | float):
        return float(max_distance_m)
    return cfg.polygon_tolerance_m


def _road_names(events: gpd.GeoDataFrame) -> np.ndarray | None:
    """The events' road names (``None`` where empty), or ``None`` without a name column."""
    if "road_name" not in events.columns:
        return None
    names = events["road_name"].astype("string").to_numpy(dtype=object)
    return np.asarray(np.where(pd.isna(names), None, names), dtype=object)


@dataclass
class _WorkGeometries:
    """The events' geometries for the join, in the index's CRS: the points (and multipoints,
    as their centroid) as coordinate arrays ``x``, ``y`` (NaN for other rows) and no shapely
    object; the other geometries projected only for the rows that need them (:meth:`shapes`).
    Also each event's type id, whether it is missing and whether it is a point."""

    x: np.ndarray
    y: np.ndarray
    types: np.ndarray
    missing: np.ndarray
    is_point: np.ndarray
    source: np.ndarray  # the events' own geometries, in their CRS
    crs: tuple[pyproj.CRS, pyproj.CRS] | None  # (from, to) when they must be projected

    @classmethod
    def of(cls, events: gpd.GeoDataFrame, ix: UnitIndex) -> _WorkGeometries:
        source = np.asarray(events.geometry.array, dtype=object)
        crs = None
        if len(ix):
            src = pyproj.CRS.from_user_input(events.crs)
            if not src.equals(ix.crs) and not src.is_exact_same(ix.crs):
                crs = (src, ix.crs)
        types = shapely.get_type_id(source)
        missing = shapely.is_missing(source) | shapely.is_empty(source)
        is_point = (types == 0) & ~missing
        n = len(source)
        work = cls(np.full(n, np.nan), np.full(n, np.nan), types, missing, is_point, source, crs)
        has_z = shapely.has_z(source)
        flat = np.flatnonzero(is_point & ~has_z)
        xy = shapely.get_coordinates(source[flat])
        x, y = xy[:, 0], xy[:, 1]
        if crs is not None and len(flat):
            # the transformation GeoSeries.to_crs applies, on the coordinates alone
            tr = pyproj.Transformer.from_crs(crs[0], crs[1], always_xy=True)
            x, y = tr.transform(x, y)
        work.x[flat], work.y[flat] = x, y
        # points with a z, and multipoints (the centroid of the projected multipoint)
        other = np.flatnonzero((is_point & has_z) | ((types == 4) & ~missing))
        if len(other):
            g = work.shapes(other)
            multi = types[other] == 4
            g[multi] = shapely.centroid(g[multi])
            xy = shapely.get_coordinates(g)
            work.x[other], work.y[other] = xy[:, 0], xy[:, 1]
            work.is_point[other] = True
        return work

    @classmethod
    def of_xy(cls, table: PointTable, ix: UnitIndex) -> _WorkGeometries:
        """The work geometries of point events stored columnar: their coordinates, projected
        as :meth:`of` projects points (no source geometries: every event is a 2D point)."""
        n = len(table.x)
        x, y = table.x, table.y
        if len(ix) and not (table.crs.equals(ix.crs) or table.crs.is_exact_same(ix.crs)):
            tr = pyproj.Transformer.from_crs(table.crs, ix.crs, always_xy=True)
            x, y = tr.transform(x, y)
        ok = np.ones(n, dtype=bool)
        source = np.empty(0, dtype=object)
        return cls(
            np.asarray(x, float), np.asarray(y, float), np.zeros(n, np.int8), ~ok, ok, source, None
        )

    def shapes(self, rows: np.ndarray) -> np.ndarray:
        """The geometries of ``rows`` (positions) in the index's CRS."""
        g = self.source[rows]
        if self.crs is None or not len(g):
            return g
        return np.asarray(gpd.GeoSeries(g, crs=self.crs[0]).to_crs(self.crs[1]).array, dtype=object)

    def metric(self) -> np.ndarray:
        """Every event's work geometry (points made from ``x``, ``y``) in the index's CRS."""
        out = np.full(len(self.x), None, dtype=object)
        pts = np.flatnonzero(self.is_point)
        out[pts] = shapely.points(self.x[pts], self.y[pts])
        rest = np.flatnonzero(~self.is_point)
        out[rest] = self.shapes(rest)
        return out


@dataclass
class _Rows:
    """The output rows: every event once (points, missing) or per pair (shapes), in event
    order; ``unit`` is a position in the index (-1: none)."""

    event: np.ndarray
    unit: np.ndarray
    dist: np.ndarray
    measure: np.ndarray
    overlap: np.ndarray
    status: np.ndarray

    @classmethod
    def of(
        cls,
        n: int,
        pidx: np.ndarray,
        pres: _PointResult,
        sidx: np.ndarray,
        shapes: _PairResult | None,
    ) -> _Rows:
        rows = cls(
            event=np.arange(n),
            unit=np.full(n, -1, dtype=np.int64),
            dist=np.full(n, np.nan),
            measure=np.full(n, np.nan),
            overlap=np.full(n, np.nan),
            status=np.full(n, _OUTSIDE, dtype=np.int8),
        )
        rows.unit[pidx], rows.dist[pidx] = pres.unit, pres.dist
        rows.measure[pidx], rows.status[pidx] = pres.measure, pres.status
        if shapes is None:
            return rows
        keep = np.ones(n, dtype=bool)
        keep[sidx] = False
        merged = cls(
            event=np.r_[rows.event[keep], sidx[shapes.event]],
            unit=np.r_[rows.unit[keep], shapes.unit],
            dist=np.r_[rows.dist[keep], shapes.dist],
            measure=np.r_[rows.measure[keep], shapes.measure],
            overlap=np.r_[rows.overlap[keep], shapes.overlap],
            status=np.r_[rows.status[keep], shapes.status],
        )
        order = np.argsort(merged.event, kind="stable")
        return cls(*(getattr(merged, f.name)[order] for f in fields(cls)))

    def frame(self, events: pd.DataFrame, ix: UnitIndex, *, per_pair: bool) -> pd.DataFrame:
        """The events' rows (``per_pair``: repeated per (event, unit) pair) with the match
        columns."""
        if per_pair:
            out = events.iloc[self.event].reset_index(drop=True)
        else:
            out = events.reset_index(drop=True).copy(deep=False)
        # Arrow takes: no Python string per row
        import pyarrow as pa
        import pyarrow.compute as pc

        miss = self.unit < 0
        if len(ix):
            pos = pa.array(np.where(miss, 0, self.unit), mask=miss)
            ids = pc.take(pa.array(ix.ids, pa.string()), pos)
        else:
            ids = pa.nulls(len(self.unit), pa.string())
        out["unit_id"] = pd.array(ids, dtype="string")
        out["distance_m"] = self.dist
        out["measure_m"] = self.measure
        out["match"] = pd.array(
            pc.take(pa.array(MATCH_STATUSES, pa.string()), pa.array(self.status)), dtype="string"
        )
        out["overlap_m"] = self.overlap
        return out


def _lonlat_points(geoms: np.ndarray, crs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Longitude/latitude of a representative point of each geometry (NaN where missing)."""
    n = len(geoms)
    lon, lat = np.full(n, np.nan), np.full(n, np.nan)
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if not ok.any():
        return lon, lat
    pts = shapely.point_on_surface(geoms[ok])
    xy = shapely.get_coordinates(pts)
    tr = pyproj.Transformer.from_crs(crs, 4326, always_xy=True)
    lon[ok], lat[ok] = tr.transform(xy[:, 0], xy[:, 1], errcheck=False)
    return lon, lat


def _diagnose(
    events: pd.DataFrame,
    work: _WorkGeometries,
    report: dict[str, Any],
    ix: UnitIndex,
    cfg: JoinSettings,
    dmax: float,
) -> dict[str, Any] | None:
    """When most events miss the network, the likely mistake (swapped x/y, wrong CRS,
    GCJ-02 coordinates) or the harmless reason (the file covers a wider area), in words."""
    n_ev = int(report["events"])
    if n_ev < 5 or not len(ix):
        return None
    outside = report["by_match"]["outside"]
    too_far = report["by_match"]["too_far"]
    matched = report["matched"]
    if outside < 0.5 * n_ev and not (too_far > 0.5 * n_ev):
        return None
    lon, lat = _lonlat_points(work.metric(), ix.crs)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        return None
    to_metric = pyproj.Transformer.from_crs(4326, ix.crs, always_xy=True)
    area = ix.area(cfg.area_buffer_m)
    if shapely.is_empty(area) or shapely.area(area) == 0:
        return None

    def inside_share(x: np.ndarray, y: np.ndarray) -> float:
        good = np.isfinite(x) & np.isfinite(y) & (np.abs(y) <= 90) & (np.abs(x) <= 180)
        if not good.any():
            return 0.0
        mx, my = to_metric.transform(x[good], y[good], errcheck=False)
        return float(shapely.contains_xy(area, mx, my).sum()) / n_ev

    now_in = (n_ev - outside) / n_ev
    pct = f"{outside / n_ev:.0%}"
    c = shapely.centroid(area)
    clon, clat = pyproj.Transformer.from_crs(ix.crs, 4326, always_xy=True).transform(c.x, c.y)

    def covers_network(x: np.ndarray, y: np.ndarray) -> bool:
        """The network's centre lies within the (2-98 %) extent of these positions."""
        lo, hi = np.percentile(x, [2, 98]), np.percentile(y, [2, 98])
        return bool(lo[0] <= clon <= lo[1] and hi[0] <= clat <= hi[1])

    if outside >= 0.5 * n_ev:
        as_is = now_in >= 0.5 or covers_network(lon[ok], lat[ok])
        sw = inside_share(lat[ok], lon[ok])
        if not as_is and (sw >= 0.5 or (sw > 0 and covers_network(lat[ok], lon[ok]))):
            return {
                "likely": "swapped x/y",
                "message": (
                    f"{pct} of the events lie outside the network's area; with x and y "
                    f"exchanged {sw:.0%} would lie inside and the events would surround it: "
                    "x and y look swapped; give x= the easting/longitude column and y= the "
                    "northing/latitude one"
                ),
            }
        if as_is:
            return {
                "likely": "wider area",
                "message": (
                    f"{pct} of the events lie outside the network's area, which lies inside "
                    "theirs: the events file covers a wider area than the network (nothing "
                    "wrong if that is so)"
                ),
            }
        mlon, mlat = float(np.median(lon[ok])), float(np.median(lat[ok]))
        km = _km(mlon, mlat, clon, clat)
        return {
            "likely": "wrong CRS",
            "message": (
                f"{pct} of the events lie outside the network's area; their median position "
                f"({mlon:.4f}, {mlat:.4f}) is {km:,.0f} km from the network's centre "
                f"({clon:.4f}, {clat:.4f}): the CRS given for x/y (crs=) is likely wrong, or "
                "the network covers another place"
            ),
        }
    # most events inside the area but too far from every unit: coordinates shifted?
    from .. import chinacrs

    w, s_, e, n_ = chinacrs.CHINA_BBOX
    china = ok & (lon >= w) & (lon <= e) & (lat >= s_) & (lat <= n_)
    if china.sum() < 0.5 * n_ev:
        return None
    idx = np.flatnonzero(china)[:2000]
    base = _near_share(ix, lon[idx], lat[idx], to_metric, dmax)
    for system in chinacrs.SYSTEMS:
        x2, y2 = chinacrs.to_wgs84(lon[idx], lat[idx], system)
        share = _near_share(ix, np.asarray(x2), np.asarray(y2), to_metric, dmax)
        if share >= 0.5 and share > 2 * max(base, matched / n_ev):
            return {
                "likely": system,
                "message": (
                    f"{too_far / n_ev:.0%} of the events lie too far from every unit; read as "
                    f"{system.upper()} coordinates {share:.0%} would lie within {dmax:g} m: the "
                    f"file looks like {system.upper()} (Chinese consumer maps); give "
                    f"crs='{system}'"
                ),
            }
    return None


def _near_share(
    ix: UnitIndex, lon: np.ndarray, lat: np.ndarray, tr: pyproj.Transformer, dmax: float
) -> float:
    x, y = tr.transform(lon, lat, errcheck=False)
    pts = shapely.points(x, y)
    _, d = ix.all_tree.query_nearest(pts, return_distance=True, all_matches=False)
    return float(np.mean(d <= dmax)) if len(d) else 0.0


def _km(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = (
        np.sin((p2 - p1) / 2) ** 2
        + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    )
    return float(6371.0 * 2 * np.arcsin(np.sqrt(a)))


def _report(
    n_rows: int,
    events: pd.DataFrame,
    stat: np.ndarray,
    row_ev: np.ndarray,
    dist: np.ndarray,
    pres: _PointResult,
    table: np.ndarray,
    kinds: list[str],
    ix: UnitIndex,
) -> dict[str, Any]:
    return _match_report(
        events,
        stat,
        row_ev,
        dist,
        rows=n_rows,
        units=len(ix),
        max_distance_m={k: float(table[i].max()) for i, k in enumerate(kinds)},
        name_matched=pres.name_matched,
        name_overrode=pres.name_overrode,
        metric_crs=ix.crs,
    )


def _match_report(
    events: pd.DataFrame,
    stat: np.ndarray,
    row_ev: np.ndarray,
    dist: np.ndarray,
    *,
    rows: int,
    units: int,
    max_distance_m: dict[str, float],
    name_matched: int,
    name_overrode: int,
    metric_crs: pyproj.CRS,
) -> dict[str, Any]:
    """The join's report (``.attrs["report"]``) from each output row's event (``row_ev``),
    status code (a position in :data:`MATCH_STATUSES`) and distance; each event counts once,
    with its best status (matched/intersection beats too_far/outside)."""
    n_ev = len(events)
    best = np.full(n_ev, 9, dtype=np.int8)
    np.minimum.at(best, row_ev, stat)
    counts = {s: int((best == i).sum()) for i, s in enumerate(MATCH_STATUSES)}
    matched = counts["matched"] + counts["intersection"]
    inside = n_ev - counts["outside"]
    d = dist[(stat == _MATCHED) | (stat == _INTERSECTION)]
    pct = {f"p{q}": round(float(np.percentile(d, q)), 2) for q in (50, 90, 99)} if len(d) else {}
    read = events.attrs.get("report") if isinstance(events.attrs, dict) else None
    return {
        "events": n_ev,
        "rows": rows,
        "units": units,
        "by_match": counts,
        "matched": matched,
        "matched_share": round(matched / n_ev, 4) if n_ev else None,
        "matched_share_inside": round(matched / inside, 4) if inside else None,
        "distance_m": pct,
        "max_distance_m": max_distance_m,
        "name_matched": name_matched,
        "name_overrode_nearest": name_overrode,
        "metric_crs": metric_crs.to_string(),
        "read": read,
    }
