"""Routing over the unit graph: direction, one-way, avoidances, explicit-route checks."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

import trafficunit as tu
from trafficunit.routing import UnitGraph, check_route, daily_intervals

from .conftest import lines_gdf, shared_path


def _ring_units() -> gpd.GeoDataFrame:
    """A 400 m x 200 m block; the north side is one-way westbound, a spur hangs off each corner."""
    coords = [
        [(0, 0), (400, 0)],  # south, two-way
        [(400, 0), (400, 200)],  # east
        [(400, 200), (0, 200)],  # north, one-way drawn westwards
        [(0, 200), (0, 0)],  # west
        [(0, 0), (-100, 0)],
        [(400, 0), (500, 0)],
        [(400, 200), (500, 200)],
        [(0, 200), (-100, 200)],
    ]
    roads = lines_gdf(
        coords,
        name=["S", "E", "N", "W", "a", "b", "c", "d"],
        oneway=["no", "no", "yes", "no", "no", "no", "no", "no"],
    )
    return tu.build_units(roads, max_length_m=1000)


def _xy(units: gpd.GeoDataFrame, x: float, y: float) -> tuple[float, float]:
    """A position in EPSG:3067 (the block's CRS), given with crs=3067."""
    return (x, y)


def test_one_way_is_respected_and_two_way_is_not_restricted() -> None:
    units = _ring_units()
    g = UnitGraph(units)
    north = units.index[units["name"] == "N"][0]
    assert units.loc[north, "direction"] == "forward"
    # westbound along the north side is allowed: the route uses it
    west = tu.route(g, _xy(units, 350, 200), _xy(units, 50, 200), crs=3067)
    assert west.unit_ids == [north]
    assert west.length_m == pytest.approx(300, abs=0.5)
    # eastbound must go round the block: west, south, east sides (200 + 400 + 200 + 2 x 50)
    east = tu.route(g, _xy(units, 50, 200), _xy(units, 350, 200), crs=3067)
    names = [units.loc[u, "name"] for u in east.unit_ids if units.loc[u, "kind"] == "segment"]
    assert names == ["N", "W", "S", "E", "N"]
    assert east.directions[0] == "forward" and east.directions[-1] == "forward"
    assert east.length_m == pytest.approx(50 + 200 + 400 + 200 + 50, abs=1)
    assert check_route(g, east.unit_ids).ok
    assert east.geometry.length > 0


def test_check_route_finds_gaps_and_wrong_way() -> None:
    units = _ring_units()
    by = {units.loc[u, "name"]: u for u in units.index if units.loc[u, "kind"] == "segment"}
    corner = units.index[units["kind"] == "intersection"]
    nw = [
        c
        for c in corner
        if units.loc[c, "neighbours"]
        and by["N"] in units.loc[c, "neighbours"]
        and by["W"] in units.loc[c, "neighbours"]
    ][0]
    ne = [
        c
        for c in corner
        if by["N"] in units.loc[c, "neighbours"] and by["E"] in units.loc[c, "neighbours"]
    ][0]
    assert check_route(units, [by["E"], ne, by["N"], nw, by["W"]]).ok
    wrong = check_route(units, [by["W"], nw, by["N"], ne, by["E"]])
    assert not wrong.ok and "one-way" in wrong.problems[0]
    gap = check_route(units, [by["S"], by["N"]])
    assert not gap and "does not touch" in gap.problems[0]
    with pytest.raises(tu.ValidationError, match="not in the units"):
        check_route(units, ["nope"])


def test_off_network_origin_and_bad_avoid_are_clear_errors() -> None:
    units = _ring_units()
    with pytest.raises(tu.ValidationError, match="origin .* off the network"):
        tu.route(units, _xy(units, 200, 1000), _xy(units, 200, 0), crs=3067)
    with pytest.raises(tu.ValidationError, match="unknown item"):
        tu.route(units, _xy(units, 200, 0), _xy(units, 200, 200), crs=3067, avoid=["purple"])
    with pytest.raises(tu.ValidationError, match="level"):
        tu.route(units, _xy(units, 200, 0), _xy(units, 200, 200), crs=3067, avoid="red")
    with pytest.raises(tu.ValidationError, match="weight"):
        tu.route(units, _xy(units, 200, 0), _xy(units, 200, 200), crs=3067, weight="fuel")


def test_daily_windows_cross_midnight() -> None:
    iv = daily_intervals([["22:00", "06:00"]], "2025-11-30", "2025-12-02", tz="Asia/Shanghai")
    assert iv[0][0] == pd.Timestamp("2025-11-30 00:00", tz="Asia/Shanghai")
    assert iv[1] == (
        pd.Timestamp("2025-11-30 22:00", tz="Asia/Shanghai"),
        pd.Timestamp("2025-12-01 06:00", tz="Asia/Shanghai"),
    )
    with pytest.raises(tu.ValidationError, match="HH:MM"):
        daily_intervals([["25:00", "06:00"]], "2025-11-30", "2025-12-01")


def _touches(units: gpd.GeoDataFrame, ids: list[str]) -> bool:
    """Consecutive units on the route meet: segments within 1 m of each other, or of the
    intersection between them (within its radius: a consolidated junction spans metres)."""
    m = units.to_crs(units.estimate_utm_crs())
    g = m.geometry.loc[ids].to_numpy()
    gap = shapely.distance(g[:-1], g[1:])
    is_int = (m["kind"].loc[ids] == "intersection").to_numpy()
    radius = m["radius_m"].loc[ids].to_numpy()
    allowed = np.where(is_int[:-1] | is_int[1:], np.fmax(radius[:-1], radius[1:]), 1.0)
    allowed = np.nan_to_num(allowed, nan=1.0)
    return bool((gap <= allowed).all())


@pytest.mark.slow
@pytest.mark.parametrize("extract", ["helsinki-centre.osm.pbf", "oslo-east.osm.pbf"])
def test_real_route_avoids_red_unit_and_active_work_zone(extract: str) -> None:
    units = tu.build_units(tu.read_network(shared_path("osm", extract)), max_length_m=200)
    units["level"] = "blue"
    g = UnitGraph(units)
    metric = units.to_crs(g.crs)
    segs = metric[(metric["kind"] == "segment") & metric["junction_id"].isna()]
    segs = segs[segs["road_class"].isin(["primary", "secondary", "tertiary", "residential"])]
    # two far-apart points: the 10th and 90th percentile of x
    cx = segs.geometry.centroid
    a = segs.index[np.argsort(cx.x.to_numpy())[len(segs) // 10]]
    b = segs.index[np.argsort(cx.x.to_numpy())[9 * len(segs) // 10]]
    pa = gpd.GeoSeries([metric.geometry[a].interpolate(0.5, normalized=True)], crs=g.crs)
    pb = gpd.GeoSeries([metric.geometry[b].interpolate(0.5, normalized=True)], crs=g.crs)
    o = pa.to_crs(units.crs).iloc[0]
    d = pb.to_crs(units.crs).iloc[0]
    base = tu.route(g, o, d)
    assert base.unit_ids[0] == a and base.unit_ids[-1] == b
    assert check_route(g, base.unit_ids).ok and _touches(units, base.unit_ids)
    assert base.length_m > 500
    on_route = [u for u in base.unit_ids[2:-2] if units.loc[u, "kind"] == "segment"]
    red = on_route[len(on_route) // 3]
    zone_unit = on_route[2 * len(on_route) // 3]
    units.loc[red, "level"] = "red"
    g = UnitGraph(units)
    # a work zone drawn over a 20 m piece in the middle of another unit on the route
    line = metric.geometry[zone_unit]
    piece = shapely.ops.substring(line, line.length / 2 - 10, line.length / 2 + 10)
    wz = gpd.GeoDataFrame(
        {
            "event_id": ["W1"],
            "site_code": ["W1"],
            "start": pd.to_datetime(["2025-11-30 20:00"]).tz_localize("UTC"),
            "end": pd.to_datetime(["2025-12-01 08:00"]).tz_localize("UTC"),
        },
        geometry=[piece],
        crs=g.crs,
    ).to_crs(units.crs)
    night = daily_intervals([["22:00", "06:00"]], "2025-11-30 12:00", "2025-12-01 12:00")
    day = [(pd.Timestamp("2025-12-02 09:00", tz="UTC"), pd.Timestamp("2025-12-02 17:00", tz="UTC"))]
    around = tu.route(g, o, d, avoid=["red", "workzones"], workzones=wz, when=night)
    assert red not in around.unit_ids and zone_unit not in around.unit_ids
    assert check_route(g, around.unit_ids).ok and _touches(units, around.unit_ids)
    assert around.length_m >= base.length_m - 1e-6
    # the zone is not active in a daytime window next week: only the red unit is avoided
    by_day = tu.route(g, o, d, avoid=["red", "workzones"], workzones=wz, when=day)
    assert red not in by_day.unit_ids
    only_red = tu.route(g, o, d, avoid="red")
    assert by_day.unit_ids == only_red.unit_ids
    # forbidding a unit works like avoiding it
    forb = tu.route(g, o, d, forbidden=[red])
    assert forb.unit_ids == only_red.unit_ids
    # fastest by time is never slower than the shortest by length
    fast = tu.route(g, o, d, weight="time")
    assert fast.time_s <= base.time_s + 1e-6
    # origin on an avoided unit: a clear error
    with pytest.raises(tu.ValidationError, match="must avoid"):
        tu.route(g, o, d, forbidden=[a])


# -- property: on random one-way grids the route is as short as networkx finds ---------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _grid(n: int, oneway: list[int]) -> tuple[gpd.GeoDataFrame, list[tuple]]:
    """n x n junctions 100 m apart; each street piece two-way (0), one-way as drawn (1) or
    reversed (2, drawn the other way). Returns the roads and (a, b, oneway) per piece."""
    pieces = []
    for i in range(n):
        for j in range(n - 1):
            pieces.append(((j * 100.0, i * 100.0), ((j + 1) * 100.0, i * 100.0)))
            pieces.append(((i * 100.0, j * 100.0), (i * 100.0, (j + 1) * 100.0)))
    coords, flags, edges = [], [], []
    for (a, b), f in zip(pieces, oneway, strict=False):
        if f == 2:
            a, b = b, a
        coords.append([a, b])
        flags.append("yes" if f else "no")
        edges.append((a, b, bool(f)))
    names = [f"s{k}" for k in range(len(coords))]  # distinct names: no chaining across junctions
    return lines_gdf(coords, name=names, oneway=flags), edges


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    flags=st.lists(st.integers(0, 2), min_size=24, max_size=24),
    pick=st.tuples(st.integers(0, 23), st.integers(0, 23)),
    f0=st.floats(0.1, 0.9),
    f1=st.floats(0.1, 0.9),
)
def test_route_length_equals_networkx_on_random_one_way_grids(flags, pick, f0, f1) -> None:
    import networkx as nx

    roads, edges = _grid(4, flags)
    units = tu.build_units(roads, max_length_m=1000, progress=False)
    g = UnitGraph(units)
    a_edge, b_edge = edges[pick[0]], edges[pick[1]]

    def at(e, f):  # a point a fraction f along a street piece, in EPSG:3067
        (x0, y0), (x1, y1), _ = e
        return (x0 + f * (x1 - x0), y0 + f * (y1 - y0))

    o, d = at(a_edge, f0), at(b_edge, f1)
    # the oracle: a directed graph of the pieces with the two points spliced in
    G = nx.DiGraph()
    for k, (p, q, one) in enumerate(edges):
        extra = []
        if k == pick[0]:
            extra.append((f0, "O"))
        if k == pick[1]:
            extra.append((f1, "D"))
        # origin first on a tie: the same place is 0 m away, whatever the direction
        chain = [(0.0, p)] + sorted(extra, key=lambda x: (x[0], x[1] != "O")) + [(1.0, q)]
        for (fa, na), (fb, nb) in zip(chain[:-1], chain[1:], strict=True):
            w = (fb - fa) * 100.0
            G.add_edge(na, nb, weight=w)
            if not one:
                G.add_edge(nb, na, weight=w)
    try:
        want = nx.shortest_path_length(G, "O", "D", weight="weight")
    except nx.NetworkXNoPath:
        with pytest.raises(tu.ValidationError, match="no route"):
            tu.route(g, o, d, crs=3067)
        return
    got = tu.route(g, o, d, crs=3067)
    assert got.length_m == pytest.approx(want, abs=0.5)
    assert check_route(g, got.unit_ids).ok


def wide_junction_route(
    units: gpd.GeoDataFrame, g: UnitGraph
) -> tuple[tu.routing.Route, int, int, int]:
    """The fastest route from the middle of the segment that stops farthest from the centre of
    its intersection (one-way into it) to the middle of a segment leaving that intersection:
    (route, entering segment row, intersection node, leaving segment row)."""
    segs = np.flatnonzero(g.is_seg & ~g.internal & (g.to_node >= 0) & (g.to_node < g.n_int))
    s = int(segs[np.argmax(np.where(g.backward_ok[segs], 0.0, g.approach_to[segs]))])
    node = int(g.to_node[s])
    out = np.flatnonzero((g.from_node == node) & g.is_seg & ~g.internal & (g.approach_from > 1))
    t = int(out[0])
    metric = units.to_crs(g.crs).geometry
    pa = metric.iloc[s].interpolate(0.5, normalized=True)
    pb = metric.iloc[t].interpolate(0.5, normalized=True)
    return tu.route(g, pa, pb, crs=g.crs, weight="time"), s, node, t


def test_crossing_a_junction_costs_the_way_through_its_centre() -> None:
    """A segment ending at a consolidated junction stops short of its centre: the route pays
    the way in and out (length and time), not a free jump from one segment end to the next."""
    units = tu.build_units(
        tu.read_network(shared_path("osm", "oslo-east.osm.pbf")), max_length_m=200
    )
    g = UnitGraph(units)
    ints = units.to_crs(g.crs).geometry
    # each approach is the distance from the segment's end vertex to its intersection's point
    segs = np.flatnonzero(g.is_seg & ~g.internal & (g.to_node >= 0) & (g.to_node < g.n_int))
    ends = shapely.get_point(g.index.geoms[segs], -1)
    centre = ints.to_numpy()[g.node_unit[g.to_node[segs]]]
    assert np.allclose(g.approach_to[segs], shapely.distance(ends, centre), atol=1e-6)
    w = g.edge_weights("length")
    assert np.allclose(w, g.length + g.approach_from + g.approach_to)
    # a wide junction: a route entering on one segment and leaving on another
    r, s, node, t = wide_junction_route(units, g)
    assert g.approach_to[s] > 5 and g.approach_from[t] > 1
    assert r.unit_ids == [g.ids[s], g.ids[g.node_unit[node]], g.ids[t]]
    v = g.speed_kmh()[0] / 3.6
    ls, lt = g.length[s] / 2, g.length[t] / 2
    want = (ls + g.approach_to[s]) / v[s] + (g.approach_from[t] + lt) / v[t]
    assert r.time_s == pytest.approx(want, rel=1e-6)
    assert r.time_s > ls / v[s] + lt / v[t] + 1.0
    # the driven line crosses the junction straight from one end to the other
    gap = shapely.distance(
        shapely.get_point(g.index.geoms[s], -1), shapely.get_point(g.index.geoms[t], 0)
    )
    assert r.length_m == pytest.approx(ls + gap + lt, abs=0.5)
