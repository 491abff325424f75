"""Map matching: GPS traces onto traffic units with a hidden Markov model.

The matcher follows Newson & Krumm (2009), "Hidden Markov map matching through noise and
sparseness":

- **Candidates** for each GPS point are the segment units within ``search_radius_m``, found with
  the same STRtree over the units' straight pieces as :func:`trafficunit.assign` (one vectorised
  query for the whole trace), the nearest ``max_candidates`` kept per point.
- **Emission**: a Gaussian on the point's distance to the candidate (``sigma_m``).
- **Transition**: an exponential on how much longer the route is than the straight line between
  consecutive points (``beta_m``; a shorter route is free, since noise lengthens straight lines
  between close points), where the route distance follows the units' driving directions
  (:class:`trafficunit.routing.UnitGraph`; shortest paths with ``scipy.sparse.csgraph``, one
  bounded Dijkstra per distinct candidate end node). A transition faster than ``max_speed_kmh``
  is impossible. Going back along a two-way unit is allowed (a U-turn); on a one-way unit only
  GPS jitter (``2 * sigma_m``) may go backwards.
- **Viterbi** over the whole trace. Where no transition is possible (a long gap, a jump, a road
  missing from the map) the chain restarts: that point's state is ``"break"``. Points with no
  unit within the search radius are ``"no_candidate"`` and have no unit.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from scipy.sparse.csgraph import dijkstra

from ._errors import ValidationError
from ._validate import require_gdf
from .routing import UnitGraph

__all__ = ["MATCH_STATES", "match_trace"]

#: Values of the ``state`` column of :func:`match_trace`.
MATCH_STATES = ("matched", "break", "no_candidate")


def _trace_times(trace: pd.DataFrame, time_col: str) -> np.ndarray | None:
    """Seconds since the first point (float), checked: sorted, no duplicates."""
    if time_col not in trace.columns:
        return None
    t = pd.to_datetime(trace[time_col], errors="coerce")
    if t.isna().any():
        i = int(np.flatnonzero(t.isna().to_numpy())[0])
        raise ValidationError(f"trace: row {i} has no valid time in column {time_col!r}")
    if getattr(t.dtype, "tz", None) is not None:
        t = t.dt.tz_convert("UTC")
    ns = t.dt.tz_localize(None).to_numpy() if getattr(t.dtype, "tz", None) is not None else t
    ns = np.asarray(ns, dtype="datetime64[ns]").astype(np.int64)
    d = np.diff(ns)
    if (d == 0).any():
        i = int(np.flatnonzero(d == 0)[0]) + 1
        raise ValidationError(f"trace: duplicate time at row {i} ({t.iloc[i]})")
    if (d < 0).any():
        i = int(np.flatnonzero(d < 0)[0]) + 1
        raise ValidationError(
            f"trace: times are not sorted (row {i}, {t.iloc[i]}, is before row {i - 1}); "
            "sort the trace by time first"
        )
    return (ns - ns[0]) / 1e9 if len(ns) else np.zeros(0)


def _candidates(
    graph: UnitGraph, x: np.ndarray, y: np.ndarray, radius: float, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit row, measure, distance) arrays of shape (n, k); unit -1 where there is none."""
    from .join import _segment_pairs

    n = len(x)
    cu = np.full((n, k), -1, dtype=np.int64)
    cm = np.zeros((n, k))
    cd = np.full((n, k), np.inf)
    if n == 0:
        return cu, cm, cd
    pts = shapely.points(x, y)
    qi, unit, d, meas = _segment_pairs(graph.index, pts, x.copy(), y.copy(), radius)
    if len(qi) == 0:
        return cu, cm, cd
    # the nearest piece per (point, unit), then the k nearest units per point
    o = np.lexsort((d, unit, qi))
    qi, unit, d, meas = qi[o], unit[o], d[o], meas[o]
    first = np.r_[True, (qi[1:] != qi[:-1]) | (unit[1:] != unit[:-1])]
    qi, unit, d, meas = qi[first], unit[first], d[first], meas[first]
    o = np.lexsort((unit, d, qi))
    qi, unit, d, meas = qi[o], unit[o], d[o], meas[o]
    start = np.r_[0, np.flatnonzero(qi[1:] != qi[:-1]) + 1]
    counts = np.diff(np.r_[start, len(qi)])
    rank = np.arange(len(qi)) - np.repeat(start, counts)
    keep = rank < k
    cu[qi[keep], rank[keep]] = unit[keep]
    cm[qi[keep], rank[keep]] = meas[keep]
    cd[qi[keep], rank[keep]] = d[keep]
    return cu, cm, cd


def _directed(
    graph: UnitGraph, cu: np.ndarray, cm: np.ndarray, cd: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each candidate twice, driven forwards (+1) and backwards (-1); -1 unit where not allowed."""
    k = cu.shape[1]
    u2 = np.concatenate([cu, cu], axis=1)
    m2 = np.concatenate([cm, cm], axis=1)
    d2 = np.concatenate([cd, cd], axis=1)
    dr = np.concatenate([np.ones_like(cu), -np.ones_like(cu)], axis=1)
    safe = np.where(cu >= 0, cu, 0)
    back_ok = (graph.backward_ok[safe] | graph.internal[safe]) & (cu >= 0)
    u2[:, k:] = np.where(back_ok, cu, -1)
    d2[:, k:] = np.where(back_ok, cd, np.inf)
    return u2, m2, d2, dr


def _heading_term(
    graph: UnitGraph,
    xy: np.ndarray,
    idx: np.ndarray,
    cu: np.ndarray,
    cm: np.ndarray,
    cdir: np.ndarray,
    sigma_m: float,
    half_window_m: float = 50.0,
) -> np.ndarray:
    """``(cos - 1) / 2`` between each candidate's driving direction and the trace heading,
    weighted by how far the trace moved around the point (0 where it barely moved)."""
    p = xy[idx]
    step = np.r_[0.0, np.hypot(*(p[1:] - p[:-1]).T)]
    cum = np.cumsum(step)
    lo = np.searchsorted(cum, cum - half_window_m, side="right") - 1
    hi = np.searchsorted(cum, cum + half_window_m, side="left")
    lo = np.clip(lo, 0, len(p) - 1)
    hi = np.clip(hi, 0, len(p) - 1)
    v = p[hi] - p[lo]
    span = np.hypot(v[:, 0], v[:, 1])
    # trust the heading only where the trace moved well beyond its noise
    w = np.clip((span - 3 * sigma_m) / (3 * sigma_m), 0.0, 1.0)
    valid = cu >= 0
    rows = np.where(valid, cu, graph.index.seg[0])
    geoms = graph.index.geoms[rows.ravel()]
    m = cm.ravel()
    a = shapely.line_interpolate_point(geoms, np.maximum(m - 5.0, 0.0))
    b = shapely.line_interpolate_point(geoms, m + 5.0)
    d = shapely.get_coordinates(b) - shapely.get_coordinates(a)
    norm = np.hypot(d[:, 0], d[:, 1]) * np.repeat(np.maximum(span, 1e-9), cu.shape[1])
    kk = cu.shape[1]
    cos = d[:, 0] * np.repeat(v[:, 0], kk) + d[:, 1] * np.repeat(v[:, 1], kk)
    cos = np.divide(cos, norm, out=np.ones_like(cos), where=norm > 0).reshape(cu.shape) * cdir
    return np.where(valid, (cos - 1.0) / 2 * w[:, None], 0.0)


def _node_distances(
    graph: UnitGraph,
    src: np.ndarray,
    dst: np.ndarray,
    limit: np.ndarray,
    batch: int = 256,
) -> np.ndarray:
    """Shortest directed distances (metres) for node pairs; inf beyond each pair's limit."""
    out = np.full(len(src), np.inf)
    ok = (src >= 0) & (dst >= 0)
    same = ok & (src == dst)
    out[same] = 0.0
    todo = np.flatnonzero(ok & ~same)
    if len(todo) == 0:
        return out
    m = graph._length_matrix()
    s = src[todo]
    # one Dijkstra per distinct source node, bounded by the largest limit asked of it
    uniq, inv = np.unique(s, return_inverse=True)
    lim = np.zeros(len(uniq))
    np.maximum.at(lim, inv, limit[todo])
    order = np.argsort(lim, kind="stable")
    pos = np.empty(len(uniq), dtype=np.int64)
    for b0 in range(0, len(uniq), batch):
        sel = order[b0 : b0 + batch]
        dist = dijkstra(m, directed=True, indices=uniq[sel], limit=float(lim[sel].max()))
        pos[sel] = np.arange(len(sel))
        in_batch = np.isin(inv, sel)
        rows = pos[inv[in_batch]]
        out[todo[in_batch]] = dist[rows, dst[todo[in_batch]]]
    out[todo] = np.where(out[todo] <= limit[todo], out[todo], np.inf)
    return out


def _ends(
    graph: UnitGraph, u: np.ndarray, m: np.ndarray, dr: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(exit node, cost to it, entry node, cost from it) of directed positions on units."""
    L = graph.length[u]
    fwd = dr > 0
    exit_node = np.where(fwd, graph.to_node[u], graph.from_node[u])
    exit_cost = np.where(fwd, L - m, m)
    entry_node = np.where(fwd, graph.from_node[u], graph.to_node[u])
    entry_cost = np.where(fwd, m, L - m)
    return exit_node, exit_cost, entry_node, entry_cost


def _along(
    ma: np.ndarray,
    mb: np.ndarray,
    da: np.ndarray,
    db: np.ndarray,
    back_tol: float,
    uturn_m: float,
) -> np.ndarray:
    """Distance along one unit between directed positions (inf: must leave the unit).

    Same direction: the progress, GPS jitter backwards (up to ``back_tol``) counting as none.
    Opposite directions: a U-turn on the unit, ``|mb - ma| + uturn_m``.
    """
    prog = (mb - ma) * da
    same_dir = np.where(prog >= 0, prog, np.where(prog >= -back_tol, 0.0, np.inf))
    return np.where(da == db, same_dir, np.abs(mb - ma) + uturn_m)


def _transitions(
    graph: UnitGraph,
    cu: np.ndarray,
    cm: np.ndarray,
    cdir: np.ndarray,
    step_limit: np.ndarray,
    back_tol: float,
    uturn_m: float,
) -> np.ndarray:
    """Route distance (metres) between every directed candidate of point i and of point i+1.

    Shape (n-1, k, k); inf where impossible or beyond the step's limit.
    """
    n, k = cu.shape
    if n < 2:
        return np.zeros((0, k, k))
    shape = (n - 1, k, k)
    a = np.broadcast_to(cu[:-1, :, None], shape).ravel()
    b = np.broadcast_to(cu[1:, None, :], shape).ravel()
    ma = np.broadcast_to(cm[:-1, :, None], shape).ravel()
    mb = np.broadcast_to(cm[1:, None, :], shape).ravel()
    da = np.broadcast_to(cdir[:-1, :, None], shape).ravel()
    db = np.broadcast_to(cdir[1:, None, :], shape).ravel()
    lim = np.repeat(step_limit, k * k)
    valid = (a >= 0) & (b >= 0)
    a0, b0 = np.where(valid, a, 0), np.where(valid, b, 0)
    best = np.full(len(a), np.inf)
    same = valid & (a == b)
    best[same] = _along(ma, mb, da, db, back_tol, uturn_m)[same]
    ex, exc, _, _ = _ends(graph, a0, ma, da)
    _, _, en, enc = _ends(graph, b0, mb, db)
    rest = np.maximum(lim - exc - enc, 0.0)
    d = _node_distances(graph, np.where(valid, ex, -1), np.where(valid, en, -1), rest)
    tot = exc + d + enc
    best = np.where(valid & (tot < best), tot, best)
    best[best > lim] = np.inf
    return best.reshape(shape)


def match_trace(
    units: gpd.GeoDataFrame | UnitGraph,
    trace: gpd.GeoDataFrame,
    *,
    time_col: str = "time",
    sigma_m: float = 20.0,
    beta_m: float = 5.0,
    search_radius_m: float = 100.0,
    max_candidates: int = 8,
    max_speed_kmh: float = 150.0,
    max_route_m: float = 5000.0,
    heading_weight: float = 4.0,
    uturn_penalty: float = 10.0,
    smooth: bool = True,
    accel_mps2: float = 0.3,
) -> gpd.GeoDataFrame:
    """Match a GPS trace to the traffic units it drove on (hidden Markov model + Viterbi).

    Parameters
    ----------
    units
        Traffic units (``tu.build_units``) or a :class:`~trafficunit.routing.UnitGraph` of them
        (build it once to match many traces).
    trace
        GPS points with a CRS, in driving order, with a ``time_col`` column (times must be
        strictly increasing; without the column transitions are not bounded by speed).
    sigma_m
        GPS noise (standard deviation, metres) for the emission probability.
    beta_m
        Scale (metres) of the allowed difference between route and straight-line distance.
    search_radius_m
        Units farther than this from a point are not candidates for it.
    max_candidates
        Nearest candidate units kept per point.
    max_speed_kmh
        Transitions needing a faster speed over the network are impossible.
    max_route_m
        Longest route searched between consecutive points (a longer gap restarts the chain).
    heading_weight
        Log-probability penalty for driving a candidate unit against the trace's heading (half
        of it at a right angle; ``(1 - cos) / 2`` of the angle; heading over about 50 m either
        side of the point, used only where the trace moved clearly more than its noise).
        0 turns it off.
    uturn_penalty
        Log-probability cost of turning round on a unit (in its middle or at one of its ends).
    smooth
        After Viterbi, smooth the position along the matched path with a constant-velocity
        Kalman (Rauch-Tung-Striebel) smoother and place each point at its smoothed position:
        GPS noise along the road otherwise decides which of two consecutive units a point near
        their joint lands on. Needs times. Also gives ``speed_kmh``.
    accel_mps2
        Typical acceleration (m/s², the smoother's process noise): larger follows stop-and-go
        driving more closely, smaller smooths more.

    Returns
    -------
    geopandas.GeoDataFrame
        The trace's rows (same index and geometry) with ``unit_id`` (``<NA>`` when unmatched),
        ``measure_m`` (along the unit from its first vertex), ``distance_m`` (GPS point to the
        unit), ``state`` (``"matched"``, ``"break"`` where the chain restarts, ``"no_candidate"``
        where no unit is within ``search_radius_m``) and ``speed_kmh`` (smoothed speed along the
        path; NaN without ``smooth`` or times). ``.attrs["path"]`` is the driven path: one row
        per piece of a unit in driving order (``chain``, ``unit_id``, ``from_m``, ``to_m``,
        ``length_m``, ``start_s`` along the chain, ``t_start``, ``t_end``), including units
        crossed between two GPS points; ``.attrs["match"]`` counts the states.

    Examples
    --------
    >>> import geopandas as gpd, pandas as pd, shapely, trafficunit as tu
    >>> units = tu.build_units(tu.read_network(tu.sample_network_path()), max_length_m=200)
    >>> r = tu.route(units, (24.9375, 60.1698), (24.9450, 60.1665))
    >>> line = gpd.GeoSeries([r.geometry], crs=units.crs).to_crs(3067).iloc[0]
    >>> pts = [line.interpolate(d) for d in range(0, int(line.length), 40)]
    >>> trace = gpd.GeoDataFrame({"time": pd.date_range("2025-11-30", periods=len(pts),
    ...     freq="5s", tz="UTC")}, geometry=pts, crs=3067)
    >>> m = tu.match_trace(units, trace)
    >>> bool(m["unit_id"].isin(r.unit_ids).all()), set(m["state"])
    (True, {'matched'})
    """
    require_gdf(trace, "trace")
    if sigma_m <= 0 or beta_m <= 0 or search_radius_m <= 0 or max_candidates < 1:
        raise ValidationError("sigma_m, beta_m, search_radius_m and max_candidates must be > 0")
    graph = units if isinstance(units, UnitGraph) else UnitGraph(units)
    types = shapely.get_type_id(trace.geometry.to_numpy())
    if len(trace) and ((types != 0) | trace.geometry.is_empty.to_numpy()).any():
        i = int(np.flatnonzero((types != 0) | trace.geometry.is_empty.to_numpy())[0])
        raise ValidationError(f"trace: row {i} is not a point")
    secs = _trace_times(trace, time_col)
    pts = trace.geometry
    if not pyproj.CRS.from_user_input(trace.crs).equals(graph.crs):
        pts = pts.to_crs(graph.crs)
    xy = shapely.get_coordinates(pts.to_numpy())
    if len(xy) != len(trace) or not np.isfinite(xy).all():
        raise ValidationError("trace: coordinates must be finite points (check the CRS)")
    n = len(trace)
    cu_all, cm_all, cd_all = _candidates(graph, xy[:, 0], xy[:, 1], search_radius_m, max_candidates)
    has = cu_all[:, 0] >= 0
    # thin the points as Newson & Krumm do: one within 2 sigma of the last kept point adds no
    # information on the route, only noise on the straight-line distance
    idx = _thin(xy, np.flatnonzero(has), 2 * sigma_m)
    cu, cm, cd, cdir = _directed(graph, cu_all[idx], cm_all[idx], cd_all[idx])
    # per-step limits on the route distance: speed over the elapsed time, and max_route_m
    p = xy[idx]
    straight = np.hypot(*(p[1:] - p[:-1]).T) if len(idx) > 1 else np.zeros(0)
    lim = np.full(len(straight), max_route_m)
    if secs is not None and len(idx) > 1:
        dt = np.diff(secs[idx])
        lim = np.minimum(lim, max_speed_kmh / 3.6 * dt + 2 * search_radius_m)
    back_tol = 2 * sigma_m
    trans = _transitions(graph, cu, cm, cdir, lim, back_tol, 0.0)
    # log probabilities: distance, and the driving direction against the trace's heading
    emis = np.where(cu >= 0, -0.5 * (cd / sigma_m) ** 2, -np.inf)
    if heading_weight > 0 and len(idx) > 2:
        emis += heading_weight * _heading_term(graph, xy, idx, cu, cm, cdir, sigma_m)
    # a route longer than the straight line costs; a shorter one does not (GPS noise stretches
    # straight lines between close points, it never shortens a zigzag); turning round on a unit
    # costs uturn_penalty
    excess = np.where(np.isfinite(trans), trans, 0.0) - straight[:, None, None]
    tlog = -np.maximum(excess, 0.0) / beta_m
    if len(idx) > 1:
        uturn = (cu[:-1, :, None] == cu[1:, None, :]) & (cdir[:-1, :, None] != cdir[1:, None, :])
        tlog -= uturn_penalty * uturn
    tlog[~np.isfinite(trans)] = -np.inf
    choice, restart = _viterbi(emis, tlog)
    rows = np.arange(len(idx))
    unit_k = cu[rows, choice]
    meas_k = cm[rows, choice]
    dir_k = cdir[rows, choice]
    route_k = np.full(len(idx), np.nan)
    if len(idx) > 1:
        r = trans[rows[1:] - 1, choice[:-1], choice[1:]]
        route_k[1:] = np.where(restart[1:], np.inf, r)
    paths: list[pd.DataFrame] = []
    unit, meas, speed, state = _place(
        graph,
        xy,
        secs,
        has,
        idx,
        unit_k,
        meas_k,
        dir_k,
        route_k,
        restart,
        cu_all,
        cm_all,
        sigma_m,
        accel_mps2 if smooth else None,
        back_tol,
        0.0,
        paths,
    )
    ok = unit >= 0
    out = trace.copy()
    uid = np.full(n, None, dtype=object)
    uid[ok] = graph.ids[unit[ok]]
    out["unit_id"] = pd.array(uid, dtype="string")
    dist = np.full(n, np.nan)
    if ok.any():
        dist[ok] = shapely.distance(
            shapely.points(xy[ok, 0], xy[ok, 1]),
            shapely.line_interpolate_point(graph.index.geoms[unit[ok]], meas[ok]),
        )
    out["measure_m"] = np.where(ok, meas, np.nan)
    out["distance_m"] = dist
    out["state"] = pd.Categorical(state, categories=list(MATCH_STATES))
    out["speed_kmh"] = speed * 3.6
    path = (
        pd.concat(paths, ignore_index=True)
        if paths
        else pd.DataFrame(
            columns=[
                "chain",
                "unit",
                "from_m",
                "to_m",
                "length_m",
                "start_s",
                "t_start",
                "t_end",
                "first_point",
                "last_point",
            ]
        )
    )
    path.insert(
        1, "unit_id", pd.array(graph.ids[path["unit"].to_numpy(dtype=np.int64)], dtype="string")
    )
    path = path.drop(columns="unit")
    if secs is not None and n:
        t0 = pd.Timestamp(pd.to_datetime(trace[time_col]).iloc[0])
        for col in ("t_start", "t_end"):
            path[col] = t0 + pd.to_timedelta(path[col].astype(float), unit="s")
    out.attrs["path"] = path
    out.attrs["match"] = {
        "points": n,
        "matched": int((state == "matched").sum()),
        "breaks": int((state == "break").sum()),
        "no_candidate": int((state == "no_candidate").sum()),
        "hmm_points": len(idx),
    }
    return out


def _thin(xy: np.ndarray, idx: np.ndarray, min_step: float) -> np.ndarray:
    """Indices kept: the first, the last, and each one ``min_step`` from the last kept one."""
    if len(idx) < 3:
        return idx
    keep = [0]
    px, py = xy[idx, 0].tolist(), xy[idx, 1].tolist()
    lx, ly = px[0], py[0]
    m2 = min_step * min_step
    for i in range(1, len(idx) - 1):
        if (px[i] - lx) ** 2 + (py[i] - ly) ** 2 >= m2:
            keep.append(i)
            lx, ly = px[i], py[i]
    keep.append(len(idx) - 1)
    return idx[np.asarray(keep)]


def _viterbi(emis: np.ndarray, tlog: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best state per point, and where the chain restarts (no possible transition)."""
    m_pts, k = emis.shape
    back = np.zeros((m_pts, k), dtype=np.int64)
    restart = np.zeros(m_pts, bool)
    end_choice = np.zeros(m_pts, dtype=np.int64)
    choice = np.zeros(m_pts, dtype=np.int64)
    if m_pts == 0:
        return choice, restart
    restart[0] = True
    score = emis[0].copy()
    ar = np.arange(k)
    for t in range(1, m_pts):
        cand = score[:, None] + tlog[t - 1]
        j = np.argmax(cand, axis=0)
        best = cand[j, ar] + emis[t]
        if not np.isfinite(best).any():
            restart[t] = True
            end_choice[t - 1] = int(np.argmax(score))
            score = emis[t].copy()
            continue
        back[t] = j
        score = best
    end_choice[-1] = int(np.argmax(score))
    for t in range(m_pts - 1, -1, -1):
        if t == m_pts - 1 or restart[t + 1]:
            choice[t] = end_choice[t]
        else:
            choice[t] = back[t + 1, choice[t + 1]]
    return choice, restart


def _step_pieces(
    graph: UnitGraph,
    ua: np.ndarray,
    ma: np.ndarray,
    da: np.ndarray,
    ub: np.ndarray,
    mb: np.ndarray,
    db: np.ndarray,
    route_d: np.ndarray,
    back_tol: float,
    uturn_m: float,
) -> list[list[tuple[int, float, float]]]:
    """The units driven between consecutive matched points: (unit, from, to measure) pieces."""
    n = len(ua)
    length = graph.length
    pieces: list[list[tuple[int, float, float]]] = [[] for _ in range(n)]
    along = np.where(ua == ub, _along(ma, mb, da, db, back_tol, uturn_m), np.inf)
    use_along = np.isfinite(along) & (along <= route_d + 1e-6)
    src, exc, _, _ = _ends(graph, ua, ma, da)
    _, _, dst, enc = _ends(graph, ub, mb, db)
    need = ~use_along & np.isfinite(route_d) & (src != dst)
    graph._length_matrix()
    keys, key_seg = graph._len_keys, graph._len_seg
    nn = graph.n_nodes
    preds: dict[int, np.ndarray] = {}
    if need.any():
        uniq = np.unique(src[need])
        lim = float(np.max(route_d[need])) + 1.0
        for b0 in range(0, len(uniq), 128):
            sel = uniq[b0 : b0 + 128]
            _, pred = dijkstra(
                graph._length_matrix(),
                directed=True,
                indices=sel,
                limit=lim,
                return_predecessors=True,
            )
            for j, s_node in enumerate(sel.tolist()):
                preds[s_node] = pred[j]
    for i in range(n):
        a, b = int(ua[i]), int(ub[i])
        if use_along[i]:
            if da[i] == db[i]:
                pieces[i].append((a, float(ma[i]), float(ma[i] + da[i] * along[i])))
            else:
                pieces[i].append((a, float(ma[i]), float(mb[i])))
            continue
        if not np.isfinite(route_d[i]):
            continue
        pieces[i].append((a, float(ma[i]), float(length[a]) if da[i] > 0 else 0.0))
        if need[i]:
            pred = preds[int(src[i])]
            nodes = [int(dst[i])]
            while nodes[-1] != int(src[i]) and nodes[-1] >= 0:
                nodes.append(int(pred[nodes[-1]]))
            nodes.reverse()
            u = np.asarray(nodes[:-1], dtype=np.int64)
            v = np.asarray(nodes[1:], dtype=np.int64)
            segs = key_seg[np.searchsorted(keys, u * nn + v)]
            for x, sgm in zip(u.tolist(), segs.tolist(), strict=True):
                forward = graph.from_node[sgm] == x
                full = float(length[sgm])
                pieces[i].append((sgm, 0.0 if forward else full, full if forward else 0.0))
        pieces[i].append((b, 0.0 if db[i] > 0 else float(length[b]), float(mb[i])))
    return pieces


def _rts(s: np.ndarray, t: np.ndarray, sigma: float, accel: float) -> tuple[np.ndarray, np.ndarray]:
    """Constant-velocity Kalman filter + Rauch-Tung-Striebel smoother of positions ``s`` at ``t``.

    Returns (smoothed position, smoothed speed).
    """
    n = len(s)
    r = sigma * sigma
    q = accel * accel
    xs = np.zeros((n, 2))
    ps = np.zeros((n, 2, 2))
    xp = np.zeros((n, 2))
    pp = np.zeros((n, 2, 2))
    v0 = (s[1] - s[0]) / max(t[1] - t[0], 1e-3) if n > 1 else 0.0
    x = np.array([s[0], v0])
    p = np.array([[r, 0.0], [0.0, 100.0]])
    for i in range(n):
        if i:
            dt = t[i] - t[i - 1]
            f = np.array([[1.0, dt], [0.0, 1.0]])
            qm = q * np.array([[dt**4 / 4, dt**3 / 2], [dt**3 / 2, dt * dt]])
            x = f @ x
            p = f @ p @ f.T + qm
        xp[i], pp[i] = x, p
        k = p[:, 0] / (p[0, 0] + r)
        x = x + k * (s[i] - x[0])
        p = p - np.outer(k, p[0])
        xs[i], ps[i] = x, p
    for i in range(n - 2, -1, -1):
        dt = t[i + 1] - t[i]
        f = np.array([[1.0, dt], [0.0, 1.0]])
        c = ps[i] @ f.T @ np.linalg.inv(pp[i + 1])
        xs[i] = xs[i] + c @ (xs[i + 1] - xp[i + 1])
        ps[i] = ps[i] + c @ (ps[i + 1] - pp[i + 1]) @ c.T
    return xs[:, 0], xs[:, 1]


def _place(
    graph: UnitGraph,
    xy: np.ndarray,
    secs: np.ndarray | None,
    has: np.ndarray,
    idx: np.ndarray,
    unit_k: np.ndarray,
    meas_k: np.ndarray,
    dir_k: np.ndarray,
    route_k: np.ndarray,
    restart: np.ndarray,
    cu_all: np.ndarray,
    cm_all: np.ndarray,
    sigma: float,
    accel: float | None,
    back_tol: float,
    uturn_m: float,
    path_out: list[pd.DataFrame] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unit, measure, speed (m/s) and state of every point from the matched (kept) points.

    The matched path of each chain is rebuilt as pieces of units; every point of the chain
    (kept or thinned) is projected onto the part of the path between its kept neighbours, and
    with ``accel`` the positions along the path are smoothed (constant-velocity RTS) before
    being placed back on the units.
    """
    n = len(xy)
    unit = np.full(n, -1, dtype=np.int64)
    meas = np.full(n, np.nan)
    speed = np.full(n, np.nan)
    state = np.full(n, "no_candidate", dtype=object)
    m = len(idx)
    if m == 0:
        return unit, meas, speed, state
    # a continuous path: within a run on one unit in one direction, jitter backwards holds the
    # path where it was (cumulative maximum of the progress)
    run = np.r_[True, restart[1:] | (unit_k[1:] != unit_k[:-1]) | (dir_k[1:] != dir_k[:-1])]
    eff = pd.Series(meas_k * dir_k).groupby(np.cumsum(run)).cummax().to_numpy() * dir_k
    steps = _step_pieces(
        graph,
        unit_k[:-1],
        eff[:-1],
        dir_k[:-1],
        unit_k[1:],
        eff[1:],
        dir_k[1:],
        route_k[1:],
        back_tol,
        uturn_m,
    )
    chain = np.cumsum(restart) - 1  # chain number of each kept point
    # every point with candidates belongs to the step after the kept point at or before it
    pos = np.searchsorted(idx, np.arange(n), side="right") - 1
    for c in range(int(chain.max()) + 1):
        ks = np.flatnonzero(chain == c)
        k0, k1 = int(ks[0]), int(ks[-1])
        lo = int(idx[k0])
        hi = int(idx[k1 + 1]) if k1 + 1 < m else n
        pts = np.arange(lo, hi)
        pts = pts[has[pts]]
        # the chain's path: pieces of its steps, the first starting at the first kept point
        pu: list[int] = [int(unit_k[k0])]
        pf: list[float] = [float(eff[k0])]
        pt: list[float] = [float(eff[k0])]
        step_of_piece: list[int] = [k0]
        for i in range(k0, k1):
            for uu, f, to in steps[i]:
                pu.append(uu)
                pf.append(f)
                pt.append(to)
                step_of_piece.append(i)
        pu_a, pf_a, pt_a = np.array(pu), np.array(pf), np.array(pt)
        sop = np.array(step_of_piece)
        plen = np.abs(pt_a - pf_a)
        end = np.cumsum(plen)
        start = end - plen
        # project each point onto the pieces of its step (kept point i: pieces of step i-1..i)
        kp = np.clip(pos[pts], k0, k1)
        pair_pt, pair_pc = _pairs_by_step(kp, sop, k1)
        gi = pts[pair_pt]
        geoms = graph.index.geoms[pu_a[pair_pc]]
        loc = shapely.line_locate_point(geoms, shapely.points(xy[gi, 0], xy[gi, 1]))
        a = np.minimum(pf_a[pair_pc], pt_a[pair_pc])
        b = np.maximum(pf_a[pair_pc], pt_a[pair_pc])
        loc = np.clip(loc, a, b)
        d = shapely.distance(
            shapely.line_interpolate_point(geoms, loc), shapely.points(xy[gi, 0], xy[gi, 1])
        )
        s_all = start[pair_pc] + np.abs(loc - pf_a[pair_pc])
        o = np.lexsort((s_all, d, pair_pt))
        first = np.r_[True, pair_pt[o][1:] != pair_pt[o][:-1]]
        best = o[first]
        s_meas = np.full(len(pts), np.nan)
        s_meas[pair_pt[best]] = s_all[best]
        # kept points keep their own (jittered) position, not the clamped one
        total = float(end[-1])
        s_hat = np.clip(s_meas, 0.0, total)
        v = np.full(len(pts), np.nan)
        if accel is not None and secs is not None and len(pts) >= 3 and total > 0:
            s_hat, v = _rts(s_meas, secs[pts], sigma, accel)
            s_hat = np.maximum.accumulate(np.clip(s_hat, 0.0, total))
        k = np.clip(np.searchsorted(end, s_hat, side="left"), 0, len(end) - 1)
        # skip zero-length pieces (a candidate touched at its end)
        k = _skip_empty(k, plen)
        off = s_hat - start[k]
        unit[pts] = pu_a[k]
        meas[pts] = pf_a[k] + np.sign(pt_a[k] - pf_a[k]) * off
        speed[pts] = np.maximum(v, 0.0)
        state[pts] = "matched"
        if c > 0:
            state[int(idx[k0])] = "break"
        # the chain's path with the times it was driven (from the placed points)
        if path_out is not None:
            keep = plen > 1e-9
            tt = secs[pts] if secs is not None else np.full(len(pts), np.nan)
            order = np.argsort(s_hat, kind="stable")
            sx, tx = s_hat[order], tt[order]
            path_out.append(
                pd.DataFrame(
                    {
                        "chain": c,
                        "unit": pu_a[keep],
                        "from_m": pf_a[keep],
                        "to_m": pt_a[keep],
                        "length_m": plen[keep],
                        "start_s": start[keep],
                        "t_start": np.interp(start[keep], sx, tx) if len(sx) else np.nan,
                        "t_end": np.interp(end[keep], sx, tx) if len(sx) else np.nan,
                        "first_point": int(pts[0]),
                        "last_point": int(pts[-1]),
                    }
                )
            )
    # points after a break whose step has no path: their nearest candidate, state "break"
    lost = has & (unit < 0)
    unit[lost] = cu_all[lost, 0]
    meas[lost] = cm_all[lost, 0]
    state[lost] = "break"
    return unit, meas, speed, state


def _pairs_by_step(kp: np.ndarray, sop: np.ndarray, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """(point, piece) pairs: a point at kept index kp meets the pieces of steps kp-1 and kp."""
    order = np.argsort(sop, kind="stable")
    sop_sorted = sop[order]
    lo = np.searchsorted(sop_sorted, kp - 1, side="left")
    hi = np.searchsorted(sop_sorted, np.minimum(kp, k1), side="right")
    counts = hi - lo
    pair_pt = np.repeat(np.arange(len(kp)), counts)
    offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    pair_pc = order[np.repeat(lo, counts) + offs]
    return pair_pt, pair_pc


def _skip_empty(k: np.ndarray, plen: np.ndarray) -> np.ndarray:
    """Move piece indices off zero-length pieces (to the next non-empty one, else the last)."""
    nonempty = np.flatnonzero(plen > 1e-9)
    if len(nonempty) == 0:
        return k
    j = np.searchsorted(nonempty, k, side="left")
    j = np.clip(j, 0, len(nonempty) - 1)
    return nonempty[j]
