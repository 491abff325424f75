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

from .._errors import clip
from .errors import ImplausibleGeometry, ValidationError

__all__ = ["GeometryLimits", "check_plausible", "distances_m", "expand_bbox", "parse_geometry"]

_TYPES = ("Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon")
_M_PER_DEG = 111_320.0
#: Nesting depth of ``coordinates`` by geometry type (a position is depth 1).
_DEPTH = {
    "Point": 1,
    "MultiPoint": 2,
    "LineString": 2,
    "MultiLineString": 3,
    "Polygon": 3,
    "MultiPolygon": 4,
}
_SHAPE = {
    "Point": "[lon, lat]",
    "MultiPoint": "[[lon, lat], ...]",
    "LineString": "[[lon, lat], [lon, lat], ...] (two positions or more)",
    "MultiLineString": "[[[lon, lat], [lon, lat], ...], ...]",
    "Polygon": "[[[lon, lat], ...]] (closed rings of four positions or more)",
    "MultiPolygon": "[[[[lon, lat], ...]], ...]",
}


def _coordinates_problem(coords: Any, depth: int) -> str | None:
    """What is wrong with a ``coordinates`` array of the given nesting depth (None: fine)."""
    if depth == 1:
        if not isinstance(coords, list) or len(coords) not in (2, 3):
            return "a position must be [lon, lat] (or [lon, lat, height])"
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in coords):
            return "a position holds numbers only"
        return None
    if not isinstance(coords, list) or not coords:
        return "an array is missing or empty"
    for item in coords:
        problem = _coordinates_problem(item, depth - 1)
        if problem is not None:
            return problem
    return None


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
            f"geometry type {clip(gtype)} is not supported; use one of {', '.join(_TYPES)}"
        )
    if "coordinates" not in geojson:
        raise ValidationError(f"{gtype} geometry has no 'coordinates'")
    coords = geojson["coordinates"]
    problem = _coordinates_problem(coords, _DEPTH[gtype])
    if problem is not None:
        raise ValidationError(
            f"{gtype} coordinates are malformed ({problem}); a {gtype} is {_SHAPE[gtype]}"
        )
    if gtype in ("LineString", "MultiLineString"):
        lines = [coords] if gtype == "LineString" else coords
        if any(len(line) < 2 for line in lines):
            raise ValidationError(f"a line of the {gtype} has fewer than two positions")
    if gtype in ("Polygon", "MultiPolygon"):
        rings = coords if gtype == "Polygon" else [r for poly in coords for r in poly]
        for ring in rings:
            if len(ring) < 4 or ring[0][:2] != ring[-1][:2]:
                raise ValidationError(
                    f"a ring of the {gtype} is not closed (four positions or more, the "
                    "last equal to the first)"
                )
    try:
        geom = shapely.from_geojson(json.dumps({"type": gtype, "coordinates": coords}))
    except (shapely.errors.GEOSException, ValueError, TypeError) as exc:
        # our checks above catch what GEOS would refuse; never echo the parser's own words
        raise ValidationError(
            f"{gtype} coordinates are malformed; a {gtype} is {_SHAPE[gtype]}"
        ) from exc
    if geom is None or geom.is_empty:
        raise ValidationError(f"{gtype} geometry is empty")
    xy = shapely.get_coordinates(geom)
    if len(xy) > max_vertices:
        raise ValidationError(f"geometry has {len(xy)} vertices, more than {max_vertices}")
    if not np.isfinite(xy).all():
        raise ValidationError("geometry has coordinates that are not finite numbers")
    if (np.abs(xy[:, 0]) > 180).any() or (np.abs(xy[:, 1]) > 90).any():
        swapped = (np.abs(xy[:, 1]) <= 180).all() and (np.abs(xy[:, 0]) <= 90).all()
        hint = (
            " (they look swapped: GeoJSON is [longitude, latitude], e.g. [24.94, 60.17] in "
            "Helsinki)"
            if swapped
            else ""
        )
        raise ValidationError(
            "geometry has coordinates outside longitude -180..180 / latitude -90..90; "
            f"send WGS84 longitude, latitude (GeoJSON order){hint}"
        )
    if gtype in ("LineString", "MultiLineString") and shapely.length(geom) == 0:
        raise ValidationError(f"{gtype} has no length (all its vertices are the same point)")
    if gtype in ("Polygon", "MultiPolygon") and not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        raise ValidationError(f"{gtype} is not valid ({reason}); fix the ring(s) and resend")
    return geom


class GeometryLimits:
    """How large a reported geometry may be, and how far from the units.

    Attributes
    ----------
    max_area_m2
        Largest polygon area by kind (``hazard``, ``workzone``), square metres.
    max_length_m
        Longest line by kind, metres.
    units_margin_m
        A geometry must touch the bounding box of the units grown by this many metres (when
        units are known); beyond it the report is refused (422).
    """

    def __init__(
        self,
        max_area_m2: dict[str, float] | None = None,
        max_length_m: dict[str, float] | None = None,
        units_margin_m: float = 5000.0,
    ) -> None:
        self.max_area_m2 = {"hazard": 1_000_000.0, "workzone": 2_000_000.0, **(max_area_m2 or {})}
        self.max_length_m = {"hazard": 5_000.0, "workzone": 20_000.0, **(max_length_m or {})}
        self.units_margin_m = units_margin_m


_R = 6_371_008.8  # mean Earth radius, m


def _geodesic_area_length(geom: shapely.Geometry) -> tuple[float, float]:
    """Area (m², on the sphere) and length (m, geodesic on WGS84; 0 for points and polygons).

    The area uses Lambert's cylindrical equal-area projection, which keeps areas exactly for
    edges drawn straight on a lon/lat map, so a world-sized polygon measures 510 million km²
    (geodesic edges would cross the antimeridian the short way and shrink it).
    """
    area = 0.0
    if geom.geom_type in ("Polygon", "MultiPolygon"):

        def equal_area(xy: np.ndarray) -> np.ndarray:
            return np.column_stack([np.radians(xy[:, 0]) * _R, np.sin(np.radians(xy[:, 1])) * _R])

        area = float(shapely.area(shapely.transform(geom, equal_area)))
    length = 0.0
    if geom.geom_type in ("LineString", "MultiLineString"):
        from pyproj import Geod

        length = float(Geod(ellps="WGS84").geometry_length(geom))
    return area, length


def _km(value_m: float) -> str:
    return f"{value_m / 1000:,.1f} km" if value_m >= 1000 else f"{value_m:,.0f} m"


def _km2(value_m2: float) -> str:
    if value_m2 >= 1e12:
        return f"{value_m2 / 1e12:,.0f} million km²"
    return f"{value_m2 / 1e6:,.2f} km²" if value_m2 >= 1e5 else f"{value_m2:,.0f} m²"


def check_plausible(
    geom: shapely.Geometry,
    kind: str,
    limits: GeometryLimits,
    units_bounds: tuple[float, float, float, float] | None = None,
) -> None:
    """Refuse a geometry too large or too long for a ``kind`` report (``hazard`` or
    ``workzone``), or far from the units (``units_bounds``, lon/lat; None: not checked).

    Raises
    ------
    ImplausibleGeometry
        Saying which limit, the measured value, and a hint when swapping longitude and
        latitude would put the geometry in the units' area.
    """
    what = "hazard" if kind == "hazard" else "work zone"
    area, length = _geodesic_area_length(geom)
    max_area = limits.max_area_m2.get(kind, limits.max_area_m2["hazard"])
    if area > max_area:
        raise ImplausibleGeometry(
            f"the {what} covers {_km2(area)}, more than the {_km2(max_area)} a {what} may "
            "cover; report the affected stretch of road, not the region around it"
        )
    if geom.geom_type in ("LineString", "MultiLineString"):
        max_len = limits.max_length_m.get(kind, limits.max_length_m["hazard"])
        if length > max_len:
            raise ImplausibleGeometry(
                f"the {what} is {_km(length)} long, more than the {_km(max_len)} a {what} may "
                "span; split it into reports of shorter stretches"
            )
    if units_bounds is None:
        return
    area_box = shapely.box(*expand_bbox(units_bounds, limits.units_margin_m))
    if shapely.intersects(geom, area_box):
        return
    c = shapely.centroid(geom)
    far = float(distances_m(c, np.array([area_box], dtype=object))[0])
    hint = ""
    swapped = shapely.transform(geom, lambda xy: xy[:, ::-1])
    if shapely.intersects(swapped, area_box):
        hint = (
            f"; the coordinates look swapped (you sent [{c.x:.4f}, {c.y:.4f}]): GeoJSON is "
            "[longitude, latitude]"
        )
    raise ImplausibleGeometry(
        f"the {what} is {_km(far)} outside the area of the served units (reports are "
        f"accepted within {_km(limits.units_margin_m)} of it){hint}"
    )


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
