"""Parsing values written by people: numbers, value maps, flags, text and times."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .report import _isna
from .schema import _FALSE, _TRUE, ValueMap


def to_float(values: pd.Series, *, decimal: str | None = None) -> pd.Series:
    """Parse numbers written by people: stray spaces, decimal commas, thousands separators.

    ``"25501661,91"`` → 25501661.91, ``" 1 234,5 "`` → 1234.5, ``"1,234.5"`` → 1234.5,
    ``"1.234,5"`` → 1234.5. Anything else that is not a number becomes NaN.

    Parameters
    ----------
    values
        Strings or numbers.
    decimal
        ``","`` or ``"."`` when the file's decimal mark is known; by default each value's
        last ``,`` or ``.`` is its decimal mark when the other one also appears, and a lone
        comma is a decimal comma.
    """
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    s = values.astype("string").str.strip()
    s = s.mask(s == "")
    # only values with spaces, commas or apostrophes need the slow treatment
    odd = s.str.contains("[ ,'\u00a0\u202f\t]", regex=True).fillna(False).to_numpy(dtype=bool)
    if odd.any():
        s = s.copy()
        s[odd] = _clean_number_text(s[odd], decimal)
    try:
        out = s.astype("float64")
    except (ValueError, TypeError):
        out = pd.to_numeric(s, errors="coerce")
    return pd.Series(np.asarray(out, dtype="float64"), index=values.index, name=values.name)


_NUMBER_SPACES = re.compile("[\\s\u00a0\u202f']")


def _clean_number_text(s: pd.Series, decimal: str | None) -> pd.Series:
    """Spaces, apostrophes and the thousands/decimal marks of the given strings normalised."""

    def one(text: str) -> str:
        t = _NUMBER_SPACES.sub("", text)
        if decimal == ",":
            return t.replace(".", "").replace(",", ".")
        if decimal == ".":
            return t.replace(",", "")
        c, d = t.rfind(","), t.rfind(".")
        if c >= 0 and d >= 0:
            return t.replace(".", "").replace(",", ".") if c > d else t.replace(",", "")
        return t.replace(",", ".") if c >= 0 else t

    return s.map(one, na_action="ignore")


def _norm_key(v: Any) -> str:
    """Key used to compare a source value with a mapping key."""
    if isinstance(v, bool | np.bool_):
        return str(v).lower()
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return str(int(v)) if np.isfinite(v) and float(v).is_integer() else repr(float(v))
    text = re.sub(r"\s+", " ", str(v)).strip().casefold()
    if re.fullmatch(r"[+-]?\d+(\.0+)?", text):
        return str(int(float(text)))
    return text


def _apply_map(
    values: pd.Series, mapping: ValueMap | None, defaults: Mapping[str, Any] | None = None
) -> tuple[pd.Series, np.ndarray]:
    """Map values; return (mapped object Series with NaN where unmapped, unmapped-given mask)."""
    present = values.notna().to_numpy()
    if callable(mapping):
        out = pd.Series(mapping(values.copy()), index=values.index, dtype=object)
        return out, present & out.isna().to_numpy()
    table: dict[str, Any] = {}
    if defaults:
        table.update({_norm_key(k): v for k, v in defaults.items()})
    if mapping:
        table.update({_norm_key(k): v for k, v in mapping.items()})
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    mapped_uniques = np.array([table.get(_norm_key(u)) for u in uniques], dtype=object)
    out_arr = np.full(len(values), None, dtype=object)
    ok = codes >= 0
    out_arr[ok] = mapped_uniques[codes[ok]]
    out = pd.Series(out_arr, index=values.index, dtype=object)
    return out, present & out.isna().to_numpy()


def _count_values(values: pd.Series, mask: np.ndarray, top: int = 10) -> dict[str, int]:
    vc = values[mask].astype(str).value_counts().head(top)
    return {str(k): int(v) for k, v in vc.items()}


_YEAR_RE = r"\d{4}(?:\.0+)?"
_EPOCH_RE = r"\d{9,10}(?:\.\d+)?"
_AWARE_RE = r".*(?:[zZ]|[+-]\d{2}:?\d{2}|\bUTC|\bGMT)"


def _parse_datetimes(s: pd.Series, fmt: str | None, dayfirst: bool, utc: bool) -> pd.Series:
    kwargs: dict[str, Any] = {"errors": "coerce", "utc": utc}
    if fmt:
        kwargs["format"] = fmt
    else:
        kwargs["dayfirst"] = dayfirst
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = pd.to_datetime(s, **kwargs)
        if not fmt:
            retry = out.isna() & s.notna()
            if retry.any():
                again = pd.to_datetime(
                    s[retry], errors="coerce", utc=utc, format="mixed", dayfirst=dayfirst
                )
                out = out.astype(again.dtype) if len(again) else out
                out[retry] = again
    return out


#: A clock time without a date: ``12:29``, ``08:32:10``, ``7:05 PM``, ``3 pm``.
_CLOCK_RE = (
    r"\d{1,2}[:.]\d{2}(?:[:.]\d{2}(?:[.,]\d+)?)?(?:\s*[AaPp]\.?[Mm]\.?)?|\d{1,2}\s*[AaPp]\.?[Mm]\.?"
)
#: Something that carries a year: a 4-digit number, a d/m/yy date or a compact yyyymmdd.
_HAS_YEAR_RE = r"(?<!\d)\d{4}(?!\d)|(?<!\d)\d{1,2}[./-]\d{1,2}[./-]\d{2}(?!\d)|^\d{8}$"
#: A date without a clock time.
_DATE_ONLY_RE = (
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:T?00:00(?::00)?)?|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|"
    r"\d{4}年\d{1,2}月\d{1,2}日?|\d{8}"
)
_YEAR_DIRECTIVES = ("%Y", "%y", "%G", "%s")


def clock_only(values: pd.Series) -> np.ndarray:
    """Mask of values that are a clock time with no date (``"12:29"``, ``"7:05 PM"``)."""
    s = values.astype("string").str.strip()
    return s.str.fullmatch(_CLOCK_RE).fillna(False).to_numpy(dtype=bool)


def _date_only(values: pd.Series) -> np.ndarray:
    s = values.astype("string").str.strip()
    return s.str.fullmatch(_DATE_ONLY_RE).fillna(False).to_numpy(dtype=bool)


@dataclass
class _Times:
    value: pd.Series  # tz-aware
    year_only: np.ndarray
    year: pd.Series  # Int64, from year-only values
    bad: np.ndarray
    no_date: np.ndarray  # a clock time or other text without a date: never given one
    naive: bool
    date_only: bool
    local_hour: pd.Series | None = None  # when rows lie in several zones (value is UTC)


def _localize(nv: pd.Series, tz: str, zones: np.ndarray | None) -> pd.Series:
    """Naive datetimes as local time: in ``tz``, or each row in its own zone (→ UTC)."""
    opts: dict[str, Any] = {"ambiguous": np.zeros(len(nv), dtype=bool)}
    if zones is None:
        return nv.dt.tz_localize(tz, nonexistent="shift_forward", **opts)
    out = pd.Series(pd.NaT, index=nv.index, dtype="datetime64[us, UTC]")
    zs = pd.Series(zones, index=nv.index).fillna("UTC")
    for zone, idx in zs.groupby(zs, sort=False).groups.items():
        part = nv.loc[idx]
        loc = part.dt.tz_localize(
            str(zone), nonexistent="shift_forward", ambiguous=np.zeros(len(part), dtype=bool)
        )
        out.loc[idx] = loc.dt.tz_convert("UTC").dt.as_unit("us")
    return out


def _parse_time_column(
    raw: pd.Series,
    *,
    fmt: str | None,
    dayfirst: bool,
    tz: str,
    hours: pd.Series | None,
    zones: np.ndarray | None = None,
) -> _Times:
    """Parse a time field. ``zones``: each row's time zone when the rows lie in several (the
    result is then in UTC and ``local_hour`` holds each row's local clock hour)."""
    s = raw.astype("string").str.strip()
    s = s.mask(s == "")
    present = s.notna().to_numpy()
    cjk = s.str.contains("年", regex=False).fillna(False).to_numpy(dtype=bool)
    if cjk.any():  # 2024年3月1日 14时05分 → 2024-3-1 14:05
        s = s.copy()
        s[cjk] = (
            s[cjk]
            .str.replace(r"(\d+)年(\d+)月(\d+)日?", r"\1-\2-\3 ", regex=True)
            .str.replace(r"(\d+)[时點点](\d+)分?", r"\1:\2", regex=True)
            .str.strip()
        )
    year_only = present & s.str.fullmatch(_YEAR_RE).fillna(False).to_numpy()
    yr = pd.Series(pd.NA, index=raw.index, dtype="Int64")
    if year_only.any():
        y = pd.to_numeric(s[year_only], errors="coerce").astype("Int64")
        y = y.where((y >= 1000) & (y <= 2999))
        yr[year_only] = y
    epoch = present & ~year_only & s.str.fullmatch(_EPOCH_RE).fillna(False).to_numpy()
    aware = present & ~year_only & ~epoch & s.str.fullmatch(_AWARE_RE).fillna(False).to_numpy()
    naive = present & ~year_only & ~epoch & ~aware
    # a value with no year in it would be completed with today's date by the parser: refuse
    if fmt:
        no_date = np.zeros(len(s), dtype=bool)
    else:
        has_year = s.str.contains(_HAS_YEAR_RE, regex=True).fillna(False).to_numpy(dtype=bool)
        no_date = (naive | aware) & ~has_year
    naive &= ~no_date
    aware &= ~no_date
    out_tz = "UTC" if zones is not None else tz
    out = pd.Series(pd.NaT, index=raw.index, dtype=f"datetime64[us, {out_tz}]")
    date_only = False
    if naive.any():
        nv = _parse_datetimes(s[naive], fmt, dayfirst, utc=False)
        if isinstance(nv.dtype, pd.DatetimeTZDtype):  # format carried an offset
            nv = nv.dt.tz_convert(out_tz)
        else:
            ok = nv.dropna()
            date_only = bool(len(ok)) and bool((ok == ok.dt.normalize()).all())
            if date_only and hours is not None:
                h = hours[naive]
                nv = nv + pd.to_timedelta(h.astype("float64").fillna(0.0), unit="h")
            nv = _localize(nv, tz, zones[naive] if zones is not None else None)
        out[naive] = nv.dt.as_unit("us").astype(out.dtype)
    if aware.any():
        av = _parse_datetimes(s[aware], fmt, dayfirst, utc=True)
        out[aware] = av.dt.tz_convert(out_tz).dt.as_unit("us")
    if epoch.any():
        ev = pd.to_datetime(pd.to_numeric(s[epoch]), unit="s", utc=True, errors="coerce")
        out[epoch] = ev.dt.tz_convert(out_tz).dt.as_unit("us")
    parsed = out.notna().to_numpy()
    bad = present & ~year_only & ~parsed & ~no_date
    bad |= year_only & yr.isna().to_numpy()
    local_hour = None
    if zones is not None:
        # each row's wall clock in its own zone; when the main zone shows the same clock for
        # every row (Shenzhen and Hong Kong, say), the times are stored in the main zone
        zs = pd.Series(zones, index=raw.index).fillna("UTC")
        main = str(zs.value_counts().index[0])
        wall = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us]")
        for zone, idx in zs.groupby(zs, sort=False).groups.items():
            wall.loc[idx] = out.loc[idx].dt.tz_convert(str(zone)).dt.tz_localize(None)
        in_main = out.dt.tz_convert(main)
        if bool((in_main.dt.tz_localize(None) == wall)[out.notna()].all()):
            out = in_main
        else:
            local_hour = wall.dt.hour.astype("Int64")
    return _Times(
        out, year_only, yr, bad, no_date & present, bool(naive.any()), date_only, local_hour
    )


def _to_int(values: pd.Series) -> pd.Series:
    f = to_float(values)
    whole = f.where(np.isfinite(f) & (np.floor(f) == f))
    return whole.round().astype("Int64")


def _to_bool(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    keys = values.map(lambda v: None if _isna(v) else _norm_key(v))
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[keys.isin(_TRUE)] = True
    out[keys.isin(_FALSE - {""})] = False
    return out, values.notna().to_numpy() & out.isna().to_numpy()


def _text(values: pd.Series) -> pd.Series:
    """Trimmed text with inner runs of white space collapsed; empty → <NA>."""
    s = values.astype("string").str.strip()
    # literal patterns: pyarrow answers them natively (a regex class like \s is slow)
    runs = s.str.contains("  |\t|\r|\n", regex=True).fillna(False).to_numpy(dtype=bool)
    if runs.any():
        s = s.copy()
        s[runs] = s[runs].str.replace(r"\s+", " ", regex=True)
    return s.mask(s == "")
