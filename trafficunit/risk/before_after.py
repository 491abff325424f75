"""Before/after comparison with empirical Bayes (:func:`compare_periods`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from ..settings import RiskSettings
from ..timefilter import as_period
from .inputs import _units_frame, accidents
from .measures import _counts, _jsonable
from .spf import SafetyPerformanceFunction, _fit_populations, _population_keys, _predictions


def compare_periods(
    units: gpd.GeoDataFrame,
    joined: pd.DataFrame,
    *,
    before: Any,
    after: Any,
    by: str | None = None,
    spf: SafetyPerformanceFunction | Mapping[str, SafetyPerformanceFunction] | None = None,
    settings: RiskSettings | None = None,
) -> gpd.GeoDataFrame:
    """Compare two periods per unit and per area, with the empirical-Bayes before/after method.

    The SPF is fitted on the *before* period (or supplied). For each unit the EB estimate of the
    before period is carried to the after period with the SPF's ratio of predictions
    (``r = N_pred,after / N_pred,before``): ``expected_after = r * EB_before``, its variance
    ``r^2 (1 - w) EB_before``. Per area the index of effectiveness is Hauer's
    ``theta = (observed/expected) / (1 + Var(expected)/expected^2)`` (< 1: fewer accidents than
    expected without change).

    Parameters
    ----------
    before, after
        ``(start, end)`` pairs, ends inclusive.
    by
        Unit column to summarise by (e.g. a district); the whole network otherwise.

    Returns
    -------
    geopandas.GeoDataFrame
        Per unit: ``crashes_before``, ``crashes_after``, per-year rates, ``change_percent``,
        ``eb_before``, ``expected_after``, ``expected_after_var``, ``index_after``.
        ``.attrs["summary"]`` holds the per-area table as records.
    """
    cfg = settings or RiskSettings()
    u = _units_frame(units)
    pb, pa = as_period(before), as_period(after)
    acc_b, _, _ = accidents(joined, period=pb)
    acc_a, _, _ = accidents(joined, period=pa)
    obs_b = _counts(acc_b, u.index, cfg)["crashes"].to_numpy(dtype=float)
    obs_a = _counts(acc_a, u.index, cfg)["crashes"].to_numpy(dtype=float)
    keys = _population_keys(u, cfg)
    spfs = _fit_populations(u, obs_b, pb.years, keys, cfg, spf)
    (pred_b, pred_a), kk = _predictions(u, spfs, keys, (pb.years, pa.years))
    w = 1.0 / (1.0 + kk * pred_b)
    eb_b = w * pred_b + (1.0 - w) * obs_b
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(pred_b > 0, pred_a / pred_b, pa.years / pb.years)
    exp_a = r * eb_b
    var_a = r**2 * (1.0 - w) * eb_b
    out = u.copy()
    out["crashes_before"] = obs_b.astype(np.int64)
    out["crashes_after"] = obs_a.astype(np.int64)
    out["per_year_before"] = obs_b / pb.years
    out["per_year_after"] = obs_a / pa.years
    with np.errstate(divide="ignore", invalid="ignore"):
        out["change_percent"] = np.where(
            obs_b > 0, 100.0 * (out["per_year_after"] / out["per_year_before"] - 1.0), np.nan
        )
        out["index_after"] = np.where(exp_a > 0, obs_a / exp_a, np.nan)
    out["eb_before"] = eb_b
    out["expected_after"] = exp_a
    out["expected_after_var"] = var_a
    area = out[by].astype("string").fillna("unknown") if by else pd.Series("all", index=out.index)
    grp = pd.DataFrame(
        {"area": area.to_numpy(), "lam": obs_a, "pi": exp_a, "var": var_a, "b": obs_b},
    ).groupby("area")
    s = grp.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        c = 1.0 + s["var"] / s["pi"] ** 2
        theta = (s["lam"] / s["pi"]) / c
        var_theta = theta**2 * (1.0 / s["lam"] + s["var"] / s["pi"] ** 2) / c**2
    summary = pd.DataFrame(
        {
            "units": grp.size(),
            "crashes_before": s["b"],
            "crashes_after": s["lam"],
            "per_year_before": s["b"] / pb.years,
            "per_year_after": s["lam"] / pa.years,
            "expected_after": s["pi"],
            "theta": theta,
            "theta_se": np.sqrt(var_theta),
            "change_percent_eb": 100.0 * (theta - 1.0),
        }
    )
    out.attrs = {
        "before": pb.to_json(),
        "after": pa.to_json(),
        "summary": _jsonable(summary.reset_index().to_dict(orient="records")),
        "spf": _jsonable({k: f.to_dict() for k, f in spfs.items()}),
    }
    return out
