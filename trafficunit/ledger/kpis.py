"""Hazard-governance KPIs per jurisdiction (districts, grids: a polygon file) or road chief.

Definitions (docs/domain.md "Hazard lifecycle", KPIs), per group, as of ``now``:

=========================  ==================================================================
``hazards``                hazards reported (in ``period`` when given)
``km``                     length of the group's segment units, km (needs ``units``)
``hazards_per_km``         ``hazards / km`` (discovery rate)
``due``                    hazards whose deadline has passed, plus every rectified one
``rectified``              hazards ``accepted`` or ``closed``
``rectification_rate``     ``rectified / due``
``on_time_rate``           rectified hazards accepted by their deadline / rectified with one
``overdue``                hazards past their deadline and not yet accepted
``listed``                 hazards under listed supervision (挂牌督办)
``median_days_to_close``   median days from first report to closure, closed hazards
``accidents``              accidents in the group (needs ``accidents``)
``accidents_linked_share`` share of them matched to a unit (jurisdictions only: by road chief
                           every counted accident is on a unit by construction)
=========================  ==================================================================

A hazard, unit or accident belongs to the zone holding its representative point (the first
zone when zones overlap); those in no zone are counted in ``.attrs["outside"]``. By road chief,
a hazard belongs to the chief named at assignment, else to the chief of its first unit (the
units' ``road_chief`` column), else to ``"(none)"``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .._errors import ValidationError, clip

__all__ = ["KPI_COLUMNS", "hazard_kpis"]

KPI_COLUMNS = (
    "hazards",
    "km",
    "hazards_per_km",
    "due",
    "rectified",
    "rectification_rate",
    "on_time",
    "on_time_rate",
    "overdue",
    "listed",
    "median_days_to_close",
    "accidents",
    "accidents_linked",
    "accidents_linked_share",
)
_NONE = "(none)"


def _zone_of(geoms: gpd.GeoSeries, zones: gpd.GeoDataFrame, names: pd.Series) -> pd.Series:
    """Zone name per geometry (its representative point), <NA> outside every zone."""
    out = pd.Series(pd.NA, index=geoms.index, dtype="string")
    if not len(geoms) or not len(zones):
        return out
    g = np.asarray(geoms.to_crs(zones.crs).array, dtype=object)
    ok = ~(shapely.is_missing(g) | shapely.is_empty(g))
    pts = np.empty(len(g), dtype=object)
    pts[ok] = shapely.point_on_surface(g[ok])
    tree = shapely.STRtree(np.asarray(zones.geometry.array, dtype=object))
    q_idx, z_idx = tree.query(pts[ok], predicate="within")
    first = pd.Series(z_idx).groupby(q_idx).min()
    pos = np.flatnonzero(ok)[first.index.to_numpy()]
    out.iloc[pos] = names.to_numpy()[first.to_numpy()]
    return out


def hazard_kpis(
    hazards: gpd.GeoDataFrame,
    *,
    by: str = "jurisdiction",
    zones: gpd.GeoDataFrame | None = None,
    zone_field: str | None = None,
    units: gpd.GeoDataFrame | None = None,
    accidents: pd.DataFrame | None = None,
    period: tuple[Any, Any] | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """KPIs of the hazard closed loop per jurisdiction or per road chief.

    Parameters
    ----------
    hazards
        :meth:`trafficunit.ledger.Ledger.frame` (or the same columns: ``state``,
        ``deadline``, ``reported_at``, ``accepted_at``, ``closed_at``, ``supervision``,
        ``unit_id``, ``road_chief``, geometry).
    by
        ``"jurisdiction"`` (needs ``zones``) or ``"road_chief"``.
    zones
        Jurisdiction or grid polygons, any CRS.
    zone_field
        Column of ``zones`` naming each zone (default: ``name``, ``code``, ``id`` or the first
        text column, else the index).
    units
        Traffic units (``length_m``, ``kind``; ``road_chief`` for ``by="road_chief"``).
    accidents
        Joined accidents (``tu.assign``: ``unit_id``, geometry) for the linked share.
    period
        ``(start, end)``: count only hazards first reported in ``[start, end)``.
    now
        The time overdue and due are judged at (default: now).

    Returns
    -------
    pandas.DataFrame
        Indexed by zone or chief (``jurisdiction`` / ``road_chief``), columns
        :data:`KPI_COLUMNS`; ``.attrs["definitions"]`` and ``.attrs["outside"]``.
    """
    if by not in ("jurisdiction", "road_chief"):
        raise ValidationError(f"by must be 'jurisdiction' or 'road_chief', got {clip(by)}")
    t = pd.Timestamp(now if now is not None else datetime.now(UTC))
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    h = hazards
    if period is not None:
        start, end = (pd.Timestamp(p) for p in period)
        start = start.tz_localize("UTC") if start.tzinfo is None else start
        end = end.tz_localize("UTC") if end.tzinfo is None else end
        h = h[(h["reported_at"] >= start) & (h["reported_at"] < end)]
    unit_chief: pd.Series | None = None
    if units is not None and "road_chief" in units.columns:
        uid = units["unit_id"] if "unit_id" in units.columns else units.index.to_series()
        unit_chief = pd.Series(
            units["road_chief"].astype("string").to_numpy(), index=uid.astype(str)
        )
    outside: dict[str, int] = {}

    if by == "jurisdiction":
        if zones is None:
            raise ValidationError(
                "KPIs by jurisdiction need the zones (a polygon file of districts or grids)"
            )
        if zones.crs is None:
            raise ValidationError("the zones have no CRS; set it (e.g. EPSG:4326)")
        field = zone_field
        if field is None:
            text_cols = [
                c
                for c in zones.columns
                if c != zones.geometry.name and not pd.api.types.is_numeric_dtype(zones[c])
            ]
            field = next((c for c in ("name", "code", "id") if c in zones.columns), None) or (
                text_cols[0] if text_cols else None
            )
        if field is not None and field not in zones.columns:
            raise ValidationError(f"zones have no column {field!r}; columns: {list(zones.columns)}")
        names = (zones[field] if field else zones.index.to_series()).astype(str)
        group_names = list(dict.fromkeys(names))
        h_group = _zone_of(h.geometry, zones, names)
        outside["hazards"] = int(h_group.isna().sum())
    else:
        group_names = []
        chief = (
            h["road_chief"].astype("string")
            if "road_chief" in h
            else pd.Series(pd.NA, index=h.index, dtype="string")
        )
        if unit_chief is not None:
            first_unit = h["unit_id"].astype("string").str.split(";").str[0]
            chief = chief.fillna(first_unit.map(unit_chief).astype("string"))
        h_group = chief.fillna(_NONE)

    state = h["state"].astype(str)
    rectified = state.isin(["accepted", "closed"])
    deadline = h["deadline"]
    due = rectified | (deadline.notna() & (deadline <= t))
    done_at = h["accepted_at"].fillna(h["closed_at"])
    on_time = rectified & deadline.notna() & (done_at <= deadline)
    with_deadline = rectified & deadline.notna()
    overdue = state.isin(["assigned", "rectifying"]) & deadline.notna() & (deadline < t)
    closed_days = (h["closed_at"] - h["reported_at"]).dt.total_seconds() / 86400.0
    frame = pd.DataFrame(
        {
            "g": h_group.to_numpy(),
            "hazards": 1,
            "due": due.to_numpy(),
            "rectified": rectified.to_numpy(),
            "on_time": on_time.to_numpy(),
            "with_deadline": with_deadline.to_numpy(),
            "overdue": overdue.to_numpy(),
            "listed": (h["supervision"] == "listed").to_numpy(),
            "days": closed_days.where(state == "closed").to_numpy(),
        }
    ).dropna(subset=["g"])
    grouped = frame.groupby("g")
    out = grouped[
        ["hazards", "due", "rectified", "on_time", "with_deadline", "overdue", "listed"]
    ].sum()
    out["median_days_to_close"] = grouped["days"].median()

    km = pd.Series(dtype=float)
    if units is not None and "length_m" in units.columns:
        seg = units[units["kind"] == "segment"] if "kind" in units.columns else units
        if by == "jurisdiction":
            assert zones is not None
            ug = _zone_of(seg.geometry, zones, names)
            outside["units"] = int(ug.isna().sum())
        else:
            ug = (
                seg["road_chief"].astype("string")
                if "road_chief" in seg.columns
                else pd.Series(pd.NA, index=seg.index, dtype="string")
            )
        km = pd.to_numeric(seg["length_m"], errors="coerce").groupby(ug.to_numpy()).sum() / 1000.0

    acc_n = pd.Series(dtype=float)
    acc_linked = pd.Series(dtype=float)
    if accidents is not None and len(accidents):
        linked = (
            accidents["unit_id"].notna()
            if "unit_id" in accidents.columns
            else pd.Series(False, index=accidents.index)
        )
        if by == "jurisdiction":
            assert zones is not None
            if not isinstance(accidents, gpd.GeoDataFrame):
                raise ValidationError("accidents must be a GeoDataFrame to count them by zone")
            ag = _zone_of(accidents.geometry, zones, names)
            outside["accidents"] = int(ag.isna().sum())
        else:
            ag = (
                accidents["unit_id"].astype("string").map(unit_chief).astype("string")
                if unit_chief is not None
                else pd.Series(pd.NA, index=accidents.index, dtype="string")
            )
        acc = pd.DataFrame({"g": ag.to_numpy(), "n": 1, "linked": linked.to_numpy()}).dropna(
            subset=["g"]
        )
        acc_n = acc.groupby("g")["n"].sum()
        acc_linked = acc.groupby("g")["linked"].sum()

    index = list(dict.fromkeys([*group_names, *out.index, *km.index, *acc_n.index]))
    out = out.reindex(index)
    counts = ["hazards", "due", "rectified", "on_time", "with_deadline", "overdue", "listed"]
    out[counts] = out[counts].fillna(0).astype("int64")
    out["km"] = km.reindex(index).astype(float) if len(km) else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        out["hazards_per_km"] = np.where(out["km"] > 0, out["hazards"] / out["km"], np.nan)
        out["rectification_rate"] = np.where(out["due"] > 0, out["rectified"] / out["due"], np.nan)
        out["on_time_rate"] = np.where(
            out["with_deadline"] > 0, out["on_time"] / out["with_deadline"], np.nan
        )
    out["accidents"] = acc_n.reindex(index).fillna(0).astype("int64") if len(acc_n) else 0
    out["accidents_linked"] = (
        acc_linked.reindex(index).fillna(0).astype("int64") if len(acc_linked) else 0
    )
    if by == "jurisdiction":
        out["accidents_linked_share"] = np.where(
            out["accidents"] > 0, out["accidents_linked"] / out["accidents"].clip(lower=1), np.nan
        )
    else:
        out["accidents_linked_share"] = np.nan
    out = out[list(KPI_COLUMNS)]
    out.index.name = by
    out.attrs["definitions"] = {
        "rectification_rate": (
            "rectified (accepted or closed) / due (deadline passed, or rectified)"
        ),
        "on_time_rate": "rectified by the deadline / rectified with a deadline",
        "hazards_per_km": "hazards reported / km of segment units",
        "median_days_to_close": "median days from first report to closure (closed hazards)",
        "accidents_linked_share": "accidents matched to a unit / accidents",
        "as_of": t.isoformat(),
    }
    out.attrs["outside"] = outside
    return out
