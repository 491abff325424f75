"""Partitioned join of events to units, cell by cell."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from .._validate import metric_crs, require_gdf
from ..settings import DistributedSettings, JoinSettings
from ._build import _metric_bounds
from ._cluster import _bar
from ._grid import _MARGIN_M, _grid_for, _Stats, _timed
from ._staging import _Staging

# --------------------------------------------------------------------------------------------
# join


#: Columns :func:`trafficunit.assign` adds; a join task sends back these (ids and statuses as
#: numbers) and ``_pos``.
_JOIN_COLUMNS = ("unit_id", "distance_m", "measure_m", "match", "overlap_m")
_FLOAT_COLUMNS = ("distance_m", "measure_m", "overlap_m")
#: Columns of the units and the events that the join reads (the rest stays on the client).
_UNIT_INPUTS = ("kind", "radius_m", "road_class", "name")
_EVENT_INPUTS = ("kind", "road_name")


def _decode(codes: np.ndarray, uniq: np.ndarray, dtype: Any) -> pd.Series:
    """A column from its codes (-1: missing), distinct values and dtype."""
    if isinstance(dtype, pd.api.extensions.ExtensionDtype):  # a take: no Python objects
        return pd.Series(pd.Series(uniq, dtype=dtype).array.take(codes, allow_fill=True))
    values = np.full(len(codes), None, dtype=object)
    values[codes >= 0] = uniq[codes[codes >= 0]]
    return pd.Series(values, dtype=dtype)


def _join_cell(
    units: gpd.GeoDataFrame, payload: dict[str, Any], crs_wkt: str, cfg: JoinSettings
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Join one cell's events; both arrive in the metric CRS, the events as the columns the
    join reads plus point coordinates (no geometry objects to serialise) and, for lines and
    polygons, their projected shapes."""
    from ..join import MATCH_STATUSES
    from ..join import assign as _assign

    mcrs = pyproj.CRS.from_wkt(crs_wkt)
    is_pt = payload["is_pt"]
    if not len(units):  # no unit within reach: every event is loose (settled on the client)
        res = pd.DataFrame(
            {
                "_pos": payload["pos"],
                "unit": np.full(len(is_pt), -1),
                "match": np.full(len(is_pt), MATCH_STATUSES.index("outside"), dtype=np.int8),
            }
        )
        for col in _FLOAT_COLUMNS:
            res[col] = np.nan
        return res, {}
    geoms = np.full(len(is_pt), None, dtype=object)
    geoms[is_pt] = shapely.points(payload["x"][is_pt], payload["y"][is_pt])
    if payload["shapes"] is not None:
        geoms[~is_pt] = payload["shapes"][~is_pt]
    columns = pd.DataFrame(
        {name: _decode(*coded) for name, coded in payload["columns"].items()},
        index=pd.RangeIndex(len(is_pt)),
    )
    events = gpd.GeoDataFrame(columns, geometry=geoms, crs=mcrs)
    events["_pos"] = payload["pos"]
    upos = units.pop("_upos").to_numpy()
    # each task projects its own units (in parallel; the same coordinates as projecting all)
    units = gpd.GeoDataFrame(units, geometry=units.geometry.name).to_crs(mcrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _assign(units, events, crs=mcrs, settings=cfg)
    report = dict(out.attrs.get("report", {}))
    # numbers, not strings, travel back: the unit's position among all units, the status code
    at = units.index.get_indexer(out["unit_id"].astype(object).where(out["unit_id"].notna()))
    res = pd.DataFrame(
        {
            "_pos": out["_pos"].to_numpy(),
            "unit": np.where(at >= 0, upos[np.maximum(at, 0)], -1),
            "match": pd.Categorical(out["match"].array, categories=MATCH_STATUSES).codes,
        }
    )
    for col in _FLOAT_COLUMNS:
        res[col] = out[col].to_numpy(dtype=float)
    return res, report


def _reach(units: gpd.GeoDataFrame | None, cfg: JoinSettings) -> float:
    """The farthest an event can be from a unit it is matched to, metres (``None``: from the
    settings alone, without the units' radii)."""
    d = [*cfg.max_distance_m.values(), *cfg.line_tolerance_m.values(), cfg.polygon_tolerance_m]
    for by_class in cfg.max_distance_m_by_class.values():
        d.extend(by_class.values())
    r = pd.to_numeric(units.get("radius_m"), errors="coerce") if units is not None else None
    radius = float(np.nanmax(r.to_numpy(dtype=float))) if r is not None and r.notna().any() else 0
    return max([*d, radius, cfg.default_radius_m]) + _MARGIN_M


def _network_extent(roads: gpd.GeoDataFrame, mcrs: pyproj.CRS) -> np.ndarray:
    """The roads' metric bounds, from their bounding box's outline projected (the join's
    grid only partitions the events: its extent needs no more precision)."""
    b = np.asarray(roads.total_bounds, dtype=float)
    if not np.isfinite(b).all():
        return np.zeros(4)
    t = np.linspace(0.0, 1.0, 65)
    xs = np.r_[
        b[0] + (b[2] - b[0]) * t, np.full(65, b[2]), b[0] + (b[2] - b[0]) * t, np.full(65, b[0])
    ]
    ys = np.r_[
        np.full(65, b[1]), b[1] + (b[3] - b[1]) * t, np.full(65, b[3]), b[1] + (b[3] - b[1]) * t
    ]
    if not pyproj.CRS.from_user_input(roads.crs).equals(mcrs):
        xs, ys = pyproj.Transformer.from_crs(roads.crs, mcrs, always_xy=True).transform(xs, ys)
    return np.array([np.min(xs), np.min(ys), np.max(xs), np.max(ys)])


def _event_bounds(
    events: gpd.GeoDataFrame, mcrs: pyproj.CRS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Which events are missing and which are points, the metric bounds of every event
    (without building projected geometries for the points) and the projected lines and
    polygons (None where a point or missing; None if there are none)."""
    src = np.asarray(events.geometry.to_numpy(), dtype=object)
    missing = shapely.is_missing(src) | shapely.is_empty(src)
    is_pt = (shapely.get_type_id(src) == 0) & ~missing
    ebounds = np.full((len(src), 4), np.nan)
    to_metric = pyproj.Transformer.from_crs(events.crs, mcrs, always_xy=True)
    px, py = to_metric.transform(shapely.get_x(src[is_pt]), shapely.get_y(src[is_pt]))
    ebounds[is_pt] = np.c_[px, py, px, py]
    other = ~is_pt & ~missing
    shapes_m = None
    if other.any():
        shapes = gpd.GeoSeries(src[other], crs=events.crs).to_crs(mcrs).to_numpy()
        ebounds[other] = shapely.bounds(shapes)
        shapes_m = np.full(len(src), None, dtype=object)
        shapes_m[other] = shapes
    return missing, is_pt, ebounds, shapes_m


def _slim(units: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The units' columns the join reads with their geometry and their position among all
    units (``_upos``)."""
    slim = gpd.GeoDataFrame(
        pd.DataFrame(units[[c for c in _UNIT_INPUTS if c in units.columns]]),
        geometry=units.geometry.to_numpy(),
        crs=units.crs,
    )
    slim["_upos"] = np.arange(len(units))
    return slim


def _payload(
    rows: np.ndarray,
    ev_cols: dict[str, tuple[np.ndarray, np.ndarray, Any]],
    is_pt: np.ndarray,
    ebounds: np.ndarray,
    shapes_m: np.ndarray | None,
) -> dict[str, Any]:
    """What a join task gets of the events ``rows``."""
    return {
        "columns": {k: (codes[rows], u, dt) for k, (codes, u, dt) in ev_cols.items()},
        "pos": rows,
        "is_pt": is_pt[rows],
        "x": ebounds[rows, 0],
        "y": ebounds[rows, 1],
        "shapes": shapes_m[rows] if shapes_m is not None else None,
    }


@dataclass
class _EventCells:
    """The events of a join, partitioned by cell and already sent to the workers.

    Everything here depends on the events alone, so :func:`run_pipeline` prepares it while
    the workers build the units.
    """

    missing: np.ndarray
    ebounds: np.ndarray
    #: cells an interrupted run saved: (results, report)
    saved: dict[tuple[int, int], tuple[pd.DataFrame, dict[str, Any]]]
    #: the other cells: (cell, event rows, the rows' payload on the workers)
    jobs: list[tuple[tuple[int, int], np.ndarray, Any]]


def _event_cells(
    events: gpd.GeoDataFrame,
    client: Any,
    *,
    mcrs: pyproj.CRS,
    jcfg: JoinSettings,
    cfg: DistributedSettings,
    extent: np.ndarray,
    store: _Staging | None = None,
    stage: str = "join",
) -> _EventCells:
    """Partition ``events`` into cells of a grid over ``extent`` (the network's metric
    bounds; events beyond it fall in its edge cells) of about ``events_per_cell`` events and
    at least ten base reaches wide, and scatter each cell's payload to the workers (see
    :func:`assign`)."""
    missing, is_pt, ebounds, shapes_m = _event_bounds(events, mcrs)
    grid = _grid_for(
        extent,
        mcrs,
        size=cfg.cell_size_m,
        count=len(events),
        per_cell=cfg.events_per_cell,
        n_workers=cfg.n_workers,
        min_size=10 * _reach(None, jcfg),
    )
    ci, cj = grid.cell_of((ebounds[:, 0] + ebounds[:, 2]) / 2, (ebounds[:, 1] + ebounds[:, 3]) / 2)
    key = ci * grid.ny + cj
    key[missing] = 0
    # event columns as codes and their distinct values: millions of repeated strings (the
    # kind, road names) are not pickled one by one
    ev_cols = {}
    for col in (c for c in _EVENT_INPUTS if c in events.columns):
        codes, uniq = pd.factorize(events[col], use_na_sentinel=True)
        ev_cols[col] = (codes, np.asarray(uniq, dtype=object), events[col].dtype)
    order = np.argsort(key, kind="stable")
    ks, starts = np.unique(key[order], return_index=True)
    saved: dict[tuple[int, int], tuple[pd.DataFrame, dict[str, Any]]] = {}
    todo: list[tuple[tuple[int, int], np.ndarray]] = []
    for k, rows in zip(ks, np.split(order, starts[1:]), strict=True):
        c = (int(k // grid.ny), int(k % grid.ny))
        done = store.load_part(stage, c) if store is not None else None
        if done is not None:
            saved[c] = (done, store.load_report(stage, c))  # type: ignore[union-attr]
        else:
            todo.append((c, rows))
    # every payload sent in one go (hash=False: no tokenising of big arrays)
    data = client.scatter(
        [_payload(rows, ev_cols, is_pt, ebounds, shapes_m) for _, rows in todo], hash=False
    )
    jobs = [(c, rows, d) for (c, rows), d in zip(todo, data, strict=True)]
    return _EventCells(missing, ebounds, saved, jobs)


def assign(
    units: gpd.GeoDataFrame,
    events: gpd.GeoDataFrame,
    client: Any,
    *,
    crs: Any = None,
    settings: JoinSettings | None = None,
    distributed_settings: DistributedSettings | None = None,
    progress: bool = False,
    _store: _Staging | None = None,
    _stage: str = "join",
    _stats: _Stats | None = None,
    _cells: _EventCells | None = None,
) -> gpd.GeoDataFrame:
    """:func:`trafficunit.assign` on a Dask cluster, cell by cell; the same result.

    Parameters
    ----------
    units, events
        As :func:`trafficunit.assign`.
    client
        A :class:`distributed.Client`.
    crs
        Metric CRS (default: the UTM zone of the units; every task uses it).
    settings
        :class:`~trafficunit.settings.JoinSettings`.
    distributed_settings
        Cell size (:class:`~trafficunit.settings.DistributedSettings`).
    progress
        Show a progress bar over the cells.
    """
    require_gdf(units, "units")
    require_gdf(events, "events")
    jcfg = settings or JoinSettings()
    cfg = distributed_settings or DistributedSettings()
    stats = _stats or _Stats()
    t0 = time.perf_counter()
    mcrs = metric_crs(units, crs)
    # units are selected by their metric bounds (from their projected bounding boxes, within
    # micrometres; the reach has a 1 m margin): the tasks project the units they get
    ubounds = _metric_bounds(units, mcrs)
    if _cells is None:
        extent = np.r_[np.nanmin(ubounds[:, :2], axis=0), np.nanmax(ubounds[:, 2:], axis=0)]
        _cells = _event_cells(
            events,
            client,
            mcrs=mcrs,
            jcfg=jcfg,
            cfg=cfg,
            extent=extent,
            store=_store,
            stage=_stage,
        )
    reach = _reach(units, jcfg)
    missing, ebounds = _cells.missing, _cells.ebounds
    parts = {c: p for c, (p, _) in _cells.saved.items()}
    reports = {c: r for c, (_, r) in _cells.saved.items()}
    what = "accidents" if _stage == "join" else _stage
    bar = _bar(len(parts) + len(_cells.jobs), f"joining {what}", progress)
    bar.update(len(parts))
    sels = []
    for _, rows, _ in _cells.jobs:
        ok_rows = rows[~missing[rows]]
        if not len(ok_rows):
            sels.append(np.zeros(0, dtype=np.int64))
            continue
        b = ebounds[ok_rows]
        lo, hi = b[:, :2].min(axis=0) - reach, b[:, 2:].max(axis=0) + reach
        sels.append(
            np.flatnonzero(
                (ubounds[:, 2] >= lo[0])
                & (ubounds[:, 3] >= lo[1])
                & (ubounds[:, 0] <= hi[0])
                & (ubounds[:, 1] <= hi[1])
            )
        )
    # only what the join reads travels to the workers: the units' columns it reads with
    # their geometry, every subset in one go (hash=False: no tokenising of big frames)
    slim_units = _slim(units)
    u_data = client.scatter([slim_units.iloc[sel] for sel in sels], hash=False)
    futures = {
        client.submit(_timed, _join_cell, u_sub, e_sub, mcrs.to_wkt(), jcfg, pure=False): c
        for (c, _, e_sub), u_sub in zip(_cells.jobs, u_data, strict=True)
    }
    del u_data
    _cells.jobs = []  # the payloads are released as their tasks finish
    from distributed import as_completed

    for f in as_completed(list(futures)):
        c = futures.pop(f)
        (parts[c], reports[c]), cpu = f.result()
        f.release()
        stats.add_cpu(_stage, cpu)
        if _store is not None:
            _store.save_part(_stage, c, parts[c], report=reports[c])
        bar.update()
    bar.close()
    out, row_ev = _assemble(parts, events, units)
    _settle_loose(out, missing[row_ev], units, mcrs, jcfg)
    stats.seconds[_stage] = time.perf_counter() - t0
    out.attrs = {"report": _join_report(out, events, row_ev, units, reports, mcrs)}
    return out


def _assemble(
    parts: dict[tuple[int, int], pd.DataFrame], events: gpd.GeoDataFrame, units: pd.DataFrame
) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """The event columns with the tasks' results, one row per point event and per (event,
    unit) pair of shapes, as tu.assign lays them out; and the event of each row."""
    from ..join import MATCH_STATUSES

    cols = pd.concat([parts[c] for c in sorted(parts)], ignore_index=True)
    cols = cols.iloc[np.argsort(cols["_pos"].to_numpy(), kind="stable")]
    row_ev = cols["_pos"].to_numpy()
    if len(row_ev) == len(events) and (row_ev == np.arange(len(events))).all():
        out = events.reset_index(drop=True).copy(deep=False)
    else:
        out = events.iloc[row_ev].reset_index(drop=True)
    unit = cols["unit"].to_numpy()
    # takes on string arrays (Arrow's when that is the string storage): no Python strings
    ids = pd.array(np.asarray(units.index.to_numpy(), dtype=object), dtype="string")
    out["unit_id"] = ids.take(unit, allow_fill=True)
    for col in _FLOAT_COLUMNS[:2]:
        out[col] = cols[col].to_numpy(dtype=float)
    names = pd.array(list(MATCH_STATUSES), dtype="string")
    out["match"] = names.take(cols["match"].to_numpy().astype(np.int64))
    out["overlap_m"] = cols["overlap_m"].to_numpy(dtype=float)
    return gpd.GeoDataFrame(out, geometry=events.geometry.name, crs=events.crs), row_ev


def _inside_area(g: np.ndarray, area: Any) -> tuple[np.ndarray, np.ndarray]:
    """Loose events' metric geometries (a multipoint as its centre) and whether each lies in
    the network's ``area``."""
    g = np.array(g, dtype=object)
    multi = shapely.get_type_id(g) == 4
    g[multi] = shapely.centroid(g[multi])
    is_pt = shapely.get_type_id(g) == 0
    inside = np.zeros(len(g), dtype=bool)
    xy = shapely.get_coordinates(g[is_pt])
    inside[is_pt] = shapely.contains_xy(area, xy[:, 0], xy[:, 1])
    inside[~is_pt] = shapely.intersects(area, g[~is_pt])
    return g, inside


def _settle_loose(
    out: gpd.GeoDataFrame,
    missing: np.ndarray,
    units: gpd.GeoDataFrame,
    mcrs: pyproj.CRS,
    jcfg: JoinSettings,
) -> None:
    """What depends on the whole network, in place: an unmatched event is too far (inside
    its hull) or outside, and its distance to the nearest unit."""
    from ..join import MATCH_STATUSES, UnitIndex

    status = pd.Categorical(out["match"].array, categories=list(MATCH_STATUSES)).codes
    loose_codes = [MATCH_STATUSES.index("too_far"), MATCH_STATUSES.index("outside")]
    loose = np.isin(status, loose_codes) & ~missing
    if not (loose.any() and len(units)):
        return
    ix = UnitIndex(units, crs=mcrs, settings=jcfg)
    g = np.asarray(out.geometry.iloc[np.flatnonzero(loose)].to_crs(mcrs).to_numpy(), dtype=object)
    g, inside = _inside_area(g, ix.area(jcfg.area_buffer_m))
    dist = np.full(len(g), np.nan)
    far = np.flatnonzero(inside)
    if len(far):
        (qi, _), dn = ix.all_tree.query_nearest(g[far], return_distance=True, all_matches=False)
        dist[far[qi]] = dn
    rows = np.flatnonzero(loose)
    out.loc[rows, "match"] = np.where(inside, "too_far", "outside")
    out.loc[rows, "distance_m"] = dist
    out["match"] = out["match"].astype("string")


def _join_report(
    out: pd.DataFrame,
    events: gpd.GeoDataFrame,
    row_ev: np.ndarray,
    units: gpd.GeoDataFrame,
    reports: dict[tuple[int, int], dict[str, Any]],
    mcrs: pyproj.CRS,
) -> dict[str, Any]:
    """The report :func:`trafficunit.assign` gives, over all cells, and their count."""
    from ..join import MATCH_STATUSES
    from ..join.assignment import _match_report

    code = pd.Categorical(out["match"].array, categories=list(MATCH_STATUSES)).codes
    max_d: dict[str, float] = {}
    for r in reports.values():
        for k, v in r.get("max_distance_m", {}).items():
            max_d[k] = max(max_d.get(k, 0.0), float(v))
    report = _match_report(
        events,
        code.astype(np.int8),
        row_ev,
        out["distance_m"].to_numpy(dtype=float),
        rows=len(out),
        units=len(units),
        max_distance_m=max_d,
        name_matched=sum(int(r.get("name_matched", 0)) for r in reports.values()),
        name_overrode=sum(int(r.get("name_overrode_nearest", 0)) for r in reports.values()),
        metric_crs=mcrs,
    )
    return {**report, "cells": len(reports)}
