"""Constants and inputs of scoring: the units frame, the joined accidents, severities."""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from .._errors import ValidationError
from .._validate import require_gdf
from ..timefilter import Period, _data_period, as_period, filter_events

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


def _release_arrow_memory() -> None:
    """Hand back to the system the memory Arrow's allocator keeps from freed temporaries
    (pandas' string columns are Arrow arrays: each string step's output is such a temporary
    and mimalloc/jemalloc would otherwise hold it into the next step's peak)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _rows(frame: pd.DataFrame, which: np.ndarray) -> pd.DataFrame:
    """The rows ``which`` (a mask, or ascending positions) of ``frame``; the frame itself when
    that is every row (no copy of millions of rows to keep them all)."""
    if which.dtype == bool:
        return frame if which.all() else frame.loc[which]
    return frame if len(which) == len(frame) else frame.iloc[which]


def _first_of_each(ids: pd.Series) -> np.ndarray:
    """Positions of each id's first row, in row order (``drop_duplicates``'s rows).

    A stable Arrow sort of the ids, each compared with the one before: no Python string and
    no hash table per row (a tenth of ``drop_duplicates``' memory on millions of ids);
    missing ids count as one id.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(ids)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pool = pa.system_memory_pool()  # freed at once, not kept by Arrow's allocator
    arr = pa.array(ids.astype("string").array)
    if not isinstance(arr, pa.ChunkedArray):
        arr = pa.chunked_array([arr])
    order = pc.sort_indices(arr, memory_pool=pool)
    srt = pc.take(arr, order, memory_pool=pool)
    same = np.zeros(n, dtype=bool)  # equal to the id before it in sorted order
    if n > 1:
        eq = pc.equal(srt.slice(1), srt.slice(0, n - 1), memory_pool=pool)
        same[1:] = np.asarray(pc.fill_null(eq, False).to_numpy(zero_copy_only=False), dtype=bool)
    del srt
    first = np.ones(n, dtype=bool)
    first[np.asarray(order.to_numpy(zero_copy_only=False), dtype=np.int64)[same]] = False
    missing = np.flatnonzero(np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool))
    first[missing[1:]] = False
    return np.flatnonzero(first)


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
        acc = _rows(
            acc, (joined["kind"].astype("string").fillna("accident") == "accident").to_numpy()
        )
    if "event_id" in acc.columns:
        acc = _rows(acc, _first_of_each(acc["event_id"]))
    report["accidents"] = len(acc)
    if matched_only:
        matched = acc["unit_id"].notna().to_numpy()
        report["unmatched"] = int((~matched).sum())
        acc = _rows(acc, matched)
    per = as_period(period) if period is not None else _data_period(acc)
    if per is not None:
        acc = filter_events(acc, period=per)
        rep = acc.attrs.pop("time_report", {})
        report["outside_period"] = rep.get("outside_period", 0)
        report["no_date"] = rep.get("no_date", 0)
    # a new frame over the same columns (copy-on-write: no copy of the rows)
    out = acc.copy(deep=False)
    out["severity"] = _severity(out)
    report["unknown_severity"] = int(out["severity"].isna().sum())
    report["used"] = len(out)
    return out, per, report
