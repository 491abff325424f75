"""A basemap from the same OSM extract as the units: a PMTiles archive built with tippecanoe.

Layers (MapLibre ``source-layer`` names) and their ``class`` values:

``roads``      every highway, footways, paths, steps and cycleways included (``class`` is the
               OSM ``highway`` value), with ``name``
``rail``       rail, tram, light rail, subway
``water``      water areas and waterways
``parks``      parks, gardens, grass, woods, cemeteries, pitches
``buildings``  building footprints (from zoom 14)
``places``     place names (city .. neighbourhood, squares) as points

``name_zh`` carries OSM's ``name:zh`` where the extract has it (Chinese labels on the map).
The web map draws these layers under the risk layers (its MapLibre style).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from ._errors import InputFileError, TrafficUnitError, ValidationError
from .io import atomic_path
from .tiles import tippecanoe_path, write_geojsonseq

__all__ = ["BasemapReport", "build_basemap", "BASEMAP_LAYERS"]

#: Layers of the archive, bottom to top.
BASEMAP_LAYERS: tuple[str, ...] = ("parks", "water", "buildings", "rail", "roads", "places")

_PARKS = {
    "leisure": ["park", "garden", "playground", "pitch", "nature_reserve", "common"],
    "landuse": ["grass", "forest", "meadow", "recreation_ground", "cemetery", "village_green"],
    "natural": ["wood", "scrub", "heath", "grassland"],
}
_WATER = {
    "natural": ["water", "wetland", "bay"],
    "waterway": ["river", "stream", "canal", "riverbank", "dock"],
    "landuse": ["reservoir", "basin"],
}
_RAIL = {"railway": ["rail", "tram", "light_rail", "subway", "narrow_gauge", "monorail"]}
_PLACES = {
    "place": [
        "city",
        "town",
        "suburb",
        "quarter",
        "neighbourhood",
        "village",
        "hamlet",
        "locality",
        "square",
        "island",
    ]
}
#: Lowest zoom of each road class (minor ways appear as one zooms in).
_ROAD_MINZOOM = {
    "motorway": 5,
    "trunk": 6,
    "primary": 8,
    "secondary": 9,
    "tertiary": 10,
    "residential": 12,
    "unclassified": 12,
    "living_street": 13,
    "pedestrian": 13,
    "service": 14,
}


@dataclass
class BasemapReport:
    """What :func:`build_basemap` wrote: where, how big, how long, how many features."""

    output: str
    bytes: int = 0
    seconds: float = 0.0
    read_s: float = 0.0
    tippecanoe_s: float = 0.0
    minzoom: int = 10
    maxzoom: int = 15
    features: dict[str, int] = field(default_factory=dict)


def _tags(frame: gpd.GeoDataFrame, key: str) -> pd.Series:
    """A tag as a column (pyrosm puts the less common ones in a JSON ``tags`` column)."""
    if key in frame.columns:
        return frame[key].astype("string")
    if "tags" not in frame.columns:
        return pd.Series(pd.NA, index=frame.index, dtype="string")
    import json

    def get(t: Any) -> Any:
        if isinstance(t, str) and key in t:
            try:
                return json.loads(t).get(key)
            except ValueError:
                return None
        if isinstance(t, dict):
            return t.get(key)
        return None

    return frame["tags"].map(get).astype("string")


def _first(frame: gpd.GeoDataFrame, keys: dict[str, list[str]]) -> pd.Series:
    """The class of each row: the value of the first of ``keys`` that it has."""
    out = pd.Series(pd.NA, index=frame.index, dtype="string")
    for key in keys:
        if key in frame.columns:
            out = out.fillna(frame[key].astype("string"))
    return out


def _layer(
    frame: gpd.GeoDataFrame | None, cls: pd.Series | None, minzoom: Any = None
) -> gpd.GeoDataFrame:
    if frame is None or len(frame) == 0:
        return gpd.GeoDataFrame({"class": []}, geometry=[], crs="EPSG:4326")
    frame = frame.to_crs("EPSG:4326") if frame.crs is not None else frame.set_crs("EPSG:4326")
    out = gpd.GeoDataFrame(
        {"class": cls if cls is not None else pd.Series("", index=frame.index)},
        geometry=frame.geometry.values,
        crs="EPSG:4326",
        index=frame.index,
    )
    for src, dst in (("name", "name"), ("name:zh", "name_zh")):
        v = _tags(frame, src)
        if v.notna().any():
            out[dst] = v
    if minzoom is not None:
        out["_minzoom"] = minzoom
    out = out.loc[out.geometry.notna() & ~out.geometry.is_empty]
    return out.reset_index(drop=True)


def _read_layers(osm_path: Path) -> dict[str, gpd.GeoDataFrame]:
    """The basemap layers from an OSM PBF (pyrosm), in WGS84."""
    import pyrosm

    osm = pyrosm.OSM(str(osm_path))
    extra = ["name", "name:zh"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyrosm/shapely chatter on odd ways
        roads = osm.get_network(network_type="all", extra_attributes=["name:zh"])
        buildings = osm.get_buildings()
        custom = {}
        for name, filt in (("water", _WATER), ("parks", _PARKS), ("rail", _RAIL)):
            custom[name] = osm.get_data_by_custom_criteria(
                custom_filter=filt, extra_attributes=extra, keep_nodes=False
            )
        places = osm.get_data_by_custom_criteria(
            custom_filter=_PLACES, extra_attributes=extra, keep_ways=False, keep_relations=False
        )
    layers: dict[str, gpd.GeoDataFrame] = {}
    if roads is not None and len(roads):
        hw = roads["highway"].astype("string")
        base = hw.str.replace("_link", "", regex=False)
        mz = base.map(_ROAD_MINZOOM).fillna(14).astype(int).to_numpy()
        layers["roads"] = _layer(roads, hw, mz)
    else:
        layers["roads"] = _layer(None, None)
    water = custom["water"]
    layers["water"] = _layer(water, _first(water, _WATER) if water is not None else None)
    parks = custom["parks"]
    park_cls = _first(parks, _PARKS) if parks is not None else None
    layers["parks"] = _layer(parks, park_cls)
    rail = custom["rail"]
    layers["rail"] = _layer(rail, rail["railway"].astype("string") if rail is not None else None)
    layers["buildings"] = _layer(buildings, None, 14)
    if places is not None and len(places):
        places = places.loc[places.geometry.geom_type == "Point"]
        pc = places["place"].astype("string")
        order = {"city": 8, "town": 10, "suburb": 12, "quarter": 13, "neighbourhood": 14}
        layers["places"] = _layer(places, pc, pc.map(order).fillna(15).astype(int).to_numpy())
        if "name" in layers["places"]:
            layers["places"] = layers["places"].loc[layers["places"]["name"].notna()]
    else:
        layers["places"] = _layer(None, None)
    return layers


def build_basemap(
    osm_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    minzoom: int = 10,
    maxzoom: int = 15,
    quiet: bool = True,
) -> BasemapReport:
    """Build a basemap PMTiles archive from an OSM PBF extract with tippecanoe.

    Parameters
    ----------
    osm_path
        The ``.osm.pbf`` extract the units were built from.
    output
        Where to write the ``.pmtiles`` archive (atomically: temp file + rename). Put it in a
        data folder as ``basemap.pmtiles`` and the server draws it under the risk layers.
    minzoom, maxzoom
        Zoom range of the tiles (MapLibre overzooms beyond ``maxzoom``).

    Returns
    -------
    BasemapReport
        Size in bytes, seconds (reading, tippecanoe, total) and features per layer.

    Examples
    --------
    >>> import trafficunit as tu
    >>> rep = tu.build_basemap(tu.sample_network_path(), "/tmp/basemap.pmtiles")  # doctest: +SKIP
    >>> rep.features["roads"] > 1000  # doctest: +SKIP
    True
    """
    src = Path(osm_path)
    if not src.exists():
        raise InputFileError(f"{src}: no such OSM extract")
    if not str(src).lower().endswith(".pbf"):
        raise ValidationError(f"{src}: the basemap is built from an OSM .pbf extract")
    out = Path(output)
    if out.suffix.lower() != ".pmtiles":
        raise ValidationError(f"cannot write {out}: the basemap is written as .pmtiles")
    if not 0 <= minzoom <= maxzoom <= 16:
        raise ValidationError(
            f"zoom range {minzoom}-{maxzoom} is invalid; need 0 <= min <= max <= 16"
        )
    report = BasemapReport(output=str(out), minzoom=minzoom, maxzoom=maxzoom)
    t0 = time.perf_counter()
    layers = _read_layers(src)
    report.read_s = time.perf_counter() - t0
    binary = tippecanoe_path()
    with tempfile.TemporaryDirectory(prefix="trafficunit-basemap-") as tmpdir:
        args = [
            str(binary),
            "--force",
            f"--minimum-zoom={minzoom}",
            f"--maximum-zoom={maxzoom}",
            "--drop-densest-as-needed",
            "--coalesce-densest-as-needed",
            "--simplification=4",
            "--no-tile-size-limit" if maxzoom <= 15 else "--maximum-tile-bytes=2000000",
            "--name=trafficunit basemap",
            "--attribution=© OpenStreetMap contributors",
            f"--description=basemap of {src.name}",
            f"--temporary-directory={tmpdir}",
        ]
        if quiet:
            args.append("--quiet")
        for name in BASEMAP_LAYERS:
            frame = layers[name]
            path = Path(tmpdir) / f"{name}.geojsonl"
            report.features[name] = _write_layer(frame, path, minzoom)
            args += ["--named-layer", f"{name}:{path}"]
        t1 = time.perf_counter()
        with atomic_path(out) as tmp:
            proc = subprocess.run(
                [*args, "--output", str(tmp)], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0 or not tmp.exists():
                raise TrafficUnitError(
                    f"tippecanoe failed (exit {proc.returncode}) building {out}: "
                    f"{proc.stderr.strip()[-800:]}"
                )
        report.tippecanoe_s = time.perf_counter() - t1
    report.bytes = out.stat().st_size
    report.seconds = time.perf_counter() - t0
    return report


def _write_layer(frame: gpd.GeoDataFrame, path: Path, minzoom: int) -> int:
    """GeoJSONSeq for tippecanoe (vectorised, :func:`trafficunit.tiles.write_geojsonseq`);
    ``_minzoom`` becomes each feature's minzoom (default ``minzoom``)."""
    out = frame.copy()
    mz = out.pop("_minzoom") if "_minzoom" in out.columns else pd.Series(minzoom, index=out.index)
    out.insert(0, "minzoom", np.maximum(np.asarray(mz, dtype=np.int64), minzoom))
    out.insert(0, "fid", np.arange(len(out), dtype=np.int64))
    return write_geojsonseq(out, path)
