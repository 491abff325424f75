"""Live vector tiles: Mapbox Vector Tile 2.1 encoding of in-memory data, vectorised.

Hazards change every hour and users filter accidents by date or time of day; such layers are
cut on the fly from a :class:`LiveLayer` (a GeoDataFrame projected once to Web Mercator with a
shapely ``STRtree``) instead of from a prebuilt archive.

Encoding is vectorised over all features of a tile: shapely clips and explodes the geometries,
numpy quantises them to the tile grid, delta- and zigzag-encodes the coordinates, builds the
command integers and writes every protobuf varint of the tile in one pass; ragged pieces
(feature headers, tags, geometries, values) are interleaved by index arithmetic, not Python
loops. :class:`TileCache` keeps finished tiles keyed by tileset, data version, tile and filter.

>>> import geopandas as gpd, shapely
>>> pts = gpd.GeoDataFrame({"event_id": ["a"], "severity": ["K"]},
...                        geometry=[shapely.Point(24.94, 60.17)], crs=4326)
>>> layer = LiveLayer("accidents", pts, id_column="event_id")
>>> z, x, y = 14, *lonlat_to_tile(24.94, 60.17, 14)
>>> tile = encode_tile([layer.encode(z, x, y)])
>>> len(tile) > 0
True
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ._errors import ValidationError
from .tiles import feature_ids

__all__ = [
    "LiveLayer",
    "TileCache",
    "CachedTile",
    "encode_tile",
    "encode_layer",
    "tile_bounds",
    "lonlat_to_tile",
    "MERCATOR_HALF",
]

#: Half the width of the Web Mercator square, metres.
MERCATOR_HALF = 20037508.342789244

_U8 = np.uint8
_POINT, _LINE, _POLYGON = 1, 2, 3


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """Web Mercator bounds ``(minx, miny, maxx, maxy)`` of tile z/x/y (XYZ scheme), metres."""
    size = 2 * MERCATOR_HALF / (1 << z)
    minx = -MERCATOR_HALF + x * size
    maxy = MERCATOR_HALF - y * size
    return minx, maxy - size, minx + size, maxy


def lonlat_to_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The x, y of the zoom-``z`` tile holding a WGS84 point."""
    n = 1 << z
    x = int((lon + 180.0) / 360.0 * n)
    lat_r = math.radians(lat)
    y = int((1.0 - math.asinh(math.tan(lat_r)) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


# --------------------------------------------------------------------------- protobuf pieces


_VARINT_LIMITS = np.array([1 << (7 * k) for k in range(1, 10)], dtype=np.uint64)


def _varint_len(values: np.ndarray) -> np.ndarray:
    """Bytes of the protobuf varint of each uint64 value."""
    v = np.asarray(values).astype(np.uint64, copy=False)
    return np.searchsorted(_VARINT_LIMITS, v, side="right").astype(np.int64) + 1


_SHIFTS = np.arange(10, dtype=np.uint64) * np.uint64(7)


def _varint(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protobuf varints of uint64 ``values``: (bytes, number of bytes of each value)."""
    v = np.asarray(values).astype(np.uint64, copy=False)
    nb = _varint_len(v)
    width = int(nb.max()) if len(nb) else 0
    if width <= 1:
        return v.astype(_U8), nb
    # an n x width grid of 7-bit groups; keep the first nb of each row, flag all but the last
    groups = ((v[:, None] >> _SHIFTS[None, :width]) & np.uint64(0x7F)).astype(_U8)
    k = np.arange(width)[None, :]
    groups[k < (nb[:, None] - 1)] |= _U8(0x80)
    return groups[k < nb[:, None]], nb


def _varint1(value: int) -> bytes:
    """The protobuf varint of one non-negative int (lengths and scalars, not arrays)."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _zigzag(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.int64)
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


def _int_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Varint-encode an (n, k) int matrix row by row: (bytes, byte length of each row)."""
    n, k = rows.shape
    data, nb = _varint(rows.reshape(-1))
    return data, nb.reshape(n, k).sum(axis=1)


def _interleave(pieces: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Concatenate ragged byte pieces item by item: item 0's pieces, then item 1's, ...

    Each piece is ``(data, lengths)``: ``data`` holds the bytes of every item back to back and
    ``lengths[i]`` is item i's share.
    """
    lens = np.stack([np.asarray(p[1], dtype=np.int64) for p in pieces], axis=1)
    n, k = lens.shape
    flat = lens.reshape(-1)
    starts = (np.cumsum(flat) - flat).reshape(n, k)
    out = np.empty(int(flat.sum()), dtype=_U8)
    for j, (data, ln) in enumerate(pieces):
        ln = np.asarray(ln, dtype=np.int64)
        if len(data) == 0:
            continue
        src_start = np.cumsum(ln) - ln
        out[np.repeat(starts[:, j] - src_start, ln) + np.arange(len(data))] = data
    return out


def _ragged_bytes(strings: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    lens = np.fromiter((len(s) for s in strings), dtype=np.int64, count=len(strings))
    return np.frombuffer(b"".join(strings), dtype=_U8), lens


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class _Column:
    """A property column prepared once per data version.

    ``codes`` number each row's value among the column's distinct values (-1 when missing);
    ``vdata``/``voff``/``vlen`` hold the encoded ``values`` entry of every distinct value, so a
    tile only gathers the entries its features use.
    """

    name: str
    kind: str  # "str" | "bool" | "int" | "float"
    values: np.ndarray
    valid: np.ndarray
    codes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    vdata: np.ndarray = field(default_factory=lambda: np.zeros(0, _U8))
    voff: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    vlen: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def _prepare_column(name: str, s: pd.Series) -> _Column:
    """A :class:`_Column` with its value table."""
    col = _column_values(name, s)
    codes = np.full(len(col.values), -1, dtype=np.int64)
    sub, uniques = pd.factorize(col.values[col.valid])
    codes[col.valid] = sub
    vdata, vlen = _value_messages(col, np.asarray(uniques))
    return replace(col, codes=codes, vdata=vdata, voff=np.cumsum(vlen) - vlen, vlen=vlen)


def _gather(data: np.ndarray, off: np.ndarray, lens: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Concatenate the ragged items ``idx`` of a flat byte buffer (offsets ``off``)."""
    ln = lens[idx]
    starts = np.cumsum(ln) - ln
    return data[np.repeat(off[idx] - starts, ln) + np.arange(int(ln.sum()))]


def _column_values(name: str, s: pd.Series) -> _Column:
    valid = s.notna().to_numpy(dtype=bool)
    if pd.api.types.is_bool_dtype(s):
        return _Column(name, "bool", s.fillna(False).to_numpy(dtype=bool), valid)
    if pd.api.types.is_integer_dtype(s):
        return _Column(name, "int", s.fillna(0).to_numpy(dtype=np.int64), valid)
    if pd.api.types.is_float_dtype(s):
        return _Column(name, "float", s.to_numpy(dtype=np.float64, na_value=np.nan), valid)
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(s):
        text = s.dt.strftime("%Y-%m-%dT%H:%M:%S%z").fillna("")
        return _Column(name, "str", text.to_numpy(dtype=object), valid)
    nonnull = s[valid]
    if len(nonnull) and pd.api.types.infer_dtype(nonnull, skipna=True) == "boolean":
        as_bool = s.map(lambda v: bool(v) if isinstance(v, bool | np.bool_) else False)
        return _Column(name, "bool", as_bool.to_numpy(dtype=bool), valid)
    return _Column(name, "str", s.astype(str).where(valid, "").to_numpy(dtype=object), valid)


def _value_messages(col: _Column, uniques: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Layer ``values`` entries (field 4) for the unique values of one column."""
    n = len(uniques)
    if col.kind == "str":
        raw = [str(u).encode("utf-8") for u in uniques]
        data, slen = _ragged_bytes(raw)
        msg_len = 1 + _varint_len(slen) + slen
        head, hlen = _int_rows(np.stack([np.full(n, 0x22), msg_len, np.full(n, 0x0A), slen], 1))
        return _interleave([(head, hlen), (data, slen)]), hlen + slen
    if col.kind == "float":
        body = np.asarray(uniques, dtype="<f8").view(_U8)
        head = np.tile(np.array([0x22, 9, 0x19], dtype=_U8), n)
        return _interleave([(head, np.full(n, 3)), (body, np.full(n, 8))]), np.full(n, 11)
    ints = np.asarray(uniques, dtype=np.int64)
    if col.kind == "bool":
        tag, val = np.full(n, 0x38), ints.astype(np.uint64)
    else:
        neg = ints < 0
        tag = np.where(neg, 0x30, 0x28)
        val = np.where(neg, _zigzag(ints), ints.astype(np.uint64))
    msg_len = 1 + _varint_len(val)
    rows = np.stack(
        [
            np.full(n, 0x22, dtype=np.uint64),
            msg_len.astype(np.uint64),
            tag.astype(np.uint64),
            val.astype(np.uint64),
        ],
        1,
    )
    return _int_rows(rows)


@dataclass(frozen=True)
class _ValueTable:
    """The property columns of a layer in one value-id space, prepared once per data version.

    ``codes[i, j]`` is row i's value id in column j (-1 when missing); value ids number the
    distinct values column after column, so one ``np.unique`` per tile finds the values the
    tile's features use, and one gather copies their encoded ``values`` entries.
    """

    codes: np.ndarray  # (rows, columns) int64
    col_of: np.ndarray  # column of each value id
    vdata: np.ndarray  # encoded values entries, back to back
    voff: np.ndarray
    vlen: np.ndarray
    keys: tuple[bytes, ...]  # encoded keys entry (field 3) of each column

    @classmethod
    def build(cls, columns: Sequence[_Column], n_rows: int) -> _ValueTable:
        counts = np.array([len(c.vlen) for c in columns], dtype=np.int64)
        first = np.cumsum(counts) - counts
        codes = np.full((n_rows, len(columns)), -1, dtype=np.int64)
        for j, col in enumerate(columns):  # once per column at load time, not per tile
            codes[:, j] = np.where(col.codes >= 0, col.codes + first[j], -1)
        vlen = np.concatenate([c.vlen for c in columns]) if columns else np.zeros(0, np.int64)
        vdata = np.concatenate([c.vdata for c in columns]) if columns else np.zeros(0, _U8)
        keys = []
        for col in columns:
            name = col.name.encode("utf-8")
            keys.append(b"\x1a" + _varint1(len(name)) + name)
        return cls(
            codes=codes,
            col_of=np.repeat(np.arange(len(columns)), counts),
            vdata=vdata,
            voff=np.cumsum(vlen) - vlen,
            vlen=vlen,
            keys=tuple(keys),
        )


# --------------------------------------------------------------------------- geometry


def _to_tile_coords(
    geoms: np.ndarray, bounds: tuple[float, float, float, float], extent: int
) -> np.ndarray:
    minx, miny, maxx, maxy = bounds
    sx = extent / (maxx - minx)
    sy = extent / (maxy - miny)

    def affine(c: np.ndarray) -> np.ndarray:
        out = np.empty_like(c)
        out[:, 0] = (c[:, 0] - minx) * sx
        out[:, 1] = (maxy - c[:, 1]) * sy
        return out

    return shapely.transform(geoms, affine)


def _geometry_ints(
    geoms: np.ndarray, gtype: np.ndarray, extent: int, buffer: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Command integers of features already in tile coordinates.

    Returns ``(ints, owner, keep)``: the uint32 command stream, the feature each int belongs
    to (positions in ``geoms``) and which features kept a geometry.
    """
    n = len(geoms)
    lo, hi = -buffer, extent + buffer
    is_pt = gtype == _POINT
    clipped = geoms.copy()
    if (~is_pt).any():
        clipped[~is_pt] = shapely.clip_by_rect(geoms[~is_pt], lo, lo, hi, hi)
    poly = gtype == _POLYGON
    if poly.any():
        clipped[poly] = shapely.orient_polygons(clipped[poly], exterior_cw=False)
    # explode to single parts (twice: collections may hold multi-geometries)
    parts, owner = shapely.get_parts(clipped, return_index=True)
    sub, sub_owner = shapely.get_parts(parts, return_index=True)
    parts, owner = sub, owner[sub_owner]
    ptype = shapely.get_type_id(parts)  # 0 point, 1 line, 2 linearring, 3 polygon
    want = np.select([gtype[owner] == _POINT, gtype[owner] == _LINE], [0, 1], 3)
    ok = (ptype == want) & ~shapely.is_empty(parts)
    parts, owner = parts[ok], owner[ok]
    if poly.any():
        # polygons: one "part" per ring; rings of a polygon share a polygon number
        is_poly_part = gtype[owner] == _POLYGON
        rings, ring_of = shapely.get_rings(parts[is_poly_part], return_index=True)
        poly_owner = owner[is_poly_part][ring_of]
        first_ring = np.r_[True, ring_of[1:] != ring_of[:-1]]
        polygon_no = np.cumsum(first_ring) - 1 + (len(parts) if len(parts) else 0)
        lines = parts[~is_poly_part]
        line_owner = owner[~is_poly_part]
        seq = np.concatenate([lines, rings])
        owner = np.concatenate([line_owner, poly_owner])
        is_ring = np.r_[np.zeros(len(lines), bool), np.ones(len(rings), bool)]
        group = np.r_[np.arange(len(lines)), polygon_no]  # polygon of a ring, else the part
        is_exterior = np.r_[np.zeros(len(lines), bool), first_ring]
        order = np.argsort(owner, kind="stable")
        seq, owner, is_ring, group, is_exterior = (
            seq[order],
            owner[order],
            is_ring[order],
            group[order],
            is_exterior[order],
        )
    else:
        seq = parts
        is_ring = np.zeros(len(seq), bool)
        group = np.arange(len(seq))
        is_exterior = is_ring
    if len(seq) == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(n, bool)
    coords, part_of = shapely.get_coordinates(seq, return_index=True)
    q = np.rint(coords).astype(np.int64)
    # drop repeated points (after quantising) and the closing point of rings
    first = np.r_[True, part_of[1:] != part_of[:-1]]
    last = np.r_[part_of[1:] != part_of[:-1], True]
    same = np.r_[False, (q[1:] == q[:-1]).all(axis=1)] & ~first
    drop = same | (last & is_ring[part_of])
    drop &= ~(gtype[owner[part_of]] == _POINT)
    q, part_of = q[~drop], part_of[~drop]
    m = np.bincount(part_of, minlength=len(seq))
    need = np.where(is_ring, 3, np.where(gtype[owner] == _LINE, 2, 1))
    part_ok = m >= need
    # a polygon whose exterior ring collapsed loses its holes too
    ext_ok = np.ones(group.max() + 1, bool)
    ext_ok[group[is_exterior & ~part_ok]] = False
    part_ok &= ext_ok[group]
    keep_pt = part_ok[part_of]
    q, part_of = q[keep_pt], part_of[keep_pt]
    # renumber surviving parts
    new_no = np.cumsum(part_ok) - 1
    part_of = new_no[part_of]
    owner_p, ring_p, m = owner[part_ok], is_ring[part_ok], m[part_ok]
    feat_has = np.zeros(n, bool)
    feat_has[owner_p] = True
    if len(m) == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64), feat_has
    # deltas: the cursor runs through a feature's parts and restarts at 0 for each feature
    own_c = owner_p[part_of]
    d = np.diff(q, axis=0, prepend=np.zeros((1, 2), np.int64))
    feat_first = np.r_[True, own_c[1:] != own_c[:-1]]
    d[feat_first] = q[feat_first]
    zz = _zigzag(d.reshape(-1)).reshape(-1, 2)
    point_part = gtype[owner_p] == _POINT
    # points: one MoveTo per feature with all its points; other parts: MoveTo, LineTo, [Close]
    pf_first = np.r_[True, owner_p[1:] != owner_p[:-1]]
    npts_feat = np.bincount(owner_p, weights=m, minlength=n).astype(np.int64)
    head_len = np.where(point_part, np.where(pf_first, 1, 0), 1)
    body_len = np.where(point_part, 2 * m, 2 + np.where(m > 1, 1 + 2 * (m - 1), 0))
    close_len = ring_p.astype(np.int64)
    plen = head_len + body_len + close_len
    pstart = np.cumsum(plen) - plen
    out = np.zeros(int(plen.sum()), dtype=np.uint64)
    # headers
    pt_head = point_part & pf_first
    out[pstart[pt_head]] = np.uint64(1) | (
        npts_feat[owner_p[pt_head]].astype(np.uint64) << np.uint64(3)
    )
    out[pstart[~point_part]] = np.uint64(9)
    # coordinates: position of the j-th point of a part
    cstart = np.cumsum(m) - m
    j = np.arange(len(q)) - cstart[part_of]
    base = pstart[part_of] + head_len[part_of]
    is_pp = point_part[part_of]
    pos = np.where(is_pp, base + 2 * j, np.where(j == 0, base, base + 1 + 2 * j))
    out[pos] = zz[:, 0]
    out[pos + 1] = zz[:, 1]
    lt = (~point_part) & (m > 1)
    out[pstart[lt] + 3] = np.uint64(2) | ((m[lt] - 1).astype(np.uint64) << np.uint64(3))
    out[(pstart + plen - 1)[ring_p]] = np.uint64(15)
    owner_int = np.repeat(owner_p, plen)
    return out, owner_int, feat_has


def _point_ints(
    xy: np.ndarray, bounds: tuple[float, float, float, float], extent: int, buffer: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Command integers of single-point features: MoveTo(1) and the zigzag position each."""
    minx, miny, maxx, maxy = bounds
    px = np.rint((xy[:, 0] - minx) * (extent / (maxx - minx))).astype(np.int64)
    py = np.rint((maxy - xy[:, 1]) * (extent / (maxy - miny))).astype(np.int64)
    keep = (px >= -buffer) & (px <= extent + buffer) & (py >= -buffer) & (py <= extent + buffer)
    k = int(keep.sum())
    ints = np.empty((k, 3), dtype=np.uint64)
    ints[:, 0] = 9
    ints[:, 1] = _zigzag(px[keep])
    ints[:, 2] = _zigzag(py[keep])
    return ints.reshape(-1), np.repeat(np.flatnonzero(keep), 3), keep


# --------------------------------------------------------------------------- layers


def encode_layer(
    name: str,
    geoms: np.ndarray,
    ids: np.ndarray,
    columns: Sequence[_Column] | _ValueTable,
    rows: np.ndarray,
    bounds: tuple[float, float, float, float],
    *,
    extent: int = 4096,
    buffer: int = 64,
    points: np.ndarray | None = None,
) -> bytes:
    """Encode one MVT layer (``Tile.Layer`` message) of the features ``rows``.

    ``geoms`` are Web Mercator geometries of those features, ``ids`` their numeric ids and
    ``columns`` the prepared property columns of the whole data set (indexed by ``rows``), or
    their value table (:attr:`LiveLayer.values`, built once).
    A layer of single points may pass their coordinates as ``points`` (n x 2, Web Mercator)
    instead: no geometry objects are touched then. Returns ``b""`` when no feature has
    geometry inside the buffered tile.
    """
    if points is not None:
        if len(points) == 0:
            return b""
        gints, gowner, has = _point_ints(points, bounds, extent, buffer)
        gtype = np.full(len(points), _POINT)
    else:
        if len(geoms) == 0:
            return b""
        tgeoms = _to_tile_coords(np.asarray(geoms), bounds, extent)
        tid = shapely.get_type_id(tgeoms)
        gtype = np.select(
            [np.isin(tid, (0, 4)), np.isin(tid, (1, 2, 5))], [_POINT, _LINE], _POLYGON
        )
        gints, gowner, has = _geometry_ints(tgeoms, gtype, extent, buffer)
    if not has.any():
        return b""
    # renumber kept features
    keep_idx = np.flatnonzero(has)
    newno = np.cumsum(has) - 1
    gowner = newno[gowner]
    nf = len(keep_idx)
    rows = np.asarray(rows)[keep_idx]
    fids = np.asarray(ids)[keep_idx].astype(np.uint64)
    ftype = gtype[keep_idx]
    gcount = np.bincount(gowner, minlength=nf)
    glen = np.bincount(gowner, weights=_varint_len(gints), minlength=nf).astype(np.int64)
    # tags: (key, value) index pairs into this tile's keys and values tables
    if isinstance(columns, _ValueTable):
        table = columns
    else:
        n_rows = len(columns[0].codes) if columns else int(rows.max()) + 1
        table = _ValueTable.build(columns, n_rows)
    codes = table.codes[rows]
    ok = codes >= 0
    vids = codes[ok]  # row-major: grouped by feature
    used, local = np.unique(vids, return_inverse=True)
    present = np.unique(table.col_of[used])
    key_no = np.full(len(table.keys), -1, dtype=np.int64)
    key_no[present] = np.arange(len(present))
    tag_ints = np.empty(2 * len(vids), dtype=np.uint64)
    tag_ints[0::2] = key_no[table.col_of[vids]]
    tag_ints[1::2] = local
    tcount = 2 * ok.sum(axis=1)
    tag_owner = np.repeat(np.arange(nf), tcount)
    tlen = np.bincount(tag_owner, weights=_varint_len(tag_ints), minlength=nf).astype(np.int64)
    # every varint of every feature, in message order, encoded in one pass:
    # 0x12 len | 0x08 id | 0x12 len tags... | 0x18 type | 0x22 len geometry...
    flen = (
        (1 + _varint_len(fids))
        + (1 + _varint_len(tlen) + tlen)
        + 2
        + (1 + _varint_len(glen) + glen)
    )
    total = 10 + tcount + gcount
    start = np.cumsum(total) - total
    ints = np.empty(int(total.sum()), dtype=np.uint64)
    head: tuple[Any, ...] = (0x12, flen, 0x08, fids, 0x12, tlen)
    for k, v in enumerate(head):
        ints[start + k] = v
    mid = start + 6 + tcount
    tail: tuple[Any, ...] = (0x18, ftype, 0x22, glen)
    for k, v in enumerate(tail):
        ints[mid + k] = v
    tstart = np.cumsum(tcount) - tcount
    ints[start[tag_owner] + 6 + np.arange(len(tag_ints)) - tstart[tag_owner]] = tag_ints
    gstart = np.cumsum(gcount) - gcount
    ints[mid[gowner] + 4 + np.arange(len(gints)) - gstart[gowner]] = gints
    features, _ = _varint(ints)
    key_bytes = b"".join(table.keys[c] for c in present)
    value_bytes = _gather(table.vdata, table.voff, table.vlen, used).tobytes()
    name_b = name.encode("utf-8")
    return b"".join(
        [
            b"\x78\x02\x0a" + _varint1(len(name_b)) + name_b,
            features.tobytes(),
            key_bytes,
            value_bytes,
            b"\x28" + _varint1(extent),
        ]
    )


def encode_tile(layers: Sequence[bytes]) -> bytes:
    """Wrap encoded layers (from :func:`encode_layer`) into a ``Tile`` message.

    Empty layers are left out; a tile with no layer is ``b""``.
    """
    out = []
    for layer in layers:
        if layer:
            out.append(b"\x1a" + _varint1(len(layer)) + layer)
    return b"".join(out)


class LiveLayer:
    """In-memory data served as one tile layer, projected once and spatially indexed.

    Parameters
    ----------
    name
        Layer name inside the tile (``accidents``, ``hazards``...).
    gdf
        The features, any CRS. Line/polygon events joined to several units (several rows with
        the same id) become one feature.
    id_column
        Column (or ``"index"``) of the string ids that give the stable numeric feature ids.
    columns
        Property columns carried by the tiles (default: every non-geometry column).
    """

    def __init__(
        self,
        name: str,
        gdf: gpd.GeoDataFrame,
        *,
        id_column: str = "event_id",
        columns: Sequence[str] | None = None,
    ) -> None:
        if gdf.crs is None:
            raise ValidationError(f"live layer {name!r} has no CRS; set it before serving")
        frame = gdf.reset_index() if id_column not in gdf.columns else gdf
        if id_column not in frame.columns:
            raise ValidationError(f"live layer {name!r} needs an {id_column!r} column")
        frame = frame[~(frame.geometry.isna() | frame.geometry.is_empty)]
        frame = frame.drop_duplicates(id_column)
        self.name = name
        self.frame = frame.reset_index(drop=True)
        self.geoms = np.asarray(self.frame.geometry.to_crs(3857).array)
        self.ids = feature_ids(self.frame[id_column].to_numpy())
        names = (
            columns
            if columns is not None
            else [c for c in self.frame.columns if c != self.frame.geometry.name]
        )
        self.columns = [_prepare_column(c, self.frame[c]) for c in names if c in self.frame]
        self.values = _ValueTable.build(self.columns, len(self.frame))
        self.tree = shapely.STRtree(self.geoms)
        is_point = shapely.get_type_id(self.geoms) == 0
        self.points = shapely.get_coordinates(self.geoms) if is_point.all() else None

    def __len__(self) -> int:
        return len(self.frame)

    def with_columns(self, updates: Mapping[str, Any]) -> LiveLayer:
        """A copy with the property columns in ``updates`` (full columns in this layer's row
        order) replaced; geometries, ids and the spatial index are shared, not rebuilt."""
        new = copy.copy(self)
        frame = self.frame.copy(deep=False)
        for k, v in updates.items():
            frame[k] = v
        new.frame = frame
        new.columns = [
            _prepare_column(c.name, frame[c.name]) if c.name in updates else c for c in self.columns
        ]
        new.values = _ValueTable.build(new.columns, len(frame))
        return new

    def query(self, z: int, x: int, y: int, *, buffer: int = 64, extent: int = 4096) -> np.ndarray:
        """Positions of the features whose bounding box meets the (buffered) tile."""
        minx, miny, maxx, maxy = tile_bounds(z, x, y)
        pad = (maxx - minx) * buffer / extent
        box = shapely.box(minx - pad, miny - pad, maxx + pad, maxy + pad)
        return np.sort(self.tree.query(box))

    def encode(
        self,
        z: int,
        x: int,
        y: int,
        *,
        mask: np.ndarray | None = None,
        extent: int = 4096,
        buffer: int = 64,
    ) -> bytes:
        """The encoded layer for tile z/x/y, optionally only rows where ``mask`` is true."""
        rows = self.query(z, x, y, buffer=buffer, extent=extent)
        if mask is not None:
            rows = rows[mask[rows]]
        return encode_layer(
            self.name,
            self.geoms[rows],
            self.ids[rows],
            self.values,
            rows,
            tile_bounds(z, x, y),
            extent=extent,
            buffer=buffer,
            points=None if self.points is None else self.points[rows],
        )


class CachedTile:
    """A finished tile: raw bytes, a strong ETag (hash of the raw bytes) and, made on first
    use, the gzip bytes (compression level 1: live tiles favour speed)."""

    __slots__ = ("_gz", "etag", "raw")

    def __init__(self, raw: bytes, etag: str) -> None:
        self.raw = raw
        self.etag = etag
        self._gz: bytes | None = None

    @classmethod
    def from_raw(cls, raw: bytes) -> CachedTile:
        return cls(raw, '"' + hashlib.blake2b(raw, digest_size=12).hexdigest() + '"')

    @property
    def gz(self) -> bytes:
        if self._gz is None:
            self._gz = gzip.compress(self.raw, compresslevel=1, mtime=0) if self.raw else b""
        return self._gz


class TileCache:
    """A thread-safe LRU cache of finished tiles, bounded by entry count.

    Keys are any hashable tuple; use ``(tileset, data_version, z, x, y, filter_key)`` so a new
    data version or another filter never serves a stale tile.
    """

    def __init__(self, maxsize: int = 4096) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
