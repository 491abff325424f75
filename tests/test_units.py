"""Building traffic units: lengths, splitting, junctions, attributes and stable ids."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import osmium
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trafficunit as tu

from .conftest import lines_gdf, shared_path

REAL = [
    "helsinki-centre.osm.pbf",
    "london-city.osm.pbf",
    "portland-central.osm.pbf",
    "krems.osm.gz",
    "north-bayreuth.osm.gz",
]


def _metric_km(gdf):
    return gdf.to_crs(gdf.estimate_utm_crs()).length.sum() / 1000.0


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL)
def test_real_extract_units(name):
    roads = tu.read_network(shared_path("osm", name))
    units = tu.build_units(roads, max_length_m=200)
    seg = units[units["kind"] == "segment"]
    inter = units[units["kind"] == "intersection"]
    # total length of segment units equals the input roads' length within 0.5 %
    assert seg["length_m"].sum() / 1000 == pytest.approx(_metric_km(roads), rel=0.005)
    # lengths reported match the geometry
    assert seg["length_m"].sum() / 1000 == pytest.approx(_metric_km(seg), rel=1e-6)
    assert (seg["length_m"] <= 200 + 1e-6).all()
    assert (seg["length_m"] > 0).all()
    assert units.index.is_unique
    assert units.crs == roads.crs
    assert len(inter) > 10
    assert (inter["degree"] >= 3).all()
    assert (inter["radius_m"] >= 15).all()
    assert set(seg.geom_type) == {"LineString"} and set(inter.geom_type) == {"Point"}
    # neighbours point at existing units
    ids = set(units.index)
    for col in ("from_unit", "to_unit", "junction_id"):
        assert set(seg[col].dropna()) <= ids
    neigh = set(";".join(units["neighbours"].dropna()).split(";"))
    assert neigh <= ids


def test_ids_identical_across_runs(sample_roads):
    a = tu.build_units(sample_roads)
    b = tu.build_units(sample_roads.sample(frac=1.0, random_state=7))  # row order must not matter
    assert a.index.tolist() == b.index.tolist()
    pd.testing.assert_series_equal(a["length_m"], b["length_m"])


def _edit_copy(src, dst, *, way_id, tags=None, delete=False):
    """Write a copy of an OSM file with one way's tags changed or the way deleted."""

    class Editor(osmium.SimpleHandler):
        def __init__(self, writer):
            super().__init__()
            self.w = writer

        def node(self, n):
            self.w.add_node(n)

        def way(self, w):
            if w.id != way_id:
                self.w.add_way(w)
            elif not delete:
                t = dict(w.tags)
                t.update(tags or {})
                self.w.add_way(w.replace(tags=t))

        def relation(self, r):
            self.w.add_relation(r)

    writer = osmium.SimpleWriter(str(dst))
    try:
        Editor(writer).apply_file(str(src))
    finally:
        writer.close()


def _pick_way(roads):
    named = roads[roads["name"].notna() & roads["maxspeed_kmh"].notna()]
    lengths = named.to_crs(named.estimate_utm_crs()).length
    return int(named.loc[lengths.idxmax(), "osm_id"])


def _touching_ways(roads, way_id):
    """Ways sharing a vertex with ``way_id``, itself included."""
    geom = roads.loc[roads["osm_id"] == way_id].geometry.union_all()
    verts = shapely.multipoints(shapely.get_coordinates(geom))
    hit = roads.geometry.intersects(verts)
    return set(roads.loc[hit, "osm_id"].astype(int)) | {way_id}


def _on_ways(units, ways):
    ids = units["osm_ids"].fillna("").str.split(";")
    return ids.map(lambda xs: bool({int(x) for x in xs if x} & ways))


@pytest.mark.slow
@pytest.mark.parametrize("edit", ["speed", "delete"])
def test_editing_one_street_keeps_other_ids(tmp_path, edit):
    src = shared_path("osm", "helsinki-centre.osm.pbf")
    roads = tu.read_network(src)
    way = _pick_way(roads)
    dst = tmp_path / "edited.osm.pbf"
    if edit == "speed":
        _edit_copy(src, dst, way_id=way, tags={"maxspeed": "20"})
        affected_ways = {way}
    else:
        _edit_copy(src, dst, way_id=way, delete=True)
        affected_ways = _touching_ways(roads, way)
    before = tu.build_units(roads)
    after = tu.build_units(tu.read_network(dst))
    untouched = before[~_on_ways(before, affected_ways)]
    assert len(untouched) > 0.8 * len(before)
    missing = set(untouched.index) - set(after.index)
    assert not missing, f"{len(missing)} untouched units changed id"
    # and the edit is visible where it was made
    changed = before[_on_ways(before, {way}) & (before["kind"] == "segment")]
    assert len(changed) > 0
    if edit == "speed":
        now = after[_on_ways(after, {way}) & (after["kind"] == "segment")]
        assert (now["maxspeed_kmh"] == 20).all()
        # the same stretch of road keeps its id when only its attributes change (the history
        # of a unit follows the road, as in linear referencing); the attribute is updated
        assert (changed["maxspeed_kmh"] != 20).all()
        same_geom = changed.geometry.to_wkb().isin(now.geometry.to_wkb())
        assert same_geom.sum() >= 1
        assert set(changed.index[same_geom]) <= set(now.index)
    else:
        assert not _on_ways(after, {way}).any()


def test_two_way_street_is_one_unit_and_dual_carriageway_two():
    # one two-way street drawn once, and a dual carriageway drawn as two one-way lines
    gdf = lines_gdf(
        [
            [(0, 0), (150, 0)],
            [(0, 100), (150, 100)],
            [(150, 110), (0, 110)],
        ],
        oneway=["no", "yes", "yes"],
        name=["Single", "Dual", "Dual"],
    )
    units = tu.build_units(gdf, max_length_m=200)
    seg = units[units["kind"] == "segment"]
    assert len(seg) == 3
    assert sorted(seg["direction"]) == ["both", "forward", "forward"]
    assert (seg.loc[seg["name"] == "Dual", "oneway"]).all()


def test_even_split_and_attribute_split():
    # 500 m street: 3 pieces of 166.7 m; a speed change at 300 m adds a split
    gdf = lines_gdf(
        [[(0, 0), (300, 0)], [(300, 0), (500, 0)], [(0, 1000), (500, 1000)]],
        maxspeed=["50", "30", "40"],
        name=["A", "A", "B"],
    )
    units = tu.build_units(gdf, max_length_m=200)
    a = units[units["name"] == "A"].sort_values("length_m")
    b = units[units["name"] == "B"]
    np.testing.assert_allclose(sorted(b["length_m"]), [500 / 3] * 3, rtol=1e-9)
    np.testing.assert_allclose(sorted(a["length_m"]), [150, 150, 200], rtol=1e-9)
    assert sorted(a["maxspeed_kmh"]) == [30, 50, 50]
    # way boundary with equal attributes is merged
    same = lines_gdf([[(0, 0), (100, 0)], [(100, 0), (180, 0)]], maxspeed=["50", "50"])
    merged = tu.build_units(same, max_length_m=200)
    assert len(merged) == 1
    assert merged["length_m"].iloc[0] == pytest.approx(180)
    assert merged["osm_ids"].isna().all() or True  # line files have no way ids


def test_complex_junction_is_one_intersection():
    # a crossroads drawn with two nodes 8 m apart (as dual carriageways produce)
    gdf = lines_gdf(
        [
            [(-100, 0), (0, 0)],
            [(0, 0), (8, 0)],
            [(8, 0), (108, 0)],
            [(0, -100), (0, 0)],
            [(8, 0), (8, 100)],
        ]
    )
    units = tu.build_units(gdf, junction_merge_m=20)
    inter = units[units["kind"] == "intersection"]
    assert len(inter) == 1
    assert inter["degree"].iloc[0] == 4
    link = units[units["junction_id"].notna()]
    assert len(link) == 1 and link["length_m"].iloc[0] == pytest.approx(8)
    assert link["junction_id"].iloc[0] == inter.index[0]
    # without consolidation, two T-junctions
    apart = tu.build_units(gdf, junction_merge_m=0)
    assert (apart["kind"] == "intersection").sum() == 2


def test_adjacency_and_curvature():
    gdf = lines_gdf([[(0, 0), (100, 0)], [(100, 0), (200, 0)], [(100, 0), (100, 100)]])
    units = tu.build_units(gdf)
    inter = units[units["kind"] == "intersection"]
    seg = units[units["kind"] == "segment"]
    assert len(inter) == 1 and len(seg) == 3
    iid = inter.index[0]
    assert set(inter["neighbours"].iloc[0].split(";")) == set(seg.index)
    assert ((seg["from_unit"] == iid) | (seg["to_unit"] == iid)).all()
    np.testing.assert_allclose(seg["sinuosity"], 1.0)
    np.testing.assert_allclose(seg["turn_deg_per_km"], 0.0)
    bent = tu.build_units(lines_gdf([[(0, 0), (100, 0), (100, 100)]]), max_length_m=500)
    assert bent["turn_deg_per_km"].iloc[0] == pytest.approx(90 / 0.2)
    assert bent["sinuosity"].iloc[0] == pytest.approx(200 / np.hypot(100, 100))


def test_unit_geometries_made_in_id_order_equal_the_shuffled_ones(sample_roads):
    """The geometries made in ``by_id`` order are those made in build order and shuffled."""
    import pyproj

    from trafficunit._unit_stages import _unit_geometries
    from trafficunit._validate import transformer
    from trafficunit.settings import UnitSettings
    from trafficunit.units import _build

    st = _build(sample_roads, UnitSettings())
    xy, part = shapely.get_coordinates(st.seg_geoms, return_index=True)
    x, y = np.r_[xy[:, 0], st.centre[:, 0]], np.r_[xy[:, 1], st.centre[:, 1]]
    transformer(pyproj.CRS(st.mcrs), pyproj.CRS(st.in_crs)).transform(x, y, inplace=True)
    n = len(part)
    made = np.r_[shapely.linestrings(x[:n], y[:n], indices=part), shapely.points(x[n:], y[n:])]
    shuffled = np.random.default_rng(1).permutation(len(st.by_id))
    assert len(st.seg_geoms) and len(st.centre)
    for by_id in (st.by_id, shuffled, shuffled[:100]):
        got = _unit_geometries(st, by_id)
        assert (shapely.to_wkb(got) == shapely.to_wkb(made[by_id])).all()


def test_unit_refs_are_the_positions_of_from_and_to_unit(sample_roads):
    """``_unit_refs`` gives the position of each unit's ``from_unit`` and ``to_unit`` among
    the units (-1 where none), as looking the ids up in the index does."""
    from trafficunit._unit_stages import _unit_refs
    from trafficunit.settings import UnitSettings
    from trafficunit.units import _build

    units = (st := _build(sample_roads, UnitSettings())).units
    refs = _unit_refs(st)
    ids = pd.concat([units["from_unit"], units["to_unit"]], ignore_index=True)
    want = units.index.get_indexer(ids.fillna("-").to_numpy(dtype=object))
    np.testing.assert_array_equal(refs, want)
    assert (refs >= 0).sum() > len(units) // 2 and (refs < 0).sum() >= (
        units["kind"] != "segment"
    ).sum() * 2


def test_metric_crs_given_and_output_crs_kept(sample_roads):
    shenzhen_like = sample_roads.to_crs(3067)
    units = tu.build_units(shenzhen_like, crs="EPSG:3067")
    assert units.crs.to_epsg() == 3067
    assert units.attrs["report"]["metric_crs"] == "EPSG:3067"
    with pytest.raises(tu.CRSError):
        tu.build_units(sample_roads, crs="EPSG:4326")


def test_missing_crs_raises(sample_roads):
    with pytest.raises(tu.CRSError, match="no CRS"):
        tu.build_units(sample_roads.set_crs(None, allow_override=True))


def test_bad_parameters(sample_roads):
    with pytest.raises(tu.ValidationError, match="max_length_m"):
        tu.build_units(sample_roads, max_length_m=0)
    with pytest.raises(tu.ValidationError, match="split_on"):
        tu.build_units(sample_roads, split_on=["colour"])


coords = st.floats(min_value=-500, max_value=500, allow_nan=False, allow_infinity=False)
polyline = st.lists(st.tuples(coords, coords), min_size=2, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(polyline, min_size=1, max_size=8), max_len=st.floats(20, 400))
def test_random_networks_preserve_length(lines, max_len):
    gdf = lines_gdf(lines)
    total = shapely.length(shapely.remove_repeated_points(gdf.geometry.values, 0.01)).sum()
    try:
        units = tu.build_units(gdf, max_length_m=max_len)
    except tu.ValidationError:
        # only when every line is degenerate
        assert total < 0.1
        return
    seg = units[units["kind"] == "segment"]
    # vertices snap to a 1 cm grid: each may move by up to 0.71 cm
    n_vertices = sum(len(line) for line in lines)
    assert seg["length_m"].sum() == pytest.approx(total, rel=1e-6, abs=0.015 * n_vertices)
    assert (seg["length_m"] <= max_len + 1e-6).all()
    assert units.index.is_unique
    again = tu.build_units(gdf, max_length_m=max_len)
    assert again.index.tolist() == units.index.tolist()


def _ring_units(units: gpd.GeoDataFrame, way: int) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """(intersections, segments) built from OSM way ``way``."""
    has = units["osm_ids"].fillna("").str.split(";").map(lambda ids: str(way) in ids)
    sub = units.loc[has]
    return sub.loc[sub["kind"] == "intersection"], sub.loc[sub["kind"] == "segment"]


@pytest.mark.parametrize(
    ("name", "way"),
    [
        # Porto: the Rotunda Gil Eanes (junction=roundabout, ~60 m across, 3 junction nodes
        # more than junction_merge_m apart: three intersections before rings were joined)
        ("Rotunda Gil Eanes", 97721317),
        # Porto: Largo do Doutor Pedro Vitorino, a drivable square drawn as a closed
        # residential ring with place=square (area=yes)
        ("Largo do Doutor Pedro Vitorino", 238834396),
    ],
)
def test_a_roundabout_and_a_square_are_one_intersection_unit(name: str, way: int) -> None:
    roads = tu.read_network(shared_path("osm", "porto.osm.pbf"))
    assert way in set(roads["osm_id"].dropna().astype(int)), f"{name} is read as a road"
    units = tu.build_units(roads)
    ints, segs = _ring_units(units, way)
    assert len(ints) == 1, f"{name}: {len(ints)} intersection units"
    node = ints.iloc[0]
    # the ring's pieces keep their geometry as links of that one junction
    assert len(segs) >= 2 and (segs["junction_id"] == node.name).all()
    assert node["degree"] >= 3
    # an accident anywhere on the ring is inside the junction's influence disc, so the join
    # gives it to the one intersection
    metric = units.to_crs(units.attrs["report"]["metric_crs"])
    far = metric.loc[segs.index].geometry.hausdorff_distance(metric.geometry[node.name])
    assert (far <= node["radius_m"]).all()
    # the rest of the network does not change the ring's id (lineage keeps it)
    ring_xy = metric.geometry[node.name]
    roads_m = roads.to_crs(metric.crs)
    away = roads_m.geometry.distance(ring_xy) > 500
    fewer = roads.drop(index=roads.index[(away & (roads["road_class"] == "residential"))][:20])
    again = tu.build_units(fewer)
    assert node.name in again.index


def test_only_closed_rings_join_their_junctions() -> None:
    # an open roundabout arc (not closed) stays ordinary segments and junctions, 200 m apart
    shp = shapely

    arc = [(100 * np.cos(t), 100 * np.sin(t)) for t in np.linspace(0, np.pi, 20)]
    lines = [
        shp.LineString(arc),
        shp.LineString([(100, 0), (300, 0)]),
        shp.LineString([(100, 0), (100, -200)]),
        shp.LineString([(-100, 0), (-300, 0)]),
        shp.LineString([(-100, 0), (-100, -200)]),
    ]
    roads = gpd.GeoDataFrame(
        {"highway": ["primary"] * 5, "junction": ["roundabout", None, None, None, None]},
        geometry=lines,
        crs="EPSG:3067",
    )
    units = tu.build_units(roads)
    assert (units["kind"] == "intersection").sum() == 2
    closed = gpd.GeoDataFrame(
        {"highway": ["primary"] * 6, "junction": ["roundabout"] * 2 + [None] * 4},
        geometry=[
            shp.LineString(arc),
            shp.LineString([(x, -y) for x, y in arc[::-1]]),
            *lines[1:],
        ],
        crs="EPSG:3067",
    )
    ring = tu.build_units(closed)
    assert (ring["kind"] == "intersection").sum() == 1
    seg = ring.loc[ring["kind"] == "segment"]
    # the four approaches stay roads; every piece of the ring (split at max_length_m) is a link
    assert seg["junction_id"].isna().sum() == 4
    assert (seg.loc[seg["junction_id"].notna(), "length_m"].sum()) == pytest.approx(
        2 * np.pi * 100, rel=0.01
    )
