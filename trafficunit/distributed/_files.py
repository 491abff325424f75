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

The score counts each cell's accidents by unit on the workers (the rows of one cell, in their
order; each cell once its join is done, after the joins left to start) while the client reads
the units' attributes (no geometry) as the joins run; the client sums these counts (one row per
unit with accidents, no accident row) and scores the units from them in the single-process
order, the SPF of the largest reference population fitted here and the others on the workers
meanwhile (the same fits), so parameters and levels are those of the single-process run; the
workers attach the geometry to each cell's risk rows. Should an event id be in two cells (the
single run counts its first row only), the client counts all the rows itself instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pyproj
import shapely

from .._errors import InputFileError, ValidationError
from .._gcpause import gc_paused
from .._validate import metric_crs
from ..io import atomic_path
from ..settings import (
    DistributedSettings,
    JoinSettings,
    NetworkSettings,
    RiskSettings,
    UnitSettings,
)
from ..timefilter import Period
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
    _read_parts,
    _write_json,
    _write_part,
)

if TYPE_CHECKING:
    from ..risk.spf import FitJob, Fitter, SafetyPerformanceFunction

#: Rows of an input file a task reads at most.
_CHUNK_ROWS = 500_000


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _summarised(fn: Any, summary: Path, *args: Any) -> dict[str, Any]:
    """``fn(*args)`` on a worker; its summary also written to ``summary`` (the marker that
    the output before it is complete); the garbage collector paused while it runs."""
    with gc_paused():
        out: dict[str, Any] = fn(*args)
    _write_json(summary, out)
    return out


class _Runner:
    """Submits tasks whose summary is not on disk yet; collects every summary."""

    def __init__(self, client: Any, progress: bool) -> None:
        self.client = client
        self.progress = progress

    def map(self, desc: str, jobs: list[tuple[Path, Any, tuple[Any, ...]]]) -> list[Any]:
        """Summaries of ``jobs`` (summary path, task, arguments) in their order."""
        return self.gather(desc, self.submit(jobs))

    def submit(
        self,
        jobs: list[tuple[Path, Any, tuple[Any, ...]]],
        into: _Pending | None = None,
        priority: int = 0,
    ) -> _Pending:
        """``jobs`` started on the workers (those whose summary is on disk read instead),
        after those of ``into``; ``priority``: Dask's (the scheduler sends the queued task
        of the highest first)."""
        out, futures = into if into is not None else ([], {})
        for summary, fn, args in jobs:
            if summary.exists():
                out.append(json.loads(summary.read_text()))
                continue
            futures[len(out)] = self.client.submit(
                _summarised, fn, summary, *args, pure=False, priority=priority
            )
            out.append(None)
        return out, futures

    def gather(self, desc: str, pending: _Pending, each: Any = None) -> list[Any]:
        """The summaries of jobs :meth:`submit` started, in their order, once all are done;
        ``each(k)`` called as job K's is in (those read from disk first)."""
        from distributed import as_completed

        out, futures = pending
        bar = _bar(len(out), desc, self.progress)
        bar.update(len(out) - len(futures))
        if each is not None:
            for k in range(len(out)):
                if k not in futures:
                    each(k)
        at = {f: n for n, f in futures.items()}
        for f in as_completed(list(at)):
            out[at[f]] = f.result()
            f.release()
            bar.update()
            if each is not None:
                each(at[f])
        bar.close()
        return out


#: Jobs :meth:`_Runner.submit` started: the summaries read from disk (None for the others)
#: and the futures of the others by their position.
_Pending = tuple[list[Any], dict[int, Any]]


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
    achunks = _chunks(accidents, _chunk_rows(accidents, cfg))
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
    pending = runner.submit(
        [
            (
                stage / "joined" / f"{_cell_name(c)}.json",
                _tasks.join_cell,
                (stage, c, grid, reach, overhang, area, wkt, jcfg),
            )
            for c in cells
        ]
    )
    # the score's inputs meanwhile: the units' columns read here, each cell's accidents
    # counted once joined, after every join (a worker a join no longer keeps busy counts)
    inputs = _ScoreInputs.start(runner, stage, cells, period, risk_settings)
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


# --------------------------------------------------------------------------------------------
# score


class _ScoreInputs:
    """What the score reads, made ready while the accidents are joined: the tasks counting
    each cell's accidents by unit (started after its join) and the units' columns in
    unit_id order with each unit's part; nothing when the run's risk columns are on disk
    already (a resumed run)."""

    def __init__(self, runner: _Runner, stage: Path, period: Any, cfg: RiskSettings) -> None:
        self.runner, self.stage, self.period, self.cfg = runner, stage, period, cfg
        self.parts = sorted((stage / "units").glob("cell-*.parquet"))
        self.done = (stage / "riskcols" / "attrs.json").exists()
        self.tallies: list[Path] = []
        self.jobs: list[tuple[Path, Any, tuple[Any, ...]]] = []
        self.pending: _Pending = ([], {})
        self.units: gpd.GeoDataFrame | None = None
        self.cell = np.zeros(0, dtype=np.int64)

    @classmethod
    def start(
        cls,
        runner: _Runner,
        stage: Path,
        cells: list[tuple[int, int]],
        period: Any,
        risk_settings: Any,
    ) -> _ScoreInputs:
        """The units' columns read; :meth:`count` then starts the counting of the accidents
        of cell K of ``cells``."""
        self = cls(runner, stage, period, risk_settings or RiskSettings())
        if self.done:
            return self
        self._read_units()
        tally = stage / "tally"
        self.jobs = [
            (tally / f"{_cell_name(c)}.json", _tally_part, (p, tally, period, self.cfg))
            for c, p in ((c, stage / "joined" / f"{_cell_name(c)}.parquet") for c in cells)
        ]
        return self

    def count(self, k: int) -> None:
        """The counting of cell K's accidents started (once its join is done), below the
        joins: a worker takes a count only when no join is left to start."""
        if self.done:
            return
        self.pending = self.runner.submit([self.jobs[k]], self.pending, priority=-1)
        self.tallies.append(self.jobs[k][0].with_suffix(".parquet"))

    def _read_units(self) -> None:
        from ..risk import scoring

        parts = self.parts
        cols = [c for c in scoring._unit_columns(self.cfg) if c in pq.read_schema(parts[0]).names]
        frames = [pd.read_parquet(p, columns=cols) for p in parts]
        units = pd.concat(frames)
        # each unit's part, as a number; the units in unit_id order (as the build sorts them)
        cell = np.repeat(np.arange(len(parts)), [len(f) for f in frames])
        del frames
        order = units.index.argsort(kind="stable")
        units, self.cell = units.iloc[order], cell[order]
        crs = _bbox(parts[0])[1]
        self.units = gpd.GeoDataFrame(
            units, geometry=gpd.GeoSeries([None] * len(units), index=units.index, crs=crs)
        )

    def shares(self) -> tuple[list[Path], list[dict[str, Any]]]:
        """The counts of the cells with joined accidents (``tally/<cell>.parquet``) and the
        summaries of their counting, once done."""
        summaries = self.runner.gather("counting accidents", self.pending)
        kept = sorted(  # in the cells' order, as the parts
            (p, s) for p, s in zip(self.tallies, summaries, strict=True) if s["rows"] >= 0
        )
        return [p for p, _ in kept], [s for _, s in kept]


def _score(
    runner: _Runner, stage: Path, inputs: _ScoreInputs, hazards: Any = None
) -> dict[str, Any]:
    """Score: the workers count each cell's accidents by unit, the client sums the counts,
    fits and levels the units (attributes only, in unit_id order; ``hazards``: joined
    hazard rows counted as open hazards too); the workers join each cell's risk columns to
    its units (``risk/<cell>.parquet``)."""
    marker = stage / "riskcols" / "attrs.json"
    parts = inputs.parts
    jobs = [
        (stage / "risk" / f"{p.stem}.json", _risk_part, (p, stage / "riskcols", stage / "risk"))
        for p in parts
    ]
    if not inputs.done:
        table, attrs = _score_units(inputs, hazards)
        cell = inputs.cell
        # the rows by part (unit_id order within each) taken and written by Arrow: no
        # pandas copy of the columns per part; each part's task started once its file is
        # written, while this process writes the next
        by = np.argsort(cell, kind="stable")
        starts = np.searchsorted(cell[by], np.arange(len(parts) + 1))
        pending = None
        for n, p in enumerate(parts):  # Arrow files: a working copy, written as it is
            with atomic_path(stage / "riskcols" / f"{p.stem}.arrow") as tmp:
                rows = table.take(by[starts[n] : starts[n + 1]])
                feather.write_feather(rows, tmp, compression="uncompressed")
            pending = runner.submit(jobs[n : n + 1], pending)
        _write_json(marker, attrs)
    else:
        attrs = json.loads(marker.read_text())
        pending = runner.submit(jobs)
    runner.gather("scoring", pending or ([], {}))
    return attrs


def _score_units(inputs: _ScoreInputs, hazards: Any = None) -> tuple[pa.Table, dict[str, Any]]:
    """The risk columns of every unit in unit_id order and their attributes (the single
    run's)."""
    from ..risk import scoring

    period, cfg, u = inputs.period, inputs.cfg, inputs.units
    assert u is not None
    tallies, shares = inputs.shares()
    if _ids_apart([p.with_suffix(".ids.npy") for p in tallies]):
        counts = [pd.read_parquet(p) for p in tallies]
        spans = [
            None if s["period"] is None else Period(*map(pd.Timestamp, s["period"])) for s in shares
        ]
        summed = scoring._summed(u, counts, spans, [s["report"] for s in shares], period, cfg)
        hz = pd.concat([pd.read_parquet(p.with_suffix(".hazards.parquet")) for p in tallies])
    else:  # an event id in two cells: counted over all the rows, first row kept, as one run
        jparts = [inputs.stage / "joined" / p.name for p in tallies]
        jcols = [c for c in scoring._SCORED_COLUMNS if c in pq.read_schema(jparts[0]).names]
        rows = _read_parts(jparts, jcols)
        assert rows is not None
        share = scoring._tally(rows.sort_index(kind="stable").reset_index(drop=True), period, cfg)
        summed = scoring._summed(u, [share[0]], [share[1]], [share[2]], period, cfg)
        hz = share[3]
    assert hz is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hz = hz.sort_index(kind="stable")
        fitter = _fit_on_workers(inputs.runner.client)
        risk = scoring._scored(u, *summed, hz, hazards, period is not None, cfg, None, fitter)
    added = [c for c in risk.columns if c not in u.columns and c != "geometry"]
    table = pa.Table.from_pandas(pd.DataFrame(risk), columns=added, preserve_index=True)
    return table, _jsonable_attrs(risk)


def _fit_on_workers(client: Any) -> Fitter:
    """A :data:`~trafficunit.risk.spf.Fitter` that fits the largest population here (its
    rows are here: nothing to send) and the others on the workers meanwhile, the largest
    first, each on the worker with the fewest units to fit so far. The fits are those of a
    single process (:func:`~trafficunit.risk.spf._fit_each`: the same code on the same rows,
    BLAS on one thread)."""

    def fit(jobs: list[FitJob]) -> list[SafetyPerformanceFunction]:
        from ..risk.spf import _fit_each

        if not jobs:
            return []
        here, *rest = sorted(range(len(jobs)), key=lambda n: -len(jobs[n][1]))
        load = dict.fromkeys(sorted(client.scheduler_info()["workers"]), 0)
        futures: dict[int, Any] = {}
        for n in rest:
            w = min(load, key=load.__getitem__)
            load[w] += len(jobs[n][1])
            [job] = client.scatter([jobs[n]], workers=[w], hash=False)
            futures[n] = client.submit(_fit_job, job, workers=[w], pure=False)
        out: list[Any] = [None] * len(jobs)
        out[here] = _fit_each([jobs[here]])[0]
        for n, f in futures.items():
            out[n] = f.result()
            f.release()
        return out

    return fit


def _fit_job(job: FitJob) -> SafetyPerformanceFunction:
    """:func:`~trafficunit.risk.spf._fit_one` of ``job`` (a task), the collector paused."""
    from ..risk.spf import _fit_each

    with gc_paused():
        return _fit_each([job])[0]


@_tasks._cpu
def _tally_part(joined_part: Path, out_dir: Path, period: Any, cfg: RiskSettings) -> dict[str, Any]:
    """A cell's accidents counted by unit (``tally/<cell>.parquet``), its hazard rows
    (``.hazards.parquet``) and the hashes of its event ids (``.ids.npy``); its period and
    input report (a task)."""
    from ..risk import scoring

    if not joined_part.exists():  # a cell whose join found no event fragment
        return {"rows": -1, "period": None, "report": None}
    names = pq.read_schema(joined_part).names
    rows = pd.read_parquet(joined_part, columns=[c for c in scoring._SCORED_COLUMNS if c in names])
    rows = rows.sort_index(kind="stable")
    counts, per, report, hz = scoring._tally(rows, period, cfg)
    _write_part(counts, out_dir / joined_part.name)
    _write_part(hz, out_dir / f"{joined_part.stem}.hazards.parquet")
    ids = _id_hashes(rows["event_id"]) if "event_id" in rows.columns else np.zeros(0, np.uint64)
    with atomic_path(out_dir / f"{joined_part.stem}.ids.npy") as tmp, tmp.open("wb") as f:
        np.save(f, np.sort(ids))  # sorted here: the client merges the cells' runs
    span = None if per is None else [per.start.isoformat(), per.end.isoformat()]
    return {"rows": len(rows), "period": span, "report": report}


#: The multiplier and length weight of :func:`_id_hashes` (odd 64-bit constants).
_HASH_P, _HASH_Q = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)


def _id_hashes(ids: pd.Series) -> np.ndarray:
    """The distinct 64-bit polynomial hashes of the ids' UTF-8 bytes (``_HASH_P`` for a
    missing one): equal ids hash equal (two ids may share one)."""
    arr = pa.array(ids.astype("string").array)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    off = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = arr.buffers()[2]
    chars = np.frombuffer(data, dtype=np.uint8)[off[0] : off[-1]] if data else np.zeros(0, np.uint8)
    length = np.diff(off)
    begin = off[:-1] - off[0]
    k = np.arange(len(chars)) - np.repeat(begin, length)
    powers = np.cumprod(np.full(int(length.max()) + 1, _HASH_P, dtype=np.uint64))
    h = length.astype(np.uint64) * _HASH_Q
    some = length > 0
    if some.any():  # each id's sum of byte x P^(i + 1), wrapping at 2^64
        h[some] += np.add.reduceat(chars.astype(np.uint64) * powers[k], begin[some])
    h[np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)] = _HASH_P
    return np.asarray(pd.unique(h), dtype=np.uint64)


def _ids_apart(paths: list[Path]) -> bool:
    """Whether no event id hash is in two cells' ``.ids.npy`` (so no event id is); a
    stable sort (Timsort) merges their sorted runs."""
    h = np.sort(np.concatenate([np.load(p) for p in paths]), kind="stable")
    return not bool((h[1:] == h[:-1]).any())


def _jsonable_attrs(risk: pd.DataFrame) -> dict[str, Any]:
    from ..risk.measures import _jsonable

    return dict(_jsonable(dict(risk.attrs)))


def _risk_part(units_part: Path, cols_dir: Path, out_dir: Path) -> dict[str, Any]:
    """A cell's units with their risk columns (a task): the two Parquet tables side by side,
    the risk columns before the index as GeoPandas writes them; the geometry stays WKB bytes
    (the units' GeoParquet metadata holds for the same geometries)."""
    import pyarrow.compute as pc

    units = pq.read_table(units_part)
    cols = feather.read_table(cols_dir / f"{units_part.stem}.arrow", memory_map=True)
    meta = json.loads(units.schema.metadata[b"pandas"])
    (index,) = meta["index_columns"]
    if not units.column(index).equals(cols.column(index)):  # the same units, another order
        cols = cols.take(pc.index_in(units.column(index), value_set=cols.column(index)))
    at = units.schema.get_field_index(index)
    names = [n for n in cols.column_names if n != index]
    for n, name in enumerate(names):
        units = units.add_column(at + n, cols.schema.field(name), cols.column(name))
    added = json.loads(cols.schema.metadata[b"pandas"])["columns"]
    entries = [c for c in meta["columns"] if c["name"] != index]
    entries += [c for c in added if c["name"] in names]
    meta["columns"] = entries + [c for c in meta["columns"] if c["name"] == index]
    units = units.replace_schema_metadata(
        {**units.schema.metadata, b"pandas": json.dumps(meta).encode()}
    )
    with atomic_path(out_dir / units_part.name) as tmp:
        pq.write_table(units, tmp, **_tasks._table_options(units))
    return {"rows": units.num_rows}


#: The layout of a run's staging files; a staging directory of another layout (left by an
#: earlier version) is not resumed but started afresh.
_STAGING_FORMAT = 3  # 3: event fragments as Arrow IPC with their metric x, y


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
