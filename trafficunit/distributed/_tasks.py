"""The tasks of a run from files: each reads its inputs from disk and writes its output there.

Only small summaries (counts, bounds, timings) go back to the client; see :mod:`._files`.
"""

from __future__ import annotations

import copy
import functools
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pyproj
import shapely

from .._gcpause import gc_paused as _gc_paused
from .._validate import geometry_problems, transformer
from ..io import atomic_path
from ..join.columnar import PointTable, _wkb_xy
from ..settings import JoinSettings, NetworkSettings
from ._build import _box_margin, _build_cell, _metric_bounds
from ._grid import Grid
from ._join import _EVENT_INPUTS, _UNIT_INPUTS, _event_bounds, _inside_area
from ._parts import (
    Chunk,
    _cell_name,
    _concat_parts,
    _parquet_options,
    _read_chunk,
    _read_parts,
    _write_json,
    _write_part,
)

#: Bits of a road's id (``_rid``) that hold its row within its chunk.
_ROW_BITS = 32
#: Columns of a road fragment holding the road's metric bounds (:func:`._build._metric_bounds`).
_BOUNDS = ("_xmin", "_ymin", "_xmax", "_ymax")


def _cpu(fn: Any) -> Any:
    """``fn`` returning a summary dict, with the CPU seconds of its thread added; the
    garbage collector paused while it runs (:mod:`trafficunit._gcpause`)."""

    def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        t = time.thread_time()
        with _gc_paused():
            out: dict[str, Any] = fn(*args, **kwargs)
        out["cpu"] = time.thread_time() - t
        return out

    # its module's and name's: pickled by reference (a task sent to a worker), not by value
    return functools.wraps(fn)(run)


# --------------------------------------------------------------------------------------------
# roads


@_cpu
def normalise_chunk(
    src: Path, chunk: Chunk, out: Path, filter_highways: bool, settings: NetworkSettings | None
) -> dict[str, Any]:
    """Rows ``chunk`` of the road file normalised as :func:`trafficunit.read_network` does
    (row by row, so chunks normalised alone make the whole file normalised), to ``out``;
    their bounds and count."""
    from ..network import normalise_roads

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        roads = normalise_roads(
            _read_chunk(src, chunk),
            settings=settings or NetworkSettings(),
            filter_highways=filter_highways,
        )
    _write_part(roads, out)
    b = roads.total_bounds if len(roads) else np.full(4, np.nan)
    return {"rows": len(roads), "bounds": [float(v) for v in b], "crs": roads.crs.to_wkt()}


def _to_metric(geoms: Any, crs: Any, mcrs: pyproj.CRS) -> np.ndarray:
    """2D ``geoms`` in ``crs`` projected to ``mcrs`` (the coordinates of ``to_crs``, through
    the process's transformer)."""
    t = transformer(crs, mcrs)
    out = shapely.transform(
        np.asarray(geoms, dtype=object), lambda xy: np.column_stack(t.transform(*xy.T))
    )
    return np.asarray(out)


def _cells_of_boxes(grid: Grid, b: np.ndarray, grow: float) -> tuple[np.ndarray, np.ndarray]:
    """Every (row, cell key) where box ``b[row]`` grown by ``grow`` meets the cell."""
    i0, j0 = grid.cell_of(b[:, 0] - grow, b[:, 1] - grow)
    i1, j1 = grid.cell_of(b[:, 2] + grow, b[:, 3] + grow)
    ni, nj = i1 - i0 + 1, j1 - j0 + 1
    rows = np.repeat(np.arange(len(b)), ni * nj)
    first = np.r_[0, np.cumsum(ni * nj)[:-1]]
    local = np.arange(len(rows)) - np.repeat(first, ni * nj)
    i = i0[rows] + local // nj[rows]
    j = j0[rows] + local % nj[rows]
    return rows, i * grid.ny + j


def _split_by_key(keys: np.ndarray, ny: int) -> list[tuple[tuple[int, int], np.ndarray]]:
    """Positions grouped by cell key, each group in ascending order."""
    if not len(keys):
        return []
    small = keys.min() >= 0 and keys.max() < 2**16
    # stable: a radix sort of 16-bit keys (cell numbers), a merge sort of others
    order = np.argsort(keys.astype(np.uint16) if small else keys, kind="stable")
    by = keys[order]
    starts = np.flatnonzero(np.r_[True, by[1:] != by[:-1]])
    ks = by[starts]
    return [
        ((int(k // ny), int(k % ny)), rows)
        for k, rows in zip(ks, np.split(order, starts[1:]), strict=True)
    ]


@_cpu
def partition_roads(
    chunk_file: Path, k: int, stage: Path, grid: Grid, halo: float, crs_wkt: str
) -> dict[str, Any]:
    """The usable roads of a normalised chunk, to the fragment of every cell their bounding
    box grown by ``halo`` meets (``frag/roads/<cell>/<k>.parquet``), with their id ``_rid``
    (chunk and row: the input order) and metric bounds (:data:`_BOUNDS`); the dropped roads
    and the length kept."""
    mcrs = _crs(crs_wkt)
    roads = gpd.read_parquet(chunk_file)
    problems = geometry_problems(roads.geometry.values)
    dropped = pd.Series(problems[problems != ""]).value_counts()
    ok = np.flatnonzero(problems == "")
    roads = roads.iloc[ok]
    roads["_rid"] = (np.int64(k) << _ROW_BITS) + ok.astype(np.int64)
    length = float(shapely.length(_to_metric(roads.geometry.to_numpy(), roads.crs, mcrs)).sum())
    bounds = _metric_bounds(roads, mcrs)
    for n, col in enumerate(_BOUNDS):  # kept with the roads: their build tasks select by them
        roads[col] = bounds[:, n]
    rows, keys = _cells_of_boxes(grid, bounds, halo)
    for cell, at in _split_by_key(keys, grid.ny):
        _write_part(
            roads.iloc[rows[at]], stage / "frag" / "roads" / _cell_name(cell) / f"{k}.parquet"
        )
    return {
        "rows_in": len(problems),
        "dropped": {str(a): int(b) for a, b in dropped.items()},
        "length_m": length,
    }


def _road_frags(stage: Path, grid: Grid, cell: tuple[int, int], halo: float, halo0: float) -> Any:
    """The roads within ``halo`` of the cell (by their metric bounding boxes), in input order:
    the cell's fragment, or those of every cell the grown cell meets."""
    base = stage / "frag" / "roads"
    if halo <= halo0:
        dirs = [base / _cell_name(cell)]
    else:
        box = np.array([grid.box(*cell)])
        _, keys = _cells_of_boxes(grid, box, halo if np.isfinite(halo) else 1e12)
        dirs = [base / _cell_name((int(k // grid.ny), int(k % grid.ny))) for k in keys]
    return _read_roads([p for d in dirs for p in d.glob("*.parquet")])


def _read_roads(paths: list[Path]) -> gpd.GeoDataFrame | None:
    """The road fragments ``paths`` as one frame, each road once (by ``_rid``) in ``_rid``
    order, as ``geopandas.read_parquet`` reads each and ``drop_duplicates`` and a stable sort
    make them one. Fragments of one schema (a column of nulls in one is another type: then
    that way) are concatenated, deduplicated and sorted as Arrow tables, their WKB decoded
    once and their CRS parsed once per process (a parse takes 10-30 ms a fragment: a halo
    retry reads the fragments of every cell its halo meets, a hundred and more)."""
    if not paths:
        return None
    files = [pq.ParquetFile(p) for p in paths]
    if any(not f.schema_arrow.equals(files[0].schema_arrow) for f in files[1:]):
        # one frame per schema, then the rows back in the order of the files
        groups: list[tuple[pa.Schema, list[pa.Table], list[int]]] = []
        for k, f in enumerate(files):
            group = next((g for g in groups if g[0].equals(f.schema_arrow)), None)
            if group is None:
                groups.append(group := (f.schema_arrow, [], []))
            group[1].append(f.read())
            group[2].append(k)
        rows = np.array([f.metadata.num_rows for f in files], dtype=np.int64)
        start = np.r_[0, np.cumsum(rows)[:-1]]
        at = np.concatenate([np.arange(start[k], start[k] + rows[k]) for g in groups for k in g[2]])
        roads = _concat_parts([_geo_frame(pa.concat_tables(g[1])) for g in groups])
        roads = roads.iloc[np.argsort(at, kind="stable")]
        return roads.drop_duplicates("_rid").sort_values("_rid", kind="stable")
    table = pa.concat_tables([f.read() for f in files])
    rid = table.column("_rid").to_numpy()
    if len(rid) > 1 and not (np.diff(rid) > 0).all():
        _, first = np.unique(rid, return_index=True)  # sorted by _rid, the first of each
        table = table.take(first)
    return _geo_frame(table)


def _geo_frame(table: pa.Table) -> gpd.GeoDataFrame:
    """A GeoParquet table as ``geopandas.read_parquet`` reads it, its CRS parsed once per
    process."""
    from geopandas.io.arrow import _arrow_to_geopandas

    geo = json.loads(table.schema.metadata[b"geo"])
    for name, col in geo["columns"].items():  # parsed here, once: read as a CRS object
        if col.get("crs") is not None:
            col["crs"] = _crs(_column_crs(geo, name, as_geopandas=True))
    return _arrow_to_geopandas(table, geo)


def _meets(
    roads: gpd.GeoDataFrame, box: tuple[float, ...], halo: float, mcrs: pyproj.CRS
) -> np.ndarray:
    """Whether each road meets the cell ``box`` grown by ``halo`` (in the metric CRS). Told
    by the road's metric bounds where they lie inside or outside with a margin; the roads
    across the edge are projected and tested."""
    if set(_BOUNDS) <= set(roads.columns):
        b = roads[list(_BOUNDS)].to_numpy(dtype=float)
    else:  # fragments of an earlier version
        b = _metric_bounds(roads, mcrs)
    lo, hi = np.array(box[:2]) - halo, np.array(box[2:]) + halo
    m = _box_margin(b)[:, None]
    inside = ((b[:, :2] - m >= lo) & (b[:, 2:] + m <= hi)).all(axis=1)
    meets = ((b[:, 2:] + m >= lo) & (b[:, :2] - m <= hi)).all(axis=1)
    edge = np.flatnonzero(meets & ~inside)
    out = inside
    if len(edge):
        metric = _to_metric(roads.geometry.to_numpy()[edge], roads.crs, mcrs)
        out[edge] = shapely.intersects(metric, shapely.box(*lo, *hi))
    return out


@_cpu
def build_cell(
    stage: Path,
    cell: tuple[int, int],
    grid: Grid,
    halo: float,
    halo0: float,
    crs_wkt: str,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Units of the cell (see :func:`._build._build_cell`) to ``units/<cell>.parquet``, or the
    halo a retry needs; with what the join and the report need of them."""
    mcrs = _crs(crs_wkt)
    box = grid.box(*cell)
    roads = _road_frags(stage, grid, cell, halo, halo0)
    empty = {"retry": None, "units": 0}
    if roads is None or not len(roads):
        _write_json(stage / "units" / f"{_cell_name(cell)}.json", empty)
        return empty
    if np.isfinite(halo):
        roads = roads.iloc[np.flatnonzero(_meets(roads, box, halo, mcrs))]
    roads = roads.drop(columns=["_rid", *_BOUNDS], errors="ignore").reset_index(drop=True)
    units, bad, need, b = _build_cell(roads, box, halo, crs_wkt, options)
    if bad:
        return {"retry": need, "units": 0}
    if not len(units):
        _write_json(stage / "units" / f"{_cell_name(cell)}.json", empty)
        return empty
    over = np.maximum.reduce(
        [box[0] - b[:, 0], box[1] - b[:, 1], b[:, 2] - box[2], b[:, 3] - box[3]]
    )
    hull = _units_hull(units, b, mcrs)
    radius = pd.to_numeric(units.get("radius_m"), errors="coerce")
    seg = units["kind"] == "segment"
    out = {
        "retry": None,
        "units": len(units),
        "segments": int(seg.sum()),
        "intersections": int((~seg).sum()),
        "junction_links": int(units["junction_id"].notna().sum()),
        "max_radius_m": float(radius.max()) if radius is not None and radius.notna().any() else 0,
        "overhang_m": float(max(over.max(), 0.0)),
        "hull": shapely.get_coordinates(hull).tolist(),
        "halo_m": halo,
    }
    _write_npy(stage / "ubounds" / f"{_cell_name(cell)}.npy", b)
    _write_part(units, stage / "units" / f"{_cell_name(cell)}.parquet")
    _write_json(stage / "units" / f"{_cell_name(cell)}.json", out)
    return out


def _write_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr)


def _hull_candidates(xy: np.ndarray) -> np.ndarray:
    """The points of ``xy`` not strictly inside the polygon of its extreme points (in x,
    y, x + y and x - y): their convex hull is that of all points (Akl-Toussaint)."""
    if len(xy) < 16:
        return xy
    return np.asarray(xy[~_inside(_extreme_polygon(xy), xy[:, 0], xy[:, 1])])


def _extreme_polygon(xy: np.ndarray) -> np.ndarray:
    """The extreme points of ``xy`` in x, y, x + y and x - y, clockwise from the leftmost
    (y up): x-min, top-left, y-max... (a convex polygon, its points repeated where one point
    is extreme in several directions)."""
    x, y = xy[:, 0], xy[:, 1]
    ext = [np.argmin(x), np.argmin(x - y), np.argmax(y), np.argmax(x + y)]
    ext += [np.argmax(x), np.argmax(x - y), np.argmin(y), np.argmin(x + y)]
    return np.asarray(xy[ext])


def _inside(poly: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether each point lies strictly inside the clockwise convex polygon ``poly``."""
    inside = np.ones(len(x), dtype=bool)
    for a, b in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        if (a == b).all():
            continue
        # strictly right of each clockwise edge (a -> b): inside
        inside &= (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0]) < 0
    return inside


def _units_hull(units: gpd.GeoDataFrame, bounds: np.ndarray, mcrs: pyproj.CRS) -> Any:
    """The convex hull of the units' coordinates in the metric CRS, projecting only the
    units that may hold one of its vertices: those whose box is extreme in one of the eight
    directions of :func:`_extreme_polygon`, whose points make a polygon inside the hull, and
    those whose box (metric ``bounds`` grown by :func:`._build._box_margin`) is not strictly
    inside that polygon."""
    geoms = np.asarray(units.geometry.to_numpy(), dtype=object)
    same = pyproj.CRS.from_user_input(units.crs).equals(mcrs)

    def metric_xy(rows: np.ndarray) -> np.ndarray:
        xy = shapely.get_coordinates(geoms[rows])
        if same:
            return xy
        return np.column_stack(transformer(units.crs, mcrs).transform(xy[:, 0], xy[:, 1]))

    m = _box_margin(bounds)
    x0, y0 = bounds[:, 0] - m, bounds[:, 1] - m
    x1, y1 = bounds[:, 2] + m, bounds[:, 3] + m
    ext = [np.argmin(x0), np.argmin(x0 - y1), np.argmax(y1), np.argmax(x1 + y1)]
    ext += [np.argmax(x1), np.argmax(x1 - y0), np.argmin(y0), np.argmin(x0 + y0)]
    seed = metric_xy(np.unique(ext))
    poly = _extreme_polygon(seed)
    inside = np.ones(len(units), dtype=bool)
    for cx, cy in ((x0, y0), (x0, y1), (x1, y1), (x1, y0)):  # a box in a convex polygon:
        inside &= _inside(poly, cx, cy)  # its corners are
    xy = np.concatenate([seed, metric_xy(np.flatnonzero(~inside))])
    return shapely.convex_hull(shapely.multipoints(_hull_candidates(xy)))


# --------------------------------------------------------------------------------------------
# events


@functools.lru_cache(maxsize=16)
def _crs(text: str) -> pyproj.CRS:
    """The CRS of a WKT or PROJJSON text, parsed once per worker process (a parse takes tens
    of milliseconds, and every part a task reads names its CRS)."""
    return pyproj.CRS.from_user_input(text)


def _transformer(src: str, dst: str) -> pyproj.Transformer:
    """The transformation from CRS text ``src`` to ``dst`` (x, y order), made once per worker
    process."""
    return transformer(_crs(src), _crs(dst))


def _column_crs(geo: dict[str, Any], column: str, *, as_geopandas: bool = False) -> str:
    """The CRS of a GeoParquet geometry column, as text for :func:`_crs`: none is OGC:CRS84;
    ``as_geopandas``: as ``geopandas.read_parquet`` takes it (no ids on the members of a
    datum ensemble)."""
    from geopandas.io.arrow import _remove_id_from_member_of_ensembles

    crs = geo["columns"][column].get("crs") or "OGC:CRS84"
    if not isinstance(crs, dict):
        return str(crs)
    if as_geopandas:
        crs = copy.deepcopy(crs)
        _remove_id_from_member_of_ensembles(crs)
    return json.dumps(crs, sort_keys=True)


@_cpu
def partition_events(
    src: Path,
    chunk: Chunk,
    k: int,
    offset: int,
    stage: Path,
    grid: Grid,
    crs_wkt: str,
    frags: str = "frag/events",
) -> dict[str, Any]:
    """Rows ``chunk`` of the event file to the fragment of the cell of their centre
    (``<frags>/<cell>/<k>.arrow`` in ``stage``, missing geometries in the first cell), with
    their row in the file (``_pos``) and, for 2D points, their metric coordinates (``_x``, ``_y``;
    NaN for other rows). Points are read from their WKB bytes and the rows written as they
    were read, without making geometries, to Arrow IPC files (no encoding: each is written
    once and read once, by the join)."""
    from geopandas.io.arrow import _arrow_to_geopandas

    pf = pq.ParquetFile(src)
    rg, a, b = chunk
    table = pf.read_row_group(rg).slice(a, b - a)
    geo = json.loads(pf.schema_arrow.metadata[b"geo"])
    gcol = geo["primary_column"]
    xy = _wkb_xy(table.column(gcol))
    tx = _transformer(_column_crs(geo, gcol), crs_wkt)
    if xy is not None:
        cx, cy = tx.transform(xy[:, 0], xy[:, 1])
        missing = np.isnan(xy).any(axis=1)  # POINT EMPTY
        px, py = np.where(missing, np.nan, cx), np.where(missing, np.nan, cy)
    else:  # some missing geometries, or other than 2D points: those rows' x, y are NaN
        events = _arrow_to_geopandas(table, geo)
        missing, _, eb, _ = _event_bounds(events, _crs(crs_wkt))
        cx, cy = (eb[:, 0] + eb[:, 2]) / 2, (eb[:, 1] + eb[:, 3]) / 2
        g = np.asarray(events.geometry.array, dtype=object)
        flat = np.flatnonzero((shapely.get_type_id(g) == 0) & ~missing & ~shapely.has_z(g))
        px, py = np.full(len(table), np.nan), np.full(len(table), np.nan)
        px[flat], py[flat] = tx.transform(shapely.get_x(g[flat]), shapely.get_y(g[flat]))
    ci, cj = grid.cell_of(cx, cy)
    key = ci * grid.ny + cj
    key[missing] = 0
    table = table.append_column("_pos", pa.array(offset + np.arange(len(table), dtype=np.int64)))
    table = table.append_column("_x", pa.array(px)).append_column("_y", pa.array(py))
    for cell, rows in _split_by_key(key, grid.ny):
        path = stage / frags / _cell_name(cell) / f"{k}.arrow"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink:
            part = table.take(rows)
            with pa.ipc.new_file(sink, part.schema) as writer:
                writer.write_table(part)
    return {"rows": len(table)}


def _read_frags(folder: Path) -> pa.Table | None:
    """A cell's event fragments (:func:`partition_events`) as one table, in the order of
    their rows in the file (``_pos``: fragment K holds rows of chunk K, in order)."""
    frags = sorted(folder.glob("*.arrow"), key=lambda f: int(f.stem))
    if not frags:
        return None
    tables = []
    for f in frags:
        with pa.OSFile(str(f)) as source:
            tables.append(pa.ipc.open_file(source).read_all())
    table = pa.concat_tables(tables)
    pos = table.column("_pos").to_numpy()
    if (np.diff(pos) < 0).any():
        table = table.take(np.argsort(pos, kind="stable"))
    return table


def _table_bounds(
    table: pa.Table, mcrs: pyproj.CRS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`._join._event_bounds` of a GeoParquet table: for 2D points from their WKB
    bytes (the same coordinates, no geometries made)."""
    from geopandas.io.arrow import _arrow_to_geopandas

    geo = json.loads(table.schema.metadata[b"geo"])
    gcol = geo["primary_column"]
    xy = _wkb_xy(table.column(gcol))
    if xy is None:
        return _event_bounds(_arrow_to_geopandas(table, geo), mcrs)
    missing = np.isnan(xy).any(axis=1)  # POINT EMPTY
    tx = _transformer(_column_crs(geo, gcol), mcrs.to_wkt())
    px, py = tx.transform(xy[~missing, 0], xy[~missing, 1])
    eb = np.full((len(xy), 4), np.nan)
    eb[~missing] = np.c_[px, py, px, py]
    return missing, ~missing, eb, None


@dataclass
class _CellEvents:
    """A cell's events as read (``table``, in their order in the file) with what the join
    needs: the points' metric coordinates ``x``, ``y``, every event's metric bounds ``eb``,
    which are missing or points, and the projected lines and polygons (``shapes``).
    ``columnar``: every event is a 2D point, joined from ``x``, ``y`` alone."""

    table: pa.Table
    x: np.ndarray
    y: np.ndarray
    eb: np.ndarray
    missing: np.ndarray
    is_pt: np.ndarray
    shapes: np.ndarray | None
    columnar: bool

    @classmethod
    def of(cls, table: pa.Table, crs_wkt: str) -> _CellEvents:
        x = table.column("_x").to_numpy()
        y = table.column("_y").to_numpy()
        table = table.drop_columns(["_x", "_y"])
        if np.isfinite(x).all() and np.isfinite(y).all():
            ok = np.ones(len(x), dtype=bool)
            return cls(table, x, y, np.column_stack([x, y, x, y]), ~ok, ok, None, True)
        missing, is_pt, eb, shapes = _table_bounds(table, _crs(crs_wkt))
        return cls(table, eb[:, 0], eb[:, 1], eb, missing, is_pt, shapes, False)

    def __len__(self) -> int:
        return len(self.x)

    def geometries(self, rows: np.ndarray) -> np.ndarray:
        """The metric geometries of the events at positions ``rows`` (points made here)."""
        g = np.full(len(rows), None, dtype=object)
        pt = self.is_pt[rows]
        g[pt] = shapely.points(self.x[rows[pt]], self.y[rows[pt]])
        if self.shapes is not None:
            g[~pt] = self.shapes[rows[~pt]]
        return g


def _with_columns(table: pa.Table, extra: pd.DataFrame) -> pa.Table:
    """``table`` (rows of a GeoParquet file, as read) with the columns and index of
    ``extra`` added, its pandas metadata extended to match (read back by pandas/geopandas
    with each column's dtype; the table's own index dropped)."""
    meta = dict(table.schema.metadata)
    pm = json.loads(meta[b"pandas"])
    own_index = [c for c in pm.get("index_columns", []) if isinstance(c, str)]
    table = table.drop_columns(own_index)
    et = pa.Table.from_pandas(extra)
    pe = json.loads(et.schema.metadata[b"pandas"])
    pm["columns"] = [c for c in pm["columns"] if c["field_name"] in table.column_names]
    pm["columns"] += pe["columns"]
    pm["index_columns"] = pe["index_columns"]
    meta[b"pandas"] = json.dumps(pm).encode()
    arrays = [*table.columns, *et.columns]
    names = [*table.column_names, *et.column_names]
    return pa.Table.from_arrays(arrays, names=names).replace_schema_metadata(meta)


def _near_units(
    stage: Path, grid: Grid, lo: np.ndarray, hi: np.ndarray, overhang: float
) -> gpd.GeoDataFrame | None:
    """The units whose metric bounds meet the window ``lo``-``hi``, in ``unit_id`` order, with
    the columns the join reads, in their own CRS (selected by the bounds each build task
    saved; only their geometries are decoded)."""
    box = np.array([[lo[0], lo[1], hi[0], hi[1]]])
    _, keys = _cells_of_boxes(grid, box, overhang)
    frames, geoms, crs = [], [], None
    for k in keys:
        name = _cell_name((int(k // grid.ny), int(k % grid.ny)))
        path = stage / "units" / f"{name}.parquet"
        if not path.exists():
            continue
        ub = np.load(stage / "ubounds" / f"{name}.npy")
        sel = (ub[:, 2] >= lo[0]) & (ub[:, 3] >= lo[1]) & (ub[:, 0] <= hi[0])
        sel &= ub[:, 1] <= hi[1]
        if not sel.any():
            continue
        pf = pq.ParquetFile(path)
        geo = json.loads(pf.schema_arrow.metadata[b"geo"])
        gcol = geo["primary_column"]
        cols = [c for c in (*_UNIT_INPUTS, "unit_id", gcol) if c in pf.schema_arrow.names]
        table = pf.read(columns=cols).take(np.flatnonzero(sel))
        geoms.append(shapely.from_wkb(np.asarray(table.column(gcol), dtype=object)))
        frames.append(table.drop_columns([gcol]).to_pandas())
        crs = crs or _crs(_column_crs(geo, gcol, as_geopandas=True))
    if not frames:
        return None
    attrs = pd.concat(frames) if len(frames) > 1 else frames[0]
    geometry = gpd.array.from_shapely(np.concatenate(geoms), crs=crs)
    units = gpd.GeoDataFrame(attrs, geometry=geometry)
    return units.sort_index()


def _nearest(
    g: np.ndarray, units: np.ndarray | None, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each geometry to its nearest unit among ``units`` (metric geometries),
    and whether that is the nearest of all units: no unit outside the window is nearer."""
    dist = np.full(len(g), np.inf)
    if units is not None and len(units):
        tree = shapely.STRtree(units[~shapely.is_missing(units)])
        (qi, _), dn = tree.query_nearest(g, return_distance=True, all_matches=False)
        dist[qi] = dn
    b = shapely.bounds(g)
    edge = np.minimum.reduce([b[:, 0] - lo[0], b[:, 1] - lo[1], hi[0] - b[:, 2], hi[1] - b[:, 3]])
    return dist, dist <= edge


@dataclass
class _Matched:
    """The join of a cell's events: each output row's event (a position among them), its
    unit's id, distance, measure, overlap, status (a position in ``MATCH_STATUSES``) and
    the join's report; ``units``: the index joined against (None: no unit within reach)."""

    row: np.ndarray
    unit_id: pd.api.extensions.ExtensionArray
    distance: np.ndarray
    measure: np.ndarray
    overlap: np.ndarray
    status: np.ndarray
    report: dict[str, Any]
    units: Any

    @classmethod
    def of(
        cls, ev: _CellEvents, units: gpd.GeoDataFrame | None, mcrs: pyproj.CRS, jcfg: JoinSettings
    ) -> _Matched:
        """``tu.assign`` of the events to ``units``: from the coordinates alone when every
        event is a 2D point (:class:`PointTable`), else from their metric geometries."""
        from ..join import MATCH_STATUSES, UnitIndex
        from ..join import assign as _assign

        n = len(ev)
        if units is None:
            nan = np.full(n, np.nan)
            status = np.full(n, MATCH_STATUSES.index("outside"), dtype=np.int8)
            unit_id = pd.array(pa.nulls(n, pa.large_string()), dtype="string")
            return cls(np.arange(n), unit_id, nan, nan.copy(), nan.copy(), status, {}, None)
        ix = UnitIndex(units, crs=mcrs, settings=jcfg)
        cols = [c for c in _EVENT_INPUTS if c in ev.table.column_names]
        frame = ev.table.select(cols).to_pandas().reset_index(drop=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if ev.columnar:
                res = _assign(ix, PointTable(frame, ev.x, ev.y, mcrs), settings=jcfg).frame
                row = np.arange(n)
            else:
                metric = gpd.GeoDataFrame(frame, geometry=ev.geometries(np.arange(n)), crs=mcrs)
                metric["_pos"] = np.arange(n)
                res = _assign(ix, metric, settings=jcfg)
                row = res["_pos"].to_numpy()
        ix.release_trees()
        codes = pc.index_in(pa.array(res["match"].array), value_set=pa.array(MATCH_STATUSES))
        return cls(
            row,
            res["unit_id"].array,
            res["distance_m"].to_numpy(dtype=float, copy=True),
            res["measure_m"].to_numpy(dtype=float),
            res["overlap_m"].to_numpy(dtype=float),
            codes.to_numpy().astype(np.int8),
            dict(res.attrs.get("report", {})),
            ix,
        )

    def settle(
        self,
        ev: _CellEvents,
        window: tuple[np.ndarray, np.ndarray],
        area_wkb: bytes,
        stage: Path,
        mcrs: pyproj.CRS,
    ) -> None:
        """What depends on the whole network, in place: an unmatched event is too far (inside
        its area) or outside, and its distance to the nearest unit (exact if no unit beyond
        the window is nearer than the nearest within, else from all units)."""
        from ..join import MATCH_STATUSES

        too_far, outside = MATCH_STATUSES.index("too_far"), MATCH_STATUSES.index("outside")
        loose = np.isin(self.status, [too_far, outside]) & ~ev.missing[self.row]
        if not loose.any():
            return
        rows = np.flatnonzero(loose)
        g, inside = _inside_area(ev.geometries(self.row[rows]), shapely.from_wkb(area_wkb))
        dist = np.full(len(g), np.nan)
        far = np.flatnonzero(inside)
        if len(far):
            d, sure = _nearest(g[far], None if self.units is None else self.units.geoms, *window)
            if not sure.all():  # a unit beyond the window may be nearer: ask all of them
                allu = _read_parts(sorted((stage / "units").glob("cell-*.parquet")), ["geometry"])
                assert allu is not None
                geoms = np.asarray(allu.geometry.to_crs(mcrs).to_numpy(), dtype=object)
                big = np.array([-np.inf, -np.inf]), np.array([np.inf, np.inf])
                d[~sure], _ = _nearest(g[far[~sure]], geoms, *big)
            dist[far] = d
        self.status[rows] = np.where(inside, too_far, outside)
        self.distance[rows] = dist

    def frame(self, event_row: np.ndarray) -> pd.DataFrame:
        """The join's columns, indexed by the events' rows in the input (``event_row``)."""
        from ..join import MATCH_STATUSES

        match = pc.take(pa.array(MATCH_STATUSES, pa.string()), pa.array(self.status))
        return pd.DataFrame(
            {
                "unit_id": self.unit_id,
                "distance_m": self.distance,
                "measure_m": self.measure,
                "match": pd.array(match, dtype="string"),
                "overlap_m": self.overlap,
            },
            index=pd.Index(event_row, name="event_row"),
        )


def _write_joined(table: pa.Table, path: Path) -> None:
    """A cell's joined rows to GeoParquet: dictionaries for the text columns only (ids,
    statuses, the events' categories; not numbers, times or the WKB geometry, whose values
    rarely repeat) and no min/max statistics of the WKB bytes (a third less CPU)."""
    pq.write_table(table, path, **_table_options(table))


def _table_options(table: pa.Table) -> dict[str, Any]:
    """:func:`._parts._parquet_options` of an Arrow table (its GeoParquet columns binary)."""
    geo = json.loads(table.schema.metadata.get(b"geo", b'{"columns": {}}'))
    text = [
        f.name
        for f in table.schema
        if pa.types.is_string(f.type)
        or pa.types.is_large_string(f.type)
        or pa.types.is_dictionary(f.type)
    ]
    return _parquet_options(table.column_names, text, list(geo["columns"]))


@_cpu
def join_cell(
    stage: Path,
    cell: tuple[int, int],
    grid: Grid,
    reach: float,
    overhang: float,
    area_wkb: bytes,
    crs_wkt: str,
    jcfg: JoinSettings,
    frags: str = "frag/events",
    out: str = "joined",
) -> dict[str, Any]:
    """The cell's events (``<frags>/<cell>`` in ``stage``) joined to the units within ``reach``
    of them, the loose ones settled against the network's area (``area_wkb``) and the nearest
    unit, to ``<out>/<cell>.parquet`` indexed by the event's row in the input (``event_row``)."""
    from ..join import MATCH_STATUSES

    table = _read_frags(stage / frags / _cell_name(cell))
    if table is None:
        return {"rows": 0}
    mcrs = _crs(crs_wkt)
    ev = _CellEvents.of(table, crs_wkt)
    ok = ~ev.missing
    # (a missing event's bounds are NaN)
    lo = np.nanmin(ev.eb[:, :2], axis=0) - reach if ok.any() else np.zeros(2)
    hi = np.nanmax(ev.eb[:, 2:], axis=0) + reach if ok.any() else np.zeros(2)
    units = _near_units(stage, grid, lo, hi, overhang) if ok.any() else None
    m = _Matched.of(ev, units, mcrs, jcfg)
    del units
    m.settle(ev, (lo, hi), area_wkb, stage, mcrs)
    pos = ev.table.column("_pos").to_numpy()
    rows = ev.table if len(m.row) == len(ev) and (m.row == np.arange(len(ev))).all() else None
    rows = (rows if rows is not None else ev.table.take(m.row)).drop_columns(["_pos"])
    path = stage / out / f"{_cell_name(cell)}.parquet"
    with atomic_path(path) as tmp:
        _write_joined(_with_columns(rows, m.frame(pos[m.row])), tmp)
    counts = np.bincount(m.status, minlength=len(MATCH_STATUSES))
    return {
        "rows": len(m.row),
        "events": len(ev),
        "by_match": {s: int(n) for s, n in zip(MATCH_STATUSES, counts, strict=True)},
        "name_matched": int(m.report.get("name_matched", 0)),
        "max_distance_m": m.report.get("max_distance_m", {}),
    }
