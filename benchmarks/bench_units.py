"""Benchmark: building traffic units, beside osmnx loading and simplifying the same network.

Run on demand: ``.venv/bin/python benchmarks/bench_units.py [--n 320] [--skip-real]``, and the
region-scale build alone with ``--scale 708`` (wrap that in ``flock /tmp/bigrun.lock``).

What is compared (equal work, from the same OSM XML file, in the same run):

- trafficunit: ``tu.read_network(path)`` (parse the XML, keep drivable ways, normalise tags)
  + ``tu.build_units(roads, max_length_m=200)`` (nodes, chains, segments, intersections,
  attributes, adjacency, ids);
- osmnx: ``ox.graph_from_xml(path, simplify=True, retain_all=True)`` (parse the XML, build the
  graph, simplify it to edges between junctions).

The ratio is osmnx's time over trafficunit's read + build. Edges/s count the generated city's
graph edges between junctions (``2 n (n - 1)``); "build alone" is ``build_units`` only. On a
real PBF extract osmnx cannot read the file, so only trafficunit is timed.

``--scale N`` times ``read_network`` + ``build_units`` (default options) on the GENERATED
GeoParquet street grid of ``benchmarks/bench_scale.py`` (``2 N (N - 1)`` edges; N = 708 gives
1,001,112) in a fresh process, and prints its peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import osmnx as ox

import trafficunit as tu

try:
    from _synthetic import grid_city_osm
except ImportError:  # run as a module
    from benchmarks._synthetic import grid_city_osm

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "osm"


def _time(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def bench(path: Path, label: str, edges_hint: int | None = None) -> None:
    roads, t_read = _time(lambda: tu.read_network(path))
    units, t_build = _time(lambda: tu.build_units(roads, max_length_m=200))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph, t_ox = _time(
            lambda: (
                ox.graph_from_xml(path, simplify=True, retain_all=True)
                if path.suffix != ".pbf"
                else None
            )
        )
    n_edges = edges_hint or len(roads)
    ours = t_read + t_build
    print(f"\n== {label}: {path.name} (load average {_load()})")
    print(f"roads {len(roads):,} lines, units {len(units):,}, graph edges ~{n_edges:,}")
    print(
        f"trafficunit read_network + build_units: read {t_read:.2f} s + build {t_build:.2f} s"
        f" = {ours:.2f} s ({n_edges / ours:,.0f} edges/s; build alone {n_edges / t_build:,.0f}"
        " edges/s)"
    )
    if graph is not None:
        print(
            f"osmnx graph_from_xml(simplify=True) of the same file: {t_ox:.2f} s "
            f"({n_edges / t_ox:,.0f} edges/s), {graph.number_of_edges():,} directed edges"
        )
        print(f"ratio osmnx / trafficunit (read + build): {t_ox / ours:.2f}x")
    else:
        print("osmnx cannot read PBF directly: not compared on this file")


def scale_run(path: Path) -> None:
    """Read and build the generated GeoParquet grid in this (fresh) process; one JSON line."""
    warnings.simplefilter("ignore")
    roads, t_read = _time(lambda: tu.read_network(path))
    c0 = time.process_time()
    units, t_build = _time(lambda: tu.build_units(roads))
    cpu = time.process_time() - c0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out = {"read_s": t_read, "build_s": t_build, "build_cpu_s": cpu, "units": len(units)}
    print("RESULT " + json.dumps({**out, "peak_mb": peak_mb}), flush=True)


def scale(n: int) -> None:
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    from bench_scale import grid_city_lines

    edges = 2 * n * (n - 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "roads.parquet"
        roads = grid_city_lines(n)[0]
        roads.to_parquet(path)
        del roads
        load_before = _load()
        proc = subprocess.run(
            [sys.executable, __file__, "--scale-run", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
    res = json.loads(proc.stdout.split("RESULT ", 1)[1])
    print(f"\n== generated GeoParquet grid city (bench_scale.py), {edges:,} edges")
    print(f"load average before {load_before} -> after {_load()}")
    print(
        f"read_network {res['read_s']:.1f} s; build_units {res['build_s']:.1f} s "
        f"({res['build_cpu_s']:.1f} CPU-s), {res['units']:,} units: "
        f"{edges / res['build_s']:,.0f} edges/s; peak RSS {res['peak_mb'] / 1024:.2f} GB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=320, help="grid size (2n(n-1) edges)")
    ap.add_argument("--skip-real", action="store_true", help="only the generated grid city")
    ap.add_argument("--scale", type=int, default=None, help="only the GeoParquet grid of size N")
    ap.add_argument("--scale-run", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.scale_run:
        scale_run(args.scale_run)
        return
    if args.scale:
        scale(args.scale)
        return
    real = SHARED / "columbus.osm.pbf"
    if real.exists() and not args.skip_real:
        bench(real, "largest real extract (Columbus OH)")
        xml = SHARED / "north-bayreuth.osm.gz"
        if xml.exists():
            bench(xml, "real XML extract (North Bayreuth)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "grid-city.osm"
        edges = grid_city_osm(path, n=args.n)
        bench(path, f"generated grid city ({edges:,} edges)", edges)


if __name__ == "__main__":
    main()
