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
>>> import pandas as pd
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

Layout: :mod:`.inputs` (the units frame, joined accidents, severities), :mod:`.spf` (safety
performance functions), :mod:`.measures` (measures, percentiles, levels, open hazards),
:mod:`.scoring` (:func:`score`), :mod:`.spatial` (:func:`hotspots`), :mod:`.explanations`
(:func:`explain`, :func:`describe_events`, :func:`top`) and :mod:`.before_after`
(:func:`compare_periods`).
"""

from __future__ import annotations

# Names imported with `as` (not in `__all__`) are imported from here by other library modules.
from .before_after import compare_periods
from .explanations import _attribute_notes as _attribute_notes
from .explanations import describe_events, explain, top
from .explanations import dominant_phrases as dominant_phrases
from .inputs import COVARIATES as COVARIATES
from .inputs import MEASURES, SEVERITIES, accidents
from .inputs import _units_frame as _units_frame
from .measures import _hazard_counts as _hazard_counts
from .measures import _level_measure as _level_measure
from .measures import _levels as _levels
from .scoring import SPARSE_REMEDY as SPARSE_REMEDY
from .scoring import score
from .spatial import hotspots
from .spf import SafetyPerformanceFunction, fit_spfs

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
