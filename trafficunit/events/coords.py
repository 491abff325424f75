"""Positions: CRS, WKT/EWKT geometries, transformation to EPSG:4326 and outliers."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pyproj
import shapely

from .. import chinacrs
from .._errors import CRSError
from ..settings import EventSettings
from .report import _Drops, _Report


def _parse_crs(crs: Any) -> tuple[pyproj.CRS | None, str | None]:
    if crs is None:
        return None, None
    system = chinacrs.normalise_system(crs)
    if system is not None:
        return None, system
    try:
        return pyproj.CRS.from_user_input(crs), None
    except pyproj.exceptions.CRSError as exc:
        raise CRSError(
            f"unknown CRS {crs!r} ({exc}); give an EPSG code such as 4326, 3879 or 27700, "
            "or 'gcj02' / 'bd09' for Chinese consumer-map coordinates"
        ) from exc


def _valid_box(
    crs: pyproj.CRS | None, system: str | None, margin: float
) -> tuple[float, float, float, float]:
    if system is not None:
        w, s, e, n = chinacrs.CHINA_BBOX
        return w - margin, s - margin, e + margin, n + margin
    area = crs.area_of_use if crs is not None else None
    if area is None or (crs is not None and crs.is_geographic):
        return -180.0, -90.0, 180.0, 90.0
    w, s, e, n = area.west, area.south, area.east, area.north
    if w > e:  # crosses the antimeridian
        return -180.0, max(-90.0, s - margin), 180.0, min(90.0, n + margin)
    return (
        max(-180.0, w - margin),
        max(-90.0, s - margin),
        min(180.0, e + margin),
        min(90.0, n + margin),
    )


_EWKT_RE = re.compile(r"^\s*SRID=(\d+)\s*;\s*", re.IGNORECASE)


def _geometry_from_text(values: pd.Series) -> tuple[np.ndarray, np.ndarray, set[int]]:
    """Parse WKT / EWKT / hex WKB strings; return (geoms, unparseable mask, SRIDs seen)."""
    s = values.astype("string").str.strip()
    s = s.mask(s == "")
    present = s.notna().to_numpy()
    srids = s.str.extract(_EWKT_RE, expand=False).dropna().astype(int)
    body = s.str.replace(_EWKT_RE, "", regex=True)
    geoms = np.full(len(values), None, dtype=object)
    if present.any():
        txt = body[present].astype(str).to_numpy()
        is_hex = np.array([bool(re.fullmatch(r"[0-9A-Fa-f]+", t)) for t in txt[:1]]).all()
        try:
            if is_hex:
                g = shapely.from_wkb(txt, on_invalid="ignore")
            else:
                g = shapely.from_wkt(txt, on_invalid="ignore")
        except Exception:
            g = np.array([shapely.from_wkt(t, on_invalid="ignore") for t in txt], dtype=object)
        geoms[present] = g
    bad = present & (shapely.is_missing(geoms) | shapely.is_empty(geoms))
    geoms[bad] = None
    return geoms, bad, set(srids.unique().tolist())


def _transform_geoms(geoms: np.ndarray, crs: pyproj.CRS | None, system: str | None) -> np.ndarray:
    """Geometries (non-missing) from their CRS / Chinese system to EPSG:4326."""
    if system is not None:

        def fn(xy: np.ndarray) -> np.ndarray:
            lon, lat = chinacrs.to_wgs84(xy[:, 0], xy[:, 1], system)
            return np.column_stack([lon, lat])

        return shapely.transform(geoms, fn)
    assert crs is not None
    if crs.equals(pyproj.CRS.from_epsg(4326)):
        return geoms
    tr = pyproj.Transformer.from_crs(crs, 4326, always_xy=True)

    def fn2(xy: np.ndarray) -> np.ndarray:
        x, y = tr.transform(xy[:, 0], xy[:, 1], errcheck=False)
        return np.column_stack([x, y])

    return shapely.transform(geoms, fn2)


def _at(n: int, idx: np.ndarray) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[idx] = True
    return m


def _lonlat(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A representative lon/lat of each (non-missing) geometry."""
    pts = geoms
    types = shapely.get_type_id(geoms)
    if (types != 0).any():
        pts = geoms.copy()
        pts[types != 0] = shapely.point_on_surface(geoms[types != 0])
    xy = shapely.get_coordinates(pts)
    return xy[:, 0], xy[:, 1]


def _drop_far_outliers(
    geoms: np.ndarray,
    live: np.ndarray,
    drops: _Drops,
    settings: EventSettings,
    report: _Report,
    columns: list[str],
) -> None:
    """Drop positions far outside the data's own extent: further from the median position
    than ``settings.outlier_factor`` times the 95th percentile distance (at least
    ``settings.outlier_min_km``)."""
    idx = np.flatnonzero(live)
    if len(idx) < settings.outlier_min_rows:
        return
    lon, lat = _lonlat(geoms[idx])
    mx, my = float(np.median(lon)), float(np.median(lat))
    dx = (lon - mx) * np.cos(np.radians(my)) * 111.32
    dy = (lat - my) * 110.57
    d = np.hypot(dx, dy)
    limit = max(settings.outlier_factor * float(np.percentile(d, 95)), settings.outlier_min_km)
    far = d > limit
    if far.any():
        drops.mark(_at(len(drops.reason), idx[far]), "far outside the data's extent", columns)
        report.notes.append(
            f"{int(far.sum())} position{'s' if far.sum() != 1 else ''} more than "
            f"{limit:,.0f} km from the data's median "
            f"position ({mx:.4f}, {my:.4f}) dropped as far outside the data's extent"
        )
