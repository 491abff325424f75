"""Per-unit summaries of joined events (:func:`summarize`, :func:`summarize_by_year`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from .._errors import ValidationError
from .._validate import require_gdf
from ..settings import JoinSettings
from .index import _SEVERITIES
from .weights import epdo_weights
from .windows import _as_ts, active_at


def _accidents(joined: pd.DataFrame, period: tuple[Any, Any] | None) -> pd.DataFrame:
    kind = joined["kind"] if "kind" in joined.columns else pd.Series("accident", joined.index)
    ok = (kind == "accident").to_numpy(dtype=bool) & joined["unit_id"].notna().to_numpy()
    acc = joined.loc[ok]
    if period is not None and len(acc):
        tz = getattr(acc["time"].dtype, "tz", None) if "time" in acc.columns else None
        t0, t1 = _as_ts(period[0], tz), _as_ts(period[1], tz)
        keep = pd.Series(False, index=acc.index)
        if "time" in acc.columns:
            keep |= ((acc["time"] >= t0) & (acc["time"] < t1)).fillna(False)
            no_time = acc["time"].isna()
        else:
            no_time = pd.Series(True, index=acc.index)
        if "year" in acc.columns:
            y = acc["year"]
            keep |= (no_time & (y >= t0.year) & (y <= (t1 - pd.Timedelta(1, "ns")).year)).fillna(
                False
            )
        acc = acc.loc[keep.to_numpy(dtype=bool)]
    return acc


def _years(acc: pd.DataFrame, period: tuple[Any, Any] | None) -> float:
    if period is not None:
        t0, t1 = pd.Timestamp(period[0]), pd.Timestamp(period[1])
        return max((t1 - t0).total_seconds() / (365.25 * 86400), 1e-9)
    if "year" in acc.columns and acc["year"].notna().any():
        y = acc["year"].dropna()
        return float(int(y.max()) - int(y.min()) + 1)
    return float("nan")


def summarize(
    units: gpd.GeoDataFrame,
    joined: pd.DataFrame,
    *,
    period: tuple[Any, Any] | None = None,
    weights: str | Mapping[str, float] | None = None,
    at: Any = None,
    settings: JoinSettings | None = None,
) -> gpd.GeoDataFrame:
    """Accidents, hazards and work zones per unit.

    Accidents count within ``period``; hazards open and work zones active at ``at``, each once
    per unit however many rows join it there.

    Parameters
    ----------
    units
        The units the events were joined to (indexed by ``unit_id``).
    joined
        Output of :func:`assign` (one or several kinds, e.g. concatenated).
    period
        ``(start, end)`` of the accidents counted (end exclusive; accidents with only a
        year count when their year lies in the period). Default: every accident, over the
        span of years present.
    weights
        EPDO weights: a version name or a mapping (see :func:`epdo_weights`).
    at
        Time at which hazards' open state and work zones' activity are evaluated (default:
        now).
    settings
        :class:`~trafficunit.settings.JoinSettings` (closed hazard statuses, EPDO version).

    Returns
    -------
    geopandas.GeoDataFrame
        Indexed by ``unit_id``: the unit columns plus ``crashes``, ``K``, ``A``, ``B``,
        ``C``, ``O``, ``epdo``, ``years``, ``crashes_per_year``, ``crashes_per_km`` and
        ``crashes_per_km_year`` (NaN for intersections), ``epdo_per_km``, ``first_year``,
        ``last_year``, ``hazards``, ``open_hazards``, ``open_major_hazards``, ``workzones``,
        ``active_workzones``. ``.attrs["epdo_weights"]`` records the weights used.
    """
    cfg = settings or JoinSettings()
    require_gdf(units, "units")
    if "unit_id" not in joined.columns:
        raise ValidationError("joined has no unit_id column; pass the output of tu.assign")
    w = epdo_weights(weights if weights is not None else cfg.epdo_weights)
    out = units.copy()
    if "unit_id" in out.columns:
        out = out.set_index("unit_id")
    idx = out.index.astype(str)
    acc = _accidents(joined, period)
    years = _years(acc, period)
    _accident_columns(out, acc, idx, w, years)
    now = _as_ts(at, "UTC") if at is not None else pd.Timestamp.now(tz="UTC")
    kind = joined["kind"] if "kind" in joined.columns else pd.Series("accident", joined.index)
    linked = joined["unit_id"].notna()
    hz = joined.loc[((kind == "hazard") & linked).to_numpy(dtype=bool)]
    _hazard_columns(out, hz, idx, now, cfg)
    wz = joined.loc[((kind == "workzone") & linked).to_numpy(dtype=bool)]
    _workzone_columns(out, wz, idx, now)
    out.attrs = {
        "epdo_weights": w,
        "period": [str(p) for p in period] if period is not None else None,
        "years": years,
        "at": str(now),
    }
    return out


def summarize_by_year(
    joined: pd.DataFrame,
    *,
    weights: str | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Accidents per unit and year: ``crashes``, ``K`` … ``O``, ``epdo``.

    Returns
    -------
    pandas.DataFrame
        Indexed by (``unit_id``, ``year``), only the pairs with accidents.
    """
    w = epdo_weights(weights)
    acc = _accidents(joined, None)
    if len(acc) == 0:
        cols = ["crashes", *_SEVERITIES, "epdo"]
        return pd.DataFrame(
            columns=cols, index=pd.MultiIndex.from_arrays([[], []], names=["unit_id", "year"])
        )
    frame = pd.DataFrame(
        {
            "unit_id": acc["unit_id"].astype(str).to_numpy(),
            "year": acc["year"].astype("Int64").to_numpy(),
            "severity": acc["severity"].astype("string").to_numpy(),
        }
    )
    table = pd.crosstab([frame["unit_id"], frame["year"]], frame["severity"])
    for s in _SEVERITIES:
        if s not in table.columns:
            table[s] = 0
    table = table[list(_SEVERITIES)]
    table.insert(0, "crashes", frame.groupby(["unit_id", "year"]).size())
    table["epdo"] = sum(w[s] * table[s] for s in _SEVERITIES)
    table.columns.name = None
    return table


def _accident_columns(
    out: pd.DataFrame, acc: pd.DataFrame, idx: pd.Index, w: dict[str, float], years: float
) -> None:
    """Crashes by severity, EPDO, rates per year and km, first and last year per unit."""
    sev = acc["severity"].astype("string") if "severity" in acc.columns else None
    uid = acc["unit_id"].astype(str)
    counts = uid.value_counts()
    out["crashes"] = counts.reindex(idx).fillna(0).astype("int64").to_numpy()
    epdo = np.zeros(len(out))
    for s in _SEVERITIES:
        if sev is not None:
            c = uid[(sev == s).fillna(False).to_numpy()].value_counts()
            col = c.reindex(idx).fillna(0).astype("int64").to_numpy()
        else:
            col = np.zeros(len(out), dtype=np.int64)
        out[s] = col
        epdo += w[s] * col
    out["epdo"] = epdo
    length_km = (
        pd.to_numeric(out["length_m"], errors="coerce").to_numpy(dtype=float) / 1000.0
        if "length_m" in out.columns
        else np.full(len(out), np.nan)
    )
    length_km = np.where(length_km > 0, length_km, np.nan)
    out["years"] = years
    out["crashes_per_year"] = out["crashes"] / years
    out["crashes_per_km"] = out["crashes"] / length_km
    out["crashes_per_km_year"] = out["crashes_per_km"] / years
    out["epdo_per_km"] = out["epdo"] / length_km
    if "year" in acc.columns and len(acc):
        g = acc.groupby(uid.to_numpy())["year"]
        out["first_year"] = g.min().reindex(idx).astype("Int64").to_numpy()
        out["last_year"] = g.max().reindex(idx).astype("Int64").to_numpy()
    else:
        out["first_year"] = pd.array([pd.NA] * len(out), dtype="Int64")
        out["last_year"] = pd.array([pd.NA] * len(out), dtype="Int64")


def _hazard_columns(
    out: pd.DataFrame, hz: pd.DataFrame, idx: pd.Index, now: pd.Timestamp, cfg: JoinSettings
) -> None:
    """Hazards per unit, and those open at ``now`` (all, and major ones); each hazard counts
    once per unit."""
    if not len(hz):
        out["hazards"] = 0
        out["open_hazards"] = 0
        out["open_major_hazards"] = 0
        return
    status = (
        hz["status"].astype("string").str.strip().str.casefold()
        if ("status" in hz.columns)
        else pd.Series(pd.NA, index=hz.index, dtype="string")
    )
    closed_set = {s.casefold() for s in cfg.closed_statuses}
    is_open = ~status.isin(closed_set).fillna(False)
    if "reported_at" in hz.columns:
        is_open &= (hz["reported_at"].isna() | (hz["reported_at"] <= now)).fillna(True)
    grade = hz["grade"].astype("string") if "grade" in hz.columns else None
    major = (grade == "major").fillna(False) if grade is not None else is_open & False
    hz_uid = hz["unit_id"].astype(str)
    hz_ev = hz["event_id"].astype(str) if "event_id" in hz.columns else hz_uid.index
    frame = pd.DataFrame(
        {
            "u": hz_uid.to_numpy(),
            "e": np.asarray(hz_ev),
            "open": is_open.to_numpy(),
            "major": major.to_numpy(),
        }
    ).drop_duplicates(["u", "e"])
    out["hazards"] = frame["u"].value_counts().reindex(idx).fillna(0).astype(int).to_numpy()
    op = frame.loc[frame["open"], "u"].value_counts()
    out["open_hazards"] = op.reindex(idx).fillna(0).astype(int).to_numpy()
    om = frame.loc[frame["open"] & frame["major"], "u"].value_counts()
    out["open_major_hazards"] = om.reindex(idx).fillna(0).astype(int).to_numpy()


def _workzone_columns(
    out: pd.DataFrame, wz: pd.DataFrame, idx: pd.Index, now: pd.Timestamp
) -> None:
    """Work zones per unit, and those active at ``now``; each counts once per unit."""
    if not len(wz):
        out["workzones"] = 0
        out["active_workzones"] = 0
        return
    ev = wz["event_id"].astype(str) if "event_id" in wz.columns else wz.index.astype(str)
    frame = pd.DataFrame({"u": wz["unit_id"].astype(str).to_numpy(), "e": np.asarray(ev)})
    out["workzones"] = (
        frame.drop_duplicates()["u"].value_counts().reindex(idx).fillna(0).astype(int)
    ).to_numpy()
    act = active_at(wz, now) if {"start", "end"} <= set(wz.columns) else wz.iloc[0:0]
    fa = pd.DataFrame(
        {
            "u": act["unit_id"].astype(str).to_numpy(),
            "e": np.asarray(
                act["event_id"].astype(str) if "event_id" in act.columns else act.index
            ),
        }
    ).drop_duplicates()
    out["active_workzones"] = fa["u"].value_counts().reindex(idx).fillna(0).astype(int)
    out["active_workzones"] = out["active_workzones"].fillna(0).astype(int)
