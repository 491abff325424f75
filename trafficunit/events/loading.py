"""Loading a source: files of every common format and encoding, or a (Geo)DataFrame."""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from .._errors import InputFileError, ValidationError
from .report import _Report
from .schema import _CSV_SUFFIXES, _GEO_SUFFIXES, _SEPARATORS

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
