"""The reader: :func:`read_events` and the stages of one read."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from .._errors import CRSError, TrafficUnitWarning, ValidationError
from ..settings import EVENT_KINDS, EventSettings
from .columns import _check_columns, _find_column, _joined, _resolve
from .coords import (
    _at,
    _drop_far_outliers,
    _geometry_from_text,
    _lonlat,
    _parse_crs,
    _transform_geoms,
    _valid_box,
)
from .loading import _load, _misdecoded_hint
from .report import _Drops, _Report
from .schema import (
    _BOOL_FIELDS,
    _FLOAT_FIELDS,
    _INT_FIELDS,
    _TIME_FIELDS,
    ALIASES,
    FIELDS,
    GRADE_DEFAULTS,
    KABCO,
    SEVERITY_DEFAULTS,
    ValueMap,
)
from .timezones import _describe_time, _time_zone, _zone_counts
from .values import (
    _YEAR_DIRECTIVES,
    _apply_map,
    _count_values,
    _parse_time_column,
    _text,
    _to_bool,
    _to_int,
    to_float,
)


def read_events(
    source: str | os.PathLike[str] | pd.DataFrame,
    *,
    kind: str | None = None,
    x: str | None = None,
    y: str | None = None,
    crs: Any = None,
    geometry: str | None = None,
    event_id: str | None = None,
    time: str | Sequence[str] | None = None,
    severity: str | None = None,
    road_name: str | None = None,
    columns: Mapping[str, str | Sequence[str] | None] | None = None,
    severity_map: ValueMap | None = None,
    value_maps: Mapping[str, ValueMap] | None = None,
    time_format: str | None = None,
    dayfirst: bool = False,
    tz: str | None = None,
    sep: str | None = None,
    encoding: str | None = None,
    decimal: str | None = None,
    layer: str | None = None,
    buffer_m: float | None = None,
    valid_area: Any = None,
    preset: str | None = None,
    strict: bool = False,
    settings: EventSettings | None = None,
) -> gpd.GeoDataFrame:
    """Read accidents, hazards or work zones into a standard schema, in EPSG:4326.

    Parameters
    ----------
    source
        A CSV (any common separator and encoding), GeoJSON, GeoPackage, Shapefile,
        FlatGeobuf or (Geo)Parquet file, or a (Geo)DataFrame.
    kind
        ``"accident"``, ``"hazard"`` or ``"workzone"`` (may come from ``preset``).
    x, y
        Columns holding the position (easting/longitude, northing/latitude).
    crs
        CRS of ``x``/``y`` (anything pyproj accepts, e.g. ``3879``, ``"EPSG:27700"``,
        ``4490``) or ``"gcj02"`` / ``"bd09"``. Required for x/y and for files without a CRS;
        for a file with a CRS it relabels the file's coordinates (e.g. GCJ-02 stored as 4326).
    geometry
        Column holding WKT or EWKT geometries (``"SRID=27700;LINESTRING(...)"``); rows where
        it is empty fall back to ``x``/``y``.
    event_id, time, severity, road_name
        Source columns of these standard fields (shortcuts for ``columns``). ``time`` may be
        a list of columns joined with a space (date and clock time), a date column (combined
        with an ``hour`` column) or a year column (``time`` is then NaT and ``year`` set).
    columns
        Source column(s) for any standard field of the kind, e.g. ``{"hour": "Tunti",
        "deaths": "Kuolleet"}``; see :data:`FIELDS`.
    severity_map
        Source severity value → KABCO letter, e.g. ``{1: "O", 2: "B", 3: "K"}``, or a
        function of the source Series. Merged over :data:`SEVERITY_DEFAULTS` (values compared
        case-insensitively). When no severity column is given, severity is derived from
        ``deaths``/``serious_injuries``/``minor_injuries``/``injuries`` where those exist.
    value_maps
        Value maps (or functions) for other fields, e.g. ``{"grade": {"一般": "general"},
        "hour": {24: 0}}``; applied before the field's type conversion.
    time_format, dayfirst
        strptime format of the time column(s), or a hint for ambiguous dates.
    tz
        Time zone of times written without one (e.g. ``"Asia/Shanghai"``). Default: local
        time where the events are, the zone looked up from their coordinates; rows in zones
        with different clocks are then stored in UTC with ``hour`` the local hour. Times with
        an offset are converted to it.
    sep, encoding, decimal
        CSV separator (sniffed), text encoding (detected: UTF-8 with/without BOM, GB18030,
        Big5 or cp1252) and decimal mark of coordinates (detected per value).
    layer
        Layer of a multi-layer file.
    buffer_m
        Buffer every geometry by this many metres (work zones and hazard areas drawn as points
        or lines); the result is a polygon.
    valid_area
        ``(min_lon, min_lat, max_lon, max_lat)`` or a shapely geometry in EPSG:4326 outside
        which positions are dropped. Default: the CRS's area of use plus
        ``settings.valid_area_margin_deg`` (China for GCJ-02/BD-09).
    preset
        Name of a column mapping in :mod:`trafficunit.presets`; explicit arguments win.
    strict
        Raise :class:`~trafficunit.ValidationError` instead of dropping rows.
    settings
        :class:`~trafficunit.settings.EventSettings`.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per kept event in EPSG:4326 with the standard columns of ``kind`` first, then
        the unused source columns. ``.attrs["report"]`` is a plain dict: rows read, kept,
        dropped by reason with example rows, unknown severity values, each field's source
        (``fields``), detected encoding, separator, CRS and time zone, notes and ``hints``
        (likely mistakes such as swapped axes).

    Examples
    --------
    >>> import pandas as pd, trafficunit as tu
    >>> table = pd.DataFrame({"E": ["25496500,5", "25496600"], "N": ["6672900", "6673000"],
    ...                       "sev": [3, 1], "year": [2021, 2022]})
    >>> acc = tu.read_events(table, kind="accident", x="E", y="N", crs=3879,
    ...                      severity="sev", severity_map={1: "O", 2: "B", 3: "K"}, time="year")
    >>> acc["severity"].tolist(), acc["year"].tolist(), acc.crs.to_epsg()
    (['K', 'O'], [2021, 2022], 4326)
    """
    settings = settings or EventSettings()
    args: dict[str, Any] = {}
    origin: dict[str, str] = {}  # field or option → "given" / "preset NAME"
    if preset is not None:
        from ..presets import get_preset

        args = get_preset(preset).read_kwargs()
        origin = {k: f"preset {preset}" for k in args if k not in ("columns", "value_maps")}
        origin.update(dict.fromkeys(args.get("columns") or {}, f"preset {preset}"))
    mapping: dict[str, Any] = dict(args.pop("columns", {}) or {})
    for fld in ("event_id", "time", "severity", "road_name"):
        if args.get(fld) is not None:
            mapping[fld] = args.pop(fld)
    mapping.update(dict((columns or {}).items()))
    origin.update({k: "given" for k, v in (columns or {}).items() if v is not None})
    for fld, val in (
        ("event_id", event_id),
        ("time", time),
        ("severity", severity),
        ("road_name", road_name),
    ):
        if val is not None:
            mapping[fld] = val
            origin[fld] = "given"
    vmaps: dict[str, Any] = dict(args.pop("value_maps", {}) or {})
    vmaps.update(value_maps or {})
    explicit = {
        "kind": kind,
        "x": x,
        "y": y,
        "crs": crs,
        "geometry": geometry,
        "severity_map": severity_map,
        "time_format": time_format,
        "tz": tz,
        "sep": sep,
        "encoding": encoding,
        "decimal": decimal,
        "layer": layer,
        "buffer_m": buffer_m,
        "valid_area": valid_area,
    }
    for k, v in explicit.items():
        if v is not None:
            args[k] = v
            origin[k] = "given"
    if dayfirst:
        args["dayfirst"] = True
    kind = args.get("kind")
    if kind not in EVENT_KINDS:
        raise ValidationError(f"kind must be one of {', '.join(EVENT_KINDS)} (got {kind!r})")
    if args.get("severity_map") is not None:
        vmaps["severity"] = args["severity_map"]
    unknown_fields = set(mapping) - set(FIELDS[kind])
    if unknown_fields:
        raise ValidationError(
            f"unknown field(s) {sorted(unknown_fields)} for kind {kind!r}; "
            f"standard fields are {', '.join(FIELDS[kind])}"
        )
    fmt = args.get("time_format")
    if fmt and not any(d in fmt for d in _YEAR_DIRECTIVES):
        raise ValidationError(
            f"time_format={fmt!r} has no year (%Y or %y): times without a date are not "
            "completed with one; give the date column too, e.g. time=['date', 'time']"
        )
    return _read(
        source,
        kind=kind,
        mapping=mapping,
        origin=origin,
        vmaps=vmaps,
        x=args.get("x"),
        y=args.get("y"),
        crs=args.get("crs"),
        geometry=args.get("geometry"),
        time_format=fmt,
        dayfirst=bool(args.get("dayfirst", False)),
        tz=args.get("tz"),
        sep=args.get("sep"),
        encoding=args.get("encoding"),
        decimal=args.get("decimal"),
        layer=args.get("layer"),
        buffer_m=args.get("buffer_m"),
        valid_area=args.get("valid_area"),
        strict=strict,
        settings=settings,
    )


def _read(
    source: Any,
    *,
    kind: str,
    mapping: dict[str, Any],
    origin: dict[str, str],
    vmaps: dict[str, Any],
    x: str | None,
    y: str | None,
    crs: Any,
    geometry: str | None,
    time_format: str | None,
    dayfirst: bool,
    tz: str | None,
    sep: str | None,
    encoding: str | None,
    decimal: str | None,
    layer: str | None,
    buffer_m: float | None,
    valid_area: Any,
    strict: bool,
    settings: EventSettings,
) -> gpd.GeoDataFrame:
    report = _Report(source=str(source), kind=kind)
    wanted = [
        c for v in mapping.values() if v is not None for c in ([v] if isinstance(v, str) else v)
    ]
    wanted += [c for c in (x, y, geometry) if c]
    raw = _load(source, sep=sep, encoding=encoding, layer=layer, report=report, text_columns=wanted)
    raw = raw.reset_index(drop=True)
    n = len(raw)
    report.rows_read = n
    name = report.source
    report.read_at = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    mis_hint = ""
    if report.fmt == "csv":
        mis_hint = _misdecoded_hint(list(raw.columns), report.encoding)
        if mis_hint:
            report.hints.append(mis_hint.strip())
    # a column already named after a standard field (a file trafficunit wrote, or a table in
    # the standard schema) is that field unless the mapping says otherwise, and only when its
    # content passes the field's check (a column "time" of clock times alone is no time)
    mapping = dict(mapping)
    auto: set[str] = set()
    named = {
        str(c).casefold()
        for v in [*mapping.values(), x, y, geometry]
        if v is not None
        for c in ([v] if isinstance(v, str) else v)
    }
    by_key = {str(c).strip().casefold(): str(c) for c in raw.columns}
    for fld in FIELDS[kind]:
        if fld in mapping:
            continue
        for alias in (fld, *ALIASES.get(fld, ())):
            col = by_key.get(alias.casefold())
            if col is not None and col.casefold() not in named:
                mapping[fld] = col
                named.add(col.casefold())
                auto.add(fld)
                break
    cols = _resolve(raw, mapping, mis_hint)
    xcol = _find_column(raw, x, "x", mis_hint) if x else None
    ycol = _find_column(raw, y, "y", mis_hint) if y else None
    gcol = _find_column(raw, geometry, "geometry", mis_hint) if geometry else None
    taken = {c for cs in cols.values() for c in cs} | {c for c in (xcol, ycol, gcol) if c}
    how_built = _check_columns(
        raw, cols, auto, origin, kind=kind, vmaps=vmaps, taken=taken, report=report, name=name
    )
    if (xcol is None) != (ycol is None):
        raise ValidationError(f"{name}: give both x= and y= (got only one)")
    file_geom = isinstance(raw, gpd.GeoDataFrame) and raw.geometry.name in raw.columns
    if xcol is None and gcol is None and not file_geom:
        guess = [
            c
            for c in raw.columns
            if re.search(
                r"(^|_)(x|y|lon|lng|long|lat|longitude|latitude|east|north|"
                r"easting|northing|coord)",
                str(c),
                re.IGNORECASE,
            )
        ]
        hint = (
            f" Columns that look like coordinates: {', '.join(map(str, guess))}." if guess else ""
        )
        raise ValidationError(
            f"{name}: no position given; pass x= and y= (with crs=) or geometry= (a WKT "
            f"column).{hint}"
        )
    report.columns = dict(cols.items())
    if xcol:
        report.columns["x"], report.columns["y"] = [xcol], [ycol]  # type: ignore[list-item]
    if gcol:
        report.columns["geometry"] = [gcol]
    drops = _Drops(n, raw)

    # ---- position --------------------------------------------------------------------------
    crs_obj, system = _parse_crs(crs)
    geoms = np.full(n, None, dtype=object)
    if gcol is not None:
        g, bad_wkt, srids = _geometry_from_text(raw[gcol])
        if crs_obj is None and system is None:
            if len(srids) == 1:
                crs_obj = pyproj.CRS.from_epsg(srids.pop())
            elif len(srids) > 1:
                raise CRSError(
                    f"{name}: column {gcol!r} mixes SRIDs {sorted(srids)}; give crs= or split "
                    "the file"
                )
        geoms[:] = g
        drops.mark(bad_wkt, "unparseable coordinates", gcol)
    elif file_geom:
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
            report.notes.append(f"file CRS {raw.crs} relabelled as {crs}")
    if xcol is not None:
        todo = shapely.is_missing(geoms) & (drops.reason == None)  # noqa: E711
        xv = to_float(raw[xcol], decimal=decimal).to_numpy()
        yv = to_float(raw[ycol], decimal=decimal).to_numpy()
        x_given = raw[xcol].notna().to_numpy()
        y_given = raw[ycol].notna().to_numpy()
        missing = todo & ~(x_given & y_given)
        unparse = todo & ~missing & ~(np.isfinite(xv) & np.isfinite(yv))
        zero = todo & ~missing & ~unparse & (xv == 0) & (yv == 0)
        drops.mark(missing, "missing coordinates", [xcol, ycol])  # type: ignore[list-item]
        drops.mark(unparse, "unparseable coordinates", [xcol, ycol])  # type: ignore[list-item]
        if settings.zero_is_missing:  # a placeholder, not a position
            drops.mark(zero, "coordinates (0, 0)", [xcol, ycol])  # type: ignore[list-item]
        ok = todo & ~missing & ~unparse
        geoms[ok] = shapely.points(xv[ok], yv[ok])
        _xy_points = np.full(n, None, dtype=object)
        _xy_points[ok] = geoms[ok]
    if (
        xcol is not None
        and crs_obj is not None
        and crs_obj.is_projected
        and ok.sum() >= 5
        and (np.abs(xv[ok]) <= 180).all()
        and (np.abs(yv[ok]) <= 90).all()
    ):
        drops.mark(ok, "degrees given for a CRS in metres", [xcol, ycol])  # type: ignore[list-item]
        report.hints.append(
            f"every x/y is within ±180/±90: these look like longitude/latitude, not the "
            f"metres of {crs_obj.name}; give crs=4326 (or the CRS the file uses)"
        )
    if crs_obj is None and system is None:
        raise CRSError(
            f"{name}: the CRS of the coordinates is not known; give crs= (e.g. 4326 for "
            "longitude/latitude, 3879 for Helsinki's GK25, 'gcj02' for AMap coordinates)"
        )
    report.crs = system if system is not None else crs_obj.to_string()  # type: ignore[union-attr]
    missing_geom = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    drops.mark(missing_geom, "missing coordinates", [c for c in (gcol, xcol, ycol) if c])
    live = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    if live.any():
        geoms[live] = _transform_geoms(geoms[live], crs_obj, system)
    if settings.zero_is_missing and live.any():
        # (0, 0) in longitude/latitude, whatever the source CRS: no road is there
        lv = np.flatnonzero(live)
        b0 = shapely.bounds(geoms[lv])
        at0 = (np.abs(b0) < 1e-9).all(axis=1)
        drops.mark(_at(n, lv[at0]), "coordinates (0, 0)", [c for c in (gcol, xcol, ycol) if c])
    # valid area
    if valid_area is None:
        box = _valid_box(crs_obj, system, settings.valid_area_margin_deg)
        area = shapely.box(*box)
    elif isinstance(valid_area, tuple | list) and len(valid_area) == 4:
        area = shapely.box(*[float(v) for v in valid_area])
    elif isinstance(valid_area, shapely.Geometry):
        area = valid_area
    else:
        raise ValidationError(
            "valid_area must be (min_lon, min_lat, max_lon, max_lat) or a shapely geometry "
            "in EPSG:4326"
        )
    if live.any():
        b = shapely.bounds(geoms[live])
        finite = np.isfinite(b).all(axis=1)
        inside = np.zeros(len(b), dtype=bool)
        if finite.any():
            lv = np.flatnonzero(finite)
            if isinstance(valid_area, shapely.Geometry):
                inside[lv] = shapely.covers(area, geoms[live][lv])
            else:
                minx, miny, maxx, maxy = shapely.bounds(area)
                bb = b[lv]
                inside[lv] = (
                    (bb[:, 0] >= minx)
                    & (bb[:, 2] <= maxx)
                    & (bb[:, 1] >= miny)
                    & (bb[:, 3] <= maxy)
                )
        outside = np.zeros(n, dtype=bool)
        outside[np.flatnonzero(live)] = ~inside
        if xcol is not None and outside.any():
            # would the point be inside with x and y exchanged? (points from x/y only) Inside
            # the valid area when no position is good, else among the good ones
            cand = np.flatnonzero(outside & ~shapely.is_missing(_xy_points) & (drops.keep))
            if len(cand):
                sw = _transform_geoms(shapely.points(yv[cand], xv[cand]), crs_obj, system)
                sb = shapely.bounds(sw)
                fine = np.isfinite(sb).all(axis=1)
                good = np.flatnonzero(live & ~outside & drops.keep)
                if len(good):
                    gx, gy = _lonlat(geoms[good])
                    pad = max(0.5, 0.1 * float(max(np.ptp(gx), np.ptp(gy))))
                    ax0, ay0 = float(gx.min()) - pad, float(gy.min()) - pad
                    ax1, ay1 = float(gx.max()) + pad, float(gy.max()) + pad
                    ins = (
                        fine
                        & (sb[:, 0] >= ax0)
                        & (sb[:, 2] <= ax1)
                        & (sb[:, 1] >= ay0)
                        & (sb[:, 3] <= ay1)
                    )
                elif isinstance(valid_area, shapely.Geometry):
                    ins = fine & shapely.covers(area, sw)
                else:
                    ax0, ay0, ax1, ay1 = shapely.bounds(area)
                    ins = (
                        fine
                        & (sb[:, 0] >= ax0)
                        & (sb[:, 2] <= ax1)
                        & (sb[:, 1] >= ay0)
                        & (sb[:, 3] <= ay1)
                    )
                drops.mark(_at(n, cand[ins]), "x and y swapped", [xcol, ycol])  # type: ignore[list-item]
        drops.mark(outside, "outside the valid area", [c for c in (gcol, xcol, ycol) if c])
    _drop_far_outliers(
        geoms, live & drops.keep, drops, settings, report, [c for c in (gcol, xcol, ycol) if c]
    )
    if drops.count("x and y swapped") > 0.5 * max(n, 1):
        report.hints.append(
            f"x and y look swapped: most positions fall inside {report.crs}'s area only with "
            f"them exchanged; give x={ycol!r} y={xcol!r}"
        )
    if drops.count("outside the valid area") > 0.5 * max(n, 1):
        report.hints.append(
            f"most positions lie outside the area where {report.crs} is used: is crs= right "
            "(e.g. 4326 for longitude/latitude, a national grid for metres)?"
        )

    # ---- time zone -------------------------------------------------------------------------
    tz_name, zones_rows = _time_zone(tz, origin, geoms, live & drops.keep, cols, report)

    # ---- fields ----------------------------------------------------------------------------
    out: dict[str, Any] = {}
    hours_src: pd.Series | None = None
    now = pd.Timestamp.now(tz="UTC")
    y1900 = pd.Timestamp("1900-01-01", tz="UTC")
    if "hour" in cols:
        h = _joined(raw, cols["hour"])
        if "hour" in vmaps:
            h, _ = _apply_map(h, vmaps["hour"])
        hours = _to_int(h)
        bad_h = hours.notna() & ((hours < 0) | (hours > 23))
        if bad_h.any():
            report.notes.append(f"{int(bad_h.sum())} hour values outside 0-23 set to <NA>")
        hours_src = hours.mask(bad_h)
    naive_seen = False
    for fld in FIELDS[kind]:
        if fld == "event_id" or fld == "hour":
            continue
        if fld in _TIME_FIELDS:
            if fld not in cols:
                out[fld] = pd.Series(pd.NaT, index=raw.index, dtype=f"datetime64[us, {tz_name}]")
                continue
            src = _joined(raw, cols[fld])
            if fld in vmaps:
                src, _ = _apply_map(src, vmaps[fld])
            t = _parse_time_column(
                src,
                fmt=time_format,
                dayfirst=dayfirst,
                tz=tz_name,
                hours=hours_src if fld == "time" else None,
                zones=zones_rows,
            )
            naive_seen |= t.naive
            drops.mark(t.no_date, "time without a date", cols[fld])
            drops.mark(t.bad, "bad time", cols[fld])
            if fld in ("time", "reported_at"):  # when it happened: not after the read
                future = np.asarray((t.value > now).fillna(False), dtype=bool) | np.asarray(
                    (t.year > now.year).fillna(False), dtype=bool
                )
                early = np.asarray((t.value < y1900).fillna(False), dtype=bool) | np.asarray(
                    (t.year < 1900).fillna(False), dtype=bool
                )
                drops.mark(future, "dated in the future", cols[fld])
                drops.mark(early, "dated before 1900", cols[fld])
            out[fld] = t.value
            stored = str(getattr(t.value.dt, "tz", ""))
            if zones_rows is not None and stored != "UTC":
                report.tz = stored
                report.tz_how = (
                    f"looked up from the coordinates ({_zone_counts(report)}); every row keeps "
                    f"the same clock in {stored}"
                )
            if fld == "time":
                out["_year_only"] = t.year
                out["_date_only"] = t.date_only
                out["_local_hour"] = t.local_hour
                report.time_built = _describe_time(
                    cols[fld], time_format, t, hours_col=cols.get("hour"), report=report
                )
            continue
        if fld not in cols:
            continue
        src = _joined(raw, cols[fld])
        if fld == "severity":
            mapped, unknown = _apply_map(src, vmaps.get("severity"), SEVERITY_DEFAULTS)
            bad_letters = set(mapped.dropna().unique()) - set(KABCO)
            if bad_letters:
                raise ValidationError(
                    f"severity_map gives {sorted(map(str, bad_letters))}; map to one of "
                    f"{', '.join(KABCO)}"
                )
            missing_sev = src.isna().to_numpy()
            if unknown.any():
                report.unknown_values["severity"] = _count_values(src, unknown)
            drops.mark(missing_sev, "missing severity", cols[fld])
            drops.mark(unknown, "unknown severity", cols[fld])
            out[fld] = mapped.astype("string")
            continue
        if fld == "grade":
            mapped, unknown = _apply_map(src, vmaps.get("grade"), GRADE_DEFAULTS)
            if unknown.any():
                report.unknown_values["grade"] = _count_values(src, unknown)
            drops.mark(unknown, "unknown grade", cols[fld])
            out[fld] = mapped.astype("string")
            continue
        if fld in vmaps:
            src, _ = _apply_map(src, vmaps[fld])
        if fld in _INT_FIELDS:
            v = _to_int(src)
            if fld == "year":
                drops.mark(
                    (v > now.year).fillna(False).to_numpy(bool), "dated in the future", cols[fld]
                )
                drops.mark((v < 1900).fillna(False).to_numpy(bool), "dated before 1900", cols[fld])
            out[fld] = v.mask(v < 0)
        elif fld in _FLOAT_FIELDS:
            out[fld] = to_float(src, decimal=decimal)
        elif fld in _BOOL_FIELDS:
            out[fld], _ = _to_bool(src)
        else:
            out[fld] = _text(src)
    if naive_seen and tz is None and report.tz_how and report.tz_how.startswith("UTC"):
        msg = f"{name}: times have no time zone and none could be looked up; read as UTC. Pass tz="
        report.notes.append(msg)
        warnings.warn(msg, TrafficUnitWarning, stacklevel=3)

    # ---- event id -------------------------------------------------------------------------
    if "event_id" in cols:
        ids = _text(_joined(raw, cols["event_id"]).astype("string"))
        ids = ids.str.replace(r"\.0$", "", regex=True)
        gen = pd.Series([str(i + 1) for i in range(n)], index=raw.index, dtype="string")
        no_id = ids.isna()
        if no_id.any():
            report.notes.append(f"{int(no_id.sum())} rows without an id got their row number")
        ids = ids.fillna("row" + gen)
        # duplicates only among rows that survive the other checks
        live_ids = ids.where(drops.keep)
        dup = live_ids.duplicated(keep="first").to_numpy() & live_ids.notna().to_numpy()
        drops.mark(dup, "duplicate id", cols["event_id"])
    else:
        ids = pd.Series([str(i + 1) for i in range(n)], index=raw.index, dtype="string")

    report.fields = _field_summary(
        kind, cols, how_built, report, xcol=xcol, ycol=ycol, gcol=gcol, file_geom=file_geom
    )

    # ---- drop, report, strict ------------------------------------------------------------
    drops.fill(report)
    keep = drops.keep
    report.rows_kept = int(keep.sum())
    n_dropped = n - report.rows_kept
    if n_dropped:
        summary = ", ".join(f"{c} {r}" for r, c in report.dropped.most_common())
        examples = "; ".join(
            f"{r}: " + ", ".join(_fmt_example(e) for e in ex[:3])
            for r, ex in report.examples.items()
        )
        unknown_msg = ""
        if report.unknown_values.get("severity"):
            vals = ", ".join(repr(v) for v in report.unknown_values["severity"])
            unknown_msg = f" Unknown severity values: {vals} (map them with severity_map=)."
        if strict:
            raise ValidationError(
                f"{name}: {n_dropped} of {n} rows are unusable ({summary}). Examples: "
                f"{examples}.{unknown_msg}"
            )
        warnings.warn(
            f"{name}: dropped {n_dropped} of {n} rows ({summary}).{unknown_msg} See "
            ".attrs['report'] for examples; strict=True raises instead.",
            TrafficUnitWarning,
            stacklevel=3,
        )

    # ---- assemble --------------------------------------------------------------------------
    result = pd.DataFrame(index=raw.index)
    result["event_id"] = ids
    result["kind"] = kind
    if kind == "accident":
        time_s = out["time"]
        date_only = bool(out.get("_date_only", False))
        year = out.get("year")
        if year is None:
            year = time_s.dt.year.astype("Int64")
            ys = out.get("_year_only")
            if ys is not None:
                year = year.fillna(ys)
        else:
            year = year.fillna(time_s.dt.year.astype("Int64"))
        result["time"] = time_s
        result["year"] = year.astype("Int64")
        local_hour = out.get("_local_hour")
        if hours_src is not None:
            result["hour"] = hours_src
        elif not date_only and local_hour is not None:
            result["hour"] = local_hour
        elif not date_only:
            result["hour"] = time_s.dt.hour.astype("Int64")
        else:
            result["hour"] = pd.Series(pd.NA, index=raw.index, dtype="Int64")
        counts = {}
        for c in ("deaths", "serious_injuries", "minor_injuries", "injuries"):
            counts[c] = out.get(c, pd.Series(pd.NA, index=raw.index, dtype="Int64"))
        sev = out["severity"] if "severity" in out else _severity_from_counts(counts, raw.index)
        result["severity"] = sev
        for c, v in counts.items():
            result[c] = v
        for c in ("collision_type", "light", "weather"):
            result[c] = out.get(c, pd.Series(pd.NA, index=raw.index, dtype="string"))
    elif kind == "hazard":
        result["category"] = out.get("category", pd.Series(pd.NA, index=raw.index, dtype="string"))
        result["grade"] = out.get(
            "grade", pd.Series("general", index=raw.index, dtype="string")
        ).fillna("general")
        result["status"] = out.get("status", pd.Series(pd.NA, index=raw.index, dtype="string"))
        result["reported_at"] = out["reported_at"]
    else:
        result["site_code"] = out.get(
            "site_code", pd.Series(pd.NA, index=raw.index, dtype="string")
        )
        result["start"] = out["start"]
        result["end"] = out["end"]
        bad_window = (result["end"] < result["start"]).fillna(False).to_numpy()
        if bad_window.any():
            report.notes.append(
                f"{int(bad_window.sum())} work zones end before they start; kept as given"
            )
        result["lanes_taken"] = out.get(
            "lanes_taken", pd.Series(np.nan, index=raw.index, dtype="float64")
        )
        result["night_works"] = out.get(
            "night_works", pd.Series(pd.NA, index=raw.index, dtype="boolean")
        )
        result["status"] = out.get("status", pd.Series(pd.NA, index=raw.index, dtype="string"))
    result["road_name"] = out.get("road_name", pd.Series(pd.NA, index=raw.index, dtype="string"))

    used = {c for cs in cols.values() for c in cs}
    if gcol:
        used.add(gcol)
    if file_geom:
        used.add(str(raw.geometry.name))
    reserved = set(result.columns) | {
        "geometry",
        "unit_id",
        "distance_m",
        "measure_m",
        "match",
        "overlap_m",
    }
    extras = {}
    for c in raw.columns:
        if c in used:
            continue
        if c == "kind" and (raw[c].astype("string") == kind).all():
            continue  # the file's own kind column, as trafficunit writes it
        new = f"src_{c}" if c in reserved else str(c)
        extras[new] = raw[c]
    if extras:
        result = pd.concat([result, pd.DataFrame(extras, index=raw.index)], axis=1)
    gdf = gpd.GeoDataFrame(result, geometry=gpd.GeoSeries(geoms, index=raw.index), crs=4326)
    if not keep.all():
        gdf = gdf.loc[keep].reset_index(drop=True)
    if buffer_m:
        gdf = _buffer(gdf, float(buffer_m))
    # input row (0-based, as text) -> why it was dropped, for callers reporting per item
    dropped = {str(int(i)): str(drops.reason[i]) for i in np.flatnonzero(~keep)}
    gdf.attrs = {"report": report.as_dict(), "dropped_rows": dropped}
    return gdf


def _field_summary(
    kind: str,
    cols: Mapping[str, list[str]],
    how: Mapping[str, str],
    report: _Report,
    *,
    xcol: str | None,
    ycol: str | None,
    gcol: str | None,
    file_geom: bool,
) -> dict[str, str]:
    """Each standard field → where its values came from, in words (for the read summary)."""
    out: dict[str, str] = {}
    pos = []
    if gcol:
        pos.append(f"WKT column {gcol!r}")
    if xcol:
        pos.append(f"x {xcol!r}, y {ycol!r}")
    if file_geom and not gcol:
        pos.append("the file's geometry")
    out["position"] = " + ".join(pos) + f" (crs {report.crs})"
    has_counts = [
        f for f in ("deaths", "serious_injuries", "minor_injuries", "injuries") if f in cols
    ]
    for fld in FIELDS[kind]:
        if fld in cols:
            src = " + ".join(repr(c) for c in cols[fld])
            out[fld] = f"{src} ({how.get(fld, 'given')})"
        elif fld == "event_id":
            out[fld] = "row number (no id column)"
        elif fld in ("year", "hour") and kind == "accident" and "time" in cols:
            out[fld] = "from time"
        elif fld == "severity" and has_counts:
            out[fld] = f"from the counts ({', '.join(has_counts)})"
        elif fld == "grade":
            out[fld] = "'general' (no grade column)"
        else:
            out[fld] = "-"
    return out


def _fmt_example(e: dict[str, Any]) -> str:
    vals = ", ".join(f"{k}={v!r}" for k, v in e.items() if k != "row")
    return f"row {e['row']}" + (f" ({vals})" if vals else "")


def _severity_from_counts(counts: dict[str, pd.Series], index: pd.Index) -> pd.Series:
    sev = pd.Series(pd.NA, index=index, dtype="string")
    given = [c for c in counts.values() if c.notna().any()]
    if not given:
        return sev
    known = pd.Series(False, index=index)
    for c in given:
        known |= c.notna()
    sev[known] = "O"
    for col, letter in (
        ("injuries", "B"),
        ("minor_injuries", "B"),
        ("serious_injuries", "A"),
        ("deaths", "K"),
    ):
        v = counts[col]
        sev[(v > 0).fillna(False)] = letter
    return sev


def _buffer(gdf: gpd.GeoDataFrame, metres: float) -> gpd.GeoDataFrame:
    if len(gdf) == 0:
        return gdf
    out = gdf.copy()
    metric = out.estimate_utm_crs()
    out["geometry"] = out.geometry.to_crs(metric).buffer(metres).to_crs(4326)
    return out
