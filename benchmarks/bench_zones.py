"""Benchmark: units to their jurisdiction zone by the longest-part rule, beside geopandas overlay.

Run on demand: ``.venv/bin/python benchmarks/bench_zones.py [--n 160] [--repeat 3]``.

A generated (not real) perturbed street grid of n×n junctions ~90 m apart
(``bench_join.grid_roads``) is built into units; ``tu.zones.generate_zones`` cuts its extent into
the GENERATED admin tree (32 communities as leaves). Both sides get the same segment units in
EPSG:4326 (the overlay takes one geometry type) and answer the same question, in the same run:

- ``tu.zones.assign_units(units, zones, trees=["admin"])``: leaf by longest part (one STRtree
  query, one vectorised intersection over the candidate pairs, UTM lengths), then every level's
  code from the leaf's ancestors;
- the peer: ``geopandas.overlay(units, leaves, how="intersection", keep_geom_type=False)`` in
  the same UTM CRS, length per piece, ``idxmax`` per unit (leaf codes only, no ancestors).

Prints the seconds of each (best of ``--repeat``), the ratio, and whether the leaves agree.

Then the road chief of every unit (what ``/units`` joins as it answers, recomputed when an
appointment changes): ``roadchiefs.chiefs_for_units`` with 200 appointments by road name and
one per generated grid, over the same units.
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import geopandas as gpd
import pandas as pd
from bench_join import grid_roads  # type: ignore[import-not-found]

import trafficunit as tu


def peer(units: gpd.GeoDataFrame, leaves: gpd.GeoDataFrame) -> pd.Series:
    crs = units.estimate_utm_crs()
    u = units[["geometry"]].reset_index().to_crs(crs)
    z = leaves[["code", "geometry"]].to_crs(crs)
    pieces = gpd.overlay(u, z, how="intersection", keep_geom_type=False)
    pieces["m"] = pieces.length
    pieces = pieces.sort_values(["unit_id", "m", "code"], ascending=[True, False, True])
    return pieces.drop_duplicates("unit_id").set_index("unit_id")["code"]


def best(fn: Any, repeat: int) -> tuple[float, Any]:
    out, times = None, []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=160)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        units = tu.build_units(grid_roads(a.n)).to_crs(4326)
    units = units[units["kind"] == "segment"]  # overlay needs one geometry type
    zones = tu.zones.generate_zones(units)
    leaves = zones.leaves("admin")
    print(f"GENERATED grid n={a.n}: {len(units):,} units, {len(leaves)} leaf zones")
    t_tu, ours = best(lambda: tu.zones.assign_units(units, zones, trees=["admin"]), a.repeat)
    t_peer, theirs = best(lambda: peer(units, leaves), a.repeat)
    ours_leaf = ours["zone_admin_community"]
    agree = (ours_leaf.reindex(theirs.index).astype(str) == theirs.astype(str)).mean()
    print(f"tu.zones.assign_units (all 4 levels): {t_tu:.3f} s")
    print(f"geopandas.overlay + idxmax (leaf):    {t_peer:.3f} s")
    print(f"ratio overlay / assign_units: {t_peer / t_tu:.1f}x; leaves agree on {agree:.2%}")
    t_ch, n_ch, got = bench_chiefs(units, zones, a.repeat)
    print(f"chiefs_for_units ({n_ch} appointments): {t_ch:.3f} s; units with a chief {got:,}")


def bench_chiefs(units: gpd.GeoDataFrame, zones: Any, repeat: int) -> tuple[float, int, int]:
    """Seconds of the chief of every unit (best of ``repeat``), appointments, units served."""
    from trafficunit.ledger.roadchiefs import chiefs_for_units

    names = units["name"].dropna().str.split(";").explode().str.strip().unique()[:200]
    grids = zones.level("grid", "grid")["code"].tolist()
    base = {"body": None, "tree": None, "valid_from": "2000-01-01T00:00:00Z", "valid_to": None}
    chiefs = [
        {**base, "id": f"RC{i + 1}", "name": f"chief {i}", "scope": "road_name", "targets": [nm]}
        for i, nm in enumerate(names)
    ] + [
        {**base, "id": f"RC{1000 + j}", "name": f"grid {g}", "scope": "grid", "targets": [g]}
        | {"tree": "grid"}
        for j, g in enumerate(grids)
    ]
    uz = tu.zones.assign_units(units, zones)
    t, out = best(lambda: chiefs_for_units(chiefs, units, unit_zones=uz), repeat)
    return t, len(chiefs), int(out["road_chief"].notna().sum())


if __name__ == "__main__":
    main()
