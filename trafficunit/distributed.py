"""Scale-out on Dask: the build → join → score pipeline partitioned spatially, exact.

:func:`run_pipeline` runs :func:`trafficunit.build_units`, :func:`trafficunit.assign` and
:func:`trafficunit.score` over a region too big to be comfortable in one process, on a local
cluster (the default) or on any Dask cluster given its scheduler address. The results are the
single-process results: the same unit ids, attributes, adjacency, matches and scores.

**Build.** Space is cut into square cells of a grid in the metric CRS. The task of a cell
builds units from every road that intersects the cell grown by a halo, and keeps the units
whose *anchor* (a segment's midpoint, an intersection's point) lies in the cell, half-open
(``x0 <= x < x1``), so every unit has exactly one owner. A kept unit is exactly the unit a
whole-network build makes when everything it depends on lies inside the halo region, where
every node has its true degree (every road touching a node inside the region was selected):

- the *run* of segments it belongs to (the segments linked end to end through
  ``from_unit``/``to_unit``, which contains its chain, and so its extent, split and id);
- the junction clusters at its ends with ``junction_merge_m`` around their members (their
  membership, centre and id);
- the same for its neighbours and their neighbours (an intersection's degree, lead road and
  names; whether a short segment is a link inside a junction).

The task checks this with a 1 m margin; if any check fails, the cell is built again with the
halo doubled, or grown to what the failing units were seen to need if that is more (after
``max_halo_doublings`` retries, from the whole network).
The check covers every unit near the cell, not only the kept ones: a unit of the whole-network
build anchored in the cell is then certain to be built here too (its anchor lies on units
that are exact), so no unit is lost between cells and none is kept twice.

**Join.** Events are partitioned by the cell of their position and joined against the units
within the largest matching distance (or influence radius) of the cell's events, which holds
every candidate any rule could pick. Both travel in the metric CRS, projected once on the
client: units with their projected lines, point events as coordinate arrays (no geometry
objects to serialise; the task makes the points), so no task reprojects anything. What
depends on the whole network, whether an unmatched event is ``"too_far"`` (inside the
network's hull) or ``"outside"`` and its distance to the nearest unit, is settled on the
client against all units.

**Score.** The per-unit sums are a bincount; the safety performance functions, the
percentiles and the bands are global over the reference populations. The client runs
:func:`trafficunit.score` once on the joined rows it gathers for the output anyway, so the
scores are those of the single-process run by construction. It imports statsmodels in a
background thread while the workers build and join, so the fit does not wait for it.

**Restarts.** With ``outdir``, the run works in a hidden staging directory beside it, saving
each cell's units and matches as they arrive; a run interrupted and started again with the
same inputs and options resumes from the saved cells (different inputs: it starts over).
The staging directory replaces ``outdir`` by renames only when everything is written, so
``outdir`` always holds one complete run, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import os
import shutil
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ._errors import TrafficUnitError, ValidationError
from ._validate import geometry_problems, metric_crs, require_gdf
from .settings import DistributedSettings, JoinSettings, RiskSettings, UnitSettings

__all__ = [
    "Grid",
    "PipelineResult",
    "assign",
    "build_units",
    "cluster",
    "run_pipeline",
]

_MARGIN_M = 1.0


# --------------------------------------------------------------------------------------------
# grid


@dataclass(frozen=True)
class Grid:
    """Square cells of side ``size`` (metres) from ``(x0, y0)`` in the metric CRS ``crs``."""

    x0: float
    y0: float
    size: float
    nx: int
    ny: int
    crs: str

    @classmethod
    def over(cls, bounds: np.ndarray, size: float, crs: pyproj.CRS) -> Grid:
        """The grid of cells of ``size`` covering ``bounds`` (xmin, ymin, xmax, ymax)."""
        if not size > 0:
            raise ValidationError(f"cell_size_m must be positive, got {size}")
        x0, y0 = math.floor(bounds[0]), math.floor(bounds[1])
        nx = max(1, math.floor((bounds[2] - x0) / size) + 1)
        ny = max(1, math.floor((bounds[3] - y0) / size) + 1)
        return cls(float(x0), float(y0), float(size), nx, ny, crs.to_wkt())

    def box(self, i: int, j: int) -> tuple[float, float, float, float]:
        """Bounds of cell ``(i, j)``; neighbours compute a shared edge the same way."""
        s = self.size
        return (self.x0 + i * s, self.y0 + j * s, self.x0 + (i + 1) * s, self.y0 + (j + 1) * s)

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cell indices of points (clipped to the grid)."""
        i = np.floor((np.asarray(x) - self.x0) / self.size)
        j = np.floor((np.asarray(y) - self.y0) / self.size)
        i = np.clip(np.nan_to_num(i, nan=0), 0, self.nx - 1).astype(np.int64)
        j = np.clip(np.nan_to_num(j, nan=0), 0, self.ny - 1).astype(np.int64)
        return i, j


def _grid_for(
    bounds: np.ndarray,
    crs: pyproj.CRS,
    *,
    size: float | None,
    count: int,
    per_cell: int,
    n_workers: int,
    min_size: float,
) -> Grid:
    """The given cell size, or one giving about ``per_cell`` items a cell (and at least two
    cells a worker), but no smaller than ``min_size``.

    A chosen size divides the extent evenly (the last row and column of cells are not
    slivers), so the tasks are of similar size and the workers finish together.
    """
    if size is not None:
        return Grid.over(bounds, size, crs)
    w = max(float(bounds[2] - bounds[0]), 1.0)
    h = max(float(bounds[3] - bounds[1]), 1.0)
    n_cells = max(count / max(per_cell, 1), 2 * n_workers, 1)
    side = max(math.sqrt(w * h / n_cells), min_size)
    nx, ny = max(1, round(w / side)), max(1, round(h / side))
    # 1 m beyond the extent on each side: every point of it falls inside a cell
    size = max((w + 2.0) / nx, (h + 2.0) / ny, min_size)
    x0, y0 = math.floor(bounds[0]) - 1.0, math.floor(bounds[1]) - 1.0
    nx = max(1, math.floor((bounds[2] - x0) / size) + 1)
    ny = max(1, math.floor((bounds[3] - y0) / size) + 1)
    return Grid(x0, y0, float(size), nx, ny, crs.to_wkt())


# --------------------------------------------------------------------------------------------
# cluster


@contextlib.contextmanager
def cluster(
    scheduler: Any = "local", *, settings: DistributedSettings | None = None
) -> Iterator[Any]:
    """A Dask client: a new local cluster (``"local"``), a scheduler address, or a client.

    Parameters
    ----------
    scheduler
        ``"local"`` starts a :class:`distributed.LocalCluster` of ``settings.n_workers``
        workers (closed on exit); an address such as ``"tcp://10.0.0.5:8786"`` connects to a
        running cluster; a :class:`distributed.Client` is used as it is.
    settings
        :class:`~trafficunit.settings.DistributedSettings` for the local cluster.
    """
    from ._optional import require

    dist = require("distributed", "running on Dask")
    Client, LocalCluster = dist.Client, dist.LocalCluster

    cfg = settings or DistributedSettings()
    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler in (None, "local"):
        with (
            LocalCluster(
                n_workers=cfg.n_workers,
                threads_per_worker=cfg.threads_per_worker,
                processes=cfg.processes,
                memory_limit=cfg.memory_limit,
                dashboard_address=None,
            ) as lc,
            Client(lc) as client,
        ):
            client.run(_warm_up)
            yield client
        return
    try:
        client = Client(str(scheduler), timeout=f"{cfg.connect_timeout_s}s")
    except OSError as exc:
        raise TrafficUnitError(
            f"cannot reach the Dask scheduler at {scheduler}: {exc}; check the address "
            "(tcp://host:8786) or use 'local'"
        ) from exc
    with client:
        yield client


def _peak_rss_mb() -> float:
    """Peak resident set size of this (worker) process, MB.

    Linux's ``VmHWM`` where available: ``ru_maxrss`` survives ``exec`` and so would report
    the size of the process a worker was forked from.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _preload(module: str) -> None:
    """Import ``module`` if it is installed (run in a thread)."""
    with contextlib.suppress(ImportError):
        importlib.import_module(module)


def _reset_peak_rss() -> None:
    """Start this process's peak resident set size afresh (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _warm_up() -> None:
    """Import the modules the tasks use, once per worker, when the cluster starts."""
    from . import join, units  # noqa: F401


def _bar(total: int, desc: str, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="cell", disable=not progress)


# --------------------------------------------------------------------------------------------
# build


def _context_ok(
    units: gpd.GeoDataFrame,
    bounds: np.ndarray,
    inner: tuple[float, ...],
    merge_m: float,
    key_cols: tuple[str, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """Whether everything each unit depends on lies inside ``inner`` (see the module docs),
    and the bounds of what it depends on (as far as this build can see).

    ``bounds`` are the units' metric bounds. Adjacency comes from ``from_unit``/``to_unit``
    (a segment's neighbours; an intersection's are the segments pointing at it).
    """
    n = len(units)
    idx = pd.Index(units.index)
    is_seg = (units["kind"] == "segment").to_numpy()
    b = bounds.astype(float, copy=True)
    # intersections: the junction cluster (within radius_m of the centre) and merge_m around
    r = pd.to_numeric(units["radius_m"], errors="coerce").fillna(0.0).to_numpy(float) + merge_m
    r = np.where(is_seg, 0.0, r + _MARGIN_M)
    b[:, :2] -= r[:, None]
    b[:, 2:] += r[:, None]
    # links of the adjacency graph: (segment, unit at its start or end)
    src_l: list[np.ndarray] = []
    dst_l: list[np.ndarray] = []
    for col in ("from_unit", "to_unit"):
        other = idx.get_indexer(units[col].astype(object).where(units[col].notna(), None))
        link = is_seg & (other >= 0)
        src_l.append(np.flatnonzero(link))
        dst_l.append(other[link])
    s = np.concatenate(src_l)
    d = np.concatenate(dst_l)
    # segments: the bounds of their run, the segments linked end to end without a junction
    # and with the same chain attributes (a chain is cut where one changes), which holds the
    # segment's chain
    same = is_seg[d].copy()
    for col in key_cols:
        if col not in units.columns or not same.any():
            continue
        v = units[col].to_numpy(dtype=object)
        na = pd.isna(v)
        va, vb = v[s[same]], v[d[same]]
        eq = (na[s[same]] & na[d[same]]) | (~na[s[same]] & ~na[d[same]])
        both = eq & ~na[s[same]]
        eq[both] = np.asarray(va[both] == vb[both], dtype=bool)
        same[np.flatnonzero(same)] = eq
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


def _metric_frame(
    units: gpd.GeoDataFrame, mcrs: pyproj.CRS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anchors (x, y) and bounds of the units in the metric CRS, without reprojecting them.

    The anchor of a segment is its midpoint in its own CRS, of an intersection its point:
    a function of the unit alone, so every task that builds a unit puts it in the same cell.
    Bounds are those of the projected bounding box corners (within micrometres of the
    projected geometry's for units of a few hundred metres; the checks keep a 1 m margin).
    """
    geoms = np.asarray(units.geometry.to_numpy(), dtype=object)
    is_int = (units["kind"] == "intersection").to_numpy()
    pts = geoms.copy()
    if (~is_int).any():
        pts[~is_int] = shapely.line_interpolate_point(geoms[~is_int], 0.5, normalized=True)
    if is_int.any():
        pts[is_int] = shapely.centroid(geoms[is_int])
    ax, ay = shapely.get_x(pts), shapely.get_y(pts)
    bb = shapely.bounds(geoms)
    if pyproj.CRS.from_user_input(units.crs).equals(mcrs):
        return ax, ay, bb
    t = pyproj.Transformer.from_crs(units.crs, mcrs, always_xy=True)
    ax, ay = t.transform(ax, ay)
    cx, cy = t.transform(bb[:, [0, 2, 0, 2]].ravel(), bb[:, [1, 1, 3, 3]].ravel())
    cx, cy = np.reshape(cx, (-1, 4)), np.reshape(cy, (-1, 4))
    out = np.c_[cx.min(axis=1), cy.min(axis=1), cx.max(axis=1), cy.max(axis=1)]
    return np.asarray(ax), np.asarray(ay), out


def _build_cell(
    roads: gpd.GeoDataFrame,
    cell: tuple[float, float, float, float],
    halo: float,
    crs_wkt: str,
    options: dict[str, Any],
) -> tuple[gpd.GeoDataFrame, int, float]:
    """Units anchored in ``cell`` built from ``roads`` (those within ``halo`` of it).

    Returns the units, how many units near the cell failed the context check (0: the units
    are exact) and the halo the failing ones need at least.
    """
    from .units import build_units as _build

    mcrs = pyproj.CRS.from_wkt(crs_wkt)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            units = _build(roads, crs=mcrs, **options)
    except ValidationError:
        return gpd.GeoDataFrame(geometry=[], crs=roads.crs), 0, 0.0  # nothing usable here
    ax, ay, bounds = _metric_frame(units, mcrs)
    own = (ax >= cell[0]) & (ax < cell[2]) & (ay >= cell[1]) & (ay < cell[3])
    if math.isinf(halo):
        return units.loc[own], 0, 0.0
    m = halo - _MARGIN_M
    inner = (cell[0] - m, cell[1] - m, cell[2] + m, cell[3] + m)
    unit_cfg = (options.get("settings") or UnitSettings()).with_(
        junction_merge_m=options.get("junction_merge_m"),
        split_on=tuple(options["split_on"]) if options.get("split_on") is not None else None,
    )
    merge = unit_cfg.junction_merge_m
    keys = tuple(dict.fromkeys([*unit_cfg.split_on, "name", "ref", "oneway"]))
    ok, support = _context_ok(units, bounds, inner, merge, keys)
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
    return units.loc[own], int(fail.sum()), need


def _select(tree: shapely.STRtree, box: tuple[float, ...], grow: float) -> np.ndarray:
    if math.isinf(grow):
        return np.arange(len(tree.geometries))
    region = shapely.box(box[0] - grow, box[1] - grow, box[2] + grow, box[3] + grow)
    return np.sort(tree.query(region, predicate="intersects"))


@dataclass
class _Stats:
    cells: int = 0
    tasks: int = 0
    retries: int = 0
    max_halo_m: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)


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
    from .network import COLUMNS as ROAD_COLUMNS

    require_gdf(roads, "roads")
    cfg = settings or DistributedSettings()
    stats = _stats or _Stats()
    if not (set(ROAD_COLUMNS) <= set(roads.columns) and roads["oneway"].dtype == bool):
        from .network import normalise_roads

        roads = normalise_roads(roads, filter_highways=False)
    mcrs = metric_crs(roads, crs)
    t0 = time.perf_counter()
    ok_geom = geometry_problems(roads.geometry.values) == ""
    geoms = np.asarray(roads.geometry.to_crs(mcrs).to_numpy(), dtype=object)
    geoms[~ok_geom] = None
    tree = shapely.STRtree(geoms)
    merge = (unit_settings or UnitSettings()).with_(junction_merge_m=junction_merge_m)
    halo0 = max(cfg.halo_m, 4 * merge.junction_merge_m)
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
    parts: dict[tuple[int, int], gpd.GeoDataFrame] = {}
    todo: list[tuple[int, int]] = []
    for c in cells:
        done = _store.load_part("build", c) if _store is not None else None
        if done is not None:
            parts[c] = done
        else:
            todo.append(c)
    stats.cells = len(cells)
    bar = _bar(len(cells), "building units", progress)
    bar.update(len(parts))
    from distributed import as_completed

    futures = {}
    crs_wkt = mcrs.to_wkt()

    def subset(c: tuple[int, int], halo: float) -> np.ndarray:
        sel = _select(tree, grid.box(*c), halo)
        return sel[ok_geom[sel]] if len(sel) else sel

    def submit(c: tuple[int, int], halo: float, data: Any) -> Any:
        stats.tasks += 1
        stats.max_halo_m = max(stats.max_halo_m, halo)
        return client.submit(_build_cell, data, grid.box(*c), halo, crs_wkt, options, pure=False)

    # the first wave: every subset sent in one go (hash=False: no tokenising of big frames)
    first = [(c, subset(c, halo0)) for c in todo]
    bar.update(sum(1 for _, sel in first if not len(sel)))
    first = [(c, sel) for c, sel in first if len(sel)]
    data = client.scatter([roads.iloc[sel] for _, sel in first], hash=False)
    for (c, _), d in zip(first, data, strict=True):
        futures[submit(c, halo0, d)] = (c, halo0, 0)
    del data
    ac = as_completed(list(futures))
    for f in ac:
        c, halo, tries = futures.pop(f)
        units, bad, need = f.result()
        f.release()
        if bad:
            stats.retries += 1
            nxt = max(halo * 2, 1.25 * need) if tries + 1 < cfg.max_halo_doublings else math.inf
            sub = client.scatter(roads.iloc[subset(c, nxt)], direct=False, hash=False)
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
    frames = [p for p in parts.values() if len(p)]
    if not frames:
        raise ValidationError("no usable road lines (all geometries missing, empty or not lines)")
    out = pd.concat(frames)
    if not out.index.is_unique:  # pragma: no cover - would be a bug in the ownership rule
        dup = out.index[out.index.duplicated()][:3].tolist()
        raise TrafficUnitError(f"partitioned build produced duplicate units {dup}; please report")
    out = gpd.GeoDataFrame(out, geometry="geometry", crs=roads.crs).sort_index()
    ref = frames[0]
    for col in out.columns:
        if col != "geometry" and out[col].dtype != ref[col].dtype:
            out[col] = out[col].astype(ref[col].dtype)
    out.attrs = {"report": _build_report(roads, out, geoms, ok_geom, mcrs, stats)}
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


# --------------------------------------------------------------------------------------------
# join


#: Columns :func:`trafficunit.assign` adds; a join task sends back only these (and ``_pos``).
_JOIN_COLUMNS = ("unit_id", "distance_m", "measure_m", "match", "overlap_m")
#: Columns of the units and the events that the join reads (the rest stays on the client).
_UNIT_INPUTS = ("kind", "radius_m", "road_class", "name")
_EVENT_INPUTS = ("kind", "road_name")


def _join_cell(
    units: gpd.GeoDataFrame, payload: dict[str, Any], crs_wkt: str, cfg: JoinSettings
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Join one cell's events; both arrive in the metric CRS, the events as the columns the
    join reads plus point coordinates (no geometry objects to serialise) and, for lines and
    polygons, their projected shapes."""
    from .join import assign as _assign

    mcrs = pyproj.CRS.from_wkt(crs_wkt)
    is_pt = payload["is_pt"]
    geoms = np.full(len(is_pt), None, dtype=object)
    geoms[is_pt] = shapely.points(payload["x"][is_pt], payload["y"][is_pt])
    if payload["shapes"] is not None:
        geoms[~is_pt] = payload["shapes"][~is_pt]
    events = gpd.GeoDataFrame(payload["columns"].reset_index(drop=True), geometry=geoms, crs=mcrs)
    events["_pos"] = payload["pos"]
    units = gpd.GeoDataFrame(units, geometry=units.geometry.name, crs=mcrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _assign(units, events, crs=mcrs, settings=cfg)
    report = dict(out.attrs.get("report", {}))
    return pd.DataFrame(out[["_pos", *_JOIN_COLUMNS]]), report


def _reach(units: gpd.GeoDataFrame, cfg: JoinSettings) -> float:
    """The farthest an event can be from a unit it is matched to, metres."""
    d = [*cfg.max_distance_m.values(), *cfg.line_tolerance_m.values(), cfg.polygon_tolerance_m]
    for by_class in cfg.max_distance_m_by_class.values():
        d.extend(by_class.values())
    r = pd.to_numeric(units.get("radius_m"), errors="coerce")
    radius = float(np.nanmax(r.to_numpy(dtype=float))) if r is not None and r.notna().any() else 0
    return max([*d, radius, cfg.default_radius_m]) + _MARGIN_M


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
    from .join import MATCH_STATUSES, UnitIndex

    require_gdf(units, "units")
    require_gdf(events, "events")
    jcfg = settings or JoinSettings()
    cfg = distributed_settings or DistributedSettings()
    stats = _stats or _Stats()
    t0 = time.perf_counter()
    mcrs = metric_crs(units, crs)
    ugeoms = np.asarray(units.geometry.to_crs(mcrs).to_numpy(), dtype=object)
    tree = shapely.STRtree(ugeoms)
    # metric bounds of every event, without building projected geometries for the points
    src = np.asarray(events.geometry.to_numpy(), dtype=object)
    missing = shapely.is_missing(src) | shapely.is_empty(src)
    is_pt = (shapely.get_type_id(src) == 0) & ~missing
    ebounds = np.full((len(src), 4), np.nan)
    to_metric = pyproj.Transformer.from_crs(events.crs, mcrs, always_xy=True)
    px, py = to_metric.transform(shapely.get_x(src[is_pt]), shapely.get_y(src[is_pt]))
    ebounds[is_pt] = np.c_[px, py, px, py]
    other = ~is_pt & ~missing
    shapes_m = None  # lines and polygons in the metric CRS (None where a point or missing)
    if other.any():
        shapes = gpd.GeoSeries(src[other], crs=events.crs).to_crs(mcrs).to_numpy()
        ebounds[other] = shapely.bounds(shapes)
        shapes_m = np.full(len(src), None, dtype=object)
        shapes_m[other] = shapes
    ex = (ebounds[:, 0] + ebounds[:, 2]) / 2
    ey = (ebounds[:, 1] + ebounds[:, 3]) / 2
    reach = _reach(units, jcfg)
    grid = _grid_for(
        np.asarray(shapely.total_bounds(ugeoms), dtype=float),
        mcrs,
        size=cfg.cell_size_m,
        count=len(events),
        per_cell=cfg.events_per_cell,
        n_workers=cfg.n_workers,
        min_size=10 * reach,
    )
    ci, cj = grid.cell_of(ex, ey)
    key = ci * grid.ny + cj
    key[missing] = 0
    # only what the join reads travels to the workers, already in the metric CRS: units with
    # their projected geometry, events as columns and point coordinates
    ev_cols = pd.DataFrame(events[[c for c in _EVENT_INPUTS if c in events.columns]])
    ev_cols = ev_cols.reset_index(drop=True)
    slim_units = gpd.GeoDataFrame(
        pd.DataFrame(units[[c for c in _UNIT_INPUTS if c in units.columns]]),
        geometry=ugeoms,
        crs=mcrs,
    )

    def payload(rows: np.ndarray) -> dict[str, Any]:
        return {
            "columns": ev_cols.iloc[rows],
            "pos": rows,
            "is_pt": is_pt[rows],
            "x": ebounds[rows, 0],
            "y": ebounds[rows, 1],
            "shapes": shapes_m[rows] if shapes_m is not None else None,
        }

    order = np.argsort(key, kind="stable")
    ks, starts = np.unique(key[order], return_index=True)
    groups = np.split(order, starts[1:])
    crs_wkt = mcrs.to_wkt()
    parts: dict[tuple[int, int], gpd.GeoDataFrame] = {}
    reports: dict[tuple[int, int], dict[str, Any]] = {}
    what = "accidents" if _stage == "join" else _stage
    bar = _bar(len(groups), f"joining {what}", progress)
    futures = {}
    from distributed import as_completed

    jobs: list[tuple[tuple[int, int], np.ndarray, np.ndarray]] = []
    for k, rows in zip(ks, groups, strict=True):
        c = (int(k // grid.ny), int(k % grid.ny))
        done = _store.load_part(_stage, c) if _store is not None else None
        if done is not None:
            parts[c], reports[c] = done, _store.load_report(_stage, c)  # type: ignore[union-attr]
            bar.update()
            continue
        ok_rows = rows[~missing[rows]]
        if len(ok_rows):
            b = ebounds[ok_rows]
            box = (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
            sel = _select(tree, box, reach)
        else:
            sel = np.zeros(0, dtype=np.int64)
        jobs.append((c, sel, rows))
    # every subset sent in one go (hash=False: no tokenising of big frames)
    u_data = client.scatter([slim_units.iloc[sel] for _, sel, _ in jobs], hash=False)
    e_data = client.scatter([payload(rows) for _, _, rows in jobs], hash=False)
    for (c, _, _), u_sub, e_sub in zip(jobs, u_data, e_data, strict=True):
        futures[client.submit(_join_cell, u_sub, e_sub, crs_wkt, jcfg, pure=False)] = c
    del u_data, e_data
    for f in as_completed(list(futures)):
        c = futures.pop(f)
        part, reports[c] = f.result()
        f.release()
        parts[c] = part
        if _store is not None:
            _store.save_part(_stage, c, part, report=reports[c])
        bar.update()
    bar.close()
    cols = pd.concat([parts[c] for c in sorted(parts)], ignore_index=True)
    cols = cols.iloc[np.argsort(cols["_pos"].to_numpy(), kind="stable")]
    row_ev = cols["_pos"].to_numpy()
    # the event columns, one row per point event and per (event, unit) pair of shapes, as
    # tu.assign lays them out
    if len(row_ev) == len(events) and (row_ev == np.arange(len(events))).all():
        out = events.reset_index(drop=True).copy(deep=False)
    else:
        out = events.iloc[row_ev].reset_index(drop=True)
    for col in _JOIN_COLUMNS:
        out[col] = (
            cols[col].to_numpy(dtype=float)
            if col in ("distance_m", "measure_m", "overlap_m")
            else cols[col].astype("string").array
        )
    out = gpd.GeoDataFrame(out, geometry=events.geometry.name, crs=events.crs)
    # what depends on the whole network: too far (inside its hull) or outside, and the
    # distance to the nearest unit
    status = pd.Categorical(out["match"].array, categories=list(MATCH_STATUSES)).codes
    loose_codes = [MATCH_STATUSES.index("too_far"), MATCH_STATUSES.index("outside")]
    loose = np.isin(status, loose_codes) & ~missing[row_ev]
    if loose.any() and len(units):
        ix = UnitIndex(units, crs=mcrs, settings=jcfg)
        g = np.asarray(
            out.geometry.iloc[np.flatnonzero(loose)].to_crs(mcrs).to_numpy(), dtype=object
        )
        multi = shapely.get_type_id(g) == 4
        g = g.copy()
        g[multi] = shapely.centroid(g[multi])
        area = ix.area(jcfg.area_buffer_m)
        is_pt = shapely.get_type_id(g) == 0
        inside = np.zeros(len(g), dtype=bool)
        xy = shapely.get_coordinates(g[is_pt])
        inside[is_pt] = shapely.contains_xy(area, xy[:, 0], xy[:, 1])
        inside[~is_pt] = shapely.intersects(area, g[~is_pt])
        dist = np.full(len(g), np.nan)
        far = np.flatnonzero(inside)
        if len(far):
            (qi, _), dn = ix.all_tree.query_nearest(g[far], return_distance=True, all_matches=False)
            dist[far[qi]] = dn
        rows = np.flatnonzero(loose)
        out.loc[rows, "match"] = np.where(inside, "too_far", "outside")
        out.loc[rows, "distance_m"] = dist
        out["match"] = out["match"].astype("string")
    stats.seconds[_stage] = time.perf_counter() - t0
    out.attrs = {"report": _join_report(out, events, row_ev, units, reports, mcrs, MATCH_STATUSES)}
    return out


def _join_report(
    out: pd.DataFrame,
    events: gpd.GeoDataFrame,
    row_ev: np.ndarray,
    units: gpd.GeoDataFrame,
    reports: dict[tuple[int, int], dict[str, Any]],
    mcrs: pyproj.CRS,
    statuses: tuple[str, ...],
) -> dict[str, Any]:
    n_ev = len(events)
    code = pd.Categorical(out["match"].array, categories=list(statuses)).codes
    best = np.full(n_ev, 9, dtype=np.int8)
    np.minimum.at(best, row_ev, code.astype(np.int8))
    counts = {s: int((best == i).sum()) for i, s in enumerate(statuses)}
    matched = counts["matched"] + counts["intersection"]
    inside = n_ev - counts["outside"]
    ok = np.isin(code, [statuses.index("matched"), statuses.index("intersection")])
    d = out["distance_m"].to_numpy(dtype=float)[ok]
    pct = {f"p{q}": round(float(np.percentile(d, q)), 2) for q in (50, 90, 99)} if len(d) else {}
    max_d: dict[str, float] = {}
    for r in reports.values():
        for k, v in r.get("max_distance_m", {}).items():
            max_d[k] = max(max_d.get(k, 0.0), float(v))
    read = events.attrs.get("report") if isinstance(events.attrs, dict) else None
    return {
        "events": n_ev,
        "rows": len(out),
        "units": len(units),
        "by_match": counts,
        "matched": matched,
        "matched_share": round(matched / n_ev, 4) if n_ev else None,
        "matched_share_inside": round(matched / inside, 4) if inside else None,
        "distance_m": pct,
        "max_distance_m": max_d,
        "name_matched": sum(int(r.get("name_matched", 0)) for r in reports.values()),
        "name_overrode_nearest": sum(
            int(r.get("name_overrode_nearest", 0)) for r in reports.values()
        ),
        "metric_crs": mcrs.to_string(),
        "read": read,
        "cells": len(reports),
    }


# --------------------------------------------------------------------------------------------
# staging directory


def _frame_digest(df: pd.DataFrame | None) -> str:
    """A content hash of a (Geo)DataFrame: its columns, values and coordinates."""
    h = hashlib.sha256()
    if df is None:
        return "none"
    h.update(repr((list(df.columns), len(df))).encode())
    for col in df.columns:
        s = df[col]
        if isinstance(s.dtype, gpd.array.GeometryDtype):
            xy, idx = shapely.get_coordinates(s.to_numpy(), return_index=True)
            h.update(np.ascontiguousarray(xy).tobytes())
            h.update(np.ascontiguousarray(idx).tobytes())
            continue
        try:
            values = pd.util.hash_pandas_object(s, index=False).to_numpy()
        except TypeError:
            values = pd.util.hash_pandas_object(s.astype(str), index=False).to_numpy()
        h.update(values.tobytes())
    return h.hexdigest()


class _Staging:
    """A hidden directory beside ``outdir`` where a run writes until it is complete."""

    def __init__(self, outdir: Path, fingerprint: str) -> None:
        self.final = outdir
        self.dir = outdir.parent / f".{outdir.name}.partial"
        self.resumed = False
        manifest = self.dir / "manifest.json"
        if self.dir.exists():
            same = False
            with contextlib.suppress(OSError, ValueError):
                same = json.loads(manifest.read_text()).get("fingerprint") == fingerprint
            if same:
                self.resumed = True
            else:
                shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.resumed:
            tmp = manifest.with_suffix(".tmp")
            tmp.write_text(json.dumps({"fingerprint": fingerprint}))
            os.replace(tmp, manifest)

    def _part(self, stage: str, cell: tuple[int, int]) -> Path:
        return self.dir / stage / f"cell-{cell[0]}-{cell[1]}.parquet"

    def load_part(self, stage: str, cell: tuple[int, int]) -> gpd.GeoDataFrame | None:
        path = self._part(stage, cell)
        if not path.exists():
            return None
        from .io import read_table

        df: gpd.GeoDataFrame = read_table(path, index=None)
        return df

    def load_report(self, stage: str, cell: tuple[int, int]) -> dict[str, Any]:
        path = self._part(stage, cell).with_suffix(".json")
        data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        return data

    def save_part(
        self,
        stage: str,
        cell: tuple[int, int],
        df: gpd.GeoDataFrame,
        *,
        report: dict[str, Any] | None = None,
    ) -> None:
        from .io import write_table

        path = self._part(stage, cell)
        path.parent.mkdir(parents=True, exist_ok=True)
        if report is not None:  # written first: a part on disk always has its report
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(report, default=str))
            os.replace(tmp, path.with_suffix(".json"))
        write_table(df, path)

    def has(self, name: str) -> bool:
        return (self.dir / f"{name}.done").exists()

    def path(self, name: str) -> Path:
        return self.dir / name

    def mark(self, name: str) -> None:
        (self.dir / f"{name}.done").write_text("")

    def commit(self) -> None:
        """Swap the staging directory in for ``outdir`` (renames only)."""
        for stage in ("build", "join", "hazards"):
            shutil.rmtree(self.dir / stage, ignore_errors=True)
        for marker in self.dir.glob("*.done"):
            marker.unlink()
        old = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
        if self.final.exists():
            os.replace(self.final, old)
        os.replace(self.dir, self.final)
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# pipeline


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` returns: units, joined accidents (and hazards), risk."""

    units: gpd.GeoDataFrame
    joined: gpd.GeoDataFrame
    risk: gpd.GeoDataFrame
    hazards: gpd.GeoDataFrame | None = None
    report: dict[str, Any] = field(default_factory=dict)


def run_pipeline(
    roads: gpd.GeoDataFrame,
    accidents: gpd.GeoDataFrame,
    *,
    hazards: gpd.GeoDataFrame | None = None,
    period: Any = None,
    scheduler: Any = "local",
    outdir: str | os.PathLike[str] | None = None,
    max_length_m: float | None = None,
    junction_merge_m: float | None = None,
    crs: Any = None,
    unit_settings: UnitSettings | None = None,
    join_settings: JoinSettings | None = None,
    risk_settings: RiskSettings | None = None,
    settings: DistributedSettings | None = None,
    fingerprint: str | None = None,
    progress: bool = False,
) -> PipelineResult:
    """Build units, join accidents (and hazards) and score, on Dask or in this process.

    Parameters
    ----------
    roads
        Road lines (``tu.read_network``).
    accidents
        Accidents (``tu.read_events``).
    hazards
        Hazards to join and count as open hazards in the levels (optional).
    period
        Scoring period ``(start, end)`` (default: the accidents' whole years).
    scheduler
        ``"local"`` (a local cluster of ``settings.n_workers`` workers), a scheduler address
        (``"tcp://host:8786"``), a :class:`distributed.Client`, or ``None`` to run the plain
        single-process functions.
    outdir
        Write ``units.parquet``, ``joined.parquet``, ``risk.parquet`` (and
        ``hazards.parquet``) and ``report.json`` here, resuming an interrupted run of the
        same inputs (see the module docs). ``None``: return the results only.
    max_length_m, junction_merge_m, unit_settings
        Options of :func:`trafficunit.build_units`.
    crs
        Metric CRS of every stage (default: the UTM zone of the roads).
    join_settings, risk_settings
        Options of :func:`trafficunit.assign` and :func:`trafficunit.score`.
    settings
        Partitioning and local cluster (:class:`~trafficunit.settings.DistributedSettings`).
    fingerprint
        Identity of the inputs for resuming (default: a hash of their content and the options).
    progress
        Progress bars over the cells of each stage.

    Returns
    -------
    PipelineResult
        ``units``, ``joined``, ``risk`` (and ``hazards``) equal to the single-process ones;
        ``report`` has the stages' timings, cells and halo retries, and the workers' peak
        resident memory (over their lifetime, MB) and this process's peak in each stage
        (``client_peak_rss_mb``: inputs, build, join, hazards, score; MB).
    """
    from .join import assign as plain_assign
    from .risk import score
    from .units import build_units as plain_build

    require_gdf(roads, "roads")
    require_gdf(accidents, "accidents")
    cfg = settings or DistributedSettings()
    mcrs = metric_crs(roads, crs)
    options = {
        "max_length_m": max_length_m,
        "junction_merge_m": junction_merge_m,
        "unit_settings": unit_settings,
        "join_settings": join_settings,
        "risk_settings": risk_settings,
        "period": period,
        "crs": mcrs.to_wkt(),
        "cell_size_m": cfg.cell_size_m,
        "roads_per_cell": cfg.roads_per_cell,
        "events_per_cell": cfg.events_per_cell,
        "halo_m": cfg.halo_m,
    }
    store = None
    if outdir is not None:
        if fingerprint is None:
            fingerprint = hashlib.sha256(
                "|".join(
                    [_frame_digest(roads), _frame_digest(accidents), _frame_digest(hazards)]
                ).encode()
            ).hexdigest()
        fingerprint = hashlib.sha256(
            (fingerprint + repr(sorted((k, repr(v)) for k, v in options.items()))).encode()
        ).hexdigest()
        store = _Staging(Path(outdir), fingerprint)
    stats = _Stats()
    t_all = time.perf_counter()
    # this process's peak memory in each stage (the peak is reset between stages on Linux)
    client_peaks: dict[str, int] = {"inputs": round(_peak_rss_mb())}
    _reset_peak_rss()

    def peak(name: str) -> None:
        client_peaks[name] = round(_peak_rss_mb())
        _reset_peak_rss()

    def stage(name: str, compute: Any) -> gpd.GeoDataFrame:
        try:
            return _stage(name, compute)
        finally:
            peak({"units": "build", "joined": "join"}.get(name, name))

    def _stage(name: str, compute: Any) -> gpd.GeoDataFrame:
        if store is not None and store.has(name):
            from .io import read_table

            df: gpd.GeoDataFrame = read_table(
                store.path(f"{name}.parquet"), index="unit_id" if name == "units" else None
            )
            return df
        df = compute()
        if store is not None:
            from .io import write_table

            write_table(df, store.path(f"{name}.parquet"))
            store.mark(name)
        return df

    build_kw: dict[str, Any] = {
        "max_length_m": max_length_m,
        "junction_merge_m": junction_merge_m,
        "crs": mcrs,
    }
    worker_peaks: list[int] = []
    if scheduler is None:

        def timed(name: str, fn: Any) -> Any:
            t = time.perf_counter()
            out = fn()
            stats.seconds[name] = time.perf_counter() - t
            return out

        units = stage(
            "units",
            lambda: timed(
                "build",
                lambda: plain_build(roads, settings=unit_settings, progress=progress, **build_kw),
            ),
        )
        joined = stage(
            "joined",
            lambda: timed(
                "join", lambda: plain_assign(units, accidents, crs=mcrs, settings=join_settings)
            ),
        )
        hz = None
        if hazards is not None:
            hz = stage(
                "hazards",
                lambda: timed(
                    "hazards",
                    lambda: plain_assign(units, hazards, crs=mcrs, settings=join_settings),
                ),
            )
    else:
        # the client mostly waits on the workers: import what scoring fits the SPFs with
        # meanwhile (seconds, cold) instead of after the last stage
        preload = threading.Thread(target=_preload, args=("statsmodels.api",), daemon=True)
        preload.start()
        t_start = time.perf_counter()
        with cluster(scheduler, settings=cfg) as client:
            stats.seconds["cluster start"] = time.perf_counter() - t_start
            units = stage(
                "units",
                lambda: build_units(
                    roads,
                    client,
                    unit_settings=unit_settings,
                    settings=cfg,
                    progress=progress,
                    _store=store,
                    _stats=stats,
                    **build_kw,
                ),
            )
            joined = stage(
                "joined",
                lambda: assign(
                    units,
                    accidents,
                    client,
                    crs=mcrs,
                    settings=join_settings,
                    distributed_settings=cfg,
                    progress=progress,
                    _store=store,
                    _stats=stats,
                ),
            )
            hz = None
            if hazards is not None:
                hz = stage(
                    "hazards",
                    lambda: assign(
                        units,
                        hazards,
                        client,
                        crs=mcrs,
                        settings=join_settings,
                        distributed_settings=cfg,
                        progress=progress,
                        _store=store,
                        _stage="hazards",
                        _stats=stats,
                    ),
                )
            worker_peaks = [round(v) for v in client.run(_peak_rss_mb).values()]
        preload.join()
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        risk = score(units, joined, period=period, hazards=hz, settings=risk_settings)
    stats.seconds["score"] = time.perf_counter() - t
    peak("score")
    stats.seconds["total"] = time.perf_counter() - t_all
    report = {
        "mode": "single process" if scheduler is None else "dask",
        "units": len(units),
        "accidents": len(accidents),
        "seconds": {k: round(v, 3) for k, v in stats.seconds.items()},
        "cells": stats.cells,
        "tasks": stats.tasks,
        "halo_retries": stats.retries,
        "max_halo_m": stats.max_halo_m,
        "resumed": bool(store.resumed) if store is not None else False,
        "worker_peak_rss_mb": worker_peaks,
        "client_peak_rss_mb": client_peaks,
    }
    if store is not None:
        from .io import write_table

        write_table(risk, store.path("risk.parquet"))
        (store.path("report.json")).write_text(json.dumps(report, indent=2, default=str))
        store.commit()
    return PipelineResult(units, joined, risk, hz, report)
