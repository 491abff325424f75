"""Benchmark: building traffic units, beside osmnx loading and simplifying the same network.

Run on demand: ``.venv/bin/python benchmarks/bench_units.py [--n 320]``.
Prints edges/s for trafficunit (read + build) and for osmnx (graph_from_xml + simplify) on the
largest real extract in ../shared/data/osm and on a generated grid city (>= 200,000 edges).
"""

from __future__ import annotations

import argparse
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
    print(f"\n== {label}: {path.name}")
    print(f"roads {len(roads):,} lines, units {len(units):,}, graph edges ~{n_edges:,}")
    print(
        f"trafficunit: read {t_read:.2f} s + build {t_build:.2f} s = {ours:.2f} s "
        f"({n_edges / ours:,.0f} edges/s; build alone {n_edges / t_build:,.0f} edges/s)"
    )
    if graph is not None:
        print(
            f"osmnx graph_from_xml+simplify: {t_ox:.2f} s ({n_edges / t_ox:,.0f} edges/s), "
            f"{graph.number_of_edges():,} directed edges"
        )
        print(f"ratio osmnx / trafficunit: {t_ox / ours:.1f}x")
    else:
        print("osmnx cannot read PBF directly: not compared on this file")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=320, help="grid size (2n(n-1) edges)")
    args = ap.parse_args()
    real = SHARED / "columbus.osm.pbf"
    if real.exists():
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
