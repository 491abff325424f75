"""Point events to units: candidates, name-aware choice, intersection precedence, ties."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely

from .index import _INTERSECTION, _MATCHED, _NOT_DONE, _OUTSIDE, _TOO_FAR, UnitIndex
from .names import _pair_name_match


@dataclass
class _PointResult:
    unit: np.ndarray  # position in units, -1 if none
    dist: np.ndarray
    measure: np.ndarray
    status: np.ndarray
    name_matched: int = 0
    name_overrode: int = 0


_BIG = np.iinfo(np.int64).max


def _sorted_by(q: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Pairs ordered by query index (STRtree returns them so; sort only if not)."""
    if len(q) > 1 and (np.diff(q) < 0).any():
        order = np.argsort(q, kind="stable")
        return (q[order], *(o[order] for o in others))
    return (q, *others)


def _group_best(
    g: np.ndarray, d: np.ndarray, rank: np.ndarray, prefer: np.ndarray | None = None
) -> np.ndarray:
    """Index of the best pair per group ``g`` (sorted ascending).

    Best: ``prefer`` first (if given), then the smaller distance (to the micrometre), then
    the smaller ``rank``. Vectorised with ``reduceat``; no sort.
    """
    if len(g) == 0:
        return np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    counts = np.diff(np.r_[starts, len(g)])
    ok = np.ones(len(g), dtype=bool)
    if prefer is not None:
        any_pref = np.maximum.reduceat(prefer.astype(np.int8), starts).astype(bool)
        ok = prefer | ~np.repeat(any_pref, counts)
    dr = np.where(ok, np.round(d, 6), np.inf)
    dmin = np.minimum.reduceat(dr, starts)
    ok &= dr == np.repeat(dmin, counts)
    r = np.where(ok, rank, _BIG)
    rmin = np.minimum.reduceat(r, starts)
    ok &= rank == np.repeat(rmin, counts)
    idx = np.flatnonzero(ok)
    gi = g[idx]
    return idx[np.r_[True, gi[1:] != gi[:-1]]]


def _segment_pairs(
    ix: UnitIndex, pts: np.ndarray, x: np.ndarray, y: np.ndarray, dmax: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(point, unit position, distance, measure) for every unit within ``dmax`` of a point.

    The units' straight pieces are indexed by their bounding boxes grown by ``dmax``; a point
    query returns the pieces whose grown box holds it, and the exact point-to-piece distance
    and the position along the unit are computed in numpy. A unit may appear once per piece
    near the point; the selection downstream keeps the nearest.
    """
    tree = ix.piece_tree(dmax)
    qi, ti = tree.query(pts)
    qi, ti = _sorted_by(qi, ti)
    rx = x[qi]
    rx -= ix.p_ax[ti]
    ry = y[qi]
    ry -= ix.p_ay[ti]
    dx = ix.p_dx[ti]
    dy = ix.p_dy[ti]
    t = rx * dx
    t += ry * dy
    t *= ix.p_il2[ti]
    np.clip(t, 0.0, 1.0, out=t)
    rx -= t * dx
    ry -= t * dy
    rx *= rx
    ry *= ry
    rx += ry  # squared distance
    keep = rx <= dmax * dmax
    qi, ti, t = qi[keep], ti[keep], t[keep]
    d = np.sqrt(rx[keep])
    unit = ix.piece_unit[ti]
    meas = ix.piece_start[ti] + t * ix.piece_len[ti]
    return qi, unit, d, meas


#: Point events joined at a time: bounds the memory the candidate pairs take (a few dozen
#: bytes per pair, several pairs per point) and the shapely points made for the queries.
_CHUNK = 200_000


def _assign_points(
    ix: UnitIndex,
    x: np.ndarray,
    y: np.ndarray,
    kind_codes: np.ndarray,
    names: np.ndarray | None,
    table: np.ndarray,
    *,
    name_aware: bool,
    intersection_precedence: bool,
    area_buffer_m: float,
    name_extra_m: float = 0.0,
) -> _PointResult:
    """Each point (coordinates ``x``, ``y`` in the index's CRS) to its unit, in chunks of
    :data:`_CHUNK` points (each point's result depends on it alone)."""
    n = len(x)
    res = _PointResult(
        np.full(n, -1, dtype=np.int64),
        np.full(n, np.nan),
        np.full(n, np.nan),
        np.full(n, _NOT_DONE, dtype=np.int8),
    )
    if n == 0:
        return res
    has_name = np.zeros(n, dtype=bool)
    if name_aware and names is not None:
        text = pd.Series(names, dtype="string").str.strip()
        has_name = (text.notna() & (text != "")).to_numpy(dtype=bool)
    # the same search radius for every chunk (the pairs' order depends on the tree queried)
    extra = name_extra_m if has_name.any() else 0.0
    # near points one after the other: the tree queries walk the same nodes (a third faster)
    order = _spatial_order(x, y)
    for lo in range(0, n, _CHUNK):
        part = order[lo : lo + _CHUNK]
        got = _assign_chunk(
            ix,
            x[part],
            y[part],
            kind_codes[part],
            names[part] if names is not None else None,
            has_name[part],
            table,
            extra=extra,
            intersection_precedence=intersection_precedence,
            area_buffer_m=area_buffer_m,
        )
        res.unit[part], res.dist[part] = got.unit, got.dist
        res.measure[part], res.status[part] = got.measure, got.status
        res.name_matched += got.name_matched
        res.name_overrode += got.name_overrode
    return res


def _spatial_order(x: np.ndarray, y: np.ndarray, cell_m: float = 500.0) -> np.ndarray:
    """Positions of the points by grid cell of ``cell_m`` (rows of cells, then columns)."""

    def cell(v: np.ndarray) -> np.ndarray:
        # in place on one temporary: a few arrays of the points' size, not a dozen
        c = v - np.nanmin(v)
        c /= cell_m
        np.nan_to_num(c, copy=False)
        np.clip(c, 0, 2**24, out=c)
        return c.astype(np.int64)

    with np.errstate(invalid="ignore"):
        key = cell(y)
        key *= 2**25
        key += cell(x)
    return np.argsort(key, kind="stable")


def _assign_chunk(
    ix: UnitIndex,
    x: np.ndarray,
    y: np.ndarray,
    kind_codes: np.ndarray,
    names: np.ndarray | None,
    has_name: np.ndarray,
    table: np.ndarray,
    *,
    extra: float,
    intersection_precedence: bool,
    area_buffer_m: float,
) -> _PointResult:
    n = len(x)
    unit = np.full(n, -1, dtype=np.int64)
    dist = np.full(n, np.nan)
    measure = np.full(n, np.nan)
    status = np.full(n, _NOT_DONE, dtype=np.int8)
    res = _PointResult(unit, dist, measure, status)
    pts = shapely.points(x, y)
    dmax = float(table.max())

    # -- candidates: segments within their class's distance, intersection discs ----------
    ev_s, un_s, d_s, m_s = _segment_pairs(ix, pts, x, y, dmax + extra)
    lim = table[kind_codes[ev_s], ix.class_codes[un_s]] if len(ev_s) else np.empty(0)
    ok_s = d_s <= lim
    if intersection_precedence and len(ix.ints):
        qi, ti = ix.disc_tree.query(pts)
        qi, ti = _sorted_by(qi, ti)
        d_i = np.hypot(x[qi] - ix.int_xy[ti, 0], y[qi] - ix.int_xy[ti, 1])
        ok = d_i <= ix.radius[ix.ints[ti]]
        ev_i, un_i, d_i = qi[ok], ix.ints[ti[ok]], d_i[ok]
    else:
        ev_i = un_i = np.empty(0, dtype=np.int64)
        d_i = np.empty(0)
    if len(ev_s):
        # an event with a candidate of another name may reach ``extra`` farther for a unit of
        # the street it names before it takes the other street
        has_cand = np.zeros(n, dtype=bool)
        has_cand[ev_s[ok_s]] = True
        has_cand[ev_i] = True
        reach = ~ok_s & has_name[ev_s] & has_cand[ev_s] & (d_s <= lim + extra)
        if reach.any():
            assert names is not None
            ridx = np.flatnonzero(reach)
            ok_s[ridx] = _pair_name_match(names[ev_s[ridx]], ix.names[un_s[ridx]])
        ev_s, un_s, d_s, m_s = ev_s[ok_s], un_s[ok_s], d_s[ok_s], m_s[ok_s]
    ev = np.r_[ev_s, ev_i]
    uu = np.r_[un_s, un_i]
    dd = np.r_[d_s, d_i]
    mm = np.r_[m_s, np.zeros(len(ev_i))]
    is_int = np.r_[np.zeros(len(ev_s), dtype=bool), np.ones(len(ev_i), dtype=bool)]
    if len(ev_i) and len(ev_s):
        order = np.argsort(ev, kind="stable")
        ev, uu, dd, mm, is_int = ev[order], uu[order], dd[order], mm[order], is_int[order]

    if len(ev):
        rank = ix.rank[uu]
        first_plain = _group_best(ev, dd, rank, prefer=is_int)
        first = first_plain
        name_ok = np.zeros(len(ev), dtype=bool)
        named_pair = has_name[ev]
        if named_pair.any():
            assert names is not None
            idx = np.flatnonzero(named_pair)
            name_ok[idx] = _pair_name_match(names[ev[idx]], ix.names[uu[idx]])
            if name_ok.any():
                any_ok = np.zeros(n, dtype=bool)
                any_ok[ev[name_ok]] = True
                keep = ~any_ok[ev] | name_ok
                kidx = np.flatnonzero(keep)
                first = kidx[_group_best(ev[kidx], dd[kidx], rank[kidx], prefer=is_int[kidx])]
        chosen_ev = ev[first]
        unit[chosen_ev] = uu[first]
        dist[chosen_ev] = dd[first]
        measure[chosen_ev] = mm[first]
        status[chosen_ev] = np.where(is_int[first], _INTERSECTION, _MATCHED)
        res.name_matched = int(name_ok[first].sum())
        res.name_overrode = int((uu[first_plain] != uu[first]).sum())

    # -- unmatched: too far (with the distance to the nearest unit) or outside -------------
    rest = np.flatnonzero(status == _NOT_DONE)
    if len(rest):
        inside = shapely.contains_xy(ix.area(area_buffer_m), x[rest], y[rest])
        status[rest[~inside]] = _OUTSIDE
        far = rest[inside]
        status[far] = _TOO_FAR
        if len(far) and len(ix.all_pos):
            (qi, _ti), dn = ix.all_tree.query_nearest(
                pts[far], return_distance=True, all_matches=False
            )
            dist[far[qi]] = dn
    return res
