"""The reader: :func:`read_events`, its options, and the stages of one read in order.

The stages: load the source and find which column is which field (here), positions
(:mod:`.position`), time zone (:mod:`.timezones`), field values and ids (:mod:`.fields`), then
drops, the report and the output frame (:mod:`.assemble`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import geopandas as gpd
import pandas as pd

from .._errors import ValidationError
from ..settings import EVENT_KINDS, EventSettings
from .assemble import _assemble, _field_summary, _settle_drops
from .columns import _check_columns, _find_column, _resolve
from .fields import _event_ids, _fields
from .loading import _load, _misdecoded_hint
from .position import _positions
from .report import _Drops, _Options, _Report, _Source
from .schema import ALIASES, FIELDS, ValueMap
from .timezones import _time_zone
from .values import _YEAR_DIRECTIVES

#: Options given by name (``None``: not given), which win over a preset's.
_EXPLICIT = (
    "kind",
    "x",
    "y",
    "crs",
    "geometry",
    "severity_map",
    "time_format",
    "tz",
    "sep",
    "encoding",
    "decimal",
    "layer",
    "buffer_m",
    "valid_area",
)
#: Standard fields :func:`read_events` takes as shortcuts for ``columns``.
_SHORTCUTS = ("event_id", "time", "severity", "road_name")


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

    Which column is which field is the caller's to say (or a preset's); unusable rows are
    dropped and counted by reason (see the module docs).

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
    given = dict(locals())  # the arguments by name, before any other name is bound
    return _read(source, _options(given))


def _options(given: dict[str, Any]) -> _Options:
    """Merge the preset, ``columns``, the field shortcuts and the named options of a call."""
    args: dict[str, Any] = {}
    origin: dict[str, str] = {}
    preset = given["preset"]
    if preset is not None:
        from ..presets import get_preset

        args = get_preset(preset).read_kwargs()
        origin = {k: f"preset {preset}" for k in args if k not in ("columns", "value_maps")}
        origin.update(dict.fromkeys(args.get("columns") or {}, f"preset {preset}"))
    mapping: dict[str, Any] = dict(args.pop("columns", {}) or {})
    for fld in _SHORTCUTS:
        if args.get(fld) is not None:
            mapping[fld] = args.pop(fld)
    columns = given["columns"] or {}
    mapping.update(dict(columns.items()))
    origin.update({k: "given" for k, v in columns.items() if v is not None})
    for fld in _SHORTCUTS:
        if given[fld] is not None:
            mapping[fld] = given[fld]
            origin[fld] = "given"
    vmaps: dict[str, Any] = dict(args.pop("value_maps", {}) or {})
    vmaps.update(given["value_maps"] or {})
    for k in _EXPLICIT:
        if given[k] is not None:
            args[k] = given[k]
            origin[k] = "given"
    if given["dayfirst"]:
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
    return _Options(
        kind=kind,
        mapping=mapping,
        origin=origin,
        vmaps=vmaps,
        args=args,
        strict=bool(given["strict"]),
        settings=given["settings"] or EventSettings(),
    )


def _read(source: Any, opt: _Options) -> gpd.GeoDataFrame:
    """One read, stage by stage (a warning's ``stacklevel`` counts the frames down to here)."""
    src = _source(source, opt)
    geoms, live = _positions(
        src,
        crs=opt.get("crs"),
        decimal=opt.get("decimal"),
        valid_area=opt.get("valid_area"),
        settings=opt.settings,
    )
    tz_name, zones_rows = _time_zone(
        opt.get("tz"), opt.origin, geoms, live & src.drops.keep, src.cols, src.report
    )
    out, hours_src = _fields(src, opt, tz_name, zones_rows)
    ids = _event_ids(src)
    src.report.fields = _field_summary(src)
    keep = _settle_drops(src, opt.strict)
    return _assemble(src, out, hours_src, ids, geoms, keep, opt.get("buffer_m"))


def _source(source: Any, opt: _Options) -> _Source:
    """Load the source and find which of its columns is which standard field."""
    x, y, geometry = opt.get("x"), opt.get("y"), opt.get("geometry")
    report = _Report(source=str(source), kind=opt.kind)
    wanted = [
        c for v in opt.mapping.values() if v is not None for c in ([v] if isinstance(v, str) else v)
    ]
    wanted += [c for c in (x, y, geometry) if c]
    sep, encoding, layer = opt.get("sep"), opt.get("encoding"), opt.get("layer")
    raw = _load(source, sep=sep, encoding=encoding, layer=layer, report=report, text_columns=wanted)
    raw = raw.reset_index(drop=True)
    report.rows_read = len(raw)
    name = report.source
    report.read_at = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    mis_hint = ""
    if report.fmt == "csv":
        mis_hint = _misdecoded_hint(list(raw.columns), report.encoding)
        if mis_hint:
            report.hints.append(mis_hint.strip())
    mapping, auto = _by_name(raw, opt.kind, opt.mapping, [x, y, geometry])
    cols = _resolve(raw, mapping, mis_hint)
    xcol = _find_column(raw, x, "x", mis_hint) if x else None
    ycol = _find_column(raw, y, "y", mis_hint) if y else None
    gcol = _find_column(raw, geometry, "geometry", mis_hint) if geometry else None
    taken = {c for cs in cols.values() for c in cs} | {c for c in (xcol, ycol, gcol) if c}
    how_built = _check_columns(
        raw,
        cols,
        auto,
        opt.origin,
        kind=opt.kind,
        vmaps=opt.vmaps,
        taken=taken,
        report=report,
        name=name,
    )
    if (xcol is None) != (ycol is None):
        raise ValidationError(f"{name}: give both x= and y= (got only one)")
    file_geom = isinstance(raw, gpd.GeoDataFrame) and raw.geometry.name in raw.columns
    if xcol is None and gcol is None and not file_geom:
        raise _no_position(raw, name)
    report.columns = dict(cols.items())
    if xcol:
        report.columns["x"], report.columns["y"] = [xcol], [ycol]  # type: ignore[list-item]
    if gcol:
        report.columns["geometry"] = [gcol]
    return _Source(
        raw=raw,
        name=name,
        kind=opt.kind,
        report=report,
        drops=_Drops(len(raw), raw),
        cols=cols,
        how_built=how_built,
        xcol=xcol,
        ycol=ycol,
        gcol=gcol,
        file_geom=file_geom,
    )


def _by_name(
    raw: pd.DataFrame, kind: str, given: Mapping[str, Any], position: Sequence[str | None]
) -> tuple[dict[str, Any], set[str]]:
    """The mapping, with the fields it leaves out taken from columns named after them.

    A column already named after a standard field (a file trafficunit wrote, or a table in
    the standard schema) is that field unless the mapping says otherwise, and only when its
    content passes the field's check (a column "time" of clock times alone is no time).
    Returns the mapping and the fields so taken."""
    mapping = dict(given)
    auto: set[str] = set()
    named = {
        str(c).casefold()
        for v in [*mapping.values(), *position]
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
    return mapping, auto


def _no_position(raw: pd.DataFrame, name: str) -> ValidationError:
    """The error for a source read without any position, naming likely coordinate columns."""
    guess = [
        c
        for c in raw.columns
        if re.search(
            r"(^|_)(x|y|lon|lng|long|lat|longitude|latitude|east|north|easting|northing|coord)",
            str(c),
            re.IGNORECASE,
        )
    ]
    hint = f" Columns that look like coordinates: {', '.join(map(str, guess))}." if guess else ""
    return ValidationError(
        f"{name}: no position given; pass x= and y= (with crs=) or geometry= (a WKT column).{hint}"
    )
