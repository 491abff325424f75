"""run_pipeline: build, join and score, on Dask or in this process."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd

from .._validate import metric_crs, require_gdf
from ..settings import DistributedSettings, JoinSettings, RiskSettings, UnitSettings
from ._build import build_units
from ._cluster import _peak_rss_mb, _preload, _reset_peak_rss, cluster
from ._grid import _Stats
from ._join import assign
from ._staging import _frame_digest, _Staging

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
    from ..join import assign as plain_assign
    from ..risk import score
    from ..units import build_units as plain_build

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
            from ..io import read_table

            df: gpd.GeoDataFrame = read_table(
                store.path(f"{name}.parquet"), index="unit_id" if name == "units" else None
            )
            return df
        df = compute()
        if store is not None:
            from ..io import write_table

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
        from ..io import write_table

        write_table(risk, store.path("risk.parquet"))
        (store.path("report.json")).write_text(json.dumps(report, indent=2, default=str))
        store.commit()
    return PipelineResult(units, joined, risk, hz, report)
