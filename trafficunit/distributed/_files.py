"""run_pipeline from GeoParquet files on Dask: the data stays on disk and on the workers.

The client plans and gathers summaries only; every task reads its inputs from the run's
staging directory (``.<outdir>.partial``, on storage every worker sees) and writes its output
there, atomically, so a run killed at any point resumes from what is on disk:

==============================  ============================================================
``roads/chunk-K.parquet``       chunk K of the road file, normalised (``read_network``)
``frag/roads/cell-I-J/K``       roads of chunk K whose box grown by the first halo meets cell
``frag/events/cell-I-J/K``      accidents of chunk K whose centre lies in cell (I, J), with
                                their metric coordinates (Arrow IPC: written once, read once)
``units/cell-I-J.parquet``      units anchored in cell (I, J), indexed by ``unit_id``
``joined/cell-I-J.parquet``     the cell's accidents with their match, indexed by their row
                                in the accident file (``event_row``)
``tally/cell-I-J.*``            the cell's accidents counted by unit, its hazard rows and
                                the hashes of its event ids
``frag/hazards*``               the hazards, partitioned and joined as the accidents
                                (:mod:`._hazards`); gathered into ``hazards.parquet``
``riskcols/cell-I-J.arrow``     the risk columns of the units of cell (I, J)
``risk/cell-I-J.parquet``       the units of cell (I, J) with their risk columns
``*.json``                      each task's summary, written after its output: its marker
``report.json``                 the run's report (stages, timings, memory, CPU)
==============================  ============================================================

When the run completes, the working files (``roads/``, ``frag/``, ``tally/``, ``riskcols/``) are
removed and the directory renamed to ``outdir``: ``units/``, ``joined/``, ``risk/``
(partitioned GeoParquet datasets, read with :class:`PartitionedFrame`), ``hazards.parquet``
(when hazards were given) and ``report.json``.

The score (:mod:`._score`) gives the single run's counts, fits and levels.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyproj
import shapely

from .._errors import InputFileError, ValidationError
from .._validate import metric_crs
from ..settings import (
    DistributedSettings,
    JoinSettings,
    NetworkSettings,
    UnitSettings,
)
from . import _hazards, _tasks
from ._cluster import _bar, _peak_rss_mb
from ._grid import Grid, _grid_for
from ._join import _network_extent, _reach
from ._parts import (
    PartitionedFrame,
    _bbox,
    _cell_name,
    _chunk_offsets,
    _chunks,
)
from ._runner import _Runner, _summarised
from ._score import _joined_and_counted, _score, _ScoreInputs

#: Rows of an input file a task reads at most.
_CHUNK_ROWS = 500_000


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _metric_crs_of(bounds: np.ndarray, crs: Any, given: Any) -> pyproj.CRS:
    """:func:`metric_crs` of roads with these bounds and CRS (the UTM zone of their bounds'
    centre, as ``estimate_utm_crs`` takes it)."""
    corners = gpd.GeoDataFrame(
        geometry=shapely.points([bounds[0], bounds[2]], [bounds[1], bounds[3]]), crs=crs
    )
    return metric_crs(corners, given)


def run_files(
    roads: Path,
    accidents: Path,
    *,
    client: Any,
    period: Any,
    crs: Any,
    build_kw: dict[str, Any],
    unit_settings: UnitSettings | None,
    join_settings: JoinSettings | None,
    risk_settings: Any,
    cfg: DistributedSettings,
    run: Any,
    progress: bool,
    hazards: Path | None = None,
) -> tuple[dict[str, Any], Any, gpd.GeoDataFrame | None]:
    """The stages of a run from files (see the module docs) in ``run.store``; the summaries
    the report needs, the risk frame's attributes and the joined ``hazards`` (a GeoParquet
    file; :mod:`._hazards`)."""
    stage = run.store.dir
    runner = _Runner(client, progress)
    stats = run.stats
    jcfg = join_settings or JoinSettings()
    unit_cfg = (unit_settings or UnitSettings()).with_(
        junction_merge_m=build_kw["junction_merge_m"]
    )
    merge_m = unit_cfg.junction_merge_m
    # 1. the roads, normalised chunk by chunk; their bounds give the metric CRS and the grid
    t = time.perf_counter()
    rchunks = _chunks(roads, _chunk_rows(roads, cfg))
    norm, mcrs, grid, halo0 = _normalise_roads(runner, stage, roads, rchunks, crs, cfg, merge_m)
    wkt = mcrs.to_wkt()
    # 2. the roads to the cells they reach, the accidents to the cell of their centre
    # whole row groups: their partitioning is light beside reading them (a million rows cut
    # in three were read three times), and it runs beside the build, filling the workers
    achunks = _chunks(accidents, None)
    offsets = _chunk_offsets(accidents, achunks)
    ev_jobs = [
        (
            stage / "frag" / "events" / f"_chunk-{k}.json",
            _tasks.partition_events,
            (accidents, c, k, offsets[k], stage, grid, wkt),
        )
        for k, c in enumerate(achunks)
    ]
    part = runner.map(
        "partitioning roads",
        [
            (
                stage / "frag" / "roads" / f"_chunk-{k}.json",
                _tasks.partition_roads,
                (stage / "roads" / f"chunk-{k}.parquet", k, stage, grid, halo0, wkt),
            )
            for k in range(len(rchunks))
        ],
    )
    stats.seconds["partition roads"] = time.perf_counter() - t
    _task_cpu(stats, "build", norm + part)
    # 3. the build, cell by cell, the events partitioned meanwhile: after the cells (a lower
    # priority), they fill the workers a cell no longer keeps busy at the build's end
    t = time.perf_counter()
    ev_futures = [
        (s, client.submit(_summarised, fn, s, *a, pure=False, priority=-1))
        for s, fn, a in ev_jobs
        if not s.exists()
    ]
    options = {**build_kw, "split_on": None, "settings": unit_settings}
    built = _build(runner, stage, grid, halo0, wkt, options, cfg, stats)
    stats.seconds["build"] = time.perf_counter() - t
    run.close("build")
    # 4. the join, cell by cell
    t = time.perf_counter()
    from distributed import wait

    wait([f for _, f in ev_futures])
    evs = [f.result() for _, f in ev_futures]
    _task_cpu(stats, "join", evs)
    done = [b for b in built.values() if b["units"]]
    reach = _reach(pd.DataFrame({"radius_m": [max(b["max_radius_m"] for b in done)]}), jcfg)
    overhang = max(b["overhang_m"] for b in done)
    hull = shapely.convex_hull(shapely.multipoints(np.concatenate([b["hull"] for b in done])))
    area = shapely.to_wkb(shapely.buffer(hull, jcfg.area_buffer_m))
    cells = sorted(  # the largest first: the workers finish together
        (
            (int(d.name.split("-")[1]), int(d.name.split("-")[2]))
            for d in (stage / "frag" / "events").glob("cell-*")
        ),
        key=lambda c: -_frag_bytes(stage, c, "events"),
    )
    # each cell's accidents counted by the task that joins them; the score's inputs made
    # ready meanwhile: the units' columns read here, their parts on the workers
    inputs = _ScoreInputs.start(runner, stage, cells, period, risk_settings)
    pending = runner.submit(
        [
            (
                stage / "joined" / f"{_cell_name(c)}.json",
                _joined_and_counted,
                ((stage, c, grid, reach, overhang, area, wkt, jcfg), inputs.job(k)),
            )
            for k, c in enumerate(cells)
        ]
    )
    inputs.read()
    joined = runner.gather("joining accidents", pending, each=inputs.count)
    _task_cpu(stats, "join", joined)
    stats.seconds["join"] = time.perf_counter() - t
    run.close("join")
    hz = hz_parts = None
    if hazards is not None:  # 4b. the hazards (few): the accidents' tasks, gathered here
        join_kw = {"reach": reach, "overhang": overhang, "area": area, "jcfg": jcfg, "cfg": cfg}
        hz, hz_parts = _hazards.join_file(
            runner, stage, hazards, grid=grid, crs_wkt=wkt, stats=stats, **join_kw
        )
        run.close("hazards")
    # 5. the score: fitted here from the compact columns, the rows written by the workers
    t = time.perf_counter()
    attrs = _score(runner, stage, inputs, hz)
    stats.seconds["score"] = time.perf_counter() - t
    summary = {
        "grid": {"cells": grid.nx * grid.ny, "size_m": grid.size, "crs": str(mcrs.to_string())},
        "roads_in": sum(p["rows_in"] for p in part),
        "road_length_km": sum(p["length_m"] for p in part) / 1000.0,
        "units": {
            k: sum(b.get(k, 0) for b in built.values())
            for k in ("units", "segments", "intersections", "junction_links")
        },
        "joined": _join_summary(joined),
        "accidents": sum(e["rows"] for e in evs) if evs else _row_count_of(accidents),
    }
    if hz_parts is not None:
        summary["hazards"] = _join_summary(hz_parts)
    return summary, attrs, hz


def _normalise_roads(
    runner: _Runner,
    stage: Path,
    roads: Path,
    rchunks: list[Any],
    crs: Any,
    cfg: DistributedSettings,
    merge_m: float,
) -> tuple[list[dict[str, Any]], pyproj.CRS, Grid, float]:
    """The road file normalised chunk by chunk on the workers (``roads/chunk-K.parquet``);
    the chunks' summaries, the metric CRS, the grid and the first halo."""
    names = pq.read_schema(roads).names
    osm = "highway" in names or "road_class" in names
    if _bbox(roads)[1] is None:
        raise InputFileError(f"{roads}: the file has no CRS")
    norm = runner.map(
        "normalising roads",
        [
            (
                stage / "roads" / f"chunk-{k}.json",
                _tasks.normalise_chunk,
                (roads, c, stage / "roads" / f"chunk-{k}.parquet", osm, NetworkSettings()),
            )
            for k, c in enumerate(rchunks)
        ],
    )
    b = np.array([s["bounds"] for s in norm if s["rows"]], dtype=float)
    if not len(b):
        raise ValidationError("no usable road lines (all geometries missing, empty or not lines)")
    bounds = np.r_[b[:, :2].min(axis=0), b[:, 2:].max(axis=0)]
    src_crs = pyproj.CRS.from_wkt(norm[0]["crs"])
    mcrs = _metric_crs_of(bounds, src_crs, crs)
    halo0 = max(cfg.halo_m, 4 * merge_m)
    corners = gpd.GeoDataFrame(geometry=shapely.points(bounds[[0, 2]], bounds[[1, 3]]), crs=src_crs)
    extent = _network_extent(corners, mcrs) + np.array([-halo0, -halo0, halo0, halo0])
    grid = _grid_for(
        extent,
        mcrs,
        size=cfg.cell_size_m,
        count=sum(s["rows"] for s in norm),
        per_cell=cfg.roads_per_cell,
        n_workers=cfg.n_workers,
        min_size=2 * halo0,
    )
    return norm, mcrs, grid, halo0


def _chunk_rows(path: Path, cfg: DistributedSettings) -> int:
    """Rows per chunk: at most :data:`_CHUNK_ROWS`, at least two chunks a worker."""
    n = pq.ParquetFile(path).metadata.num_rows
    return max(1, min(_CHUNK_ROWS, math.ceil(n / (2 * max(cfg.n_workers, 1)))))


def _row_count_of(path: Path) -> int:
    return int(pq.ParquetFile(path).metadata.num_rows)


def _task_cpu(stats: Any, stage: str, summaries: list[dict[str, Any]]) -> None:
    stats.add_cpu(stage, sum(float(s.get("cpu", 0.0)) for s in summaries))


def _build(
    runner: _Runner,
    stage: Path,
    grid: Grid,
    halo0: float,
    wkt: str,
    options: dict[str, Any],
    cfg: DistributedSettings,
    stats: Any,
) -> dict[tuple[int, int], dict[str, Any]]:
    """Every cell's build summary, the cells retried with a larger halo until exact."""
    from distributed import as_completed

    cells = [(i, j) for i in range(grid.nx) for j in range(grid.ny)]
    stats.cells = len(cells)
    out: dict[tuple[int, int], dict[str, Any]] = {}
    futures = {}

    def submit(c: tuple[int, int], halo: float, tries: int) -> None:
        stats.tasks += 1
        stats.max_halo_m = max(stats.max_halo_m, halo)
        f = runner.client.submit(
            _tasks.build_cell, stage, c, grid, halo, halo0, wkt, options, pure=False
        )
        futures[f] = (c, halo, tries)

    for c in sorted(cells, key=lambda c: -_frag_bytes(stage, c)):  # the longest tasks first
        marker = stage / "units" / f"{_cell_name(c)}.json"
        if marker.exists():
            out[c] = json.loads(marker.read_text())
        else:
            submit(c, halo0, 0)
    bar = _bar(len(cells), "building units", runner.progress)
    bar.update(len(out))
    ac = as_completed(list(futures))
    for f in ac:
        c, halo, tries = futures.pop(f)
        res = f.result()
        f.release()
        stats.add_cpu("build", res["cpu"])
        if res["retry"] is not None:
            stats.retries += 1
            more = tries + 1 < cfg.max_halo_doublings
            submit(c, max(halo * 2, 1.25 * res["retry"]) if more else math.inf, tries + 1)
            ac.add(next(reversed(futures)))
            continue
        out[c] = res
        bar.update()
    bar.close()
    if not any(b["units"] for b in out.values()):
        raise ValidationError("no usable road lines (all geometries missing, empty or not lines)")
    return out


def _frag_bytes(stage: Path, cell: tuple[int, int], kind: str = "roads") -> int:
    """Bytes of the cell's fragments of ``kind``: how long its task runs, about."""
    return sum(p.stat().st_size for p in (stage / "frag" / kind / _cell_name(cell)).glob("*"))


def _join_summary(parts: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, int] = {}
    max_d: dict[str, float] = {}
    for p in parts:
        for k, v in p.get("by_match", {}).items():
            by[k] = by.get(k, 0) + int(v)
        for k, v in p.get("max_distance_m", {}).items():
            max_d[k] = max(max_d.get(k, 0.0), float(v))
    return {
        "rows": sum(p["rows"] for p in parts),
        "by_match": by,
        "name_matched": sum(p.get("name_matched", 0) for p in parts),
        "max_distance_m": max_d,
        "cells": len(parts),
    }


#: The layout of a run's staging files; a staging directory of another layout (left by an
#: earlier version) is not resumed but started afresh.
_STAGING_FORMAT = 4  # 3: event fragments as Arrow IPC with their metric x, y; 4: of row groups


def _fingerprint_files(given: str | None, options: dict[str, Any], *paths: Path) -> str:
    base = given or "|".join(_file_key(p) for p in paths)
    base += f"|staging format {_STAGING_FORMAT}"
    return hashlib.sha256(
        (base + repr(sorted((k, repr(v)) for k, v in options.items()))).encode()
    ).hexdigest()


def _results(outdir: Path) -> tuple[PartitionedFrame, PartitionedFrame, PartitionedFrame]:
    return (
        PartitionedFrame(outdir / "units", order="index"),
        PartitionedFrame(outdir / "joined", order="rows"),
        PartitionedFrame(outdir / "risk", order="index"),
    )


def _peak_mb() -> int:
    return round(_peak_rss_mb())
