"""Reported geometries: GeoJSON in, checked shapely geometry out; short metric distances.

Reports come from phones and forms, so everything is checked: the GeoJSON shape, the geometry
type (points, lines, polygons and their multi forms), finite WGS84 coordinates, polygon
validity and the number of vertices.

>>> g = parse_geometry({"type": "Point", "coordinates": [24.94, 60.17]})
>>> g.wkt
'POINT (24.94 60.17)'
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import shapely

from .errors import ValidationError

__all__ = ["distances_m", "expand_bbox", "parse_geometry"]

_TYPES = ("Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon")
_M_PER_DEG = 111_320.0


def parse_geometry(geojson: Any, *, max_vertices: int = 5000) -> shapely.Geometry:
    """A GeoJSON geometry (dict or text) as a checked shapely geometry in WGS84.

    Parameters
    ----------
    geojson
        A GeoJSON geometry object (``{"type": "Point", "coordinates": [lon, lat]}``), or a
        Feature (its geometry is used).
    max_vertices
        Largest number of vertices accepted.

    Raises
    ------
    ValidationError
        With what is wrong: not GeoJSON, an unsupported type, coordinates outside
        longitude -180..180 / latitude -90..90, an invalid polygon, too many vertices.
    """
    if isinstance(geojson, str):
        try:
            geojson = json.loads(geojson)
        except ValueError as exc:
            raise ValidationError(f"geometry is not valid JSON: {exc}") from exc
    if not isinstance(geojson, dict):
        raise ValidationError("geometry must be a GeoJSON object like {'type': 'Point', ...}")
    if geojson.get("type") == "Feature":
        geojson = geojson.get("geometry")
        if not isinstance(geojson, dict):
            raise ValidationError("the Feature has no geometry")
    gtype = geojson.get("type")
    if gtype not in _TYPES:
        raise ValidationError(
            f"geometry type {gtype!r} is not supported; use one of {', '.join(_TYPES)}"
        )
    if "coordinates" not in geojson:
        raise ValidationError(f"{gtype} geometry has no 'coordinates'")
    try:
        geom = shapely.from_geojson(
            json.dumps({"type": gtype, "coordinates": geojson["coordinates"]})
        )
    except (shapely.errors.GEOSException, ValueError, TypeError) as exc:
        raise ValidationError(f"{gtype} coordinates are malformed: {exc}") from exc
    if geom is None or geom.is_empty:
        raise ValidationError(f"{gtype} geometry is empty")
    xy = shapely.get_coordinates(geom)
    if len(xy) > max_vertices:
        raise ValidationError(f"geometry has {len(xy)} vertices, more than {max_vertices}")
    if not np.isfinite(xy).all():
        raise ValidationError("geometry has coordinates that are not finite numbers")
    if (np.abs(xy[:, 0]) > 180).any() or (np.abs(xy[:, 1]) > 90).any():
        raise ValidationError(
            "geometry has coordinates outside longitude -180..180 / latitude -90..90; "
            "send WGS84 longitude, latitude (GeoJSON order)"
        )
    if gtype in ("LineString", "MultiLineString") and shapely.length(geom) == 0:
        raise ValidationError(f"{gtype} has no length (all its vertices are the same point)")
    if gtype in ("Polygon", "MultiPolygon") and not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        raise ValidationError(f"{gtype} is not valid ({reason}); fix the ring(s) and resend")
    return geom


def expand_bbox(
    bounds: tuple[float, float, float, float], distance_m: float
) -> tuple[float, float, float, float]:
    """``bounds`` (lon/lat) grown by ``distance_m`` metres on every side."""
    minx, miny, maxx, maxy = bounds
    lat = max(abs(miny), abs(maxy))
    dlat = distance_m / _M_PER_DEG
    dlon = distance_m / (_M_PER_DEG * max(math.cos(math.radians(min(lat, 89.0))), 1e-6))
    return minx - dlon, miny - dlat, maxx + dlon, maxy + dlat


def distances_m(geom: shapely.Geometry, others: np.ndarray) -> np.ndarray:
    """Distances (metres) from ``geom`` to each of ``others`` (lon/lat), for short distances.

    Uses an equirectangular projection centred on ``geom``: within a few kilometres the error
    is well under 1 %.
    """
    if len(others) == 0:
        return np.zeros(0)
    c = shapely.centroid(geom)
    lon0, lat0 = c.x, c.y
    kx = _M_PER_DEG * math.cos(math.radians(lat0))

    def project(xy: np.ndarray) -> np.ndarray:
        return np.column_stack([(xy[:, 0] - lon0) * kx, (xy[:, 1] - lat0) * _M_PER_DEG])

    a = shapely.transform(geom, project)
    b = shapely.transform(np.asarray(others, dtype=object), project)
    return np.asarray(shapely.distance(a, b), dtype=float)
