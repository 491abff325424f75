"""Line and polygon events to every unit they touch, with the overlap."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from ..settings import JoinSettings
from .index import _INTERSECTION, _MATCHED, _OUTSIDE, _TOO_FAR, UnitIndex


@dataclass
class _PairResult:
    event: np.ndarray  # position in the non-point events
    unit: np.ndarray
    dist: np.ndarray
    measure: np.ndarray
    overlap: np.ndarray
    status: np.ndarray


def _assign_shapes(
    ix: UnitIndex,
    geoms: np.ndarray,
    tol: np.ndarray,
    cfg: JoinSettings,
    *,
    intersection_precedence: bool,
) -> _PairResult:
    n = len(geoms)
    is_poly = np.isin(shapely.get_type_id(geoms), [3, 6])
    buffers = shapely.buffer(geoms, tol)
    ev_l: list[np.ndarray] = []
    un_l: list[np.ndarray] = []
    di_l: list[np.ndarray] = []
    me_l: list[np.ndarray] = []
    ov_l: list[np.ndarray] = []
    st_l: list[np.ndarray] = []
    if len(ix.seg) and n:
        qi, ti = ix.seg_tree.query(buffers, predicate="intersects")
        seg_geoms = ix.geoms[ix.seg[ti]]
        pieces = shapely.intersection(seg_geoms, buffers[qi])
        piece_len = shapely.length(pieces)
        unit_len = shapely.length(seg_geoms)
        overlap = piece_len.copy()
        # measure: where along the unit the touching piece starts
        pxy, pidx = shapely.get_coordinates(pieces, return_index=True)
        has = np.bincount(pidx, minlength=len(pieces)) > 0
        meas = np.full(len(pieces), np.nan)
        if len(pxy):
            loc_u = shapely.line_locate_point(seg_geoms[pidx], shapely.points(pxy))
            meas[has] = _group_min(loc_u, pidx, len(pieces))[has]
        lines = ~is_poly[qi]
        if lines.any() and len(pxy):
            # along-event extent of the piece: ~0 for a cross street that only touches
            sel = lines[pidx]
            loc_e = shapely.line_locate_point(geoms[qi][pidx[sel]], shapely.points(pxy[sel]))
            lo = _group_min(loc_e, pidx[sel], len(pieces))
            hi = -_group_min(-loc_e, pidx[sel], len(pieces))
            extent = np.where(np.isfinite(hi - lo), hi - lo, 0.0)
            overlap[lines] = np.minimum(extent[lines], piece_len[lines])
        keep = piece_len > 0
        keep &= is_poly[qi] | (overlap >= cfg.min_overlap_m) | (overlap >= 0.5 * unit_len)
        ev_l.append(qi[keep])
        un_l.append(ix.seg[ti[keep]])
        di_l.append(shapely.distance(geoms[qi[keep]], seg_geoms[keep]))
        me_l.append(meas[keep])
        ov_l.append(overlap[keep])
        st_l.append(np.full(int(keep.sum()), _MATCHED, dtype=np.int8))
    if intersection_precedence and len(ix.ints) and n:
        pts = ix.geoms[ix.ints]
        qi, ti = ix.int_tree.query(buffers, predicate="intersects")
        ev_l.append(qi)
        un_l.append(ix.ints[ti])
        di_l.append(shapely.distance(geoms[qi], pts[ti]))
        me_l.append(np.zeros(len(qi)))
        ov_l.append(np.zeros(len(qi)))
        st_l.append(np.full(len(qi), _INTERSECTION, dtype=np.int8))
    ev = np.concatenate(ev_l) if ev_l else np.empty(0, dtype=np.int64)
    un = np.concatenate(un_l) if un_l else np.empty(0, dtype=np.int64)
    di = np.concatenate(di_l) if di_l else np.empty(0)
    me = np.concatenate(me_l) if me_l else np.empty(0)
    ov = np.concatenate(ov_l) if ov_l else np.empty(0)
    st = np.concatenate(st_l) if st_l else np.empty(0, dtype=np.int8)
    # events touching nothing keep one row
    touched = np.zeros(n, dtype=bool)
    touched[ev] = True
    lonely = np.flatnonzero(~touched)
    if len(lonely):
        inside = shapely.intersects(ix.area(cfg.area_buffer_m), geoms[lonely])
        d_near = np.full(len(lonely), np.nan)
        far = np.flatnonzero(inside)
        if len(far) and len(ix.all_pos):
            (qi, _ti), dn = ix.all_tree.query_nearest(
                geoms[lonely[far]], return_distance=True, all_matches=False
            )
            d_near[far[qi]] = dn
        ev = np.r_[ev, lonely]
        un = np.r_[un, np.full(len(lonely), -1, dtype=np.int64)]
        di = np.r_[di, d_near]
        me = np.r_[me, np.full(len(lonely), np.nan)]
        ov = np.r_[ov, np.full(len(lonely), np.nan)]
        st = np.r_[st, np.where(inside, _TOO_FAR, _OUTSIDE).astype(np.int8)]
    # order: by event, then intersections/segments by id
    rank = np.where(un >= 0, ix.rank[np.maximum(un, 0)], -1)
    order = np.lexsort((rank, ev))
    return _PairResult(ev[order], un[order], di[order], me[order], ov[order], st[order])


def _group_min(values: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.inf)
    np.minimum.at(out, groups, values)
    out[~np.isfinite(out)] = np.nan
    return out
