"""Point events stored columnar: attribute columns and coordinate arrays, no shapely objects.

A GeoDataFrame holds one shapely point per event (some 200 bytes each: a gigabyte for five
million accidents). :class:`PointTable` keeps the same events as their attribute columns and
two coordinate arrays; :func:`~trafficunit.join.assign` joins it without making a point, and
:meth:`PointTable.to_geodataframe` makes the points once, when a GeoDataFrame is needed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyproj
import shapely

#: Rows decoded from WKB (their points freed after each chunk) or made into points at a time.
_CHUNK = 262_144


@dataclass
class PointTable:
    """Point events as columns: ``frame`` (the attributes, no geometry), ``x``/``y`` in
    ``crs``; ``geometry`` names the geometry column and ``position`` is its place among the
    columns of :meth:`to_geodataframe`."""

    frame: pd.DataFrame
    x: np.ndarray
    y: np.ndarray
    crs: pyproj.CRS
    geometry: str = "geometry"
    position: int = -1

    def __len__(self) -> int:
        return len(self.frame)

    def with_frame(self, frame: pd.DataFrame) -> PointTable:
        """The same points with other attribute columns (the same rows, in order)."""
        if len(frame) != len(self.x):
            raise ValueError(f"a frame of {len(frame)} rows for {len(self.x)} points")
        return replace(self, frame=frame)

    def to_geodataframe(self) -> gpd.GeoDataFrame:
        """The events as a GeoDataFrame: the points made here, once."""
        made = np.empty(len(self.x), dtype=object)
        for i in range(0, len(made), _CHUNK):  # no (n, 2) array of every coordinate at once
            made[i : i + _CHUNK] = shapely.points(self.x[i : i + _CHUNK], self.y[i : i + _CHUNK])
        points = gpd.array.from_shapely(made, crs=self.crs)
        cols: list[tuple[Any, Any]] = [(c, self.frame[c]) for c in self.frame.columns]
        pos = len(cols) if self.position < 0 else self.position
        cols.insert(pos, (self.geometry, pd.Series(points, index=self.frame.index, copy=False)))
        # over the frame's own columns: no copy of millions of rows beside the new points
        out = gpd.GeoDataFrame(dict(cols), geometry=self.geometry, copy=False)
        out.attrs = dict(self.frame.attrs)
        return out

    def to_parquet(self, path: str | os.PathLike[str]) -> None:
        """Write the events as GeoParquet, the file :meth:`to_geodataframe` ``.to_parquet``
        would write, with the points encoded from the coordinate arrays (no shapely point);
        atomically. :meth:`read_parquet` reads it back."""
        import pyarrow.parquet as pq
        from geopandas.io.arrow import _geopandas_to_arrow

        from ..io import atomic_path

        # the schema of the geometry column and its metadata as geopandas writes them
        empty = replace(self, frame=self.frame.iloc[:0], x=self.x[:0], y=self.y[:0])
        like = _geopandas_to_arrow(empty.to_geodataframe(), index=None)
        body = pa.Table.from_pandas(self.frame)
        pos = len(self.frame.columns) if self.position < 0 else self.position
        body = body.add_column(pos, like.schema.field(self.geometry), _point_wkb(self.x, self.y))
        meta = dict(body.schema.metadata)
        pm, pl = json.loads(meta[b"pandas"]), json.loads(like.schema.metadata[b"pandas"])
        entry = next(c for c in pl["columns"] if c["name"] == self.geometry)
        pm["columns"].insert(pos, entry)
        geo = json.loads(like.schema.metadata[b"geo"])
        col = geo["columns"][self.geometry]
        if len(self.x):
            col["geometry_types"] = ["Point"]
            col["bbox"] = [
                float(np.min(self.x)),
                float(np.min(self.y)),
                float(np.max(self.x)),
                float(np.max(self.y)),
            ]
        meta[b"pandas"], meta[b"geo"] = json.dumps(pm).encode(), json.dumps(geo).encode()
        with atomic_path(path) as tmp:
            pq.write_table(body.replace_schema_metadata(meta), tmp)

    @classmethod
    def read_parquet(cls, path: str | os.PathLike[str]) -> PointTable | None:
        """The events of a GeoParquet file, when every geometry is a two-dimensional point
        (``None`` otherwise: read it as a GeoDataFrame). Equal to ``geopandas.read_parquet``
        but for the points, decoded in chunks to coordinates."""
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        if b"geo" not in meta:
            return None
        geo = json.loads(meta[b"geo"])
        name = geo["primary_column"]
        col_meta = geo["columns"][name]
        if col_meta.get("encoding", "WKB") != "WKB" or name not in table.column_names:
            return None
        names = list(table.slice(0, 0).to_pandas().columns)
        xy = _wkb_points(table.column(name))
        if xy is None:
            return None
        frame = table.drop_columns([name]).to_pandas()
        del table
        crs = pyproj.CRS.from_user_input(col_meta.get("crs", "OGC:CRS84"))
        return cls(frame, xy[0], xy[1], crs, name, names.index(name))


def _point_wkb(x: np.ndarray, y: np.ndarray) -> pa.ChunkedArray:
    """Little-endian WKB of the 2D points (x, y), 21 bytes each, made with numpy."""
    chunks = []
    for i in range(0, max(len(x), 1), _CHUNK):
        xs, ys = x[i : i + _CHUNK], y[i : i + _CHUNK]
        rec = np.zeros((len(xs), 21), dtype=np.uint8)
        rec[:, 0] = 1  # little endian
        rec[:, 1:5] = np.frombuffer(np.uint32(1).astype("<u4").tobytes(), dtype=np.uint8)
        rec[:, 5:13] = np.ascontiguousarray(xs, dtype="<f8").view(np.uint8).reshape(-1, 8)
        rec[:, 13:21] = np.ascontiguousarray(ys, dtype="<f8").view(np.uint8).reshape(-1, 8)
        offsets = np.arange(0, 21 * len(xs) + 1, 21, dtype=np.int32)
        buffers = [None, pa.py_buffer(offsets), pa.py_buffer(rec)]
        chunks.append(pa.Array.from_buffers(pa.binary(), len(xs), buffers))
    return pa.chunked_array(chunks, type=pa.binary())


def _wkb_points(column: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """x and y of a WKB column's geometries, or ``None`` unless all are 2D points."""
    n = len(column)
    x, y = np.empty(n), np.empty(n)
    start = 0
    for chunk in column.chunks:
        for off in range(0, len(chunk), _CHUNK):
            part = chunk.slice(off, _CHUNK)
            xy = _wkb_xy(part)  # from the bytes, without a shapely point, where it can
            if xy is not None and not np.isnan(xy).any():  # NaN: an empty point, rejected below
                x[start : start + len(xy)], y[start : start + len(xy)] = xy[:, 0], xy[:, 1]
                start += len(xy)
                continue
            g = shapely.from_wkb(np.asarray(part, dtype=object))
            if g.size and not (
                (shapely.get_type_id(g) == 0).all()
                and not shapely.is_empty(g).any()
                and not shapely.has_z(g).any()
            ):
                return None
            x[start : start + len(g)] = shapely.get_x(g)
            y[start : start + len(g)] = shapely.get_y(g)
            start += len(g)
    return x, y


def _wkb_xy(col: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """Coordinates ``(n, 2)`` of a WKB column of 2D points (little-endian, as GeoParquet
    writers write them), read from the bytes; None if any value is something else."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if arr.null_count or not len(arr):
        return None
    offsets = np.frombuffer(
        arr.buffers()[1], dtype=np.int32 if arr.type == pa.binary() else np.int64
    )
    offsets = offsets[arr.offset : arr.offset + len(arr) + 1]
    if not (np.diff(offsets) == 21).all():
        return None
    raw = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    rec = raw.reshape(-1, 21)
    if not ((rec[:, 0] == 1).all() and (rec[:, 1:5].view("<u4")[:, 0] == 1).all()):
        return None
    return np.ascontiguousarray(rec[:, 5:21]).view("<f8").reshape(-1, 2)


def events_input(events: Any, *, columnar: bool) -> gpd.GeoDataFrame | PointTable:
    """Events given as a frame, or as a GeoParquet path: read as a :class:`PointTable` when
    ``columnar`` and every geometry is a 2D point, else as a GeoDataFrame."""
    if not isinstance(events, str | os.PathLike):
        return events
    table = PointTable.read_parquet(events) if columnar else None
    if table is not None:
        return table
    from ..io import read_table

    frame: gpd.GeoDataFrame = read_table(events, index=None)
    return frame
