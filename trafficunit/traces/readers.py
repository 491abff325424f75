"""Reading GPS traces: GPX tracks and CSV (``time, lon, lat[, speed]``), checked."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from .._errors import CRSError, InputFileError, ValidationError
from ..matching.hmm import check_time_order
from ..routing import check_tz

_TIME_NAMES = ("time", "timestamp", "datetime", "date_time", "gps_time", "时间")


_LON_NAMES = ("lon", "lng", "longitude", "long", "x", "经度")


_LAT_NAMES = ("lat", "latitude", "y", "纬度")


_SPEED_NAMES = ("speed", "speed_kmh", "speed_mps", "速度")


def _pick(cols: Sequence[str], names: Sequence[str]) -> str | None:
    low = {str(c).strip().lower(): c for c in cols}
    for n in names:
        if n in low:
            return str(low[n])
    return None


def _finish(
    df: pd.DataFrame,
    x: np.ndarray,
    y: np.ndarray,
    crs: Any,
    tz: str | None,
    where: str,
) -> gpd.GeoDataFrame:
    """Checks shared by the readers: coordinates plausible for the CRS, times sorted, unique."""
    try:
        crs_obj = pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError as exc:
        raise CRSError(f"{where}: unknown CRS {crs!r}") from exc
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        raise ValidationError(f"{where}: row {int(np.flatnonzero(bad)[0])} has no coordinates")
    if crs_obj.is_geographic and len(x) and ((np.abs(x) > 180).any() or (np.abs(y) > 90).any()):
        i = int(np.flatnonzero((np.abs(x) > 180) | (np.abs(y) > 90))[0])
        raise CRSError(
            f"{where}: row {i} ({x[i]:g}, {y[i]:g}) is not longitude/latitude; the trace looks "
            "projected: give its CRS (crs=..., --crs)"
        )
    t = pd.to_datetime(df["time"], errors="coerce", utc=False, format="mixed")
    if t.isna().any():
        i = int(np.flatnonzero(t.isna().to_numpy())[0])
        raise ValidationError(f"{where}: row {i} has an unreadable time {df['time'].iloc[i]!r}")
    if getattr(t.dtype, "tz", None) is None:
        if tz is None:
            raise ValidationError(
                f"{where}: times have no time zone; give the zone they are in (tz=..., --tz)"
            )
        t = t.dt.tz_localize(check_tz(tz))
    df = df.assign(time=t)
    utc = t.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    check_time_order(utc.astype("datetime64[ns]").astype(np.int64), t, where)
    return gpd.GeoDataFrame(df, geometry=shapely.points(x, y), crs=crs_obj)


def _read_csv(path: Path, crs: Any, tz: str | None, speed_unit: str) -> gpd.GeoDataFrame:
    from ..io import read_table

    raw = read_table(path)
    tcol = _pick(list(raw.columns), _TIME_NAMES)
    xcol = _pick(list(raw.columns), _LON_NAMES)
    ycol = _pick(list(raw.columns), _LAT_NAMES)
    missing = [n for n, c in (("time", tcol), ("lon", xcol), ("lat", ycol)) if c is None]
    if missing:
        raise InputFileError(
            f"{path}: no {', '.join(missing)} column (a trace CSV has time, lon, lat[, speed]; "
            f"found {', '.join(map(str, raw.columns))})"
        )
    df = pd.DataFrame({"time": raw[tcol]})
    scol = _pick(list(raw.columns), _SPEED_NAMES)
    if scol is not None:
        sp = pd.to_numeric(raw[scol], errors="coerce").astype(float)
        unit = (
            "m/s"
            if scol.lower() == "speed_mps"
            else "km/h"
            if scol.lower() == "speed_kmh"
            else speed_unit
        )
        if unit not in ("km/h", "m/s"):
            raise ValidationError(f"speed_unit must be 'km/h' or 'm/s' (got {speed_unit!r})")
        df["speed_kmh"] = sp * (3.6 if unit == "m/s" else 1.0)
    x = pd.to_numeric(raw[xcol], errors="coerce").to_numpy(float)
    y = pd.to_numeric(raw[ycol], errors="coerce").to_numpy(float)
    return _finish(df, x, y, crs, tz, str(path))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_gpx_tracks(path: str | Path) -> list[tuple[str, gpd.GeoDataFrame]]:
    """Every track of a GPX file as ``(name, points)``; segments of a track are joined.

    GPX times are UTC (``Z``) by the standard; ``<speed>`` (m/s, GPX 1.0 or an extension) is
    kept as ``speed_kmh``.
    """
    p = Path(path)
    try:
        root = ET.parse(p).getroot()
    except (ET.ParseError, OSError) as exc:
        raise InputFileError(f"{p}: not a readable GPX file ({exc})") from exc
    out = []
    tracks = [el for el in root if _local(el.tag) == "trk"]
    if not tracks:
        raise InputFileError(f"{p}: no <trk> track in the GPX file")
    for k, trk in enumerate(tracks):
        name = next((el.text or "" for el in trk if _local(el.tag) == "name"), "") or f"track {k}"
        rows = []
        for pt in trk.iter():
            if _local(pt.tag) != "trkpt":
                continue
            t = sp = None
            for el in pt.iter():
                tag = _local(el.tag)
                if tag == "time":
                    t = el.text
                elif tag == "speed":
                    sp = el.text
            rows.append((pt.get("lon"), pt.get("lat"), t, sp))
        df = pd.DataFrame(rows, columns=["lon", "lat", "time", "speed"])
        x = pd.to_numeric(df["lon"], errors="coerce").to_numpy(float)
        y = pd.to_numeric(df["lat"], errors="coerce").to_numpy(float)
        frame = pd.DataFrame({"time": df["time"]})
        if df["speed"].notna().any():
            frame["speed_kmh"] = pd.to_numeric(df["speed"], errors="coerce") * 3.6
        out.append((name, _finish(frame, x, y, 4326, "UTC", f"{p} ({name})")))
    return out


def read_trace(
    path: str | Path,
    *,
    crs: Any = 4326,
    tz: str | None = None,
    speed_unit: str = "km/h",
    track: int | str | None = None,
) -> gpd.GeoDataFrame:
    """Read a GPS trace from GPX or CSV (``time``, ``lon``, ``lat``[, ``speed``]).

    Parameters
    ----------
    path
        ``.gpx`` or a table :func:`trafficunit.read_table` reads (CSV, Parquet, ...).
    crs
        CRS of a CSV's coordinates (default longitude/latitude, EPSG:4326). Coordinates that
        cannot be longitude/latitude raise ``CRSError``.
    tz
        Time zone of a CSV's times without one (required then; never assumed).
    speed_unit
        Unit of a CSV column named ``speed`` (``"km/h"`` or ``"m/s"``); ``speed_kmh`` and
        ``speed_mps`` columns say their own.
    track
        Which track of a GPX file with several (index or name); without it such a file raises.

    Returns
    -------
    geopandas.GeoDataFrame
        ``time`` (tz-aware), optional ``speed_kmh`` and point geometry, in time order (a trace
        out of order or with a repeated time raises ``ValidationError``).
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: no such file")
    if p.suffix.lower() == ".gpx":
        tracks = read_gpx_tracks(p)
        if track is None:
            if len(tracks) > 1:
                names = ", ".join(repr(n) for n, _ in tracks)
                raise ValidationError(
                    f"{p}: {len(tracks)} tracks ({names}); choose one with track= (--track) or "
                    "read them all with read_gpx_tracks"
                )
            return tracks[0][1]
        for i, (name, g) in enumerate(tracks):
            if track in (i, name):
                return g
        raise ValidationError(f"{p}: no track {track!r}")
    return _read_csv(p, crs, tz, speed_unit)
