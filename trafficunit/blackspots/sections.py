"""Sections: sliding windows chosen best first, each accident in one section."""

from __future__ import annotations

import heapq
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.ops import substring

from ..settings import RiskSettings
from ..timefilter import Period
from .chains import road_chains
from .corridors import road_corridors
from .profiles import BlackSpotProfile, Criterion, _evaluate, _event_ids, _rule, _sum_columns
from .windows import _chain_positions, _chain_table, _window_sums, _windows


def _select_windows(
    pos: pd.DataFrame,
    fields: pd.DataFrame,
    win: pd.DataFrame,
    chain_len: np.ndarray,
    p: BlackSpotProfile,
    criteria: tuple[Criterion, ...],
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Greedy peak selection in which an accident counts in one chosen window only.

    The best qualifying window (EPDO, then crashes) is taken; its accidents leave every other
    window, which is re-summed and re-tested when it comes up (a lazy greedy: sums only
    shrink, so a window whose re-summed value still beats the next candidate is the best one).
    Windows overlapping a chosen one on the same line are skipped. Returns the chosen window
    indices, their field sums and their accident rows (into ``fields``).
    """
    base = np.r_[0.0, np.cumsum(chain_len + 1.0)[:-1]]
    gpos = base[pos["chain_id"].to_numpy()] + pos["pos_m"].to_numpy()
    order = np.argsort(gpos, kind="stable")
    gpos = gpos[order]
    rows = pos["row"].to_numpy()[order]
    f = fields.to_numpy(dtype=float)
    cols = list(fields.columns)
    sums = _window_sums(pos, fields, win, chain_len).to_numpy(dtype=float, copy=True)
    q = _evaluate(dict(zip(cols, sums.T, strict=True)), p, criteria)
    cand = np.flatnonzero(q)
    wb = base[win["chain_id"].to_numpy()]
    lo = np.searchsorted(gpos, wb + win["start_m"].to_numpy() - 1e-6, side="left")
    hi = np.searchsorted(gpos, wb + win["end_m"].to_numpy() + 1e-6, side="right")
    ei, ci = cols.index("epdo"), cols.index("crashes")
    chain = win["chain_id"].to_numpy()
    a_m, b_m = win["start_m"].to_numpy(), win["end_m"].to_numpy()
    heap = [(-sums[w, ei], -sums[w, ci], int(chain[w]), float(a_m[w]), int(w), 0) for w in cand]
    heapq.heapify(heap)
    used = np.zeros(len(f), dtype=bool)
    n_used = 0
    taken: dict[int, list[tuple[float, float]]] = {}
    chosen: list[int] = []
    chosen_sums: list[np.ndarray] = []
    chosen_rows: list[np.ndarray] = []
    while heap:
        _, _, c, a, w, version = heapq.heappop(heap)
        spans = taken.get(c, [])
        if any(a < y - 1e-6 and x < b_m[w] - 1e-6 for x, y in spans):
            continue
        r = rows[lo[w] : hi[w]]
        r = r[~used[r]]
        if version != n_used:  # accidents were taken since this window was summed
            s = f[r].sum(axis=0)
            if not _evaluate(dict(zip(cols, s[:, None], strict=True)), p, criteria)[0]:
                continue
            if s[ei] < sums[w, ei] - 1e-9 or s[ci] < sums[w, ci] - 1e-9:
                sums[w] = s
                heapq.heappush(heap, (-s[ei], -s[ci], c, a, w, n_used))
                continue
        used[r] = True
        n_used += 1
        taken.setdefault(c, []).append((a, float(b_m[w])))
        chosen.append(w)
        chosen_sums.append(f[r].sum(axis=0))
        chosen_rows.append(r)
    out_sums = np.vstack(chosen_sums) if chosen_sums else np.zeros((0, len(cols)))
    return np.asarray(chosen, dtype=np.int64), out_sums, chosen_rows


def _section_spots(
    acc: pd.DataFrame,
    fields: pd.DataFrame,
    u: gpd.GeoDataFrame,
    p: BlackSpotProfile,
    per: Period,
    cfg: RiskSettings,
    corridors: bool = True,
) -> pd.DataFrame:
    chains = road_corridors(u, settings=cfg) if corridors else road_chains(u, settings=cfg)
    if "corridor" not in chains.columns:
        chains = chains.assign(carriageway=chains["chain_id"], corridor=False)
    table = _chain_table(chains)
    chain_len = table["length_m"].to_numpy(dtype=float)
    window = np.full(len(chain_len), p.window_m)
    if p.window_m_rural is not None and "rural" in u.columns:
        seg = chains.loc[chains["kind"] == "segment"]
        rural = u["rural"].reindex(seg["unit_id"]).fillna(False).astype(bool).to_numpy()
        lw = (seg["end_m"] - seg["start_m"]).to_numpy()
        share = pd.Series(rural * lw).groupby(seg["chain_id"].to_numpy()).sum() / pd.Series(
            lw
        ).groupby(seg["chain_id"].to_numpy()).sum().replace(0, np.nan)
        window = np.where(
            share.reindex(range(len(chain_len))).fillna(0).to_numpy() > 0.5,
            p.window_m_rural,
            window,
        )
    pos = _chain_positions(chains, acc, u, p.include_intersections)
    win = _windows(chain_len, window, p.step_m)
    criteria = p.section_criteria or p.criteria
    chosen, sums, member_rows = _select_windows(pos, fields, win, chain_len, p, criteria)
    if len(chosen) == 0:
        return pd.DataFrame()
    sel = win.iloc[chosen].reset_index(drop=True)
    out = _sum_columns(pd.DataFrame(sums, columns=fields.columns), p)
    out.insert(0, "type", "section")
    road = table["road"].to_numpy(dtype=object)[sel["chain_id"].to_numpy()]
    out.insert(1, "road", np.where(pd.isna(road), "(unnamed)", road))
    out["chain_id"] = sel["chain_id"].to_numpy()
    out["start_m"] = sel["start_m"].to_numpy()
    out["end_m"] = sel["end_m"].to_numpy()
    out["length_m"] = out["end_m"] - out["start_m"]
    out["radius_m"] = np.nan
    is_corr = chains.groupby("chain_id")["corridor"].first()
    out["corridor"] = is_corr.reindex(out["chain_id"]).fillna(False).to_numpy(dtype=bool)
    # the section's own accidents (on its segments) and those of the junctions on it
    flat_rows = np.concatenate(member_rows)
    spot_of = np.repeat(np.arange(len(member_rows)), [len(r) for r in member_rows])
    node_rows = pos.loc[pos["at_node"].to_numpy(), ["row", "chain_id"]]
    on_node = pd.MultiIndex.from_arrays([flat_rows, out["chain_id"].to_numpy()[spot_of]]).isin(
        pd.MultiIndex.from_frame(node_rows)
    )
    out["segment_crashes"] = np.bincount(spot_of[~on_node], minlength=len(out)).astype(np.int64)
    out["junction_crashes"] = np.bincount(spot_of[on_node], minlength=len(out)).astype(np.int64)
    # units inside each section
    members = chains.merge(
        out[["chain_id", "start_m", "end_m"]].reset_index(), on="chain_id", suffixes=("", "_w")
    )
    inside = np.where(
        members["kind"] == "segment",
        (members["end_m"] > members["start_m_w"] + 1e-6)
        & (members["start_m"] < members["end_m_w"] - 1e-6),
        (members["start_m"] >= members["start_m_w"] - 1e-6)
        & (members["start_m"] <= members["end_m_w"] + 1e-6),
    )
    members = members.loc[inside]
    out["unit_ids"] = (
        members.groupby("index")["unit_id"]
        .agg(lambda s: ";".join(dict.fromkeys(s)))
        .reindex(out.index)
    )
    out["carriageways"] = (
        members.loc[members["kind"] == "segment"]
        .groupby("index")["carriageway"]
        .nunique()
        .reindex(out.index)
        .fillna(0)
        .astype(np.int64)
    )
    ids = _event_ids(acc)
    out["event_ids"] = [";".join(ids[r]) for r in member_rows]
    extent = f"within a {p.window_m:g} m window" + (
        f" ({p.window_m_rural:g} m rural)" if p.window_m_rural and "rural" in u.columns else ""
    )
    out["rule"] = _rule(p, per, "section", criteria, extent) + (
        "; each accident in one section; divided roads as one corridor"
        if corridors
        else "; each accident in one section"
    )
    out["geometry"] = _section_geometries(members, u, out)
    return out.drop(columns="chain_id")


def _section_geometries(members: pd.DataFrame, u: gpd.GeoDataFrame, out: pd.DataFrame) -> list[Any]:
    """The part of each section's segments inside the window, merged into one line."""
    seg = members.loc[members["kind"] == "segment"]
    geoms = u.geometry.reindex(seg["unit_id"]).to_numpy()
    length = (seg["end_m"] - seg["start_m"]).to_numpy()
    a = np.clip(seg["start_m_w"].to_numpy() - seg["start_m"].to_numpy(), 0, None)
    b = np.minimum(seg["end_m_w"].to_numpy(), seg["end_m"].to_numpy()) - seg["start_m"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        fa = np.where(length > 0, a / length, 0.0)
        fb = np.where(length > 0, b / length, 1.0)
    rev = seg["reversed"].to_numpy()
    f0 = np.where(rev, 1 - fb, fa)
    f1 = np.where(rev, 1 - fa, fb)
    pieces = [
        substring(g, x, y, normalized=True) if g is not None else None
        for g, x, y in zip(geoms, f0, f1, strict=True)
    ]
    by_spot: dict[int, list[Any]] = {}
    for i, piece in zip(seg["index"].to_numpy(), pieces, strict=True):
        if piece is not None and not piece.is_empty:
            by_spot.setdefault(int(i), []).append(piece)
    result: list[Any] = []
    for i in range(len(out)):
        parts = by_spot.get(i, [])
        if not parts:
            result.append(None)
            continue
        merged = shapely.line_merge(shapely.multilinestrings(parts)) if len(parts) > 1 else parts[0]
        result.append(merged)
    return result
