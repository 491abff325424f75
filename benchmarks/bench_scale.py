"""Benchmark: build → join → score at region scale, single process vs a local Dask cluster.

Run on demand: ``.venv/bin/python benchmarks/bench_scale.py [--n 708 | --edges 200000]
[--accidents 5000000]``.

A GENERATED grid city (not real data) of ``2 n (n - 1)`` street edges (n = 708: 1,001,112
edges between junctions, ~64 km across, ways of ten blocks as in OSM) is written as a GeoParquet
line network, with ``--accidents`` generated accidents on its streets (severity, time over
three years). Each mode then runs in a fresh process, reading the same files:

- ``single``: ``tu.build_units`` → ``tu.assign`` → ``tu.score`` (``run_pipeline(scheduler=None)``);
- ``dask``: ``run_pipeline`` on a local cluster of ``--workers`` worker processes.

Printed side by side: the time of each stage and the peak memory (resident set size) of the
client process and of the workers. The two runs must agree: the same unit ids, the same
match of every accident, the same crash counts and levels (checked through digests).

``--repeat N`` runs the modes alternately N times (single, dask, single, dask...), so a
machine shared with other work loads both alike; the table shows each mode's median run
and the ratio is the median of the per-round ratios. The load average is printed before
and after, and the CPU seconds of each mode's whole process tree (client, scheduler,
nannies, workers), which depend on the load far less than wall time (contention for caches
still inflates them by up to a third on a busy machine): on a shared machine (Linux shares the
CPU between sessions, so two busy workers split one session's share) they show the work the
cluster adds, and so the best its two workers could do on two idle cores. Per stage they are
split into this process, the workers, and the workers' time inside the tasks (the rest is
Dask's: serialisation, the event loop). The kernel's share of the CPU seconds and the minor
page faults are printed apart: on a virtual machine whose host backs a page only when it is
first touched, faulting fresh pages in (new arrays, the page cache of written files) costs
tens of microseconds each, and that share changes with the host and the allocator
(``ARROW_DEFAULT_MEMORY_POOL``; the pool in use is printed) as much as with this code. Each
worker has a memory limit (``--memory-limit``, default 3GB: Dask spills to disk above 60 % of
it and pauses the worker at 80 %).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

HERE = Path(__file__).resolve()


def grid_city_lines(n: int, *, spacing_m: float = 90.0, block: int = 10, seed: int = 0) -> Any:
    """A perturbed n x n street grid as road lines (ways of ``block`` blocks), EPSG:4326.

    Returns (roads, node x, node y in EPSG:3067) — the node arrays let accidents be drawn on
    the streets without touching the geometries. Every 7th street is primary.
    """
    rng = np.random.default_rng(seed)
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    x = 385_000.0 + jj * spacing_m + rng.normal(0, spacing_m * 0.08, ii.shape)
    y = 6_650_000.0 + ii * spacing_m + rng.normal(0, spacing_m * 0.08, ii.shape)
    starts = np.arange(0, n - 1, block)
    stops = np.minimum(starts + block, n - 1)
    counts = stops - starts + 1
    coords, sizes, cls, name = [], [], [], []
    for axis in (0, 1):
        for k in range(n):
            xs, ys = (x[k], y[k]) if axis == 0 else (x[:, k], y[:, k])
            idx = np.concatenate([np.arange(a, b + 1) for a, b in zip(starts, stops, strict=True)])
            coords.append(np.c_[xs[idx], ys[idx]])
            sizes.append(counts)
            cls.extend(["primary" if k % 7 == 0 else "residential"] * len(counts))
            name.extend([f"St {axis}-{k}"] * len(counts))
    xy = np.concatenate(coords)
    n_lines = int(np.concatenate(sizes).shape[0])
    line_of = np.repeat(np.arange(n_lines), np.concatenate(sizes))
    geoms = shapely.linestrings(xy, indices=line_of)
    speeds = np.array([30.0, 40.0, 50.0, 60.0])
    roads = gpd.GeoDataFrame(
        {
            "osm_id": np.arange(1, n_lines + 1, dtype=np.int64),
            "highway": cls,
            "maxspeed_kmh": speeds[rng.integers(len(speeds), size=n_lines)],
            "name": name,
        },
        geometry=geoms,
        crs=3067,
    ).to_crs(4326)
    return roads, x, y


def accidents_on_grid(
    x: np.ndarray, y: np.ndarray, n_events: int, *, seed: int = 1
) -> gpd.GeoDataFrame:
    """``n_events`` GENERATED accidents on the grid's streets (EPSG:4326), a third near a
    junction, with KABCO severity and a time in 2016-2018."""
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    axis = rng.integers(2, size=n_events)
    a = rng.integers(n, size=n_events)
    b = rng.integers(n - 1, size=n_events)
    i0 = np.where(axis == 0, a, b)
    j0 = np.where(axis == 0, b, a)
    i1 = np.where(axis == 0, i0, i0 + 1)
    j1 = np.where(axis == 0, j0 + 1, j0)
    t = np.where(rng.random(n_events) < 0.33, rng.random(n_events) * 0.15, rng.random(n_events))
    px = x[i0, j0] + (x[i1, j1] - x[i0, j0]) * t + rng.normal(0, 4.0, n_events)
    py = y[i0, j0] + (y[i1, j1] - y[i0, j0]) * t + rng.normal(0, 4.0, n_events)
    sev = np.array(["K", "A", "B", "C", "O"])[
        rng.choice(5, size=n_events, p=[0.01, 0.05, 0.14, 0.2, 0.6])
    ]
    t0 = pd.Timestamp("2016-01-01", tz="Europe/Helsinki")
    secs = rng.integers(0, 3 * 365 * 86400, size=n_events)
    time_ = t0 + pd.to_timedelta(secs, unit="s")
    events = gpd.GeoDataFrame(
        {
            "event_id": pd.Series(
                np.char.add("g", np.arange(n_events).astype(str)), dtype="string"
            ),
            "kind": "accident",
            "time": time_,
            "year": pd.Series(np.asarray(time_.year), dtype="Int64"),
            "severity": pd.array(sev, dtype="string"),
        },
        geometry=shapely.points(px, py),
        crs=3067,
    )
    return events.to_crs(4326)


def _arrow_pool() -> str:
    """The Arrow memory pool the runs use (``ARROW_DEFAULT_MEMORY_POOL`` chooses it): its
    allocator returns memory to the system on its own schedule, which decides how many pages
    are faulted in anew."""
    import pyarrow as pa

    return str(pa.default_memory_pool().backend_name)


def _digest(values: Any, chunk: int = 262_144) -> str:
    """The values as text, one a line, hashed (in chunks: no Python string per value at once)."""
    s = pd.Series(values)
    h = hashlib.sha256()
    for i in range(0, len(s), chunk):
        arr = s.iloc[i : i + chunk].astype("string").fillna("<NA>").to_numpy(dtype=object)
        h.update(("\n" if i else "").encode() + "\n".join(arr).encode())
    return h.hexdigest()[:16]


def _cpu_cell(cpu: dict[str, float]) -> str:
    """``client + workers (in tasks)``: CPU seconds of a stage."""
    if not cpu:
        return "-"
    text = " + ".join(f"{cpu[k]:.1f}" for k in ("client", "workers") if k in cpu)
    return text + (f" ({cpu['in tasks']:.1f})" if "in tasks" in cpu else "")


def _load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def _peak_mb() -> float:
    from trafficunit.distributed import _peak_rss_mb

    return _peak_rss_mb()


def run_mode(
    mode: str,
    data: Path,
    workers: int,
    cell_size_m: float | None,
    memory_limit: str,
    *,
    in_memory: bool = False,
    outdir: Path | None = None,
    keep: Path | None = None,
) -> None:
    """One mode in this (fresh) process; prints one JSON line."""
    import trafficunit as tu
    from trafficunit import distributed
    from trafficunit.settings import DistributedSettings

    warnings.simplefilter("ignore")
    cfg = DistributedSettings(n_workers=workers, cell_size_m=cell_size_m, memory_limit=memory_limit)
    t_read = 0.0
    if in_memory:  # this process reads the roads, the run the accidents, and no outdir
        t = time.perf_counter()
        roads: Any = tu.read_network(data / "roads.parquet")
        t_read = time.perf_counter() - t
        # by path: in a single process read as coordinate arrays (Dask: a GeoDataFrame)
        acc: Any = data / "accidents.parquet"
    else:  # both modes start from the files, reading counted in the pipeline's time
        roads, acc = data / "roads.parquet", data / "accidents.parquet"
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=outdir) as tmp:
        # --keep: the partitions in a lasting directory, so a killed run resumes from them
        target = keep / mode if keep is not None else Path(tmp) / "out"
        res = distributed.run_pipeline(
            roads,
            acc,
            scheduler=None if mode == "single" else "local",
            settings=cfg,
            # from files to files: both modes write their results (units, joined, risk)
            outdir=None if in_memory else target,
        )
        t = time.perf_counter()
        units = res.units.read(["kind"]) if hasattr(res.units, "read") else res.units
        joined = res.joined.read(["unit_id"]) if hasattr(res.joined, "read") else res.joined
        risk = (
            res.risk.read(["crashes", "level", "eb_expected"])
            if hasattr(res.risk, "read")
            else res.risk
        )
        t_results = time.perf_counter() - t
        t_read += res.report["seconds"].get("read accidents", 0.0)
    out = {
        "mode": mode,
        "read_s": round(res.report["seconds"].get("read", t_read), 2),
        "read_results_s": round(t_results, 2),
        "seconds": res.report["seconds"],
        "cells": res.report["cells"],
        "tasks": res.report["tasks"],
        "halo_retries": res.report["halo_retries"],
        # the pipeline resets the peak between stages: the largest of its stages' peaks
        "client_peak_mb": round(
            max(_peak_mb(), *res.report.get("client_peak_rss_mb", {}).values())
        ),
        "stage_peaks_mb": res.report.get("client_peak_rss_mb", {}),
        "worker_peaks_mb": res.report["worker_peak_rss_mb"],
        "worker_stage_peaks_mb": res.report.get("worker_stage_peak_rss_mb", {}),
        "stage_cpu_s": res.report.get("cpu_seconds", {}),
        "resumed": res.report.get("resumed", False),
        "units": len(units),
        "accidents": res.report["accidents"],
        "matched": int(joined["unit_id"].notna().sum()),
        "digest_units": _digest(units.index),
        "digest_joined": _digest(joined["unit_id"]),
        "digest_risk": _digest(
            risk["crashes"].astype(str)
            + risk["level"].astype(str)
            + risk["eb_expected"].round(9).astype(str)
        ),
        "levels": {k: int(v) for k, v in risk["level"].value_counts().items()},
    }
    print("RESULT " + json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=708, help="grid size: 2n(n-1) edges")
    ap.add_argument("--edges", type=int, default=None, help="about this many edges (sets --n)")
    ap.add_argument("--accidents", type=int, default=5_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cell-size-m", type=float, default=None)
    ap.add_argument("--data", type=Path, default=None, help="reuse/keep generated data here")
    ap.add_argument("--modes", default="single,dask")
    ap.add_argument("--repeat", type=int, default=1, help="alternate the modes N times")
    ap.add_argument("--memory-limit", default="3GB", help="per Dask worker")
    ap.add_argument(
        "--in-memory",
        action="store_true",
        help="roads read here, accidents by path, no outdir (reading not in the total)",
    )
    ap.add_argument("--outdir", type=Path, default=None, help="Dask's partitions go here")
    ap.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="write the Dask run's output to KEEP/dask and keep it (a killed run resumes)",
    )
    ap.add_argument("--run", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.edges:
        args.n = max(2, round((1 + math.sqrt(1 + 2 * args.edges)) / 2))
    if args.run:
        run_mode(
            args.run,
            args.data,
            args.workers,
            args.cell_size_m,
            args.memory_limit,
            in_memory=args.in_memory,
            outdir=args.outdir,
            keep=args.keep,
        )
        return
    tmp = None
    data = args.data
    if data is None:
        tmp = tempfile.TemporaryDirectory()
        data = Path(tmp.name)
    data.mkdir(parents=True, exist_ok=True)
    edges = 2 * args.n * (args.n - 1)
    if not (data / "roads.parquet").exists() or not (data / "accidents.parquet").exists():
        t = time.perf_counter()
        roads, x, y = grid_city_lines(args.n)
        roads.to_parquet(data / "roads.parquet")
        accidents_on_grid(x, y, args.accidents).to_parquet(data / "accidents.parquet")
        print(
            f"generated {edges:,} edges ({len(roads):,} ways) and {args.accidents:,} accidents "
            f"in {time.perf_counter() - t:.0f} s (GENERATED data, not real)",
            flush=True,
        )
    load_before = _load()
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.repeat):
        for mode in args.modes.split(","):
            cmd = [
                sys.executable,
                str(HERE),
                "--run",
                mode,
                "--data",
                str(data),
                "--workers",
                str(args.workers),
                "--memory-limit",
                args.memory_limit,
            ]
            if args.cell_size_m:
                cmd += ["--cell-size-m", str(args.cell_size_m)]
            if args.in_memory:
                cmd += ["--in-memory"]
            if args.outdir:
                cmd += ["--outdir", str(args.outdir)]
            if args.keep:
                cmd += ["--keep", str(args.keep)]
            t = time.perf_counter()
            c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall = time.perf_counter() - t
            # CPU of the whole process tree (client, scheduler, nannies, workers: all reaped),
            # the kernel's share (page faults, I/O) and the minor page faults apart: on a VM
            # whose fresh pages are expensive, the kernel's share is the host's, not the code's
            kernel = c1.ru_stime - c0.ru_stime
            cpu = c1.ru_utime - c0.ru_utime + kernel
            faults = c1.ru_minflt - c0.ru_minflt
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not line:
                print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{mode} run failed (exit {proc.returncode})")
            r = json.loads(line[0][7:])
            r["wall_s"] = round(wall, 1)
            r["cpu_s"] = round(cpu, 1)
            r["kernel_s"] = round(kernel, 1)
            r["faults"] = faults
            runs.setdefault(mode, []).append(r)
            print(
                f"  {mode}: pipeline {r['seconds']['total']:.1f} s "
                f"(cluster start {r['seconds'].get('cluster start', 0):.1f} s), "
                f"peak RSS {r['client_peak_mb'] + sum(r['worker_peaks_mb']):,} MB; digests "
                f"{r['digest_units']} {r['digest_joined']} {r['digest_risk']}",
                flush=True,
            )
    # each mode's median run (by pipeline time) for the table
    results = {
        m: sorted(rs, key=lambda r: r["seconds"]["total"])[(len(rs) - 1) // 2]
        for m, rs in runs.items()
    }
    print(
        f"\n== build -> join -> score: generated grid city in {data} "
        f"({next(iter(results.values()))['units']:,} units, "
        f"{next(iter(results.values()))['accidents']:,} accidents)"
    )
    modes = list(results)
    label = {"single": "single process", "dask": f"dask, {args.workers} local workers"}
    print(f"{'':28}" + "".join(f"{label.get(m, m):>26}" for m in modes))
    rows = [
        ("read inputs (s)", lambda r: f"{r['read_s']:.1f}"),
        ("partition on workers (s)", lambda r: f"{r['seconds'].get('partition roads', 0):.1f}"),
        ("start cluster (s)", lambda r: f"{r['seconds'].get('cluster start', 0):.1f}"),
        ("build units (s)", lambda r: f"{r['seconds'].get('build', 0):.1f}"),
        ("join accidents (s)", lambda r: f"{r['seconds'].get('join', 0):.1f}"),
        ("score (s)", lambda r: f"{r['seconds'].get('score', 0):.1f}"),
        ("pipeline total (s)", lambda r: f"{r['seconds'].get('total', 0):.1f}"),
        ("process wall incl. start (s)", lambda r: f"{r['wall_s']:.1f}"),
        ("CPU, all its processes (s)", lambda r: f"{r['cpu_s']:.1f}"),
        ("  of which in the kernel (s)", lambda r: f"{r['kernel_s']:.1f}"),
        ("  minor page faults", lambda r: f"{r['faults']:,}"),
        *[
            (
                f"  CPU {st}: client + workers (tasks)",
                lambda r, st=st: _cpu_cell(r["stage_cpu_s"].get(st, {})),
            )
            for st in ("build", "join", "score")
        ],
        ("peak RSS client (MB)", lambda r: f"{r['client_peak_mb']:,}"),
        *[
            (f"  in stage {st} (MB)", lambda r, st=st: f"{r['stage_peaks_mb'].get(st, 0):,}")
            for st in ("inputs", "build", "join", "score", "output")
        ],
        *[
            (
                f"  workers in stage {st} (MB)",
                lambda r, st=st: (
                    " + ".join(f"{p:,}" for p in r["worker_stage_peaks_mb"].get(st, [])) or "-"
                ),
            )
            for st in ("build", "join", "score")
        ],
        (
            "peak RSS workers (MB)",
            lambda r: " + ".join(f"{p:,}" for p in r["worker_peaks_mb"]) or "-",
        ),
        ("peak RSS sum (MB)", lambda r: f"{r['client_peak_mb'] + sum(r['worker_peaks_mb']):,}"),
        ("resumed a killed run", lambda r: str(r.get("resumed", False))),
        (
            "cells / build tasks / retries",
            lambda r: f"{r['cells']} / {r['tasks']} / {r['halo_retries']}",
        ),
        ("units", lambda r: f"{r['units']:,}"),
        ("accidents on a unit", lambda r: f"{r['matched']:,}"),
    ]
    for name, fn in rows:
        print(f"{name:28}" + "".join(f"{fn(results[m]):>26}" for m in modes))
    print(
        f"load average (1, 5, 15 min) before: {load_before}, after: {_load()} on "
        f"{os.cpu_count()} CPUs; Arrow memory pool: {_arrow_pool()}"
    )
    if len(modes) == 2:
        a_runs, b_runs = runs[modes[0]], runs[modes[1]]
        keys = ("digest_units", "digest_joined", "digest_risk", "levels")
        same = all(r[k] == a_runs[0][k] for r in a_runs + b_runs for k in keys)

        def ratio(key: Any) -> str:
            per_round = [key(x) / key(y) for x, y in zip(a_runs, b_runs, strict=True)]
            return (
                f"{statistics.median(per_round):.2f}x ({', '.join(f'{v:.2f}' for v in per_round)})"
            )

        print(
            f"ratio {modes[0]} / {modes[1]} pipeline time, median of {len(a_runs)} rounds: "
            f"{ratio(lambda r: r['seconds']['total'])}; without the cluster start: "
            f"{ratio(lambda r: r['seconds']['total'] - r['seconds'].get('cluster start', 0))}; "
            f"results identical: {same}"
        )
        # CPU seconds do not depend on how busy the machine is: the work the cluster adds
        print(f"CPU seconds {modes[1]} / {modes[0]}, whole run: {ratio(lambda r: 1 / r['cpu_s'])}")
        print(
            f"CPU seconds outside the kernel {modes[1]} / {modes[0]}: "
            f"{ratio(lambda r: 1 / (r['cpu_s'] - r['kernel_s']))}"
        )
        if not same:
            raise SystemExit("the runs disagree")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
