"""Benchmark: ``tu.match_trace`` beside leuvenmapmatching and oracles on the same generated traces.

Run on demand (leuvenmapmatching is not a dependency):
``.venv/bin/uv pip install leuvenmapmatching`` then
``.venv/bin/python benchmarks/bench_match.py [--grid] [--extract oslo-east] [--routes 8]
[--noise-seeds 1] [--interval 5] [--noise 15] [--radial] [--speed-factor 1] [--speed-kmh V]
[--leuven-budget 300]``.

Traces are generated (not real): ``tu.traces.generate_trace`` drives routes between random
segments of a real OSM extract (``../shared/data/osm``) at the units' speed limits (times
``--speed-factor``, or at ``--speed-kmh`` everywhere), samples every ``--interval`` s and adds
Gaussian noise of ``--noise`` m **on each axis** (a radial RMS of √2 × that; ``--radial``
makes ``--noise`` the radial RMS instead, i.e. ``noise / √2`` per axis). ``--grid`` runs
1/5/30 s × 10/15/30 m. Every matcher gets the same points in the same metric CRS in the same
run:

- ``tu.match_trace(graph, trace, sigma_m=per-axis noise)`` with a prebuilt ``UnitGraph``
  (built once, timed separately);
- oracles that know the true path (:func:`oracles`): ``snap`` (nearest place on it),
  ``path`` (the matcher's own smoother on it), ``+speed`` (also the true speed profile, so
  only one start offset is estimated, by maximum likelihood);
- leuvenmapmatching ``DistanceMatcher`` on an ``InMemMap`` of the same units (every vertex a
  node, every piece an edge, one-way respected, segment ends joined at their intersection's
  centre), ``obs_noise=2 * noise`` (with ``noise`` it stops early on most traces),
  ``max_dist=150``, ``max_lattice_width=10``, ``non_emitting_states=True`` (needed: a 5 s
  step skips several edges); its matched edges map back to units. Observations after an
  early stop (the matcher found no way on) count as wrong. A cell where it runs longer than
  ``--leuven-budget`` seconds is left out ("over budget").

Accuracy is the share of points matched to the unit that generated them (the unit of the true
position at the point's time; while the vehicle crosses a junction that is the intersection,
and a link inside it, such as a piece of a roundabout's ring, counts as it) and ("route") to a
unit of the driven route (a link inside a junction on it counts). mappymatch pins
pandas < 3 and does not install beside trafficunit; it is not run.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

import trafficunit as tu
from trafficunit.matching.place import _piece_limits
from trafficunit.matching.smooth import smooth_along
from trafficunit.routing import Route, UnitGraph
from trafficunit.traces import generate_trace
from trafficunit.traces.generate import route_pieces

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
    strict = (g == truth) | (jid == truth)  # a link of the junction being crossed is it
    on = np.isin(g, route.unit_ids) | np.isin(jid, route.unit_ids)
    return int(strict.sum()), int(on.sum())


def oracles(graph: UnitGraph, route: Route, trace: gpd.GeoDataFrame, noise: float) -> np.ndarray:
    """Points on the generating unit for three matchers that know the true path.

    The path is the generator's own line (``route_pieces``: the route's units in order, with the
    straight crossing of each junction), so the unit at a position along it is exactly what
    ``true_unit_id`` means. Each noisy point is projected onto the whole path (nearest place),
    then:

    - ``snap``: the unit at the projected position;
    - ``path``: the projected positions smoothed with the matcher's own smoother (same models,
      same likelihood choice of model and acceleration; it sees the times, not the speeds);
    - ``path+speed``: it also knows the true speed profile, i.e. the true position up to one
      unknown start offset along the path, estimated by maximum likelihood under the
      generator's own noise (independent Gaussian, ``noise`` per axis): the offset whose
      positions are nearest the noisy points in the least-squares sense (:func:`ml_offset`).
      Only that one number is estimated from the trace.
    """
    pcs = [p for p in route_pieces(graph, route) if len(p[1]) >= 2]
    coords = np.vstack([pcs[0][1]] + [p[1][1:] for p in pcs[1:]])
    ends = np.cumsum([float(np.hypot(*np.diff(p[1], axis=0).T).sum()) for p in pcs])
    ids = np.array([p[0] for p in pcs])
    line = shapely.linestrings(coords)
    metric = trace.to_crs(graph.crs)
    s_meas = shapely.line_locate_point(line, metric.geometry.to_numpy())
    s_true = shapely.line_locate_point(line, shapely.points(trace["true_x"], trace["true_y"]))
    t = (trace["time"] - trace["time"].iloc[0]).dt.total_seconds().to_numpy()
    lim = _piece_limits(graph, graph.row_of[list(ids)].to_numpy(), graph._limit_mps())
    sm = smooth_along(s_meas, t, ends, lim, sigma=noise, accel=None, model="auto")
    s_path = np.maximum.accumulate(np.clip(sm.s, 0.0, ends[-1]))
    xy = shapely.get_coordinates(metric.geometry.to_numpy())
    s_speed = s_true + ml_offset(line, s_true, xy)
    truth = trace["true_unit_id"].astype(str).to_numpy()

    def hits(s: np.ndarray) -> int:
        k = np.clip(np.searchsorted(ends, s, side="left"), 0, len(ids) - 1)
        return int((ids[k] == truth).sum())

    return np.array([hits(s_meas), hits(s_path), hits(s_speed)])


def ml_offset(line: shapely.LineString, s_true: np.ndarray, xy: np.ndarray) -> float:
    """The offset ``c`` along ``line`` that maximises the likelihood of the points ``xy`` seen
    with independent isotropic Gaussian noise around the positions ``s_true + c``: the least
    sum of squared distances, searched on a 0.5 m grid over ±60 m, then on a 1 cm grid."""

    def best(grid: np.ndarray) -> float:
        s = np.clip(s_true[None, :] + grid[:, None], 0.0, line.length)
        p = shapely.get_coordinates(shapely.line_interpolate_point(line, s.ravel()))
        sq = ((p - np.tile(xy, (len(grid), 1))) ** 2).sum(axis=1).reshape(len(grid), -1)
        return float(grid[np.argmin(sq.sum(axis=1))])

    c = best(np.arange(-60.0, 60.25, 0.5))
    return best(c + np.arange(-0.5, 0.505, 0.01))


class _Timeout(Exception):
    pass


def _alarm(_signum: int, _frame: Any) -> None:
    raise _Timeout


def leuven_cell(graph: UnitGraph, metric: list, noise: float, budget: float) -> tuple:
    """leuvenmapmatching over the cell's traces: (unit ids per trace, seconds), or None where the
    cell ran over ``budget`` seconds (the rest of the cell is not run)."""
    mapc, edge_unit = leuven_map(graph)
    out = []
    t = time.perf_counter()
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for tr in metric:
            left = budget - (time.perf_counter() - t)
            if left <= 0:
                return None, time.perf_counter() - t
            signal.setitimer(signal.ITIMER_REAL, left)
            try:
                xy = shapely.get_coordinates(tr.geometry.to_numpy())
                rows = leuven_match(mapc, edge_unit, xy, noise)
            except _Timeout:
                return None, time.perf_counter() - t
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            out.append(np.where(rows >= 0, graph.ids[np.maximum(rows, 0)], None))
    finally:
        signal.signal(signal.SIGALRM, old)
    return out, time.perf_counter() - t


def cell(
    units: gpd.GeoDataFrame,
    graph: UnitGraph,
    rs: list[Route],
    args: argparse.Namespace,
    interval: float,
    noise: float,
) -> dict:
    """One sampling interval and noise level: ours, the oracles and leuvenmapmatching."""
    axis = noise / np.sqrt(2) if args.radial else noise
    drive = {"speed_factor": args.speed_factor, "speed_kmh": args.speed_kmh}
    # each route driven once per noise seed (seed k for route k, then k + 1000, k + 2000, ...)
    seeds = [k + 1000 * j for j in range(args.noise_seeds) for k in range(len(rs))]
    rs = rs * args.noise_seeds
    traces = [
        generate_trace(graph, r, interval_s=interval, noise_m=axis, seed=k, **drive)
        for k, r in zip(seeds, rs, strict=True)
    ]
    metric = [tr.to_crs(graph.crs) for tr in traces]
    n = sum(len(tr) for tr in traces)
    t = time.perf_counter()
    res = [tu.match_trace(graph, tr, sigma_m=axis) for tr in metric]
    secs = time.perf_counter() - t
    ours = np.sum(
        [
            scores(units, m["unit_id"].to_numpy(object), tr, r)
            for m, tr, r in zip(res, traces, rs, strict=True)
        ],
        axis=0,
    )
    orc = np.sum([oracles(graph, r, tr, axis) for r, tr in zip(rs, traces, strict=True)], axis=0)
    models = pd.Series([x for m in res for x in m.attrs["match"]["speed_models"]])
    row = {
        "interval": interval,
        "noise": noise,
        "points": n,
        "ours": ours / n,
        "ours_pps": n / secs,
        "oracle": orc / n,
        "lost": sum(int(m["unit_id"].isna().sum()) for m in res),
        "models": models.value_counts().to_dict(),
        "leuven": None,
        "leuven_off": args.leuven_budget <= 0,
    }
    if args.leuven_budget > 0:
        lv, lsecs = leuven_cell(graph, metric, axis, args.leuven_budget)
        if lv is not None:
            acc = np.sum(
                [scores(units, g, tr, r) for g, tr, r in zip(lv, traces, rs, strict=True)], axis=0
            )
            row["leuven"] = (acc / n, n / lsecs, sum(int(pd.isna(g).sum()) for g in lv))
    return row


def _print_table(rows: list[dict]) -> None:
    print(
        f"{'every':>5} {'noise':>5} {'points':>6} | {'ours':>6} {'route':>6} {'pts/s':>6} | "
        f"{'snap':>6} {'path':>6} {'+speed':>6} | {'leuven':>6} {'route':>6} {'pts/s':>6}"
    )
    for r in rows:
        lv = r["leuven"]
        lvs = (
            f"{lv[0][0]:6.1%} {lv[0][1]:6.1%} {lv[1]:6,.0f}"
            if lv is not None
            else f"{'not run' if r['leuven_off'] else 'over budget':>20}"
        )
        print(
            f"{r['interval']:4g}s {r['noise']:4g}m {r['points']:6,} | {r['ours'][0]:6.1%} "
            f"{r['ours'][1]:6.1%} {r['ours_pps']:6,.0f} | {r['oracle'][0]:6.1%} "
            f"{r['oracle'][1]:6.1%} {r['oracle'][2]:6.1%} | {lvs}"
        )
    for r in rows:
        lost = f", leuvenmapmatching {r['leuven'][2]} (early stops)" if r["leuven"] else ""
        print(
            f"{r['interval']:g} s / {r['noise']:g} m: speed models kept {r['models']}; "
            f"unmatched points: ours {r['lost']}{lost}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--extract", default="oslo-east")
    ap.add_argument("--routes", type=int, default=8)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--noise", type=float, default=15.0)
    ap.add_argument("--grid", action="store_true", help="1/5/30 s x 10/15/30 m")
    ap.add_argument("--radial", action="store_true", help="noise is the radial RMS, not per axis")
    ap.add_argument("--speed-factor", type=float, default=1.0)
    ap.add_argument("--speed-kmh", type=float, default=None)
    ap.add_argument("--leuven-budget", type=float, default=300.0, help="seconds per cell; 0: off")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--noise-seeds", type=int, default=1, help="traces per route, each with its own noise"
    )
    args = ap.parse_args()
    src = DATA / f"{args.extract}.osm.pbf"
    units = tu.build_units(tu.read_network(src), max_length_m=200, progress=False)
    t = time.perf_counter()
    graph = UnitGraph(units)
    t_graph = time.perf_counter() - t
    rs = routes(units, graph, args.routes, args.seed)
    grid = (
        [(i, e) for i in (1.0, 5.0, 30.0) for e in (10.0, 15.0, 30.0)]
        if args.grid
        else [(args.interval, args.noise)]
    )
    kind = "radial RMS" if args.radial else "per axis"
    drive = f"{args.speed_kmh:g} km/h" if args.speed_kmh else f"{args.speed_factor:g} x the limits"
    print(
        f"{args.extract}: {len(units):,} units, {len(rs)} routes x {args.noise_seeds} noise "
        f"seeds driven at {drive}; noise {kind}; "
        f"UnitGraph built in {t_graph:.2f} s; load average before {os.getloadavg()[0]:.1f}"
    )
    rows = []
    for interval, noise in grid:
        rows.append(cell(units, graph, rs, args, interval, noise))
        _print_table(rows[-1:])
    print("\nall cells (share of points on the generating unit; 'route': on the driven route)")
    _print_table(rows)
    print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
