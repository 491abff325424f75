"""Reading and normalising road networks."""

from __future__ import annotations

import bz2
import gzip
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import Point

import trafficunit as tu
from trafficunit.network import COLUMNS, parse_maxspeed

from .conftest import lines_gdf, shared_path


def test_parse_maxspeed_values():
    raw = pd.Series(["50", "30 mph", "50;30", "RU:urban", "walk", "none", "fast", None, "60 km/h"])
    kmh, bad = parse_maxspeed(raw)
    assert kmh.iloc[0] == 50
    assert kmh.iloc[1] == pytest.approx(48.28, abs=0.01)
    assert kmh.iloc[2] == 50  # several limits: the highest
    assert kmh.iloc[3] == 60  # Russian urban default
    assert kmh.iloc[4] == 7
    assert np.isnan(kmh.iloc[5])  # no limit
    assert np.isnan(kmh.iloc[6]) and np.isnan(kmh.iloc[7])
    assert kmh.iloc[8] == 60
    # only the junk value counts as not understood ("none" is understood, missing is missing)
    assert bad.tolist() == [False, False, False, False, False, False, True, False, False]


@pytest.mark.parametrize(
    "name",
    ["helsinki-centre.osm.pbf", "london-city.osm.pbf", "krems.osm.gz", "west-oakland.osm.bz2"],
)
def test_read_real_osm_formats(name):
    roads = tu.read_network(shared_path("osm", name))
    assert list(roads.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert roads.crs.to_epsg() == 4326
    assert len(roads) > 10
    assert set(roads.geom_type) == {"LineString"}
    assert roads["osm_id"].notna().all()
    # drivable filter: no footways or cycleways
    assert not roads["road_class"].isin(["footway", "cycleway", "path", "steps"]).any()
    rep = roads.attrs["report"]
    assert rep["ways_kept"] == len(roads)
    assert rep["dropped"]["highway not drivable"] > 0


def test_helsinki_tags_normalised():
    roads = tu.read_network(shared_path("osm", "helsinki-centre.osm.pbf"))
    assert roads["maxspeed_kmh"].between(5, 130).sum() > 0.5 * len(roads)
    assert roads["lit"].notna().sum() > 100
    assert roads["oneway"].any() and (~roads["oneway"]).any()
    assert roads["lanes"].max() >= 2
    assert roads["name"].notna().mean() > 0.5


def test_plain_and_compressed_xml_agree(tmp_path):
    src = shared_path("osm", "krems.osm.gz")
    plain = tmp_path / "krems.osm"
    with gzip.open(src, "rb") as f, open(plain, "wb") as g:
        shutil.copyfileobj(f, g)
    bz = tmp_path / "krems.osm.bz2"
    with open(plain, "rb") as f, bz2.open(bz, "wb") as g:
        shutil.copyfileobj(f, g)
    a, b, c = (tu.read_network(p) for p in (src, plain, bz))
    assert len(a) == len(b) == len(c)
    assert a["osm_id"].tolist() == b["osm_id"].tolist() == c["osm_id"].tolist()


def test_highway_filter_is_overridable():
    path = shared_path("osm", "helsinki-centre.osm.pbf")
    drive = tu.read_network(path)
    everything = tu.read_network(path, highways=None)
    primaries = tu.read_network(path, highways={"primary"})
    assert len(everything) > len(drive) > len(primaries)
    assert set(primaries["road_class"]) == {"primary"}


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".fgb", ".parquet", ".shp"])
def test_line_files_round_trip(tmp_path, suffix, sample_roads):
    roads = sample_roads[["osm_id", "road_class", "name", "maxspeed_kmh", "geometry"]].head(200)
    roads = roads.rename(columns={"road_class": "highway"})
    path = tmp_path / f"roads{suffix}"
    if suffix == ".parquet":
        roads.to_parquet(path)
    else:
        roads.to_file(path)
    back = tu.read_network(path)
    assert len(back) == len(roads)
    assert back.crs.to_epsg() == 4326
    # FlatGeobuf reorders features by its spatial index: compare sorted lengths
    np.testing.assert_allclose(
        np.sort(shapely.length(back.geometry.values)),
        np.sort(shapely.length(roads.geometry.values)),
        rtol=1e-6,
    )


def test_osmnx_graph_input():
    import osmnx as ox

    path = shared_path("osm", "west-oakland.osm.bz2")
    graph = ox.graph_from_xml(path, simplify=True, retain_all=True)
    from_graph = tu.read_network(graph)
    from_file = tu.read_network(path)
    km = lambda r: r.to_crs(r.estimate_utm_crs()).length.sum()  # noqa: E731
    # a two-way street is one line, not two (osmnx stores both directions)
    assert km(from_graph) == pytest.approx(km(from_file), rel=0.05)


# ---- bad input: clear trafficunit errors, never a traceback from a dependency -------------


def test_missing_file():
    with pytest.raises(tu.InputFileError, match="no such file"):
        tu.read_network("does/not/exist.osm.pbf")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.osm.pbf"
    p.write_bytes(b"")
    with pytest.raises(tu.InputFileError, match="empty"):
        tu.read_network(p)


def test_corrupt_pbf(tmp_path):
    p = tmp_path / "corrupt.osm.pbf"
    good = shared_path("osm", "west-oakland.osm.bz2")
    p.write_bytes(b"\x00\x00\x00\x0dnot a pbf" + good.read_bytes()[:500])
    with pytest.raises(tu.InputFileError, match=str(p.name)):
        tu.read_network(p)


def test_truncated_pbf(tmp_path):
    src = shared_path("osm", "helsinki-centre.osm.pbf")
    p = tmp_path / "truncated.osm.pbf"
    p.write_bytes(src.read_bytes()[:20000])
    with pytest.raises(tu.InputFileError):
        tu.read_network(p)


def test_line_file_without_crs(tmp_path):
    p = tmp_path / "nocrs.geojson"
    p.write_text(
        '{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},'
        '"geometry":{"type":"LineString","coordinates":[[0,0],[1,1]]}}]}'
    )
    # GeoJSON implies WGS84 by spec; a shapefile without .prj has no CRS
    gdf = gpd.read_file(p)
    shp = tmp_path / "nocrs.shp"
    gdf.set_crs(None, allow_override=True).to_file(shp)
    with pytest.raises(tu.CRSError, match="no CRS"):
        tu.read_network(shp)


def test_no_roads_after_filter():
    with pytest.raises(tu.ValidationError, match="no roads left"):
        tu.read_network(shared_path("osm", "west-oakland.osm.bz2"), highways={"nonexistent"})


def test_non_line_geometries(tmp_path):
    p = tmp_path / "points.gpkg"
    gpd.GeoDataFrame({"a": [1]}, geometry=[Point(0, 0)], crs=4326).to_file(p)
    with pytest.raises(tu.ValidationError, match="not road lines"):
        tu.read_network(p)


def test_unknown_format(tmp_path):
    p = tmp_path / "roads.txt"
    p.write_text("hello")
    with pytest.raises(tu.InputFileError, match="unknown network format"):
        tu.read_network(p)


def test_invalid_geometries_are_dropped_and_counted():
    gdf = lines_gdf([[(0, 0), (100, 0)], [(0, 10), (100, 10)]])
    gdf.loc[2] = ["residential", None]
    gdf.loc[3] = ["residential", shapely.LineString()]
    roads = tu.read_network(gdf)
    assert len(roads) == 2
    assert roads.attrs["report"]["dropped"] == {"missing geometry": 1, "empty geometry": 1}


def test_reversed_oneway_is_flipped():
    gdf = lines_gdf([[(0, 0), (100, 0)]], oneway=["-1"])
    roads = tu.read_network(gdf)
    assert bool(roads["oneway"].iloc[0])
    assert roads.geometry.iloc[0].coords[0] == (100, 0)


def test_inputs_not_mutated(sample_roads):
    before = sample_roads.copy()
    tu.build_units(sample_roads)
    pd.testing.assert_frame_equal(before, sample_roads)


def test_read_network_rejects_other_objects():
    with pytest.raises(tu.ValidationError, match="cannot read a network"):
        tu.read_network(42)  # type: ignore[arg-type]


def test_path_types(tmp_path):
    assert isinstance(tu.sample_network_path(), Path)
    assert tu.sample_network_path().exists()


def test_highways_none_keeps_every_highway_way():
    import osmium

    path = shared_path("osm", "helsinki-centre.osm.pbf")
    ways = (
        osmium.FileProcessor(str(path))
        .with_locations()
        .with_filter(osmium.filter.KeyFilter("highway"))
        .with_filter(osmium.filter.EntityFilter(osmium.osm.WAY))
    )
    aisles, areas, every = set(), set(), set()
    for w in ways:
        every.add(w.id)
        ok = [n.location.valid() for n in w.nodes]
        if not any(a and b for a, b in zip(ok, ok[1:], strict=False)):
            continue  # cut at the extract's edge: dropped with that reason
        if w.tags.get("service") == "parking_aisle":
            aisles.add(w.id)
        if w.tags.get("area") == "yes":
            areas.add(w.id)
    assert aisles and areas  # the extract has both
    everything = tu.read_network(path, highways=None)
    kept = set(everything["osm_id"].dropna().astype(int))
    assert aisles <= kept and areas <= kept
    report = everything.attrs["report"]
    assert set(report["dropped"]) == {
        "no two consecutive located nodes (cut at the extract's edge)"
    }
    # every highway way is kept or has a counted reason
    assert len(every - kept) == sum(report["dropped"].values())
    drive = tu.read_network(path)
    assert not (aisles | areas) & set(drive["osm_id"].dropna().astype(int))


def test_drop_reasons_say_exactly_what_a_way_lacked(tmp_path):
    # way 1: no located node; way 2: one located node only (cut at the edge); way 3 fine
    xml = """<?xml version='1.0' encoding='UTF-8'?>
<osm version="0.6">
  <node id="1" lat="60.0" lon="24.0"/>
  <node id="2" lat="60.001" lon="24.0"/>
  <node id="3" lat="60.002" lon="24.0"/>
  <way id="1"><nd ref="90"/><nd ref="91"/><tag k="highway" v="residential"/></way>
  <way id="2"><nd ref="1"/><nd ref="92"/><tag k="highway" v="residential"/></way>
  <way id="3"><nd ref="2"/><nd ref="3"/><tag k="highway" v="residential"/></way>
</osm>
"""
    path = tmp_path / "edge.osm"
    path.write_text(xml, encoding="utf-8")
    roads = tu.read_network(path)
    dropped = roads.attrs["report"]["dropped"]
    assert dropped["no located nodes (outside the extract)"] == 1
    assert dropped["no two consecutive located nodes (cut at the extract's edge)"] == 1
    assert roads["osm_id"].tolist() == [3]
