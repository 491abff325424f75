"""statsmodels' NB2 model, its special functions evaluated once per distinct count.

A Newton fit of :class:`statsmodels.discrete.discrete_model.NegativeBinomial` evaluates the
trigamma, digamma and log-gamma functions of ``1/alpha + y`` for every unit at every step:
on a population of 857,000 units, two thirds of the fit's time (scipy's ``polygamma`` alone
0.65 s of 1.1 s). The counts ``y`` take a few dozen distinct values, so each function is
evaluated once per distinct count and spread back to the units: the same function on the
same arguments, so the same numbers, and the rest of statsmodels' arithmetic is untouched
(the overriding methods below repeat statsmodels 0.14/0.15's expressions for NB2, Q = 0).
``tests/test_spf.py`` checks the fits equal statsmodels' own to the bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def nb2_model(endog: np.ndarray, exog: np.ndarray, exposure: np.ndarray) -> Any:
    """An NB2 ``NegativeBinomial(endog, exog, exposure=exposure)`` whose score, Hessian and
    log-likelihood evaluate their special functions once per distinct count."""
    from scipy import special
    from statsmodels.discrete.discrete_model import NegativeBinomial

    class _DistinctCountsNB2(NegativeBinomial):
        _distinct: tuple[np.ndarray, np.ndarray] | None = None

        def _per_count(self, fn: Callable[[Any], Any], shift: Any) -> np.ndarray:
            """``fn(shift + endog)`` (``shift`` a scalar) as an (n,) array."""
            if self._distinct is None:
                uy, inv = np.unique(self.endog, return_inverse=True)
                self._distinct = (uy, inv.reshape(-1))
            uy, inv = self._distinct
            return np.asarray(fn(shift + uy))[inv]

        def _ll_nbin(self, params: Any, alpha: Any, Q: int = 0) -> Any:
            if Q != 0 or np.any(np.iscomplex(params)) or np.iscomplex(alpha):
                return super()._ll_nbin(params, alpha, Q)
            endog = self.endog
            mu = self.predict(params)
            size = 1 / alpha * mu**Q
            prob = size / (size + mu)
            c = 1 / alpha  # every element of size (mu**0 is 1)
            coeff = (
                self._per_count(special.gammaln, c)
                - self._per_count(special.gammaln, 1)
                - special.gammaln(c)
            )
            return coeff + size * np.log(prob) + endog * np.log(1 - prob)

        def _score_nbin(self, params: Any, Q: int = 0) -> Any:
            if Q != 0:
                return super()._score_nbin(params, Q)
            alpha = np.exp(params[-1]) if self._transparams else params[-1]
            params = params[:-1]
            exog = self.exog
            y = self.endog[:, None]
            mu = self.predict(params)[:, None]
            a1 = 1 / alpha * mu**Q
            c = 1 / alpha  # every element of a1 (mu**0 is 1)
            dgpart = self._per_count(special.digamma, c)[:, None] - special.digamma(c)
            dparams = exog * a1 * (y - mu) / (mu + a1)
            da1 = -(alpha**-2)
            dalpha = (dgpart + np.log(a1) - np.log(a1 + mu) - (y - mu) / (a1 + mu)).sum() * da1
            if self._transparams:
                return np.r_[dparams.sum(0), dalpha * alpha]
            return np.r_[dparams.sum(0), dalpha]

        def _hessian_nb2(self, params: Any) -> Any:
            alpha = np.exp(params[-1]) if self._transparams else params[-1]
            a1 = 1 / alpha
            params = params[:-1]
            exog = self.exog
            y = self.endog[:, None]
            mu = self.predict(params)[:, None]
            prob = a1 / (a1 + mu)
            dgpart = self._per_count(special.digamma, a1)[:, None] - special.digamma(a1)
            dim = exog.shape[1]
            hess_arr = np.empty((dim + 1, dim + 1))
            const_arr = a1 * mu * (a1 + y) / (mu + a1) ** 2
            for i in range(dim):
                for j in range(i + 1):
                    hess_arr[i, j] = np.sum(
                        -exog[:, i, None] * exog[:, j, None] * const_arr, axis=0
                    ).squeeze()
            tri_idx = np.triu_indices(dim, k=1)
            hess_arr[tri_idx] = hess_arr.T[tri_idx]
            da1 = -(alpha**-2)
            dldpda = -np.sum(mu * exog * (y - mu) * a1**2 / (mu + a1) ** 2, axis=0)
            hess_arr[-1, :-1] = dldpda
            hess_arr[:-1, -1] = dldpda
            da2 = 2 * alpha**-3
            dalpha = da1 * (dgpart + np.log(prob) - (y - mu) / (a1 + mu))
            trigamma = self._per_count(lambda x: special.polygamma(1, x), a1)[:, None]
            dada = (
                da2 * dalpha / da1
                + da1**2
                * (
                    trigamma
                    - special.polygamma(1, a1)
                    + 1 / a1
                    - 1 / (a1 + mu)
                    + (y - mu) / (mu + a1) ** 2
                )
            ).sum()
            hess_arr[-1, -1] = dada
            return hess_arr

    return _DistinctCountsNB2(endog, exog, loglike_method="nb2", exposure=exposure)
