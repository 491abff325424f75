"""The field stage of a read: each standard field's values from its source column(s).

Times are parsed in the zone the time-zone stage found; severities and grades are mapped
onto their codes; counts, numbers, flags and text are converted; every value that cannot be
used marks its row dropped with the reason. Event ids come last: duplicates are looked for
only among the rows the other checks keep.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from .._errors import TrafficUnitWarning, ValidationError
from .columns import _joined
from .report import _Options, _Source
from .schema import (
    _BOOL_FIELDS,
    _FLOAT_FIELDS,
    _INT_FIELDS,
    _TIME_FIELDS,
    FIELDS,
    GRADE_DEFAULTS,
    KABCO,
    SEVERITY_DEFAULTS,
)
from .timezones import _describe_time, _zone_counts
from .values import (
    _apply_map,
    _count_values,
    _parse_time_column,
    _text,
    _to_bool,
    _to_int,
    to_float,
)


def _fields(
    src: _Source, opt: _Options, tz_name: str, zones_rows: np.ndarray | None
) -> tuple[dict[str, Any], pd.Series | None]:
    """Each standard field of the kind (``event_id`` and ``hour`` apart) that the source has,
    plus ``_year_only``, ``_date_only`` and ``_local_hour`` from the time; and the hours of an
    ``hour`` column (``None``: no such column)."""
    out: dict[str, Any] = {}
    now = pd.Timestamp.now(tz="UTC")
    hours_src = _hours(src, opt.vmaps)
    naive_seen = False
    for fld in FIELDS[src.kind]:
        if fld == "event_id" or fld == "hour":
            continue
        if fld in _TIME_FIELDS:
            naive_seen |= _time_field(src, fld, opt, out, now, tz_name, zones_rows, hours_src)
        elif fld in src.cols:
            values = _joined(src.raw, src.cols[fld])
            if fld in ("severity", "grade"):
                out[fld] = _coded(src, fld, values, opt.vmaps)
            else:
                out[fld] = _converted(src, fld, values, opt, now)
    report = src.report
    if naive_seen and opt.get("tz") is None and report.tz_how and report.tz_how.startswith("UTC"):
        msg = (
            f"{src.name}: times have no time zone and none could be looked up; read as UTC. "
            "Pass tz="
        )
        report.notes.append(msg)
        # stacklevel: here, _read, read_events, then the caller
        warnings.warn(msg, TrafficUnitWarning, stacklevel=4)
    return out, hours_src


def _hours(src: _Source, vmaps: dict[str, Any]) -> pd.Series | None:
    """The hours of the ``hour`` column (values outside 0-23 set to ``<NA>``), if any."""
    if "hour" not in src.cols:
        return None
    h = _joined(src.raw, src.cols["hour"])
    if "hour" in vmaps:
        h, _ = _apply_map(h, vmaps["hour"])
    hours = _to_int(h)
    bad_h = hours.notna() & ((hours < 0) | (hours > 23))
    if bad_h.any():
        src.report.notes.append(f"{int(bad_h.sum())} hour values outside 0-23 set to <NA>")
    return hours.mask(bad_h)


def _time_field(
    src: _Source,
    fld: str,
    opt: _Options,
    out: dict[str, Any],
    now: pd.Timestamp,
    tz_name: str,
    zones_rows: np.ndarray | None,
    hours_src: pd.Series | None,
) -> bool:
    """Parse the time field ``fld`` into ``out``; whether some times were written without a
    zone."""
    raw, report, drops = src.raw, src.report, src.drops
    if fld not in src.cols:
        out[fld] = pd.Series(pd.NaT, index=raw.index, dtype=f"datetime64[us, {tz_name}]")
        return False
    cols = src.cols[fld]
    values = _joined(raw, cols)
    if fld in opt.vmaps:
        values, _ = _apply_map(values, opt.vmaps[fld])
    t = _parse_time_column(
        values,
        fmt=opt.get("time_format"),
        dayfirst=bool(opt.get("dayfirst")),
        tz=tz_name,
        hours=hours_src if fld == "time" else None,
        zones=zones_rows,
    )
    drops.mark(t.no_date, "time without a date", cols)
    drops.mark(t.bad, "bad time", cols)
    if fld in ("time", "reported_at"):  # when it happened: not after the read
        y1900 = pd.Timestamp("1900-01-01", tz="UTC")
        future = np.asarray((t.value > now).fillna(False), dtype=bool) | np.asarray(
            (t.year > now.year).fillna(False), dtype=bool
        )
        early = np.asarray((t.value < y1900).fillna(False), dtype=bool) | np.asarray(
            (t.year < 1900).fillna(False), dtype=bool
        )
        drops.mark(future, "dated in the future", cols)
        drops.mark(early, "dated before 1900", cols)
    out[fld] = t.value
    stored = str(getattr(t.value.dt, "tz", ""))
    if zones_rows is not None and stored != "UTC":
        report.tz = stored
        report.tz_how = (
            f"looked up from the coordinates ({_zone_counts(report)}); every row keeps "
            f"the same clock in {stored}"
        )
    if fld == "time":
        out["_year_only"] = t.year
        out["_date_only"] = t.date_only
        out["_local_hour"] = t.local_hour
        report.time_built = _describe_time(
            cols, opt.get("time_format"), t, hours_col=src.cols.get("hour"), report=report
        )
    return bool(t.naive)


def _coded(src: _Source, fld: str, values: pd.Series, vmaps: dict[str, Any]) -> pd.Series:
    """Severity (KABCO letters) or grade (general / major) through the value map and the
    defaults; rows with an unknown value (or no severity) are dropped."""
    cols = src.cols[fld]
    defaults = SEVERITY_DEFAULTS if fld == "severity" else GRADE_DEFAULTS
    mapped, unknown = _apply_map(values, vmaps.get(fld), defaults)
    if fld == "severity":
        bad_letters = set(mapped.dropna().unique()) - set(KABCO)
        if bad_letters:
            raise ValidationError(
                f"severity_map gives {sorted(map(str, bad_letters))}; map to one of "
                f"{', '.join(KABCO)}"
            )
    if unknown.any():
        src.report.unknown_values[fld] = _count_values(values, unknown)
    if fld == "severity":
        src.drops.mark(values.isna().to_numpy(), "missing severity", cols)
    src.drops.mark(unknown, f"unknown {fld}", cols)
    return mapped.astype("string")


def _converted(
    src: _Source, fld: str, values: pd.Series, opt: _Options, now: pd.Timestamp
) -> pd.Series:
    """A count, number, flag or text field, after its value map."""
    if fld in opt.vmaps:
        values, _ = _apply_map(values, opt.vmaps[fld])
    if fld in _INT_FIELDS:
        v = _to_int(values)
        if fld == "year":
            cols = src.cols[fld]
            src.drops.mark((v > now.year).fillna(False).to_numpy(bool), "dated in the future", cols)
            src.drops.mark((v < 1900).fillna(False).to_numpy(bool), "dated before 1900", cols)
        return v.mask(v < 0)
    if fld in _FLOAT_FIELDS:
        return to_float(values, decimal=opt.get("decimal"))
    if fld in _BOOL_FIELDS:
        return _to_bool(values)[0]
    return _text(values)


def _event_ids(src: _Source) -> pd.Series:
    """Each row's id: from the id column (row number where empty), else the row number.
    Rows repeating an id kept by an earlier row are dropped."""
    raw, n = src.raw, src.n
    gen = pd.Series([str(i + 1) for i in range(n)], index=raw.index, dtype="string")
    if "event_id" not in src.cols:
        return gen
    ids = _text(_joined(raw, src.cols["event_id"]).astype("string"))
    ids = ids.str.replace(r"\.0$", "", regex=True)
    no_id = ids.isna()
    if no_id.any():
        src.report.notes.append(f"{int(no_id.sum())} rows without an id got their row number")
    ids = ids.fillna("row" + gen)
    # duplicates only among rows that survive the other checks
    live_ids = ids.where(src.drops.keep)
    dup = live_ids.duplicated(keep="first").to_numpy() & live_ids.notna().to_numpy()
    src.drops.mark(dup, "duplicate id", src.cols["event_id"])
    return ids
