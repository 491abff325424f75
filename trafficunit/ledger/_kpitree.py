"""The closed loop's KPIs per zone of a jurisdiction tree, rolling up (docs/kpis.md).

Every count is a sum over the zone's units' events, so a parent's count is the sum of its
children's; rates are recomputed from the summed counts, scored into a health index and
compared with targets. The stages: what each accident and hazard counts for
(:func:`accident_flags`, :func:`hazard_flags`), counts per zone code (:func:`_counts`), the
zone table with km, rates and the health index (:func:`_zone_table`), targets, and the
previous period.
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

from .._errors import InputFileError, ValidationError
from ..zones import Zones, assign_events, assign_units, zone_column
from . import lifecycle as lc

# Public through :mod:`trafficunit.ledger.kpis`, which lists the names.


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


def hazard_flags(h: pd.DataFrame, t: pd.Timestamp, fixed_at_once_days: float = 1.0) -> pd.DataFrame:
    """What each hazard of :meth:`Ledger.frame` counts for as of ``t`` (:data:`DEFINITIONS`).

    Boolean columns ``due``, ``rectified``, ``overdue``, ``general_eligible``,
    ``fixed_at_once``, ``listed``, ``listed_rectified``, ``with_deadline``, ``on_time`` and
    their ``_general`` / ``_major`` forms, and ``days`` (first report to closure, closed
    hazards), on ``h``'s index.
    """
    state = h["state"].astype(str)
    grade = (
        h["grade"].astype("string")
        if "grade" in h
        else pd.Series(pd.NA, index=h.index, dtype="string")
    )
    rectified = state.isin(lc.DONE_STATES)
    deadline = h["deadline"]
    done_at = h["accepted_at"].fillna(h["closed_at"])
    with_dl = rectified & deadline.notna()
    on_time = with_dl & (done_at <= deadline)
    general = (grade == "general").fillna(False)
    major = (grade == "major").fillna(False)
    fast = pd.Timedelta(days=fixed_at_once_days)
    listed = (h["supervision"] == "listed").fillna(False)
    days = (h["closed_at"] - h["reported_at"]).dt.total_seconds() / 86400.0
    return pd.DataFrame(
        {
            "hazards": 1,
            "due": rectified | (deadline.notna() & (deadline <= t)),
            "rectified": rectified,
            "overdue": state.isin(lc.OVERDUE_STATES) & deadline.notna() & (deadline < t),
            "general_eligible": general & (rectified | (h["reported_at"] <= t - fast)),
            "fixed_at_once": general
            & rectified
            & ((done_at - h["reported_at"]) <= fast).fillna(False),
            "listed": listed,
            "listed_rectified": listed & rectified,
            "with_deadline": with_dl,
            "on_time": on_time,
            "with_deadline_general": with_dl & general,
            "on_time_general": on_time & general,
            "with_deadline_major": with_dl & major,
            "on_time_major": on_time & major,
            "days": days.where(state == lc.CLOSED),
        },
        index=h.index,
    )


def accident_flags(
    a: pd.DataFrame,
    investigations: pd.DataFrame | None,
    links: pd.DataFrame | None,
    severities: frozenset[str],
) -> pd.DataFrame:
    """What each accident counts for: injury, investigation state and outcome, linked hazard."""
    sev = a["severity"].astype("string").str.upper() if "severity" in a else None
    injury = (
        sev.isin(sorted(severities)).fillna(False).to_numpy()
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
    found = (outcome == "found").fillna(False).to_numpy()
    return pd.DataFrame(
        {
            "accidents": 1,
            "injury_accidents": injury,
            "investigations_open": injury & (state == "open").fillna(False).to_numpy(),
            "investigated": injury & done,
            "investigations_found": injury & done & found,
            "accidents_linked": injury & linked,
        }
    )


def _in_period(
    frame: pd.DataFrame, times: pd.Series | None, period: tuple[pd.Timestamp, pd.Timestamp] | None
) -> tuple[pd.DataFrame, pd.Series | None]:
    if period is None or times is None:
        return frame, times
    keep = ((times >= period[0]) & (times < period[1])).fillna(False).to_numpy()
    return frame[keep], times[keep]


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
    days_parts = []
    if accidents is not None and len(accidents):
        at = (
            pd.to_datetime(accidents["time"], utc=True, errors="coerce")
            if "time" in accidents
            else None
        )
        a, _ = _in_period(accidents, at, period)
        az = assign_events(a, zones, unit_zones=unit_zones, trees=[tree])
        outside["accidents"] = int(az[cols[0]].isna().sum())
        frame = accident_flags(a, investigations, links, cfg.investigation_severities)
        parts.append(pd.concat([az.reset_index(drop=True), frame], axis=1))
    if hazards is not None and len(hazards):
        h, _ = _in_period(hazards, hazards["reported_at"], period)
        hz = assign_events(h, zones, unit_zones=unit_zones, trees=[tree])
        outside["hazards"] = int(hz[cols[0]].isna().sum())
        flags = hazard_flags(h, t, cfg.fixed_at_once_days).reset_index(drop=True)
        hz = hz.reset_index(drop=True)
        parts.append(pd.concat([hz, flags.drop(columns=["days"])], axis=1))
        days_parts.append(pd.concat([hz, flags[["days"]]], axis=1))
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


def _zone_km(
    zones: Zones, tree: str, units: gpd.GeoDataFrame | None, uz: pd.DataFrame
) -> pd.Series:
    """Km of segment units per zone code (every level of ``tree``)."""
    km = pd.Series(dtype=float)
    if units is None or "length_m" not in units.columns:
        return km
    seg = units["kind"] == "segment" if "kind" in units.columns else None
    length = pd.to_numeric(units["length_m"], errors="coerce").fillna(0.0)
    if seg is not None:
        length = length.where(seg, 0.0)
    length.index = length.index.astype(str)
    for c in _zone_cols(zones, tree):
        code = uz[c].reindex(length.index)
        km = km.add(length.groupby(code.to_numpy()).sum() / 1000.0, fill_value=0.0)
    return km


def _zone_table(
    z: pd.DataFrame, tree: str, counts: pd.DataFrame, km: pd.Series, cfg: KpiSettings
) -> pd.DataFrame:
    """The zones of ``tree`` with their counts, km, rates, health index and rank."""
    table = pd.DataFrame(
        {"tree": tree, "level": z["level"], "name": z["name"], "parent": z["parent"]},
        index=z.index,
    )
    table = table.join(counts)
    table[list(COUNTS)] = table[list(COUNTS)].fillna(0).astype("int64")
    table["km"] = km.reindex(table.index).fillna(0.0).to_numpy()
    table = _rates(table)
    with np.errstate(divide="ignore", invalid="ignore"):
        table["hazards_per_km"] = np.where(
            table["km"] > 0, table["hazards"] / table["km"].where(table["km"] > 0, 1.0), np.nan
        )
    table["health_index"] = health_index(table, cfg.weights)
    table["health_rank"] = (
        table.groupby("level")["health_index"].rank(ascending=False, method="min").astype("Int64")
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
        return _zone_table(z, tree, counts, _zone_km(zones, tree, units, uz), cfg), outside

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
