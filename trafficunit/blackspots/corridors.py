"""Corridors: the two carriageways of a divided road as one screening line.

Stages of :func:`road_corridors`: one-way keyed carriageways, their pairs (beside each other,
antiparallel, long enough), corridors as connected pairs with the longest carriageway as the
reference line, the other carriageways projected onto it, and the screening lines renumbered.
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy import sparse
from scipy.sparse import csgraph

from .._validate import metric_crs
from ..risk import _units_frame
from ..settings import RiskSettings
from .chains import _road_key, road_chains

__all__ = ["road_corridors"]


def _tangents(geoms: np.ndarray) -> np.ndarray:
    """Unit vector of each line from 45 % to 55 % of its length (drawing direction)."""
    a = shapely.get_coordinates(shapely.line_interpolate_point(geoms, 0.45, normalized=True))
    b = shapely.get_coordinates(shapely.line_interpolate_point(geoms, 0.55, normalized=True))
    v = b - a
    norm = np.hypot(v[:, 0], v[:, 1])
    norm[norm == 0] = 1.0
    return np.asarray(v / norm[:, None])


def road_corridors(
    units: gpd.GeoDataFrame,
    *,
    chains: pd.DataFrame | None = None,
    settings: RiskSettings | None = None,
) -> pd.DataFrame:
    """Screening lines: road chains with the two carriageways of a divided road as one corridor.

    Two chains of :func:`road_chains` are the carriageways of one divided road when both are
    one-way (``direction`` "forward" on at least 80 % of their length), carry the same road
    key (name, else ref), and run in opposite directions (within
    ``settings.corridor_max_angle_deg`` of antiparallel) with their segments' midpoints within
    ``settings.corridor_max_offset_m`` metres of the other carriageway along at least
    ``settings.corridor_min_overlap_m`` metres (or half the shorter chain). Paired chains (and
    chains paired with those) form a corridor. Positions along a corridor are measured along
    a common reference line, its longest carriageway: the other carriageways' segments and
    intersections are projected onto it. Pieces of a carriageway that do not run beside the
    reference line stay on their own chain. Each unit sits once on a corridor, so a window
    counts each accident once; the intersections along either carriageway belong to the
    corridor.

    Returns
    -------
    pandas.DataFrame
        The :func:`road_chains` columns with ``chain_id`` renumbered over screening lines
        (corridors after the plain chains) plus ``carriageway`` (the unit's
        :func:`road_chains` chain id, so per-carriageway results stay available) and
        ``corridor`` (True on a corridor).
    """
    cfg = settings or RiskSettings()
    u = _units_frame(units)
    ch = (chains if chains is not None else road_chains(u, settings=cfg)).copy()
    ch["carriageway"] = ch["chain_id"].to_numpy()
    ch["corridor"] = False
    pairs = _paired_chains(u, ch, cfg)
    if pairs is None:
        return ch
    n_chain = int(ch["chain_id"].max()) + 1
    a, b = pairs
    graph = sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(n_chain, n_chain)).tocsr()
    n_comp, comp = csgraph.connected_components(graph, directed=False)
    members = np.zeros(n_chain, dtype=bool)
    members[np.r_[a, b]] = True
    comp_size = np.bincount(comp[members], minlength=n_comp)
    chain_len = ch.groupby("chain_id")["chain_length_m"].first().reindex(range(n_chain))
    lens = chain_len.fillna(0.0).to_numpy()
    # the reference of each corridor: its longest carriageway
    mem = np.flatnonzero(members & (comp_size[comp] >= 2))
    order = mem[np.lexsort((mem, -lens[mem], comp[mem]))]
    _, first = np.unique(comp[order], return_index=True)
    refs = order[first]
    ref_of_comp = np.full(n_comp, -1)
    ref_of_comp[comp[refs]] = refs
    ref_line = _reference_lines(u, ch, refs)
    # the reference chain of every row's corridor (-1: not on a corridor)
    row_comp = np.where(members[ch["chain_id"].to_numpy()], comp[ch["chain_id"].to_numpy()], -1)
    row_ref = np.where(row_comp >= 0, ref_of_comp[np.maximum(row_comp, 0)], -1)
    ch, on_ref = _project_onto_references(u, ch, row_ref, ref_line, cfg.corridor_max_offset_m)
    return _renumber(ch, on_ref, refs, ref_line, n_chain)


def _paired_chains(
    u: pd.DataFrame, ch: pd.DataFrame, cfg: RiskSettings
) -> tuple[np.ndarray, np.ndarray] | None:
    """Pairs of chains that are the two carriageways of one divided road (None: no pair).

    Both mostly one-way, same road key, antiparallel and beside each other along enough length.
    """
    seg = ch.loc[ch["kind"] == "segment"]
    if "direction" not in u.columns or len(seg) == 0:
        return None
    direction = u["direction"].reindex(seg["unit_id"]).astype("string").to_numpy()
    lw = (seg["end_m"] - seg["start_m"]).to_numpy(dtype=float)
    c_id = seg["chain_id"].to_numpy()
    n_chain = int(ch["chain_id"].max()) + 1
    total = np.bincount(c_id, weights=lw, minlength=n_chain)
    one = np.bincount(c_id, weights=lw * (direction == "forward"), minlength=n_chain)
    with np.errstate(invalid="ignore", divide="ignore"):
        oneway_chain = (one / total) >= 0.8
    keyed = _road_key(u, cfg.chain_keys).reindex(seg["unit_id"]).to_numpy(dtype=object)
    cand = oneway_chain[c_id] & pd.notna(keyed)
    if cand.sum() < 2:
        return None
    cs = seg.loc[cand]
    geoms = gpd.GeoSeries(u.geometry.reindex(cs["unit_id"]).to_numpy(), crs=u.crs)
    geoms = geoms.to_crs(metric_crs(u)).to_numpy()
    ck = c_id[cand]
    key = keyed[cand]
    tan = _tangents(geoms)  # one-way: drawn in the direction of travel
    mid = shapely.line_interpolate_point(geoms, 0.5, normalized=True)
    tree = shapely.STRtree(geoms)
    i, j = tree.query(mid, predicate="dwithin", distance=cfg.corridor_max_offset_m)
    cos_max = -float(np.cos(np.deg2rad(cfg.corridor_max_angle_deg)))
    ok = (ck[i] != ck[j]) & (key[i] == key[j]) & ((tan[i] * tan[j]).sum(axis=1) <= cos_max)
    i, j = i[ok], j[ok]
    if len(i) == 0:
        return None
    seg_len = lw[cand]
    # matched length of chain a beside chain b (each segment once per partner chain)
    pairs = pd.DataFrame({"a": ck[i], "b": ck[j], "seg": i}).drop_duplicates(["seg", "b"])
    pairs["len"] = seg_len[pairs["seg"].to_numpy()]
    matched = pairs.groupby(["a", "b"])["len"].sum().reset_index()
    shorter = np.minimum(total[matched["a"]], total[matched["b"]])
    need = np.minimum(cfg.corridor_min_overlap_m, 0.5 * shorter)
    matched = matched.loc[matched["len"].to_numpy() >= need - 1e-9]
    if len(matched) == 0:
        return None
    return matched["a"].to_numpy(), matched["b"].to_numpy()


def _reference_lines(u: pd.DataFrame, ch: pd.DataFrame, refs: np.ndarray) -> dict[int, Any]:
    """Reference line of each corridor (by its chain id), metric, in the walk direction."""
    all_seg = ch.loc[ch["kind"] == "segment"]
    ref_rows = all_seg.loc[all_seg["chain_id"].isin(refs)].sort_values(["chain_id", "start_m"])
    rg = gpd.GeoSeries(u.geometry.reindex(ref_rows["unit_id"]).to_numpy(), crs=u.crs)
    rg = rg.to_crs(metric_crs(u)).to_numpy()
    rg = np.where(ref_rows["reversed"].to_numpy(dtype=bool), shapely.reverse(rg), rg)
    coords, owner = shapely.get_coordinates(rg, return_index=True)
    line_chain = ref_rows["chain_id"].to_numpy()[owner]
    ref_line: dict[int, Any] = {}
    starts = np.r_[0, np.flatnonzero(np.diff(line_chain)) + 1, len(line_chain)]
    for s0, s1 in zip(starts[:-1], starts[1:], strict=True):  # one per corridor
        ref_line[int(line_chain[s0])] = shapely.linestrings(coords[s0:s1])
    return ref_line


def _project_onto_references(
    u: pd.DataFrame,
    ch: pd.DataFrame,
    row_ref: np.ndarray,
    ref_line: dict[int, Any],
    max_offset_m: float,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The other carriageways' units moved onto their corridor's reference line.

    Pieces that do not run beside the reference line stay on their own chain. Returns the
    chains with ``chain_id`` set to the reference chain of the moved rows, and which rows lie
    on a reference chain itself.
    """
    on_ref = (row_ref >= 0) & (ch["chain_id"].to_numpy() == row_ref)
    other = np.flatnonzero((row_ref >= 0) & ~on_ref)
    sub = ch.iloc[other]
    lines = np.array([ref_line[int(r)] for r in row_ref[other]], dtype=object)
    g = gpd.GeoSeries(u.geometry.reindex(sub["unit_id"]).to_numpy(), crs=u.crs)
    g = g.to_crs(metric_crs(u)).to_numpy()
    is_seg = (sub["kind"] == "segment").to_numpy()
    p_first = shapely.centroid(g)
    p_last = p_first.copy()
    p_mid = p_first.copy()
    p_first[is_seg] = shapely.get_point(g[is_seg], 0)
    p_last[is_seg] = shapely.get_point(g[is_seg], -1)
    p_mid[is_seg] = shapely.line_interpolate_point(g[is_seg], 0.5, normalized=True)
    m0 = shapely.line_locate_point(lines, p_first)
    m1 = shapely.line_locate_point(lines, p_last)
    line_len = shapely.length(lines)
    dist = shapely.distance(lines, p_mid)
    clamped = is_seg & ((np.maximum(m0, m1) <= 1e-6) | (np.minimum(m0, m1) >= line_len - 1e-6))
    beside = (dist <= 1.5 * max_offset_m) & ~clamped
    moved = other[beside]
    ch.loc[ch.index[moved], "start_m"] = np.minimum(m0, m1)[beside]
    ch.loc[ch.index[moved], "end_m"] = np.maximum(m0, m1)[beside]
    ch.loc[ch.index[moved], "reversed"] = (m0 > m1)[beside]
    new_chain = ch["chain_id"].to_numpy().copy()
    new_chain[moved] = row_ref[moved]
    ch["chain_id"] = new_chain
    return ch, on_ref


def _renumber(
    ch: pd.DataFrame,
    on_ref: np.ndarray,
    refs: np.ndarray,
    ref_line: dict[int, Any],
    n_chain: int,
) -> pd.DataFrame:
    """Plain chains first, then corridors (named by their reference chain); lengths updated."""
    corridor_ref = np.zeros(n_chain, dtype=bool)
    corridor_ref[refs] = True
    ch["corridor"] = corridor_ref[ch["chain_id"].to_numpy()]
    ch["road"] = (
        ch["chain_id"].map(ch.loc[on_ref].groupby("chain_id")["road"].first()).fillna(ch["road"])
    )
    ch = ch.sort_values(["chain_id", "start_m", "kind"], kind="stable")
    # a unit (an intersection shared by both carriageways) sits once on its corridor
    ch = ch.drop_duplicates(["chain_id", "unit_id"])
    ref_len = pd.Series({r: float(shapely.length(ref_line[int(r)])) for r in refs})
    lengths = ch.groupby("chain_id")["chain_length_m"].first()
    lengths.loc[ref_len.index] = np.maximum(
        ref_len.to_numpy(),
        ch.loc[ch["corridor"]].groupby("chain_id")["end_m"].max().reindex(ref_len.index).to_numpy(),
    )
    present = np.unique(ch["chain_id"].to_numpy())
    rank = np.lexsort((present, corridor_ref[present]))
    renum = pd.Series(np.arange(len(present)), index=present[rank])
    ch["chain_length_m"] = ch["chain_id"].map(lengths)
    ch["chain_id"] = ch["chain_id"].map(renum).to_numpy(dtype=np.int64)
    return ch.sort_values(["chain_id", "start_m", "kind"], kind="stable", ignore_index=True)
