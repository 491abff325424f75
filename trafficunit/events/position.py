"""The position stage of a read: every row's geometry in EPSG:4326, or why the row is dropped.

In order: the WKT column or the file's geometry, then x/y where those give none; the CRS
(given, from EWKT SRIDs or from the file); missing, unparseable and (0, 0) positions; the
transformation to EPSG:4326; the valid area, with a check for swapped axes; far outliers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pyproj
import shapely

from .._errors import CRSError, ValidationError
from ..settings import EventSettings
from .coords import (
    _at,
    _drop_far_outliers,
    _geometry_from_text,
    _lonlat,
    _parse_crs,
    _transform_geoms,
    _valid_box,
)
from .report import _Source
from .values import to_float


@dataclass
class _XY:
    """Positions read from the x/y columns (on rows the geometry column left empty)."""

    x: np.ndarray
    y: np.ndarray
    ok: np.ndarray  # rows with a parseable x and y
    points: np.ndarray  # the points made from them, in the source CRS (None elsewhere)
    columns: list[str]


def _positions(
    src: _Source, *, crs: Any, decimal: str | None, valid_area: Any, settings: EventSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Every row's geometry in EPSG:4326 and which rows have one.

    Rows without a usable position are marked in ``src.drops``; ``src.report`` gets the CRS
    and hints about likely mistakes (swapped axes, a wrong CRS)."""
    drops, report, n = src.drops, src.report, src.n
    geoms = np.full(n, None, dtype=object)
    crs_obj, system = _source_geoms(src, geoms, crs)
    xy = _xy_points(src, geoms, decimal, settings) if src.xcol is not None else None
    if xy is not None and crs_obj is not None and crs_obj.is_projected:
        _degrees_for_metres(src, xy, crs_obj)
    if crs_obj is None and system is None:
        raise CRSError(
            f"{src.name}: the CRS of the coordinates is not known; give crs= (e.g. 4326 for "
            "longitude/latitude, 3879 for Helsinki's GK25, 'gcj02' for AMap coordinates)"
        )
    report.crs = system if system is not None else crs_obj.to_string()  # type: ignore[union-attr]
    cols = src.position_columns
    missing_geom = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    drops.mark(missing_geom, "missing coordinates", cols)
    live = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    if live.any():
        geoms[live] = _transform_geoms(geoms[live], crs_obj, system)
    if settings.zero_is_missing and live.any():
        # (0, 0) in longitude/latitude, whatever the source CRS: no road is there
        lv = np.flatnonzero(live)
        b0 = shapely.bounds(geoms[lv])
        at0 = (np.abs(b0) < 1e-9).all(axis=1)
        drops.mark(_at(n, lv[at0]), "coordinates (0, 0)", cols)
    exact = isinstance(valid_area, shapely.Geometry)  # else a box
    area = _valid_area(valid_area, crs_obj, system, settings)
    if live.any():
        outside = _outside(geoms, live, area, exact)
        if xy is not None and outside.any():
            sw = _swapped(src, xy, geoms, live, outside, area, exact, crs_obj, system)
            drops.mark(sw, "x and y swapped", xy.columns)
        drops.mark(outside, "outside the valid area", cols)
    _drop_far_outliers(geoms, live & drops.keep, drops, settings, report, cols)
    if drops.count("x and y swapped") > 0.5 * max(n, 1):
        report.hints.append(
            f"x and y look swapped: most positions fall inside {report.crs}'s area only with "
            f"them exchanged; give x={src.ycol!r} y={src.xcol!r}"
        )
    if drops.count("outside the valid area") > 0.5 * max(n, 1):
        report.hints.append(
            f"most positions lie outside the area where {report.crs} is used: is crs= right "
            "(e.g. 4326 for longitude/latitude, a national grid for metres)?"
        )
    return geoms, live


def _source_geoms(
    src: _Source, geoms: np.ndarray, crs: Any
) -> tuple[pyproj.CRS | None, str | None]:
    """Fill ``geoms`` from the WKT column or the file's geometry; the CRS of the positions
    (a pyproj CRS, or the name of a Chinese consumer-map system)."""
    raw, name = src.raw, src.name
    crs_obj, system = _parse_crs(crs)
    if src.gcol is not None:
        g, bad_wkt, srids = _geometry_from_text(raw[src.gcol])
        if crs_obj is None and system is None:
            if len(srids) == 1:
                crs_obj = pyproj.CRS.from_epsg(srids.pop())
            elif len(srids) > 1:
                raise CRSError(
                    f"{name}: column {src.gcol!r} mixes SRIDs {sorted(srids)}; give crs= or "
                    "split the file"
                )
        geoms[:] = g
        src.drops.mark(bad_wkt, "unparseable coordinates", src.gcol)
    elif src.file_geom:
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
            src.report.notes.append(f"file CRS {raw.crs} relabelled as {crs}")
    return crs_obj, system


def _xy_points(
    src: _Source, geoms: np.ndarray, decimal: str | None, settings: EventSettings
) -> _XY:
    """Points from the x/y columns where ``geoms`` has none yet (filled in place)."""
    raw, drops = src.raw, src.drops
    assert src.xcol is not None and src.ycol is not None
    pair = [src.xcol, src.ycol]
    todo = shapely.is_missing(geoms) & (drops.reason == None)  # noqa: E711
    xv = to_float(raw[src.xcol], decimal=decimal).to_numpy()
    yv = to_float(raw[src.ycol], decimal=decimal).to_numpy()
    given = raw[src.xcol].notna().to_numpy() & raw[src.ycol].notna().to_numpy()
    missing = todo & ~given
    unparse = todo & ~missing & ~(np.isfinite(xv) & np.isfinite(yv))
    zero = todo & ~missing & ~unparse & (xv == 0) & (yv == 0)
    drops.mark(missing, "missing coordinates", pair)
    drops.mark(unparse, "unparseable coordinates", pair)
    if settings.zero_is_missing:  # a placeholder, not a position
        drops.mark(zero, "coordinates (0, 0)", pair)
    ok = todo & ~missing & ~unparse
    geoms[ok] = shapely.points(xv[ok], yv[ok])
    points = np.full(src.n, None, dtype=object)
    points[ok] = geoms[ok]
    return _XY(x=xv, y=yv, ok=ok, points=points, columns=pair)


def _degrees_for_metres(src: _Source, xy: _XY, crs_obj: pyproj.CRS) -> None:
    """Drop x/y that are all longitude/latitude while the CRS is in metres (and say so)."""
    ok = xy.ok
    if ok.sum() >= 5 and (np.abs(xy.x[ok]) <= 180).all() and (np.abs(xy.y[ok]) <= 90).all():
        src.drops.mark(ok, "degrees given for a CRS in metres", xy.columns)
        src.report.hints.append(
            f"every x/y is within ±180/±90: these look like longitude/latitude, not the "
            f"metres of {crs_obj.name}; give crs=4326 (or the CRS the file uses)"
        )


def _valid_area(
    valid_area: Any, crs_obj: pyproj.CRS | None, system: str | None, settings: EventSettings
) -> shapely.Geometry:
    """The area positions must lie in: given, else the CRS's area of use plus a margin."""
    if valid_area is None:
        return shapely.box(*_valid_box(crs_obj, system, settings.valid_area_margin_deg))
    if isinstance(valid_area, tuple | list) and len(valid_area) == 4:
        return shapely.box(*[float(v) for v in valid_area])
    if isinstance(valid_area, shapely.Geometry):
        return valid_area
    raise ValidationError(
        "valid_area must be (min_lon, min_lat, max_lon, max_lat) or a shapely geometry in EPSG:4326"
    )


def _in_box(bounds: np.ndarray, box: Sequence[float] | np.ndarray) -> np.ndarray:
    """Which of the bounds (rows of minx, miny, maxx, maxy) lie inside ``box``."""
    x0, y0, x1, y1 = box
    return (bounds[:, 0] >= x0) & (bounds[:, 2] <= x1) & (bounds[:, 1] >= y0) & (bounds[:, 3] <= y1)


def _outside(
    geoms: np.ndarray, live: np.ndarray, area: shapely.Geometry, exact: bool
) -> np.ndarray:
    """Rows with a geometry outside the valid area (``exact``: the area itself, else its box)."""
    b = shapely.bounds(geoms[live])
    finite = np.isfinite(b).all(axis=1)
    inside = np.zeros(len(b), dtype=bool)
    if finite.any():
        lv = np.flatnonzero(finite)
        if exact:
            inside[lv] = shapely.covers(area, geoms[live][lv])
        else:
            inside[lv] = _in_box(b[lv], shapely.bounds(area))
    outside = np.zeros(len(geoms), dtype=bool)
    outside[np.flatnonzero(live)] = ~inside
    return outside


def _swapped(
    src: _Source,
    xy: _XY,
    geoms: np.ndarray,
    live: np.ndarray,
    outside: np.ndarray,
    area: shapely.Geometry,
    exact: bool,
    crs_obj: pyproj.CRS | None,
    system: str | None,
) -> np.ndarray:
    """Rows outside whose point would be inside with x and y exchanged (points from x/y only).

    Inside the valid area when no position is good, else near the good ones."""
    swapped = np.zeros(src.n, dtype=bool)
    cand = np.flatnonzero(outside & ~shapely.is_missing(xy.points) & src.drops.keep)
    if not len(cand):
        return swapped
    sw = _transform_geoms(shapely.points(xy.y[cand], xy.x[cand]), crs_obj, system)
    sb = shapely.bounds(sw)
    fine = np.isfinite(sb).all(axis=1)
    good = np.flatnonzero(live & ~outside & src.drops.keep)
    if len(good):
        gx, gy = _lonlat(geoms[good])
        pad = max(0.5, 0.1 * float(max(np.ptp(gx), np.ptp(gy))))
        x0, y0 = float(gx.min()) - pad, float(gy.min()) - pad
        x1, y1 = float(gx.max()) + pad, float(gy.max()) + pad
        ins = fine & _in_box(sb, (x0, y0, x1, y1))
    elif exact:
        ins = fine & shapely.covers(area, sw)
    else:
        ins = fine & _in_box(sb, shapely.bounds(area))
    swapped[cand[ins]] = True
    return swapped
