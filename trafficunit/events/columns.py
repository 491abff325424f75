"""Finding the source columns of the standard fields and checking their content."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .._errors import TrafficUnitWarning, ValidationError
from .report import _Report
from .schema import (
    _BOOL_FIELDS,
    _FLOAT_FIELDS,
    _INT_FIELDS,
    _TIME_FIELDS,
    GRADE_DEFAULTS,
    SEVERITY_DEFAULTS,
)
from .values import (
    _apply_map,
    _date_only,
    _parse_time_column,
    _to_bool,
    _to_int,
    clock_only,
    to_float,
)


def _find_column(df: pd.DataFrame, name: str, what: str, hint: str = "") -> str:
    if name in df.columns:
        return name
    norm = {str(c).strip().casefold(): c for c in df.columns}
    key = str(name).strip().casefold()
    if key in norm:
        return str(norm[key])
    close = difflib.get_close_matches(str(name), [str(c) for c in df.columns], n=3)
    close_hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    cols = ", ".join(str(c) for c in list(df.columns)[:40])
    raise ValidationError(
        f"column {name!r} (for {what}) is not in the file{close_hint}.{hint} Columns are: {cols}"
    )


def _resolve(df: pd.DataFrame, mapping: Mapping[str, Any], hint: str = "") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for fld, cols in mapping.items():
        if cols is None:
            continue
        names = [cols] if isinstance(cols, str) else list(cols)
        out[fld] = [_find_column(df, c, fld, hint) for c in names]
    return out


def _date_columns(raw: pd.DataFrame, taken: set[str], need: int) -> list[str]:
    """Columns not used for anything else whose values are all dates without a clock time
    (at least ``need`` of them)."""
    out = []
    for c in raw.columns:
        if c in taken:
            continue
        col = raw[c]
        v = col.dropna()
        if len(v) == 0 or len(v) < need:
            continue
        if pd.api.types.is_datetime64_any_dtype(col):
            if bool((v == v.dt.normalize()).all()):
                out.append(str(c))
            continue
        if not (pd.api.types.is_string_dtype(col) or col.dtype == object):
            continue
        if _date_only(v.head(200)).all() and _date_only(v).mean() >= 0.99:
            out.append(str(c))
    return out


def _share(mask: np.ndarray | pd.Series) -> float:
    m = np.asarray(mask, dtype=bool)
    return float(m.mean()) if len(m) else 0.0


def _content_check(fld: str, v: pd.Series, vmaps: Mapping[str, Any]) -> str | None:
    """Why a column named like field ``fld`` cannot be that field (``None``: it passes).
    ``v`` holds the column's non-missing values."""
    if len(v) == 0:
        return None  # an empty column of the field's name: the field, empty
    if fld in vmaps and fld not in ("severity", "grade"):
        v, _ = _apply_map(v, vmaps[fld])
    this_year = pd.Timestamp.now(tz="UTC").year
    if fld == "year":
        y = _to_int(v)
        if _share(((y >= 1900) & (y <= this_year)).fillna(False)) < 0.9:
            return f"its values are not years between 1900 and {this_year}"
    elif fld == "hour":
        h = _to_int(v)
        if _share(((h >= 0) & (h <= 24)).fillna(False)) < 0.9:
            return "its values are not hours 0-23"
    elif fld in _INT_FIELDS:
        c = _to_int(v)
        if _share((c >= 0).fillna(False)) < 0.9:
            return "its values are not counts"
    elif fld == "severity":
        _, unknown = _apply_map(v, vmaps.get("severity"), SEVERITY_DEFAULTS)
        if _share(~unknown) < 0.5:
            ex = ", ".join(repr(str(x)) for x in v[unknown].astype(str).unique()[:4])
            return (
                f"its values ({ex}) are not severity labels; name it with severity= and map "
                "the codes with severity_map="
            )
    elif fld == "grade":
        _, unknown = _apply_map(v, vmaps.get("grade"), GRADE_DEFAULTS)
        if _share(~unknown) < 0.5:
            return "its values are not hazard grades; map them with value_maps={'grade': ...}"
    elif fld == "event_id":
        if v.astype("string").duplicated().any():
            return "its values are not unique"
    elif fld in _FLOAT_FIELDS:
        if _share(np.isfinite(to_float(v).to_numpy())) < 0.9:
            return "its values are not numbers"
    elif fld in _BOOL_FIELDS and _share(~_to_bool(v)[1]) < 0.9:
        return "its values are not yes/no"
    return None


def _check_columns(
    raw: pd.DataFrame,
    cols: dict[str, list[str]],
    auto: set[str],
    origin: Mapping[str, str],
    *,
    kind: str,
    vmaps: Mapping[str, Any],
    taken: set[str],
    report: _Report,
    name: str,
) -> dict[str, str]:
    """Check the columns mapped to fields (in place) and say how each was chosen.

    A column taken for its name alone (``auto``) is kept only when its content passes the
    field's check; otherwise it is left out with a note. A time column holding clock times
    alone is never completed with a date, nor joined with a date column nobody named: taken
    for its name, it is left out with a note naming the date columns to give with it; named
    by the user alone, it is an error.
    """
    how: dict[str, str] = {}
    for fld in list(cols):
        how[fld] = origin.get(fld, "given") if fld not in auto else "taken for its name"
        c = cols[fld][0]
        if fld in _TIME_FIELDS and len(cols[fld]) == 1:
            v = raw[c].dropna()
            if pd.api.types.is_datetime64_any_dtype(raw[c]) or len(v) == 0:
                continue
            co = clock_only(v)
            if _share(co) >= 0.5:
                dates = _date_columns(raw, taken, need=int(0.9 * len(v)))
                example = str(v[co].iloc[0])
                spell = f"[{dates[0]!r}, {c!r}]" if len(dates) == 1 else f"['DATE', {c!r}]"
                cands = (
                    f" Columns of dates: {', '.join(repr(d) for d in dates)}."
                    if dates
                    else " The file has no column of dates."
                )
                msg = (
                    f"column {c!r} holds clock times only (e.g. {example!r}); a date is never "
                    f"made up. Give the date column with it: {fld}={spell}.{cands}"
                )
                if fld not in auto:
                    raise ValidationError(f"{name}: {msg}")
                del cols[fld], how[fld]
                note = f"{msg[:1].upper()}{msg[1:]} Event {fld} is left empty."
                report.notes.append(note)
                warnings.warn(f"{name}: {note}", TrafficUnitWarning, stacklevel=5)
                continue
            if fld in auto:
                t = _parse_time_column(v.head(2000), fmt=None, dayfirst=False, tz="UTC", hours=None)
                if _share(t.value.notna().to_numpy() | (t.year.notna().to_numpy())) < 0.5:
                    del cols[fld], how[fld]
                    report.notes.append(
                        f"column {c!r} not used for {fld}: its values are not dates and times"
                    )
                else:
                    how[fld] = "taken for its name; its values are dates"
            continue
        if fld not in auto:
            continue
        why = _content_check(fld, raw[c].dropna(), vmaps)
        if why is None:
            how[fld] = "taken for its name; its values passed the check"
        else:
            del cols[fld], how[fld]
            report.notes.append(f"column {c!r} not used for {fld}: {why}")
    return how


def _joined(df: pd.DataFrame, cols: list[str]) -> pd.Series:
    if len(cols) == 1:
        return df[cols[0]]
    parts = [df[c].astype("string").str.strip() for c in cols]
    out = parts[0].fillna("")
    for p in parts[1:]:
        out = (out + " " + p.fillna("")).str.strip()
    return out.mask(out == "")
