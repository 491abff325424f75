"""Hazard-governance KPIs: per zone of a jurisdiction tree (:func:`zone_kpis`, rolling up, with
targets and a health index; docs/kpis.md) and the older flat table per polygon or road chief
(:func:`hazard_kpis`).

The flat table's definitions:

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
from ._kpitree import (
    COUNTS,
    DEFAULT_TARGETS,
    DEFAULT_WEIGHTS,
    DEFINITIONS,
    RATES,
    KpiSettings,
    hazard_flags,
    health_index,
    load_targets,
    zone_kpis,
    zone_levels,
)

__all__ = [
    "COUNTS",
    "DEFAULT_TARGETS",
    "DEFAULT_WEIGHTS",
    "DEFINITIONS",
    "KPI_COLUMNS",
    "RATES",
    "KpiSettings",
    "hazard_kpis",
    "health_index",
    "load_targets",
    "zone_kpis",
    "zone_levels",
]

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


def _zone_names(zones: gpd.GeoDataFrame | None, zone_field: str | None) -> pd.Series:
    """The name of each zone (``zone_field``, else a name-like or text column, else the index)."""
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
    return (zones[field] if field else zones.index.to_series()).astype(str)


def _chief_of_unit(units: gpd.GeoDataFrame | None) -> pd.Series | None:
    """The road chief of each unit id, when the units name them."""
    if units is None or "road_chief" not in units.columns:
        return None
    uid = units["unit_id"] if "unit_id" in units.columns else units.index.to_series()
    return pd.Series(units["road_chief"].astype("string").to_numpy(), index=uid.astype(str))


def _hazard_chief(h: gpd.GeoDataFrame, unit_chief: pd.Series | None) -> pd.Series:
    """A hazard's chief: named at assignment, else its first unit's, else ``(none)``."""
    chief = (
        h["road_chief"].astype("string")
        if "road_chief" in h
        else pd.Series(pd.NA, index=h.index, dtype="string")
    )
    if unit_chief is not None:
        first_unit = h["unit_id"].astype("string").str.split(";").str[0]
        chief = chief.fillna(first_unit.map(unit_chief).astype("string"))
    return chief.fillna(_NONE)


def _hazard_counts(h: gpd.GeoDataFrame, group: pd.Series, t: pd.Timestamp) -> pd.DataFrame:
    """Hazard counts and the median days to close per group."""
    flags = hazard_flags(h, t)
    frame = flags[[*_HAZARD_COUNTS, "days"]].assign(g=group.to_numpy()).dropna(subset=["g"])
    grouped = frame.groupby("g")
    out = grouped[list(_HAZARD_COUNTS)].sum()
    out["median_days_to_close"] = grouped["days"].median()
    return out


def _km_by(
    units: gpd.GeoDataFrame | None,
    group_of: Any,
    by: str,
    outside: dict[str, int],
) -> pd.Series:
    """Km of segment units per group."""
    if units is None or "length_m" not in units.columns:
        return pd.Series(dtype=float)
    seg = units[units["kind"] == "segment"] if "kind" in units.columns else units
    if by == "jurisdiction":
        ug = group_of(seg.geometry)
        outside["units"] = int(ug.isna().sum())
    else:
        ug = (
            seg["road_chief"].astype("string")
            if "road_chief" in seg.columns
            else pd.Series(pd.NA, index=seg.index, dtype="string")
        )
    return pd.to_numeric(seg["length_m"], errors="coerce").groupby(ug.to_numpy()).sum() / 1000.0


def _accidents_by(
    accidents: pd.DataFrame | None,
    group_of: Any,
    by: str,
    unit_chief: pd.Series | None,
    outside: dict[str, int],
) -> tuple[pd.Series, pd.Series]:
    """Accidents and those matched to a unit, per group."""
    if accidents is None or not len(accidents):
        return pd.Series(dtype=float), pd.Series(dtype=float)
    linked = (
        accidents["unit_id"].notna()
        if "unit_id" in accidents.columns
        else pd.Series(False, index=accidents.index)
    )
    if by == "jurisdiction":
        if not isinstance(accidents, gpd.GeoDataFrame):
            raise ValidationError("accidents must be a GeoDataFrame to count them by zone")
        ag = group_of(accidents.geometry)
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
    return acc.groupby("g")["n"].sum(), acc.groupby("g")["linked"].sum()


def _kpi_table(
    out: pd.DataFrame,
    index: list[Any],
    km: pd.Series,
    acc_n: pd.Series,
    acc_linked: pd.Series,
    by: str,
) -> pd.DataFrame:
    """The flat KPI table: counts, km and rates per group, in :data:`KPI_COLUMNS` order."""
    out = out.reindex(index)
    counts = list(_HAZARD_COUNTS)
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
    return out


_HAZARD_COUNTS = ("hazards", "due", "rectified", "on_time", "with_deadline", "overdue", "listed")


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
    unit_chief = _chief_of_unit(units)
    outside: dict[str, int] = {}
    group_names: list[str] = []
    group_of: Any = None
    if by == "jurisdiction":
        names = _zone_names(zones, zone_field)
        assert zones is not None
        group_names = list(dict.fromkeys(names))

        def group_of(geoms: gpd.GeoSeries) -> pd.Series:
            assert zones is not None
            return _zone_of(geoms, zones, names)

        h_group = group_of(h.geometry)
        outside["hazards"] = int(h_group.isna().sum())
    else:
        h_group = _hazard_chief(h, unit_chief)
    out = _hazard_counts(h, h_group, t)
    km = _km_by(units, group_of, by, outside)
    acc_n, acc_linked = _accidents_by(accidents, group_of, by, unit_chief, outside)
    index = list(dict.fromkeys([*group_names, *out.index, *km.index, *acc_n.index]))
    out = _kpi_table(out, index, km, acc_n, acc_linked, by)
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
