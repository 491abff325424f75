"""Risk per traffic unit: HSM measures, empirical Bayes, four-colour levels, hotspots.

:func:`score` turns a units frame and the accidents joined to it (:func:`trafficunit.assign`)
into the measures engineers screen a network with (HSM Part B):

- crash frequency per year, crashes per km-year (segments), EPDO and EPDO per km;
- crash rate per million vehicle-km where the units carry an ``aadt``;
- empirical-Bayes expected and excess crashes, with a safety performance function (SPF) fitted
  on the network's own data per reference population (road class x kind, negative binomial
  NB2 via ``statsmodels``) or supplied by the user: ``N_exp = w N_pred + (1 - w) N_obs``,
  ``w = 1 / (1 + k N_pred)``;
- a four-colour level (red, orange, yellow, blue) from a configurable rule, raised by open
  hazards according to their grade. The rule and its bands travel with the result in
  ``risk.attrs["rule"]`` so a map legend can explain every colour.

:func:`hotspots` adds Getis-Ord Gi* and local Moran statistics over unit adjacency (PySAL
``esda``), :func:`explain` says what drives a unit's risk, :func:`top` lists the worst units and
:func:`compare_periods` runs a before/after comparison with empirical Bayes.

>>> import trafficunit as tu
>>> import geopandas as gpd
>>> from shapely.geometry import LineString
>>> units = gpd.GeoDataFrame(
...     {"kind": ["segment"] * 2, "length_m": [500.0, 500.0], "road_class": ["primary"] * 2},
...     geometry=[LineString([(0, 0), (500, 0)]), LineString([(500, 0), (1000, 0)])],
...     index=pd.Index(["S1", "S2"], name="unit_id"), crs=3857)
>>> joined = pd.DataFrame({"event_id": ["a", "b", "c"], "unit_id": ["S1", "S1", "S2"],
...                        "severity": ["K", "O", "B"], "year": [2020, 2021, 2021]})
>>> risk = tu.score(units, joined, period=("2020-01-01", "2021-12-31"))
>>> risk["epdo"].tolist()
[543.0, 11.0]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy import stats

from ._errors import TrafficUnitWarning, ValidationError
from ._validate import require_gdf
from .settings import RISK_LEVELS, RiskSettings, TimeSettings
from .timefilter import Period, _data_period, as_period, filter_events, hour_band, is_night

__all__ = [
    "SafetyPerformanceFunction",
    "score",
    "fit_spfs",
    "hotspots",
    "explain",
    "describe_events",
    "top",
    "compare_periods",
    "accidents",
    "SEVERITIES",
    "MEASURES",
]

#: KABCO letters, most severe first.
SEVERITIES: tuple[str, ...] = ("K", "A", "B", "C", "O")

#: Measures :func:`score` computes; any of them can carry the level.
MEASURES: tuple[str, ...] = (
    "crashes",
    "crashes_per_year",
    "crashes_per_km_year",
    "epdo",
    "epdo_per_km",
    "rate_mvkm",
    "eb_predicted",
    "eb_expected",
    "eb_excess",
)
_PER_KM = {"crashes_per_km_year", "epdo_per_km", "rate_mvkm"}

#: SPF covariates a user-supplied function may use.
COVARIATES: tuple[str, ...] = ("log_length_km", "log_aadt", "log_degree")

_CHINESE_GRADES = {"一般": "general", "重大": "major"}


# -- inputs ---------------------------------------------------------------------------------------


def _units_frame(units: Any) -> gpd.GeoDataFrame:
    require_gdf(units, "units")
    if units.index.name != "unit_id":
        if "unit_id" not in units.columns:
            raise ValidationError(
                "units need a 'unit_id' index or column; build them with tu.build_units"
            )
        units = units.set_index("unit_id")
    missing = [c for c in ("kind", "length_m") if c not in units.columns]
    if missing:
        raise ValidationError(
            f"units lack column(s) {missing}; build them with tu.build_units (see the units "
            "contract in the docs)"
        )
    if not units.index.is_unique:
        dup = units.index[units.index.duplicated()][:3].tolist()
        raise ValidationError(f"units have duplicate unit_id values, e.g. {dup}")
    bad = ~units["kind"].isin(["segment", "intersection"])
    if bad.any():
        raise ValidationError(
            f"units 'kind' must be 'segment' or 'intersection'; {int(bad.sum())} row(s) are "
            f"not, e.g. {units['kind'][bad].iloc[0]!r}"
        )
    return units


def _require_joined(joined: Any, what: str = "joined") -> pd.DataFrame:
    if not isinstance(joined, pd.DataFrame):
        raise ValidationError(f"{what} must be a (Geo)DataFrame from tu.assign")
    if "unit_id" not in joined.columns:
        raise ValidationError(
            f"{what} has no 'unit_id' column; attach events to units first with tu.assign"
        )
    return joined


def _severity(events: pd.DataFrame) -> pd.Series:
    """KABCO letter per event (<NA> where missing or not a KABCO letter)."""
    if "severity" not in events.columns:
        return pd.Series(pd.NA, index=events.index, dtype="string")
    s = events["severity"].astype("string").str.strip().str.upper()
    return s.where(s.isin(SEVERITIES))


def accidents(
    joined: pd.DataFrame, *, period: Any = None, matched_only: bool = True
) -> tuple[pd.DataFrame, Period | None, dict[str, int]]:
    """The accident rows of a joined frame, inside ``period``, with a normalised ``severity``.

    Returns the rows, the period used (from the data's years when ``period`` is None) and a
    report of how many rows were kept and why others were not.
    """
    _require_joined(joined)
    report: dict[str, int] = {"joined_rows": len(joined)}
    acc = joined
    if "kind" in joined.columns:
        acc = joined.loc[joined["kind"].astype("string").fillna("accident") == "accident"]
    if "event_id" in acc.columns:
        acc = acc.drop_duplicates("event_id")
    report["accidents"] = len(acc)
    if matched_only:
        matched = acc["unit_id"].notna().to_numpy()
        report["unmatched"] = int((~matched).sum())
        acc = acc.loc[matched]
    per = as_period(period) if period is not None else _data_period(acc)
    if per is not None:
        acc = filter_events(acc, period=per)
        rep = acc.attrs.pop("time_report", {})
        report["outside_period"] = rep.get("outside_period", 0)
        report["no_date"] = rep.get("no_date", 0)
    out = acc.copy()
    out["severity"] = _severity(out)
    report["unknown_severity"] = int(out["severity"].isna().sum())
    report["used"] = len(out)
    return out, per, report


# -- safety performance functions -----------------------------------------------------------------


@dataclass(frozen=True)
class SafetyPerformanceFunction:
    """``ln(N per year) = intercept + sum(coefficient * covariate)`` and overdispersion ``k``.

    Covariates are the names in :data:`COVARIATES`, computed from unit columns:
    ``log_length_km`` (``length_m`` / 1000, floored at ``min_segment_length_m``), ``log_aadt``
    and ``log_degree``. ``k_per_km`` makes the overdispersion ``k / length_km`` per segment
    (the HSM convention for segment SPFs).

    Examples
    --------
    >>> spf = SafetyPerformanceFunction(intercept=math.log(2.0),
    ...                                 coefficients={"log_length_km": 1.0}, k=0.5)
    >>> units = pd.DataFrame({"kind": ["segment"], "length_m": [500.0]})
    >>> float(spf.predict(units, years=3.0)[0])  # 2 crashes/km-year x 0.5 km x 3 years
    3.0
    """

    intercept: float
    coefficients: Mapping[str, float] = field(default_factory=dict)
    k: float = 0.0
    k_per_km: bool = False
    source: str = "user"
    population: str = ""
    n_units: int = 0
    n_crashes: int = 0
    min_segment_length_m: float = 5.0

    def __post_init__(self) -> None:
        unknown = set(self.coefficients) - set(COVARIATES)
        if unknown:
            raise ValidationError(
                f"SPF covariates {sorted(unknown)} are not known; use {list(COVARIATES)}"
            )
        if not (self.k >= 0):
            raise ValidationError(f"SPF overdispersion k must be >= 0, got {self.k}")

    def predict(self, units: pd.DataFrame, years: float) -> np.ndarray:
        """Predicted accidents on each unit over ``years`` years."""
        if not math.isfinite(self.intercept):
            return np.zeros(len(units))
        names = list(self.coefficients)
        x = _design(units, names, self.min_segment_length_m)
        eta = self.intercept + x @ np.array([self.coefficients[n] for n in names], dtype=float)
        return np.asarray(np.exp(eta) * years, dtype=float)

    def overdispersion(self, units: pd.DataFrame) -> np.ndarray:
        """Overdispersion ``k`` per unit."""
        k = np.full(len(units), float(self.k))
        if self.k_per_km:
            km = _length_km(units, self.min_segment_length_m)
            seg = units["kind"].to_numpy() == "segment"
            k[seg] = self.k / km[seg]
        return k

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (for ``attrs`` and legends)."""
        d = asdict(self)
        d["coefficients"] = {k: float(v) for k, v in self.coefficients.items()}
        d["intercept"] = float(self.intercept) if math.isfinite(self.intercept) else None
        d["k"] = float(self.k)
        return d


def _length_km(units: pd.DataFrame, floor_m: float) -> np.ndarray:
    length = pd.to_numeric(units["length_m"], errors="coerce").to_numpy(dtype=float)
    return np.maximum(np.nan_to_num(length, nan=0.0), floor_m) / 1000.0


def _design(units: pd.DataFrame, names: Sequence[str], floor_m: float) -> np.ndarray:
    cols = []
    for name in names:
        if name == "log_length_km":
            cols.append(np.log(_length_km(units, floor_m)))
        elif name == "log_aadt":
            if "aadt" not in units.columns:
                raise ValidationError("the SPF uses log_aadt but the units have no 'aadt' column")
            a = pd.to_numeric(units["aadt"], errors="coerce").to_numpy(dtype=float)
            cols.append(np.log(np.where(a > 0, a, np.nan)))
        elif name == "log_degree":
            arr = (
                pd.to_numeric(units["degree"], errors="coerce").to_numpy(dtype=float)
                if "degree" in units.columns
                else np.full(len(units), 3.0)
            )
            cols.append(np.log(np.clip(np.nan_to_num(arr, nan=3.0), 1.0, None)))
        else:  # pragma: no cover - guarded in __post_init__
            raise ValidationError(f"unknown SPF covariate {name!r}")
    if not cols:
        return np.zeros((len(units), 0))
    return np.column_stack(cols)


def _population_keys(units: pd.DataFrame, cfg: RiskSettings) -> pd.Series:
    """``kind:class`` per unit, pooled to ``kind:*`` where a population is too small."""
    others = [c for c in cfg.population if c != "kind"]
    missing = [c for c in others if c not in units.columns]
    if missing:
        raise ValidationError(f"population columns {missing} are not unit columns")
    key = units["kind"].astype(str)
    if others:
        rest = units[others[0]].astype("string").fillna("unknown")
        for c in others[1:]:
            rest = rest + "/" + units[c].astype("string").fillna("unknown")
        key = key + ":" + rest.astype(str)
    else:
        key = key + ":*"
    sizes = key.map(key.value_counts())
    small = sizes < cfg.min_population
    pooled = units["kind"].astype(str) + ":*"
    return key.where(~small, pooled).rename("reference_population")


def _fit_one(
    units: pd.DataFrame, y: np.ndarray, years: float, kind: str, population: str, cfg: RiskSettings
) -> SafetyPerformanceFunction:
    """NB2 fit of one population, with a method-of-moments fallback."""
    n = len(y)
    total = int(y.sum())
    common: dict[str, Any] = {
        "population": population,
        "n_units": n,
        "n_crashes": total,
        "min_segment_length_m": cfg.min_segment_length_m,
    }
    if total == 0:
        return SafetyPerformanceFunction(intercept=-math.inf, k=0.0, source="no crashes", **common)
    fixed_length = kind == "segment" and cfg.spf_length_exponent is not None
    names: list[str] = ["log_degree"]
    if kind == "segment":
        names = [] if fixed_length else ["log_length_km"]
    if "aadt" in units.columns:
        aadt = pd.to_numeric(units["aadt"], errors="coerce")
        if bool((aadt > 0).all()):
            names.append("log_aadt")
    x = _design(units, names, cfg.min_segment_length_m)
    keep = [i for i in range(x.shape[1]) if np.ptp(x[:, i]) > 1e-9]
    names = [names[i] for i in keep]
    x = x[:, keep]
    exposure = np.full(n, years)
    fixed: dict[str, float] = {}
    if fixed_length:
        b = float(cfg.spf_length_exponent or 1.0)
        exposure = exposure * _length_km(units, cfg.min_segment_length_m) ** b
        fixed = {"log_length_km": b}
    if n >= 10 and total >= 5:
        import statsmodels.api as sm

        exog = np.column_stack([np.ones(n), x])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = sm.NegativeBinomial(y, exog, loglike_method="nb2", exposure=exposure)
                res = model.fit(disp=0, maxiter=200, method="newton")
            params = np.asarray(res.params, dtype=float)
            ok = bool(res.mle_retvals.get("converged", False)) and np.isfinite(params).all()
            if ok and params[-1] >= 0 and params[-1] < 1e3:
                fitted = {nm: float(b) for nm, b in zip(names, params[1:-1], strict=True)}
                return SafetyPerformanceFunction(
                    intercept=float(params[0]),
                    coefficients={**fixed, **fitted},
                    k=float(params[-1]),
                    source="negative binomial (statsmodels NB2)",
                    **common,
                )
        except (np.linalg.LinAlgError, ValueError, OverflowError):
            pass
    # method of moments: a rate per km-year (segments) or per unit-year (intersections)
    if kind == "segment":
        exposure = _length_km(units, cfg.min_segment_length_m)
        coefs = {"log_length_km": 1.0}
    else:
        exposure = np.ones(n)
        coefs = {}
    rate = total / (exposure.sum() * years)
    mu = rate * exposure * years
    k = max(0.0, float(((y - mu) ** 2 - mu).sum() / (mu**2).sum()))
    return SafetyPerformanceFunction(
        intercept=math.log(rate), coefficients=coefs, k=k, source="method of moments", **common
    )


def _fit_populations(
    units: pd.DataFrame,
    counts: np.ndarray,
    years: float,
    keys: pd.Series,
    cfg: RiskSettings,
    supplied: SafetyPerformanceFunction | Mapping[str, SafetyPerformanceFunction] | None,
) -> dict[str, SafetyPerformanceFunction]:
    spfs: dict[str, SafetyPerformanceFunction] = {}
    codes, uniques = pd.factorize(keys)
    for i, key in enumerate(uniques):
        if isinstance(supplied, SafetyPerformanceFunction):
            spfs[key] = supplied
            continue
        if isinstance(supplied, Mapping) and key in supplied:
            spfs[key] = supplied[key]
            continue
        sel = codes == i
        kind = str(key).split(":", 1)[0]
        spfs[key] = _fit_one(units.loc[sel], counts[sel], years, kind, str(key), cfg)
    return spfs


def fit_spfs(
    units: gpd.GeoDataFrame,
    joined: pd.DataFrame,
    *,
    period: Any = None,
    settings: RiskSettings | None = None,
) -> dict[str, SafetyPerformanceFunction]:
    """Fit one SPF per reference population (negative binomial, method of moments fallback).

    The result can be passed to :func:`score` as ``spf=`` to score another period or area with
    the same functions.
    """
    cfg = settings or RiskSettings()
    u = _units_frame(units)
    acc, per, _ = accidents(joined, period=period)
    if per is None:
        raise ValidationError("no dated accidents: give period=(start, end)")
    counts = _counts(acc, u.index, cfg)["crashes"].to_numpy(dtype=float)
    return _fit_populations(u, counts, per.years, _population_keys(u, cfg), cfg, None)


# -- measures -------------------------------------------------------------------------------------


def _positions(unit_ids: pd.Series, index: pd.Index) -> np.ndarray:
    """Position of each unit id in the (unique) ``index``, -1 where absent or missing.

    ``index.get_indexer`` with Arrow's hash lookup: several times faster on millions of rows.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(unit_ids) == 0:
        return np.zeros(0, dtype=np.int64)
    values = pa.array(unit_ids.astype("string").array)
    keys = pa.array(pd.Series(index, dtype="string").array)
    pos = pc.fill_null(pc.index_in(values, value_set=keys), -1)
    return np.asarray(pos.to_numpy(zero_copy_only=False), dtype=np.int64)


def _counts(
    acc: pd.DataFrame, index: pd.Index, cfg: RiskSettings, pos: np.ndarray | None = None
) -> pd.DataFrame:
    """Per-unit accident counts by severity, casualties and EPDO (``pos``: see _positions)."""
    if pos is None:
        pos = _positions(acc["unit_id"], index)
    ok = pos >= 0
    sev = acc["severity"].fillna(cfg.unknown_severity).to_numpy(dtype=object)
    n = len(index)
    out: dict[str, np.ndarray] = {"crashes": np.bincount(pos[ok], minlength=n).astype(np.int64)}
    for letter in SEVERITIES:
        m = ok & (sev == letter)
        out[letter] = np.bincount(pos[m], minlength=n).astype(np.int64)
    w = np.array([cfg.epdo_weights.get(s, np.nan) for s in SEVERITIES])
    if not np.isfinite(w).all():
        raise ValidationError(f"epdo_weights must give a weight for each of {SEVERITIES}")
    out["epdo"] = np.asarray(sum(out[s] * cfg.epdo_weights[s] for s in SEVERITIES), dtype=float)
    for col in ("deaths", "serious_injuries", "minor_injuries"):
        if col in acc.columns:
            v = pd.to_numeric(acc[col], errors="coerce").fillna(0).to_numpy(dtype=float)
            out[col] = np.bincount(pos[ok], weights=v[ok], minlength=n)
    return pd.DataFrame(out, index=index)


def _midrank_percentile(values: np.ndarray, groups: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mid-rank percentile (0-100) of each value within its group; NaN stays NaN.

    ``100 * (weight strictly below + half the weight of ties) / group weight``.
    """
    out = np.full(len(values), np.nan)
    valid = np.isfinite(values)
    if not valid.any():
        return out
    df = pd.DataFrame({"g": groups[valid], "v": values[valid], "w": weights[valid]})
    tie = df.groupby(["g", "v"], sort=True)["w"].sum()
    cum = tie.groupby(level=0).cumsum()
    total = tie.groupby(level=0).transform("sum")
    pct = (100.0 * (cum - tie + 0.5 * tie) / total).rename("pct").reset_index()
    merged = df.merge(pct, on=["g", "v"], how="left")
    out[valid] = merged["pct"].to_numpy(dtype=float)
    return out


def _level_measure(risk: pd.DataFrame, cfg: RiskSettings) -> tuple[np.ndarray, dict[str, str]]:
    """The value the level is banded on, per unit, and which measure each kind used."""
    used = {}
    values = np.full(len(risk), np.nan)
    for kind in ("segment", "intersection"):
        measure = cfg.measure
        if kind == "intersection":
            if cfg.intersection_measure is not None:
                measure = cfg.intersection_measure
            elif measure in _PER_KM:
                measure = "epdo"
        if measure not in risk.columns:
            raise ValidationError(
                f"measure {measure!r} is not a risk column; use one of {list(MEASURES)}"
            )
        sel = (risk["kind"] == kind).to_numpy()
        if sel.any():
            v = pd.to_numeric(risk.loc[sel, measure], errors="coerce").to_numpy(dtype=float)
            if np.isnan(v).all() and not (measure == "rate_mvkm" and kind == "intersection"):
                hint = " (it needs an 'aadt' unit column)" if measure == "rate_mvkm" else ""
                raise ValidationError(f"measure {measure!r} is NaN for every {kind}{hint}")
            values[sel] = v
            used[kind] = measure
    return values, used


def _levels(
    risk: pd.DataFrame, cfg: RiskSettings
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, np.ndarray]]:
    """Crash level rank (1..4) and percentile per unit, the rule, and extra columns."""
    values, used = _level_measure(risk, cfg)
    groups = risk["reference_population"].to_numpy(dtype=object)
    seg = (risk["kind"] == "segment").to_numpy()
    crashes = risk["crashes"].to_numpy()
    extra: dict[str, np.ndarray] = {}
    scheme = cfg.scheme
    ones = np.ones(len(risk))
    if cfg.rank_among not in ("all", "with_crashes"):
        raise ValidationError(f"rank_among must be 'all' or 'with_crashes', got {cfg.rank_among!r}")
    ranked = values
    if cfg.rank_among == "with_crashes":
        ranked = np.where(crashes >= cfg.min_crashes, values, np.nan)
    pct = _midrank_percentile(ranked, groups, ones)
    bands: list[dict[str, Any]]
    if scheme == "percentile":
        e = _check_edges(cfg.percentile_bands, "percentile_bands")
        rank = 1 + (pct[:, None] >= np.array(e)[None, :]).sum(axis=1)
        bands = _bands_from_edges(e, "{m} percentile", pct=False)
    elif scheme == "fixed":
        if cfg.fixed_thresholds is None:
            raise ValidationError(
                "scheme 'fixed' needs fixed_thresholds=(yellow, orange, red) lower bounds on "
                f"the measure {cfg.measure!r}"
            )
        e = _check_edges(cfg.fixed_thresholds, "fixed_thresholds")
        with np.errstate(invalid="ignore"):
            rank = 1 + (values[:, None] >= np.array(e)[None, :]).sum(axis=1)
        bands = _bands_from_edges(e, "{m}", pct=False)
    elif scheme == "length_share":
        shares = np.asarray(cfg.length_shares, dtype=float)
        if len(shares) != len(cfg.length_share_levels) or abs(shares.sum() - 100.0) > 1e-6:
            raise ValidationError(
                "length_shares must sum to 100 and have one level per share, got "
                f"{cfg.length_shares} / {cfg.length_share_levels}"
            )
        bad = set(cfg.length_share_levels) - set(RISK_LEVELS)
        if bad:
            raise ValidationError(f"unknown levels {sorted(bad)} in length_share_levels")
        weight = np.where(seg, risk["length_m"].to_numpy(dtype=float), 1.0)
        pct = _midrank_percentile(ranked, groups, np.nan_to_num(weight, nan=0.0))
        edges = np.cumsum(shares)[:-1]
        cls = 1 + (pct[:, None] >= edges[None, :]).sum(axis=1)
        lut = np.array([RISK_LEVELS.index(lv) + 1 for lv in cfg.length_share_levels])
        rank = lut[cls - 1]
        extra["risk_class"] = np.where(np.isfinite(pct), cls, 0)
        bands = []
        lo = 0.0
        for i, (share, level) in enumerate(zip(shares, cfg.length_share_levels, strict=True)):
            bands.append(
                {
                    "level": level,
                    "class": i + 1,
                    "share_percent": float(share),
                    "label": f"class {i + 1}: {lo:g}-{lo + share:g} % of length, by {{m}}",
                }
            )
            lo += share
        bands = bands[::-1]
    elif scheme == "matrix":
        e = _check_edges(cfg.matrix_bands, "matrix_bands")
        freq = risk["crashes_per_year"].to_numpy(dtype=float)
        if cfg.rank_among == "with_crashes":
            freq = np.where(crashes >= cfg.min_crashes, freq, np.nan)
        fpct = _midrank_percentile(freq, groups, ones)
        likelihood = 1 + (fpct[:, None] >= np.array([20.0, 40.0, 60.0, 80.0])).sum(axis=1)
        sev = np.ones(len(risk), dtype=int)
        for score_, letter in zip((5, 4, 3, 2), ("K", "A", "B", "C"), strict=True):
            sev = np.where((sev == 1) & (risk[letter].to_numpy() > 0), score_, sev)
        product = likelihood * sev
        rank = 1 + (product[:, None] >= np.array(e)[None, :]).sum(axis=1)
        extra["likelihood"] = likelihood
        extra["severity_class"] = sev
        pct = fpct
        bands = _bands_from_edges(e, "likelihood x severity", pct=False)
    else:
        raise ValidationError(
            f"unknown scheme {scheme!r}; use 'percentile', 'fixed', 'length_share' or 'matrix'"
        )
    rank = np.asarray(rank, dtype=int)
    rank[~np.isfinite(values if scheme == "fixed" else pct)] = 1
    rank[crashes < cfg.min_crashes] = 1
    if cfg.positive_only and scheme in ("percentile", "length_share"):
        with np.errstate(invalid="ignore"):
            rank[~(values > 0)] = 1
    m = used.get("segment", cfg.measure)
    for b in bands:
        b["label"] = b["label"].replace("{m}", m)
        b["colour"] = cfg.colours[b["level"]]
    rule: dict[str, Any] = {
        "scheme": scheme,
        "measure": used,
        "bands": bands,
        "population": list(cfg.population),
        "min_population": cfg.min_population,
        "rank_among": cfg.rank_among,
        "guards": {
            "min_crashes": cfg.min_crashes,
            "positive_only": bool(cfg.positive_only and scheme in ("percentile", "length_share")),
            "text": f"fewer than {cfg.min_crashes} accident(s)"
            + (" or a measure <= 0" if cfg.positive_only else "")
            + " stays blue on the crash score",
        },
    }
    return rank, pct, rule, extra


def _check_edges(edges: Sequence[float], name: str) -> list[float]:
    e = [float(x) for x in edges]
    if len(e) != 3 or not (e[0] <= e[1] <= e[2]):
        raise ValidationError(
            f"{name} must be three increasing lower bounds (yellow, orange, red), got {edges}"
        )
    return e


def _bands_from_edges(e: list[float], what: str, *, pct: bool) -> list[dict[str, Any]]:
    unit = " %" if pct else ""
    return [
        {"level": "red", "min": e[2], "max": None, "label": f"{what} >= {e[2]:g}{unit}"},
        {"level": "orange", "min": e[1], "max": e[2], "label": f"{what} {e[1]:g}-{e[2]:g}{unit}"},
        {"level": "yellow", "min": e[0], "max": e[1], "label": f"{what} {e[0]:g}-{e[1]:g}{unit}"},
        {"level": "blue", "min": None, "max": e[0], "label": f"{what} < {e[0]:g}{unit}"},
    ]


def _hazard_counts(
    hazards: pd.DataFrame | None, index: pd.Index, cfg: RiskSettings
) -> pd.DataFrame:
    n = len(index)
    out = pd.DataFrame(
        {
            "open_hazards": np.zeros(n, dtype=np.int64),
            "open_major_hazards": np.zeros(n, dtype=np.int64),
            "hazard_raise": np.zeros(n, dtype=np.int64),
        },
        index=index,
    )
    if hazards is None or len(hazards) == 0:
        return out
    hz = hazards.loc[hazards["unit_id"].notna()]
    if "status" in hz.columns:
        status = hz["status"].astype("string").str.strip().str.lower()
        closed = {s.lower() for s in cfg.closed_hazard_status}
        hz = hz.loc[~status.isin(closed).fillna(False).to_numpy(dtype=bool)]
    grade = (
        hz["grade"].astype("string").str.strip().replace(_CHINESE_GRADES).str.lower()
        if "grade" in hz.columns
        else pd.Series("general", index=hz.index, dtype="string")
    )
    ids = hz["event_id"] if "event_id" in hz.columns else pd.Series(hz.index, index=hz.index)
    pairs = pd.DataFrame({"unit_id": hz["unit_id"].astype(object), "id": ids, "grade": grade})
    pairs = pairs.drop_duplicates(["unit_id", "id"])
    default = cfg.hazard_raise.get("general", 0)
    pairs["raise"] = pairs["grade"].map(lambda g: cfg.hazard_raise.get(g, default)).astype(int)
    pos = index.get_indexer(pd.Index(pairs["unit_id"]))
    ok = pos >= 0
    major = ok & (pairs["grade"] == "major").fillna(False).to_numpy(dtype=bool)
    out["open_hazards"] = np.bincount(pos[ok], minlength=n)
    out["open_major_hazards"] = np.bincount(pos[major], minlength=n)
    rs = np.zeros(n, dtype=np.int64)
    np.maximum.at(rs, pos[ok], pairs["raise"].to_numpy()[ok])
    out["hazard_raise"] = rs
    return out


def _jsonable(obj: Any) -> Any:
    """Plain Python types only (numpy scalars cleaned, NaN -> None), so attrs survive Parquet."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if obj is None or isinstance(obj, str):
        return obj
    if obj is pd.NA or obj is pd.NaT:
        return None
    return str(obj)


# -- score ----------------------------------------------------------------------------------------


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
    cfg = (settings or RiskSettings()).with_(measure=measure, scheme=scheme)
    if bands is not None:
        key = {
            "percentile": "percentile_bands",
            "fixed": "fixed_thresholds",
            "matrix": "matrix_bands",
        }.get(cfg.scheme)
        if key is None:
            raise ValidationError(f"bands cannot be given for scheme {cfg.scheme!r}")
        cfg = cfg.with_(**{key: tuple(bands)})
    u = _units_frame(units)
    acc, per, report = accidents(joined, period=period)
    if per is None:
        raise ValidationError(
            "the accidents carry no time or year; give period=(start, end) so rates per year "
            "can be computed"
        )
    pos = _positions(acc["unit_id"], u.index)
    unknown_units = pos < 0
    if unknown_units.any():
        warnings.warn(
            f"{int(unknown_units.sum())} accident(s) are on unit ids not in the units frame "
            "(joined with other units?); they are not counted",
            TrafficUnitWarning,
            stacklevel=2,
        )
    report["not_in_units"] = int(unknown_units.sum())
    if report["unknown_severity"]:
        warnings.warn(
            f"{report['unknown_severity']} accident(s) have no KABCO severity; counted as "
            f"{cfg.unknown_severity!r} in EPDO",
            TrafficUnitWarning,
            stacklevel=2,
        )
    years = per.years
    counts = _counts(acc, u.index, cfg, pos)
    risk = u.copy()
    for col in counts.columns:
        risk[col] = counts[col]
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
    # empirical Bayes
    keys = _population_keys(risk, cfg)
    risk["reference_population"] = keys
    spfs = _fit_populations(risk, counts["crashes"].to_numpy(dtype=float), years, keys, cfg, spf)
    pred = np.zeros(len(risk))
    kk = np.zeros(len(risk))
    key_arr = keys.to_numpy(dtype=object)
    for key, f in spfs.items():
        sel = key_arr == key
        sub = risk.loc[sel]
        pred[sel] = f.predict(sub, years)
        kk[sel] = f.overdispersion(sub)
    obs = counts["crashes"].to_numpy(dtype=float)
    w = 1.0 / (1.0 + kk * pred)
    expected = w * pred + (1.0 - w) * obs
    risk["eb_predicted"] = pred
    risk["eb_weight"] = w
    risk["eb_expected"] = expected
    risk["eb_excess"] = expected - pred
    risk["eb_variance"] = (1.0 - w) * expected
    # levels
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
    levels = np.array(RISK_LEVELS, dtype=object)
    risk["level"] = levels[rank - 1]
    risk["colour"] = risk["level"].map(cfg.colours)
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
    rule["period"] = per.to_json()
    rule["years"] = years
    rule["period_source"] = "given" if period is not None else "data span"
    rule["period_label"] = per.label() + (" (the data's span)" if period is None else " (given)")
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
            stacklevel=2,
        )
    if hotspot_stats:
        risk = hotspots(risk, settings=cfg)
    return risk


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


# -- hotspots -------------------------------------------------------------------------------------


def _adjacency(risk: pd.DataFrame) -> Any:
    """libpysal Graph from the ';'-joined ``neighbours`` column, binary, symmetric."""
    from ._optional import require

    Graph = require("libpysal.graph", "hot-spot statistics").Graph
    from scipy import sparse

    if "neighbours" not in risk.columns:
        raise ValidationError("hotspot statistics need the units' 'neighbours' column")
    nb = risk["neighbours"].astype("string").fillna("").str.split(";").explode()
    nb = nb[nb.notna() & (nb != "")]
    i = risk.index.get_indexer(pd.Index(nb.index))
    j = risk.index.get_indexer(pd.Index(nb.to_numpy(dtype=object)))
    ok = (i >= 0) & (j >= 0) & (i != j)
    n = len(risk)
    m = sparse.coo_matrix((np.ones(ok.sum()), (i[ok], j[ok])), shape=(n, n)).tocsr()
    m = ((m + m.T) > 0).astype(float).tocsr()
    return Graph.from_sparse(m)


def hotspots(
    risk: gpd.GeoDataFrame,
    *,
    measure: str | None = None,
    permutations: int | None = None,
    alpha: float | None = None,
    seed: int | None = None,
    settings: RiskSettings | None = None,
) -> gpd.GeoDataFrame:
    """Getis-Ord Gi* and local Moran's I of a measure over unit adjacency (PySAL ``esda``).

    Adjacency is the units' ``neighbours`` column (symmetric). Gi* uses it as binary weights
    and includes the unit itself; its p-value is two-sided from the normal approximation.
    Local Moran uses the same adjacency row-standardised (each unit's neighbours weigh
    ``1 / number of neighbours``, esda's default); its p-value comes from ``permutations``
    conditional permutations (default 999, esda's default; 0 skips local Moran) drawn with
    ``seed``. Both are recorded in ``attrs["hotspots"]``.

    Returns a copy with ``gi_z``, ``gi_p``, ``hotspot`` ("hot", "cold", "not significant"),
    ``moran_i``, ``moran_p`` and ``moran_quadrant`` ("HH", "LH", "LL", "HL" or
    "not significant").
    """
    from ._optional import require

    esda = require("esda", "hot-spot statistics")

    cfg = settings or RiskSettings()
    measure = measure or cfg.hotspot_measure
    permutations = cfg.hotspot_permutations if permutations is None else permutations
    alpha = cfg.hotspot_alpha if alpha is None else alpha
    seed = cfg.seed if seed is None else seed
    if measure not in risk.columns:
        raise ValidationError(f"hotspot measure {measure!r} is not a column of risk")
    out = risk.copy()
    y = pd.to_numeric(out[measure], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    if len(out) < 3 or np.ptp(y) == 0:
        out["gi_z"], out["gi_p"], out["hotspot"] = 0.0, 1.0, "not significant"
        out["moran_i"], out["moran_p"], out["moran_quadrant"] = 0.0, 1.0, "not significant"
        return out
    w = _adjacency(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ws = w.assign_self_weight(1.0)
        gi = esda.G_Local(y, ws, transform="B", star=None, permutations=0, n_jobs=1)
    z = np.asarray(gi.Zs, dtype=float)
    p = 2.0 * stats.norm.sf(np.abs(z))
    out["gi_z"] = z
    out["gi_p"] = p
    sig = p < alpha
    out["hotspot"] = np.where(
        sig & (z > 0), "hot", np.where(sig & (z < 0), "cold", "not significant")
    )
    if permutations > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lm = esda.Moran_Local(
                y, w, transformation="r", permutations=permutations, seed=seed, n_jobs=1
            )
        out["moran_i"] = np.asarray(lm.Is, dtype=float)
        out["moran_p"] = np.asarray(lm.p_sim, dtype=float)
        quad = np.array(["", "HH", "LH", "LL", "HL"], dtype=object)[np.asarray(lm.q, dtype=int)]
        out["moran_quadrant"] = np.where(out["moran_p"] < alpha, quad, "not significant")
    else:
        out["moran_i"], out["moran_p"], out["moran_quadrant"] = np.nan, np.nan, "not computed"
    out.attrs = dict(risk.attrs)
    out.attrs["hotspots"] = {
        "measure": measure,
        "weights": "binary unit adjacency (neighbours), symmetric; Gi* includes the unit",
        "moran_weights": "the same adjacency, row-standardised (esda transformation 'r')",
        "gi_p": "two-sided, normal approximation",
        "moran_permutations": int(permutations),
        "alpha": float(alpha),
        "seed": int(seed),
    }
    return out


# -- explanations ---------------------------------------------------------------------------------


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
    from .timefilter import _event_hours

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


# -- before / after -------------------------------------------------------------------------------


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
    pred_b = np.zeros(len(u))
    pred_a = np.zeros(len(u))
    kk = np.zeros(len(u))
    key_arr = keys.to_numpy(dtype=object)
    for key, f in spfs.items():
        sel = key_arr == key
        sub = u.loc[sel]
        pred_b[sel] = f.predict(sub, pb.years)
        pred_a[sel] = f.predict(sub, pa.years)
        kk[sel] = f.overdispersion(sub)
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
