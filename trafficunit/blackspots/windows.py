"""Positions of accidents along screening lines and sliding-window sums (HSM screening)."""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from .._errors import ValidationError
from ..risk import _units_frame, accidents
from ..settings import RiskSettings
from .chains import road_chains
from .corridors import road_corridors
from .profiles import _fields

__all__ = ["sliding_windows"]


def _chain_positions(
    chains: pd.DataFrame, acc: pd.DataFrame, u: pd.DataFrame, include_intersections: bool
) -> pd.DataFrame:
    """(accident row, chain_id, pos_m) for every accident on a chained unit."""
    acc_unit = acc["unit_id"].astype(object).to_numpy()
    measure = (
        pd.to_numeric(acc["measure_m"], errors="coerce").to_numpy(dtype=float)
        if "measure_m" in acc.columns
        else np.full(len(acc), np.nan)
    )
    # map junction-internal links to their junction
    if "junction_id" in u.columns:
        jmap = u["junction_id"].dropna()
        jmap = jmap[u.loc[jmap.index, "kind"] == "segment"]
        mapped = pd.Series(acc_unit).map(jmap).to_numpy(dtype=object)
        acc_unit = np.where(pd.notna(mapped), mapped, acc_unit)
    rows = pd.DataFrame({"row": np.arange(len(acc)), "unit_id": acc_unit, "m": measure})
    seg = chains.loc[chains["kind"] == "segment"]
    a = rows.merge(seg, on="unit_id", how="inner")
    span = (a["end_m"] - a["start_m"]).to_numpy(dtype=float)
    # the measure is along the unit; on a corridor the unit's span is its projection on the
    # reference line, so the position goes by the share of the unit's own length
    own = pd.to_numeric(u["length_m"], errors="coerce").reindex(a["unit_id"]).to_numpy(dtype=float)
    own = np.where(np.isfinite(own) & (own > 0), own, span)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.clip(a["m"].to_numpy(dtype=float) / own, 0.0, 1.0)
    frac = np.where(np.isfinite(frac), frac, 0.5)
    along = frac * span
    a["pos_m"] = np.where(a["reversed"], a["end_m"] - along, a["start_m"] + along)
    a["at_node"] = False
    parts = [a[["row", "chain_id", "pos_m", "at_node"]]]
    if include_intersections:
        nodes = chains.loc[chains["kind"] == "intersection"]
        b = rows.merge(nodes, on="unit_id", how="inner")
        b["pos_m"] = b["start_m"]
        b["at_node"] = True
        parts.append(b[["row", "chain_id", "pos_m", "at_node"]])
    # a unit sits once on a screening line (road_chains / road_corridors), so an accident does
    return pd.concat(parts, ignore_index=True)


def _windows(chain_len: np.ndarray, window: np.ndarray, step: float) -> pd.DataFrame:
    """Window starts/ends along each chain (vectorised); the last window ends at the chain end."""
    span = np.maximum(chain_len - window, 0.0)
    k_full = np.floor(span / step + 1e-9).astype(np.int64)
    rem = span - k_full * step
    n_w = k_full + 1 + (rem > 1e-6).astype(np.int64)
    chain = np.repeat(np.arange(len(chain_len)), n_w)
    first = np.repeat(np.cumsum(n_w) - n_w, n_w)
    k = np.arange(n_w.sum()) - first
    start = k * step
    last_extra = (k == n_w[chain] - 1) & (rem[chain] > 1e-6)
    start = np.where(last_extra, span[chain], start).astype(float)
    end = np.minimum(start + window[chain], chain_len[chain])
    return pd.DataFrame({"chain_id": chain, "start_m": start, "end_m": end})


def _window_sums(
    pos: pd.DataFrame, fields: pd.DataFrame, win: pd.DataFrame, chain_len: np.ndarray
) -> pd.DataFrame:
    """Sum accident fields over closed windows [start, end] with one global searchsorted."""
    base = np.r_[0.0, np.cumsum(chain_len + 1.0)[:-1]]
    g = base[pos["chain_id"].to_numpy()] + pos["pos_m"].to_numpy()
    order = np.argsort(g, kind="stable")
    g = g[order]
    vals = fields.to_numpy(dtype=float)[pos["row"].to_numpy()[order]]
    cs = np.vstack([np.zeros((1, vals.shape[1])), np.cumsum(vals, axis=0)])
    wb = base[win["chain_id"].to_numpy()]
    lo = np.searchsorted(g, wb + win["start_m"].to_numpy() - 1e-6, side="left")
    hi = np.searchsorted(g, wb + win["end_m"].to_numpy() + 1e-6, side="right")
    sums = cs[hi] - cs[lo]
    return pd.DataFrame(sums, columns=fields.columns, index=win.index)


def _chain_table(chains: pd.DataFrame) -> pd.DataFrame:
    return chains.groupby("chain_id").agg(
        road=("road", "first"), length_m=("chain_length_m", "first")
    )


def sliding_windows(
    units: gpd.GeoDataFrame,
    joined: pd.DataFrame,
    *,
    window_m: float | None = None,
    step_m: float | None = None,
    period: Any = None,
    chains: pd.DataFrame | None = None,
    include_intersections: bool = True,
    corridors: bool = True,
    settings: RiskSettings | None = None,
) -> pd.DataFrame:
    """Accident counts in windows moved along every continuous road (network screening).

    Parameters
    ----------
    window_m, step_m
        Window length and step in metres (default HSM 0.3 mi / 0.1 mi,
        ``settings.screen_window_m`` / ``screen_step_m``). A road shorter than the window is one
        window. The last window of a road ends at the road's end.
    period
        ``(start, end)`` of the accidents counted; default all.
    chains
        Output of :func:`road_chains` (or :func:`road_corridors`) to reuse.
    corridors
        Screen the two carriageways of a divided road as one corridor
        (:func:`road_corridors`), each accident once per window; False: every carriageway
        on its own (``chain_id`` as in :func:`road_chains`).

    Returns
    -------
    pandas.DataFrame
        One row per window: ``chain_id``, ``road``, ``corridor``, ``start_m``, ``end_m``,
        and sums of
        ``crashes``, ``K``..``O``, ``deaths``, ``serious_injuries``, ``minor_injuries``,
        ``epdo`` (casualties approximated by K / A / B+C counts when the data has none).
    """
    cfg = settings or RiskSettings()
    window = cfg.screen_window_m if window_m is None else float(window_m)
    step = cfg.screen_step_m if step_m is None else float(step_m)
    if not (window > 0 and step > 0):
        raise ValidationError(f"window_m and step_m must be positive, got {window}, {step}")
    u = _units_frame(units)
    ch = chains if chains is not None else road_chains(u, settings=cfg)
    if corridors and "corridor" not in ch.columns:
        ch = road_corridors(u, chains=ch, settings=cfg)
    acc, _, _ = accidents(joined, period=period)
    fields, _ = _fields(acc, cfg)
    pos = _chain_positions(ch, acc, u, include_intersections)
    table = _chain_table(ch)
    chain_len = table["length_m"].to_numpy(dtype=float)
    win = _windows(chain_len, np.full(len(chain_len), window), step)
    sums = _window_sums(pos, fields, win, chain_len)
    out = pd.concat([win, sums], axis=1)
    out.insert(1, "road", table["road"].to_numpy()[win["chain_id"].to_numpy()])
    corr = (
        ch.groupby("chain_id")["corridor"].first().to_numpy(dtype=bool)
        if "corridor" in ch.columns
        else np.zeros(len(table), dtype=bool)
    )
    out.insert(2, "corridor", corr[win["chain_id"].to_numpy()])
    return out
