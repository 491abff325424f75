"""Split a road network into traffic units: intersections and road segments.

The algorithm works on coordinate arrays end to end (shapely 2 + numpy, no per-row Python):

1. Project to a metric CRS chosen from the data; snap vertices closer than ``snap_m`` to one node.
2. Count the road ends at every node. Nodes where three or more ends meet are junctions; roads
   are cut there.
3. Pieces meeting at a node of degree two (a way boundary) are chained back together when their
   split attributes (speed limit, lanes, class, bridge, tunnel by default), name, ref and
   direction agree. A change of any of them starts a new segment.
4. Each chain longer than ``max_length_m`` is cut evenly into ``ceil(length / max_length_m)``
   pieces.
5. Junction nodes closer than ``junction_merge_m`` are consolidated into one intersection unit
   (as osmnx's ``consolidate_intersections`` does); short links between them stay segments and
   carry the intersection's id in ``junction_id``. The junction nodes of a closed ring (a
   roundabout, ``junction=roundabout``/``circular``, or a named square, ``place=square`` or a
   named ``area=yes`` ring) are one intersection whatever its size: every piece of the ring
   keeps its geometry as a link of that junction, and the junction's influence radius covers
   the ring.
6. Ids are hashes of what a unit is (source way ids and coordinates rounded in the input CRS),
   so they are stable across runs and machines, and an edit to one street changes only the ids
   of the units on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from tqdm.auto import tqdm

from . import _hash
from ._errors import ValidationError
from ._validate import geometry_problems, metric_crs, require_gdf
from .network import COLUMNS as ROAD_COLUMNS
from .settings import ROAD_CLASS_RANK, UnitSettings

__all__ = ["build_units", "UNIT_COLUMNS", "UnitsReport", "summary_table", "footprints"]

#: Columns of a units GeoDataFrame (besides the ``unit_id`` index and geometry).
UNIT_COLUMNS = (
    "kind",
    "length_m",
    "radius_m",
    "road_class",
    "ramp",
    "name",
    "ref",
    "maxspeed_kmh",
    "lanes",
    "oneway",
    "direction",
    "lit",
    "sidewalk",
    "surface",
    "bridge",
    "tunnel",
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

_ATTRS = (
    "road_class",
    "ramp",
    "name",
    "ref",
    "maxspeed_kmh",
    "lanes",
    "oneway",
    "lit",
    "sidewalk",
    "surface",
    "bridge",
    "tunnel",
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


def _rank(road_class: pd.Series) -> np.ndarray:
    order = {c: i for i, c in enumerate(ROAD_CLASS_RANK)}
    return road_class.map(order).fillna(len(order)).to_numpy(dtype=np.int64)


def _node_ids(xy: np.ndarray, snap_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Snap coordinates to a grid of ``snap_m`` and number the distinct nodes.

    Returns (node id per coordinate, first coordinate index of each node).
    """
    q = np.floor(xy / snap_m + 0.5).astype(np.int64)
    keys = np.ascontiguousarray(q).view(np.dtype((np.void, 16))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return inverse.ravel(), first


def _cut_at_vertices(
    xy: np.ndarray, line: np.ndarray, cut: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut lines at flagged interior vertices.

    Returns (coordinates, piece index per coordinate, source line per piece).
    """
    reps = 1 + cut.astype(np.int64)
    xy2 = np.repeat(xy, reps, axis=0)
    line2 = np.repeat(line, reps)
    n = len(xy2)
    start = np.zeros(n, dtype=bool)
    start[0] = True
    start[1:] = line2[1:] != line2[:-1]
    # second copy of each cut vertex starts a new piece
    pos_first = np.cumsum(reps) - reps
    second = pos_first[cut] + 1
    start[second] = True
    piece = np.cumsum(start) - 1
    return xy2, piece, line2[start]


def _split_even(
    geoms: np.ndarray, max_length: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut each line into ``ceil(L / max_length)`` equal pieces.

    Returns (pieces, chain index per piece, piece number k, piece count n per piece).
    """
    lengths = shapely.length(geoms)
    n_pieces = np.maximum(1, np.ceil(lengths / max_length - 1e-9)).astype(np.int64)
    chain_of_piece = np.repeat(np.arange(len(geoms)), n_pieces)
    k = np.arange(len(chain_of_piece)) - np.repeat(np.cumsum(n_pieces) - n_pieces, n_pieces)
    n_of_piece = np.repeat(n_pieces, n_pieces)
    if (n_pieces == 1).all():
        return geoms.copy(), chain_of_piece, k, n_of_piece
    xy, ci = shapely.get_coordinates(geoms, return_index=True)
    # measures along each line from its own start, summed per line (a running sum over all
    # lines would carry rounding from the lines before, so a line's cut points would depend on
    # which other lines are in the call: a partitioned build must give identical pieces)
    step = np.zeros(len(xy))
    same = ci[1:] == ci[:-1]
    step[1:] = np.where(same, np.hypot(*np.diff(xy, axis=0).T), 0.0)
    local = pd.Series(step).groupby(ci, sort=False).cumsum().to_numpy()
    first = np.r_[0, np.flatnonzero(~same) + 1]
    last = np.r_[first[1:] - 1, len(xy) - 1]
    # cut measures: k * L / n for k = 1..n-1 of every chain
    cut_chain = chain_of_piece[k > 0]
    cut_k = k[k > 0]
    cut_t = cut_k * lengths[cut_chain] / n_pieces[cut_chain]
    # vertices and cuts in (line, measure) order, vertices first on ties
    nv, nc = len(xy), len(cut_t)
    is_cut = np.r_[np.zeros(nv, dtype=bool), np.ones(nc, dtype=bool)]
    o = np.lexsort((is_cut, np.r_[local, cut_t], np.r_[ci, cut_chain]))
    cut_o = is_cut[o]
    # the vertex before each cut (the last one of its line at or before the measure)
    j = np.empty(nc, dtype=np.int64)
    j[o[cut_o] - nv] = (np.cumsum(~cut_o) - 1)[cut_o]
    j = np.clip(j, first[cut_chain], last[cut_chain] - 1)
    span = local[j + 1] - local[j]
    frac = np.where(span > 0, (cut_t - local[j]) / np.where(span > 0, span, 1.0), 0.0)
    frac = np.clip(frac, 0.0, 1.0)
    cut_xy = xy[j] + (xy[j + 1] - xy[j]) * frac[:, None]
    # the piece of each vertex: its line's first piece plus the cuts strictly before it
    v_piece = np.empty(nv, dtype=np.int64)
    v_piece[o[~cut_o]] = ci[o[~cut_o]] + np.cumsum(cut_o)[~cut_o]
    c_idx = np.arange(nc)
    c_piece_end = cut_chain + c_idx
    all_xy = np.concatenate([xy, cut_xy, cut_xy])
    all_piece = np.concatenate([v_piece, c_piece_end, c_piece_end + 1])
    all_m = np.concatenate([local, cut_t, cut_t])
    order = np.lexsort((all_m, all_piece))
    pieces = shapely.linestrings(all_xy[order], indices=all_piece[order])
    pieces = shapely.remove_repeated_points(pieces, tolerance=0.0)
    return pieces, chain_of_piece, k, n_of_piece


def _coord_keys(xy: np.ndarray, geographic: bool) -> np.ndarray:
    """Integer keys of coordinates rounded in the input CRS (1e-7 deg or 1 cm)."""
    scale = 1e7 if geographic else 100.0
    return np.floor(xy * scale + 0.5).astype(np.int64)


def _join_strings(keys: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """';'-join ``values`` grouped by integer ``keys`` (0..n-1), sorted, deduplicated.

    Vectorised with pyarrow's ``binary_join`` over a list array: no per-group Python.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    out = np.full(n, None, dtype=object)
    if len(keys) == 0:
        return out
    vals = pa.array(values, pa.string(), from_pandas=True)
    keep = pc.fill_null(pc.not_equal(vals, ""), False)
    if not pc.any(keep).as_py():
        return out
    table = pa.table({"k": pa.array(np.asarray(keys, dtype=np.int64)), "v": vals}).filter(keep)
    table = table.take(pc.sort_indices(table, [("k", "ascending"), ("v", "ascending")]))
    k = table.column("k").to_numpy()
    v = table.column("v").combine_chunks()
    # drop repeats of (key, value): equal to the row before once sorted
    dup = np.zeros(len(k), dtype=bool)
    if len(k) > 1:
        same_v = pc.equal(v.slice(1), v.slice(0, len(v) - 1)).to_numpy(zero_copy_only=False)
        dup[1:] = (k[1:] == k[:-1]) & same_v
    k, v = k[~dup], v.filter(pa.array(~dup))
    present, counts = np.unique(k, return_counts=True)
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), v)
    joined = pc.binary_join(lists, ";").to_numpy(zero_copy_only=False)
    out[present] = joined
    return out


def _prepare(roads: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, dict[str, int]]:
    dropped: dict[str, int] = {}
    normalised = set(ROAD_COLUMNS) <= set(roads.columns) and roads["oneway"].dtype == bool
    if not normalised:  # raw OSM-tagged lines: normalise tags, keep every line
        from .network import NetworkReport, normalise_roads

        roads = normalise_roads(
            roads, report=NetworkReport(source="<roads>"), filter_highways=False
        )
    problems = geometry_problems(roads.geometry.values)
    bad = problems != ""
    for reason in np.unique(problems[bad]):
        dropped[str(reason)] = int((problems == reason).sum())
    df = roads[~bad]
    if (shapely.get_type_id(df.geometry.values) == 5).any():
        df = df.explode(index_parts=False)
    df = df.reset_index(drop=True)
    for col in ROAD_COLUMNS:
        if col not in df.columns:
            default: Any = pd.NA
            if col in ("ramp", "oneway", "bridge", "tunnel"):
                default = False
            elif col == "road_class":
                default = "road"
            elif col in ("maxspeed_kmh", "lanes"):
                default = np.nan
            df[col] = default
    return df, dropped


def build_units(
    roads: gpd.GeoDataFrame,
    *,
    max_length_m: float | None = None,
    junction_merge_m: float | None = None,
    split_on: tuple[str, ...] | list[str] | None = None,
    crs: Any = None,
    settings: UnitSettings | None = None,
    progress: bool = False,
) -> gpd.GeoDataFrame:
    """Split road lines into traffic units: intersections and road segments.

    Parameters
    ----------
    roads
        Road lines, as returned by :func:`trafficunit.read_network` (columns it does not have
        are filled with defaults). Must have a CRS.
    max_length_m
        Longest segment unit in metres (default 200). Longer stretches are split evenly.
    junction_merge_m
        Junction nodes closer than this (metres) become one intersection unit (default 20).
    split_on
        Attributes whose change starts a new segment (default: road class, speed limit,
        lanes, bridge, tunnel).
    crs
        Metric CRS for lengths and splitting (default: the UTM zone of the data; give e.g.
        ``"EPSG:4547"`` for Shenzhen's CGCS2000 Gauss-Krüger zone).
    settings
        A full :class:`~trafficunit.settings.UnitSettings`; the keyword arguments override it.
    progress
        Show a progress bar over the build stages.

    Returns
    -------
    geopandas.GeoDataFrame
        Indexed by ``unit_id``, in the CRS of ``roads``, columns :data:`UNIT_COLUMNS`;
        ``.attrs["report"]`` is a :class:`UnitsReport` as a plain dict.

    Examples
    --------
    >>> import trafficunit as tu
    >>> units = tu.build_units(tu.read_network(tu.sample_network_path()), max_length_m=200)
    >>> bool((units.loc[units.kind == "segment", "length_m"] <= 200 + 1e-6).all())
    True
    """
    require_gdf(roads, "roads")
    cfg = (settings or UnitSettings()).with_(
        max_length_m=max_length_m,
        junction_merge_m=junction_merge_m,
        split_on=tuple(split_on) if split_on is not None else None,
    )
    if not cfg.max_length_m > 0:
        raise ValidationError(f"max_length_m must be positive, got {cfg.max_length_m}")
    if cfg.junction_merge_m < 0:
        raise ValidationError(f"junction_merge_m must be >= 0, got {cfg.junction_merge_m}")
    bar = tqdm(total=8, desc="building units", disable=not progress, unit="stage")

    df, dropped = _prepare(roads)
    unknown = [c for c in cfg.split_on if c not in df.columns]
    if unknown:
        raise ValidationError(f"split_on names columns the roads do not have: {unknown}")
    if len(df) == 0:
        raise ValidationError("no usable road lines (all geometries missing, empty or not lines)")
    in_crs = df.crs
    geographic = bool(in_crs.is_geographic)
    mcrs = metric_crs(df, crs)
    src_xy = shapely.get_coordinates(df.geometry.values)
    metric = df.to_crs(mcrs)
    xy, line = shapely.get_coordinates(metric.geometry.values, return_index=True)
    bar.update()

    # -- 1. nodes --------------------------------------------------------------------------
    node, node_first = _node_ids(xy, cfg.snap_m)
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
    bar.update()

    # -- 2. cut at junctions ---------------------------------------------------------------
    cut = interior & junction_node[node]
    pxy, piece_of_v, piece_line = _cut_at_vertices(xy, line, cut)
    pnode = np.repeat(node, 1 + cut.astype(np.int64))
    psrc = np.repeat(src_xy, 1 + cut.astype(np.int64), axis=0)
    n_piece = len(piece_line)
    p_first = np.r_[0, np.flatnonzero(piece_of_v[1:] != piece_of_v[:-1]) + 1]
    p_last = np.r_[p_first[1:] - 1, len(piece_of_v) - 1]
    p_start, p_end = pnode[p_first], pnode[p_last]
    bar.update()

    # -- 3. chain pieces across degree-2 nodes with equal attributes ------------------------
    attrs = df.iloc[piece_line].reset_index(drop=True)
    key_cols = list(dict.fromkeys([*cfg.split_on, "name", "ref", "oneway"]))
    key = attrs[key_cols].astype(object).where(attrs[key_cols].notna(), "\x00na").astype(str)
    merge_key = key.groupby(key_cols, sort=False).ngroup().to_numpy()
    oneway = attrs["oneway"].fillna(False).astype(bool).to_numpy()
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
    piece_src = shapely.linestrings(psrc, indices=piece_of_v)
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
    chain_attrs = attrs.iloc[lead_piece].reset_index(drop=True)
    osm = attrs["osm_id"].astype("Int64").astype("string").to_numpy()
    chain_osm = _join_strings(chain, osm, n_chain)
    # content hash of each chain: its source ways + its source coordinates (rounded)
    piece_keys = _coord_keys(shapely.get_coordinates(piece_src), geographic)
    pk_piece = shapely.get_coordinates(piece_src, return_index=True)[1]
    piece_hash = _hash.combine(
        _hash.hash_groups(piece_keys[:, 0], pk_piece, n_piece),
        _hash.hash_groups(piece_keys[:, 1], pk_piece, n_piece),
        pd.to_numeric(attrs["osm_id"], errors="coerce").fillna(-1).to_numpy(np.int64),
    )
    # a chain's hash must not depend on piece order: xor of its pieces' hashes
    chain_hash = np.zeros(n_chain, dtype=np.uint64)
    np.bitwise_xor.at(chain_hash, chain, piece_hash)
    bar.update()

    ring_of_node, chain_ring = _rings(attrs, p_start, p_end, chain, n_nodes, n_chain)

    # -- 4. even split ---------------------------------------------------------------------
    seg_geoms, seg_chain, seg_k, seg_n = _split_even(chain_geoms, cfg.max_length_m)
    seg_attrs = chain_attrs.iloc[seg_chain].reset_index(drop=True)
    seg_len = shapely.length(seg_geoms)
    two_way = ~seg_attrs["oneway"].fillna(False).astype(bool).to_numpy()
    # canonical piece number for two-way chains: count from the end with the lower node key
    c_start, c_end = _line_ends(chain_geoms)
    sx, sy = c_start[:, 0], c_start[:, 1]
    ex, ey = c_end[:, 0], c_end[:, 1]
    flip = (ex < sx) | ((ex == sx) & (ey < sy))
    k_canon = np.where(two_way & flip[seg_chain], seg_n - 1 - seg_k, seg_k)
    seg_hash = _hash.combine(chain_hash[seg_chain], k_canon, seg_n)
    seg_ids = _hash.to_ids("S", seg_hash)
    bar.update()

    # -- 5. intersections ------------------------------------------------------------------
    s_start, s_end = _line_ends(seg_geoms)
    n_seg = len(seg_geoms)
    end_xy = np.concatenate([s_start, s_end])
    end_node_local, end_first = _node_ids(end_xy, cfg.snap_m)
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
    jk = pd.MultiIndex.from_arrays([jkeys[:, 0], jkeys[:, 1]])
    ek = pd.MultiIndex.from_arrays([ekeys[:, 0], ekeys[:, 1]])
    pos = jk.get_indexer(ek)
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
        j_src = _src_coords(junction_xy, metric.crs, in_crs)
        jkeys_src = _coord_keys(j_src, geographic)
        order = np.lexsort((jkeys_src[:, 1], jkeys_src[:, 0], cluster))
        cl_sorted = cluster[order]
        int_hash = _hash.combine(
            _hash.hash_groups(jkeys_src[order, 0], cl_sorted, n_int),
            _hash.hash_groups(jkeys_src[order, 1], cl_sorted, n_int),
        )
        int_ids = _hash.to_ids("I", int_hash)
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
        centre = np.zeros((0, 2))
        extent = np.zeros(0)
    bar.update()

    # -- 6. adjacency ----------------------------------------------------------------------
    seg_ids, int_ids = _dedupe_ids(seg_ids, int_ids)
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
    e_unit = np.full(2 * n_seg, None, dtype=object)
    has_other = other >= 0
    e_unit[has_other] = seg_ids[other[has_other]]
    at_int = e_cl >= 0
    e_unit[at_int] = int_ids[e_cl[at_int]] if n_int else None
    # internal links belong to their junction: both ends point at it
    from_unit = e_unit[:n_seg].copy()
    to_unit = e_unit[n_seg:].copy()
    junction_id = np.full(n_seg, None, dtype=object)
    if n_int:
        junction_id[internal] = int_ids[link_cl[internal]]
    seg_neigh = _join_strings(
        np.r_[np.arange(n_seg), np.arange(n_seg)], np.r_[from_unit, to_unit], n_seg
    )
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
        junction_id[undo] = None
        ie_internal = internal[ie_seg]
        deg = np.bincount(ie_cl[~ie_internal], minlength=n_int)
    int_neigh = _join_strings(ie_cl, seg_ids[ie_seg], n_int)
    classes = seg_attrs["road_class"].astype("string").to_numpy()
    int_classes = _join_strings(ie_cl[~ie_internal], classes[ie_seg[~ie_internal]], n_int)
    int_names = _join_strings(ie_cl, seg_attrs["name"].astype("string").to_numpy()[ie_seg], n_int)
    rank = _rank(seg_attrs["road_class"])
    lead = np.full(n_int, -1, dtype=np.int64)
    if n_int and len(ie_seg):
        o = np.lexsort((ie_seg, -seg_len[ie_seg], rank[ie_seg], ie_cl))
        first_of = o[np.r_[True, ie_cl[o][1:] != ie_cl[o][:-1]]]
        lead[ie_cl[first_of]] = ie_seg[first_of]
    bar.update()

    # -- 7. assemble -------------------------------------------------------------------------
    sinuosity, turn = _curvature(seg_geoms, seg_len)
    seg = pd.DataFrame(
        {
            "unit_id": seg_ids,
            "kind": "segment",
            "length_m": seg_len,
            "radius_m": np.nan,
        }
    )
    for c in _ATTRS:
        seg[c] = seg_attrs[c].to_numpy()
    seg["direction"] = np.where(two_way, "both", "forward")
    seg["osm_ids"] = chain_osm[seg_chain]
    seg["from_unit"] = from_unit
    seg["to_unit"] = to_unit
    seg["junction_id"] = junction_id
    seg["degree"] = 0
    seg["road_classes"] = seg_attrs["road_class"].astype("string").to_numpy()
    seg["neighbours"] = seg_neigh
    seg["sinuosity"] = sinuosity
    seg["turn_deg_per_km"] = turn
    extra_cols = [c for c in ("aadt", "layer", "jurisdiction") if c in seg_attrs.columns]
    for c in extra_cols:
        seg[c] = seg_attrs[c].to_numpy()

    inter = pd.DataFrame({"unit_id": int_ids, "kind": "intersection", "length_m": 0.0})
    lead_attrs = seg_attrs.iloc[np.maximum(lead, 0)].reset_index(drop=True)
    top_class = lead_attrs["road_class"].astype("string")
    influence = top_class.map(cfg.influence_m_by_class).astype(float)
    influence = influence.fillna(cfg.default_influence_m).to_numpy()
    inter["radius_m"] = influence + extent
    for c in _ATTRS:
        inter[c] = lead_attrs[c].to_numpy() if n_int else []
    inter["name"] = int_names
    inter["direction"] = None
    inter["oneway"] = False
    inter["osm_ids"] = _join_strings(ie_cl, seg["osm_ids"].to_numpy()[ie_seg], n_int)
    inter["from_unit"] = None
    inter["to_unit"] = None
    inter["junction_id"] = None
    inter["degree"] = deg.astype(np.int64)
    inter["road_classes"] = int_classes
    inter["neighbours"] = int_neigh
    inter["sinuosity"] = np.nan
    inter["turn_deg_per_km"] = np.nan
    for c in extra_cols:
        inter[c] = lead_attrs[c].to_numpy() if n_int else []

    out_geoms = np.concatenate([seg_geoms, shapely.points(centre)])
    table = pd.concat([seg, inter], ignore_index=True)
    # in unit_id order before the text columns become Arrow strings (a take on them is slow)
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pa.array(table["unit_id"].to_numpy(dtype=object), pa.string())
    by_id = pc.sort_indices(ids).to_numpy()  # stable; bytewise = code point order
    table = table.take(by_id).reset_index(drop=True)
    out_geoms = out_geoms[by_id]
    units = gpd.GeoDataFrame(table, geometry=out_geoms, crs=mcrs).to_crs(in_crs)
    units["degree"] = units["degree"].astype(np.int64)
    for c in ("name", "ref", "osm_ids", "from_unit", "to_unit", "junction_id", "neighbours"):
        units[c] = units[c].astype("string")
    units["road_classes"] = units["road_classes"].astype("string")
    units["direction"] = units["direction"].astype("string")
    # dtypes must not depend on the values (pandas infers them from object arrays): a
    # partitioned build concatenates pieces, and files written per region must share a schema
    for c in ("kind", "road_class"):
        units[c] = units[c].astype(str)
    for c in ("ramp", "oneway", "bridge", "tunnel"):
        units[c] = units[c].fillna(False).astype(bool)
    for c in ("maxspeed_kmh", "lanes", "length_m", "radius_m"):
        units[c] = pd.to_numeric(units[c], errors="coerce").astype(float)
    for c in ("sidewalk", "surface"):
        units[c] = units[c].astype("string")
    units["lit"] = units["lit"].astype(object)
    for c in extra_cols:
        if c == "aadt":
            units[c] = pd.to_numeric(units[c], errors="coerce").astype(float)
        else:
            units[c] = units[c].astype("string")
    units = units.set_index("unit_id")
    units = units[[*UNIT_COLUMNS, *extra_cols, "geometry"]]
    units.attrs["report"] = UnitsReport(
        roads_in=len(roads),
        road_length_km=float(shapely.length(metric.geometry.values).sum() / 1000.0),
        dropped=dropped,
        segments=n_seg,
        intersections=n_int,
        junction_links=int(internal.sum()),
        metric_crs=str(mcrs.to_string()),
    ).as_dict()
    bar.update()
    bar.close()
    return units


def _rings(
    attrs: pd.DataFrame,
    p_start: np.ndarray,
    p_end: np.ndarray,
    chain: np.ndarray,
    n_nodes: int,
    n_chain: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Closed rings that are one junction: roundabouts (``junction=roundabout``/``circular``)
    and named squares (``place=square``, or a named ``area=yes`` ring).

    Returns the ring number of every node (-1 off a ring) and of every chain (-1: none). A
    ring is closed when each of its nodes has exactly two of its piece ends (a cycle).
    """
    ring_of_node = np.full(n_nodes, -1, dtype=np.int64)
    chain_ring = np.full(n_chain, -1, dtype=np.int64)

    def text(col: str) -> pd.Series:
        if col not in attrs.columns:
            return pd.Series(pd.NA, index=attrs.index, dtype="string")
        return attrs[col].astype("string").str.strip().str.lower()

    junction = text("junction")
    name = attrs["name"].astype("string").str.strip() if "name" in attrs.columns else text("")
    rb = junction.isin(["roundabout", "circular"]).fillna(False).to_numpy(dtype=bool)
    square = ((text("place") == "square") | (text("area") == "yes")).fillna(False).to_numpy(bool)
    square &= name.notna().to_numpy() & ~rb
    flagged = np.flatnonzero(rb | square)
    if len(flagged) == 0:
        return ring_of_node, chain_ring
    group = np.where(rb[flagged], "\x00roundabout", "square:" + name.fillna("").to_numpy()[flagged])
    _, gkey = np.unique(group.astype(str), return_inverse=True)
    # pieces of one group sharing a node are one ring candidate
    ends = pd.DataFrame(
        {
            "piece": np.r_[flagged, flagged],
            "node": np.r_[p_start[flagged], p_end[flagged]],
            "g": np.r_[gkey, gkey],
        }
    )
    vert = pd.factorize(pd.MultiIndex.from_arrays([ends["node"], ends["g"]]))[0]
    m = len(flagged)
    local = np.r_[np.arange(m), np.arange(m)]
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_v = int(vert.max()) + 1
    graph = coo_matrix((np.ones(2 * m), (local, m + vert)), shape=(m + n_v, m + n_v))
    _, comp = connected_components(graph, directed=False)
    piece_comp = comp[:m]
    ends["comp"] = piece_comp[local]
    # closed: every node of the component carries exactly two of its piece ends
    per_node = ends.groupby(["comp", "node"]).size()
    closed = per_node.eq(2).groupby(level=0).all()
    closed_comps = closed.index[closed.to_numpy()].to_numpy()
    if len(closed_comps) == 0:
        return ring_of_node, chain_ring
    ring_no = pd.Series(np.arange(len(closed_comps)), index=closed_comps)
    on = ends.loc[ends["comp"].isin(closed_comps)]
    ring_of_node[on["node"].to_numpy()] = ring_no.reindex(on["comp"]).to_numpy()
    pieces = flagged[np.isin(piece_comp, closed_comps)]
    chain_ring[chain[pieces]] = ring_no.reindex(piece_comp[np.isin(piece_comp, closed_comps)])
    return ring_of_node, chain_ring


def _src_coords(xy: np.ndarray, from_crs: Any, to_crs: Any) -> np.ndarray:
    from pyproj import Transformer

    t = Transformer.from_crs(from_crs, to_crs, always_xy=True)
    x, y = t.transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])


def _dedupe_ids(seg_ids: np.ndarray, int_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Duplicate geometries (the same way twice) would collide: suffix repeats deterministically."""
    all_ids = pd.Series(np.r_[seg_ids, int_ids])
    dup = all_ids.duplicated(keep="first")
    if dup.any():
        n = all_ids.groupby(all_ids).cumcount()
        all_ids = all_ids.where(~dup, all_ids + "-" + n.astype(str))
    arr = all_ids.to_numpy(dtype=object)
    return arr[: len(seg_ids)], arr[len(seg_ids) :]


def _line_ends(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last coordinates (x, y) of each line as two ``(n, 2)`` arrays (NaN if empty).

    From the flat coordinate array: ``shapely.get_point`` builds a Point per line and is
    several times slower on hundreds of thousands of lines.
    """
    xy = shapely.get_coordinates(geoms)
    count = shapely.get_num_coordinates(geoms)
    stop = np.cumsum(count)
    first, last = np.full((len(count), 2), np.nan), np.full((len(count), 2), np.nan)
    ok = count > 0
    first[ok] = xy[(stop - count)[ok]]
    last[ok] = xy[stop[ok] - 1]
    return first, last


def _curvature(geoms: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sinuosity (length / chord) and degrees turned per km of each line."""
    start, end = _line_ends(geoms)
    chord = np.hypot(*(end - start).T)
    with np.errstate(divide="ignore", invalid="ignore"):
        sinuosity = np.where(chord > 0, lengths / chord, np.nan)
    xy, li = shapely.get_coordinates(geoms, return_index=True)
    d = np.diff(xy, axis=0)
    same = li[1:] == li[:-1]
    heading = np.degrees(np.arctan2(d[:, 1], d[:, 0]))
    turn = np.diff(heading)
    turn = (turn + 180.0) % 360.0 - 180.0
    valid = same[1:] & same[:-1]
    total = np.bincount(li[2:][valid], weights=np.abs(turn[valid]), minlength=len(geoms))
    with np.errstate(divide="ignore", invalid="ignore"):
        per_km = np.where(lengths > 0, total / (lengths / 1000.0), np.nan)
    return sinuosity, per_km


def footprints(units: gpd.GeoDataFrame) -> gpd.GeoSeries:
    """Influence areas of intersection units (discs of ``radius_m``) and segment lines.

    Returns a GeoSeries in the units' CRS aligned with ``units``.
    """
    require_gdf(units, "units")
    mcrs = metric_crs(units)
    m = units.geometry.to_crs(mcrs)
    is_int = (units["kind"] == "intersection").to_numpy()
    geoms = m.values.copy()
    geoms[is_int] = shapely.buffer(m.values[is_int], units["radius_m"].to_numpy()[is_int])
    return gpd.GeoSeries(geoms, index=units.index, crs=mcrs).to_crs(units.crs)


def summary_table(units: gpd.GeoDataFrame) -> pd.DataFrame:
    """Units and kilometres by kind and road class, for summaries."""
    g = units.groupby(["kind", "road_class"], dropna=False)
    out = pd.DataFrame({"units": g.size(), "km": g["length_m"].sum() / 1000.0})
    return out.sort_values(["units"], ascending=False)
