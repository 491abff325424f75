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

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .._errors import InputFileError, ValidationError, clip
from ..zones import Zones, assign_events, assign_units, zone_column

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


# ============================================================================================
# KPIs per zone of a jurisdiction tree, rolling up (docs/kpis.md)

#: Rates computed per zone; each is ``numerator / denominator`` of counts that sum up the tree.
RATES: dict[str, tuple[str, str]] = {
    "investigation_rate": ("investigated", "injury_accidents"),
    "discovery_rate": ("investigations_found", "investigated"),
    "rectification_rate": ("rectified", "due"),
    "fixed_at_once_rate": ("fixed_at_once", "general_eligible"),
    "listed_rectified_share": ("listed_rectified", "listed"),
    "on_time_rate": ("on_time", "with_deadline"),
    "on_time_rate_general": ("on_time_general", "with_deadline_general"),
    "on_time_rate_major": ("on_time_major", "with_deadline_major"),
    "accident_linkage_rate": ("accidents_linked", "injury_accidents"),
}
#: Counts per zone (each zone's count is the sum of its children's when they cover it).
COUNTS = (
    "accidents",
    "injury_accidents",
    "investigations_open",
    "investigated",
    "investigations_found",
    "accidents_linked",
    "hazards",
    "due",
    "rectified",
    "overdue",
    "general_eligible",
    "fixed_at_once",
    "listed",
    "listed_rectified",
    "with_deadline",
    "on_time",
    "with_deadline_general",
    "on_time_general",
    "with_deadline_major",
    "on_time_major",
)
#: The exact definition of every figure, returned with the table.
DEFINITIONS: dict[str, str] = {
    "accidents": "accidents in the period",
    "injury_accidents": (
        "accidents in the period whose severity opens an investigation (default K, A, B)"
    ),
    "investigations_open": "injury accidents whose investigation is still open",
    "investigated": "injury accidents whose investigation is investigated or closed",
    "investigations_found": "investigated injury accidents whose investigation found a hazard",
    "accidents_linked": "injury accidents linked to at least one hazard",
    "hazards": "hazards first reported in the period",
    "due": "hazards whose deadline has passed, plus every rectified one",
    "rectified": "hazards accepted or closed",
    "overdue": "hazards assigned or rectifying past their deadline",
    "general_eligible": (
        "general hazards reported at least fixed_at_once_days ago, or already rectified"
    ),
    "fixed_at_once": "general hazards accepted within fixed_at_once_days of the first report",
    "listed": "hazards under listed supervision (挂牌督办)",
    "listed_rectified": "listed hazards accepted or closed",
    "with_deadline": "rectified hazards that had a deadline",
    "on_time": "rectified hazards accepted by their deadline",
    "investigation_rate": "investigated / injury_accidents (排查率)",
    "discovery_rate": "investigations_found / investigated (发现率)",
    "rectification_rate": "rectified / due (整改率)",
    "fixed_at_once_rate": "fixed_at_once / general_eligible (立行立改率)",
    "listed_rectified_share": "listed_rectified / listed (挂牌隐患整改率)",
    "on_time_rate": "on_time / with_deadline; _general and _major: the same per grade",
    "accident_linkage_rate": "accidents_linked / injury_accidents (事故关联率)",
    "median_days_to_close": "median days from first report to closure, hazards closed",
    "km": "length of the zone's segment units, km",
    "hazards_per_km": "hazards / km",
    "health_index": (
        "100 * sum(w_k * rate_k) / sum(w_k) over the weighted rates the zone has (a rate "
        "without a denominator is left out, its weight too); none: no value (业务健康指数)"
    ),
    "health_rank": "rank of health_index among the zones of the same level, 1 = best (ties "
    "share the best rank)",
    "<kpi>_target": "the target of the most specific rule: zone, then level, then tree, then all",
    "<kpi>_met": "rate >= target (no value when either is missing)",
    "<kpi>_prev": "the same figure over the previous period of equal length",
    "<kpi>_change": "figure minus its _prev",
}

#: Health-index weights (ours; the sources name the index, not its weights).
DEFAULT_WEIGHTS: dict[str, float] = {
    "investigation_rate": 0.25,
    "discovery_rate": 0.15,
    "rectification_rate": 0.25,
    "on_time_rate": 0.15,
    "accident_linkage_rate": 0.20,
}
#: Targets from the sources (docs/domain.md, "The hazard loop"): Shenzhen's investigation
#: rate 50 % outside the old special zone (90 % inside: give it per zone), discovery and
#: rectification 80 %; Yanping's general hazards fixed at once 95 %, listed ones 100 %.
DEFAULT_TARGETS: tuple[dict[str, Any], ...] = (
    {"kpi": "investigation_rate", "value": 0.5},
    {"kpi": "discovery_rate", "value": 0.8},
    {"kpi": "rectification_rate", "value": 0.8},
    {"kpi": "fixed_at_once_rate", "value": 0.95},
    {"kpi": "listed_rectified_share", "value": 1.0},
)


@dataclass(frozen=True)
class KpiSettings:
    """What the zone KPIs count and score.

    Parameters
    ----------
    investigation_severities
        Severities of the accidents that must be investigated (injury accidents: K, A, B).
    fixed_at_once_days
        A general hazard accepted within this many days of its report was fixed at once
        (立行立改; **ours**: 1 day).
    weights
        Health-index weights per rate (:data:`DEFAULT_WEIGHTS`).
    targets
        Target rules: dicts with ``kpi``, ``value`` and optionally ``tree``, ``level``,
        ``zone`` (:data:`DEFAULT_TARGETS`).
    """

    investigation_severities: frozenset[str] = frozenset({"K", "A", "B"})
    fixed_at_once_days: float = 1.0
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    targets: tuple[dict[str, Any], ...] = DEFAULT_TARGETS

    def __post_init__(self) -> None:
        bad = [k for k in self.weights if k not in RATES]
        if bad:
            raise ValidationError(f"unknown health-index rate {bad[0]!r}; rates: {list(RATES)}")
        if any((not np.isfinite(w)) or w < 0 for w in self.weights.values()):
            raise ValidationError("health-index weights must be finite and not negative")
        for t in self.targets:
            if t.get("kpi") not in RATES and t.get("kpi") != "health_index":
                raise ValidationError(f"target for unknown KPI {t.get('kpi')!r}")
            try:
                float(t["value"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValidationError(f"target {t} needs a numeric 'value'") from exc


def load_targets(path: str | Path) -> tuple[dict[str, Any], ...]:
    """Target rules from a JSON file (a list, or ``{"targets": [...]}``) or CSV (columns
    ``kpi,value[,tree,level,zone]``)."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: no such targets file")
    try:
        if p.suffix.lower() == ".csv":
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
            rows = [{k: v for k, v in r.items() if v != ""} for r in df.to_dict("records")]
        else:
            doc = json.loads(p.read_text(encoding="utf-8"))
            rows = doc["targets"] if isinstance(doc, dict) else doc
    except (ValueError, KeyError, TypeError) as exc:
        raise InputFileError(f"{p}: not a targets file ({exc})") from exc
    if not isinstance(rows, list):
        raise InputFileError(f"{p}: targets must be a list")
    out = tuple({str(k): v for k, v in r.items()} | {"value": float(r["value"])} for r in rows)
    KpiSettings(targets=out)  # validate
    return out


def _utc(t: Any) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _zone_cols(zones: Zones, tree: str) -> list[str]:
    return [zone_column(tree, lv) for lv in zones.trees[tree]]


def _counts(
    zones: Zones,
    tree: str,
    *,
    unit_zones: pd.DataFrame,
    accidents: gpd.GeoDataFrame | None,
    hazards: gpd.GeoDataFrame | None,
    investigations: pd.DataFrame | None,
    links: pd.DataFrame | None,
    period: tuple[pd.Timestamp, pd.Timestamp] | None,
    t: pd.Timestamp,
    cfg: KpiSettings,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Counts and medians per zone code (every level), and what fell outside every zone."""
    cols = _zone_cols(zones, tree)
    parts: list[pd.DataFrame] = []
    outside: dict[str, int] = {}
    if accidents is not None and len(accidents):
        a = accidents
        at = pd.to_datetime(a["time"], utc=True, errors="coerce") if "time" in a else None
        if period is not None and at is not None:
            keep = ((at >= period[0]) & (at < period[1])).fillna(False).to_numpy()
            a, at = a[keep], at[keep]
        az = assign_events(a, zones, unit_zones=unit_zones, trees=[tree])
        outside["accidents"] = int(az[cols[0]].isna().sum())
        sev = a["severity"].astype("string").str.upper() if "severity" in a else None
        injury = (
            sev.isin(sorted(cfg.investigation_severities)).fillna(False).to_numpy()
            if sev is not None
            else np.zeros(len(a), dtype=bool)
        )
        ids = a["event_id"].astype(str).to_numpy() if "event_id" in a else np.array([], str)
        state = pd.Series(pd.NA, index=range(len(a)), dtype="string")
        outcome = state.copy()
        if investigations is not None and len(investigations) and len(ids):
            inv = investigations.drop_duplicates("accident_id").set_index("accident_id")
            state = pd.Series(ids).map(inv["state"]).astype("string")
            outcome = pd.Series(ids).map(inv["outcome"]).astype("string")
        linked = (
            pd.Series(ids).isin(set(links["accident_id"].astype(str))).to_numpy()
            if links is not None and len(links)
            else np.zeros(len(a), dtype=bool)
        )
        done = state.isin(["investigated", "closed"]).fillna(False).to_numpy()
        frame = pd.DataFrame(
            {
                "accidents": 1,
                "injury_accidents": injury,
                "investigations_open": injury & (state == "open").fillna(False).to_numpy(),
                "investigated": injury & done,
                "investigations_found": injury
                & done
                & (outcome == "found").fillna(False).to_numpy(),
                "accidents_linked": injury & linked,
            }
        )
        parts.append(pd.concat([az.reset_index(drop=True), frame], axis=1))
    days_parts = []
    if hazards is not None and len(hazards):
        h = hazards
        if period is not None:
            keep = ((h["reported_at"] >= period[0]) & (h["reported_at"] < period[1])).to_numpy()
            h = h[keep]
        hz = assign_events(h, zones, unit_zones=unit_zones, trees=[tree])
        outside["hazards"] = int(hz[cols[0]].isna().sum())
        state = h["state"].astype(str)
        grade = h["grade"].astype("string")
        rectified = state.isin(["accepted", "closed"])
        deadline = h["deadline"]
        due = rectified | (deadline.notna() & (deadline <= t))
        done_at = h["accepted_at"].fillna(h["closed_at"])
        with_dl = rectified & deadline.notna()
        on_time = with_dl & (done_at <= deadline)
        general = (grade == "general").fillna(False)
        major = (grade == "major").fillna(False)
        fast = pd.Timedelta(days=cfg.fixed_at_once_days)
        fixed = general & rectified & ((done_at - h["reported_at"]) <= fast).fillna(False)
        eligible = general & (rectified | (h["reported_at"] <= t - fast))
        listed = (h["supervision"] == "listed").fillna(False)
        frame = pd.DataFrame(
            {
                "hazards": 1,
                "due": due.to_numpy(),
                "rectified": rectified.to_numpy(),
                "overdue": (
                    state.isin(["assigned", "rectifying"]) & deadline.notna() & (deadline < t)
                ).to_numpy(),
                "general_eligible": eligible.to_numpy(),
                "fixed_at_once": fixed.to_numpy(),
                "listed": listed.to_numpy(),
                "listed_rectified": (listed & rectified).to_numpy(),
                "with_deadline": with_dl.to_numpy(),
                "on_time": on_time.to_numpy(),
                "with_deadline_general": (with_dl & general).to_numpy(),
                "on_time_general": (on_time & general).to_numpy(),
                "with_deadline_major": (with_dl & major).to_numpy(),
                "on_time_major": (on_time & major).to_numpy(),
            }
        )
        parts.append(pd.concat([hz.reset_index(drop=True), frame], axis=1))
        days = (h["closed_at"] - h["reported_at"]).dt.total_seconds() / 86400.0
        days_parts.append(
            pd.concat(
                [
                    hz.reset_index(drop=True),
                    pd.DataFrame({"days": days.where(state == "closed").to_numpy()}),
                ],
                axis=1,
            )
        )
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    for c in COUNTS:
        rows[c] = rows[c].astype("float64").fillna(0.0).astype("int64") if c in rows else 0
    per_level = []
    for c in cols:
        g = rows.dropna(subset=[c]).groupby(c)[list(COUNTS)].sum()
        if days_parts:
            d = pd.concat(days_parts, ignore_index=True).dropna(subset=[c])
            g["median_days_to_close"] = d.groupby(c)["days"].median()
        per_level.append(g)
    out = pd.concat(per_level) if per_level else pd.DataFrame(columns=list(COUNTS))
    if "median_days_to_close" not in out:
        out["median_days_to_close"] = np.nan
    return out, outside


def _rates(table: pd.DataFrame) -> pd.DataFrame:
    with np.errstate(divide="ignore", invalid="ignore"):
        for rate, (num, den) in RATES.items():
            n, d = table[num].to_numpy(float), table[den].to_numpy(float)
            table[rate] = np.where(d > 0, n / np.where(d > 0, d, 1.0), np.nan)
    return table


def health_index(table: pd.DataFrame, weights: dict[str, float]) -> pd.Series:
    """The documented weighted sum (see :data:`DEFINITIONS`): ``100 · Σ w·r / Σ w`` over the
    rates a zone has."""
    num = np.zeros(len(table))
    den = np.zeros(len(table))
    for rate, w in weights.items():
        r = table[rate].to_numpy(float)
        ok = np.isfinite(r)
        num += np.where(ok, w * np.nan_to_num(r), 0.0)
        den += np.where(ok, w, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return pd.Series(np.where(den > 0, 100.0 * num / den, np.nan), index=table.index)


def _targets(table: pd.DataFrame, tree: str, rules: Sequence[dict[str, Any]]) -> pd.DataFrame:
    kpis = list(dict.fromkeys(r["kpi"] for r in rules))
    for kpi in kpis:
        target = np.full(len(table), np.nan)
        best = np.full(len(table), -1)
        for r in rules:
            if r["kpi"] != kpi or r.get("tree") not in (None, tree):
                continue
            m = np.ones(len(table), dtype=bool)
            spec = 0
            if r.get("tree") is not None:
                spec = 1
            if r.get("level") is not None:
                m &= (table["level"] == r["level"]).to_numpy()
                spec = 2
            if r.get("zone") is not None:
                m &= (table.index == str(r["zone"])).astype(bool)
                spec = 3
            take = m & (spec >= best)
            target[take] = float(r["value"])
            best[take] = spec
        table[f"{kpi}_target"] = target
        v = table[kpi].to_numpy(float)
        ok = np.isfinite(v) & np.isfinite(target)
        table[f"{kpi}_met"] = pd.array(
            [bool(x) if o else None for x, o in zip(v >= target, ok, strict=True)],
            dtype="boolean",
        )
    return table


def zone_kpis(
    zones: Zones,
    tree: str,
    *,
    level: str | None = None,
    parent: str | None = None,
    units: gpd.GeoDataFrame | None = None,
    unit_zones: pd.DataFrame | None = None,
    accidents: gpd.GeoDataFrame | None = None,
    hazards: gpd.GeoDataFrame | None = None,
    investigations: pd.DataFrame | None = None,
    links: pd.DataFrame | None = None,
    period: tuple[Any, Any] | None = None,
    now: datetime | None = None,
    settings: KpiSettings | None = None,
) -> pd.DataFrame:
    """The closed loop's KPIs per zone of a jurisdiction tree, rolling up the tree.

    Every count is a sum over the zone's units' events, so a parent's count is the sum of its
    children's (when the children cover it); rates are recomputed from the summed counts.
    Definitions: :data:`DEFINITIONS` (also in ``.attrs["definitions"]``) and docs/kpis.md.

    Parameters
    ----------
    zones, tree
        The jurisdiction trees and the one to report.
    level, parent
        Only zones of this level / children of this zone (default: every zone).
    units
        Traffic units indexed by ``unit_id`` (``kind``, ``length_m``).
    unit_zones
        :func:`trafficunit.zones.assign_units` of the units (computed when None).
    accidents
        Joined accidents (``event_id``, ``time``, ``severity``, ``unit_id``, geometry).
    hazards
        :meth:`Ledger.frame`.
    investigations, links
        :func:`~trafficunit.ledger.investigations.investigation_frame` and
        :func:`~trafficunit.ledger.investigations.links_frame`.
    period
        ``(start, end)``: accidents and hazards in ``[start, end)``; adds ``<kpi>_prev`` and
        ``<kpi>_change`` against the previous period of the same length.
    now
        When due and overdue are judged (default now).

    Returns
    -------
    pandas.DataFrame
        Indexed by zone ``code``: ``tree``, ``level``, ``name``, ``parent``, the counts
        (:data:`COUNTS`), ``km``, the rates (:data:`RATES`), ``median_days_to_close``,
        ``hazards_per_km``, ``health_index``, ``health_rank``, targets and met flags.
    """
    cfg = settings or KpiSettings()
    zones.check(tree, level)
    t = _utc(now if now is not None else datetime.now(UTC))
    if unit_zones is None:
        if units is None:
            raise ValidationError("zone KPIs need the units or their zone codes")
        unit_zones = assign_units(units, zones, trees=[tree])
    uz = unit_zones.copy()
    uz.index = uz.index.astype(str)
    per = None
    if period is not None:
        per = (_utc(period[0]), _utc(period[1]))
        if per[0] >= per[1]:
            raise ValidationError("the period's start must be before its end")
    z = zones.frame[zones.frame["tree"] == tree].set_index("code")

    def one(p: tuple[pd.Timestamp, pd.Timestamp] | None) -> tuple[pd.DataFrame, dict[str, int]]:
        counts, outside = _counts(
            zones,
            tree,
            unit_zones=uz,
            accidents=accidents,
            hazards=hazards,
            investigations=investigations,
            links=links,
            period=p,
            t=t,
            cfg=cfg,
        )
        table = pd.DataFrame(
            {"tree": tree, "level": z["level"], "name": z["name"], "parent": z["parent"]},
            index=z.index,
        )
        table = table.join(counts)
        table[list(COUNTS)] = table[list(COUNTS)].fillna(0).astype("int64")
        km = pd.Series(0.0, index=table.index)
        if units is not None and "length_m" in units.columns:
            seg = units["kind"] == "segment" if "kind" in units.columns else None
            length = pd.to_numeric(units["length_m"], errors="coerce").fillna(0.0)
            if seg is not None:
                length = length.where(seg, 0.0)
            length.index = length.index.astype(str)
            for c in _zone_cols(zones, tree):
                code = uz[c].reindex(length.index)
                km = km.add(length.groupby(code.to_numpy()).sum() / 1000.0, fill_value=0.0)
        table["km"] = km.reindex(table.index).to_numpy()
        table = _rates(table)
        with np.errstate(divide="ignore", invalid="ignore"):
            table["hazards_per_km"] = np.where(
                table["km"] > 0, table["hazards"] / table["km"].where(table["km"] > 0, 1.0), np.nan
            )
        table["health_index"] = health_index(table, cfg.weights)
        table["health_rank"] = (
            table.groupby("level")["health_index"]
            .rank(ascending=False, method="min")
            .astype("Int64")
        )
        return table, outside

    table, outside = one(per)
    table = _targets(table, tree, cfg.targets)
    if per is not None:
        prev, _ = one((per[0] - (per[1] - per[0]), per[0]))
        for c in [*RATES, "health_index", "median_days_to_close", "hazards", "accidents"]:
            table[f"{c}_prev"] = prev[c].reindex(table.index).to_numpy(float)
            table[f"{c}_change"] = table[c].to_numpy(float) - table[f"{c}_prev"].to_numpy(float)
    if level is not None:
        table = table[table["level"] == level]
    if parent is not None:
        if parent not in z.index:
            raise ValidationError(f"tree {tree!r} has no zone {parent!r}")
        table = table[table["parent"] == parent]
    table.index.name = "code"
    table.attrs["definitions"] = {**DEFINITIONS, "as_of": t.isoformat()}
    table.attrs["weights"] = dict(cfg.weights)
    table.attrs["outside"] = outside
    if per is not None:
        table.attrs["period"] = [per[0].isoformat(), per[1].isoformat()]
        table.attrs["previous_period"] = [
            (per[0] - (per[1] - per[0])).isoformat(),
            per[0].isoformat(),
        ]
    return table


def zone_levels(
    zones: Zones,
    tree: str,
    level: str,
    *,
    units: gpd.GeoDataFrame,
    unit_zones: pd.DataFrame | None = None,
    bands: tuple[float, float, float] = (65.0, 85.0, 95.0),
) -> pd.DataFrame:
    """A four-colour level per zone: the percentile of its EPDO per km among the level's zones.

    ``epdo_per_km`` = the EPDO of every unit in the zone (units' ``epdo``, from ``tu.score``)
    / km of its segment units; ``percentile`` = 100 · (zones of the level with a value ≤ the
    zone's) / (zones of the level with a value); ``level`` is red at ≥ ``bands[2]``, orange at
    ≥ ``bands[1]``, yellow at ≥ ``bands[0]``, else blue (the units' percentile bands); a zone
    without segment length has no level.
    """
    zones.check(tree, level)
    if "epdo" not in units.columns:
        raise ValidationError("zone colours need the units' EPDO (score the units: tu.score)")
    uz = unit_zones if unit_zones is not None else assign_units(units, zones, trees=[tree])
    col = zone_column(tree, level)
    code = uz[col].reindex(units.index)
    epdo = pd.to_numeric(units["epdo"], errors="coerce").fillna(0.0)
    length = pd.to_numeric(units.get("length_m", 0.0), errors="coerce").fillna(0.0)
    if "kind" in units.columns:
        length = length.where(units["kind"] == "segment", 0.0)
    lv = zones.level(tree, level)
    out = pd.DataFrame(index=pd.Index(lv["code"].astype(str), name="code"))
    out["epdo"] = epdo.groupby(code.to_numpy()).sum().reindex(out.index).fillna(0.0)
    out["km"] = (length.groupby(code.to_numpy()).sum() / 1000.0).reindex(out.index).fillna(0.0)
    v = np.where(out["km"] > 0, out["epdo"] / out["km"].where(out["km"] > 0, 1.0), np.nan)
    out["epdo_per_km"] = v
    ok = np.isfinite(v)
    vals = np.sort(v[ok])
    pct = np.full(len(v), np.nan)
    if ok.any():
        pct[ok] = 100.0 * np.searchsorted(vals, v[ok], side="right") / len(vals)
    out["percentile"] = pct
    out["risk_level"] = pd.array(
        [
            None
            if not np.isfinite(p)
            else "red"
            if p >= bands[2]
            else "orange"
            if p >= bands[1]
            else "yellow"
            if p >= bands[0]
            else "blue"
            for p in pct
        ],
        dtype="string",
    )
    return out
