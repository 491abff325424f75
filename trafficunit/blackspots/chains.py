"""Road chains: segment units chained into continuous roads with a running distance.

Stages of :func:`road_chains`: the segments' ends, direct links between consecutive pieces,
links through intersections (same road key, compatible direction, straightest pairs), at most
one link per end, one walk through every chain (rings cut once), the running distance with
the junction crossings, and the intersections placed at their joints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy import sparse
from scipy.sparse import csgraph

from .._errors import ValidationError
from .._validate import metric_crs
from ..risk import _units_frame
from ..settings import RiskSettings

__all__ = ["road_chains"]


def _road_key(u: pd.DataFrame, keys: Iterable[str], *, lower: bool = True) -> pd.Series:
    """The first non-empty of ``keys`` per unit (lower-cased unless ``lower`` is False)."""
    out = pd.Series(pd.NA, index=u.index, dtype="string")
    for col in keys:
        if col in u.columns:
            v = u[col].astype("string").str.strip()
            if lower:
                v = v.str.lower()
            v = v.mask(v == "")
            out = out.fillna(v)
    return out


def _end_vectors(geoms: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Unit vector pointing from a segment's end (side 0: start, 1: end) into the segment."""
    n = shapely.get_num_points(geoms)
    i0 = np.where(side == 0, 0, n - 1)
    i1 = np.where(side == 0, 1, n - 2)
    p0 = shapely.get_coordinates(shapely.get_point(geoms, i0))
    p1 = shapely.get_coordinates(shapely.get_point(geoms, i1))
    v = p1 - p0
    norm = np.hypot(v[:, 0], v[:, 1])
    norm[norm == 0] = 1.0
    return np.asarray(v / norm[:, None])


@dataclass
class _Ends:
    """The chained segments and their ends: end ``e`` of segment ``i`` is ``2 * i + side``."""

    s: pd.DataFrame  # segments chained (links inside a complex junction left out)
    ids: np.ndarray  # their unit ids
    key: np.ndarray  # road key per segment (None: unnamed)
    oneway: np.ndarray
    from_unit: np.ndarray
    to_unit: np.ndarray
    e_seg: np.ndarray  # segment of each end (starts, then ends)
    e_side: np.ndarray
    other: np.ndarray  # the unit each end touches
    onode: np.ndarray  # the node (intersection or junction) each end reaches, else None

    @property
    def n(self) -> int:
        return len(self.ids)

    def compatible(
        self, a_seg: np.ndarray, a_side: np.ndarray, b_seg: np.ndarray, b_side: np.ndarray
    ) -> np.ndarray:
        """Two ends may be linked: not two one-way ends flowing into one point, not one segment."""
        both_oneway = self.oneway[a_seg] & self.oneway[b_seg]
        return np.asarray(~(both_oneway & (a_side == b_side)) & (a_seg != b_seg))


def _object_column(s: pd.DataFrame, name: str) -> np.ndarray:
    if name not in s.columns:
        return np.full(len(s), None, dtype=object)
    v = np.array(s[name].astype(object).to_numpy(), dtype=object)
    v[pd.isna(v)] = None
    return v


def _segment_ends(u: pd.DataFrame, cfg: RiskSettings) -> _Ends:
    is_seg = (u["kind"] == "segment").to_numpy()
    internal = np.zeros(len(u), dtype=bool)
    if "junction_id" in u.columns:
        internal = is_seg & u["junction_id"].notna().to_numpy()
    s = u.loc[is_seg & ~internal]
    n = len(s)
    if n == 0:
        raise ValidationError("the units have no segments to chain into roads")
    # every unit id -> the node it stands for (intersection itself; junction link -> junction)
    node_of = pd.Series(u.index.to_numpy(dtype=object), index=u.index)
    if internal.any():
        node_of[internal] = u.loc[internal, "junction_id"].astype(object)
    node_of[is_seg & ~internal] = None
    key = np.array(_road_key(s, cfg.chain_keys).to_numpy(dtype=object), dtype=object)
    key[pd.isna(key)] = None
    oneway = (
        (s["direction"] == "forward").to_numpy() if "direction" in s.columns else np.zeros(n, bool)
    )
    fu, tu = _object_column(s, "from_unit"), _object_column(s, "to_unit")
    other = np.r_[fu, tu]
    return _Ends(
        s=s,
        ids=s.index.to_numpy(dtype=object),
        key=key,
        oneway=oneway,
        from_unit=fu,
        to_unit=tu,
        e_seg=np.r_[np.arange(n), np.arange(n)],
        e_side=np.r_[np.zeros(n, dtype=int), np.ones(n, dtype=int)],
        other=other,
        onode=node_of.reindex(pd.Index(other)).to_numpy(dtype=object),
    )


def _direct_links(e: _Ends) -> tuple[np.ndarray, np.ndarray]:
    """Links of consecutive pieces of one road (segment -> segment), and which ends had one."""
    j = pd.Index(e.ids).get_indexer(pd.Index(e.other))
    direct = j >= 0
    a_seg, a_side, b_seg = e.e_seg[direct], e.e_side[direct], j[direct]
    me = e.ids[a_seg]
    fu_b, tu_b = e.from_unit[b_seg], e.to_unit[b_seg]
    b_side = np.where(fu_b == me, 0, np.where(tu_b == me, 1, -1))
    ka, kb = e.key[a_seg], e.key[b_seg]
    same = np.array([x is None or y is None or x == y for x, y in zip(ka, kb, strict=True)], bool)
    ok = (b_side >= 0) & same & e.compatible(a_seg, a_side, b_seg, b_side)
    na = 2 * a_seg[ok] + a_side[ok]
    nb = 2 * b_seg[ok] + b_side[ok]
    keep = na < nb
    return np.column_stack([na[keep], nb[keep]]), direct


def _node_ends(e: _Ends, at_node: np.ndarray, crs: object) -> pd.DataFrame:
    """Ends meeting at a node with at least one other end of the same road key, with vectors."""
    at_key = at_node & np.array([k is not None for k in e.key[e.e_seg]], dtype=bool)
    ends = pd.DataFrame(
        {
            "node": e.onode[at_key],
            "key": e.key[e.e_seg[at_key]],
            "seg": e.e_seg[at_key],
            "side": e.e_side[at_key],
        }
    )
    ends["size"] = ends.groupby(["node", "key"])["seg"].transform("size")
    ends = ends.loc[ends["size"] >= 2]
    if len(ends):
        geoms = e.s.geometry.to_numpy()[ends["seg"].to_numpy()]
        vec = _end_vectors(geoms, ends["side"].to_numpy())
        if crs is not None and getattr(crs, "is_geographic", False):
            lat = shapely.get_coordinates(shapely.get_point(geoms, 0))[:, 1]
            vec[:, 0] *= np.cos(np.deg2rad(lat))
            vec /= np.maximum(np.hypot(vec[:, 0], vec[:, 1]), 1e-12)[:, None]
        ends = ends.assign(vx=vec[:, 0], vy=vec[:, 1])
    return ends


def _junction_links(e: _Ends, ends: pd.DataFrame, max_turn_deg: float) -> list[np.ndarray]:
    """Links through intersections: same road key, compatible direction, straightest pairs.

    A continuation may turn by at most ``max_turn_deg`` (no U-turns onto the other
    carriageway): the outward vectors' cosine must be <= -cos(max turn).
    """
    links: list[np.ndarray] = []
    max_cos = -float(np.cos(np.deg2rad(max_turn_deg)))
    pairs2 = ends.loc[ends["size"] == 2].sort_values(["node", "key", "seg", "side"])
    if len(pairs2):
        a = pairs2.iloc[0::2]
        b = pairs2.iloc[1::2]
        a_s, a_d = a["seg"].to_numpy(), a["side"].to_numpy()
        b_s, b_d = b["seg"].to_numpy(), b["side"].to_numpy()
        cosang = a["vx"].to_numpy() * b["vx"].to_numpy() + a["vy"].to_numpy() * b["vy"].to_numpy()
        ok = e.compatible(a_s, a_d, b_s, b_d) & (cosang <= max_cos + 1e-9)
        links.append(np.column_stack([2 * a_s[ok] + a_d[ok], 2 * b_s[ok] + b_d[ok]]))
    many = ends.loc[ends["size"] > 2]
    extra = []
    for _, grp in many.groupby(["node", "key"], sort=False):
        seg_g = grp["seg"].to_numpy()
        side_g = grp["side"].to_numpy()
        v = grp[["vx", "vy"]].to_numpy()
        ia, ib = np.triu_indices(len(grp), 1)
        cosang = (v[ia] * v[ib]).sum(axis=1)
        okp = e.compatible(seg_g[ia], side_g[ia], seg_g[ib], side_g[ib]) & (
            cosang <= max_cos + 1e-9
        )
        ia, ib, cosang = ia[okp], ib[okp], cosang[okp]
        used: set[int] = set()
        for t in np.argsort(cosang, kind="stable"):  # straightest first
            x, y = int(ia[t]), int(ib[t])
            if x in used or y in used:
                continue
            used.update((x, y))
            extra.append((2 * seg_g[x] + side_g[x], 2 * seg_g[y] + side_g[y]))
    if extra:
        links.append(np.asarray(extra, dtype=np.int64))
    return links


def _one_link_per_end(links: list[np.ndarray]) -> np.ndarray:
    ext = np.vstack(links) if links else np.zeros((0, 2), dtype=np.int64)
    if len(ext):
        flat = ext.ravel()
        first = np.zeros(len(flat), dtype=bool)
        _, idx = np.unique(flat, return_index=True)
        first[idx] = True
        ext = ext[first.reshape(-1, 2).all(axis=1)]
    return ext


def _walk(ext: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Chain (component) of every end and its rank in one depth-first walk through all chains.

    Rings get one link cut; each chain is walked from one of its free ends.
    """
    m = 2 * n
    internal_edges = np.column_stack([np.arange(0, m, 2), np.arange(1, m, 2)])

    def graph(edges: np.ndarray, size: int) -> sparse.csr_matrix:
        e = np.vstack([internal_edges, edges]) if len(edges) else internal_edges
        return sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(size, size)).tocsr()

    def free_ends(edges: np.ndarray) -> np.ndarray:
        deg = np.bincount(edges.ravel(), minlength=m) if len(edges) else np.zeros(m, dtype=int)
        return np.asarray(deg == 0)

    _, comp = csgraph.connected_components(graph(ext, m), directed=False)
    endpoint = free_ends(ext)
    has_end = np.zeros(comp.max() + 1, dtype=bool)
    has_end[comp[endpoint]] = True
    if not has_end.all() and len(ext):  # rings: cut one link per ring
        ring_link = ~has_end[comp[ext[:, 0]]]
        ring_comp = comp[ext[:, 0]]
        cut = np.zeros(len(ext), dtype=bool)
        idx = np.flatnonzero(ring_link)
        _, first_idx = np.unique(ring_comp[idx], return_index=True)
        cut[idx[first_idx]] = True
        ext = ext[~cut]
        endpoint = free_ends(ext)
        _, comp = csgraph.connected_components(graph(ext, m), directed=False)
    # one start per chain, then one depth-first walk from a virtual root through every chain
    ep = np.flatnonzero(endpoint)
    _, first_ep = np.unique(comp[ep], return_index=True)
    starts = ep[first_ep]
    root = m
    root_edges = np.column_stack([np.full(len(starts), root), starts])
    g = graph(np.vstack([ext, root_edges]) if len(ext) else root_edges, m + 1)
    order = csgraph.depth_first_order(g, root, directed=False, return_predecessors=False)
    rank = np.empty(m + 1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    return comp, rank


def _crossing_gaps(
    u: pd.DataFrame, g_o: np.ndarray, rev_o: np.ndarray, cid: np.ndarray
) -> np.ndarray:
    """Gap between one segment's exit and the next one's entry on a chain (junction crossing).

    A consolidated junction spans metres; the gap counts in the running distance.
    """
    n = len(g_o)
    mcrs = metric_crs(u)
    first_pt = gpd.GeoSeries(shapely.get_point(g_o, 0), crs=u.crs).to_crs(mcrs)
    last_pt = gpd.GeoSeries(shapely.get_point(g_o, -1), crs=u.crs).to_crs(mcrs)
    p0 = np.column_stack([first_pt.x.to_numpy(), first_pt.y.to_numpy()])
    p1 = np.column_stack([last_pt.x.to_numpy(), last_pt.y.to_numpy()])
    entry = np.where(rev_o[:, None], p1, p0)
    exit_ = np.where(rev_o[:, None], p0, p1)
    gap = np.zeros(n)
    if n > 1:
        d = np.hypot(*(entry[1:] - exit_[:-1]).T)
        same_chain = cid[1:] == cid[:-1]
        gap[1:] = np.where(same_chain & np.isfinite(d), d, 0.0)
    return gap


def _intersection_rows(
    e: _Ends,
    at_node: np.ndarray,
    seg_order: np.ndarray,
    rev: np.ndarray,
    cid: np.ndarray,
    ranges: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> pd.DataFrame:
    """Intersections at segment ends, in the middle of the junction crossing, once per road."""
    start_m, end_m, gap = ranges
    gap_after = np.r_[gap[1:], 0.0]
    pos_in_order = np.empty(e.n, dtype=np.int64)
    pos_in_order[seg_order] = np.arange(e.n)
    e_row = pos_in_order[e.e_seg]
    at_start_of_walk = (e.e_side == 0) != rev[e.e_seg]  # the end where the walk enters
    offset = np.where(
        at_start_of_walk,
        start_m[e_row] - gap[e_row] / 2.0,
        end_m[e_row] + gap_after[e_row] / 2.0,
    )
    node_rows = pd.DataFrame(
        {
            "chain_id": cid[e_row[at_node]],
            "unit_id": e.onode[at_node],
            "kind": "intersection",
            "start_m": offset[at_node],
            "end_m": offset[at_node],
            "reversed": False,
        }
    )
    # an intersection sits once on a road: a road that loops back to it (a service loop, a
    # turning circle) keeps the first passage only, so its accidents are never counted twice
    return node_rows.sort_values(["chain_id", "start_m"], kind="stable").drop_duplicates(
        ["chain_id", "unit_id"]
    )


def road_chains(units: gpd.GeoDataFrame, *, settings: RiskSettings | None = None) -> pd.DataFrame:
    """Chain segment units into continuous roads with a running distance.

    Returns
    -------
    pandas.DataFrame
        One row per segment (``kind`` "segment") and one per intersection on a road
        (``kind`` "intersection", ``start_m == end_m``): ``chain_id``, ``unit_id``, ``kind``,
        ``start_m``, ``end_m``, ``reversed`` (the segment is traversed against its drawing
        direction), ``road`` (the chain's name or ref) and ``chain_length_m``. Segments inside
        a complex junction (``junction_id`` set) are represented by their junction.
    """
    cfg = settings or RiskSettings()
    u = _units_frame(units)
    e = _segment_ends(u, cfg)
    n, s = e.n, e.s
    # 1. direct segment -> segment continuations; 2. through intersections
    direct_links, direct = _direct_links(e)
    at_node = ~direct & pd.notna(e.onode)
    ends = _node_ends(e, at_node, u.crs)
    ext = _one_link_per_end([direct_links, *_junction_links(e, ends, cfg.chain_max_turn_deg)])
    comp, rank = _walk(ext, n)
    m = 2 * n
    r0, r1 = rank[0:m:2], rank[1:m:2]
    rev = r1 < r0
    seg_order = np.argsort(np.minimum(r0, r1), kind="stable")
    _, cid = np.unique(comp[0:m:2][seg_order], return_inverse=True)
    length = pd.to_numeric(s["length_m"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    seg_len = length[seg_order]
    rev_o = rev[seg_order]
    # running distance along each chain, junction crossings included
    gap = _crossing_gaps(u, s.geometry.to_numpy()[seg_order], rev_o, cid)
    step_len = seg_len + gap
    cum = np.cumsum(step_len)
    chain_start = np.r_[0, np.flatnonzero(np.diff(cid)) + 1]
    base = np.repeat(
        cum[chain_start] - step_len[chain_start], np.diff(np.r_[chain_start, len(cid)])
    )
    end_m = cum - base
    start_m = end_m - seg_len
    seg_rows = pd.DataFrame(
        {
            "chain_id": cid,
            "unit_id": e.ids[seg_order],
            "kind": "segment",
            "start_m": start_m,
            "end_m": end_m,
            "reversed": rev_o,
        }
    )
    node_rows = _intersection_rows(e, at_node, seg_order, rev, cid, (start_m, end_m, gap))
    out = pd.concat([seg_rows, node_rows], ignore_index=True)
    out = out.sort_values(["chain_id", "start_m", "kind"], kind="stable", ignore_index=True)
    # display name as in the data (not lower-cased)
    disp = _road_key(s, cfg.chain_keys, lower=False).to_numpy(dtype=object)[seg_order]
    road_disp = pd.Series(disp, dtype=object).groupby(cid).first()
    out["road"] = out["chain_id"].map(road_disp)
    chain_len = (
        pd.Series(np.r_[end_m, node_rows["start_m"].to_numpy()])
        .groupby(np.r_[cid, node_rows["chain_id"].to_numpy()])
        .max()
    )
    out["chain_length_m"] = out["chain_id"].map(chain_len)
    return out
