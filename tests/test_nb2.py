"""The NB2 model that evaluates its special functions once per distinct count fits exactly
what statsmodels' own ``NegativeBinomial`` fits: the SPFs, hence the EB values and levels,
do not move by a bit."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.discrete.discrete_model import NegativeBinomial

from trafficunit.risk._nb2 import nb2_model


def _data(seed: int, n: int, k: float, slope: float) -> tuple[np.ndarray, ...]:
    """Counts over lengths (km) drawn as a segment population's: NB2 with ``k``."""
    rng = np.random.default_rng(seed)
    length = rng.lognormal(-1.5, 1.0, n)
    x = np.column_stack([np.ones(n), np.log(length)])
    mu = np.exp(-0.5 + slope * np.log(length)) * 3.0
    y = rng.poisson(rng.gamma(1 / k, k * mu)) if k > 0 else rng.poisson(mu)
    return y.astype(float), x, np.full(n, 3.0)


def _fit(model: Any) -> Any:
    """The model's Newton fit (as the SPF fits it), or the error it raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return model.fit(disp=0, maxiter=200, method="newton")
        except (np.linalg.LinAlgError, ValueError, OverflowError) as exc:
            return exc


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(10, 400),
    k=st.sampled_from([0.0, 0.05, 0.4, 2.0, 8.0]),
    slope=st.floats(0.2, 1.2),
)
def test_fits_equal_statsmodels_to_the_bit(seed: int, n: int, k: float, slope: float) -> None:
    y, x, exposure = _data(seed, n, k, slope)
    ours = _fit(nb2_model(y, x, exposure))
    theirs = _fit(NegativeBinomial(y, x, loglike_method="nb2", exposure=exposure))
    if isinstance(theirs, Exception):  # a degenerate sample (few counts): the same failure
        assert type(ours) is type(theirs) and str(ours) == str(theirs)
        return
    assert not isinstance(ours, Exception)
    assert np.array_equal(ours.params, theirs.params, equal_nan=True)
    assert ours.mle_retvals["iterations"] == theirs.mle_retvals["iterations"]
    assert ours.mle_retvals["converged"] == theirs.mle_retvals["converged"]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    params=st.tuples(st.floats(-3, 3), st.floats(-2, 2), st.floats(1e-3, 50.0)),
)
def test_loglike_score_and_hessian_equal_statsmodels(
    seed: int, params: tuple[float, float, float]
) -> None:
    y, x, exposure = _data(seed, 200, 0.4, 0.8)
    ours = nb2_model(y, x, exposure)
    theirs = NegativeBinomial(y, x, loglike_method="nb2", exposure=exposure)
    p = np.asarray(params)
    for transformed in (False, True):  # alpha itself (Newton) or its log (other methods)
        ours._transparams = theirs._transparams = transformed
        q = np.r_[p[:-1], np.log(p[-1])] if transformed else p
        for method in ("loglikeobs", "score", "hessian"):
            got, want = getattr(ours, method)(q), getattr(theirs, method)(q)
            assert np.array_equal(got, want, equal_nan=True), method


def test_many_units_few_distinct_counts_take_the_short_path() -> None:
    """The special functions see the distinct counts only (what makes the fit quicker)."""
    y, x, exposure = _data(7, 5000, 0.4, 0.8)
    model = nb2_model(y, x, exposure)
    model._transparams = False
    model.hessian(np.array([-0.5, 0.8, 0.4]))
    assert model._distinct is not None
    assert len(model._distinct[0]) == len(np.unique(y)) < 100
