"""Coordinate-array helpers of :func:`trafficunit.build_units`: nodes, cuts, even splits,
rings, ids and curvature (shapely 2 + numpy, no per-row Python)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from .settings import ROAD_CLASS_RANK


def _rank(road_class: pd.Series) -> np.ndarray:
    order = {c: i for i, c in enumerate(ROAD_CLASS_RANK)}
    return road_class.map(order).fillna(len(order)).to_numpy(dtype=np.int64)


def _node_ids(xy: np.ndarray, snap_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Snap coordinates to a grid of ``snap_m`` and number the distinct nodes.

    Returns (node id per coordinate, first coordinate index of each node).
    """
    # nodes are numbered in the byte order of their 16-byte (x, y) keys, as ``np.unique`` on
    # them would (callers rely on the order): hash the keys, then sort only the distinct ones
    codes, first = _node_codes(xy, snap_m)
    q = np.floor(xy[first] / snap_m + 0.5).astype(np.int64)
    swapped = np.ascontiguousarray(q).byteswap().view(np.uint64)  # bytewise = big-endian
    order = np.lexsort((swapped[:, 1], swapped[:, 0]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[codes], first[order]


def _span(q: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Lowest value and number of values (Python ints: no overflow) of each column of ``q``."""
    lo, hi = q.min(axis=0), q.max(axis=0)
    return lo, [int(hi[i]) - int(lo[i]) + 1 for i in range(q.shape[1])]


def _node_codes(xy: np.ndarray, snap_m: float) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`_node_ids`, but nodes numbered in order of first appearance (hashing, no sort).

    For callers that use node numbers only to tell nodes apart: several times faster than
    sorting 16-byte keys on millions of vertices.
    """
    q = np.floor(xy / snap_m + 0.5).astype(np.int64)
    if len(q) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lo, span = _span(q)
    if span[0] * span[1] < 2**62:  # one int64 key per grid cell
        codes = pd.factorize((q[:, 0] - lo[0]) * span[1] + (q[:, 1] - lo[1]))[0]
    else:
        cx = pd.factorize(q[:, 0])[0].astype(np.int64)
        cy, uy = pd.factorize(q[:, 1])
        codes = pd.factorize(cx * len(uy) + cy)[0]
    codes = codes.astype(np.int64)
    # codes appear in increasing order: a node's first coordinate is where the running max grows
    top = np.maximum.accumulate(codes)
    first = np.flatnonzero(np.r_[True, top[1:] > top[:-1]])
    return codes, first


def _key_positions(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Row of the distinct integer pairs ``keys`` equal to each pair of ``query`` (-1: none).

    Pairs become one int64 key when their range allows (a hash lookup on one column instead
    of a two-level MultiIndex).
    """
    both = np.concatenate([keys, query])
    if len(keys) and len(query):
        lo, span = _span(both)
        if span[0] * span[1] < 2**62:
            k = (keys[:, 0] - lo[0]) * span[1] + (keys[:, 1] - lo[1])
            q = (query[:, 0] - lo[0]) * span[1] + (query[:, 1] - lo[1])
            return np.asarray(pd.Index(k).get_indexer(q), dtype=np.int64)
    index = pd.MultiIndex.from_arrays([keys[:, 0], keys[:, 1]])
    return np.asarray(index.get_indexer(pd.MultiIndex.from_arrays([query[:, 0], query[:, 1]])))


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
    split = n_pieces > 1
    pieces = np.repeat(geoms, n_pieces)  # the lines that stay whole are their one piece
    if split.any():  # only the lines that are cut go through the coordinates
        cut = np.repeat(split, n_pieces)
        pieces[cut] = _cut_evenly(geoms[split], lengths[split], n_pieces[split])
    return pieces, chain_of_piece, k, n_of_piece


def _cut_evenly(geoms: np.ndarray, lengths: np.ndarray, n_pieces: np.ndarray) -> np.ndarray:
    """The ``n_pieces`` equal pieces of each line (of length ``lengths``), line by line."""
    chain_of_piece = np.repeat(np.arange(len(geoms)), n_pieces)
    k = np.arange(len(chain_of_piece)) - np.repeat(np.cumsum(n_pieces) - n_pieces, n_pieces)
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
    return np.asarray(shapely.remove_repeated_points(pieces, tolerance=0.0))


def _coord_keys(xy: np.ndarray, geographic: bool) -> np.ndarray:
    """Integer keys of coordinates rounded in the input CRS (1e-7 deg or 1 cm)."""
    scale = 1e7 if geographic else 100.0
    return np.floor(xy * scale + 0.5).astype(np.int64)


def _join_strings(
    keys: np.ndarray, values: Any, n: int, *, ranks: np.ndarray | None = None
) -> pa.Array:
    """';'-join ``values`` grouped by integer ``keys`` (0..n-1), sorted, deduplicated.

    ``values`` is a pyarrow string array or a numpy array of strings (missing: None/NaN/NA).
    ``ranks``, if given, are integers in the values' (bytewise) string order, equal exactly
    for equal values (e.g. each unit id's position in sorted order); otherwise they come from
    the values' dictionary. Returns a pyarrow string array of length ``n``, null where a key
    has no non-empty value. Integer sorts and pyarrow's ``binary_join`` over a list array: no
    per-group Python, no string sort of the whole column.
    """
    if len(keys) == 0:
        return pa.nulls(n, pa.string())
    vals = _arrow_strings(values)
    keep = pc.fill_null(pc.not_equal(vals, ""), False).to_numpy(zero_copy_only=False)
    if not keep.any():
        return pa.nulls(n, pa.string())
    k = np.asarray(keys, dtype=np.int64)[keep]
    vals = vals.filter(pa.array(keep))
    if ranks is None:
        enc = pc.dictionary_encode(vals)
        words = enc.dictionary
        word_rank = np.empty(len(words), dtype=np.int64)
        word_rank[pc.sort_indices(words).to_numpy()] = np.arange(len(words))
        r = word_rank[enc.indices.to_numpy()]
    else:
        r = np.asarray(ranks, dtype=np.int64)[keep]
    o = np.argsort(k * (int(r.max()) + 1) + r)  # by key, then value (one int64 sort)
    k, r = k[o], r[o]
    # drop repeats of (key, value): equal to the row before once sorted
    new = np.r_[True, (k[1:] != k[:-1]) | (r[1:] != r[:-1])]
    k, v = k[new], vals.take(pa.array(o[new]))
    present, counts = np.unique(k, return_counts=True)
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), v)
    joined = pc.binary_join(lists, ";")
    return _take_or_null(joined, present, n)


def _arrow_strings(values: Any) -> pa.Array:
    """A pyarrow string array of ``values`` (a pyarrow array, or numpy strings/None/NaN)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values if values.type == pa.string() else values.cast(pa.string())
    return pa.array(values, pa.string(), from_pandas=True)


def _take_or_null(values: pa.Array, where: np.ndarray, n: int) -> pa.Array:
    """An array of length ``n`` holding ``values`` at positions ``where``, null elsewhere."""
    pos = np.full(n, -1, dtype=np.int64)
    pos[where] = np.arange(len(where))
    return values.take(pa.array(pos, mask=pos < 0))


def _take(values: pa.Array, idx: np.ndarray) -> pa.Array:
    """``values`` at integer positions ``idx`` (-1: null)."""
    idx = np.asarray(idx, dtype=np.int64)
    return values.take(pa.array(idx, mask=idx < 0) if (idx < 0).any() else pa.array(idx))


def _rings(
    lines: pd.DataFrame,
    piece_line: np.ndarray,
    p_start: np.ndarray,
    p_end: np.ndarray,
    chain: np.ndarray,
    n_nodes: int,
    n_chain: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Closed rings that are one junction: roundabouts (``junction=roundabout``/``circular``)
    and named squares (``place=square``, or a named ``area=yes`` ring).

    ``lines`` holds the attributes of the road lines, ``piece_line`` the line of each piece.
    Returns the ring number of every node (-1 off a ring) and of every chain (-1: none). A
    ring is closed when each of its nodes has exactly two of its piece ends (a cycle).
    """
    ring_of_node = np.full(n_nodes, -1, dtype=np.int64)
    chain_ring = np.full(n_chain, -1, dtype=np.int64)

    def text(col: str) -> pd.Series:
        if col not in lines.columns:
            return pd.Series(pd.NA, index=lines.index, dtype="string")
        return lines[col].astype("string").str.strip().str.lower()

    # flags per line, then per piece
    junction = text("junction")
    name = lines["name"].astype("string").str.strip() if "name" in lines.columns else text("")
    rb = junction.isin(["roundabout", "circular"]).fillna(False).to_numpy(dtype=bool)
    square = ((text("place") == "square") | (text("area") == "yes")).fillna(False).to_numpy(bool)
    square &= name.notna().to_numpy() & ~rb
    rb, square = rb[piece_line], square[piece_line]
    flagged = np.flatnonzero(rb | square)
    if len(flagged) == 0:
        return ring_of_node, chain_ring
    piece_name = name.fillna("").to_numpy()[piece_line[flagged]]
    group = np.where(rb[flagged], "\x00roundabout", "square:" + piece_name)
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
    from ._validate import transformer

    x, y = transformer(from_crs, to_crs).transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])


def _id_order(seg_hash: np.ndarray, int_hash: np.ndarray) -> np.ndarray | None:
    """The order of the unit ids (segments, then intersections) as text, from their hashes.

    An id is its prefix and the low 60 bits of its hash in base32 digits whose characters sort
    as their values ("I" before "S"), so integers sort the ids as text. None if two ids are
    equal (then :func:`_dedupe_ids` suffixes them and the text itself must be sorted).
    """
    low = np.uint64((1 << 60) - 1)
    key = np.r_[
        (np.asarray(seg_hash, dtype=np.uint64) & low) | np.uint64(1 << 60),
        np.asarray(int_hash, dtype=np.uint64) & low,
    ]
    order = np.argsort(key, kind="stable")
    if len(key) > 1 and (key[order][1:] == key[order][:-1]).any():
        return None
    return order


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
