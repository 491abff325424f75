"""Generated GPS traces (for tests, benchmarks and demos; labelled as generated)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ..routing import Route, UnitGraph


def generate_trace(
    units: gpd.GeoDataFrame | UnitGraph,
    route: Route,
    *,
    interval_s: float = 5.0,
    noise_m: float = 15.0,
    start: Any = "2025-11-30 22:30",
    tz: str = "Asia/Shanghai",
    speed_factor: float = 1.0,
    speed_kmh: float | None = None,
    gaps: Sequence[tuple[float, float]] = (),
    seed: int = 0,
) -> gpd.GeoDataFrame:
    """Drive a route at the units' speed limits and sample it like a GPS receiver would.

    Each unit is driven at ``speed_factor`` times its ``maxspeed_kmh`` (or ``speed_kmh`` for
    all; a unit without a limit uses the route's assumed speed), positions are taken every
    ``interval_s`` seconds with Gaussian noise of ``noise_m`` metres on each axis, and the
    points inside ``gaps`` (seconds from the start) are dropped.

    Returns
    -------
    geopandas.GeoDataFrame
        EPSG:4326 points with ``time``, ``true_unit_id`` (the unit the vehicle was on; the
        intersection while crossing one), ``true_speed_kmh``, ``true_x``, ``true_y`` (metric
        CRS of the units) and ``.attrs["generated"] = True``.
    """
    graph = units if isinstance(units, UnitGraph) else UnitGraph(units)
    pieces = route_pieces(graph, route, speed_factor=speed_factor, speed_kmh=speed_kmh)
    # time along the route
    seg_xy, seg_id, seg_v = [], [], []
    for uid, c, v in pieces:
        if len(c) < 2:
            continue
        for k in range(len(c) - 1):
            seg_xy.append((c[k], c[k + 1]))
            seg_id.append(uid)
            seg_v.append(v)
    p0 = np.array([s[0] for s in seg_xy])
    p1 = np.array([s[1] for s in seg_xy])
    sl = np.hypot(*(p1 - p0).T)
    v_arr = np.array(seg_v)
    dt = sl / v_arr
    t_end = np.cumsum(dt)
    t_start = t_end - dt
    ts = np.arange(0.0, float(t_end[-1]), interval_s)
    j = np.clip(np.searchsorted(t_end, ts, side="right"), 0, len(sl) - 1)
    frac = np.where(dt[j] > 0, (ts - t_start[j]) / np.where(dt[j] > 0, dt[j], 1), 0.0)
    true_xy = p0[j] + (p1[j] - p0[j]) * frac[:, None]
    keep = np.ones(len(ts), bool)
    for a, b in gaps:
        keep &= ~((ts >= a) & (ts <= b))
    rng = np.random.default_rng(seed)
    noisy = true_xy + rng.normal(0.0, noise_m, true_xy.shape)
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize(tz) if t0.tzinfo is None else t0
    out = (
        gpd.GeoDataFrame(
            {
                "time": t0 + pd.to_timedelta(ts, unit="s"),
                "true_unit_id": pd.array(np.array(seg_id, dtype=object)[j], dtype="string"),
                "true_speed_kmh": v_arr[j] * 3.6,
                "true_x": true_xy[:, 0],
                "true_y": true_xy[:, 1],
            },
            geometry=shapely.points(noisy),
            crs=graph.crs,
        )[keep]
        .to_crs(4326)
        .reset_index(drop=True)
    )
    out.attrs["generated"] = True
    return out


def route_pieces(
    graph: UnitGraph, route: Route, *, speed_factor: float = 1.0, speed_kmh: float | None = None
) -> list[tuple[str, np.ndarray, float]]:
    """The route's driven line as pieces in driving order: (unit id, metric coordinates, speed
    in m/s), with the straight crossing of each consolidated junction (the intersection unit,
    at the speed of the piece before it) between two segments that stop short of it."""
    from ..routing import ASSUMED_SPEED_KMH
    from ..routing.paths import driven_part

    rows = graph.unit_rows(route.unit_ids, "route")
    if "maxspeed_kmh" in graph.units.columns:
        vmax = pd.to_numeric(graph.units["maxspeed_kmh"], errors="coerce").to_numpy(float)
    else:
        vmax = np.full(len(graph.ids), np.nan)
    cls = graph.units["road_class"].astype(str).to_numpy() if "road_class" in graph.units else None
    # pieces in driving order: (unit id, coordinates, speed m/s)
    pieces: list[tuple[str, np.ndarray, float]] = []
    last = len(rows) - 1
    prev_v = 30 / 3.6
    for i, (r, d) in enumerate(zip(rows.tolist(), route.directions, strict=True)):
        if d is None:
            continue
        a, b = driven_part(i, last, d, graph.length[r], route.start_measure_m, route.end_measure_m)
        c = shapely.get_coordinates(shapely.ops.substring(graph.index.geoms[r], a, b))
        if d == "backward":
            c = c[::-1]
        v = speed_kmh if speed_kmh is not None else vmax[r]
        if not v > 0:
            v = ASSUMED_SPEED_KMH.get(
                str(cls[r]) if cls is not None else "", ASSUMED_SPEED_KMH["default"]
            )
        v = v * speed_factor / 3.6
        if pieces:  # the crossing of a consolidated junction: straight, at the previous speed
            gap = pieces[-1][1][-1]
            if np.hypot(*(c[0] - gap)) > 1e-6:
                jr = rows[i - 1] if graph.is_int[rows[i - 1]] else r
                pieces.append((str(graph.ids[jr]), np.array([gap, c[0]]), prev_v))
        pieces.append((str(graph.ids[r]), c, v))
        prev_v = v
    return pieces
