"""Benchmark: joining accidents to traffic units, beside geopandas ``sjoin_nearest``.

Run on demand: ``.venv/bin/python benchmarks/bench_join.py [--n 230] [--events 1000000]``.

A generated (not real) perturbed street grid of n×n junctions ~90 m apart is built into units
with ``tu.build_units`` (n=230 gives ~105,000 segments + ~53,000 intersections); accidents are
scattered along the segments with a normal offset of 12 m (about 4% land beyond 25 m) plus 1%
anywhere in the city. Both joins get the same GeoDataFrames in the same metric CRS
(EPSG:3067), in the same run:

- ``tu.assign(units, events, max_distance_m=25)``: nearest segment within 25 m, intersection
  discs first, deterministic ties, ``measure_m`` along the unit, match status, report;
- ``geopandas.sjoin_nearest(events, units, how="left", max_distance=25, distance_col=...)``:
  nearest unit within 25 m (all ties, no measure, no intersection rule).

A third line times ``tu.assign`` on the same data in EPSG:4326 (projection included).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

import trafficunit as tu


def grid_roads(n: int, spacing: float = 90.0, seed: int = 0) -> gpd.GeoDataFrame:
    """Streets of a perturbed n×n grid as lines of 10 blocks, EPSG:3067 (around Helsinki)."""
    rng = np.random.default_rng(seed)
    x0, y0 = 370_000.0, 6_660_000.0
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    x = x0 + jj * spacing + rng.normal(0, spacing * 0.08, ii.shape)
    y = y0 + ii * spacing + rng.normal(0, spacing * 0.08, ii.shape)
    lines, classes, names = [], [], []
    block = 10
    for axis in (0, 1):
        for k in range(n):
            for s in range(0, n - 1, block):
                idx = np.arange(s, min(s + block, n - 1) + 1)
                if axis == 0:
                    xy = np.column_stack([x[k, idx], y[k, idx]])
                else:
                    xy = np.column_stack([x[idx, k], y[idx, k]])
                lines.append(shapely.LineString(xy))
                classes.append("primary" if k % 7 == 0 else "residential")
                names.append(f"Street {axis}-{k}")
    return gpd.GeoDataFrame({"highway": classes, "name": names}, geometry=lines, crs="EPSG:3067")


def scatter_accidents(units: gpd.GeoDataFrame, m: int, seed: int = 1) -> gpd.GeoDataFrame:
    """m accidents near segment units (normal offset, sd 12 m) and 1% anywhere."""
    rng = np.random.default_rng(seed)
    segs = units.geometry.to_numpy()[(units["kind"] == "segment").to_numpy()]
    n_near = int(m * 0.99)
    pick = rng.integers(0, len(segs), n_near)
    t = rng.random(n_near)
    on = shapely.line_interpolate_point(segs[pick], t, normalized=True)
    xy = shapely.get_coordinates(on)
    ang = rng.random(n_near) * 2 * np.pi
    r = np.abs(rng.normal(0, 12.0, n_near))
    xy[:, 0] += r * np.cos(ang)
    xy[:, 1] += r * np.sin(ang)
    minx, miny, maxx, maxy = units.total_bounds
    far = np.column_stack(
        [
            rng.uniform(minx - 500, maxx + 500, m - n_near),
            rng.uniform(miny - 500, maxy + 500, m - n_near),
        ]
    )
    xy = np.vstack([xy, far])
    sev = rng.choice(list("KABCO"), m, p=[0.005, 0.03, 0.2, 0.1, 0.665])
    return gpd.GeoDataFrame(
        {
            "event_id": pd.array(np.arange(m).astype(str), dtype="string"),
            "kind": "accident",
            "severity": sev,
            "year": rng.integers(2015, 2025, m),
        },
        geometry=shapely.points(xy),
        crs=units.crs,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=230, help="grid size (junctions per side)")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2, help="runs per method (best is kept)")
    args = ap.parse_args()

    t = time.perf_counter()
    roads = grid_roads(args.n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        units = tu.build_units(tu.read_network(roads))
    n_seg = int((units["kind"] == "segment").sum())
    print(
        f"generated grid {args.n}x{args.n}: {len(units):,} units ({n_seg:,} segments, "
        f"{len(units) - n_seg:,} intersections) in {time.perf_counter() - t:.1f} s"
    )
    events = scatter_accidents(units, args.events)
    print(f"{len(events):,} generated accidents, CRS {events.crs}")

    def best(fn: Callable[[], Any]) -> tuple[Any, float]:
        times: list[float] = []
        out = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return out, min(times)

    ours, t_ours = best(lambda: tu.assign(units, events, max_distance_m=25))
    right = units.reset_index()[["unit_id", "kind", "geometry"]].rename(
        columns={"kind": "unit_kind"}
    )
    theirs, t_gpd = best(
        lambda: gpd.sjoin_nearest(
            events, right, how="left", max_distance=25, distance_col="distance_m"
        )
    )
    ev4326 = events.to_crs(4326)
    un4326 = units.to_crs(4326)
    ours4326, t_4326 = best(lambda: tu.assign(un4326, ev4326, max_distance_m=25))

    r = ours.attrs["report"]
    matched_gpd = int(theirs["unit_id"].notna().groupby(level=0).any().sum())
    print(f"\ntrafficunit assign:          {t_ours:6.2f} s  ({len(events) / t_ours:,.0f} events/s)")
    print(f"  by match: {r['by_match']}")
    print(
        f"geopandas sjoin_nearest:     {t_gpd:6.2f} s  ({len(events) / t_gpd:,.0f} events/s), "
        f"{len(theirs):,} rows, {matched_gpd:,} events matched"
    )
    print(f"trafficunit assign, EPSG:4326 in (projection included): {t_4326:6.2f} s")
    print(f"\nratio sjoin_nearest / assign: {t_gpd / t_ours:.2f}x (>1 means trafficunit is faster)")
    print(
        "agreement: same unit for "
        f"{_agree(ours, theirs):.2%} of events matched to a segment by both"
    )
    del ours4326


def _agree(ours: gpd.GeoDataFrame, theirs: gpd.GeoDataFrame) -> float:
    first = theirs[~theirs.index.duplicated(keep="first")]
    seg = (ours["match"] == "matched").to_numpy() & (first["unit_kind"] == "segment").to_numpy()
    if not seg.any():
        return float("nan")
    same = ours["unit_id"].to_numpy()[seg] == first["unit_id"].to_numpy()[seg]
    return float(np.mean(same))


if __name__ == "__main__":
    main()
