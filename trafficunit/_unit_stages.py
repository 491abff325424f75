"""The stages of :func:`trafficunit.build_units` on coordinate arrays (see its module docs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from . import _hash
from ._errors import ValidationError
from ._unit_arrays import (
    _arrow_strings,
    _coord_keys,
    _curvature,
    _cut_at_vertices,
    _dedupe_ids,
    _id_order,
    _join_strings,
    _key_positions,
    _line_ends,
    _node_codes,
    _node_ids,
    _rank,
    _rings,
    _split_even,
    _src_coords,
    _take,
)
from ._validate import transformer
from .network import COLUMNS

#: The network's attributes a unit carries: its normalised columns but the OSM id and the
#: junction tag (a unit has ids of its own; junctions become intersection units)
_ATTRS = tuple(c for c in COLUMNS if c not in ("osm_id", "junction"))
_ONEWAY = _ATTRS.index("oneway") + 1  # a unit's travel direction stands after the oneway tag

#: Columns of a units GeoDataFrame (besides the ``unit_id`` index and geometry).
UNIT_COLUMNS = (
    "kind",
    "length_m",
    "radius_m",
    *_ATTRS[:_ONEWAY],
    "direction",
    *_ATTRS[_ONEWAY:],
    "osm_ids",
    "from_unit",
    "to_unit",
    "junction_id",
    "degree",
    "road_classes",
    "neighbours",
    "sinuosity",
    "turn_deg_per_km",
)


@dataclass
class UnitsReport:
    """Counts from :func:`build_units`, shown by the CLI summary."""

    roads_in: int
    road_length_km: float
    dropped: dict[str, int]
    segments: int
    intersections: int
    junction_links: int
    metric_crs: str

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return dict(self.__dict__)


class _State:
    """What the stages of a build pass on to the next (named as in the stages)."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def release(self, *names: str) -> None:
        """Let go of arrays no later stage reads (the peak memory of a large build)."""
        for name in names:
            object.__delattr__(self, name)


def _nodes(st: _State) -> None:
    """Nodes: snap vertices, drop repeats and degenerate lines, count road ends; cut at
    junctions.
    """
    cfg, df, dropped, line, src_xy, xy = st.cfg, st.df, st.dropped, st.line, st.src_xy, st.xy
    # -- 1. nodes --------------------------------------------------------------------------
    node, node_first = _node_codes(xy, cfg.snap_m)
    xy = xy[node_first][node]  # snap every vertex to its node's coordinate
    src_xy = src_xy[node_first][node]
    # drop consecutive repeats inside a line
    rep = np.r_[False, (node[1:] == node[:-1]) & (line[1:] == line[:-1])]
    xy, line, node, src_xy = xy[~rep], line[~rep], node[~rep], src_xy[~rep]
    counts = np.bincount(line, minlength=len(df))
    degenerate = counts < 2
    if degenerate.any():
        dropped["zero-length line"] = dropped.get("zero-length line", 0) + int(degenerate.sum())
        keep_v = ~degenerate[line]
        xy, line, node, src_xy = xy[keep_v], line[keep_v], node[keep_v], src_xy[keep_v]
    if len(xy) == 0:
        raise ValidationError(
            f"no usable road lines: all {len(df)} lines are shorter than snap_m={cfg.snap_m} m"
        )
    is_first = np.r_[True, line[1:] != line[:-1]]
    is_last = np.r_[line[1:] != line[:-1], True]
    interior = ~is_first & ~is_last
    n_nodes = len(node_first)
    degree = np.bincount(node, weights=np.where(interior, 2, 1), minlength=n_nodes)
    junction_node = degree >= 3

    # -- 2. cut at junctions ---------------------------------------------------------------
    cut = interior & junction_node[node]
    pxy, piece_of_v, piece_line = _cut_at_vertices(xy, line, cut)
    pnode = np.repeat(node, 1 + cut.astype(np.int64))
    psrc = np.repeat(src_xy, 1 + cut.astype(np.int64), axis=0)
    n_piece = len(piece_line)
    p_first = np.r_[0, np.flatnonzero(piece_of_v[1:] != piece_of_v[:-1]) + 1]
    p_last = np.r_[p_first[1:] - 1, len(piece_of_v) - 1]
    p_start, p_end = pnode[p_first], pnode[p_last]
    st.degree, st.junction_node, st.n_nodes, st.n_piece = degree, junction_node, n_nodes, n_piece
    st.p_end, st.p_first, st.p_last, st.p_start = p_end, p_first, p_last, p_start
    st.piece_line, st.piece_of_v, st.psrc, st.pxy = piece_line, piece_of_v, psrc, pxy
    st.release("xy", "src_xy", "line")


def _chain_pieces(st: _State) -> None:
    """Chain pieces across degree-2 nodes where their attributes agree; merge each chain's
    lines.
    """
    cfg, degree, df, junction_node = st.cfg, st.degree, st.df, st.junction_node
    n_piece, p_end, p_start, piece_line = st.n_piece, st.p_end, st.p_start, st.piece_line
    piece_of_v, pxy = st.piece_of_v, st.pxy
    # -- 3. chain pieces across degree-2 nodes with equal attributes ------------------------
    # attributes stay per road line (no geometry), taken per piece, chain or segment by index
    lines = pd.DataFrame(df.drop(columns=df.geometry.name))
    key_cols = list(dict.fromkeys([*cfg.split_on, "name", "ref", "oneway"]))
    key = lines[key_cols].astype(object).where(lines[key_cols].notna(), "\x00na").astype(str)
    merge_key = key.groupby(key_cols, sort=False).ngroup().to_numpy()[piece_line]
    line_oneway = lines["oneway"].fillna(False).astype(bool).to_numpy()
    oneway = line_oneway[piece_line]
    ends_node = np.r_[p_start, p_end]
    ends_piece = np.r_[np.arange(n_piece), np.arange(n_piece)]
    ends_is_start = np.r_[np.ones(n_piece, bool), np.zeros(n_piece, bool)]
    joint = (degree[ends_node] == 2) & ~junction_node[ends_node]
    jn = ends_node[joint]
    order_joint = np.argsort(jn, kind="stable")
    jn_sorted = jn[order_joint]
    jp = ends_piece[joint][order_joint]
    js = ends_is_start[joint][order_joint]
    pair = np.flatnonzero(jn_sorted[1:] == jn_sorted[:-1])
    a, b = jp[pair], jp[pair + 1]
    sa, sb = js[pair], js[pair + 1]
    ok = (a != b) & (merge_key[a] == merge_key[b])
    ok &= ~oneway[a] | (sa != sb)  # one-way chains continue head to tail
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(int(ok.sum())), (a[ok], b[ok])), shape=(n_piece, n_piece))
    _, comp = connected_components(graph, directed=False)
    # canonical chain numbering: by first piece in input order
    _, chain = np.unique(comp, return_inverse=True)
    n_chain = int(chain.max()) + 1
    piece_geoms = shapely.linestrings(pxy, indices=piece_of_v)
    piece_len = shapely.length(piece_geoms)
    multi = np.bincount(chain, minlength=n_chain) > 1
    chain_geoms = np.empty(n_chain, dtype=object)
    single = np.flatnonzero(~multi[chain])
    chain_geoms[chain[single]] = piece_geoms[single]
    if multi.any():
        mp = np.flatnonzero(multi[chain])
        sub_chain = chain[mp]
        order = np.argsort(sub_chain, kind="stable")
        chains_multi, dense = np.unique(sub_chain[order], return_inverse=True)
        mls = shapely.multilinestrings(piece_geoms[mp][order], indices=dense)
        one = oneway[mp][order]
        directed = np.zeros(n_chain, bool)
        directed[sub_chain[order][one]] = True
        merged = np.empty(len(chains_multi), dtype=object)
        d = directed[chains_multi]
        if d.any():
            merged[d] = shapely.line_merge(mls[d], directed=True)
        if (~d).any():
            merged[~d] = shapely.line_merge(mls[~d])
        chain_geoms[chains_multi] = merged
    st.lines, st.line_oneway = lines, line_oneway
    st.chain, st.chain_geoms, st.ends_piece = chain, chain_geoms, ends_piece
    st.joint, st.n_chain, st.ok, st.order_joint, st.pair = joint, n_chain, ok, order_joint, pair
    st.piece_geoms, st.piece_len = piece_geoms, piece_len


def _chain_fix(st: _State) -> None:
    """Closed rings start at their junction; failed merges fall back to pieces; chain
    attributes, source ways, content hashes and rings.
    """
    lines, chain, chain_geoms, ends_piece = st.lines, st.chain, st.chain_geoms, st.ends_piece
    piece_line = st.piece_line
    geographic, joint, n_chain, n_nodes = st.geographic, st.joint, st.n_chain, st.n_nodes
    n_piece, ok, order_joint, p_end = st.n_piece, st.ok, st.order_joint, st.p_end
    p_first, p_last, p_start, pair = st.p_first, st.p_last, st.p_start, st.pair
    piece_geoms, piece_len, psrc, pxy = st.piece_geoms, st.piece_len, st.psrc, st.pxy
    piece_of_v = st.piece_of_v
    # a chain that closes a ring at a junction must start and end there, whereas line_merge
    # may have started the ring anywhere (and so passed through the junction)
    joined_end = np.zeros(2 * n_piece, dtype=bool)
    eidx = np.flatnonzero(joint)[order_joint]
    joined_end[eidx[pair][ok]] = True
    joined_end[eidx[pair + 1][ok]] = True
    free = ~joined_end
    free_chain = chain[ends_piece[free]]
    free_xy = np.concatenate([pxy[p_first], pxy[p_last]])[free]
    closed = shapely.is_closed(chain_geoms) & (shapely.get_type_id(chain_geoms) == 1)
    for c in np.unique(free_chain[closed[free_chain]]):
        start_xy = free_xy[free_chain == c][0]
        ring = shapely.get_coordinates(chain_geoms[c])
        hit = np.flatnonzero((ring[:-1] == start_xy).all(axis=1))
        if len(hit) and hit[0] != 0:
            i = hit[0]
            chain_geoms[c] = shapely.linestrings(np.concatenate([ring[i:-1], ring[: i + 1]]))
    # a merge that did not give one line (should not happen) falls back to its pieces
    bad_merge = shapely.get_type_id(chain_geoms) != 1
    if bad_merge.any():
        bad_chains = np.flatnonzero(bad_merge)
        remap = np.isin(chain, bad_chains)
        new_ids = n_chain + np.arange(int(remap.sum()))
        chain = chain.copy()
        chain[remap] = new_ids
        chain_geoms = np.concatenate([chain_geoms, piece_geoms[remap]])
        keep_c = np.ones(len(chain_geoms), bool)
        keep_c[bad_chains] = False
        newnum = np.cumsum(keep_c) - 1
        chain = newnum[chain]
        chain_geoms = chain_geoms[keep_c]
        n_chain = len(chain_geoms)
    # attributes of a chain: its longest piece
    order = np.lexsort((-piece_len, chain))
    lead_piece = order[np.r_[True, chain[order][1:] != chain[order][:-1]]]
    chain_line = piece_line[lead_piece]
    line_osm = pa.array(lines["osm_id"].astype("Int64").astype("string"))
    chain_osm = _join_strings(chain, line_osm.take(piece_line), n_chain)
    # content hash of each chain: its source ways + its source coordinates (rounded)
    piece_keys = _coord_keys(psrc, geographic)
    pk_piece = piece_of_v
    piece_hash = _hash.combine(
        _hash.hash_groups(piece_keys[:, 0], pk_piece, n_piece),
        _hash.hash_groups(piece_keys[:, 1], pk_piece, n_piece),
        pd.to_numeric(lines["osm_id"], errors="coerce").fillna(-1).to_numpy(np.int64)[piece_line],
    )
    # a chain's hash must not depend on piece order: xor of its pieces' hashes
    chain_hash = np.zeros(n_chain, dtype=np.uint64)
    np.bitwise_xor.at(chain_hash, chain, piece_hash)

    ring_of_node, chain_ring = _rings(lines, piece_line, p_start, p_end, chain, n_nodes, n_chain)
    st.chain_line, st.chain_geoms, st.chain_hash = chain_line, chain_geoms, chain_hash
    st.release("piece_geoms", "psrc")
    st.chain_osm, st.chain_ring, st.ring_of_node = chain_osm, chain_ring, ring_of_node


def _even_split(st: _State) -> None:
    """Cut each chain evenly into segments no longer than ``max_length_m``; their ids."""
    cfg, chain_line, chain_geoms = st.cfg, st.chain_line, st.chain_geoms
    chain_hash = st.chain_hash
    # -- 4. even split ---------------------------------------------------------------------
    seg_geoms, seg_chain, seg_k, seg_n = _split_even(chain_geoms, cfg.max_length_m)
    seg_line = chain_line[seg_chain]  # the road line whose attributes a segment carries
    seg_len = shapely.length(seg_geoms)
    two_way = ~st.line_oneway[seg_line]
    # canonical piece number for two-way chains: count from the end with the lower node key
    c_start, c_end = _line_ends(chain_geoms)
    sx, sy = c_start[:, 0], c_start[:, 1]
    ex, ey = c_end[:, 0], c_end[:, 1]
    flip = (ex < sx) | ((ex == sx) & (ey < sy))
    k_canon = np.where(two_way & flip[seg_chain], seg_n - 1 - seg_k, seg_k)
    seg_hash = _hash.combine(chain_hash[seg_chain], k_canon, seg_n)
    seg_ids = _hash.to_ids("S", seg_hash)
    st.seg_hash = seg_hash
    st.seg_line, st.seg_chain, st.seg_geoms, st.seg_ids = seg_line, seg_chain, seg_geoms, seg_ids
    st.seg_len, st.seg_n, st.two_way = seg_len, seg_n, two_way
    st.release("chain_geoms")


def _intersections(st: _State) -> None:
    """Junction clusters (within ``junction_merge_m``, and closed rings), the segment ends at
    them, their ids, centres and extents.
    """
    cfg, chain_ring, geographic, in_crs = st.cfg, st.chain_ring, st.geographic, st.in_crs
    junction_node, mcrs, p_end, p_first = st.junction_node, st.mcrs, st.p_end, st.p_first
    p_last, p_start, pxy, ring_of_node = st.p_last, st.p_start, st.pxy, st.ring_of_node
    seg_chain, seg_geoms, seg_len, seg_n = st.seg_chain, st.seg_geoms, st.seg_len, st.seg_n
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    # -- 5. intersections ------------------------------------------------------------------
    s_start, s_end = _line_ends(seg_geoms)
    n_seg = len(seg_geoms)
    end_xy = np.concatenate([s_start, s_end])
    end_node_local, end_first = _node_codes(end_xy, cfg.snap_m)
    # junction nodes: the piece ends that lie on a node where three or more road ends meet
    jxy = pxy[p_first][junction_node[p_start]]
    jxy = np.concatenate([jxy, pxy[p_last][junction_node[p_end]]])
    jnode = np.concatenate([p_start[junction_node[p_start]], p_end[junction_node[p_end]]])
    if len(jxy):
        j_first = _node_ids(jxy, cfg.snap_m)[1]
        junction_xy, junction_nd = jxy[j_first], jnode[j_first]
    else:
        junction_xy, junction_nd = np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    # cluster junctions closer than junction_merge_m, and the junctions on one closed ring
    # (a roundabout, a square) whatever its size
    if len(junction_xy):
        pts = shapely.points(junction_xy)
        if cfg.junction_merge_m > 0:
            tree = shapely.STRtree(pts)
            qi, qj = tree.query(pts, predicate="dwithin", distance=cfg.junction_merge_m)
        else:
            qi = qj = np.arange(len(pts))
        ring = ring_of_node[junction_nd]
        on_ring = np.flatnonzero(ring >= 0)
        if len(on_ring):
            o = on_ring[np.argsort(ring[on_ring], kind="stable")]
            head = o[np.r_[0, np.flatnonzero(np.diff(ring[o])) + 1]]
            first_of_ring = pd.Series(head, index=ring[head])
            qi = np.r_[qi, on_ring]
            qj = np.r_[qj, first_of_ring.reindex(ring[on_ring]).to_numpy(dtype=np.int64)]
        g = coo_matrix((np.ones(len(qi)), (qi, qj)), shape=(len(pts), len(pts)))
        _, cluster = connected_components(g, directed=False)
    else:
        cluster = np.zeros(0, dtype=np.int64)
    n_int = int(cluster.max()) + 1 if len(cluster) else 0
    # map segment ends to clusters
    jkeys = np.floor(junction_xy / cfg.snap_m + 0.5).astype(np.int64)
    ekeys = np.floor(end_xy / cfg.snap_m + 0.5).astype(np.int64)
    pos = _key_positions(jkeys, ekeys)
    end_cluster = np.where(pos >= 0, cluster[np.maximum(pos, 0)] if n_int else -1, -1)
    start_cl, end_cl = end_cluster[:n_seg], end_cluster[n_seg:]
    internal = (
        (start_cl >= 0)
        & (start_cl == end_cl)
        & (seg_len <= 2 * max(cfg.junction_merge_m, cfg.snap_m))
        & (seg_n == 1)
    )
    # a single-node junction has no internal links (a loop back to it is a real segment)
    nodes_per_cluster = np.bincount(cluster, minlength=n_int) if n_int else np.zeros(0, int)
    internal &= nodes_per_cluster[np.maximum(start_cl, 0)] > 1 if n_int else False
    # every piece of a closed ring belongs to the ring's junction, however long
    seg_ring = chain_ring[seg_chain]
    ring_cluster = np.full(int(ring_of_node.max()) + 2, -1, dtype=np.int64)
    if n_int:
        jr = ring_of_node[junction_nd]
        ring_cluster[jr[jr >= 0]] = cluster[jr >= 0]
    ring_cl = np.where(seg_ring >= 0, ring_cluster[seg_ring], -1)
    ring_link = ring_cl >= 0
    internal |= ring_link
    link_cl = np.where(ring_link, ring_cl, start_cl)
    # intersection ids: hash of member node keys (input CRS, rounded)
    if n_int:
        j_src = _src_coords(junction_xy, mcrs, in_crs)
        jkeys_src = _coord_keys(j_src, geographic)
        order = np.lexsort((jkeys_src[:, 1], jkeys_src[:, 0], cluster))
        cl_sorted = cluster[order]
        int_hash = _hash.combine(
            _hash.hash_groups(jkeys_src[order, 0], cl_sorted, n_int),
            _hash.hash_groups(jkeys_src[order, 1], cl_sorted, n_int),
        )
        int_ids = _hash.to_ids("I", int_hash)
        st.int_hash = int_hash
        centre = np.column_stack(
            [
                np.bincount(cluster, weights=junction_xy[:, 0]) / nodes_per_cluster,
                np.bincount(cluster, weights=junction_xy[:, 1]) / nodes_per_cluster,
            ]
        )
        spread = np.hypot(*(junction_xy - centre[cluster]).T)
        extent = np.zeros(n_int)
        np.maximum.at(extent, cluster, spread)
    else:
        int_ids = np.zeros(0, dtype=object)
        st.int_hash = np.zeros(0, dtype=np.uint64)
        centre = np.zeros((0, 2))
        extent = np.zeros(0)
    st.centre, st.end_cl, st.end_first = centre, end_cl, end_first
    st.end_node_local, st.extent, st.int_ids = end_node_local, extent, int_ids
    st.internal, st.link_cl, st.n_int, st.n_seg = internal, link_cl, n_int, n_seg
    st.start_cl = start_cl


def _adjacency(st: _State) -> None:
    """Neighbours of every unit; junction links; the intersections' degree, classes, names and
    lead road.
    """
    end_cl, end_first, end_node_local = st.end_cl, st.end_first, st.end_node_local
    int_ids, internal, link_cl, n_int = st.int_ids, st.internal, st.link_cl, st.n_int
    n_seg, seg_line, seg_ids, seg_len = st.n_seg, st.seg_line, st.seg_ids, st.seg_len
    lines, start_cl = st.lines, st.start_cl
    # -- 6. adjacency ----------------------------------------------------------------------
    by_id = _id_order(st.seg_hash, st.int_hash)
    if by_id is None:  # equal ids (the same way twice): suffixed, then sorted as text
        seg_ids, int_ids = _dedupe_ids(seg_ids, int_ids)
    # every unit's id, segments then intersections: units refer to each other by position
    all_ids = pa.array(np.r_[seg_ids, int_ids], pa.string())
    if by_id is None:
        by_id = pc.sort_indices(all_ids).to_numpy()  # stable; bytewise = code point order
    id_rank = np.empty(len(by_id), dtype=np.int64)
    id_rank[by_id] = np.arange(len(by_id))  # ids are unique: their order sorts them as text
    # ends: (node, segment, is_start)
    e_seg = np.r_[np.arange(n_seg), np.arange(n_seg)]
    e_cl = np.r_[start_cl, end_cl]
    other = np.full(2 * n_seg, -1, dtype=np.int64)
    plain = e_cl < 0
    pn = end_node_local[plain]
    pidx = np.flatnonzero(plain)
    order = np.argsort(pn, kind="stable")
    pn_s, pidx_s = pn[order], pidx[order]
    cnt = np.bincount(pn_s, minlength=len(end_first)) if len(pn_s) else np.zeros(0, int)
    two = (
        np.flatnonzero((pn_s[1:] == pn_s[:-1]) & (cnt[pn_s[1:]] == 2))
        if len(pn_s)
        else np.zeros(0, dtype=np.int64)
    )
    other[pidx_s[two]] = e_seg[pidx_s[two + 1]]
    other[pidx_s[two + 1]] = e_seg[pidx_s[two]]
    # the unit at each end, as a position in all_ids (-1: none)
    at_int = e_cl >= 0
    e_ref = other.copy()
    e_ref[at_int] = n_seg + e_cl[at_int]
    # internal links belong to their junction: both ends point at it
    from_ref, to_ref = e_ref[:n_seg], e_ref[n_seg:]
    junction_ref = np.full(n_seg, -1, dtype=np.int64)
    junction_ref[internal] = n_seg + link_cl[internal]
    seg_neigh = _join_strings(e_seg, _take(all_ids, e_ref), n_seg, ranks=id_rank[e_ref])
    # intersection attributes from the segments that end there
    ie = at_int
    ie_cl = e_cl[ie]
    ie_seg = e_seg[ie]
    ie_internal = internal[ie_seg]
    deg = np.bincount(ie_cl[~ie_internal], minlength=n_int) if n_int else np.zeros(0)
    # a cluster with fewer than three roads leaving it (a small loop or an isolated knot of
    # links) is not one junction: its links stay ordinary segments
    weak = deg < 3
    if weak.any():
        undo = internal & weak[np.maximum(link_cl, 0)]
        internal &= ~undo
        junction_ref[undo] = -1
        ie_internal = internal[ie_seg]
        deg = np.bincount(ie_cl[~ie_internal], minlength=n_int)
    int_neigh = _join_strings(ie_cl, all_ids.take(ie_seg), n_int, ranks=id_rank[ie_seg])
    line_class = pa.array(lines["road_class"].astype("string"))
    line_name = pa.array(lines["name"].astype("string"))
    through = ie_seg[~ie_internal]
    int_classes = _join_strings(ie_cl[~ie_internal], line_class.take(seg_line[through]), n_int)
    int_names = _join_strings(ie_cl, line_name.take(seg_line[ie_seg]), n_int)
    rank = _rank(lines["road_class"])[seg_line]
    lead = _lead_segments(ie_cl, ie_seg, rank, seg_len, n_int)
    st.by_id = by_id
    st.all_ids, st.deg, st.from_ref, st.ie_cl, st.ie_seg = all_ids, deg, from_ref, ie_cl, ie_seg
    st.int_classes, st.int_names, st.line_class, st.line_name = (
        int_classes,
        int_names,
        line_class,
        line_name,
    )
    st.int_neigh, st.internal, st.junction_ref, st.lead = int_neigh, internal, junction_ref, lead
    st.seg_neigh, st.to_ref = seg_neigh, to_ref


def _as_string(values: pa.Array) -> Any:
    """A pandas ``string`` array holding an Arrow string array (no Python objects)."""
    return values.to_pandas(types_mapper=lambda _: pd.StringDtype()).array


def _lead_segments(
    ie_cl: np.ndarray, ie_seg: np.ndarray, rank: np.ndarray, seg_len: np.ndarray, n_int: int
) -> np.ndarray:
    """The lead segment of each intersection (-1: none): of the segments ending there, the
    highest road class (lowest rank), then the longest, then the first.

    Three grouped minimum/maximum passes instead of a four-key sort.
    """
    lead = np.full(n_int, -1, dtype=np.int64)
    if not (n_int and len(ie_seg)):
        return lead
    r, length = rank[ie_seg], seg_len[ie_seg]
    best_rank = np.full(n_int, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best_rank, ie_cl, r)
    cand = r == best_rank[ie_cl]
    best_len = np.full(n_int, -np.inf)
    np.maximum.at(best_len, ie_cl[cand], length[cand])
    cand &= length == best_len[ie_cl]
    first = np.full(n_int, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, ie_cl[cand], ie_seg[cand])
    has = first < np.iinfo(np.int64).max
    lead[has] = first[has]
    return lead


def _unit_geometries(st: _State, by_id: np.ndarray) -> np.ndarray:
    """Segment lines and intersection points in the input CRS, in ``by_id`` order.

    Transforms the coordinate arrays once and builds the geometries from them (the same
    coordinates as ``GeoDataFrame.to_crs``, without a copy of the table and its geometries),
    each kind made in ``by_id`` order: the geometries lie in memory in the order of the
    array, which halves the time of encoding them (WKB) and makes freeing them ten times
    faster than geometries made in another order and then shuffled.
    """
    import pyproj

    xy, part = shapely.get_coordinates(st.seg_geoms, return_index=True)
    mcrs, in_crs = pyproj.CRS.from_user_input(st.mcrs), pyproj.CRS.from_user_input(st.in_crs)
    n_seg = len(st.seg_geoms)
    is_seg = by_id < n_seg
    seg_order, pt_order = by_id[is_seg], by_id[~is_seg] - n_seg
    # the segments' coordinates in id order: each segment's run of vertices, moved whole
    first = np.searchsorted(part, np.arange(n_seg))
    count = np.diff(np.r_[first, len(part)])[seg_order]
    starts = np.repeat(first[seg_order] - np.r_[0, np.cumsum(count)[:-1]], count)
    vertex = starts + np.arange(len(starts))
    x = np.concatenate([xy[vertex, 0], st.centre[pt_order, 0]])
    y = np.concatenate([xy[vertex, 1], st.centre[pt_order, 1]])
    del xy, vertex, starts
    if not mcrs.is_exact_same(in_crs):
        transformer(mcrs, in_crs).transform(x, y, inplace=True)
    n = int(count.sum())
    out = np.empty(len(by_id), dtype=object)
    out[is_seg] = shapely.linestrings(x[:n], y[:n], indices=np.repeat(np.arange(len(count)), count))
    out[~is_seg] = shapely.points(x[n:], y[n:])
    return out


def _assemble(st: _State) -> None:
    """The units table: segments and intersections, dtypes fixed, in ``unit_id`` order.

    Every column is built once, already in ``unit_id`` order: attributes are taken from the
    road lines by index, text stays in Arrow arrays (no object round trips, no table copies).
    """
    all_ids, cfg, chain_osm, deg, dropped = st.all_ids, st.cfg, st.chain_osm, st.deg, st.dropped
    extent, ie_cl, ie_seg, lead, lines = st.extent, st.ie_cl, st.ie_seg, st.lead, st.lines
    in_crs, n_int, n_seg, seg_line = st.in_crs, st.n_int, st.n_seg, st.seg_line
    seg_chain, seg_geoms, seg_len, two_way = st.seg_chain, st.seg_geoms, st.seg_len, st.two_way
    # -- 7. assemble -------------------------------------------------------------------------
    sinuosity, turn = _curvature(seg_geoms, seg_len)
    by_id = st.by_id
    is_seg = by_id < n_seg
    lead_line = seg_line[np.maximum(lead, 0)]
    unit_line = np.r_[seg_line, lead_line][by_id]  # the road line whose attributes it carries

    def num(seg_part: Any, int_part: Any) -> np.ndarray:
        return np.concatenate([np.asarray(seg_part), np.asarray(int_part)])[by_id]

    def text(seg_values: pa.Array, seg_index: np.ndarray, int_part: pa.Array) -> Any:
        # segments take seg_values[seg_index], intersections int_part: one take in id order
        both = pa.concat_arrays([_arrow_strings(seg_values), _arrow_strings(int_part)])
        idx = np.r_[seg_index, len(seg_values) + np.arange(n_int)][by_id]
        return _as_string(both.take(pa.array(idx)))

    def refs(seg_part: np.ndarray) -> Any:
        return _as_string(_take(all_ids, num(seg_part, np.full(n_int, -1, dtype=np.int64))))

    def line_text(col: str) -> Any:
        return lines[col].astype("string").take(unit_line).array

    def line_num(col: str) -> np.ndarray:
        return pd.to_numeric(lines[col], errors="coerce").astype(float).to_numpy()[unit_line]

    def line_bool(col: str) -> np.ndarray:
        return lines[col].fillna(False).astype(bool).to_numpy()[unit_line]

    top_class = lines["road_class"].astype("string").take(lead_line)
    influence = top_class.map(cfg.influence_m_by_class).astype(float)
    influence = influence.fillna(cfg.default_influence_m).to_numpy()
    # an intersection's source ways: those of the segments ending there
    int_osm = _join_strings(ie_cl, chain_osm.take(pa.array(seg_chain[ie_seg])), n_int)
    cols: dict[str, Any] = {
        "kind": pd.Series(["segment", "intersection"]).astype(str).array.take(1 - is_seg),
        "length_m": num(seg_len, np.zeros(n_int)),
        "radius_m": num(np.full(n_seg, np.nan), influence + extent),
        "road_class": lines["road_class"].astype(str).take(unit_line).array,
        "ramp": line_bool("ramp"),
        "name": text(st.line_name, seg_line, st.int_names),
        "ref": line_text("ref"),
        "maxspeed_kmh": line_num("maxspeed_kmh"),
        "lanes": line_num("lanes"),
        "oneway": np.where(is_seg, st.line_oneway[unit_line], False),
        "direction": text(pa.array(["both", "forward"]), 1 - two_way, pa.nulls(n_int)),
        "lit": np.asarray(lines["lit"].to_numpy()[unit_line], dtype=object),
        "sidewalk": line_text("sidewalk"),
        "surface": line_text("surface"),
        "bridge": line_bool("bridge"),
        "tunnel": line_bool("tunnel"),
        "osm_ids": text(chain_osm, seg_chain, int_osm),
        "from_unit": refs(st.from_ref),
        "to_unit": refs(st.to_ref),
        "junction_id": refs(st.junction_ref),
        "degree": num(np.zeros(n_seg, dtype=np.int64), deg.astype(np.int64)),
        "road_classes": text(st.line_class, seg_line, st.int_classes),
        "neighbours": text(st.seg_neigh, np.arange(n_seg), st.int_neigh),
        "sinuosity": num(sinuosity, np.full(n_int, np.nan)),
        "turn_deg_per_km": num(turn, np.full(n_int, np.nan)),
    }
    for c in ("aadt", "layer", "jurisdiction"):
        if c in lines.columns:
            cols[c] = line_num(c) if c == "aadt" else line_text(c)
    index = pd.Index(all_ids.take(pa.array(by_id)).to_numpy(zero_copy_only=False), name="unit_id")
    units = gpd.GeoDataFrame(
        pd.DataFrame(cols, index=index),
        geometry=_unit_geometries(st, by_id),
        crs=in_crs,
    )
    units.attrs["report"] = UnitsReport(
        roads_in=len(st.roads),
        road_length_km=st.road_length_km,
        dropped=dropped,
        segments=n_seg,
        intersections=n_int,
        junction_links=int(st.internal.sum()),
        metric_crs=str(st.mcrs.to_string()),
    ).as_dict()
    st.units = units


def _metric_bounds_of(st: _State) -> np.ndarray:
    """Bounds (xmin, ymin, xmax, ymax) of the built units in the metric CRS, in ``unit_id``
    order: of the segments as cut there (before their projection to the input CRS) and of
    the intersections' centres."""
    return np.concatenate([shapely.bounds(st.seg_geoms), np.c_[st.centre, st.centre]])[st.by_id]


def _unit_refs(st: _State) -> np.ndarray:
    """Each unit's ``from_unit`` then each unit's ``to_unit`` as positions among the units
    (``unit_id`` order; -1: none): the columns' ids without looking them up as text."""
    by_id = st.by_id
    rank = np.empty(len(by_id), dtype=np.int64)
    rank[by_id] = np.arange(len(by_id))
    none = np.full(len(by_id) - len(st.from_ref), -1, dtype=np.int64)
    ref = np.r_[np.r_[st.from_ref, none][by_id], np.r_[st.to_ref, none][by_id]]
    return np.where(ref >= 0, rank[np.maximum(ref, 0)], -1)


STAGES = (_nodes, _chain_pieces, _chain_fix, _even_split, _intersections, _adjacency, _assemble)
