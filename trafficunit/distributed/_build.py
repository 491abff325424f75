"""Partitioned build: cells with a halo, exactness checks, retries."""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .._errors import TrafficUnitError, ValidationError
from .._validate import geometry_problems, metric_crs, require_gdf, transformer
from ..settings import DistributedSettings, UnitSettings
from ._cluster import _bar
from ._grid import _MARGIN_M, _grid_for, _select, _Stats, _timed
from ._staging import _Staging

# --------------------------------------------------------------------------------------------
# build


def _context_ok(
    units: gpd.GeoDataFrame,
    bounds: np.ndarray,
    inner: tuple[float, ...],
    merge_m: float,
    key_cols: tuple[str, ...],
    refs: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Whether everything each unit depends on lies inside ``inner`` (see the module docs),
    and the bounds of what it depends on (as far as this build can see).

    ``bounds`` are the units' metric bounds. Adjacency comes from ``from_unit``/``to_unit``
    (a segment's neighbours; an intersection's are the segments pointing at it), given as
    positions among the units by ``refs`` (:func:`trafficunit._unit_stages._unit_refs`).
    """
    n = len(units)
    is_seg = (units["kind"] == "segment").to_numpy()
    b = bounds.astype(float, copy=True)
    # intersections: the junction cluster (within radius_m of the centre) and merge_m around
    r = pd.to_numeric(units["radius_m"], errors="coerce").fillna(0.0).to_numpy(float) + merge_m
    r = np.where(is_seg, 0.0, r + _MARGIN_M)
    b[:, :2] -= r[:, None]
    b[:, 2:] += r[:, None]
    # links of the adjacency graph: (segment, unit at its start or end), the start's first
    link = np.r_[is_seg, is_seg] & (refs >= 0)
    s = np.flatnonzero(link) % max(n, 1)
    d = refs[link]
    # segments: the bounds of their run, the segments linked end to end without a junction
    # and with the same chain attributes (a chain is cut where one changes), which holds the
    # segment's chain
    same = is_seg[d].copy()
    for col in key_cols:
        if col not in units.columns or not same.any():
            continue
        code = pd.factorize(units[col])[0]  # equal values, or both missing: equal codes
        same &= code[s] == code[d]
    graph = coo_matrix((np.ones(int(same.sum())), (s[same], d[same])), shape=(n, n))
    _, run = connected_components(graph, directed=False)
    rb = np.empty((run.max() + 1 if n else 0, 4))
    rb[:, :2] = np.inf
    rb[:, 2:] = -np.inf
    np.minimum.at(rb[:, 0], run, b[:, 0])
    np.minimum.at(rb[:, 1], run, b[:, 1])
    np.maximum.at(rb[:, 2], run, b[:, 2])
    np.maximum.at(rb[:, 3], run, b[:, 3])
    b = rb[run]
    # the neighbours, and theirs
    owner = np.r_[s, d]
    ni = np.r_[d, s]
    for _ in range(2):
        nb = b.copy()
        np.minimum.at(nb[:, 0], owner, b[ni, 0])
        np.minimum.at(nb[:, 1], owner, b[ni, 1])
        np.maximum.at(nb[:, 2], owner, b[ni, 2])
        np.maximum.at(nb[:, 3], owner, b[ni, 3])
        b = nb
    ok = (b[:, 0] >= inner[0]) & (b[:, 1] >= inner[1]) & (b[:, 2] <= inner[2])
    ok &= b[:, 3] <= inner[3]
    return ok, b


def _box_margin(bounds: np.ndarray) -> np.ndarray:
    """How far a geometry, projected to the metric CRS, may stray from its metric box (the
    bounds of the lines a build made there, or of its projected bounding box corners,
    :func:`_metric_bounds`): the 1 m margin, plus a hundredth of the box's size for lines
    that bend in the projection (millimetres for a box of a few hundred metres, metres only
    for boxes of a hundred kilometres)."""
    size = np.maximum(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1])
    return _MARGIN_M + 0.01 * np.nan_to_num(size)


def _owned(
    units: gpd.GeoDataFrame,
    bounds: np.ndarray,
    cell: tuple[float, float, float, float],
    mcrs: pyproj.CRS,
) -> np.ndarray:
    """Whether each unit's anchor lies in ``cell`` (half-open), from its metric ``bounds``.

    The anchor of a segment is its midpoint in its own CRS, of an intersection its point:
    a function of the unit alone, so every task that builds a unit puts it in the same cell.
    A unit whose box lies inside the cell, or outside it, with a margin (:func:`_box_margin`)
    is decided by its box; only the anchors of the units across the cell's edges are made.
    """
    m = _box_margin(bounds)
    inside = (bounds[:, 0] - m >= cell[0]) & (bounds[:, 2] + m < cell[2])
    inside &= (bounds[:, 1] - m >= cell[1]) & (bounds[:, 3] + m < cell[3])
    meets = (bounds[:, 2] + m >= cell[0]) & (bounds[:, 0] - m < cell[2])
    meets &= (bounds[:, 3] + m >= cell[1]) & (bounds[:, 1] - m < cell[3])
    own = inside.copy()
    edge = np.flatnonzero(meets & ~inside)
    if len(edge):
        ax, ay = _anchors(units.iloc[edge], mcrs)
        own[edge] = (ax >= cell[0]) & (ax < cell[2]) & (ay >= cell[1]) & (ay < cell[3])
    return own


def _anchors(units: gpd.GeoDataFrame, mcrs: pyproj.CRS) -> tuple[np.ndarray, np.ndarray]:
    """Anchors (x, y) of the units in the metric CRS (see :func:`_owned`)."""
    geoms = np.asarray(units.geometry.to_numpy(), dtype=object)
    is_int = (units["kind"] == "intersection").to_numpy()
    pts = geoms.copy()  # an intersection is its point
    if (~is_int).any():
        pts[~is_int] = shapely.line_interpolate_point(geoms[~is_int], 0.5, normalized=True)
    ax, ay = shapely.get_x(pts), shapely.get_y(pts)
    if not pyproj.CRS.from_user_input(units.crs).equals(mcrs):
        ax, ay = transformer(units.crs, mcrs).transform(ax, ay)
    return np.asarray(ax), np.asarray(ay)


def _metric_bounds(units: gpd.GeoDataFrame, mcrs: pyproj.CRS) -> np.ndarray:
    """Bounds of the units in the metric CRS from their projected bounding box corners,
    without reprojecting the geometries. They hold the projected geometry (to within
    millimetres for boxes of a few hundred metres; the checks keep a margin,
    :func:`_box_margin`) but exceed its bounds where the projection turns the box (by the
    box's size times the sine of the grid convergence: metres, a few degrees from a UTM
    zone's central meridian). A point's corners are one point: it is projected once."""
    bb = shapely.bounds(np.asarray(units.geometry.to_numpy(), dtype=object))
    if pyproj.CRS.from_user_input(units.crs).equals(mcrs):
        return bb
    t = transformer(units.crs, mcrs)
    out = np.empty_like(bb)
    pt = (bb[:, 0] == bb[:, 2]) & (bb[:, 1] == bb[:, 3])
    px, py = t.transform(bb[pt, 0], bb[pt, 1])
    out[pt] = np.c_[px, py, px, py]
    box = bb[~pt]
    cx, cy = t.transform(box[:, [0, 2, 0, 2]].ravel(), box[:, [1, 1, 3, 3]].ravel())
    cx, cy = np.reshape(cx, (-1, 4)), np.reshape(cy, (-1, 4))
    out[~pt] = np.c_[cx.min(axis=1), cy.min(axis=1), cx.max(axis=1), cy.max(axis=1)]
    return out


def _build_cell(
    roads: gpd.GeoDataFrame,
    cell: tuple[float, float, float, float],
    halo: float,
    crs_wkt: str,
    options: dict[str, Any],
) -> tuple[gpd.GeoDataFrame, int, float, np.ndarray]:
    """Units anchored in ``cell`` built from ``roads`` (those within ``halo`` of it).

    Returns the units, how many units near the cell failed the context check (0: the units
    are exact), the halo the failing ones need at least, and the units' metric bounds.
    """
    from .._unit_stages import _metric_bounds_of, _unit_refs
    from ..units import _build

    unit_cfg = (options.get("settings") or UnitSettings()).with_(
        max_length_m=options.get("max_length_m"),
        junction_merge_m=options.get("junction_merge_m"),
        split_on=tuple(options["split_on"]) if options.get("split_on") is not None else None,
    )
    mcrs = pyproj.CRS.from_wkt(crs_wkt)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            st = _build(roads, unit_cfg, crs=mcrs)
    except ValidationError:  # nothing usable here
        return gpd.GeoDataFrame(geometry=[], crs=roads.crs), 0, 0.0, np.zeros((0, 4))
    units: gpd.GeoDataFrame = st.units
    bounds = _metric_bounds_of(st)  # the metric lines the build made: nothing to project
    refs = _unit_refs(st)
    del st
    own = _owned(units, bounds, cell, mcrs)
    if math.isinf(halo):
        return units.iloc[np.flatnonzero(own)], 0, 0.0, bounds[own]
    m = halo - _MARGIN_M
    inner = (cell[0] - m, cell[1] - m, cell[2] + m, cell[3] + m)
    merge = unit_cfg.junction_merge_m
    keys = tuple(dict.fromkeys([*unit_cfg.split_on, "name", "ref", "oneway"]))
    ok, support = _context_ok(units, bounds, inner, merge, keys, refs)
    # check every unit near the cell, not only those kept: a unit of the whole-network build
    # anchored here appears in this build only if the units around its anchor are exact
    r = pd.to_numeric(units["radius_m"], errors="coerce").max()
    grow = (0.0 if pd.isna(r) else float(r)) + merge + _MARGIN_M
    near = (bounds[:, 2] >= cell[0] - grow) & (bounds[:, 0] <= cell[2] + grow)
    near &= (bounds[:, 3] >= cell[1] - grow) & (bounds[:, 1] <= cell[3] + grow)
    fail = near & ~ok
    need = 0.0
    if fail.any():  # the halo the failing units ask for (at least; they may reach further)
        sb = support[fail]
        need = float(
            max(
                (cell[0] - sb[:, 0]).max(),
                (cell[1] - sb[:, 1]).max(),
                (sb[:, 2] - cell[2]).max(),
                (sb[:, 3] - cell[3]).max(),
            )
            + 2 * _MARGIN_M
        )
    return units.iloc[np.flatnonzero(own)], int(fail.sum()), need, bounds[own]


def _saved_parts(
    store: _Staging | None, stage: str, cells: list[tuple[int, int]]
) -> dict[tuple[int, int], gpd.GeoDataFrame]:
    """The cells an interrupted run saved."""
    parts = {}
    for c in cells:
        done = store.load_part(stage, c) if store is not None else None
        if done is not None:
            parts[c] = done
    return parts


def build_units(
    roads: gpd.GeoDataFrame,
    client: Any,
    *,
    max_length_m: float | None = None,
    junction_merge_m: float | None = None,
    split_on: tuple[str, ...] | list[str] | None = None,
    crs: Any = None,
    unit_settings: UnitSettings | None = None,
    settings: DistributedSettings | None = None,
    progress: bool = False,
    _store: _Staging | None = None,
    _stats: _Stats | None = None,
) -> gpd.GeoDataFrame:
    """:func:`trafficunit.build_units` on a Dask cluster, cell by cell; the same result.

    Parameters
    ----------
    roads
        Road lines (``tu.read_network``); normalise them first if they are raw OSM-tagged
        lines (the tasks see subsets, and the result must not depend on which).
    client
        A :class:`distributed.Client` (see :func:`cluster`).
    max_length_m, junction_merge_m, split_on, unit_settings
        As :func:`trafficunit.build_units`.
    crs
        Metric CRS (default: the UTM zone of all the roads; every task uses it).
    settings
        Cell size and halo (:class:`~trafficunit.settings.DistributedSettings`).
    progress
        Show a progress bar over the cells.

    Returns
    -------
    geopandas.GeoDataFrame
        The units, indexed by ``unit_id``, equal to ``tu.build_units(roads, crs=...)``.
    """
    from ..network import COLUMNS as ROAD_COLUMNS

    require_gdf(roads, "roads")
    cfg = settings or DistributedSettings()
    stats = _stats or _Stats()
    if not (set(ROAD_COLUMNS) <= set(roads.columns) and roads["oneway"].dtype == bool):
        from ..network import normalise_roads

        roads = normalise_roads(roads, filter_highways=False)
    mcrs = metric_crs(roads, crs)
    t0 = time.perf_counter()
    ok_geom = geometry_problems(roads.geometry.values) == ""
    geoms = np.asarray(roads.geometry.to_crs(mcrs).to_numpy(), dtype=object)
    geoms[~ok_geom] = None
    tree = shapely.STRtree(geoms)
    merge_m = (unit_settings or UnitSettings()).with_(junction_merge_m=junction_merge_m)
    halo0 = max(cfg.halo_m, 4 * merge_m.junction_merge_m)
    grid = _grid_for(
        np.asarray(shapely.total_bounds(geoms[ok_geom]), dtype=float),
        mcrs,
        size=cfg.cell_size_m,
        count=int(ok_geom.sum()),
        per_cell=cfg.roads_per_cell,
        n_workers=cfg.n_workers,
        min_size=2 * halo0,
    )
    options: dict[str, Any] = {
        "max_length_m": max_length_m,
        "junction_merge_m": junction_merge_m,
        "split_on": split_on,
        "settings": unit_settings,
    }
    cells = [(i, j) for i in range(grid.nx) for j in range(grid.ny)]
    parts = _saved_parts(_store, "build", cells)
    todo = [c for c in cells if c not in parts]
    stats.cells = len(cells)
    bar = _bar(len(cells), "building units", progress)
    bar.update(len(parts))
    from distributed import as_completed

    def subset(c: tuple[int, int], halo: float) -> np.ndarray:
        sel = _select(tree, grid.box(*c), halo)
        return sel[ok_geom[sel]] if len(sel) else sel

    def submit(c: tuple[int, int], halo: float, data: Any) -> Any:
        stats.tasks += 1
        stats.max_halo_m = max(stats.max_halo_m, halo)
        return client.submit(
            _timed, _build_cell, data, grid.box(*c), halo, mcrs.to_wkt(), options, pure=False
        )

    # the first wave: every subset sent in one go (hash=False: no tokenising of big frames)
    first = [(c, subset(c, halo0)) for c in todo]
    bar.update(sum(1 for _, sel in first if not len(sel)))
    first = [(c, sel) for c, sel in first if len(sel)]
    data = client.scatter([roads.iloc[sel] for _, sel in first], hash=False)
    futures = {submit(c, halo0, d): (c, halo0, 0) for (c, _), d in zip(first, data, strict=True)}
    del data
    ac = as_completed(list(futures))
    for f in ac:
        c, halo, tries = futures.pop(f)
        (units, bad, need, _), cpu = f.result()
        f.release()
        stats.add_cpu("build", cpu)
        if bad:
            stats.retries += 1
            nxt = max(halo * 2, 1.25 * need) if tries + 1 < cfg.max_halo_doublings else math.inf
            sub = client.scatter(roads.iloc[subset(c, nxt)], hash=False)
            g = submit(c, nxt, sub)
            futures[g] = (c, nxt, tries + 1)
            ac.add(g)
            continue
        parts[c] = units
        if _store is not None:
            _store.save_part("build", c, units)
        bar.update()
    bar.close()
    stats.seconds["build"] = time.perf_counter() - t0
    out = _concat_units(parts, roads.crs)
    out.attrs = {"report": _build_report(roads, out, geoms, ok_geom, mcrs, stats)}
    return out


def _concat_units(parts: dict[tuple[int, int], gpd.GeoDataFrame], crs: Any) -> gpd.GeoDataFrame:
    """The cells' units as one frame in ``unit_id`` order, with the dtypes of a plain build."""
    frames = [p for p in parts.values() if len(p)]
    if not frames:
        raise ValidationError("no usable road lines (all geometries missing, empty or not lines)")
    out = pd.concat(frames)
    if not out.index.is_unique:  # pragma: no cover - would be a bug in the ownership rule
        dup = out.index[out.index.duplicated()][:3].tolist()
        raise TrafficUnitError(f"partitioned build produced duplicate units {dup}; please report")
    out = gpd.GeoDataFrame(out, geometry="geometry", crs=crs).sort_index()
    ref = frames[0]
    for col in out.columns:
        if col != "geometry" and out[col].dtype != ref[col].dtype:
            out[col] = out[col].astype(ref[col].dtype)
    return out


def _build_report(
    roads: gpd.GeoDataFrame,
    units: gpd.GeoDataFrame,
    geoms: np.ndarray,
    ok_geom: np.ndarray,
    mcrs: pyproj.CRS,
    stats: _Stats,
) -> dict[str, Any]:
    problems = geometry_problems(roads.geometry.values)
    dropped = {
        str(k): int(v) for k, v in pd.Series(problems[problems != ""]).value_counts().items()
    }
    seg = units["kind"] == "segment"
    return {
        "roads_in": len(roads),
        "road_length_km": float(shapely.length(geoms[ok_geom]).sum() / 1000.0),
        "dropped": dropped,
        "segments": int(seg.sum()),
        "intersections": int((~seg).sum()),
        "junction_links": int(units["junction_id"].notna().sum()),
        "metric_crs": str(mcrs.to_string()),
        "cells": stats.cells,
        "tasks": stats.tasks,
        "halo_retries": stats.retries,
        "max_halo_m": stats.max_halo_m,
    }
