"""Read accidents, hazards and road works from the files people actually produce.

:func:`read_events` maps a file's columns onto one of three standard schemas and returns a
GeoDataFrame in EPSG:4326, one row per event. The mapping is the user's to give (column names
differ in every source); :mod:`trafficunit.presets` holds worked examples for real files.

Standard schemas (columns always present, ``<NA>`` where the source has no value):

==============  =============================================================================
kind            columns
==============  =============================================================================
all             ``event_id`` (str, unique), ``kind``, ``road_name``, ``geometry``
``accident``    ``time`` (tz-aware; NaT when only a year is known), ``year``, ``hour`` (Int64),
                ``severity`` (KABCO letter ``K A B C O``), ``deaths``, ``serious_injuries``,
                ``minor_injuries``, ``injuries`` (Int64), ``collision_type``, ``light``,
                ``weather``
``hazard``      ``category``, ``grade`` (``"general"`` | ``"major"``), ``status``,
                ``reported_at`` (tz-aware); point, line or polygon
``workzone``    ``site_code``, ``start``, ``end`` (tz-aware), ``lanes_taken`` (Float),
                ``night_works`` (boolean); point, line or polygon (optionally buffered)
==============  =============================================================================

Source columns not used for a standard field are kept unchanged (prefixed ``src_`` if their
name collides with a standard one).

No silent guesses: a column the user did not name is used for a field only through a preset,
or when it has the field's name (or an alias in :data:`ALIASES`) and its content passes the
field's check. A column of clock times alone is used only with the date column the user names
beside it (``time=["date", "time"]``), else left out or refused; it is never completed with the
date of the run. The read summary in
``.attrs["report"]`` says where every field came from (``fields``) and what was detected
(``encoding``, ``sep``, ``crs``, ``tz`` with ``tz_how``, ``time_built``).

What real files throw at an importer, and what happens here:

- CSV separator sniffed (``, ; tab |``) unless given; UTF-8 with or without BOM, else the
  most plausible of GB18030, Big5 and cp1252 (charset-normalizer, then checked against the
  whole file); quoted fields with separators and newlines; stray spaces around values and
  names; decimal commas (``"25501661,91"``) and thousands separators in numbers.
- Times written without a zone are local time where the event happened: the zone is looked
  up from the coordinates (timezonefinder) unless ``tz=`` is given.
- GeoJSON, GeoPackage, Shapefile, FlatGeobuf, GeoParquet (geometry and CRS from the file), plain
  Parquet, or a (Geo)DataFrame.
- Positions from x/y columns in any CRS pyproj knows (``crs=3879``, ``"EPSG:27700"``, CGCS2000
  ``4490`` and its Gauss-Krüger zones), from the Chinese consumer-map systems ``crs="gcj02"``
  / ``"bd09"`` (see :mod:`trafficunit.chinacrs`), or from a WKT/EWKT column (``geometry=``),
  falling back to x/y where that column is empty.
- Every dropped row is counted by reason in ``events.attrs["report"]``: ``missing
  coordinates``, ``unparseable coordinates``, ``coordinates (0, 0)``, ``x and y swapped``,
  ``degrees given for a CRS in metres``, ``outside the valid area``, ``far outside the data's
  extent``, ``bad time``, ``time without a date``, ``dated in the future``, ``dated before
  1900``, ``missing severity``, ``unknown severity``, ``unknown grade``, ``duplicate id``. A warning
  says how many were dropped; ``strict=True`` raises instead.
"""

from __future__ import annotations

import csv
import difflib
import io
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from . import chinacrs
from ._errors import CRSError, InputFileError, TrafficUnitWarning, ValidationError
from .settings import EVENT_KINDS, EventSettings

__all__ = [
    "ALIASES",
    "ENCODING_CANDIDATES",
    "clock_only",
    "zones_at",
    "FIELDS",
    "SEVERITY_DEFAULTS",
    "GRADE_DEFAULTS",
    "read_events",
    "to_float",
    "KABCO",
]

#: Severity letters, most severe first.
KABCO = ("K", "A", "B", "C", "O")

_COMMON = ("event_id", "road_name")

#: Standard fields by kind (besides ``kind`` and ``geometry``), in output order.
FIELDS: dict[str, tuple[str, ...]] = {
    "accident": (
        "event_id",
        "time",
        "year",
        "hour",
        "severity",
        "deaths",
        "serious_injuries",
        "minor_injuries",
        "injuries",
        "collision_type",
        "light",
        "weather",
        "road_name",
    ),
    "hazard": ("event_id", "category", "grade", "status", "reported_at", "road_name"),
    "workzone": (
        "event_id",
        "site_code",
        "start",
        "end",
        "lanes_taken",
        "night_works",
        "status",
        "road_name",
    ),
}

_TIME_FIELDS = {"time", "reported_at", "start", "end"}

#: Column names (compared case-insensitively) taken for a field the user did not map, after
#: the field's own name, in this order; a column so taken is used only when its content
#: passes the field's check, and the read summary says so.
ALIASES: dict[str, tuple[str, ...]] = {
    "event_id": ("id", "事故编号", "编号"),
    "time": (
        "datetime",
        "date_time",
        "timestamp",
        "发生时间",
        "事故时间",
        "事发时间",
        "日期时间",
        "时间",
        "date",
        "日期",
    ),
    "severity": ("accident_severity", "crash_severity", "事故等级", "事故严重程度", "严重程度"),
    "road_name": ("street", "road", "道路名称", "路名", "道路"),
    "light": ("light_conditions", "光照条件"),
    "weather": ("weather_conditions", "天气"),
    "category": ("隐患类型", "类别"),
    "reported_at": ("上报时间", "发现时间"),
    "start": ("start_date", "开始时间"),
    "end": ("end_date", "结束时间"),
}
_INT_FIELDS = {"year", "hour", "deaths", "serious_injuries", "minor_injuries", "injuries"}
_FLOAT_FIELDS = {"lanes_taken"}
_BOOL_FIELDS = {"night_works"}

#: Default severity labels (compared case-insensitively, spaces collapsed) → KABCO.
#: Numeric codes differ between sources and have no default: map them with ``severity_map``.
SEVERITY_DEFAULTS: dict[str, str] = {
    **dict.fromkeys(("k", "fatal", "fatality", "killed", "death", "dead", "fat", "死亡"), "K"),
    **dict.fromkeys(
        (
            "a",
            "serious",
            "serious injury",
            "suspected serious injury",
            "incapacitating",
            "incapacitating injury",
            "severe",
            "重伤",
        ),
        "A",
    ),
    **dict.fromkeys(
        (
            "b",
            "slight",
            "minor",
            "minor injury",
            "suspected minor injury",
            "non-incapacitating",
            "non-incapacitating injury",
            "injury",
            "inj",
            "轻伤",
        ),
        "B",
    ),
    **dict.fromkeys(("c", "possible", "possible injury", "complaint of pain", "轻微伤"), "C"),
    **dict.fromkeys(
        ("o", "pdo", "property damage", "property damage only", "no injury", "none", "财产损失"),
        "O",
    ),
}

#: Default hazard grade labels → ``"general"`` / ``"major"`` (一般 → general, 重大 → major).
GRADE_DEFAULTS: dict[str, str] = {
    **dict.fromkeys(("general", "一般", "minor", "low", "normal", "ordinary"), "general"),
    **dict.fromkeys(("major", "重大", "serious", "high", "severe", "critical"), "major"),
}

_TRUE = {"1", "yes", "y", "true", "t", "x", "on", "是"}
_FALSE = {"0", "no", "n", "false", "f", "off", "", "否"}

_CSV_SUFFIXES = (".csv", ".txt", ".tsv", ".tab", ".csv.gz", ".csv.zip")
_GEO_SUFFIXES = (
    ".geojson",
    ".json",
    ".gpkg",
    ".shp",
    ".fgb",
    ".gml",
    ".kml",
    ".zip",
)
_SEPARATORS = (",", ";", "\t", "|")

ValueMap = Mapping[Any, Any] | Callable[[pd.Series], pd.Series]


# --------------------------------------------------------------------------------------------
# report


@dataclass
class _Report:
    """What :func:`read_events` read, kept and dropped, and why (``events.attrs["report"]``)."""

    source: str
    kind: str
    rows_read: int = 0
    rows_kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unknown_values: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fmt: str = ""
    encoding: str | None = None
    sep: str | None = None
    crs: str | None = None
    tz: str | None = None
    columns: dict[str, list[str]] = field(default_factory=dict)
    encoding_how: str | None = None
    tz_how: str | None = None
    tz_zones: dict[str, int] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    time_built: str | None = None
    read_at: str | None = None
    hints: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "format": self.fmt,
            "encoding": self.encoding,
            "encoding_how": self.encoding_how,
            "sep": self.sep,
            "crs": self.crs,
            "tz": self.tz,
            "tz_how": self.tz_how,
            "tz_zones": dict(self.tz_zones),
            "fields": dict(self.fields),
            "time_built": self.time_built,
            "read_at": self.read_at,
            "hints": list(self.hints),
            "columns": self.columns,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "dropped": dict(self.dropped),
            "examples": self.examples,
            "unknown_values": self.unknown_values,
            "notes": list(self.notes),
        }


class _Drops:
    """First drop reason per row, with a few example rows per reason."""

    def __init__(self, n: int, raw: pd.DataFrame) -> None:
        self.reason = np.full(n, None, dtype=object)
        self.raw = raw

    def mark(
        self, mask: np.ndarray, reason: str, column: str | Sequence[str] | None = None
    ) -> None:
        mask = np.asarray(mask, dtype=bool) & (self.reason == None)  # noqa: E711
        self.reason[mask] = reason
        self._columns = getattr(self, "_columns", {})
        if column is not None:
            self._columns[reason] = [column] if isinstance(column, str) else list(column)

    @property
    def keep(self) -> np.ndarray:
        return self.reason == None  # noqa: E711

    def count(self, reason: str) -> int:
        return int((self.reason == reason).sum())

    def fill(self, report: _Report, examples: int = 5) -> None:
        cols = getattr(self, "_columns", {})
        for reason, count in Counter(r for r in self.reason if r is not None).most_common():
            report.dropped[reason] = count
            rows = np.flatnonzero(self.reason == reason)[:examples]
            ex = []
            for r in rows:
                item: dict[str, Any] = {"row": int(r) + 1}
                for c in cols.get(reason, []):
                    if c in self.raw.columns:
                        v = self.raw[c].iloc[r]
                        item[c] = None if _isna(v) else str(v)
                ex.append(item)
            report.examples[reason] = ex


def _isna(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------------------------
# loading


#: Encodings told apart when a file is not UTF-8, in order of preference on a tie. Others
#: (Shift-JIS, cp1251, ...) must be given with ``encoding=``.
ENCODING_CANDIDATES = ("gb18030", "big5", "cp1252")


def _decode(data: bytes, encoding: str | None) -> tuple[str, str, str]:
    """(text, encoding, how it was found). Detection: BOM, then strict UTF-8, then the most
    plausible of :data:`ENCODING_CANDIDATES` (charset-normalizer's language and "mess"
    scores), which must also decode the whole file without error."""
    if encoding:
        try:
            return data.decode(encoding), encoding, "given"
        except LookupError as exc:
            raise InputFileError(
                f"unknown encoding {encoding!r}; give one such as 'utf-8', 'gb18030', 'big5' "
                "or 'cp1252' with encoding=, or leave encoding= unset to detect it"
            ) from exc
        except UnicodeDecodeError as exc:
            raise InputFileError(
                f"cannot decode the file as {encoding!r} (byte {exc.start}: {exc.reason}); "
                "give the right one with encoding= (e.g. 'gb18030', 'big5', 'cp1252') or "
                "leave encoding= unset to detect it"
            ) from exc
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace"), "utf-8-sig", "byte-order mark"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16", "byte-order mark"
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8"), "utf-8", "valid UTF-8"
    except UnicodeDecodeError:
        pass
    order = list(ENCODING_CANDIDATES)
    how = "detected"
    try:
        import charset_normalizer

        best = charset_normalizer.from_bytes(data, cp_isolation=order).best()
    except Exception:  # detector failure: fall back to the fixed order
        best = None
    if best is not None:
        found = _codec_name(best.encoding)
        if found in order:
            order.remove(found)
            order.insert(0, found)
            how = "detected (charset-normalizer)"
    for enc in order:
        try:
            return data.decode(enc), enc, how
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1", "fallback (no other encoding decodes the file)"


def _codec_name(name: str) -> str:
    import codecs

    try:
        return codecs.lookup(name).name
    except LookupError:
        return name


_MOJIBAKE = re.compile(
    "\ufffd|[\x80-\x9f]|[\u00c0-\u00ff][\u0080-\u00bf\u2018-\u203a\u0152-\u0178]|"
    "[\u00a1-\u00ff]{3,}"
)


def _misdecoded_hint(headers: Sequence[Any], used: str | None) -> str:
    """A sentence saying the header looks mis-decoded, or ``""``."""
    if not used:
        return ""
    bad = [str(h) for h in headers if _MOJIBAKE.search(str(h))]
    if not bad:
        return ""
    shown = ", ".join(repr(b) for b in bad[:3])
    return (
        f" The header looks mis-decoded ({shown}, read as {used}): give the file's encoding "
        "with encoding= (e.g. 'gb18030' or 'big5' for Chinese, 'cp1252' for Western European)."
    )


def _sniff_sep(text: str) -> str:
    """The separator giving the most consistent multi-field records in the first lines."""
    sample = text[:200_000]
    cut = sample.rfind("\n")
    if cut > 0 and len(text) > len(sample):
        sample = sample[:cut]
    best, best_score = ",", (-1.0, 0)
    for sep in _SEPARATORS:
        try:
            rows = list(csv.reader(io.StringIO(sample), delimiter=sep))[:500]
        except csv.Error:
            continue
        rows = [r for r in rows if r]
        if len(rows) < 1:
            continue
        counts = Counter(len(r) for r in rows)
        width, freq = counts.most_common(1)[0]
        header_ok = len(rows[0]) == width
        if width < 2:
            continue
        score = (freq / len(rows) + (0.5 if header_ok else 0.0), width)
        if score > best_score:
            best, best_score = sep, score
    return best


def _read_csv(
    path_or_text: Path | str,
    *,
    sep: str | None,
    encoding: str | None,
    report: _Report,
    name: str,
    text_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Read a CSV: the columns named in ``text_columns`` as trimmed text (parsed later by their
    field's rules), the others typed by pandas' parser."""
    if isinstance(path_or_text, Path):
        try:
            if path_or_text.suffix.lower() in (".gz", ".zip", ".bz2", ".xz"):
                data = pd.io.common.get_handle(  # type: ignore[attr-defined]
                    path_or_text, "rb", compression="infer"
                ).handle.read()
            else:
                data = path_or_text.read_bytes()
        except OSError as exc:
            raise InputFileError(f"{name}: cannot read ({exc})") from exc
        text, used, how = _decode(data, encoding)
    else:
        text, used, how = path_or_text, "str", "given"
    if not text.strip():
        raise InputFileError(f"{name}: the file is empty")
    report.encoding = used
    report.encoding_how = how
    if sep is None:
        sep = _sniff_sep(text)
    report.sep = sep
    opts: dict[str, Any] = {
        "sep": sep,
        "keep_default_na": False,
        "na_values": [""],
        "skipinitialspace": True,
        "quotechar": '"',
        "engine": "c",
        "on_bad_lines": "warn",
        "low_memory": False,
    }
    wanted = {str(c).strip().casefold() for c in text_columns}
    try:
        header = pd.read_csv(io.StringIO(text), nrows=0, **opts).columns
        as_text = {c: str for c in header if str(c).strip().lstrip("\ufeff").casefold() in wanted}
        df = pd.read_csv(io.StringIO(text), dtype=as_text or None, **opts)
    except (pd.errors.ParserError, ValueError) as exc:
        raise InputFileError(
            f"{name}: cannot parse as CSV with separator {sep!r} ({exc}); give sep=..."
        ) from exc
    df.columns = [str(c).strip().lstrip("\ufeff") for c in df.columns]
    for col in df.columns:
        if pd.api.types.is_string_dtype(df[col]) or df[col].dtype == object:
            s = df[col].str.strip() if pd.api.types.is_string_dtype(df[col]) else df[col]
            df[col] = s.mask(s == "")
    return df


def _load(
    source: Any,
    *,
    sep: str | None,
    encoding: str | None,
    layer: str | None,
    report: _Report,
    text_columns: Sequence[str] = (),
) -> pd.DataFrame:
    if isinstance(source, gpd.GeoDataFrame):
        report.source, report.fmt = "<GeoDataFrame>", "geodataframe"
        return source.copy()
    if isinstance(source, pd.DataFrame):
        report.source, report.fmt = "<DataFrame>", "dataframe"
        return source.copy()
    if not isinstance(source, str | os.PathLike):
        raise ValidationError(
            f"cannot read events from {type(source).__name__}; give a file path or a DataFrame"
        )
    path = Path(source)
    name = str(path)
    report.source = name
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise InputFileError(f"{path}: the file is empty")
    lower = path.name.lower()
    if lower.endswith((".parquet", ".geoparquet")):
        report.fmt = "parquet"
        try:
            return gpd.read_parquet(path)
        except ValueError:
            return pd.read_parquet(path)
        except Exception as exc:
            raise InputFileError(f"{path}: cannot read Parquet ({exc})") from exc
    if lower.endswith(_CSV_SUFFIXES) or not lower.endswith(_GEO_SUFFIXES):
        report.fmt = "csv"
        return _read_csv(
            path, sep=sep, encoding=encoding, report=report, name=name, text_columns=text_columns
        )
    report.fmt = path.suffix.lower().lstrip(".")
    try:
        return gpd.read_file(path, layer=layer, engine="pyogrio", encoding=encoding)
    except Exception as exc:
        raise InputFileError(f"{path}: cannot read ({exc})") from exc


# --------------------------------------------------------------------------------------------
# value parsing


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


# --------------------------------------------------------------------------------------------
# columns


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


# --------------------------------------------------------------------------------------------
# coordinates


def _parse_crs(crs: Any) -> tuple[pyproj.CRS | None, str | None]:
    if crs is None:
        return None, None
    system = chinacrs.normalise_system(crs)
    if system is not None:
        return None, system
    try:
        return pyproj.CRS.from_user_input(crs), None
    except pyproj.exceptions.CRSError as exc:
        raise CRSError(
            f"unknown CRS {crs!r} ({exc}); give an EPSG code such as 4326, 3879 or 27700, "
            "or 'gcj02' / 'bd09' for Chinese consumer-map coordinates"
        ) from exc


def _valid_box(
    crs: pyproj.CRS | None, system: str | None, margin: float
) -> tuple[float, float, float, float]:
    if system is not None:
        w, s, e, n = chinacrs.CHINA_BBOX
        return w - margin, s - margin, e + margin, n + margin
    area = crs.area_of_use if crs is not None else None
    if area is None or (crs is not None and crs.is_geographic):
        return -180.0, -90.0, 180.0, 90.0
    w, s, e, n = area.west, area.south, area.east, area.north
    if w > e:  # crosses the antimeridian
        return -180.0, max(-90.0, s - margin), 180.0, min(90.0, n + margin)
    return (
        max(-180.0, w - margin),
        max(-90.0, s - margin),
        min(180.0, e + margin),
        min(90.0, n + margin),
    )


_EWKT_RE = re.compile(r"^\s*SRID=(\d+)\s*;\s*", re.IGNORECASE)


def _geometry_from_text(values: pd.Series) -> tuple[np.ndarray, np.ndarray, set[int]]:
    """Parse WKT / EWKT / hex WKB strings; return (geoms, unparseable mask, SRIDs seen)."""
    s = values.astype("string").str.strip()
    s = s.mask(s == "")
    present = s.notna().to_numpy()
    srids = s.str.extract(_EWKT_RE, expand=False).dropna().astype(int)
    body = s.str.replace(_EWKT_RE, "", regex=True)
    geoms = np.full(len(values), None, dtype=object)
    if present.any():
        txt = body[present].astype(str).to_numpy()
        is_hex = np.array([bool(re.fullmatch(r"[0-9A-Fa-f]+", t)) for t in txt[:1]]).all()
        try:
            if is_hex:
                g = shapely.from_wkb(txt, on_invalid="ignore")
            else:
                g = shapely.from_wkt(txt, on_invalid="ignore")
        except Exception:
            g = np.array([shapely.from_wkt(t, on_invalid="ignore") for t in txt], dtype=object)
        geoms[present] = g
    bad = present & (shapely.is_missing(geoms) | shapely.is_empty(geoms))
    geoms[bad] = None
    return geoms, bad, set(srids.unique().tolist())


def _transform_geoms(geoms: np.ndarray, crs: pyproj.CRS | None, system: str | None) -> np.ndarray:
    """Geometries (non-missing) from their CRS / Chinese system to EPSG:4326."""
    if system is not None:

        def fn(xy: np.ndarray) -> np.ndarray:
            lon, lat = chinacrs.to_wgs84(xy[:, 0], xy[:, 1], system)
            return np.column_stack([lon, lat])

        return shapely.transform(geoms, fn)
    assert crs is not None
    if crs.equals(pyproj.CRS.from_epsg(4326)):
        return geoms
    tr = pyproj.Transformer.from_crs(crs, 4326, always_xy=True)

    def fn2(xy: np.ndarray) -> np.ndarray:
        x, y = tr.transform(xy[:, 0], xy[:, 1], errcheck=False)
        return np.column_stack([x, y])

    return shapely.transform(geoms, fn2)


def _at(n: int, idx: np.ndarray) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[idx] = True
    return m


def _lonlat(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A representative lon/lat of each (non-missing) geometry."""
    pts = geoms
    types = shapely.get_type_id(geoms)
    if (types != 0).any():
        pts = geoms.copy()
        pts[types != 0] = shapely.point_on_surface(geoms[types != 0])
    xy = shapely.get_coordinates(pts)
    return xy[:, 0], xy[:, 1]


def _drop_far_outliers(
    geoms: np.ndarray,
    live: np.ndarray,
    drops: _Drops,
    settings: EventSettings,
    report: _Report,
    columns: list[str],
) -> None:
    """Drop positions far outside the data's own extent: further from the median position
    than ``settings.outlier_factor`` times the 95th percentile distance (at least
    ``settings.outlier_min_km``)."""
    idx = np.flatnonzero(live)
    if len(idx) < settings.outlier_min_rows:
        return
    lon, lat = _lonlat(geoms[idx])
    mx, my = float(np.median(lon)), float(np.median(lat))
    dx = (lon - mx) * np.cos(np.radians(my)) * 111.32
    dy = (lat - my) * 110.57
    d = np.hypot(dx, dy)
    limit = max(settings.outlier_factor * float(np.percentile(d, 95)), settings.outlier_min_km)
    far = d > limit
    if far.any():
        drops.mark(_at(len(drops.reason), idx[far]), "far outside the data's extent", columns)
        report.notes.append(
            f"{int(far.sum())} position{'s' if far.sum() != 1 else ''} more than "
            f"{limit:,.0f} km from the data's median "
            f"position ({mx:.4f}, {my:.4f}) dropped as far outside the data's extent"
        )


def _check_tz(tz: str) -> None:
    try:
        pd.Timestamp("2000-01-01").tz_localize(tz)
    except Exception as exc:
        raise ValidationError(
            f"unknown time zone {tz!r}; give an IANA name such as 'Asia/Shanghai', "
            "'Europe/Helsinki' or 'UTC' with tz="
        ) from exc


def _time_zone(
    tz: str | None,
    origin: Mapping[str, str],
    geoms: np.ndarray,
    usable: np.ndarray,
    cols: Mapping[str, list[str]],
    report: _Report,
) -> tuple[str, np.ndarray | None]:
    """(zone the times are stored in, each row's zone when the rows lie in several).

    Naive times are local time where the event happened: ``tz`` when given, else the zone
    looked up from the positions."""
    if tz is not None:
        _check_tz(tz)
        report.tz, report.tz_how = tz, origin.get("tz", "given")
        return tz, None
    if not any(f in cols for f in _TIME_FIELDS):
        report.tz, report.tz_how = "UTC", "no times in the file"
        return "UTC", None
    idx = np.flatnonzero(usable)
    zones = np.full(len(geoms), None, dtype=object)
    if len(idx):
        lon, lat = _lonlat(geoms[idx])
        zones[idx] = zones_at(lon, lat)
    counts = Counter(z for z in zones[idx] if z is not None)
    report.tz_zones = dict(counts.most_common())
    if not counts:
        report.tz, report.tz_how = "UTC", "UTC: no usable position to look the zone up from"
        return "UTC", None
    if len(counts) == 1:
        zone = next(iter(counts))
        report.tz, report.tz_how = zone, "looked up from the coordinates"
        return zone, None
    report.tz = "UTC"
    report.tz_how = (
        f"each row's own zone, looked up from its coordinates ({_zone_counts(report)}); "
        "stored in UTC, hour is the local hour"
    )
    return "UTC", zones


def _zone_counts(report: _Report) -> str:
    return ", ".join(f"{z} {c:,}" for z, c in list(report.tz_zones.items())[:4])


def _describe_time(
    src: list[str],
    fmt: str | None,
    t: _Times,
    *,
    hours_col: list[str] | None,
    report: _Report,
) -> str:
    cols = " joined with ".join(repr(c) for c in src)
    n_year = int(t.year_only.sum())
    if n_year and not t.value.notna().any():
        return f"year only, from {cols} (time left empty, year set)"
    parts = [f"from {cols}"]
    if fmt:
        parts.append(f"format {fmt!r}")
    if t.date_only:
        parts.append(f"dates only, hour from {hours_col[0]!r}" if hours_col else "dates only")
    if n_year:
        parts.append(f"{n_year:,} year-only values")
    if t.naive:
        parts.append(f"written without a zone: local time in {report.tz}")
    return ", ".join(parts)


_TZ_FINDER: Any = None


_ZONE_SHAPES: dict[str, Any] = {}
#: Up to this many distinct positions the zones are looked up one by one; above it, in bulk.
_ZONE_LOOP_MAX = 50_000
#: Bulk lookups test at most this many zones' boundaries (else one by one).
_ZONE_BULK_ZONES = 8


def _tz_finder() -> Any:
    global _TZ_FINDER
    if _TZ_FINDER is None:
        from timezonefinder import TimezoneFinder

        _TZ_FINDER = TimezoneFinder()
    return _TZ_FINDER


def _zone_shape(name: str) -> Any:
    """The zone's boundary as a shapely (multi)polygon, from timezonefinder (cached)."""
    if name not in _ZONE_SHAPES:
        polys = [
            shapely.Polygon(np.column_stack(r[0]), [np.column_stack(h) for h in r[1:]])
            for r in _tz_finder().get_geometry(tz_name=name, coords_as_pairs=False)
        ]
        _ZONE_SHAPES[name] = shapely.MultiPolygon(polys) if polys else None
    return _ZONE_SHAPES[name]


def zones_at(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """IANA time-zone name at each longitude/latitude (``None`` where not finite).

    Looked up with `timezonefinder` (offline boundaries of timezone-boundary-builder), once
    per distinct position rounded to 1e-4 degrees (about 10 m). Many distinct positions are
    tested in one vectorised call per zone against the boundaries (clipped to the data's
    extent) of the zones a sample of them lies in; positions left over (at sea, on a
    boundary, in an enclave the sample missed) are looked up one by one.
    """
    tf = _tz_finder()
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    out = np.full(len(lon), None, dtype=object)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        return out
    # one int64 key per position rounded to 1e-4 degrees (np.unique on rows is slow)
    ix = np.round(lon[ok] * 1e4).astype(np.int64) + 1_800_000
    iy = np.round(lat[ok] * 1e4).astype(np.int64) + 900_000
    keys, inv = np.unique(ix * 2_000_000 + iy, return_inverse=True)
    uniq = np.column_stack(
        [(keys // 2_000_000 - 1_800_000) / 1e4, (keys % 2_000_000 - 900_000) / 1e4]
    )
    names = np.full(len(uniq), None, dtype=object)
    todo = np.arange(len(uniq))
    if len(uniq) > _ZONE_LOOP_MAX:
        pick = np.random.default_rng(0).choice(len(uniq), min(2_000, len(uniq)), replace=False)
        found = {tf.timezone_at(lng=float(a), lat=float(b)) for a, b in uniq[pick]}
        zones = sorted(z for z in found if z and not z.startswith("Etc/"))
        if len(zones) <= _ZONE_BULK_ZONES:
            (x0, y0), (x1, y1) = uniq.min(axis=0) - 0.01, uniq.max(axis=0) + 0.01
            for name in zones:
                shape = _zone_shape(name)
                if shape is None or not len(todo):
                    continue
                part = shapely.clip_by_rect(shape, x0, y0, x1, y1)
                inside = shapely.contains_xy(part, uniq[todo, 0], uniq[todo, 1])
                names[todo[inside]] = name
                todo = todo[~inside]
    for k in todo:
        names[k] = tf.timezone_at(lng=float(uniq[k, 0]), lat=float(uniq[k, 1]))
    out[ok] = names[np.asarray(inv).ravel()]
    return out


# --------------------------------------------------------------------------------------------
# main entry


def read_events(
    source: str | os.PathLike[str] | pd.DataFrame,
    *,
    kind: str | None = None,
    x: str | None = None,
    y: str | None = None,
    crs: Any = None,
    geometry: str | None = None,
    event_id: str | None = None,
    time: str | Sequence[str] | None = None,
    severity: str | None = None,
    road_name: str | None = None,
    columns: Mapping[str, str | Sequence[str] | None] | None = None,
    severity_map: ValueMap | None = None,
    value_maps: Mapping[str, ValueMap] | None = None,
    time_format: str | None = None,
    dayfirst: bool = False,
    tz: str | None = None,
    sep: str | None = None,
    encoding: str | None = None,
    decimal: str | None = None,
    layer: str | None = None,
    buffer_m: float | None = None,
    valid_area: Any = None,
    preset: str | None = None,
    strict: bool = False,
    settings: EventSettings | None = None,
) -> gpd.GeoDataFrame:
    """Read accidents, hazards or work zones into a standard schema, in EPSG:4326.

    Parameters
    ----------
    source
        A CSV (any common separator and encoding), GeoJSON, GeoPackage, Shapefile,
        FlatGeobuf or (Geo)Parquet file, or a (Geo)DataFrame.
    kind
        ``"accident"``, ``"hazard"`` or ``"workzone"`` (may come from ``preset``).
    x, y
        Columns holding the position (easting/longitude, northing/latitude).
    crs
        CRS of ``x``/``y`` (anything pyproj accepts, e.g. ``3879``, ``"EPSG:27700"``,
        ``4490``) or ``"gcj02"`` / ``"bd09"``. Required for x/y and for files without a CRS;
        for a file with a CRS it relabels the file's coordinates (e.g. GCJ-02 stored as 4326).
    geometry
        Column holding WKT or EWKT geometries (``"SRID=27700;LINESTRING(...)"``); rows where
        it is empty fall back to ``x``/``y``.
    event_id, time, severity, road_name
        Source columns of these standard fields (shortcuts for ``columns``). ``time`` may be
        a list of columns joined with a space (date and clock time), a date column (combined
        with an ``hour`` column) or a year column (``time`` is then NaT and ``year`` set).
    columns
        Source column(s) for any standard field of the kind, e.g. ``{"hour": "Tunti",
        "deaths": "Kuolleet"}``; see :data:`FIELDS`.
    severity_map
        Source severity value → KABCO letter, e.g. ``{1: "O", 2: "B", 3: "K"}``, or a
        function of the source Series. Merged over :data:`SEVERITY_DEFAULTS` (values compared
        case-insensitively). When no severity column is given, severity is derived from
        ``deaths``/``serious_injuries``/``minor_injuries``/``injuries`` where those exist.
    value_maps
        Value maps (or functions) for other fields, e.g. ``{"grade": {"一般": "general"},
        "hour": {24: 0}}``; applied before the field's type conversion.
    time_format, dayfirst
        strptime format of the time column(s), or a hint for ambiguous dates.
    tz
        Time zone of times written without one (e.g. ``"Asia/Shanghai"``). Default: local
        time where the events are, the zone looked up from their coordinates; rows in zones
        with different clocks are then stored in UTC with ``hour`` the local hour. Times with
        an offset are converted to it.
    sep, encoding, decimal
        CSV separator (sniffed), text encoding (detected: UTF-8 with/without BOM, GB18030,
        Big5 or cp1252) and decimal mark of coordinates (detected per value).
    layer
        Layer of a multi-layer file.
    buffer_m
        Buffer every geometry by this many metres (work zones and hazard areas drawn as points
        or lines); the result is a polygon.
    valid_area
        ``(min_lon, min_lat, max_lon, max_lat)`` or a shapely geometry in EPSG:4326 outside
        which positions are dropped. Default: the CRS's area of use plus
        ``settings.valid_area_margin_deg`` (China for GCJ-02/BD-09).
    preset
        Name of a column mapping in :mod:`trafficunit.presets`; explicit arguments win.
    strict
        Raise :class:`~trafficunit.ValidationError` instead of dropping rows.
    settings
        :class:`~trafficunit.settings.EventSettings`.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per kept event in EPSG:4326 with the standard columns of ``kind`` first, then
        the unused source columns. ``.attrs["report"]`` is a plain dict: rows read, kept,
        dropped by reason with example rows, unknown severity values, each field's source
        (``fields``), detected encoding, separator, CRS and time zone, notes and ``hints``
        (likely mistakes such as swapped axes).

    Examples
    --------
    >>> import pandas as pd, trafficunit as tu
    >>> table = pd.DataFrame({"E": ["25496500,5", "25496600"], "N": ["6672900", "6673000"],
    ...                       "sev": [3, 1], "year": [2021, 2022]})
    >>> acc = tu.read_events(table, kind="accident", x="E", y="N", crs=3879,
    ...                      severity="sev", severity_map={1: "O", 2: "B", 3: "K"}, time="year")
    >>> acc["severity"].tolist(), acc["year"].tolist(), acc.crs.to_epsg()
    (['K', 'O'], [2021, 2022], 4326)
    """
    settings = settings or EventSettings()
    args: dict[str, Any] = {}
    origin: dict[str, str] = {}  # field or option → "given" / "preset NAME"
    if preset is not None:
        from .presets import get_preset

        args = get_preset(preset).read_kwargs()
        origin = {k: f"preset {preset}" for k in args if k not in ("columns", "value_maps")}
        origin.update(dict.fromkeys(args.get("columns") or {}, f"preset {preset}"))
    mapping: dict[str, Any] = dict(args.pop("columns", {}) or {})
    for fld in ("event_id", "time", "severity", "road_name"):
        if args.get(fld) is not None:
            mapping[fld] = args.pop(fld)
    mapping.update(dict((columns or {}).items()))
    origin.update({k: "given" for k, v in (columns or {}).items() if v is not None})
    for fld, val in (
        ("event_id", event_id),
        ("time", time),
        ("severity", severity),
        ("road_name", road_name),
    ):
        if val is not None:
            mapping[fld] = val
            origin[fld] = "given"
    vmaps: dict[str, Any] = dict(args.pop("value_maps", {}) or {})
    vmaps.update(value_maps or {})
    explicit = {
        "kind": kind,
        "x": x,
        "y": y,
        "crs": crs,
        "geometry": geometry,
        "severity_map": severity_map,
        "time_format": time_format,
        "tz": tz,
        "sep": sep,
        "encoding": encoding,
        "decimal": decimal,
        "layer": layer,
        "buffer_m": buffer_m,
        "valid_area": valid_area,
    }
    for k, v in explicit.items():
        if v is not None:
            args[k] = v
            origin[k] = "given"
    if dayfirst:
        args["dayfirst"] = True
    kind = args.get("kind")
    if kind not in EVENT_KINDS:
        raise ValidationError(f"kind must be one of {', '.join(EVENT_KINDS)} (got {kind!r})")
    if args.get("severity_map") is not None:
        vmaps["severity"] = args["severity_map"]
    unknown_fields = set(mapping) - set(FIELDS[kind])
    if unknown_fields:
        raise ValidationError(
            f"unknown field(s) {sorted(unknown_fields)} for kind {kind!r}; "
            f"standard fields are {', '.join(FIELDS[kind])}"
        )
    fmt = args.get("time_format")
    if fmt and not any(d in fmt for d in _YEAR_DIRECTIVES):
        raise ValidationError(
            f"time_format={fmt!r} has no year (%Y or %y): times without a date are not "
            "completed with one; give the date column too, e.g. time=['date', 'time']"
        )
    return _read(
        source,
        kind=kind,
        mapping=mapping,
        origin=origin,
        vmaps=vmaps,
        x=args.get("x"),
        y=args.get("y"),
        crs=args.get("crs"),
        geometry=args.get("geometry"),
        time_format=fmt,
        dayfirst=bool(args.get("dayfirst", False)),
        tz=args.get("tz"),
        sep=args.get("sep"),
        encoding=args.get("encoding"),
        decimal=args.get("decimal"),
        layer=args.get("layer"),
        buffer_m=args.get("buffer_m"),
        valid_area=args.get("valid_area"),
        strict=strict,
        settings=settings,
    )


def _read(
    source: Any,
    *,
    kind: str,
    mapping: dict[str, Any],
    origin: dict[str, str],
    vmaps: dict[str, Any],
    x: str | None,
    y: str | None,
    crs: Any,
    geometry: str | None,
    time_format: str | None,
    dayfirst: bool,
    tz: str | None,
    sep: str | None,
    encoding: str | None,
    decimal: str | None,
    layer: str | None,
    buffer_m: float | None,
    valid_area: Any,
    strict: bool,
    settings: EventSettings,
) -> gpd.GeoDataFrame:
    report = _Report(source=str(source), kind=kind)
    wanted = [
        c for v in mapping.values() if v is not None for c in ([v] if isinstance(v, str) else v)
    ]
    wanted += [c for c in (x, y, geometry) if c]
    raw = _load(source, sep=sep, encoding=encoding, layer=layer, report=report, text_columns=wanted)
    raw = raw.reset_index(drop=True)
    n = len(raw)
    report.rows_read = n
    name = report.source
    report.read_at = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    mis_hint = ""
    if report.fmt == "csv":
        mis_hint = _misdecoded_hint(list(raw.columns), report.encoding)
        if mis_hint:
            report.hints.append(mis_hint.strip())
    # a column already named after a standard field (a file trafficunit wrote, or a table in
    # the standard schema) is that field unless the mapping says otherwise, and only when its
    # content passes the field's check (a column "time" of clock times alone is no time)
    mapping = dict(mapping)
    auto: set[str] = set()
    named = {
        str(c).casefold()
        for v in [*mapping.values(), x, y, geometry]
        if v is not None
        for c in ([v] if isinstance(v, str) else v)
    }
    by_key = {str(c).strip().casefold(): str(c) for c in raw.columns}
    for fld in FIELDS[kind]:
        if fld in mapping:
            continue
        for alias in (fld, *ALIASES.get(fld, ())):
            col = by_key.get(alias.casefold())
            if col is not None and col.casefold() not in named:
                mapping[fld] = col
                named.add(col.casefold())
                auto.add(fld)
                break
    cols = _resolve(raw, mapping, mis_hint)
    xcol = _find_column(raw, x, "x", mis_hint) if x else None
    ycol = _find_column(raw, y, "y", mis_hint) if y else None
    gcol = _find_column(raw, geometry, "geometry", mis_hint) if geometry else None
    taken = {c for cs in cols.values() for c in cs} | {c for c in (xcol, ycol, gcol) if c}
    how_built = _check_columns(
        raw, cols, auto, origin, kind=kind, vmaps=vmaps, taken=taken, report=report, name=name
    )
    if (xcol is None) != (ycol is None):
        raise ValidationError(f"{name}: give both x= and y= (got only one)")
    file_geom = isinstance(raw, gpd.GeoDataFrame) and raw.geometry.name in raw.columns
    if xcol is None and gcol is None and not file_geom:
        guess = [
            c
            for c in raw.columns
            if re.search(
                r"(^|_)(x|y|lon|lng|long|lat|longitude|latitude|east|north|"
                r"easting|northing|coord)",
                str(c),
                re.IGNORECASE,
            )
        ]
        hint = (
            f" Columns that look like coordinates: {', '.join(map(str, guess))}." if guess else ""
        )
        raise ValidationError(
            f"{name}: no position given; pass x= and y= (with crs=) or geometry= (a WKT "
            f"column).{hint}"
        )
    report.columns = dict(cols.items())
    if xcol:
        report.columns["x"], report.columns["y"] = [xcol], [ycol]  # type: ignore[list-item]
    if gcol:
        report.columns["geometry"] = [gcol]
    drops = _Drops(n, raw)

    # ---- position --------------------------------------------------------------------------
    crs_obj, system = _parse_crs(crs)
    geoms = np.full(n, None, dtype=object)
    if gcol is not None:
        g, bad_wkt, srids = _geometry_from_text(raw[gcol])
        if crs_obj is None and system is None:
            if len(srids) == 1:
                crs_obj = pyproj.CRS.from_epsg(srids.pop())
            elif len(srids) > 1:
                raise CRSError(
                    f"{name}: column {gcol!r} mixes SRIDs {sorted(srids)}; give crs= or split "
                    "the file"
                )
        geoms[:] = g
        drops.mark(bad_wkt, "unparseable coordinates", gcol)
    elif file_geom:
        assert isinstance(raw, gpd.GeoDataFrame)
        geoms[:] = raw.geometry.to_numpy()
        if crs_obj is None and system is None:
            if raw.crs is None:
                raise CRSError(
                    f"{name}: the file has no CRS; give crs= (e.g. 4326 for longitude/latitude)"
                )
            crs_obj = pyproj.CRS.from_user_input(raw.crs)
        elif raw.crs is not None and (
            system is not None or not pyproj.CRS.from_user_input(raw.crs).equals(crs_obj)
        ):
            report.notes.append(f"file CRS {raw.crs} relabelled as {crs}")
    if xcol is not None:
        todo = shapely.is_missing(geoms) & (drops.reason == None)  # noqa: E711
        xv = to_float(raw[xcol], decimal=decimal).to_numpy()
        yv = to_float(raw[ycol], decimal=decimal).to_numpy()
        x_given = raw[xcol].notna().to_numpy()
        y_given = raw[ycol].notna().to_numpy()
        missing = todo & ~(x_given & y_given)
        unparse = todo & ~missing & ~(np.isfinite(xv) & np.isfinite(yv))
        zero = todo & ~missing & ~unparse & (xv == 0) & (yv == 0)
        drops.mark(missing, "missing coordinates", [xcol, ycol])  # type: ignore[list-item]
        drops.mark(unparse, "unparseable coordinates", [xcol, ycol])  # type: ignore[list-item]
        if settings.zero_is_missing:  # a placeholder, not a position
            drops.mark(zero, "coordinates (0, 0)", [xcol, ycol])  # type: ignore[list-item]
        ok = todo & ~missing & ~unparse
        geoms[ok] = shapely.points(xv[ok], yv[ok])
        _xy_points = np.full(n, None, dtype=object)
        _xy_points[ok] = geoms[ok]
    if (
        xcol is not None
        and crs_obj is not None
        and crs_obj.is_projected
        and ok.sum() >= 5
        and (np.abs(xv[ok]) <= 180).all()
        and (np.abs(yv[ok]) <= 90).all()
    ):
        drops.mark(ok, "degrees given for a CRS in metres", [xcol, ycol])  # type: ignore[list-item]
        report.hints.append(
            f"every x/y is within ±180/±90: these look like longitude/latitude, not the "
            f"metres of {crs_obj.name}; give crs=4326 (or the CRS the file uses)"
        )
    if crs_obj is None and system is None:
        raise CRSError(
            f"{name}: the CRS of the coordinates is not known; give crs= (e.g. 4326 for "
            "longitude/latitude, 3879 for Helsinki's GK25, 'gcj02' for AMap coordinates)"
        )
    report.crs = system if system is not None else crs_obj.to_string()  # type: ignore[union-attr]
    missing_geom = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    drops.mark(missing_geom, "missing coordinates", [c for c in (gcol, xcol, ycol) if c])
    live = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    if live.any():
        geoms[live] = _transform_geoms(geoms[live], crs_obj, system)
    if settings.zero_is_missing and live.any():
        # (0, 0) in longitude/latitude, whatever the source CRS: no road is there
        lv = np.flatnonzero(live)
        b0 = shapely.bounds(geoms[lv])
        at0 = (np.abs(b0) < 1e-9).all(axis=1)
        drops.mark(_at(n, lv[at0]), "coordinates (0, 0)", [c for c in (gcol, xcol, ycol) if c])
    # valid area
    if valid_area is None:
        box = _valid_box(crs_obj, system, settings.valid_area_margin_deg)
        area = shapely.box(*box)
    elif isinstance(valid_area, tuple | list) and len(valid_area) == 4:
        area = shapely.box(*[float(v) for v in valid_area])
    elif isinstance(valid_area, shapely.Geometry):
        area = valid_area
    else:
        raise ValidationError(
            "valid_area must be (min_lon, min_lat, max_lon, max_lat) or a shapely geometry "
            "in EPSG:4326"
        )
    if live.any():
        b = shapely.bounds(geoms[live])
        finite = np.isfinite(b).all(axis=1)
        inside = np.zeros(len(b), dtype=bool)
        if finite.any():
            lv = np.flatnonzero(finite)
            if isinstance(valid_area, shapely.Geometry):
                inside[lv] = shapely.covers(area, geoms[live][lv])
            else:
                minx, miny, maxx, maxy = shapely.bounds(area)
                bb = b[lv]
                inside[lv] = (
                    (bb[:, 0] >= minx)
                    & (bb[:, 2] <= maxx)
                    & (bb[:, 1] >= miny)
                    & (bb[:, 3] <= maxy)
                )
        outside = np.zeros(n, dtype=bool)
        outside[np.flatnonzero(live)] = ~inside
        if xcol is not None and outside.any():
            # would the point be inside with x and y exchanged? (points from x/y only) Inside
            # the valid area when no position is good, else among the good ones
            cand = np.flatnonzero(outside & ~shapely.is_missing(_xy_points) & (drops.keep))
            if len(cand):
                sw = _transform_geoms(shapely.points(yv[cand], xv[cand]), crs_obj, system)
                sb = shapely.bounds(sw)
                fine = np.isfinite(sb).all(axis=1)
                good = np.flatnonzero(live & ~outside & drops.keep)
                if len(good):
                    gx, gy = _lonlat(geoms[good])
                    pad = max(0.5, 0.1 * float(max(np.ptp(gx), np.ptp(gy))))
                    ax0, ay0 = float(gx.min()) - pad, float(gy.min()) - pad
                    ax1, ay1 = float(gx.max()) + pad, float(gy.max()) + pad
                    ins = (
                        fine
                        & (sb[:, 0] >= ax0)
                        & (sb[:, 2] <= ax1)
                        & (sb[:, 1] >= ay0)
                        & (sb[:, 3] <= ay1)
                    )
                elif isinstance(valid_area, shapely.Geometry):
                    ins = fine & shapely.covers(area, sw)
                else:
                    ax0, ay0, ax1, ay1 = shapely.bounds(area)
                    ins = (
                        fine
                        & (sb[:, 0] >= ax0)
                        & (sb[:, 2] <= ax1)
                        & (sb[:, 1] >= ay0)
                        & (sb[:, 3] <= ay1)
                    )
                drops.mark(_at(n, cand[ins]), "x and y swapped", [xcol, ycol])  # type: ignore[list-item]
        drops.mark(outside, "outside the valid area", [c for c in (gcol, xcol, ycol) if c])
    _drop_far_outliers(
        geoms, live & drops.keep, drops, settings, report, [c for c in (gcol, xcol, ycol) if c]
    )
    if drops.count("x and y swapped") > 0.5 * max(n, 1):
        report.hints.append(
            f"x and y look swapped: most positions fall inside {report.crs}'s area only with "
            f"them exchanged; give x={ycol!r} y={xcol!r}"
        )
    if drops.count("outside the valid area") > 0.5 * max(n, 1):
        report.hints.append(
            f"most positions lie outside the area where {report.crs} is used: is crs= right "
            "(e.g. 4326 for longitude/latitude, a national grid for metres)?"
        )

    # ---- time zone -------------------------------------------------------------------------
    tz_name, zones_rows = _time_zone(tz, origin, geoms, live & drops.keep, cols, report)

    # ---- fields ----------------------------------------------------------------------------
    out: dict[str, Any] = {}
    hours_src: pd.Series | None = None
    now = pd.Timestamp.now(tz="UTC")
    y1900 = pd.Timestamp("1900-01-01", tz="UTC")
    if "hour" in cols:
        h = _joined(raw, cols["hour"])
        if "hour" in vmaps:
            h, _ = _apply_map(h, vmaps["hour"])
        hours = _to_int(h)
        bad_h = hours.notna() & ((hours < 0) | (hours > 23))
        if bad_h.any():
            report.notes.append(f"{int(bad_h.sum())} hour values outside 0-23 set to <NA>")
        hours_src = hours.mask(bad_h)
    naive_seen = False
    for fld in FIELDS[kind]:
        if fld == "event_id" or fld == "hour":
            continue
        if fld in _TIME_FIELDS:
            if fld not in cols:
                out[fld] = pd.Series(pd.NaT, index=raw.index, dtype=f"datetime64[us, {tz_name}]")
                continue
            src = _joined(raw, cols[fld])
            if fld in vmaps:
                src, _ = _apply_map(src, vmaps[fld])
            t = _parse_time_column(
                src,
                fmt=time_format,
                dayfirst=dayfirst,
                tz=tz_name,
                hours=hours_src if fld == "time" else None,
                zones=zones_rows,
            )
            naive_seen |= t.naive
            drops.mark(t.no_date, "time without a date", cols[fld])
            drops.mark(t.bad, "bad time", cols[fld])
            if fld in ("time", "reported_at"):  # when it happened: not after the read
                future = np.asarray((t.value > now).fillna(False), dtype=bool) | np.asarray(
                    (t.year > now.year).fillna(False), dtype=bool
                )
                early = np.asarray((t.value < y1900).fillna(False), dtype=bool) | np.asarray(
                    (t.year < 1900).fillna(False), dtype=bool
                )
                drops.mark(future, "dated in the future", cols[fld])
                drops.mark(early, "dated before 1900", cols[fld])
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
                    cols[fld], time_format, t, hours_col=cols.get("hour"), report=report
                )
            continue
        if fld not in cols:
            continue
        src = _joined(raw, cols[fld])
        if fld == "severity":
            mapped, unknown = _apply_map(src, vmaps.get("severity"), SEVERITY_DEFAULTS)
            bad_letters = set(mapped.dropna().unique()) - set(KABCO)
            if bad_letters:
                raise ValidationError(
                    f"severity_map gives {sorted(map(str, bad_letters))}; map to one of "
                    f"{', '.join(KABCO)}"
                )
            missing_sev = src.isna().to_numpy()
            if unknown.any():
                report.unknown_values["severity"] = _count_values(src, unknown)
            drops.mark(missing_sev, "missing severity", cols[fld])
            drops.mark(unknown, "unknown severity", cols[fld])
            out[fld] = mapped.astype("string")
            continue
        if fld == "grade":
            mapped, unknown = _apply_map(src, vmaps.get("grade"), GRADE_DEFAULTS)
            if unknown.any():
                report.unknown_values["grade"] = _count_values(src, unknown)
            drops.mark(unknown, "unknown grade", cols[fld])
            out[fld] = mapped.astype("string")
            continue
        if fld in vmaps:
            src, _ = _apply_map(src, vmaps[fld])
        if fld in _INT_FIELDS:
            v = _to_int(src)
            if fld == "year":
                drops.mark(
                    (v > now.year).fillna(False).to_numpy(bool), "dated in the future", cols[fld]
                )
                drops.mark((v < 1900).fillna(False).to_numpy(bool), "dated before 1900", cols[fld])
            out[fld] = v.mask(v < 0)
        elif fld in _FLOAT_FIELDS:
            out[fld] = to_float(src, decimal=decimal)
        elif fld in _BOOL_FIELDS:
            out[fld], _ = _to_bool(src)
        else:
            out[fld] = _text(src)
    if naive_seen and tz is None and report.tz_how and report.tz_how.startswith("UTC"):
        msg = f"{name}: times have no time zone and none could be looked up; read as UTC. Pass tz="
        report.notes.append(msg)
        warnings.warn(msg, TrafficUnitWarning, stacklevel=3)

    # ---- event id -------------------------------------------------------------------------
    if "event_id" in cols:
        ids = _text(_joined(raw, cols["event_id"]).astype("string"))
        ids = ids.str.replace(r"\.0$", "", regex=True)
        gen = pd.Series([str(i + 1) for i in range(n)], index=raw.index, dtype="string")
        no_id = ids.isna()
        if no_id.any():
            report.notes.append(f"{int(no_id.sum())} rows without an id got their row number")
        ids = ids.fillna("row" + gen)
        # duplicates only among rows that survive the other checks
        live_ids = ids.where(drops.keep)
        dup = live_ids.duplicated(keep="first").to_numpy() & live_ids.notna().to_numpy()
        drops.mark(dup, "duplicate id", cols["event_id"])
    else:
        ids = pd.Series([str(i + 1) for i in range(n)], index=raw.index, dtype="string")

    report.fields = _field_summary(
        kind, cols, how_built, report, xcol=xcol, ycol=ycol, gcol=gcol, file_geom=file_geom
    )

    # ---- drop, report, strict ------------------------------------------------------------
    drops.fill(report)
    keep = drops.keep
    report.rows_kept = int(keep.sum())
    n_dropped = n - report.rows_kept
    if n_dropped:
        summary = ", ".join(f"{c} {r}" for r, c in report.dropped.most_common())
        examples = "; ".join(
            f"{r}: " + ", ".join(_fmt_example(e) for e in ex[:3])
            for r, ex in report.examples.items()
        )
        unknown_msg = ""
        if report.unknown_values.get("severity"):
            vals = ", ".join(repr(v) for v in report.unknown_values["severity"])
            unknown_msg = f" Unknown severity values: {vals} (map them with severity_map=)."
        if strict:
            raise ValidationError(
                f"{name}: {n_dropped} of {n} rows are unusable ({summary}). Examples: "
                f"{examples}.{unknown_msg}"
            )
        warnings.warn(
            f"{name}: dropped {n_dropped} of {n} rows ({summary}).{unknown_msg} See "
            ".attrs['report'] for examples; strict=True raises instead.",
            TrafficUnitWarning,
            stacklevel=3,
        )

    # ---- assemble --------------------------------------------------------------------------
    result = pd.DataFrame(index=raw.index)
    result["event_id"] = ids
    result["kind"] = kind
    if kind == "accident":
        time_s = out["time"]
        date_only = bool(out.get("_date_only", False))
        year = out.get("year")
        if year is None:
            year = time_s.dt.year.astype("Int64")
            ys = out.get("_year_only")
            if ys is not None:
                year = year.fillna(ys)
        else:
            year = year.fillna(time_s.dt.year.astype("Int64"))
        result["time"] = time_s
        result["year"] = year.astype("Int64")
        local_hour = out.get("_local_hour")
        if hours_src is not None:
            result["hour"] = hours_src
        elif not date_only and local_hour is not None:
            result["hour"] = local_hour
        elif not date_only:
            result["hour"] = time_s.dt.hour.astype("Int64")
        else:
            result["hour"] = pd.Series(pd.NA, index=raw.index, dtype="Int64")
        counts = {}
        for c in ("deaths", "serious_injuries", "minor_injuries", "injuries"):
            counts[c] = out.get(c, pd.Series(pd.NA, index=raw.index, dtype="Int64"))
        sev = out["severity"] if "severity" in out else _severity_from_counts(counts, raw.index)
        result["severity"] = sev
        for c, v in counts.items():
            result[c] = v
        for c in ("collision_type", "light", "weather"):
            result[c] = out.get(c, pd.Series(pd.NA, index=raw.index, dtype="string"))
    elif kind == "hazard":
        result["category"] = out.get("category", pd.Series(pd.NA, index=raw.index, dtype="string"))
        result["grade"] = out.get(
            "grade", pd.Series("general", index=raw.index, dtype="string")
        ).fillna("general")
        result["status"] = out.get("status", pd.Series(pd.NA, index=raw.index, dtype="string"))
        result["reported_at"] = out["reported_at"]
    else:
        result["site_code"] = out.get(
            "site_code", pd.Series(pd.NA, index=raw.index, dtype="string")
        )
        result["start"] = out["start"]
        result["end"] = out["end"]
        bad_window = (result["end"] < result["start"]).fillna(False).to_numpy()
        if bad_window.any():
            report.notes.append(
                f"{int(bad_window.sum())} work zones end before they start; kept as given"
            )
        result["lanes_taken"] = out.get(
            "lanes_taken", pd.Series(np.nan, index=raw.index, dtype="float64")
        )
        result["night_works"] = out.get(
            "night_works", pd.Series(pd.NA, index=raw.index, dtype="boolean")
        )
        result["status"] = out.get("status", pd.Series(pd.NA, index=raw.index, dtype="string"))
    result["road_name"] = out.get("road_name", pd.Series(pd.NA, index=raw.index, dtype="string"))

    used = {c for cs in cols.values() for c in cs}
    if gcol:
        used.add(gcol)
    if file_geom:
        used.add(str(raw.geometry.name))
    reserved = set(result.columns) | {
        "geometry",
        "unit_id",
        "distance_m",
        "measure_m",
        "match",
        "overlap_m",
    }
    extras = {}
    for c in raw.columns:
        if c in used:
            continue
        if c == "kind" and (raw[c].astype("string") == kind).all():
            continue  # the file's own kind column, as trafficunit writes it
        new = f"src_{c}" if c in reserved else str(c)
        extras[new] = raw[c]
    if extras:
        result = pd.concat([result, pd.DataFrame(extras, index=raw.index)], axis=1)
    gdf = gpd.GeoDataFrame(result, geometry=gpd.GeoSeries(geoms, index=raw.index), crs=4326)
    if not keep.all():
        gdf = gdf.loc[keep].reset_index(drop=True)
    if buffer_m:
        gdf = _buffer(gdf, float(buffer_m))
    # input row (0-based, as text) -> why it was dropped, for callers reporting per item
    dropped = {str(int(i)): str(drops.reason[i]) for i in np.flatnonzero(~keep)}
    gdf.attrs = {"report": report.as_dict(), "dropped_rows": dropped}
    return gdf


def _field_summary(
    kind: str,
    cols: Mapping[str, list[str]],
    how: Mapping[str, str],
    report: _Report,
    *,
    xcol: str | None,
    ycol: str | None,
    gcol: str | None,
    file_geom: bool,
) -> dict[str, str]:
    """Each standard field → where its values came from, in words (for the read summary)."""
    out: dict[str, str] = {}
    pos = []
    if gcol:
        pos.append(f"WKT column {gcol!r}")
    if xcol:
        pos.append(f"x {xcol!r}, y {ycol!r}")
    if file_geom and not gcol:
        pos.append("the file's geometry")
    out["position"] = " + ".join(pos) + f" (crs {report.crs})"
    has_counts = [
        f for f in ("deaths", "serious_injuries", "minor_injuries", "injuries") if f in cols
    ]
    for fld in FIELDS[kind]:
        if fld in cols:
            src = " + ".join(repr(c) for c in cols[fld])
            out[fld] = f"{src} ({how.get(fld, 'given')})"
        elif fld == "event_id":
            out[fld] = "row number (no id column)"
        elif fld in ("year", "hour") and kind == "accident" and "time" in cols:
            out[fld] = "from time"
        elif fld == "severity" and has_counts:
            out[fld] = f"from the counts ({', '.join(has_counts)})"
        elif fld == "grade":
            out[fld] = "'general' (no grade column)"
        else:
            out[fld] = "-"
    return out


def _fmt_example(e: dict[str, Any]) -> str:
    vals = ", ".join(f"{k}={v!r}" for k, v in e.items() if k != "row")
    return f"row {e['row']}" + (f" ({vals})" if vals else "")


def _severity_from_counts(counts: dict[str, pd.Series], index: pd.Index) -> pd.Series:
    sev = pd.Series(pd.NA, index=index, dtype="string")
    given = [c for c in counts.values() if c.notna().any()]
    if not given:
        return sev
    known = pd.Series(False, index=index)
    for c in given:
        known |= c.notna()
    sev[known] = "O"
    for col, letter in (
        ("injuries", "B"),
        ("minor_injuries", "B"),
        ("serious_injuries", "A"),
        ("deaths", "K"),
    ):
        v = counts[col]
        sev[(v > 0).fillna(False)] = letter
    return sev


def _buffer(gdf: gpd.GeoDataFrame, metres: float) -> gpd.GeoDataFrame:
    if len(gdf) == 0:
        return gdf
    out = gdf.copy()
    metric = out.estimate_utm_crs()
    out["geometry"] = out.geometry.to_crs(metric).buffer(metres).to_crs(4326)
    return out
