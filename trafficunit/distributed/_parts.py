"""Partitioned GeoParquet on disk: chunks of an input file, cell parts, lazily read datasets."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .._errors import InputFileError
from ..io import atomic_path

# --------------------------------------------------------------------------------------------
# input chunks

#: A chunk of an input file: (row group, first row, end row) within the row group.
Chunk = tuple[int, int, int]


def _chunks(path: Path, rows: int | None) -> list[Chunk]:
    """The file's rows as chunks of at most ``rows`` rows (None: whole row groups), never
    across row groups. A task reads a chunk's whole row group (Parquet decodes no part of
    one alone): a group cut in K chunks is read, decompressed and decoded K times."""
    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as exc:
        raise InputFileError(f"{path}: cannot read as GeoParquet ({exc})") from exc
    out: list[Chunk] = []
    for rg in range(meta.num_row_groups):
        n = meta.row_group(rg).num_rows
        k = 1 if rows is None else max(1, math.ceil(n / max(rows, 1)))
        step = math.ceil(n / k)
        out.extend((rg, a, min(a + step, n)) for a in range(0, n, step))
    return out


def _chunk_offsets(path: Path, chunks: list[Chunk]) -> list[int]:
    """Each chunk's first row among all rows of the file."""
    meta = pq.ParquetFile(path).metadata
    starts = np.r_[0, np.cumsum([meta.row_group(i).num_rows for i in range(meta.num_row_groups)])]
    return [int(starts[rg] + a) for rg, a, _ in chunks]


def _read_chunk(path: Path, chunk: Chunk) -> gpd.GeoDataFrame:
    """The rows of ``chunk`` as ``geopandas.read_parquet`` reads them (index from 0)."""
    from geopandas.io.arrow import _arrow_to_geopandas

    pf = pq.ParquetFile(path)
    rg, a, b = chunk
    table = pf.read_row_group(rg).slice(a, b - a)
    geo = json.loads(pf.schema_arrow.metadata[b"geo"])
    df: gpd.GeoDataFrame = _arrow_to_geopandas(table, geo)
    return df.reset_index(drop=True)


def _row_count(path: Path) -> int:
    return int(pq.ParquetFile(path).metadata.num_rows)


def _bbox(path: Path) -> tuple[np.ndarray | None, Any]:
    """The file's bounds and CRS from its GeoParquet metadata (bounds None if not given)."""
    geo = json.loads(pq.ParquetFile(path).schema_arrow.metadata[b"geo"])
    col = geo["columns"][geo["primary_column"]]
    bbox = col.get("bbox")
    return (np.asarray(bbox[:4], dtype=float) if bbox else None), col.get("crs", "OGC:CRS84")


# --------------------------------------------------------------------------------------------
# cell parts


def _cell_name(cell: tuple[int, int]) -> str:
    return f"cell-{cell[0]}-{cell[1]}"


def _write_json(path: Path, data: Any, *, indent: int | None = None) -> None:
    """``data`` as JSON to ``path`` atomically (the directory created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=indent, default=str))


def _write_part(df: pd.DataFrame, path: Path) -> None:
    """``df`` to ``path`` atomically (the directory created), with the options of
    :func:`_parquet_options`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = [c for c, t in df.dtypes.items() if isinstance(t, gpd.array.GeometryDtype)]
    text = [c for c, t in df.dtypes.items() if _is_text(t) and c not in binary]
    text += [n for n, t in zip(df.index.names, _index_dtypes(df.index), strict=True) if _is_text(t)]
    names = [*df.columns, *(n for n in df.index.names if n is not None)]
    options = _parquet_options(names, text, binary)
    with atomic_path(path) as tmp:
        if isinstance(df, gpd.GeoDataFrame):
            pq.write_table(_geo_table(df), tmp, **options)
        else:
            df.to_parquet(tmp, **options)


def _geo_table(df: gpd.GeoDataFrame) -> pa.Table:
    """The Arrow table ``df.to_parquet`` writes, its index converted as plain columns.

    pyarrow asks each column ``hasattr(column, "__arrow_array__")``: on a Series that goes to
    pandas' ``__getattr__``, which looks the name up in the index, building the index's hash
    table (a text index: every value made a Python string); its threads convert the columns at
    once and each builds it (0.1 CPU-second for a cell of 190,000 units, ten times the
    conversion itself). The index columns then go back to the end of the table and to the
    index in the pandas metadata, as ``to_parquet`` lays them out.
    """
    from geopandas.io.arrow import _geopandas_to_arrow

    levels = list(df.index.names)
    flat_ok = all(isinstance(n, str) for n in levels) and len(set(levels)) == len(levels)
    if isinstance(df.index, pd.RangeIndex) or not flat_ok or set(levels) & set(df.columns):
        return _geopandas_to_arrow(df)
    table = _geopandas_to_arrow(df.reset_index(), index=False)
    meta = dict(table.schema.metadata)
    pm = json.loads(meta[b"pandas"])
    k = len(levels)
    pm["index_columns"] = levels
    # what describes df.columns (the flat table's has no index: pyarrow left it out)
    empty = pa.Table.from_pandas(pd.DataFrame(columns=df.columns))
    pm["column_indexes"] = json.loads(empty.schema.metadata[b"pandas"])["column_indexes"]
    pm["columns"] = [*pm["columns"][k:], *pm["columns"][:k]]
    meta[b"pandas"] = json.dumps(pm).encode()
    order = [*table.column_names[k:], *levels]
    return table.select(order).replace_schema_metadata(meta)


def _is_text(dtype: Any) -> bool:
    return pd.api.types.is_string_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype)


def _index_dtypes(index: pd.Index) -> list[Any]:
    return list(index.dtypes) if isinstance(index, pd.MultiIndex) else [index.dtype]


def _parquet_options(names: Any, text: list[Any], binary: list[Any]) -> dict[str, Any]:
    """Options of ``pyarrow.parquet.write_table`` for a working or result part: dictionaries
    for the ``text`` columns only (ids, statuses, categories; not numbers, times or WKB
    geometries, whose values rarely repeat) and no min/max statistics of the ``binary``
    columns (WKB bytes): less CPU than the defaults, files of about the same size."""
    return {
        "use_dictionary": [str(c) for c in text],
        "write_statistics": [str(c) for c in names if c not in set(binary)],
    }


def _read_parts(paths: list[Path], columns: list[str] | None = None) -> pd.DataFrame | None:
    """The parts concatenated (None if there are none); GeoDataFrames where they hold a
    geometry column that is read."""
    geo = columns is None or "geometry" in columns
    frames = [
        gpd.read_parquet(p, columns=columns) if geo else pd.read_parquet(p, columns=columns)
        for p in paths
    ]
    return _concat_parts(frames) if frames else None


def _concat_parts(frames: list[Any]) -> Any:
    """Parts read as frames, concatenated as :func:`_read_parts` does (the empty ones left
    out unless all are)."""
    frames = [f for f in frames if len(f)] or frames[:1]
    if len(frames) == 1:
        return frames[0]
    out = pd.concat(frames)
    if isinstance(frames[0], gpd.GeoDataFrame):
        out = gpd.GeoDataFrame(out, geometry=frames[0].geometry.name, crs=frames[0].crs)
    return out


class PartitionedFrame:
    """A partitioned GeoParquet dataset: one file per grid cell, read on demand.

    ``read()`` (or ``compute()``) gives the whole frame as the single-process run returns it
    (units and risk sorted by ``unit_id``, joined rows in the order of the input events);
    ``read(columns=[...])`` reads only those columns. ``paths`` lists the files (readable
    by any GeoParquet reader, e.g. ``dask_geopandas.read_parquet(paths)``).
    """

    def __init__(self, directory: str | os.PathLike[str], *, order: str) -> None:
        self.directory = Path(directory)
        self.order = order  # "index" (unit_id) or "rows" (input event rows, reset after)

    @property
    def paths(self) -> list[Path]:
        return sorted(self.directory.glob("cell-*.parquet"))

    def __len__(self) -> int:
        return sum(int(pq.ParquetFile(p).metadata.num_rows) for p in self.paths)

    def __repr__(self) -> str:
        return f"PartitionedFrame({str(self.directory)!r}, {len(self.paths)} parts)"

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The whole dataset (``columns``: only those) in the single-process order."""
        out = _read_parts(self.paths, columns)
        if out is None:
            raise InputFileError(f"{self.directory}: no parts")
        out = out.sort_index(kind="stable")
        if self.order == "rows":
            out = out.reset_index(drop=True)
        return out

    compute = read
