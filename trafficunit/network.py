"""Load and normalise road networks.

:func:`read_network` turns an OSM file (PBF, XML, gzip/bzip2 XML), an osmnx graph or any line
file (GeoPackage, GeoJSON, Shapefile, GeoParquet, FlatGeobuf) into one GeoDataFrame of road
lines with normalised columns:

========================  ==================================================================
column                    meaning
========================  ==================================================================
``osm_id``                source way id (``<NA>`` for line files without one)
``road_class``            OSM ``highway`` value without ``_link`` (``primary``, ``residential``)
``ramp``                  the way is a ``*_link`` (slip road, ramp)
``name``, ``ref``         street name and road number
``maxspeed_kmh``          speed limit in km/h (NaN where unknown; see :func:`parse_maxspeed`)
``lanes``                 number of lanes (float, NaN where unknown)
``oneway``                drawn and driven in one direction only (``oneway=-1`` is reversed)
``lit``                   street lighting (``<NA>`` where unknown)
``sidewalk``, ``surface`` OSM values as given
``bridge``, ``tunnel``    booleans
``junction``              OSM ``junction`` value (``roundabout``...)
========================  ==================================================================

Drivable roads are kept by default (:data:`trafficunit.settings.DRIVABLE_HIGHWAYS`); pass
``highways=None`` to keep every ``highway`` or your own set. What was dropped and why is in
``roads.attrs["report"]`` (a plain dict, see :class:`NetworkReport`).
"""

from __future__ import annotations

import bz2
import gzip
import os
import re
import shutil
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ._errors import CRSError, InputFileError, TrafficUnitWarning, ValidationError
from ._validate import geometry_problems
from .settings import NetworkSettings

__all__ = ["read_network", "parse_maxspeed", "normalise_roads", "NetworkReport", "COLUMNS"]

#: OSM tags a road line keeps under their own name (as normalised columns of that name).
_SAME_NAME_TAGS = ("lanes", "oneway", "lit", "sidewalk", "surface", "bridge", "tunnel", "junction")

#: Normalised columns of a road network, in order (geometry last).
COLUMNS = ("osm_id", "road_class", "ramp", "name", "ref", "maxspeed_kmh", *_SAME_NAME_TAGS)

_OSM_SUFFIXES = (".osm.pbf", ".pbf", ".osm", ".osm.gz", ".osm.bz2", ".xml", ".osm.xml")
_LINE_SUFFIXES = (
    ".gpkg",
    ".geojson",
    ".json",
    ".shp",
    ".parquet",
    ".geoparquet",
    ".fgb",
    ".gml",
    ".zip",
)

_MPH = 1.609344
_KNOT = 1.852

#: Implicit speed limits (OSM wiki, "Default speed limits"), km/h. Extend per call.
IMPLICIT_MAXSPEED: dict[str, float] = {
    "walk": 7.0,
    "living_street": 20.0,
    "urban": 50.0,
    "rural": 90.0,
    "motorway": 120.0,
    "trunk": 100.0,
    "at:urban": 50.0,
    "at:rural": 100.0,
    "at:motorway": 130.0,
    "be:urban": 50.0,
    "be:rural": 70.0,
    "ch:urban": 50.0,
    "ch:rural": 80.0,
    "ch:motorway": 120.0,
    "cn:urban": 50.0,
    "cn:rural": 70.0,
    "cn:motorway": 120.0,
    "de:urban": 50.0,
    "de:rural": 100.0,
    "de:living_street": 7.0,
    "de:bicycle_road": 30.0,
    "dk:urban": 50.0,
    "dk:rural": 80.0,
    "es:urban": 50.0,
    "es:rural": 90.0,
    "fi:urban": 50.0,
    "fi:rural": 80.0,
    "fr:urban": 50.0,
    "fr:rural": 80.0,
    "fr:zone30": 30.0,
    "gb:nsl_single": 60 * _MPH,
    "gb:nsl_dual": 70 * _MPH,
    "gb:motorway": 70 * _MPH,
    "gb:nsl_restricted": 30 * _MPH,
    "it:urban": 50.0,
    "it:rural": 90.0,
    "nl:urban": 50.0,
    "nl:rural": 80.0,
    "no:urban": 50.0,
    "no:rural": 80.0,
    "pt:urban": 50.0,
    "pt:rural": 90.0,
    "ru:urban": 60.0,
    "ru:rural": 90.0,
    "ru:living_street": 20.0,
    "ru:motorway": 110.0,
    "se:urban": 50.0,
    "se:rural": 70.0,
    "us:urban": 25 * _MPH,
}

_SPEED_RE = re.compile(r"^\s*(\d+(?:[.,]\d+)?)\s*(km/h|kmh|kph|mph|knots)?\s*$", re.IGNORECASE)
_TRUE = {"yes", "true", "1", "24/7", "automatic", "limited", "interval", "sunset-sunrise"}
_FALSE = {"no", "false", "0", "disused"}


@dataclass
class NetworkReport:
    """What :func:`read_network` kept and dropped, and why."""

    source: str
    ways_read: int = 0
    ways_kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    clipped: int = 0
    maxspeed_unparsed: int = 0
    maxspeed_values_unparsed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON and summaries."""
        return {
            "source": self.source,
            "ways_read": self.ways_read,
            "ways_kept": self.ways_kept,
            "dropped": {k: v for k, v in self.dropped.items() if v},
            "clipped": self.clipped,
            "maxspeed_unparsed": self.maxspeed_unparsed,
            "maxspeed_values_unparsed": list(self.maxspeed_values_unparsed),
        }


def _parse_one_maxspeed(value: str) -> float:
    text = value.strip().lower()
    if not text:
        return np.nan
    if text in ("none", "signals", "variable", "unknown"):
        return np.nan
    if text in IMPLICIT_MAXSPEED:
        return IMPLICIT_MAXSPEED[text]
    m = _SPEED_RE.match(text)
    if m is None:
        return np.nan
    number = float(m.group(1).replace(",", "."))
    unit = (m.group(2) or "").lower()
    if unit == "mph":
        number *= _MPH
    elif unit == "knots":
        number *= _KNOT
    return number if 0 < number <= 300 else np.nan


def parse_maxspeed(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse OSM ``maxspeed`` values into km/h.

    ``"50"`` → 50, ``"30 mph"`` → 48.3, ``"50;30"`` (several limits) → the highest, ``"RU:urban"``
    and other implicit limits → the national default, ``"walk"`` → 7. ``"none"`` (no limit),
    ``"signals"``, ``"variable"`` and junk → NaN.

    Returns
    -------
    (kmh, unparsed)
        The speeds as a float Series aligned with ``values``, and a boolean Series marking
        values that were given but could not be understood (``"none"`` is understood).

    Examples
    --------
    >>> import pandas as pd
    >>> kmh, bad = parse_maxspeed(pd.Series(["50", "30 mph", "50;30", "RU:urban", "fast"]))
    >>> kmh.round(1).tolist()[:4], bad.tolist()
    ([50.0, 48.3, 50.0, 60.0], [False, False, False, False, True])
    """
    s = values.astype("string")
    uniques = s.dropna().unique()
    mapping: dict[str, float] = {}
    bad_values: set[str] = set()
    for raw in uniques:  # once per distinct value, not per row
        parts = [p for p in re.split(r"[;|]", str(raw)) if p.strip()]
        speeds = [_parse_one_maxspeed(p) for p in parts]
        finite = [v for v in speeds if np.isfinite(v)]
        mapping[raw] = max(finite) if finite else np.nan
        known_nan = all(p.strip().lower() in ("none", "signals", "variable") for p in parts)
        if not finite and not known_nan:
            bad_values.add(raw)
    kmh = s.map(mapping).astype(float)
    unparsed = s.isin(bad_values).fillna(False).astype(bool)
    kmh.name = "maxspeed_kmh"
    return kmh, unparsed


def _bool_tag(values: pd.Series, *, negative_is_false: bool = True) -> pd.Series:
    s = values.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[s.isin(_TRUE).fillna(False).astype(bool)] = True
    out[s.isin(_FALSE).fillna(False).astype(bool)] = False
    return out


def _flag_tag(values: pd.Series) -> pd.Series:
    """A tag like ``bridge=*``: present and not ``no`` → True."""
    s = values.astype("string").str.strip().str.lower()
    return (s.notna() & ~s.isin(_FALSE)).fillna(False).astype(bool)


def _first_number(values: pd.Series) -> pd.Series:
    s = values.astype("string").str.extract(r"(\d+(?:\.\d+)?)", expand=False)
    return pd.to_numeric(s, errors="coerce").astype(float)


def _drivable(
    highway: pd.Series, col: Any, settings: NetworkSettings, report: NetworkReport
) -> pd.Series:
    """Rows of drivable highways (the settings' classes, service and access rules, no areas);
    counts what it drops in ``report``."""
    mask = highway.notna()
    if settings.highways is not None:
        known = mask & highway.isin(settings.highways).fillna(False).astype(bool)
        report.dropped["highway not drivable"] += int((mask & ~known).sum())
        mask = known
    else:
        report.dropped["no highway tag"] += int((~mask).sum())
        return mask
    # highways=None keeps every highway: parking aisles, private access, area=yes too
    svc = col("service").astype("string").str.lower()
    bad_svc = mask & svc.isin(settings.excluded_service).fillna(False).astype(bool)
    report.dropped["service excluded"] += int(bad_svc.sum())
    mask &= ~bad_svc
    acc = col("access").astype("string").str.lower()
    mv = col("motor_vehicle").astype("string").str.lower()
    bad_acc = mask & (
        acc.isin(settings.excluded_access).fillna(False).astype(bool)
        | mv.isin(settings.excluded_access).fillna(False).astype(bool)
    )
    report.dropped["access excluded"] += int(bad_acc.sum())
    mask &= ~bad_acc
    area = col("area").astype("string").str.lower() == "yes"
    # a drivable square drawn as a closed area ring (place=square) is a road
    square = col("place").astype("string").str.lower() == "square"
    area = area.fillna(False).astype(bool) & ~square.fillna(False).astype(bool) & mask
    report.dropped["area=yes"] += int(area.sum())
    mask &= ~area
    return mask


def normalise_roads(
    raw: gpd.GeoDataFrame,
    *,
    settings: NetworkSettings | None = None,
    report: NetworkReport | None = None,
    filter_highways: bool = True,
) -> gpd.GeoDataFrame:
    """Normalise a table of OSM-tagged road lines into the :data:`COLUMNS` schema.

    ``raw`` needs a geometry and may carry OSM tag columns (``highway``, ``maxspeed``, ``lanes``,
    ``oneway``, ``lit``, ``bridge``...) or already-normalised ones (``road_class``,
    ``maxspeed_kmh``). Unknown extra columns are kept. Rows with unusable geometry or outside the
    highway filter are dropped and counted in ``report``.
    """
    settings = settings or NetworkSettings()
    report = report or NetworkReport(source="<GeoDataFrame>")
    df = raw.copy()
    if df.crs is None:
        raise CRSError(f"{report.source}: the road lines have no CRS; set one (e.g. EPSG:4326)")
    if report.ways_read == 0:
        report.ways_read = len(df)

    def col(name: str) -> pd.Series:
        if name in df.columns:
            return df[name]
        return pd.Series(pd.NA, index=df.index, dtype="object")

    # geometry checks
    problems = geometry_problems(df.geometry.values)
    keep = problems == ""
    for reason, n in Counter(problems[~keep]).items():
        report.dropped[reason] += n
    df = df[keep]
    # repair what GEOS calls invalid (self-touching lines are valid; this catches NaN-free junk)
    invalid = ~shapely.is_valid(df.geometry.values)
    if invalid.any():
        df.loc[invalid, df.geometry.name] = shapely.make_valid(df.geometry.values[invalid])

    highway = col("highway") if "highway" in df.columns else col("road_class")
    highway = highway.astype("string").str.strip().str.lower()
    if filter_highways:
        mask = _drivable(highway, col, settings, report)
        df = df[mask.to_numpy()]
        highway = highway[mask.to_numpy()]

    out = gpd.GeoDataFrame(index=pd.RangeIndex(len(df)), geometry=df.geometry.values, crs=df.crs)
    idx = df.index
    osm_id = col("osm_id") if "osm_id" in df.columns else col("id")
    out["osm_id"] = pd.to_numeric(osm_id.loc[idx], errors="coerce").astype("Int64").to_numpy()
    hw = highway.loc[idx].fillna("road")
    out["road_class"] = hw.str.removesuffix("_link").to_numpy()
    ramp = hw.str.endswith("_link").fillna(False).astype(bool).to_numpy()
    if "ramp" in df.columns:
        ramp = ramp | df["ramp"].fillna(False).astype(bool).to_numpy()  # ramp is read-only
    out["ramp"] = ramp
    out["name"] = col("name").loc[idx].astype("string").to_numpy()
    out["ref"] = col("ref").loc[idx].astype("string").to_numpy()
    if "maxspeed_kmh" in df.columns:
        out["maxspeed_kmh"] = pd.to_numeric(df["maxspeed_kmh"], errors="coerce").to_numpy(float)
    else:
        kmh, unparsed = parse_maxspeed(col("maxspeed").loc[idx])
        out["maxspeed_kmh"] = kmh.to_numpy()
        report.maxspeed_unparsed += int(unparsed.sum())
        report.maxspeed_values_unparsed = sorted(
            set(col("maxspeed").loc[idx][unparsed.to_numpy()].astype(str))
        )[:20]
    out["lanes"] = _first_number(col("lanes").loc[idx]).to_numpy()
    ow_src = col("oneway").loc[idx]
    junction = col("junction").loc[idx].astype("string").str.lower()
    if ow_src.dtype == bool:  # already normalised
        oneway = ow_src.to_numpy(dtype=bool).copy()
        reverse = np.zeros(len(idx), dtype=bool)
    else:
        ow_raw = ow_src.astype("string").str.strip().str.lower()
        reverse = (ow_raw == "-1").fillna(False).to_numpy(dtype=bool)
        explicit_no = (ow_raw == "no").fillna(False).to_numpy(dtype=bool)
        oneway = ow_raw.isin(_TRUE | {"-1", "reverse"}).fillna(False).to_numpy(dtype=bool)
        oneway = oneway | junction.isin(["roundabout", "circular"]).fillna(False).to_numpy(bool)
        oneway = oneway | ((hw == "motorway").fillna(False).to_numpy(bool) & ~explicit_no)
    if reverse.any():
        geoms = out.geometry.values.copy()
        geoms[reverse] = shapely.reverse(geoms[reverse])
        out = out.set_geometry(geoms)
    out["oneway"] = oneway
    out["lit"] = _bool_tag(col("lit").loc[idx]).to_numpy()
    out["sidewalk"] = col("sidewalk").loc[idx].astype("string").to_numpy()
    out["surface"] = col("surface").loc[idx].astype("string").to_numpy()
    out["bridge"] = _flag_tag(col("bridge").loc[idx]).to_numpy()
    out["tunnel"] = _flag_tag(col("tunnel").loc[idx]).to_numpy()
    out["junction"] = junction.to_numpy()
    extra = [
        c
        for c in df.columns
        if c not in out.columns
        and c != df.geometry.name
        and c in ("layer", "aadt", "jurisdiction", "place", "area")
    ]
    for c in extra:
        out[c] = df[c].to_numpy()
    # explode multilines into parts (a road unit is one line)
    if (shapely.get_type_id(out.geometry.values) == 5).any():
        out = out.explode(index_parts=False).reset_index(drop=True)
    out = out[list(COLUMNS) + [c for c in out.columns if c not in COLUMNS]]
    report.ways_kept = len(out)
    out.attrs["report"] = report.as_dict()
    if len(out) == 0:
        raise ValidationError(
            f"{report.source}: no roads left after filtering "
            f"(read {report.ways_read} ways; dropped {dict(report.dropped)}); "
            "pass highways=None to keep every highway, or check the file covers roads"
        )
    return out


_OSM_TAGS = (
    "highway",
    "name",
    "ref",
    "maxspeed",
    *_SAME_NAME_TAGS,
    "service",
    "access",
    "motor_vehicle",
    "area",
    "place",
    "layer",
)


def _decompressed(path: Path) -> tuple[Path, bool]:
    """libosmium reads .gz and .bz2 itself, but not every build does; be safe for .bz2."""
    name = path.name.lower()
    if name.endswith(".bz2"):
        fd, tmp = tempfile.mkstemp(suffix=".osm")
        with os.fdopen(fd, "wb") as dst, bz2.open(path, "rb") as src:
            shutil.copyfileobj(src, dst)
        return Path(tmp), True
    if name.endswith(".gz"):
        fd, tmp = tempfile.mkstemp(suffix=".osm")
        with os.fdopen(fd, "wb") as dst, gzip.open(path, "rb") as src:
            shutil.copyfileobj(src, dst)
        return Path(tmp), True
    return path, False


def _read_osm(path: Path, report: NetworkReport) -> gpd.GeoDataFrame:
    import osmium

    src, is_tmp = _decompressed(path)
    ids: list[int] = []
    tags: dict[str, list[Any]] = {t: [] for t in _OSM_TAGS}
    coords: list[tuple[float, float]] = []
    counts: list[int] = []
    broken = 0  # no located node at all
    short = 0  # some located nodes, but never two in a row
    clipped = 0
    try:
        fp = (
            osmium.FileProcessor(str(src))
            .with_locations()
            .with_filter(osmium.filter.KeyFilter("highway"))
            .with_filter(osmium.filter.EntityFilter(osmium.osm.WAY))
        )
        for way in fp:
            # ways cut at the extract's edge lose some node locations: keep the runs of
            # consecutive located nodes (two or more) as separate lines of the same way
            pts = [
                (loc.lon, loc.lat) if (loc := n.location).valid() else None
                for n in way.nodes  # type: ignore[union-attr]
            ]
            if None in pts:
                clipped += 1
                runs: list[list[tuple[float, float]]] = [[]]
                for p in pts:
                    if p is None:
                        runs.append([])
                    else:
                        runs[-1].append(p)
            else:
                runs = [pts]  # type: ignore[list-item]
            wt = way.tags
            values = [wt.get(t) for t in _OSM_TAGS]
            kept = False
            for run in runs:
                if len(run) < 2:
                    continue
                kept = True
                ids.append(way.id)
                for t, v in zip(_OSM_TAGS, values, strict=True):
                    tags[t].append(v)
                coords.extend(run)
                counts.append(len(run))
            if not kept:
                if any(len(run) for run in runs):
                    short += 1
                else:
                    broken += 1
    except RuntimeError as exc:
        raise InputFileError(
            f"{path}: not a readable OSM file ({exc}); check it is complete PBF or OSM XML"
        ) from exc
    except (EOFError, OSError, gzip.BadGzipFile) as exc:
        raise InputFileError(f"{path}: corrupt or truncated file ({exc})") from exc
    finally:
        if is_tmp:
            src.unlink(missing_ok=True)
    report.ways_read = len(set(ids)) + broken + short
    report.clipped = clipped
    if broken:
        report.dropped["no located nodes (outside the extract)"] += broken
    if short:
        report.dropped["no two consecutive located nodes (cut at the extract's edge)"] += short
    if not ids:
        raise InputFileError(
            f"{path}: no ways with a highway tag were found; is it an OSM extract with roads?"
        )
    xy = np.asarray(coords, dtype=float)
    geoms = shapely.linestrings(xy, indices=np.repeat(np.arange(len(counts)), counts))
    df = pd.DataFrame(tags)
    df["osm_id"] = np.asarray(ids, dtype=np.int64)
    return gpd.GeoDataFrame(df, geometry=geoms, crs="EPSG:4326")


def _from_graph(graph: Any, report: NetworkReport) -> gpd.GeoDataFrame:
    from ._optional import require

    ox = require("osmnx", "reading an osmnx graph")

    if graph.number_of_edges() == 0:
        raise ValidationError("the graph has no edges")
    edges = ox.convert.graph_to_gdfs(graph, nodes=False, fill_edge_geometry=True)
    edges = edges.reset_index()
    # osmnx stores both directions of a two-way street: keep one (u < v, or the only one)
    ow = edges.get("oneway", pd.Series(False, index=edges.index)).fillna(False).astype(bool)
    rev = edges.get("reversed", pd.Series(False, index=edges.index))
    rev = rev.map(lambda v: bool(v[0]) if isinstance(v, list) else bool(v)).astype(bool)
    pair = (
        np.minimum(edges["u"], edges["v"]).astype(str)
        + "-"
        + np.maximum(edges["u"], edges["v"]).astype(str)
    )
    keep = ow | ~rev
    edges = edges[keep.to_numpy()]
    dup = (~edges["oneway"].fillna(False).astype(bool)) & edges.assign(_p=pair).duplicated(
        subset=["_p", "key"]
    )
    edges = edges[~dup.to_numpy()]

    def first(v: Any) -> Any:
        return v[0] if isinstance(v, list) and v else v

    data = {}
    for t in _OSM_TAGS:
        if t in edges.columns:
            data[t] = edges[t].map(first)
    data["osm_id"] = edges["osmid"].map(first) if "osmid" in edges.columns else None
    df = pd.DataFrame(data, index=edges.index)
    if "oneway" in df.columns:
        df["oneway"] = df["oneway"].map(
            lambda v: "yes" if v is True else ("no" if v is False else v)
        )
    report.ways_read = len(df)
    return gpd.GeoDataFrame(df, geometry=edges.geometry.values, crs=edges.crs)


def _read_lines(path: Path, layer: str | None, report: NetworkReport) -> gpd.GeoDataFrame:
    try:
        if path.suffix.lower() in (".parquet", ".geoparquet"):
            gdf = gpd.read_parquet(path)
        else:
            gdf = gpd.read_file(path, layer=layer, engine="pyogrio")
    except Exception as exc:
        raise InputFileError(f"{path}: cannot read as a line file ({exc})") from exc
    if gdf.crs is None:
        raise CRSError(
            f"{path}: the file has no CRS; add one (e.g. ogr2ogr -a_srs EPSG:4326) "
            "or read it yourself and call .set_crs(...) before read_network"
        )
    report.ways_read = len(gdf)
    if len(gdf) == 0:
        raise InputFileError(f"{path}: the file has no features")
    types = set(gdf.geom_type.dropna().unique())
    if types and not types & {"LineString", "MultiLineString"}:
        raise ValidationError(
            f"{path}: holds {', '.join(sorted(types))} geometries, not road lines; "
            "give a file of LineString/MultiLineString roads"
        )
    return gdf


def read_network(
    source: str | os.PathLike[str] | Any,
    *,
    highways: frozenset[str] | set[str] | None | str = "drivable",
    layer: str | None = None,
    settings: NetworkSettings | None = None,
) -> gpd.GeoDataFrame:
    """Read a road network into normalised road lines.

    Parameters
    ----------
    source
        An OSM file (``.osm.pbf``, ``.osm``, ``.osm.gz``, ``.osm.bz2``), an osmnx
        ``MultiDiGraph``, a GeoDataFrame, or a line file readable by GDAL (GeoPackage, GeoJSON,
        Shapefile, GeoParquet, FlatGeobuf).
    highways
        ``"drivable"`` (default, :data:`~trafficunit.settings.DRIVABLE_HIGHWAYS` minus parking
        aisles, driveways and private access), ``None`` for every way with a ``highway`` tag
        (parking aisles, driveways, private access and ``area=yes`` included), or a set of
        ``highway`` values to keep.
    layer
        Layer of a multi-layer line file.
    settings
        Full :class:`~trafficunit.settings.NetworkSettings` (overrides ``highways``).

    Returns
    -------
    geopandas.GeoDataFrame
        One row per road line in the source's CRS, columns :data:`COLUMNS`; the report of what
        was dropped is ``.attrs["report"]``.

    Examples
    --------
    >>> import trafficunit as tu
    >>> roads = tu.read_network(tu.sample_network_path())
    >>> roads.crs.to_epsg(), int(roads["road_class"].isin(["primary", "secondary"]).sum()) > 0
    (4326, True)
    """
    if settings is None:
        if highways == "drivable":
            settings = NetworkSettings()
        else:
            settings = NetworkSettings(highways=None if highways is None else frozenset(highways))
    if isinstance(source, gpd.GeoDataFrame):
        report = NetworkReport(source="<GeoDataFrame>", ways_read=len(source))
        return normalise_roads(source, settings=settings, report=report)
    if hasattr(source, "edges") and hasattr(source, "nodes") and not isinstance(source, str | Path):
        report = NetworkReport(source="<osmnx graph>")
        raw = _from_graph(source, report)
        return normalise_roads(raw, settings=settings, report=report)
    if not isinstance(source, str | os.PathLike):
        raise ValidationError(
            f"cannot read a network from {type(source).__name__}; give a file path, "
            "an osmnx graph or a GeoDataFrame of lines"
        )
    path = Path(source)
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise InputFileError(f"{path}: the file is empty")
    report = NetworkReport(source=str(path))
    name = path.name.lower()
    if name.endswith(_OSM_SUFFIXES) and not name.endswith(".json"):
        raw = _read_osm(path, report)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TrafficUnitWarning)
            return normalise_roads(raw, settings=settings, report=report)
    if name.endswith(_LINE_SUFFIXES) or path.is_dir():
        raw = _read_lines(path, layer, report)
        has_osm_tags = "highway" in raw.columns or "road_class" in raw.columns
        return normalise_roads(raw, settings=settings, report=report, filter_highways=has_osm_tags)
    raise InputFileError(
        f"{path}: unknown network format; use OSM ({', '.join(_OSM_SUFFIXES)}) "
        f"or a line file ({', '.join(_LINE_SUFFIXES)})"
    )
