"""The hidden Markov model of :func:`trafficunit.match_trace`: candidates, scores, Viterbi."""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely
from scipy.sparse.csgraph import dijkstra

from .._errors import ValidationError
from ..routing import UnitGraph
from ..routing.graph import CROSSING_SHARE


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
    check_time_order(ns, t, "trace")
    return (ns - ns[0]) / 1e9 if len(ns) else np.zeros(0)


def check_time_order(ns: np.ndarray, times: pd.Series, where: str) -> None:
    """ValidationError at the first row whose time (``ns``: int64 nanoseconds) repeats or goes
    back from the one before it (repeats first)."""
    d = np.diff(ns)
    if (d == 0).any():
        i = int(np.flatnonzero(d == 0)[0]) + 1
        raise ValidationError(f"{where}: duplicate time {times.iloc[i]} at rows {i - 1} and {i}")
    if (d < 0).any():
        i = int(np.flatnonzero(d < 0)[0]) + 1
        raise ValidationError(
            f"{where}: times are not in order (not sorted: row {i}, {times.iloc[i]}, comes "
            f"before row {i - 1}); sort the trace by time"
        )


def _candidates(
    graph: UnitGraph, x: np.ndarray, y: np.ndarray, radius: float, k: int, extra: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit row, measure, distance) arrays of shape (n, k or more); unit -1 where there is
    none. The nearest ``k`` units of each point, and up to ``extra`` more that are among the
    nearest ``k`` of the point before or after it."""
    from ..join import _segment_pairs

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
    rank = _rank_in_group(qi)
    keep = rank < k
    if extra > 0:
        # a unit among the nearest k of the point before or after stays a candidate (up to
        # ``extra`` more): in a dense street grid a point thrown 2-3 sigma off by noise has
        # more than k units nearer than the road it is on, and losing that road from a single
        # point's candidates forces the chain off it (out of a one-way tunnel, for good)
        nu = int(unit.max()) + 1
        key = qi * nu + unit
        top = np.sort(key[keep])
        near = ~keep & (_isin_sorted(key - nu, top) | _isin_sorted(key + nu, top))
        sub = np.flatnonzero(near)
        near[sub[_rank_in_group(qi[sub]) >= extra]] = False
        keep |= near
        qi, unit, d, meas = qi[keep], unit[keep], d[keep], meas[keep]
        rank = _rank_in_group(qi)
        keep = np.ones(len(qi), bool)
        width = int(rank.max()) + 1 if len(rank) else k
        cu = np.full((n, max(width, k)), -1, dtype=np.int64)
        cm = np.zeros(cu.shape)
        cd = np.full(cu.shape, np.inf)
    cu[qi[keep], rank[keep]] = unit[keep]
    cm[qi[keep], rank[keep]] = meas[keep]
    cd[qi[keep], rank[keep]] = d[keep]
    return cu, cm, cd


def _rank_in_group(g: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal values of the sorted array ``g``."""
    if len(g) == 0:
        return np.zeros(0, dtype=np.int64)
    start = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    counts = np.diff(np.r_[start, len(g)])
    return np.arange(len(g)) - np.repeat(start, counts)


def _isin_sorted(x: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Which elements of ``x`` are in ``sorted_keys`` (sorted ascending)."""
    if len(sorted_keys) == 0:
        return np.zeros(len(x), bool)
    j = np.clip(np.searchsorted(sorted_keys, x), 0, len(sorted_keys) - 1)
    return sorted_keys[j] == x


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
    """(exit node, cost to it, entry node, cost from it) of directed positions on units.

    The way to or from an intersection's centre counts :data:`CROSSING_SHARE` of its length
    (see :meth:`UnitGraph._length_matrix`).
    """
    L = graph.length[u]
    a_from = CROSSING_SHARE * graph.approach_from[u]
    a_to = CROSSING_SHARE * graph.approach_to[u]
    fwd = dr > 0
    exit_node = np.where(fwd, graph.to_node[u], graph.from_node[u])
    exit_cost = np.where(fwd, L - m + a_to, m + a_from)
    entry_node = np.where(fwd, graph.from_node[u], graph.to_node[u])
    entry_cost = np.where(fwd, m + a_from, L - m + a_to)
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
