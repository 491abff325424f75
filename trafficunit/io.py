"""Reading and writing trafficunit outputs: GeoParquet and GeoPackage, written atomically.

Every writer goes through :func:`atomic_path`: the data is written to a temporary file beside
the target and renamed over it only when complete, so a crash mid-write leaves the previous
output intact.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from ._errors import InputFileError, ValidationError

__all__ = ["atomic_path", "read_table", "write_table", "SUFFIXES"]

#: File suffixes trafficunit writes, by driver.
SUFFIXES = {".parquet": "parquet", ".geoparquet": "parquet", ".gpkg": "GPKG"}


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success.

    On any exception the temporary file is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # writers (GDAL in particular) want to create the file themselves
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _gpkg_ready(df: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """GeoPackage has no list or dict columns: join lists with ';'."""
    out = df.copy()
    for col in out.columns:
        if col == out.geometry.name or out[col].dtype != object:
            continue
        sample = out[col].dropna()
        if len(sample) and isinstance(sample.iloc[0], list | tuple | set):
            out[col] = out[col].map(
                lambda v: ";".join(map(str, v)) if isinstance(v, list | tuple | set) else v
            )
    return out


def write_table(
    df: gpd.GeoDataFrame | pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    layer: str | None = None,
) -> Path:
    """Write a (Geo)DataFrame to GeoParquet (``.parquet``) or GeoPackage (``.gpkg``), atomically.

    The index is kept: a GeoDataFrame indexed by ``unit_id`` reads back indexed by ``unit_id``.

    Parameters
    ----------
    df
        The table to write.
    path
        Target file. Its suffix chooses the format.
    layer
        GeoPackage layer name (default: the file's stem).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValidationError(
            f"cannot write {path}: unknown output format {path.suffix!r}; "
            f"use one of {', '.join(sorted(SUFFIXES))}"
        )
    with atomic_path(path) as tmp:
        if kind == "parquet":
            df.to_parquet(tmp)
        else:
            if not isinstance(df, gpd.GeoDataFrame):
                raise ValidationError(f"cannot write {path}: GeoPackage needs a GeoDataFrame")
            out = _gpkg_ready(df)
            if out.index.name is not None:
                out = out.reset_index()
            out.to_file(tmp, driver="GPKG", layer=layer or path.stem, engine="pyogrio")
    return path


def read_table(path: str | os.PathLike[str], *, index: str | None = "unit_id") -> Any:
    """Read a GeoParquet or GeoPackage written by :func:`write_table`.

    Parameters
    ----------
    path
        File to read.
    index
        Column to use as index when the file stored it as a column (GeoPackage).
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: the file is empty")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".geoparquet"):
            try:
                df: Any = gpd.read_parquet(path)
            except ValueError:  # plain parquet without geo metadata
                df = pd.read_parquet(path)
        else:
            df = gpd.read_file(path, engine="pyogrio")
    except Exception as exc:
        raise InputFileError(f"{path}: cannot read ({exc})") from exc
    if index and index in df.columns and df.index.name != index:
        df = df.set_index(index)
    return df
