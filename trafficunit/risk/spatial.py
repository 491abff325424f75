"""Spatial statistics over unit adjacency: Getis-Ord Gi* and local Moran (:func:`hotspots`)."""

from __future__ import annotations

import warnings
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from .._errors import ValidationError
from ..settings import RiskSettings


def _adjacency(risk: pd.DataFrame) -> Any:
    """libpysal Graph from the ';'-joined ``neighbours`` column, binary, symmetric."""
    from .._optional import require

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
    from .._optional import require

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
    from scipy import stats  # here: scipy.stats takes a third of a second to import

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
