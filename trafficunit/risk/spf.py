"""Safety performance functions: NB2 fits per reference population, or given by the user."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from .._errors import ValidationError
from ..settings import RiskSettings
from .inputs import COVARIATES, _units_frame, accidents
from .measures import _counts


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
    """``kind:class`` per unit, pooled to ``kind:*`` where a population is too small.

    The keys are made for each distinct combination of the population's columns (a few)
    and taken by each unit's combination: no string built per unit."""
    others = [c for c in cfg.population if c != "kind"]
    missing = [c for c in others if c not in units.columns]
    if missing:
        raise ValidationError(f"population columns {missing} are not unit columns")
    combo = np.zeros(len(units), dtype=np.int64)
    for c in ("kind", *others):
        codes, uniques = pd.factorize(units[c], use_na_sentinel=False)
        combo = combo * max(len(uniques), 1) + codes
    combo, distinct = pd.factorize(combo)
    # factorize numbers the combinations in their order of appearance: each one's first unit
    # is where the running maximum of the codes grows
    first = np.flatnonzero(np.diff(np.maximum.accumulate(combo), prepend=-1) > 0)
    some = units.iloc[first]  # a unit of each combination
    key = some["kind"].astype(str)
    if others:
        rest = some[others[0]].astype("string").fillna("unknown")
        for c in others[1:]:
            rest = rest + "/" + some[c].astype("string").fillna("unknown")
        key = key + ":" + rest.astype(str)
    else:
        key = key + ":*"
    # a key's units: those of every combination with that key (missing and "unknown" alike)
    codes, _ = pd.factorize(key)
    small = np.bincount(codes, weights=np.bincount(combo, minlength=len(distinct)))
    pooled = some["kind"].astype(str) + ":*"
    keys = key.where(~(small[codes] < cfg.min_population), pooled)
    out = keys.iloc[combo]
    out.index = units.index
    return out.rename("reference_population")


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
        from ._nb2 import nb2_model

        exog = np.column_stack([np.ones(n), x])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = nb2_model(y, exog, exposure)
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


def _spf_columns(units: pd.DataFrame) -> pd.DataFrame:
    """The unit columns an SPF reads (kind, length, AADT, degree): the subsets taken per
    population then copy no geometry and no text."""
    return pd.DataFrame(units[[c for c in ("kind", "length_m", "aadt", "degree") if c in units]])


#: The arguments of one :func:`_fit_one` call: a population's SPF columns, its counts, the
#: years, its kind and name, the settings.
FitJob = tuple[pd.DataFrame, np.ndarray, float, str, str, RiskSettings]

#: Fits a list of :data:`FitJob` (each with :func:`_fit_one`), the SPFs in their order; a run
#: on Dask fits them on its workers, side by side.
Fitter = Callable[[list[FitJob]], list["SafetyPerformanceFunction"]]


def _fit_each(jobs: list[FitJob]) -> list[SafetyPerformanceFunction]:
    """:data:`Fitter` in this process, one population after the other, BLAS on one thread
    (as on a Dask worker, so the fits are the same wherever they run; the NB2 fits' products
    are too small to gain from threads: on two cores one thread fits them in two thirds of
    the time)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return [_fit_one(*job) for job in jobs]


def _fit_populations(
    units: pd.DataFrame,
    counts: np.ndarray,
    years: float,
    keys: pd.Series,
    cfg: RiskSettings,
    supplied: SafetyPerformanceFunction | Mapping[str, SafetyPerformanceFunction] | None,
    fitter: Fitter | None = None,
) -> dict[str, SafetyPerformanceFunction]:
    """The SPF of each population of ``keys`` (in their order of appearance): the one
    ``supplied``, else fitted (by ``fitter``, default :func:`_fit_each`)."""
    spfs: dict[str, SafetyPerformanceFunction | None] = {}
    units = _spf_columns(units)
    codes, uniques = pd.factorize(keys)
    jobs: list[FitJob] = []
    for i, key in enumerate(uniques):
        spfs[key] = None
        if isinstance(supplied, SafetyPerformanceFunction):
            spfs[key] = supplied
        elif isinstance(supplied, Mapping) and key in supplied:
            spfs[key] = supplied[key]
        else:
            sel = codes == i
            kind = str(key).split(":", 1)[0]
            jobs.append((units.loc[sel], counts[sel], years, kind, str(key), cfg))
    fitted = iter((fitter or _fit_each)(jobs))
    return {k: f if f is not None else next(fitted) for k, f in spfs.items()}


def _predictions(
    units: pd.DataFrame,
    spfs: Mapping[str, SafetyPerformanceFunction],
    keys: pd.Series,
    spans: Sequence[float],
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each unit's predicted crashes over each span of years (by the SPF of its reference
    population, ``keys``) and its overdispersion ``k``."""
    preds = [np.zeros(len(units)) for _ in spans]
    kk = np.zeros(len(units))
    # each unit's population as a code: no Python string per unit
    codes, uniques = pd.factorize(keys)
    code_of = {str(k): i for i, k in enumerate(uniques)}
    units = _spf_columns(units)
    for key, f in spfs.items():
        sel = codes == code_of.get(str(key), -2)
        sub = units.loc[sel]
        for pred, years in zip(preds, spans, strict=True):
            pred[sel] = f.predict(sub, years)
        kk[sel] = f.overdispersion(sub)
    return preds, kk


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
