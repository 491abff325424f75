"""HSM peak searching (Part B): the peak window of every road by EB excess, with a CV test."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd

from .._errors import ValidationError
from ..risk import _units_frame
from ..settings import RiskSettings
from .chains import road_chains
from .corridors import road_corridors
from .windows import _chain_table, _windows

__all__ = ["peak_search"]


def peak_search(
    units: gpd.GeoDataFrame,
    risk: pd.DataFrame,
    *,
    window_m: float | None = None,
    max_cv: float | None = None,
    max_window_m: float | None = None,
    chains: pd.DataFrame | None = None,
    corridors: bool = True,
    settings: RiskSettings | None = None,
) -> pd.DataFrame:
    """HSM peak searching: the peak window of every road by EB excess, with a CV test.

    Along each road, windows of ``window_m`` (0.1 mi) move in steps of ``window_m``; a window's
    EB expected crashes, prediction and variance are the unit values (from :func:`score`)
    spread evenly along segments plus those of the intersections inside. A window is *valid*
    when ``CV = sqrt(variance) / expected <= max_cv`` (0.25). If no window of a size is valid,
    the window grows by ``window_m`` (up to ``max_window_m`` or the road's length); the valid
    window with the largest excess is the road's peak. Roads that never pass the test report
    their whole length with ``cv_ok`` False. A divided road is one corridor
    (:func:`road_corridors`) unless ``corridors`` is False.

    Returns
    -------
    pandas.DataFrame
        One row per road, highest excess first: ``chain_id``, ``road``, ``start_m``, ``end_m``,
        ``length_m``, ``expected``, ``predicted``, ``excess``, ``cv``, ``cv_ok``.
    """
    cfg = settings or RiskSettings()
    step = cfg.peak_window_m if window_m is None else float(window_m)
    limit = cfg.peak_max_cv if max_cv is None else float(max_cv)
    need = ["eb_expected", "eb_predicted", "eb_variance"]
    missing = [c for c in need if c not in risk.columns]
    if missing:
        raise ValidationError(f"risk lacks {missing}; compute it with tu.score first")
    u = _units_frame(units)
    ch = chains if chains is not None else road_chains(u, settings=cfg)
    if corridors and "corridor" not in ch.columns:
        ch = road_corridors(u, chains=ch, settings=cfg)
    table = _chain_table(ch)
    chain_len = table["length_m"].to_numpy(dtype=float)
    vals = risk[need].reindex(ch["unit_id"]).fillna(0.0).to_numpy(dtype=float)
    along = _Along(ch, vals, chain_len)
    top_len = chain_len.max() if max_window_m is None else min(max_window_m, chain_len.max())
    res = _grow_windows(along, chain_len, step, limit, top_len)
    with np.errstate(divide="ignore", invalid="ignore"):
        cv_all = np.where(res[:, 2] > 0, np.sqrt(np.maximum(res[:, 4], 0)) / res[:, 2], np.inf)
    out = pd.DataFrame(
        {
            "chain_id": np.arange(len(chain_len)),
            "road": table["road"].to_numpy(),
            "start_m": res[:, 0],
            "end_m": res[:, 1],
            "length_m": res[:, 1] - res[:, 0],
            "expected": res[:, 2],
            "predicted": res[:, 3],
            "excess": res[:, 2] - res[:, 3],
            "cv": cv_all,
            "cv_ok": res[:, 5] > 0,
        }
    )
    return out.sort_values("excess", ascending=False, kind="stable", ignore_index=True)


class _Along:
    """EB expected, predicted and variance summed over any window of a screening line.

    Segments spread their values evenly along their length: the cumulative sum along one
    global coordinate (chains laid end to end) is piecewise linear with a break at every
    segment end (segments may overlap: the two carriageways of a corridor). Intersections
    (and zero-length segments) are point masses.
    """

    def __init__(self, ch: pd.DataFrame, vals: np.ndarray, chain_len: np.ndarray) -> None:
        self.base = base = np.r_[0.0, np.cumsum(chain_len + 1.0)[:-1]]
        is_seg = (ch["kind"] == "segment").to_numpy()
        cb = base[ch["chain_id"].to_numpy()]
        s_start = cb[is_seg] + ch["start_m"].to_numpy()[is_seg]
        s_end = cb[is_seg] + ch["end_m"].to_numpy()[is_seg]
        sv = vals[is_seg]
        span = s_end - s_start
        spread = span > 1e-9
        dens = sv[spread] / span[spread][:, None]
        xp = np.r_[s_start[spread], s_end[spread]]
        order = np.argsort(xp, kind="stable")
        self.xp = xp = xp[order]
        slope = np.cumsum(np.vstack([dens, -dens])[order], axis=0)
        if len(xp):
            self.fp = np.vstack(
                [np.zeros((1, 3)), np.cumsum(slope[:-1] * np.diff(xp)[:, None], axis=0)]
            )
        else:
            self.fp = np.zeros((0, 3))
        p_pos = np.r_[cb[~is_seg] + ch["start_m"].to_numpy()[~is_seg], s_start[~spread]]
        p_val = np.vstack([vals[~is_seg], sv[~spread]])
        po = np.argsort(p_pos, kind="stable")
        self.p_pos = p_pos[po]
        self.p_cs = np.vstack([np.zeros((1, 3)), np.cumsum(p_val[po], axis=0)])

    def window(self, c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Sums over windows ``[a, b]`` of chains ``c``: columns expected, predicted, variance."""
        ga, gb = self.base[c] + a, self.base[c] + b
        out = np.empty((len(c), 3))
        for k in range(3):
            fp = self.fp[:, k]
            out[:, k] = (
                np.interp(gb, self.xp, fp) - np.interp(ga, self.xp, fp) if len(self.xp) else 0.0
            )
        lo = np.searchsorted(self.p_pos, ga - 1e-6, side="left")
        hi = np.searchsorted(self.p_pos, gb + 1e-6, side="right")
        return out + (self.p_cs[hi] - self.p_cs[lo])


def _grow_windows(
    along: _Along, chain_len: np.ndarray, step: float, limit: float, top_len: float
) -> np.ndarray:
    """Per chain: start, end, expected, predicted, variance, cv_ok of its peak window.

    Windows grow by ``step`` until one passes the CV test; a chain whose whole length fails
    (or every chain at ``top_len``) reports the whole road with cv_ok 0.
    """
    n_chain = len(chain_len)
    done = np.zeros(n_chain, dtype=bool)
    res = np.zeros((n_chain, 6))
    size = step
    while not done.all():
        todo = np.flatnonzero(~done)
        w = np.minimum(np.full(len(todo), size), chain_len[todo])
        sub = _windows(chain_len[todo], w, step)
        c = todo[sub["chain_id"].to_numpy()]
        a, b = sub["start_m"].to_numpy(), sub["end_m"].to_numpy()
        v = along.window(c, a, b)
        expected, predicted, var = v[:, 0], v[:, 1], v[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            cv = np.where(expected > 0, np.sqrt(np.maximum(var, 0)) / expected, np.inf)
        valid = cv <= limit
        excess = expected - predicted
        last = size >= top_len - 1e-9
        whole = (w >= chain_len[todo] - 1e-9)[sub["chain_id"].to_numpy()]
        # per chain: best valid window; or, at the last size / whole-road window, the whole road
        df = pd.DataFrame(
            {
                "c": c,
                "a": a,
                "b": b,
                "e": expected,
                "p": predicted,
                "v": var,
                "x": np.where(valid, excess, -np.inf),
                "ok": valid,
                "whole": whole,
            }
        )
        best = (
            df.loc[df["ok"]]
            .sort_values(["c", "x", "a"], ascending=[True, False, True])
            .drop_duplicates("c")
        )
        res[best["c"].to_numpy()] = best[["a", "b", "e", "p", "v"]].assign(ok=1.0).to_numpy()
        done[best["c"].to_numpy()] = True
        if last:
            # whole road for every remaining chain
            rem = np.flatnonzero(~done)
            res[rem, 0] = 0.0
            res[rem, 1] = chain_len[rem]
            res[rem, 2:5] = along.window(rem, np.zeros(len(rem)), chain_len[rem])
            res[rem, 5] = 0.0
            done[rem] = True
        else:
            give_up = df.loc[~df["c"].isin(best["c"]) & df["whole"]].drop_duplicates("c")
            res[give_up["c"].to_numpy()] = (
                give_up[["a", "b", "e", "p", "v"]].assign(ok=0.0).to_numpy()
            )
            done[give_up["c"].to_numpy()] = True
        size += step
    return res
