"""Chinese consumer-map coordinates: GCJ-02 (AMap/Gaode, Tencent) and BD-09 (Baidu) ↔ WGS84.

PROJ does not know these systems: they are WGS84 longitude/latitude with a deliberate,
position-dependent offset of a few hundred metres (GCJ-02) plus a further rotation-like shift
(BD-09). Data exported from such platforms must be converted before it is joined to an
OpenStreetMap network.

The forward transforms are the published formulas (as in ``eviltransform`` and
``coordtransform``); the inverses are computed by fixed-point iteration on the forward
transform until the residual is below ``1e-10`` degrees (about 0.01 mm), so a round trip
reproduces the input to far better than 1 m. Outside mainland China's rough bounding box
(longitude 72.004-137.8347, latitude 0.8293-55.8271) GCJ-02 equals WGS84, as in the
reference implementations.

Every function takes and returns arrays (or scalars) of longitude and latitude in degrees,
in that order, and is vectorised with numpy. NaN passes through as NaN.

>>> from trafficunit import chinacrs
>>> lon, lat = chinacrs.wgs84_to_gcj02(113.912316, 22.543847)  # Shenzhen
>>> round(float(lon), 6), round(float(lat), 6)
(113.917176, 22.540796)
>>> back = chinacrs.gcj02_to_wgs84(lon, lat)
>>> round(float(back[0]), 7), round(float(back[1]), 7)
(113.912316, 22.543847)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ._errors import CRSError

__all__ = [
    "CHINA_BBOX",
    "SYSTEMS",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "in_china",
    "to_wgs84",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]

FloatArray = npt.NDArray[np.float64]

#: (min lon, min lat, max lon, max lat) inside which GCJ-02 differs from WGS84.
CHINA_BBOX = (72.004, 0.8293, 137.8347, 55.8271)

#: Names accepted by :func:`to_wgs84` (and as ``crs=`` by ``tu.read_events``).
SYSTEMS = ("gcj02", "bd09")

# Krasovsky 1940 ellipsoid, as in the published GCJ-02 formula.
_A = 6378245.0
_EE = 0.00669342162296594323
_X_PI = np.pi * 3000.0 / 180.0

_TOL_DEG = 1e-10
_MAX_ITER = 30


def _arrays(lon: Any, lat: Any) -> tuple[FloatArray, FloatArray]:
    x = np.asarray(lon, dtype=np.float64)
    y = np.asarray(lat, dtype=np.float64)
    x, y = np.broadcast_arrays(x, y)
    return x.copy(), y.copy()


def in_china(lon: Any, lat: Any) -> npt.NDArray[np.bool_]:
    """True where a point lies in the box where GCJ-02 differs from WGS84."""
    x, y = _arrays(lon, lat)
    return (x >= CHINA_BBOX[0]) & (x <= CHINA_BBOX[2]) & (y >= CHINA_BBOX[1]) & (y <= CHINA_BBOX[3])


def _delta(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """GCJ-02 offset (dlon, dlat) in degrees at WGS84 position (lon, lat)."""
    x = lon - 105.0
    y = lat - 35.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x + common
    dlat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x + common
    dlon += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    rad_lat = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(rad_lat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrt_magic * np.cos(rad_lat) * np.pi)
    return dlon, dlat


def wgs84_to_gcj02(lon: Any, lat: Any) -> tuple[FloatArray, FloatArray]:
    """WGS84 → GCJ-02 (the published forward formula; identity outside China).

    Parameters
    ----------
    lon, lat
        WGS84 longitude and latitude in degrees (scalars or arrays of one shape).

    Returns
    -------
    (lon, lat)
        GCJ-02 longitude and latitude in degrees, as float arrays.
    """
    x, y = _arrays(lon, lat)
    inside = in_china(x, y)
    dlon, dlat = _delta(x, y)
    return np.where(inside, x + dlon, x), np.where(inside, y + dlat, y)


def _invert(
    forward: Any, lon: FloatArray, lat: FloatArray, start: tuple[FloatArray, FloatArray]
) -> tuple[FloatArray, FloatArray]:
    """Solve ``forward(w) == (lon, lat)`` for ``w`` by fixed-point iteration."""
    shape = lon.shape
    lon = lon.reshape(-1)
    lat = lat.reshape(-1)
    wx = np.array(start[0], dtype=np.float64).reshape(-1)
    wy = np.array(start[1], dtype=np.float64).reshape(-1)
    todo = np.isfinite(lon) & np.isfinite(lat)
    for _ in range(_MAX_ITER):
        if not todo.any():
            break
        fx, fy = forward(wx[todo], wy[todo])
        ex = lon[todo] - fx
        ey = lat[todo] - fy
        wx[todo] += ex
        wy[todo] += ey
        still = (np.abs(ex) > _TOL_DEG) | (np.abs(ey) > _TOL_DEG)
        idx = np.flatnonzero(todo)
        todo[idx[~still]] = False
    return wx.reshape(shape), wy.reshape(shape)


def gcj02_to_wgs84(lon: Any, lat: Any) -> tuple[FloatArray, FloatArray]:
    """GCJ-02 → WGS84 by iterating the forward formula (residual < 1e-10°, ~0.01 mm).

    Parameters
    ----------
    lon, lat
        GCJ-02 longitude and latitude in degrees.

    Returns
    -------
    (lon, lat)
        WGS84 longitude and latitude in degrees.
    """
    x, y = _arrays(lon, lat)
    return _invert(wgs84_to_gcj02, x, y, (x, y))


def gcj02_to_bd09(lon: Any, lat: Any) -> tuple[FloatArray, FloatArray]:
    """GCJ-02 → BD-09 (Baidu's published forward formula, applied everywhere)."""
    x, y = _arrays(lon, lat)
    z = np.sqrt(x * x + y * y) + 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def bd09_to_gcj02(lon: Any, lat: Any) -> tuple[FloatArray, FloatArray]:
    """BD-09 → GCJ-02, starting from the usual closed-form approximation and iterating."""
    x, y = _arrays(lon, lat)
    x0 = x - 0.0065
    y0 = y - 0.006
    z = np.sqrt(x0 * x0 + y0 * y0) - 0.00002 * np.sin(y0 * _X_PI)
    theta = np.arctan2(y0, x0) - 0.000003 * np.cos(x0 * _X_PI)
    start = (z * np.cos(theta), z * np.sin(theta))
    return _invert(gcj02_to_bd09, x, y, start)


def wgs84_to_bd09(lon: Any, lat: Any) -> tuple[FloatArray, FloatArray]:
    """WGS84 → BD-09 (via GCJ-02)."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def bd09_to_wgs84(lon: Any, lat: Any) -> tuple[FloatArray, FloatArray]:
    """BD-09 → WGS84 (via GCJ-02, both steps inverted iteratively)."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


def normalise_system(name: Any) -> str | None:
    """``"gcj02"`` / ``"bd09"`` for the spellings users write, ``None`` for anything else."""
    if not isinstance(name, str):
        return None
    key = name.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    if key in ("gcj02", "gcj", "mars", "amap", "gaode", "tencent"):
        return "gcj02"
    if key in ("bd09", "bd09ll", "baidu"):
        return "bd09"
    return None


def to_wgs84(lon: Any, lat: Any, system: str) -> tuple[FloatArray, FloatArray]:
    """Convert from ``system`` (``"gcj02"`` or ``"bd09"``, case and dashes ignored) to WGS84.

    Raises
    ------
    trafficunit.CRSError
        When ``system`` is neither.
    """
    name = normalise_system(system)
    if name == "gcj02":
        return gcj02_to_wgs84(lon, lat)
    if name == "bd09":
        return bd09_to_wgs84(lon, lat)
    raise CRSError(f"unknown Chinese map system {system!r}; use 'gcj02' or 'bd09'")
