"""Benchmark: ``tu.match_trace`` beside leuvenmapmatching on the same generated traces.

Run on demand (leuvenmapmatching is not a dependency):
``.venv/bin/uv pip install leuvenmapmatching`` then
``.venv/bin/python benchmarks/bench_match.py [--extract oslo-east] [--routes 8] [--interval 5]
[--noise 15]``.

Traces are generated (not real): ``tu.traces.generate_trace`` drives routes between random
segments of a real OSM extract (``../shared/data/osm``) at the units' speed limits, samples
every ``--interval`` s and adds Gaussian noise of ``--noise`` m on each axis. Both matchers get
the same points in the same metric CRS in the same run:

- ``tu.match_trace(graph, trace, sigma_m=noise)`` with a prebuilt ``UnitGraph`` (built once,
  timed separately);
- leuvenmapmatching ``DistanceMatcher`` on an ``InMemMap`` of the same units (every vertex a
  node, every piece an edge, one-way respected, segment ends joined at their intersection's
  centre), ``obs_noise=2 * noise`` (with ``noise`` it stops early on most traces),
  ``max_dist=150``, ``max_lattice_width=10``, ``non_emitting_states=True`` (needed: a 5 s
  step skips several edges); its matched edges map back to units. Observations after an
  early stop (the matcher found no way on) count as wrong.

Accuracy is the share of points matched to the unit that generated them ("strict") and to a
unit of the driven route (a link inside a junction on it counts; "on route"). mappymatch pins
pandas < 3 and does not install beside trafficunit; it is not run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

import trafficunit as tu
from trafficunit.routing import Route, UnitGraph
from trafficunit.traces import generate_trace

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "osm"


def routes(units: gpd.GeoDataFrame, graph: UnitGraph, n: int, seed: int) -> list[Route]:
    """n routes of 2-6 km between random segments."""
    rng = np.random.default_rng(seed)
    segs = units.index[(units["kind"] == "segment") & units["junction_id"].isna()].to_numpy()
    out: list[Route] = []
    tries = 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        a, b = rng.choice(segs, 2, replace=False)
        try:
            r = tu.route(
                graph,
                units.geometry[a].interpolate(0.5, normalized=True),
                units.geometry[b].interpolate(0.5, normalized=True),
            )
        except tu.ValidationError:
            continue
        if 2000 <= r.length_m <= 6000:
            out.append(r)
    return out


def leuven_map(graph: UnitGraph) -> tuple[Any, dict[tuple[int, int], int]]:
    """InMemMap of the segment units in the graph's metric CRS; (node, node) → unit row."""
    from leuvenmapmatching.map.inmem import InMemMap

    m = InMemMap("units", use_latlon=False, use_rtree=True, index_edges=True)
    segs = np.flatnonzero(graph.is_seg)
    xy, part = shapely.get_coordinates(graph.index.geoms[segs], return_index=True)
    key = np.round(xy, 2)
    (
        _,
        node,
    ) = np.unique(key, axis=0, return_inverse=True)[:2]
    node = node.ravel()
    for i, (x, y) in zip(node.tolist(), xy.tolist(), strict=True):
        m.add_node(i, (y, x))
    edge_unit: dict[tuple[int, int], int] = {}
    same = part[1:] == part[:-1]
    a, b = node[:-1][same], node[1:][same]
    row = segs[part[:-1][same]]
    both = graph.backward_ok[row] | graph.internal[row]
    for u, v, r, two in zip(a.tolist(), b.tolist(), row.tolist(), both.tolist(), strict=True):
        if u == v:
            continue
        m.add_edge(u, v)
        edge_unit.setdefault((u, v), r)
        if two:
            m.add_edge(v, u)
            edge_unit.setdefault((v, u), r)
    # segments meet at a consolidated intersection's centre, not at a shared vertex: connect
    # each segment end to its graph node (intersection centre) with a short edge of that segment
    base = int(node.max()) + 1
    first = np.r_[0, np.flatnonzero(~same) + 1]
    last = np.r_[first[1:] - 1, len(node) - 1]
    for k, r in enumerate(segs.tolist()):
        if graph.internal[r]:
            continue
        two = bool(graph.backward_ok[r])
        for end_vertex, gnode, leaving in (
            (int(node[first[k]]), int(graph.from_node[r]), False),
            (int(node[last[k]]), int(graph.to_node[r]), True),
        ):
            if graph.node_unit[gnode] < 0:
                continue  # a joint or dead end: the vertex is shared already
            c = base + gnode
            if c not in m.graph:
                x, y = graph.node_xy[gnode]
                m.add_node(c, (y, x))
            pairs = [(end_vertex, c)] if leaving else [(c, end_vertex)]
            if two:
                pairs.append(pairs[0][::-1])
            for u, v in pairs:
                m.add_edge(u, v)
                edge_unit.setdefault((u, v), r)
    m.purge()
    return m, edge_unit


def leuven_match(mapc: Any, edge_unit: dict, xy: np.ndarray, noise: float) -> np.ndarray:
    from leuvenmapmatching.matcher.distance import DistanceMatcher

    matcher = DistanceMatcher(
        mapc,
        max_dist=150,
        max_dist_init=150,
        obs_noise=2 * noise,
        obs_noise_ne=4 * noise,
        dist_noise=2 * noise,
        non_emitting_states=True,
        max_lattice_width=10,
    )
    path = [(y, x) for x, y in xy.tolist()]
    matcher.match(path)
    out = np.full(len(xy), -1, dtype=np.int64)
    for m in matcher.lattice_best:
        if m.obs < len(out) and m.edge_m is not None:
            out[m.obs] = edge_unit.get((m.edge_m.l1, m.edge_m.l2), -1)
    return out


def scores(units: gpd.GeoDataFrame, got: np.ndarray, trace: pd.DataFrame, route: Route) -> tuple:
    truth = trace["true_unit_id"].astype(str).to_numpy()
    g = np.where(pd.isna(got), "", got).astype(str)
    jid = units["junction_id"].reindex(g).astype(object).fillna("").to_numpy()
    strict = g == truth
    on = np.isin(g, route.unit_ids) | np.isin(jid, route.unit_ids)
    return int(strict.sum()), int(on.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--extract", default="oslo-east")
    ap.add_argument("--routes", type=int, default=8)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--noise", type=float, default=15.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    src = DATA / f"{args.extract}.osm.pbf"
    units = tu.build_units(tu.read_network(src), max_length_m=200, progress=False)
    t = time.perf_counter()
    graph = UnitGraph(units)
    t_graph = time.perf_counter() - t
    rs = routes(units, graph, args.routes, args.seed)
    traces = [
        generate_trace(graph, r, interval_s=args.interval, noise_m=args.noise, seed=k)
        for k, r in enumerate(rs)
    ]
    metric = [tr.to_crs(graph.crs) for tr in traces]
    n = sum(len(tr) for tr in traces)
    print(
        f"{args.extract}: {len(units):,} units, {len(rs)} routes, {n:,} points "
        f"({args.interval:g} s, {args.noise:g} m noise); UnitGraph built in {t_graph:.2f} s"
    )
    # trafficunit
    t = time.perf_counter()
    res_tu = [tu.match_trace(graph, tr, sigma_m=args.noise) for tr in metric]
    t_tu = time.perf_counter() - t
    acc_tu = np.sum(
        [
            scores(units, m["unit_id"].to_numpy(object), tr, r)
            for m, tr, r in zip(res_tu, traces, rs, strict=True)
        ],
        axis=0,
    )
    # leuvenmapmatching
    t = time.perf_counter()
    mapc, edge_unit = leuven_map(graph)
    t_map = time.perf_counter() - t
    t = time.perf_counter()
    res_lv = []
    for tr in metric:
        rows = leuven_match(
            mapc, edge_unit, shapely.get_coordinates(tr.geometry.to_numpy()), args.noise
        )
        ids = np.where(rows >= 0, graph.ids[np.maximum(rows, 0)], None)
        res_lv.append(ids)
    t_lv = time.perf_counter() - t
    acc_lv = np.sum(
        [scores(units, g, tr, r) for g, tr, r in zip(res_lv, traces, rs, strict=True)], axis=0
    )
    lost_lv = sum(int(pd.isna(g).sum()) for g in res_lv)
    lost_tu = sum(int(m["unit_id"].isna().sum()) for m in res_tu)
    rows = [
        ("trafficunit match_trace", t_tu, acc_tu),
        ("leuvenmapmatching DistanceMatcher", t_lv, acc_lv),
    ]
    print(f"{'matcher':36} {'seconds':>8} {'points/s':>10} {'strict':>8} {'on route':>9}")
    for name, secs, acc in rows:
        print(f"{name:36} {secs:8.2f} {n / secs:10,.0f} {acc[0] / n:8.1%} {acc[1] / n:9.1%}")
    print(f"unmatched points: trafficunit {lost_tu}, leuvenmapmatching {lost_lv} (early stops)")
    print(f"(leuvenmapmatching map built in {t_map:.2f} s, not counted)")
    print(f"speed ratio trafficunit / leuvenmapmatching: {t_lv / t_tu:.1f}x")


if __name__ == "__main__":
    main()
