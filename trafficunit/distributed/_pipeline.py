"""run_pipeline: build, join and score, on Dask or in this process."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np

from .._errors import InputFileError, ValidationError
from .._validate import metric_crs, require_gdf
from ..join.columnar import PointTable, events_input
from ..settings import DistributedSettings, JoinSettings, RiskSettings, UnitSettings
from . import _hazards
from ._build import build_units
from ._cluster import _peak_rss_mb, _preload, _reset_peak_rss, cluster
from ._grid import _Stats
from ._join import _event_cells, _network_extent, assign
from ._parts import PartitionedFrame, _write_json
from ._staging import _frame_digest, _Staging

# --------------------------------------------------------------------------------------------
# pipeline


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` returns: units, joined accidents (and hazards), risk."""

    #: GeoDataFrames; from files on Dask, :class:`PartitionedFrame` datasets in ``outdir``
    units: gpd.GeoDataFrame | PartitionedFrame
    joined: gpd.GeoDataFrame | PartitionedFrame
    risk: gpd.GeoDataFrame | PartitionedFrame
    hazards: gpd.GeoDataFrame | None = None
    report: dict[str, Any] = field(default_factory=dict)


def run_pipeline(
    roads: gpd.GeoDataFrame | str | os.PathLike[str],
    accidents: gpd.GeoDataFrame | str | os.PathLike[str],
    *,
    hazards: gpd.GeoDataFrame | str | os.PathLike[str] | None = None,
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
    roads, accidents
        Road lines (``tu.read_network``) and accidents (``tu.read_events``), or GeoParquet
        files of them (on Dask read by the workers, ``outdir`` required: module docs). With
        ``scheduler=None`` and no ``outdir``, an accidents file is read as coordinate arrays
        (a :class:`~trafficunit.join.columnar.PointTable`) and joined without a shapely point,
        which the joined frame gets after scoring.
    hazards
        Hazards to join and count as open hazards in the levels (optional): a frame
        (``tu.read_events(..., kind="hazard")``) or a GeoParquet file of one; in a run from
        files on Dask the workers partition and join them as the accidents.
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
        resident memory (over their lifetime, MB), this process's peak in each stage
        (``client_peak_rss_mb``: inputs, build, join, hazards, score, and output when the
        joined points are made after scoring; MB) and the CPU seconds of each stage in this
        process and in the workers (``cpu_seconds``); ``seconds`` has ``read accidents``
        when they were given as a path.
    """
    cfg = settings or DistributedSettings()
    build_kw = {"max_length_m": max_length_m, "junction_merge_m": junction_merge_m}
    if isinstance(roads, str | os.PathLike):
        return _from_files(
            roads,
            accidents,
            hazards=hazards,
            period=period,
            scheduler=scheduler,
            outdir=outdir,
            crs=crs,
            build_kw=build_kw,
            unit_settings=unit_settings,
            join_settings=join_settings,
            risk_settings=risk_settings,
            cfg=cfg,
            fingerprint=fingerprint,
            progress=progress,
        )
    require_gdf(roads, "roads")
    hazards = _hazards.read_input(hazards)
    t_read = time.perf_counter()
    accidents = events_input(accidents, columnar=scheduler is None)
    read_s = time.perf_counter() - t_read
    if not isinstance(accidents, PointTable):
        require_gdf(accidents, "accidents")
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
        key = _fingerprint(fingerprint, options, roads, accidents, hazards)
        store = _Staging(Path(outdir), key)
    run = _Run(store)
    if isinstance(accidents, PointTable):
        run.columnar = "joined"
    if read_s > 1e-3:
        run.stats.seconds["read accidents"] = read_s
    stages = _Stages(
        roads=roads,
        accidents=accidents,
        hazards=hazards,
        mcrs=mcrs,
        build_kw=build_kw,
        unit_settings=unit_settings,
        join_settings=join_settings,
        cfg=cfg,
        progress=progress,
    )
    if scheduler is None:
        units, joined, hz = stages.single(run)
    else:
        units, joined, hz = stages.dask(run, scheduler)
    from ..risk import score

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        risk = score(
            units,
            joined.frame if isinstance(joined, PointTable) else joined,
            period=period,
            hazards=hz,
            settings=risk_settings,
        )
    run.stats.seconds["score"] = time.perf_counter() - t
    run.close("score")
    if isinstance(joined, PointTable):  # the points, made once, now the stages are done
        joined = joined.to_geodataframe()
        run.close("output")
    run.stats.seconds["total"] = time.perf_counter() - run.t0
    report = run.report(scheduler, len(units), len(accidents))
    if store is not None:
        from ..io import write_table

        write_table(risk, store.path("risk.parquet"))
        _write_json(store.path("report.json"), report, indent=2)  # atomically
        store.commit()
    return PipelineResult(units, joined, risk, hz, report)


def _from_files(
    roads: Any,
    accidents: Any,
    *,
    hazards: Any,
    period: Any,
    scheduler: Any,
    outdir: Any,
    crs: Any,
    build_kw: dict[str, Any],
    unit_settings: UnitSettings | None,
    join_settings: JoinSettings | None,
    risk_settings: RiskSettings | None,
    cfg: DistributedSettings,
    fingerprint: str | None,
    progress: bool,
) -> PipelineResult:
    """:func:`run_pipeline` of GeoParquet files: read here without a scheduler, else on the
    workers through ``outdir`` (:mod:`._files`)."""
    from ..network import read_network
    from ._files import _fingerprint_files, _results, run_files

    if not (isinstance(roads, str | os.PathLike) and isinstance(accidents, str | os.PathLike)):
        raise ValidationError("give both roads and accidents as files, or both as frames")
    roads, accidents = Path(roads), Path(accidents)
    for p in (roads, accidents):
        if not p.is_file():
            raise InputFileError(f"{p}: no such file")
    hz_key = _hazards.input_key(hazards)  # checked before any work
    common = {
        "period": period,
        "crs": crs,
        "unit_settings": unit_settings,
        "join_settings": join_settings,
        "risk_settings": risk_settings,
        "settings": cfg,
        "progress": progress,
        **build_kw,
    }
    if scheduler is None:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = read_network(roads)
        t_read = time.perf_counter() - t
        # the accidents path goes on: read as coordinate arrays where no outdir is given
        res = run_pipeline(r, accidents, hazards=hazards, scheduler=None, outdir=outdir, **common)
        del r
        secs = res.report["seconds"]
        t_read += secs.get("read accidents", 0.0)
        res.report["seconds"] = {"read": round(t_read, 3), **secs}
        res.report["seconds"]["total"] = round(secs["total"] + t_read, 3)
        return res
    if outdir is None:
        raise ValidationError(
            "a run from files on Dask writes its partitions to disk: give outdir (on storage "
            "every worker can read and write)"
        )
    options = {k: v for k, v in common.items() if k != "progress"}
    options["hazards"] = hz_key
    options["cell_size_m"] = cfg.cell_size_m
    options["settings"] = repr(cfg.with_(n_workers=0, memory_limit="", processes=True))
    key = _fingerprint_files(fingerprint, options, roads, accidents)
    store = _Staging(Path(outdir), key)
    run = _Run(store)
    t_start = time.perf_counter()
    with cluster(scheduler, settings=cfg) as client:
        run.stats.seconds["cluster start"] = time.perf_counter() - t_start
        run.client = client
        run.open()
        stage_kw = {k: common[k] for k in ("period", "crs", "progress")}
        stage_kw |= {k: common[k] for k in ("unit_settings", "join_settings", "risk_settings")}
        hz_file = None if hazards is None else _hazards.input_file(hazards, store.dir)
        summary, attrs, hz = run_files(
            roads,
            accidents,
            client=client,
            run=run,
            build_kw=build_kw,
            cfg=cfg,
            hazards=hz_file,
            **stage_kw,
        )
        run.close("score")
        run.worker_peaks = [round(v) for v in client.run(_peak_rss_mb).values()]
        run.client = None
    run.stats.seconds["total"] = time.perf_counter() - run.t0
    report = run.report(scheduler, summary["units"]["units"], summary["accidents"])
    report |= {"from_files": summary, "risk": attrs}
    _write_json(store.path("report.json"), report, indent=2)
    store.commit()
    units, joined, risk = _results(Path(outdir))
    return PipelineResult(units, joined, risk, hz, report)


def _release_memory() -> None:
    """Give the memory a finished stage freed back to the system.

    glibc keeps freed heap pages in the process (and maps the next stage's large arrays
    beside them), so without this the resident memory grows by every stage's temporaries.
    Elsewhere than Linux/glibc a no-op.
    """
    from ..risk.inputs import _release_arrow_memory

    _release_arrow_memory()  # Arrow's allocator (pandas' strings) keeps freed memory too
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _fingerprint(given: str | None, options: dict[str, Any], *frames: Any) -> str:
    """The identity of a run: ``given`` (default: a hash of the frames' content) and the
    options."""
    if given is None:
        given = hashlib.sha256("|".join(_digest_of(f) for f in frames).encode()).hexdigest()
    return hashlib.sha256(
        (given + repr(sorted((k, repr(v)) for k, v in options.items()))).encode()
    ).hexdigest()


def _digest_of(data: Any) -> str:
    """:func:`._staging._frame_digest` of a frame, or of a PointTable's columns and points."""
    if not isinstance(data, PointTable):
        return _frame_digest(data)
    h = hashlib.sha256(_frame_digest(data.frame).encode())
    h.update(np.ascontiguousarray(data.x).tobytes())
    h.update(np.ascontiguousarray(data.y).tobytes())
    h.update(f"{data.crs.to_wkt()}|{data.geometry}|{data.position}".encode())
    return h.hexdigest()


class _Run:
    """A run's staging, timings, and each stage's peak memory and CPU seconds."""

    def __init__(self, store: _Staging | None) -> None:
        self.store = store
        self.stats = _Stats()
        self.t0 = time.perf_counter()
        # this process's peak memory in each stage (the peak is reset between stages on Linux)
        self.peaks: dict[str, int] = {"inputs": round(_peak_rss_mb())}
        _release_memory()
        _reset_peak_rss()
        self.cpu: dict[str, dict[str, float]] = {"inputs": {"client": time.process_time()}}
        self.client: Any = None
        self.worker_peaks: list[int] = []
        self.worker_stage_peaks: dict[str, list[int]] = {}
        self._cpu0 = (time.process_time(), 0.0)
        #: the stage whose output is a :class:`PointTable` (the joined accidents read columnar)
        self.columnar = ""

    def _worker_cpu(self) -> float:
        if self.client is None:
            return 0.0
        with contextlib.suppress(Exception):
            return float(sum(self.client.run(time.process_time).values()))
        return 0.0

    def open(self) -> None:
        """Start counting the workers' CPU (after the cluster is up)."""
        self._cpu0 = (time.process_time(), self._worker_cpu())

    def close(self, name: str) -> None:
        """End stage ``name``: its peak memory and CPU seconds."""
        self.peaks[name] = round(_peak_rss_mb())
        _release_memory()
        _reset_peak_rss()
        if self.client is not None:  # the workers' peaks in this stage, then afresh
            with contextlib.suppress(Exception):
                peaks = self.client.run(_peak_rss_mb)
                self.worker_stage_peaks[name] = [round(v) for v in peaks.values()]
                self.client.run(_reset_peak_rss)
        now = (time.process_time(), self._worker_cpu())
        cpu = {"client": round(now[0] - self._cpu0[0], 2)}
        if self.client is not None:
            cpu["workers"] = round(now[1] - self._cpu0[1], 2)
        self.cpu[name] = cpu
        self._cpu0 = now

    def stage(self, name: str, compute: Any) -> gpd.GeoDataFrame:
        """``compute()``, or what a resumed run saved of it; saved for a later resume."""
        try:
            store = self.store
            if store is not None and store.has(name):
                from ..io import read_table

                path = store.path(f"{name}.parquet")
                # the joined accidents of a columnar run come back columnar
                table = PointTable.read_parquet(path) if name == self.columnar else None
                if table is not None:
                    return table
                df: gpd.GeoDataFrame = read_table(
                    path, index="unit_id" if name == "units" else None
                )
                return df
            df = compute()
            if store is not None:
                from ..io import write_table

                if isinstance(df, PointTable):  # written from its coordinates: no points made
                    df.to_parquet(store.path(f"{name}.parquet"))
                else:
                    write_table(df, store.path(f"{name}.parquet"))
                store.mark(name)
            return df
        finally:
            self.close({"units": "build", "joined": "join"}.get(name, name))

    def report(self, scheduler: Any, n_units: int, n_accidents: int) -> dict[str, Any]:
        stats = self.stats
        return {
            "mode": "single process" if scheduler is None else "dask",
            "units": n_units,
            "accidents": n_accidents,
            "seconds": {k: round(v, 3) for k, v in stats.seconds.items()},
            "cells": stats.cells,
            "tasks": stats.tasks,
            "halo_retries": stats.retries,
            "max_halo_m": stats.max_halo_m,
            "resumed": bool(self.store.resumed) if self.store is not None else False,
            # over the run: the largest of each worker's stage peaks and its last peak
            "worker_peak_rss_mb": [
                max(v)
                for v in zip(*self.worker_stage_peaks.values(), self.worker_peaks, strict=False)
            ]
            or self.worker_peaks,
            "client_peak_rss_mb": self.peaks,
            "worker_stage_peak_rss_mb": self.worker_stage_peaks,
            "cpu_seconds": {
                k: {
                    **v,
                    **({"in tasks": round(stats.task_cpu[t], 2)} if t in stats.task_cpu else {}),
                }
                for k, v in self.cpu.items()
                for t in [{"build": "build", "join": "join"}.get(k, k)]
            },
        }


@dataclass
class _Stages:
    """The build and join stages of a run, in this process or on Dask."""

    roads: gpd.GeoDataFrame
    accidents: gpd.GeoDataFrame | PointTable
    hazards: gpd.GeoDataFrame | None
    mcrs: Any
    build_kw: dict[str, Any]
    unit_settings: UnitSettings | None
    join_settings: JoinSettings | None
    cfg: DistributedSettings
    progress: bool

    def _staged(
        self,
        run: _Run,
        build: Callable[[], gpd.GeoDataFrame],
        join: Callable[[gpd.GeoDataFrame, gpd.GeoDataFrame, str], gpd.GeoDataFrame],
    ) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, Any]:
        """The units stage, then the accidents' and the hazards' joins, each resumable in
        ``run``; ``join(units, events, stage)`` times itself as ``stage``."""
        units = run.stage("units", build)

        def joined(name: str, events: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
            stage = "join" if name == "joined" else name
            return run.stage(name, lambda: join(units, events, stage))

        accidents = joined("joined", self.accidents)
        hazards = joined("hazards", self.hazards) if self.hazards is not None else None
        return units, accidents, hazards

    def single(self, run: _Run) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, Any]:
        from ..join import assign as plain_assign
        from ..units import build_units as plain_build

        def timed(name: str, fn: Any) -> Any:
            t = time.perf_counter()
            out = fn()
            run.stats.seconds[name] = time.perf_counter() - t
            return out

        run.open()
        return self._staged(
            run,
            lambda: timed(
                "build",
                lambda: plain_build(
                    self.roads,
                    settings=self.unit_settings,
                    progress=self.progress,
                    crs=self.mcrs,
                    **self.build_kw,
                ),
            ),
            lambda units, events, stage: timed(
                stage,
                lambda: plain_assign(units, events, crs=self.mcrs, settings=self.join_settings),
            ),
        )

    def dask(self, run: _Run, scheduler: Any) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, Any]:
        # the client mostly waits on the workers: import what scoring fits the SPFs with
        # meanwhile (seconds, cold) instead of after the last stage
        preload = threading.Thread(
            target=_preload, args=("statsmodels.discrete.discrete_model",), daemon=True
        )
        preload.start()
        t_start = time.perf_counter()
        with (
            cluster(scheduler, settings=self.cfg) as client,
            ThreadPoolExecutor(1) as pool,
        ):
            run.stats.seconds["cluster start"] = time.perf_counter() - t_start
            run.client = client
            run.open()
            # the events' cells depend on the events alone: partitioned and sent to the
            # workers by this process while the workers build (it would otherwise wait)
            extent = _network_extent(self.roads, self.mcrs)
            prepared = {
                stage: pool.submit(
                    _event_cells,
                    events,
                    client,
                    mcrs=self.mcrs,
                    jcfg=self.join_settings or JoinSettings(),
                    cfg=self.cfg,
                    extent=extent,
                    store=run.store,
                    stage=stage,
                )
                for name, stage, events in (
                    ("joined", "join", self.accidents),
                    ("hazards", "hazards", self.hazards),
                )
                if events is not None and not (run.store is not None and run.store.has(name))
            }
            # what both stages take alike: the metric CRS, the bars and the run's staging
            alike: dict[str, Any] = {
                "crs": self.mcrs,
                "progress": self.progress,
                "_store": run.store,
                "_stats": run.stats,
            }
            units, joined, hz = self._staged(
                run,
                lambda: build_units(
                    self.roads,
                    client,
                    unit_settings=self.unit_settings,
                    settings=self.cfg,
                    **alike,
                    **self.build_kw,
                ),
                lambda units, events, stage: assign(
                    units,
                    events,
                    client,
                    settings=self.join_settings,
                    distributed_settings=self.cfg,
                    _stage=stage,
                    _cells=prepared[stage].result() if stage in prepared else None,
                    **alike,
                ),
            )
            run.worker_peaks = [round(v) for v in client.run(_peak_rss_mb).values()]
            run.client = None
        preload.join()
        return units, joined, hz
