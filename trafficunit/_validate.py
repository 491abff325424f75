"""Private checks shared by the public functions."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from ._errors import CRSError, ValidationError


def require_gdf(obj: Any, what: str) -> gpd.GeoDataFrame:
    """Raise unless ``obj`` is a GeoDataFrame with a CRS."""
    if not isinstance(obj, gpd.GeoDataFrame):
        raise ValidationError(f"{what} must be a GeoDataFrame, got {type(obj).__name__}")
    if obj.crs is None:
        raise CRSError(
            f"{what} has no CRS; set it with .set_crs(...) (e.g. 4326 for longitude/latitude)"
        )
    return obj


def transformer(src: Any, dst: Any) -> pyproj.Transformer:
    """The ``always_xy`` transformer from ``src`` to ``dst``, made once per pair of CRS in a
    process (making one parses both CRS and searches PROJ's database: milliseconds, paid by
    every task that reprojects). pyproj's transformers are thread-safe."""
    return _transformer(pyproj.CRS.from_user_input(src), pyproj.CRS.from_user_input(dst))


@lru_cache(maxsize=16)
def _transformer(src: pyproj.CRS, dst: pyproj.CRS) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def metric_crs(gdf: gpd.GeoDataFrame, crs: Any = None) -> pyproj.CRS:
    """The projected CRS metric work happens in: ``crs`` if given, else the UTM zone of the data.

    A given CRS must be projected in metres.
    """
    if crs is not None:
        try:
            out = pyproj.CRS.from_user_input(crs)
        except pyproj.exceptions.CRSError as exc:
            raise CRSError(f"unknown CRS {crs!r}: {exc}") from exc
        if not out.is_projected:
            raise CRSError(f"metric CRS {crs!r} is not projected; give a projected CRS in metres")
        return out
    if gdf.crs is not None and gdf.crs.is_projected:
        unit = gdf.crs.axis_info[0].unit_name if gdf.crs.axis_info else ""
        if unit in ("metre", "meter"):
            return pyproj.CRS.from_user_input(gdf.crs)
    if len(gdf) == 0:
        raise ValidationError("cannot choose a metric CRS for empty data")
    try:
        out = gdf.estimate_utm_crs()
    except Exception as exc:
        raise CRSError(f"cannot estimate a UTM CRS for the data: {exc}") from exc
    return pyproj.CRS.from_user_input(out)


def geometry_problems(geoms: np.ndarray) -> np.ndarray:
    """Reason (str) per geometry that is unusable for a road, or '' where it is fine."""
    out = np.full(len(geoms), "", dtype=object)
    missing = shapely.is_missing(geoms)
    out[missing] = "missing geometry"
    empty = ~missing & shapely.is_empty(geoms)
    out[empty] = "empty geometry"
    ok = ~missing & ~empty
    types = shapely.get_type_id(geoms)
    not_line = ok & ~np.isin(types, [1, 5])  # LineString, MultiLineString
    out[not_line] = "not a line"
    ok &= ~not_line
    coords_ok = np.ones(len(geoms), dtype=bool)
    if ok.any():
        xy = shapely.get_coordinates(geoms[ok], return_index=True)
        bad_vertex = ~np.isfinite(xy[0]).all(axis=1)
        bad_idx = np.unique(xy[1][bad_vertex])
        sub = np.flatnonzero(ok)
        coords_ok[sub[bad_idx]] = False
    out[ok & ~coords_ok] = "non-finite coordinates"
    return out


def time_zone(tz: str, hint: str) -> str:
    """``tz`` if pandas knows the time zone, else :class:`ValidationError` saying so, then
    ``hint`` (how to name one)."""
    try:
        pd.Timestamp("2000-01-01").tz_localize(tz)
    except Exception as exc:
        raise ValidationError(f"unknown time zone {tz!r}{hint}") from exc
    return tz
