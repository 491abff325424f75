"""What drives a unit's risk (:func:`explain`, :func:`describe_events`, :func:`top`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from ..settings import TimeSettings
from ..timefilter import hour_band, is_night
from .inputs import SEVERITIES, _severity, accidents


def _mode_share(groups: pd.Series, values: pd.Series) -> pd.DataFrame:
    """Most frequent non-missing value per group and its share of the group's known values."""
    df = pd.DataFrame({"g": groups.to_numpy(), "v": values.to_numpy()}).dropna()
    if len(df) == 0:
        return pd.DataFrame(columns=["value", "share"])
    vc = df.groupby(["g", "v"], sort=False).size().rename("n").reset_index()
    vc = vc.sort_values(["g", "n", "v"], ascending=[True, False, True], kind="stable")
    top = vc.drop_duplicates("g").set_index("g")
    total = vc.groupby("g")["n"].sum()
    return pd.DataFrame({"value": top["v"], "share": top["n"] / total})


def dominant_phrases(desc: pd.DataFrame) -> pd.Series:
    """ "; 60% rear-end; 45% in the evening" from :func:`describe_events` columns ('' if none)."""
    out = pd.Series("", index=desc.index, dtype=object)
    for col, joiner in (("top_type", "% "), ("top_time", "% in the ")):
        value = desc[col].astype("string")
        share = (desc[f"{col}_share"] * 100).round(0).astype("Int64").astype(str)
        out = out + np.where(value.notna(), "; " + share + joiner + value.fillna(""), "")
    return out


def describe_events(
    events: pd.DataFrame, groups: pd.Series, *, time_settings: TimeSettings | None = None
) -> pd.DataFrame:
    """What the accidents of each group have in common: severity, type, time of day.

    Parameters
    ----------
    events
        Accident rows (``severity``, optional ``collision_type``, ``hour``/``time``).
    groups
        Group key per row of ``events`` (e.g. ``unit_id`` or a black spot id).

    Returns
    -------
    pandas.DataFrame
        Indexed by group: ``crashes``, ``severity_mix`` ("K 1, B 3, O 7"), ``top_type``,
        ``top_type_share``, ``top_time``, ``top_time_share``, ``night_share`` (by the
        file's light column, else the sun, else the clock).
    """
    events = events.reset_index(drop=True)  # positional alignment; labels may repeat
    g = pd.Series(groups.to_numpy(dtype=object), index=events.index)
    sev = _severity(events)
    counts = pd.crosstab(g, sev.fillna("?"))
    mix = pd.Series("", index=counts.index, dtype=object)
    for letter in (*SEVERITIES, "?"):
        if letter in counts.columns:
            c = counts[letter]
            mix = mix + np.where(c > 0, f"{letter} " + c.astype(str) + ", ", "")
    out = pd.DataFrame(
        {"crashes": g.value_counts().reindex(counts.index), "severity_mix": mix.str.rstrip(", ")}
    )
    if "collision_type" in events.columns:
        ct = events["collision_type"].astype("string").str.strip()
        ct = ct.mask(ct == "")
        ms = _mode_share(g, ct)
        out["top_type"] = ms["value"].reindex(out.index)
        out["top_type_share"] = ms["share"].reindex(out.index)
    else:
        out["top_type"], out["top_type_share"] = pd.NA, np.nan
    from ..timefilter import _event_hours

    hours = _event_hours(events)
    ms = _mode_share(g, hour_band(hours, time_settings))
    out["top_time"] = ms["value"].reindex(out.index)
    out["top_time_share"] = ms["share"].reindex(out.index)
    night = is_night(events, by="auto", settings=time_settings)
    known = night.notna()
    nshare = night[known].astype(float).groupby(g[known]).mean()
    out["night_share"] = nshare.reindex(out.index)
    return out


def _attribute_notes(risk: pd.DataFrame) -> pd.Series:
    """Unit attributes that stand out against the reference population, as text."""
    notes = pd.Series("", index=risk.index, dtype=object)
    pop = risk["reference_population"] if "reference_population" in risk else risk["kind"]

    def add(mask: Any, text: Any) -> None:
        nonlocal notes
        m = np.asarray(pd.Series(mask, index=risk.index).fillna(False), dtype=bool)
        t = text if isinstance(text, str) else pd.Series(text, index=risk.index).astype(str)
        notes = notes.where(~m, notes + (t if isinstance(t, str) else t) + "; ")

    if "maxspeed_kmh" in risk.columns:
        sp = pd.to_numeric(risk["maxspeed_kmh"], errors="coerce")
        med = sp.groupby(pop).transform("median")
        add(
            sp > med,
            "speed limit " + sp.round(0).astype("Int64").astype(str) + " km/h "
            "(population median " + med.round(0).astype("Int64").astype(str) + ")",
        )
    if "lit" in risk.columns:
        add(risk["lit"].astype("string").str.lower().isin(["no", "false", "0"]), "unlit")
    if "sidewalk" in risk.columns:
        add(risk["sidewalk"].astype("string").str.lower().isin(["no", "none"]), "no sidewalk")
    if "lanes" in risk.columns:
        ln = pd.to_numeric(risk["lanes"], errors="coerce")
        add(ln >= 4, ln.astype("Int64").astype(str) + " lanes")
    for flag in ("bridge", "tunnel"):
        if flag in risk.columns:
            v = risk[flag].astype("string").str.lower()
            add(v.notna() & ~v.isin(["no", "false", "0", "<na>", ""]), flag)
    if "turn_deg_per_km" in risk.columns:
        tv = pd.to_numeric(risk["turn_deg_per_km"], errors="coerce")
        q = tv.groupby(pop).transform(lambda s: s.quantile(0.9))
        add(
            (tv > q) & (tv > 0),
            "winding (turn " + tv.round(0).astype("Int64").astype(str) + " deg/km)",
        )
    if "degree" in risk.columns:
        dg = pd.to_numeric(risk["degree"], errors="coerce")
        add((risk["kind"] == "intersection") & (dg >= 5), dg.astype("Int64").astype(str) + " legs")
    if "open_hazards" in risk.columns:
        oh = risk["open_hazards"]
        add(oh > 0, oh.astype(str) + " open hazard(s)")
    return notes.str.rstrip("; ")


def explain(
    risk: gpd.GeoDataFrame,
    joined: pd.DataFrame,
    *,
    unit_ids: Sequence[str] | None = None,
    n: int | None = None,
    time_settings: TimeSettings | None = None,
) -> pd.DataFrame:
    """Say what drives each unit's risk: severity, dominant accident type, time, attributes.

    Only the accidents of the scored period count; the words come from
    :func:`describe_events` and from the unit's own attributes (speed limit, lanes, lighting).

    Parameters
    ----------
    risk
        Output of :func:`score`.
    joined
        The joined frame that was scored (the accidents of ``risk.attrs["period"]`` are used).
    unit_ids
        Units to explain; default the ``n`` worst (:func:`top`), or all when ``n`` is None.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``unit_id``: ``level``, the measure, :func:`describe_events` columns,
        ``attributes`` and a one-line ``why``.
    """
    if unit_ids is None:
        unit_ids = list(top(risk, n=n).index) if n is not None else list(risk.index)
    sub = risk.loc[list(unit_ids)]
    period = risk.attrs.get("period")
    acc, _, _ = accidents(joined, period=tuple(period) if period else None)
    acc = acc.loc[acc["unit_id"].astype(object).isin(sub.index)]
    desc = describe_events(acc, acc["unit_id"].astype(object), time_settings=time_settings)
    out = pd.DataFrame(index=sub.index)
    out["level"] = sub["level"]
    out["risk_measure"] = sub.get("risk_measure")
    out["epdo"] = sub["epdo"]
    out = out.join(desc.drop(columns="crashes"))
    out["crashes"] = sub["crashes"]
    out["attributes"] = _attribute_notes(risk).reindex(sub.index)
    why = "EPDO " + sub["epdo"].round(0).astype(int).astype(str)
    mix = out["severity_mix"].fillna("")
    why = why + np.where(mix != "", " (" + mix + ")", "")
    why = why + dominant_phrases(out)
    attrs = out["attributes"].fillna("")
    out["why"] = why + np.where(attrs != "", "; " + attrs, "")
    return out


def top(
    risk: gpd.GeoDataFrame, n: int | None = 10, *, kind: str | None = None, by: str | None = None
) -> gpd.GeoDataFrame:
    """The ``n`` riskiest units: highest level first, then the banded measure (or ``by``)."""
    sub = risk if kind is None else risk.loc[risk["kind"] == kind]
    key = by or ("risk_measure" if "risk_measure" in sub.columns else "epdo")
    order = sub.sort_values(["level_rank", key, "epdo"], ascending=False, kind="stable")
    return order if n is None else order.head(n)
