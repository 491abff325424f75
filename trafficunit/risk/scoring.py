"""The score: HSM measures, empirical Bayes and levels per unit (:func:`score`)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from .._errors import TrafficUnitWarning, ValidationError
from .._gcpause import gc_paused
from ..settings import RISK_LEVELS, RiskSettings
from ..timefilter import Period, as_period
from .inputs import _release_arrow_memory, _require_joined, _units_frame, accidents
from .measures import (
    _counts,
    _counts_frame,
    _hazard_counts,
    _jsonable,
    _level_measure,
    _levels,
    _positions,
)
from .spatial import hotspots
from .spf import (
    Fitter,
    SafetyPerformanceFunction,
    _fit_populations,
    _population_keys,
    _predictions,
)


@gc_paused()
def score(
    units: gpd.GeoDataFrame,
    joined: pd.DataFrame,
    *,
    period: Any = None,
    spf: SafetyPerformanceFunction | Mapping[str, SafetyPerformanceFunction] | None = None,
    hazards: pd.DataFrame | None = None,
    measure: str | None = None,
    scheme: str | None = None,
    bands: Sequence[float] | None = None,
    hotspot_stats: bool = False,
    settings: RiskSettings | None = None,
) -> gpd.GeoDataFrame:
    """Score every unit: measures, empirical Bayes, four-colour level.

    The measures follow HSM Part B; the empirical-Bayes estimate uses a safety performance
    function per reference population; the level comes from the rule of ``settings.scheme``
    and is raised by open hazards (see the module docs).

    Parameters
    ----------
    units
        Traffic units (:func:`trafficunit.build_units`), indexed by ``unit_id``.
    joined
        Events joined to the units (:func:`trafficunit.assign`). Accident rows (``kind`` =
        ``"accident"``, or every row without a ``kind`` column) are scored; hazard rows
        (``kind`` = ``"hazard"``) count as open hazards unless their ``status`` is closed.
    period
        ``(start, end)``, end inclusive. Default: the data's own span (first to last day of
        the dated accidents, whole calendar years for accidents known by year only);
        ``attrs["rule"]["period_label"]`` says which.
    spf
        A :class:`SafetyPerformanceFunction` for every unit, or a mapping from reference
        population (``"segment:primary"``, ``"intersection:*"``...) to one; populations without
        one are fitted on this data (negative binomial).
    hazards
        Extra joined hazard rows (``unit_id``, ``grade``, ``status``).
    measure, scheme, bands
        Override ``settings.measure``, ``settings.scheme`` and that scheme's three bounds
        (``percentile_bands``, ``fixed_thresholds`` or ``matrix_bands``).
    hotspot_stats
        Also add Getis-Ord Gi* and local Moran columns (:func:`hotspots`).
    settings
        All other options (:class:`~trafficunit.settings.RiskSettings`).

    Returns
    -------
    geopandas.GeoDataFrame
        The units with the risk columns of the data contract, plus ``reference_population``,
        ``risk_measure`` (the value banded), ``crash_level_rank`` (before hazards),
        ``eb_weight`` and ``eb_variance``. ``.attrs["rule"]`` describes the rule and bands,
        ``.attrs["report"]`` counts what was used, ``.attrs["spf"]`` the SPFs and
        ``.attrs["coverage"]`` how well the data covers the units: ``share_with_crashes``,
        the fitted ``k`` per population, ``median_eb_weight`` (units with accidents), the
        level counts and ``warnings``.

    Warns
    -----
    TrafficUnitWarning
        When the data is sparse (fewer than ``settings.sparse_coverage`` of units with an
        accident), the SPF degenerate (``k`` above ``settings.sparse_max_k`` or a median EB
        weight below ``settings.sparse_median_eb_weight``) or the levels collapse (a level
        empty, or more red than orange and yellow together). The documented remedy
        (:data:`SPARSE_REMEDY`): ``RiskSettings(rank_among="with_crashes")``, a study area
        the data covers, or a longer period.
    """
    cfg = _settings(settings, measure, scheme, bands)
    u = _units_frame(units)
    acc, per, report, pos = _accidents_on(u, joined, period, cfg)
    counts = _counts(acc, u.index, cfg, pos)
    del acc, pos  # the accidents' rows are counted: released before the fits and levels
    _release_arrow_memory()
    risk = _scored(u, counts, per, report, joined, hazards, period is not None, cfg, spf)
    if hotspot_stats:
        risk = hotspots(risk, settings=cfg)
    return risk


@gc_paused()
def _scored(
    u: gpd.GeoDataFrame,
    counts: pd.DataFrame,
    per: Period,
    report: dict[str, Any],
    joined: pd.DataFrame,
    hazards: pd.DataFrame | None,
    given: bool,
    cfg: RiskSettings,
    spf: SafetyPerformanceFunction | Mapping[str, SafetyPerformanceFunction] | None,
    fitter: Fitter | None = None,
) -> gpd.GeoDataFrame:
    """:func:`score` from the accidents counted per unit (``counts``, on ``u``'s index): the
    rates, the SPF fits (by ``fitter``: see :func:`._fit_populations`) and EB, the levels
    (hazard rows from ``joined`` and ``hazards``) and the attributes; ``given``: whether the
    period was given."""
    years = per.years
    risk = u.copy(deep=False)  # new columns go to this frame only (copy-on-write)
    for col in counts.columns:
        risk[col] = counts[col]
    _rates(risk, years)
    obs = counts["crashes"].to_numpy(dtype=float)
    spfs = _empirical_bayes(risk, obs, years, cfg, spf, fitter)
    _release_arrow_memory()
    rule = _level_columns(risk, joined, hazards, cfg)
    rule["period"] = per.to_json()
    rule["years"] = years
    rule["period_source"] = "given" if given else "data span"
    rule["period_label"] = per.label() + (" (given)" if given else " (the data's span)")
    rule["text"] = _rule_text(rule)
    coverage = _coverage(risk, spfs, cfg)
    risk.attrs = {
        "rule": _jsonable(rule),
        "report": _jsonable(report),
        "spf": _jsonable({k: f.to_dict() for k, f in spfs.items()}),
        "period": per.to_json(),
        "coverage": _jsonable(coverage),
    }
    if coverage["warnings"]:
        warnings.warn(
            "sparse data: " + "; ".join(coverage["warnings"]) + ". Remedy: " + coverage["remedy"],
            TrafficUnitWarning,
            stacklevel=3,  # here, score, then its caller
        )
    return risk


def _settings(
    settings: RiskSettings | None,
    measure: str | None,
    scheme: str | None,
    bands: Sequence[float] | None,
) -> RiskSettings:
    """The settings with ``measure``, ``scheme`` and the scheme's ``bands`` put over them."""
    cfg = (settings or RiskSettings()).with_(measure=measure, scheme=scheme)
    if bands is None:
        return cfg
    key = {
        "percentile": "percentile_bands",
        "fixed": "fixed_thresholds",
        "matrix": "matrix_bands",
    }.get(cfg.scheme)
    if key is None:
        raise ValidationError(f"bands cannot be given for scheme {cfg.scheme!r}")
    return cfg.with_(**{key: tuple(bands)})


def _accidents_on(
    u: gpd.GeoDataFrame, joined: pd.DataFrame, period: Any, cfg: RiskSettings
) -> tuple[pd.DataFrame, Period, dict[str, Any], np.ndarray]:
    """The accidents of the period, the period, the input report and each accident's
    position in the units frame (-1: not a unit of it; warned about, not counted)."""
    # only the columns scoring reads: the row selections below then copy no geometry and
    # none of the events' other columns
    acc, per, report = accidents(
        pd.DataFrame(joined[[c for c in _SCORED_COLUMNS if c in joined.columns]]), period=period
    )
    if per is None:
        raise ValidationError(_NO_PERIOD)
    _release_arrow_memory()  # the selection's string temporaries
    pos = _positions(acc["unit_id"], u.index)
    unknown_units = pos < 0
    if unknown_units.any():
        warnings.warn(
            f"{int(unknown_units.sum())} accident(s) are on unit ids not in the units frame "
            "(joined with other units?); they are not counted",
            TrafficUnitWarning,
            stacklevel=3,  # here, score, then its caller
        )
    report["not_in_units"] = int(unknown_units.sum())
    if report["unknown_severity"]:
        warnings.warn(
            f"{report['unknown_severity']} accident(s) have no KABCO severity; counted as "
            f"{cfg.unknown_severity!r} in EPDO",
            TrafficUnitWarning,
            stacklevel=3,
        )
    return acc, per, report, pos


def _tally(
    joined: pd.DataFrame, period: Any, cfg: RiskSettings
) -> tuple[pd.DataFrame, Period | None, dict[str, Any], pd.DataFrame]:
    """:func:`score`'s counting over a share of the joined rows (one cell's events, in
    their order): the share's accidents counted by the unit ids they are on (:func:`_counts`'
    columns), its period (its own span when ``period`` is None), its input report (without
    ``not_in_units``) and its hazard rows. :func:`_summed` adds the shares up to ``score``'s
    counts when no event id is in two shares."""
    rows = pd.DataFrame(joined[[c for c in _SCORED_COLUMNS if c in joined.columns]])
    acc, per, report = accidents(rows, period=period)
    if per is None:  # no row with a date or year: any period leaves every one out, undated
        report = {k: report[k] for k in ("joined_rows", "accidents", "unmatched")}
        report |= {"outside_period": 0, "no_date": len(acc), "unknown_severity": 0, "used": 0}
        acc = acc.iloc[:0]
    codes, ids = pd.factorize(acc["unit_id"])
    counts = _counts(acc, pd.Index(ids, name="unit_id"), cfg, codes)
    hz = rows.iloc[:0]
    if "kind" in rows.columns:
        hz = rows.loc[(rows["kind"].astype("string") == "hazard").to_numpy(dtype=bool)]
    return counts, per, report, hz


def _summed(
    u: pd.DataFrame,
    counts: Sequence[pd.DataFrame],
    spans: Sequence[Period | None],
    reports: Sequence[Mapping[str, int]],
    period: Any,
    cfg: RiskSettings,
    positions: Sequence[np.ndarray] | None = None,
) -> tuple[pd.DataFrame, Period, dict[str, Any]]:
    """The shares' :func:`_tally` counts summed onto the units ``u`` (those of :func:`_counts`
    over all the rows), the period (the shares' spans joined unless ``period`` is given) and
    the input report; ``positions``: each share's units' positions in ``u`` (as
    :func:`._positions` gives them), if known."""
    known = [p for p in spans if p is not None]
    if period is not None:
        per = as_period(period)
    elif known:
        per = Period(min(p.start for p in known), max(p.end for p in known))
    else:
        raise ValidationError(_NO_PERIOD)
    report: dict[str, Any] = {k: sum(r[k] for r in reports) for k in reports[0]}
    every = pd.concat(counts)
    if positions is not None:
        pos = np.concatenate([np.zeros(0, np.int64), *positions])
    else:
        pos = _positions(pd.Series(every.index), u.index)
    ok = pos >= 0
    out = {}
    for col in every.columns.drop("epdo"):
        v = every[col].to_numpy()
        total = np.bincount(pos[ok], weights=v[ok], minlength=len(u))
        out[col] = total.astype(np.int64) if v.dtype.kind in "iu" else total
    report["not_in_units"] = int(every["crashes"].to_numpy()[~ok].sum())
    return _counts_frame(out, u.index, cfg), per, report


_NO_PERIOD = (
    "the accidents carry no time or year; give period=(start, end) so rates per year can be "
    "computed"
)


#: The columns of the joined frame :func:`score` reads: the row's kind and unit, the event's
#: id and time, its severity and casualties.
_SCORED_COLUMNS: tuple[str, ...] = ("kind", "unit_id", "event_id", "time", "year", "hour")
_SCORED_COLUMNS += ("severity", "deaths", "serious_injuries", "minor_injuries")


def _unit_columns(cfg: RiskSettings) -> list[str]:
    """The unit columns :func:`score` reads (kind, length, the SPF covariates, the
    population's columns)."""
    return list(dict.fromkeys(("kind", "length_m", "aadt", "degree", *cfg.population)))


def _rates(risk: pd.DataFrame, years: float) -> None:
    """Crashes per year, per km-year and EPDO per km (segments), rate per million vehicle-km
    (segments with an ``aadt``)."""
    seg = (risk["kind"] == "segment").to_numpy()
    km = risk["length_m"].to_numpy(dtype=float) / 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        seg_km = np.where(seg & (km > 0), km, np.nan)
        risk["crashes_per_year"] = risk["crashes"] / years
        risk["crashes_per_km_year"] = risk["crashes"].to_numpy() / (seg_km * years)
        risk["epdo_per_km"] = risk["epdo"].to_numpy() / seg_km
        if "aadt" in risk.columns:
            aadt = pd.to_numeric(risk["aadt"], errors="coerce").to_numpy(dtype=float)
            mvkm = np.where(aadt > 0, aadt, np.nan) * 365.25 * years * seg_km / 1e6
            risk["rate_mvkm"] = risk["crashes"].to_numpy() / mvkm
        else:
            risk["rate_mvkm"] = np.nan


def _empirical_bayes(
    risk: pd.DataFrame,
    obs: np.ndarray,
    years: float,
    cfg: RiskSettings,
    spf: SafetyPerformanceFunction | Mapping[str, SafetyPerformanceFunction] | None,
    fitter: Fitter | None = None,
) -> dict[str, SafetyPerformanceFunction]:
    """The EB columns (``N_exp = w N_pred + (1 - w) N_obs``), from the SPF of each unit's
    reference population (given, else fitted by ``fitter``); the SPFs by population."""
    keys = _population_keys(risk, cfg)
    risk["reference_population"] = keys
    _release_arrow_memory()  # the keys' string temporaries, before the fits
    spfs = _fit_populations(risk, obs, years, keys, cfg, spf, fitter)
    (pred,), kk = _predictions(risk, spfs, keys, (years,))
    w = 1.0 / (1.0 + kk * pred)
    expected = w * pred + (1.0 - w) * obs
    risk["eb_predicted"] = pred
    risk["eb_weight"] = w
    risk["eb_expected"] = expected
    risk["eb_excess"] = expected - pred
    risk["eb_variance"] = (1.0 - w) * expected
    return spfs


def _level_columns(
    risk: pd.DataFrame, joined: pd.DataFrame, hazards: pd.DataFrame | None, cfg: RiskSettings
) -> dict[str, Any]:
    """The level from the crash measure, raised by open hazards (the joined hazard rows and
    ``hazards``); the rule that says how (without its period)."""
    crash_rank, pct, rule, extra = _levels(risk, cfg)
    values, _ = _level_measure(risk, cfg)
    risk["risk_measure"] = values
    risk["score_percentile"] = pct
    for col, arr in extra.items():
        risk[col] = arr
    hz_rows = None
    if "kind" in joined.columns:
        hz_rows = joined.loc[joined["kind"].astype("string") == "hazard"]
    if hazards is not None:
        _require_joined(hazards, "hazards")
        hz_rows = hazards if hz_rows is None else pd.concat([hz_rows, hazards])
    hz = _hazard_counts(hz_rows, risk.index, cfg)
    risk["open_hazards"] = hz["open_hazards"]
    risk["open_major_hazards"] = hz["open_major_hazards"]
    risk["hazard_raise"] = hz["hazard_raise"]
    rank = np.minimum(crash_rank + hz["hazard_raise"].to_numpy(), len(RISK_LEVELS))
    risk["crash_level_rank"] = crash_rank
    risk["level_rank"] = rank
    # the four names (and colours) as a column of strings each, taken by rank: no Python
    # string per unit to convert
    risk["level"] = _by_rank(list(RISK_LEVELS), rank, risk.index)
    risk["colour"] = _by_rank([cfg.colours.get(lv) for lv in RISK_LEVELS], rank, risk.index)
    rule["hazard_raise"] = dict(cfg.hazard_raise)
    rule["hazard_text"] = (
        "open hazards raise the level by "
        + ", ".join(f"{n} for a {g} hazard" for g, n in cfg.hazard_raise.items())
        + " (capped at red)"
    )
    rule["colours"] = dict(cfg.colours)
    rule["levels"] = list(RISK_LEVELS[::-1])
    rule["epdo_weights"] = dict(cfg.epdo_weights)
    rule["epdo_version"] = cfg.epdo_version
    return rule


def _by_rank(names: list[Any], rank: np.ndarray, index: pd.Index) -> pd.Series:
    """``names[rank - 1]`` per unit, as pandas would make the column of those strings."""
    # the names the units have, as a column of them (the dtype pandas infers from the values
    # present: strings, or objects if all are None)
    present = np.bincount(rank - 1, minlength=len(names)) > 0
    frame = pd.DataFrame(index=range(int(present.sum())))
    frame["v"] = np.array([n for n, p in zip(names, present, strict=True) if p], dtype=object)
    out = frame["v"].iloc[(np.cumsum(present) - 1)[rank - 1]]
    out.index = index
    return out


#: What to do when the data is too sparse for the SPF (documented in :func:`score`).
SPARSE_REMEDY = (
    "rank among units with accidents (RiskSettings(rank_among='with_crashes')), score a study "
    "area the data covers (clip the units to it), or use a longer period"
)


def _coverage(
    risk: pd.DataFrame, spfs: Mapping[str, SafetyPerformanceFunction], cfg: RiskSettings
) -> dict[str, Any]:
    """How well the accidents cover the units, and whether the SPF and levels are usable."""
    crashes = risk["crashes"].to_numpy()
    has = crashes > 0
    share = float(has.mean()) if len(risk) else 0.0
    w = risk["eb_weight"].to_numpy(dtype=float)
    median_w = float(np.median(w[has])) if has.any() else float("nan")
    fitted = {
        key: float(f.k)
        for key, f in spfs.items()
        if f.source.startswith("negative binomial") or f.source == "method of moments"
    }
    counts = risk["level"].value_counts().reindex(list(RISK_LEVELS), fill_value=0)
    levels = {str(k): int(v) for k, v in counts.items()}
    out: dict[str, Any] = {
        "units": len(risk),
        "units_with_crashes": int(has.sum()),
        "share_with_crashes": share,
        "k": fitted,
        "max_k": max(fitted.values(), default=float("nan")),
        "median_eb_weight": median_w,
        "levels": levels,
        "rank_among": cfg.rank_among,
        "warnings": [],
        "remedy": SPARSE_REMEDY
        if cfg.rank_among == "all"
        else SPARSE_REMEDY.split(", ", 1)[1].replace("score a", "Score a", 1),
    }
    msgs: list[str] = out["warnings"]
    if len(risk) and share < cfg.sparse_coverage and cfg.rank_among == "all":
        msgs.append(
            f"only {100 * share:.1f} % of units have an accident (below "
            f"{100 * cfg.sparse_coverage:g} %): the data may cover part of the network"
        )
    big = {k: v for k, v in fitted.items() if v > cfg.sparse_max_k}
    if big:
        worst = max(big, key=lambda k: big[k])
        msgs.append(
            f"the SPF is degenerate: overdispersion k up to {big[worst]:.3g} ({worst}; "
            f"limit {cfg.sparse_max_k:g})"
        )
    if has.any() and median_w < cfg.sparse_median_eb_weight:
        msgs.append(
            f"the median EB weight of units with accidents is {median_w:.3f}: the prediction "
            "carries no weight, levels follow raw counts"
        )
    crash_units = int(has.sum())
    if cfg.scheme in ("percentile", "length_share") and crash_units >= 20:
        empty = [lv for lv in ("yellow", "orange", "red") if levels[lv] == 0]
        inverted = levels["red"] > levels["orange"] + levels["yellow"]
        if empty or inverted:
            what = (
                f"no {' / '.join(empty)} unit"
                if empty
                else f"more red units ({levels['red']})"
                f" than orange and yellow together ({levels['orange'] + levels['yellow']})"
            )
            msgs.append(f"the levels collapse: {what} among {crash_units} units with accidents")
    return out


def _rule_text(rule: dict[str, Any]) -> str:
    bands = "; ".join(f"{b['level']}: {b['label']}" for b in rule["bands"])
    measures = rule["measure"]
    if len(set(measures.values())) == 1:
        measure = next(iter(measures.values()))
    else:
        measure = " / ".join(f"{v} ({k}s)" for k, v in measures.items())
    return (
        f"{rule['scheme']} scheme on {measure} per reference population "
        f"({' x '.join(rule['population'])}); {bands}; {rule['guards']['text']}; "
        f"{rule['hazard_text']}"
        + (f"; period {rule['period_label']}" if rule.get("period_label") else "")
    )
