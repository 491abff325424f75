"""The unit index the join queries (:class:`UnitIndex`), match statuses and distances."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from .._errors import ValidationError
from .._validate import metric_crs as _metric_crs
from .._validate import require_gdf, transformer
from ..settings import JoinSettings

#: Values of the ``match`` column.
MATCH_STATUSES = ("matched", "intersection", "too_far", "outside")
_MATCHED, _INTERSECTION, _TOO_FAR, _OUTSIDE = range(4)
_NOT_DONE = -1

_SEVERITIES = ("K", "A", "B", "C", "O")


class UnitIndex:
    """Units prepared for joining: metric geometries, spatial indexes, names, area.

    Build it once and pass it to :func:`assign` instead of the units to join many event
    sets (or live events) against the same network.

    Parameters
    ----------
    units
        Units as built by ``tu.build_units``: indexed by ``unit_id`` (or with a ``unit_id``
        column), with ``kind``, ``radius_m``, ``road_class`` and ``name`` where available.
        Without ``kind``, points are intersections and lines segments.
    crs
        Metric CRS (default: the units' own if projected in metres, else their UTM zone).
    settings
        :class:`~trafficunit.settings.JoinSettings` (for the default influence radius).
    """

    def __init__(
        self,
        units: gpd.GeoDataFrame,
        *,
        crs: Any = None,
        settings: JoinSettings | None = None,
    ) -> None:
        require_gdf(units, "units")
        cfg = settings or JoinSettings()
        if "unit_id" in units.columns:
            ids = units["unit_id"].astype(str).to_numpy()
        else:
            ids = units.index.astype(str).to_numpy()
        if len(units) and pd.Index(ids).has_duplicates:
            raise ValidationError("units have duplicate unit_id values; ids must be unique")
        self.units = units
        self.ids = ids
        self.crs = _metric_crs(units, crs) if len(units) else pyproj.CRS.from_user_input(crs)
        self.source_crs = units.crs
        source = np.asarray(units.geometry.array, dtype=object)
        src_crs = pyproj.CRS.from_user_input(units.crs) if units.crs is not None else None
        # the projection GeoSeries.to_crs makes, applied to coordinate arrays: the metric
        # geometries (:attr:`geoms`) are made only when something needs them
        self._to_metric = None
        if (
            src_crs is not None
            and not src_crs.equals(self.crs)
            and not src_crs.is_exact_same(self.crs)
        ):
            # one per pair of CRSs (from GeoParquet metadata one takes some 30 ms to make,
            # and a partitioned join makes an index per cell)
            self._to_metric = transformer(src_crs, self.crs)
        flat = not shapely.has_z(source).any()
        types = shapely.get_type_id(source)
        if "kind" in units.columns:
            is_int = (units["kind"].astype(str) == "intersection").to_numpy(dtype=bool)
        else:
            is_int = np.isin(types, [0, 4])
        self.is_int = is_int
        missing = shapely.is_missing(source)
        self.seg = np.flatnonzero(~is_int & ~missing)
        self.ints = np.flatnonzero(is_int & ~missing)
        self.all_pos = np.r_[self.seg, self.ints]
        if flat and (types[self.ints] == 0).all():
            self.int_xy = self._metric_xy(shapely.get_coordinates(source[self.ints]))
        elif len(self.ints):
            # a multipoint junction acts as its centre
            self.int_xy = shapely.get_coordinates(shapely.centroid(self.geoms[self.ints]))
        else:
            self.int_xy = np.empty((0, 2))
        if "radius_m" in units.columns:
            r = pd.to_numeric(units["radius_m"], errors="coerce").to_numpy(dtype=float)
        else:
            r = np.full(len(units), np.nan)
        r = np.where(np.isfinite(r), r, cfg.default_radius_m)
        self.radius = r
        if "road_class" in units.columns:
            cls = units["road_class"].astype("string").fillna("")
        else:
            cls = pd.Series("", index=units.index, dtype="string")
        codes, classes = pd.factorize(cls)
        self.class_codes, self.classes = codes, np.asarray(classes, dtype=object)
        # straight pieces of the segment units, for exact distances and measures in numpy
        parts, part_unit = shapely.get_parts(
            source[self.seg] if flat else self.geoms[self.seg], return_index=True
        )
        cxy, cidx = shapely.get_coordinates(parts, return_index=True)
        del parts
        if flat:
            cxy = self._metric_xy(cxy)
        same = cidx[1:] == cidx[:-1]
        self.pa = np.ascontiguousarray(cxy[:-1][same])
        self.pb = np.ascontiguousarray(cxy[1:][same])
        piece_part = cidx[:-1][same]
        self.piece_unit = self.seg[part_unit[piece_part]]
        self.piece_len = np.hypot(self.pb[:, 0] - self.pa[:, 0], self.pb[:, 1] - self.pa[:, 1])
        # contiguous columns for the per-pair arithmetic in _segment_pairs
        self.p_ax = np.ascontiguousarray(self.pa[:, 0])
        self.p_ay = np.ascontiguousarray(self.pa[:, 1])
        self.p_dx = self.pb[:, 0] - self.pa[:, 0]
        self.p_dy = self.pb[:, 1] - self.pa[:, 1]
        l2 = self.p_dx * self.p_dx + self.p_dy * self.p_dy
        self.p_il2 = np.divide(1.0, l2, out=np.zeros_like(l2), where=l2 > 0)
        cum = np.cumsum(self.piece_len)
        unit_first = np.r_[True, self.piece_unit[1:] != self.piece_unit[:-1]]
        base = np.maximum.accumulate(np.where(unit_first, cum - self.piece_len, 0.0))
        self.piece_start = cum - self.piece_len - base
        self._piece_trees: dict[float, shapely.STRtree] = {}
        r_int = self.radius[self.ints]
        self.disc_tree = _box_tree(self.int_xy - r_int[:, None], self.int_xy + r_int[:, None])
        self.rank = np.empty(len(ids), dtype=np.int64)
        self.rank[np.argsort(ids, kind="stable")] = np.arange(len(ids))
        self._hull: dict[float, Any] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def _metric_xy(self, xy: np.ndarray) -> np.ndarray:
        """Coordinates ``(n, 2)`` of the units' CRS in the metric CRS."""
        if self._to_metric is None or not len(xy):
            return xy
        x, y = self._to_metric.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    @cached_property
    def geoms(self) -> np.ndarray:
        """The units' geometries in the metric CRS (made on first use)."""
        g = self.units.geometry
        if self._to_metric is not None:
            g = g.to_crs(self.crs)
        return np.asarray(g.to_numpy(), dtype=object)

    @cached_property
    def seg_tree(self) -> shapely.STRtree:
        """STRtree of the segment units (metric)."""
        return shapely.STRtree(self.geoms[self.seg])

    @cached_property
    def all_tree(self) -> shapely.STRtree:
        """STRtree of every unit (segments, then intersections; positions in :attr:`all_pos`)."""
        return shapely.STRtree(self.geoms[self.all_pos])

    @cached_property
    def int_tree(self) -> shapely.STRtree:
        """STRtree of the intersections' points (a multipoint's centre)."""
        return shapely.STRtree(shapely.points(self.int_xy))

    @cached_property
    def names(self) -> np.ndarray:
        """Each unit's road name (``None`` where it has none), made on first use."""
        units = self.units
        if "name" not in units.columns:
            return np.full(len(units), None, dtype=object)
        names = units["name"].astype("string").to_numpy(dtype=object)
        out = names.copy()
        out[pd.isna(names)] = None
        return out

    def piece_tree(self, grow_m: float) -> shapely.STRtree:
        """STRtree of the segment pieces' bounding boxes grown by ``grow_m`` (cached)."""
        key = round(float(grow_m), 6)
        tree = self._piece_trees.get(key)
        if tree is None:
            lo = np.minimum(self.pa, self.pb) - grow_m
            hi = np.maximum(self.pa, self.pb) + grow_m
            tree = _box_tree(lo, hi)
            self._piece_trees[key] = tree
        return tree

    def release_trees(self) -> None:
        """Drop the cached piece trees (:meth:`piece_tree` rebuilds one when asked again)."""
        self._piece_trees.clear()

    def area(self, buffer_m: float) -> shapely.Geometry:
        """The network's area: convex hull of the units buffered by ``buffer_m`` (metric CRS)."""
        key = round(float(buffer_m), 6)
        if key not in self._hull:
            live = self.geoms[~shapely.is_missing(self.geoms)]
            hull = shapely.convex_hull(shapely.geometrycollections(live))
            area = shapely.buffer(hull, buffer_m)
            shapely.prepare(area)
            self._hull[key] = area
        return self._hull[key]


def _box_tree(lo: np.ndarray, hi: np.ndarray) -> shapely.STRtree:
    """STRtree of the boxes from ``lo`` to ``hi`` (``(n, 2)`` corners), for queries without a
    predicate: each box is held as its diagonal, a two-point line with the same envelope
    (the tree, and so what a query returns and in which order, depend on the envelopes
    alone), two thirds of a polygon's memory."""
    if not len(lo):
        return shapely.STRtree(np.empty(0, dtype=object))
    return shapely.STRtree(shapely.linestrings(np.stack([lo, hi], axis=1)))


# --------------------------------------------------------------------------------------------
# distances


def _threshold_table(
    kinds: Sequence[str],
    classes: Sequence[str],
    max_distance_m: float | Mapping[str, float] | None,
    cfg: JoinSettings,
    base: Mapping[str, float],
) -> np.ndarray:
    """Max distance (m) by [event kind code, unit class code]."""
    table = np.empty((len(kinds), max(len(classes), 1)), dtype=float)
    for i, k in enumerate(kinds):
        default = float(base.get(k, cfg.max_distance_m.get("accident", 25.0)))
        by_class: dict[str, float] = dict(cfg.max_distance_m_by_class.get(k, {}))
        if isinstance(max_distance_m, Mapping):
            by_class.update({c: float(v) for c, v in max_distance_m.items()})
            default = float(max_distance_m.get("default", default))
        elif max_distance_m is not None:
            default = float(max_distance_m)
            by_class = {}
        table[i, :] = default
        for j, c in enumerate(classes):
            if c in by_class:
                table[i, j] = by_class[c]
    if not np.isfinite(table).all() or (table < 0).any():
        raise ValidationError(f"max_distance_m must be finite and >= 0 (got {max_distance_m!r})")
    return table
