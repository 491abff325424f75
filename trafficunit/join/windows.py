"""Which events are active in a time window (:func:`active_between`, :func:`active_at`)."""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import pandas as pd

from .._errors import ValidationError


def _as_ts(t: Any, tz: Any) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    if ts.tzinfo is None:
        ts = ts.tz_localize(tz or "UTC")
    return ts


def active_between(
    workzones: gpd.GeoDataFrame | pd.DataFrame, start: Any, end: Any
) -> gpd.GeoDataFrame | pd.DataFrame:
    """Work zones (or joined rows) whose ``[start, end]`` overlaps the window ``[start, end]``.

    A missing ``start`` means "since ever", a missing ``end`` "until further notice". Naive
    times are read in the zones' time zone.
    """
    if "start" not in workzones.columns or "end" not in workzones.columns:
        raise ValidationError("work zones need 'start' and 'end' columns (tu.read_events)")
    s = workzones["start"]
    e = workzones["end"]
    tz = getattr(s.dtype, "tz", None) or getattr(e.dtype, "tz", None)
    t0, t1 = _as_ts(start, tz), _as_ts(end, tz)
    if t1 < t0:
        raise ValidationError(f"window ends ({t1}) before it starts ({t0})")
    ok = (s.isna() | (s <= t1)) & (e.isna() | (e >= t0))
    return workzones.loc[ok.to_numpy(dtype=bool)]


def active_at(
    workzones: gpd.GeoDataFrame | pd.DataFrame, t: Any
) -> gpd.GeoDataFrame | pd.DataFrame:
    """Work zones (or joined rows) active at time ``t``: ``start <= t <= end``.

    Examples
    --------
    >>> import pandas as pd
    >>> wz = pd.DataFrame({"start": pd.to_datetime(["2018-06-01", "2018-06-10"]).tz_localize("UTC"),
    ...                    "end": pd.to_datetime(["2018-06-05", "2018-06-20"]).tz_localize("UTC")})
    >>> len(active_at(wz, "2018-06-03")), len(active_at(wz, "2018-06-07"))
    (1, 0)
    """
    return active_between(workzones, t, t)
