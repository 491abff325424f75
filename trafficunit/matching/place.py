"""Placing every point of a matched trace on the driven path (:func:`trafficunit.match_trace`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from scipy.sparse.csgraph import dijkstra

from ..routing import UnitGraph
from .hmm import _along, _ends
from .smooth import smooth_along


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


@dataclass
class Decoded:
    """The Viterbi result on the kept points, and what placing every point needs."""

    xy: np.ndarray  # (n, 2) metric coordinates of every point
    secs: np.ndarray | None  # seconds since the first point
    has: np.ndarray  # points with a candidate
    idx: np.ndarray  # kept (HMM) points
    unit: np.ndarray  # per kept point: unit row, measure, direction (+1 / -1)
    meas: np.ndarray
    direction: np.ndarray
    route_d: np.ndarray  # route distance from the previous kept point (inf at a restart)
    restart: np.ndarray
    cu_all: np.ndarray  # nearest candidate of every point (unit row, measure)
    cm_all: np.ndarray


@dataclass
class Smoothing:
    """How :func:`_place` smooths: acceleration (None: chosen by likelihood), speed model
    (``"auto"``, ``"free"`` or ``"limits"``) and the speed limit of every unit (m/s)."""

    accel: float | None
    model: str
    limit_mps: np.ndarray


@dataclass
class Placed:
    """Unit row, measure, placed position, speed (m/s) and state of every point."""

    unit: np.ndarray
    meas: np.ndarray
    xy: np.ndarray
    speed: np.ndarray
    state: np.ndarray
    paths: list[pd.DataFrame]
    speed_sd: np.ndarray
    models: list[tuple[str, float]]  # per smoothed chain: speed model and acceleration


def _with_crossings(
    graph: UnitGraph, pu: np.ndarray, pf: np.ndarray, pt: np.ndarray, sop: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The chain's pieces with a piece of the intersection between two segments that meet at
    one: the straight way from the end of one to the start of the next (a consolidated
    junction is tens of metres across; without it the path, and the smoothed positions along
    it, would be short by that much at every junction). Returns pieces and their lines."""
    geoms = graph.index.geoms[pu]
    a = shapely.get_coordinates(shapely.line_interpolate_point(geoms, pf))
    b = shapely.get_coordinates(shapely.line_interpolate_point(geoms, pt))
    L = graph.length[pu]
    node = np.where(
        pt >= L - 1e-6, graph.to_node[pu], np.where(pt <= 1e-6, graph.from_node[pu], -1)
    )
    gap = np.hypot(*(a[1:] - b[:-1]).T) if len(pu) > 1 else np.zeros(0)
    k = np.flatnonzero((gap > 0.01) & (node[:-1] >= 0) & (node[:-1] < graph.n_int))
    if len(k) == 0:
        return pu, pf, pt, sop, geoms
    lines = shapely.linestrings(np.stack([b[k], a[k + 1]], axis=1))
    at = k + 1
    pu = np.insert(pu, at, graph.node_unit[node[k]])
    pf = np.insert(pf, at, 0.0)
    pt = np.insert(pt, at, gap[k])
    sop = np.insert(sop, at, sop[k + 1])
    geoms = np.insert(geoms, at, lines)
    return pu, pf, pt, sop, geoms


def _end_unit(
    graph: UnitGraph, d: Decoded, p: int, node: int, own: int, leaving: bool
) -> tuple[int, int] | None:
    """(unit, direction) of the candidate of point ``p`` that continues the path at ``node``
    (leaving it, or arriving there when not ``leaving``) and is nearer the point than the
    path's own end unit ``own``; None if there is none."""
    cand = d.cu_all[p]
    cand = cand[(cand >= 0) & (cand != own)]
    if len(cand) == 0:
        return None
    two = graph.backward_ok[cand] | graph.internal[cand]
    head, tail = (graph.from_node, graph.to_node) if leaving else (graph.to_node, graph.from_node)
    fwd = head[cand] == node
    ok = fwd | ((tail[cand] == node) & two)
    if not ok.any():
        return None
    pnt = shapely.points(d.xy[p, 0], d.xy[p, 1])
    dist = shapely.distance(graph.index.geoms[cand[ok]], pnt)
    j = int(np.argmin(dist))
    if dist[j] >= shapely.distance(graph.index.geoms[own], pnt):
        return None
    return int(cand[ok][j]), 1 if fwd[ok][j] else -1


def _whole(
    graph: UnitGraph,
    unit_dir: tuple[int, int],
    step: int,
    pu: list[int],
    pf: list[float],
    pt: list[float],
    sop: list[int],
) -> None:
    """Append the whole of a unit, driven in the given direction, to a path's piece lists."""
    u, direction = unit_dir
    full = float(graph.length[u])
    pu.append(u)
    pf.append(0.0 if direction > 0 else full)
    pt.append(full if direction > 0 else 0.0)
    sop.append(step)


def _chain_pieces(
    graph: UnitGraph, d: Decoded, eff: np.ndarray, steps: list, k0: int, k1: int, last: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pieces (unit, from, to, step, line) of one chain's path, from the start of its first
    kept point's unit to the end of its last one's (in the driving direction): the points
    before the first kept one and after the last (thinned, or the first point itself when GPS
    noise put it ahead) can be placed there, not piled up at the kept point. The path reaches
    one unit further at either end when the chain's first (or ``last``) point is nearer a unit
    that continues it there than the end unit itself: a route's first and last steps are
    cheaper when they stop short (nothing after them pays for it), so Viterbi tends to end a
    chain a unit early."""
    u0, u1 = int(d.unit[k0]), int(d.unit[k1])
    pu: list[int] = []
    pf: list[float] = []
    pt: list[float] = []
    sop: list[int] = []
    entry = graph.from_node[u0] if d.direction[k0] > 0 else graph.to_node[u0]
    pre = _end_unit(graph, d, int(d.idx[k0]), int(entry), u0, leaving=False)
    if pre is not None:
        _whole(graph, pre, k0, pu, pf, pt, sop)
    pu.append(u0)
    pf.append(0.0 if d.direction[k0] > 0 else float(graph.length[u0]))
    pt.append(float(eff[k0]))
    sop.append(k0)
    for i in range(k0, k1):
        for uu, f, to in steps[i]:
            pu.append(uu)
            pf.append(f)
            pt.append(to)
            sop.append(i)
    pu.append(u1)
    pf.append(float(eff[k1]))
    pt.append(float(graph.length[u1]) if d.direction[k1] > 0 else 0.0)
    sop.append(k1)
    exit_node = graph.to_node[u1] if d.direction[k1] > 0 else graph.from_node[u1]
    post = _end_unit(graph, d, last, int(exit_node), u1, leaving=True)
    if post is not None:
        _whole(graph, post, k1, pu, pf, pt, sop)
    return _with_crossings(
        graph, np.array(pu, dtype=np.int64), np.array(pf), np.array(pt), np.array(sop)
    )


def _project(
    xy: np.ndarray,
    pts: np.ndarray,
    kp: np.ndarray,
    k1: int,
    pf: np.ndarray,
    pt: np.ndarray,
    sop: np.ndarray,
    geoms: np.ndarray,
    start: np.ndarray,
) -> np.ndarray:
    """Position along the chain's path of each point: the nearest place on the pieces of the
    steps before and after it (kept point i: pieces of steps i-1 and i)."""
    pair_pt, pair_pc = _pairs_by_step(kp, sop, k1)
    gi = pts[pair_pt]
    p = shapely.points(xy[gi, 0], xy[gi, 1])
    g = geoms[pair_pc]
    loc = shapely.line_locate_point(g, p)
    loc = np.clip(loc, np.minimum(pf[pair_pc], pt[pair_pc]), np.maximum(pf[pair_pc], pt[pair_pc]))
    dist = shapely.distance(shapely.line_interpolate_point(g, loc), p)
    s_all = start[pair_pc] + np.abs(loc - pf[pair_pc])
    o = np.lexsort((s_all, dist, pair_pt))
    best = o[np.r_[True, pair_pt[o][1:] != pair_pt[o][:-1]]]
    s_meas = np.full(len(pts), np.nan)
    s_meas[pair_pt[best]] = s_all[best]
    return s_meas


def _place(
    graph: UnitGraph, d: Decoded, sigma: float, smooth: Smoothing | None, back_tol: float
) -> Placed:
    """Unit, measure, speed and state of every point from the matched (kept) points.

    The matched path of each chain is rebuilt as pieces of units (and of the intersections
    crossed); every point of the chain (kept or thinned) is projected onto the part of the path
    between its kept neighbours, and with ``accel`` the positions along the path are smoothed
    (:func:`.smooth.smooth_along`) before being placed back on the pieces.
    """
    n = len(d.xy)
    out = Placed(
        np.full(n, -1, dtype=np.int64),
        np.full(n, np.nan),
        np.full((n, 2), np.nan),
        np.full(n, np.nan),
        np.full(n, "no_candidate", dtype=object),
        [],
        np.full(n, np.nan),
        [],
    )
    m = len(d.idx)
    if m == 0:
        return out
    # a continuous path: within a run on one unit in one direction, jitter backwards holds the
    # path where it was (cumulative maximum of the progress)
    u, dr = d.unit, d.direction
    run = np.r_[True, d.restart[1:] | (u[1:] != u[:-1]) | (dr[1:] != dr[:-1])]
    eff = pd.Series(d.meas * dr).groupby(np.cumsum(run)).cummax().to_numpy() * dr
    steps = _step_pieces(
        graph, u[:-1], eff[:-1], dr[:-1], u[1:], eff[1:], dr[1:], d.route_d[1:], back_tol, 0.0
    )
    chain = np.cumsum(d.restart) - 1  # chain number of each kept point
    # every point with candidates belongs to the step after the kept point at or before it
    pos = np.searchsorted(d.idx, np.arange(n), side="right") - 1
    for c in range(int(chain.max()) + 1):
        ks = np.flatnonzero(chain == c)
        k0, k1 = int(ks[0]), int(ks[-1])
        pts = np.arange(int(d.idx[k0]), int(d.idx[k1 + 1]) if k1 + 1 < m else n)
        pts = pts[d.has[pts]]
        pu, pf, pt, sop, geoms = _chain_pieces(graph, d, eff, steps, k0, k1, int(pts[-1]))
        plen = np.abs(pt - pf)
        end = np.cumsum(plen)
        start = end - plen
        kp = np.clip(pos[pts], k0, k1)
        s_meas = _project(d.xy, pts, kp, k1, pf, pt, sop, geoms, start)
        total = float(end[-1])
        s_hat = np.clip(s_meas, 0.0, total)
        v = np.full(len(pts), np.nan)
        if smooth is not None and d.secs is not None and len(pts) >= 3 and total > 0:
            sm = smooth_along(
                s_meas,
                d.secs[pts],
                end,
                _piece_limits(graph, pu, smooth.limit_mps),
                sigma=sigma,
                accel=smooth.accel,
                model=smooth.model,
            )
            v = sm.speed
            out.speed_sd[pts] = sm.speed_sd
            out.models.append((sm.model, sm.accel))
            s_hat = np.maximum.accumulate(np.clip(sm.s, 0.0, total))
        # the piece each smoothed position falls on (never a zero-length one)
        k = _skip_empty(np.clip(np.searchsorted(end, s_hat, side="left"), 0, len(end) - 1), plen)
        mk = pf[k] + np.sign(pt[k] - pf[k]) * (s_hat - start[k])
        out.unit[pts] = pu[k]
        out.meas[pts] = mk
        out.xy[pts] = shapely.get_coordinates(shapely.line_interpolate_point(geoms[k], mk))
        out.speed[pts] = np.maximum(v, 0.0)
        out.state[pts] = "matched"
        if c > 0:
            out.state[int(d.idx[k0])] = "break"
        # the driven path: from the first placed point to the last
        lo, hi = float(s_hat[0]), float(s_hat[-1])
        cut_start, cut_end = np.clip(start, lo, hi), np.clip(end, lo, hi)
        sign = np.sign(pt - pf)
        out.paths.append(
            _path_frame(
                c,
                pu,
                pf + sign * (cut_start - start),
                pf + sign * (cut_end - start),
                cut_start - lo,
                cut_end - lo,
                s_hat - lo,
                d.secs,
                pts,
            )
        )
    # points after a break whose step has no path: their nearest candidate, state "break"
    lost = d.has & (out.unit < 0)
    out.unit[lost] = d.cu_all[lost, 0]
    out.meas[lost] = d.cm_all[lost, 0]
    if lost.any():
        g = graph.index.geoms[out.unit[lost]]
        out.xy[lost] = shapely.get_coordinates(shapely.line_interpolate_point(g, out.meas[lost]))
    out.state[lost] = "break"
    return out


def _path_frame(
    c: int,
    pu: np.ndarray,
    pf: np.ndarray,
    pt: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    s_hat: np.ndarray,
    secs: np.ndarray | None,
    pts: np.ndarray,
) -> pd.DataFrame:
    """The chain's path with the times it was driven (from the placed points)."""
    plen = end - start
    keep = plen > 1e-9
    tt = secs[pts] if secs is not None else np.full(len(pts), np.nan)
    order = np.argsort(s_hat, kind="stable")
    sx, tx = s_hat[order], tt[order]
    return pd.DataFrame(
        {
            "chain": c,
            "unit": pu[keep],
            "from_m": pf[keep],
            "to_m": pt[keep],
            "length_m": plen[keep],
            "start_s": start[keep],
            "t_start": np.interp(start[keep], sx, tx) if len(sx) else np.nan,
            "t_end": np.interp(end[keep], sx, tx) if len(sx) else np.nan,
            "first_point": int(pts[0]),
            "last_point": int(pts[-1]),
        }
    )


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


def _piece_limits(graph: UnitGraph, pu: np.ndarray, limit_mps: np.ndarray) -> np.ndarray:
    """Speed limit (m/s) of each piece of a path; a crossing of an intersection keeps the limit
    of the piece before it (the one after it at the path's start)."""
    v = limit_mps[pu].astype(float)
    v[graph.is_int[pu] | ~(v > 0)] = np.nan
    v = pd.Series(v).ffill().bfill().to_numpy()
    return np.where(np.isfinite(v), v, 30 / 3.6)
