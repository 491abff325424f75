"""Joining events to units: the rules, summaries, real data, the CLI verb."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import trafficunit as tu
from trafficunit import TrafficUnitWarning, ValidationError
from trafficunit.join import UnitIndex, active_at, active_between, epdo_weights, names_match
from trafficunit.presets import PRESETS
from trafficunit.settings import JoinSettings

from .conftest import shared_path

CRS = "EPSG:3067"


def make_units(
    segments: Sequence[tuple[str, Sequence[tuple[float, float]], str | None, str]],
    intersections: Sequence[tuple[str, tuple[float, float], float, str | None]] = (),
    crs: str = CRS,
) -> gpd.GeoDataFrame:
    """Units per the contract: (id, coords, name, road_class) and (id, xy, radius_m, name)."""
    rows: list[dict[str, Any]] = []
    for uid, coords, name, cls in segments:
        line = shapely.LineString(coords)
        rows.append(
            {
                "unit_id": uid,
                "kind": "segment",
                "length_m": line.length,
                "radius_m": np.nan,
                "name": name,
                "road_class": cls,
                "geometry": line,
            }
        )
    for uid, xy, radius, name in intersections:
        rows.append(
            {
                "unit_id": uid,
                "kind": "intersection",
                "length_m": 0.0,
                "radius_m": radius,
                "name": name,
                "road_class": "residential",
                "geometry": shapely.Point(xy),
            }
        )
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=crs).set_index("unit_id")


def make_events(points: list[tuple[float, float]], crs: str = CRS, **cols: Any) -> gpd.GeoDataFrame:
    data = {"event_id": [str(i) for i in range(len(points))], "kind": "accident"}
    data.update(cols)
    return gpd.GeoDataFrame(data, geometry=[shapely.Point(p) for p in points], crs=crs)


@pytest.fixture
def cross() -> gpd.GeoDataFrame:
    """A + junction at (0, 0): four 200 m arms and the intersection (radius 20 m)."""
    return make_units(
        [
            ("S_E", [(0, 0), (200, 0)], "Main St", "primary"),
            ("S_W", [(0, 0), (-200, 0)], "Main St", "primary"),
            ("S_N", [(0, 0), (0, 200)], "Cross Rd", "residential"),
            ("S_S", [(0, 0), (0, -200)], "Cross Rd", "residential"),
        ],
        [("I_0", (0, 0), 20.0, "Cross Rd;Main St")],
    )


# ------------------------------------------------------------------------------------------
# point rules


def test_nearest_within_distance_with_measure_and_statuses(cross: gpd.GeoDataFrame) -> None:
    ev = make_events([(120, 6), (150, -30), (-80, 0.5), (1000, 1000), (60, 60)])
    j = tu.assign(cross, ev, max_distance_m=25)
    assert j["unit_id"].tolist()[:3] == ["S_E", pd.NA, "S_W"]
    assert j["match"].tolist() == ["matched", "too_far", "matched", "outside", "too_far"]
    assert j["distance_m"].iloc[0] == pytest.approx(6.0)
    assert j["measure_m"].iloc[0] == pytest.approx(120.0)
    assert j["measure_m"].iloc[2] == pytest.approx(80.0)  # along S_W from its start (0, 0)
    assert j["distance_m"].iloc[1] == pytest.approx(30.0)  # to the nearest unit, for diagnosis
    assert np.isnan(j["distance_m"].iloc[3])
    rep = j.attrs["report"]
    assert rep["by_match"] == {"matched": 2, "intersection": 0, "too_far": 2, "outside": 1}
    assert rep["matched_share_inside"] == pytest.approx(0.5)


def test_intersection_disc_takes_precedence(cross: gpd.GeoDataFrame) -> None:
    ev = make_events([(12, 3), (25, 3)])
    j = tu.assign(cross, ev, max_distance_m=25)
    assert j["unit_id"].tolist() == ["I_0", "S_E"]
    assert j["match"].tolist() == ["intersection", "matched"]
    assert j["distance_m"].iloc[0] == pytest.approx(np.hypot(12, 3))
    assert j["measure_m"].iloc[0] == 0.0
    plain = tu.assign(cross, ev, max_distance_m=25, intersection_precedence=False)
    assert plain["unit_id"].tolist() == ["S_E", "S_E"]


def test_ties_are_deterministic_whatever_the_row_order() -> None:
    units = make_units(
        [
            ("S_b", [(0, 10), (100, 10)], None, "residential"),
            ("S_a", [(0, -10), (100, -10)], None, "residential"),
        ]
    )
    ev = make_events([(50, 0)])
    first = tu.assign(units, ev)["unit_id"].iloc[0]
    again = tu.assign(units.iloc[::-1], ev)["unit_id"].iloc[0]
    assert first == again == "S_a"


def test_grade_separation_name_wins_over_a_nearer_bridge() -> None:
    units = make_units(
        [
            ("S_bridge", [(0, 0), (200, 0)], "Bridge Road", "primary"),
            ("S_under", [(100, -100), (100, 100)], "Under Street", "residential"),
        ]
    )
    # 3 m from the bridge deck, 8 m from the street below
    ev = make_events(
        [(108, 3), (108, 3), (108, 3), (150, 3)],
        road_name=["UNDER ST 12", "Some Other Rd", None, "UNDER ST"],
    )
    j = tu.assign(units, ev, max_distance_m=25)
    assert j["unit_id"].tolist() == ["S_under", "S_bridge", "S_bridge", "S_bridge"]
    assert j["distance_m"].iloc[0] == pytest.approx(8.0)
    assert j.attrs["report"]["name_overrode_nearest"] == 1
    # the street below is 50 m away from the last crash: beyond the distance and the 15 m a
    # named street may reach farther, no override
    plain = tu.assign(units, ev, max_distance_m=25, name_aware=False)
    assert plain["unit_id"].iloc[0] == "S_bridge"


def test_a_named_street_is_reached_a_documented_extra_distance() -> None:
    units = make_units(
        [
            ("S_named", [(0, 0), (200, 0)], "Kaivokatu", "primary"),
            ("S_other", [(0, 40), (200, 40)], "Vilhonkatu", "residential"),
        ]
    )
    # 30 m and 38 m from Kaivokatu (beyond 25 m), 10 m and 2 m from Vilhonkatu
    ev = make_events([(50, 30), (60, 38), (70, 30)], road_name=["KAIVOKATU 8", "Kaivokatu", None])
    j = tu.assign(units, ev, max_distance_m=25)
    # 30 m and 38 m are within 25 + 15 m: the street the event names
    assert j["unit_id"].tolist() == ["S_named", "S_named", "S_other"]
    assert j["distance_m"].iloc[0] == pytest.approx(30.0)
    tight = tu.assign(units, ev, max_distance_m=25, settings=JoinSettings(name_extra_distance_m=5))
    # within 25 + 5 = 30 m only the first reaches its street; the second takes the other one
    assert tight["unit_id"].tolist() == ["S_named", "S_other", "S_other"]
    off = tu.assign(units, ev, max_distance_m=25, settings=JoinSettings(name_extra_distance_m=0))
    assert off["unit_id"].tolist() == ["S_other", "S_other", "S_other"]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("SE 122ND AVE", "Southeast 122nd Avenue", True),
        ("HUOPALAHDENTIE X TURUNVÄYLÄ", "Turunväylä", True),
        ("5TH AVE", "Fifth Avenue", True),
        ("ETELÄ ESPLANADI 10", "Eteläesplanadi", True),
        ("LÖNROTHINKATU 1", "Lönnrotinkatu", True),
        ("深南大道", "深南大道", True),
        ("BROAD ST US 40.0", "West Broad Street", True),
        ("4TH ST", "5th Street", False),
        ("Liisankatu", "Liisankuja", False),
        ("Mannerheimintie", "Runeberginkatu", False),
    ],
)
def test_names_match(a: str, b: str, same: bool) -> None:
    assert names_match(a, b) is same


def test_distances_by_kind_and_road_class() -> None:
    units = make_units(
        [
            ("S_m", [(0, 0), (1000, 0)], None, "motorway"),
            ("S_r", [(0, 500), (1000, 500)], None, "residential"),
        ]
    )
    ev = make_events([(100, 35), (100, 518), (100, 22)])
    j = tu.assign(units, ev, max_distance_m={"motorway": 40, "default": 15})
    assert j["unit_id"].tolist() == ["S_m", pd.NA, "S_m"]
    # by kind (settings): hazards snap within 20 m, accidents within 25 m
    hz = ev.assign(kind=["hazard", "accident", "hazard"])
    j = tu.assign(units, hz)
    assert j["match"].tolist() == ["too_far", "matched", "too_far"]
    cfg = JoinSettings(max_distance_m_by_class={"hazard": {"motorway": 40.0}})
    j = tu.assign(units, hz, settings=cfg)
    assert j["unit_id"].tolist() == ["S_m", "S_r", "S_m"]


def test_crs_contract_and_inputs_untouched(cross: gpd.GeoDataFrame) -> None:
    ev = make_events([(120, 6), (-80, 0.5)]).to_crs(4326)
    before_ev, before_units = ev.copy(), cross.copy()
    j = tu.assign(cross, ev)
    assert j.crs == ev.crs and j["unit_id"].tolist() == ["S_E", "S_W"]
    assert j["distance_m"].iloc[0] == pytest.approx(6.0, abs=0.05)
    pd.testing.assert_frame_equal(ev, before_ev)
    pd.testing.assert_frame_equal(cross, before_units)
    assert list(j.columns[-5:]) == ["unit_id", "distance_m", "measure_m", "match", "overlap_m"]


def test_unit_index_reuse_and_validation(cross: gpd.GeoDataFrame) -> None:
    ix = UnitIndex(cross)
    ev = make_events([(120, 6)])
    assert tu.assign(ix, ev)["unit_id"].iloc[0] == "S_E"
    with pytest.raises(ValidationError, match="unknown kind"):
        tu.assign(ix, ev.assign(kind="crash"))
    dup = pd.concat([cross, cross.iloc[:1]])
    with pytest.raises(ValidationError, match="duplicate unit_id"):
        UnitIndex(dup)


lines_st = st.lists(
    st.tuples(
        st.floats(0, 1000), st.floats(0, 1000), st.floats(-300, 300), st.floats(-300, 300)
    ).filter(lambda t: abs(t[2]) + abs(t[3]) > 1),
    min_size=1,
    max_size=25,
)
points_st = st.lists(
    st.tuples(st.floats(-100, 1100), st.floats(-100, 1100)), min_size=1, max_size=40
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=lines_st, points=points_st, dmax=st.floats(1, 60))
def test_matches_brute_force(
    lines: list[tuple[float, float, float, float]], points: list[tuple[float, float]], dmax: float
) -> None:
    segs = [
        (f"S{i:03d}", [(x, y), (x + dx / 2, y + dy / 3), (x + dx, y + dy)], None, "residential")
        for i, (x, y, dx, dy) in enumerate(lines)
    ]
    units = make_units(segs)
    ev = make_events(points)
    j = tu.assign(units, ev, max_distance_m=dmax)
    geoms = units.geometry.to_numpy()
    for k, p in enumerate(ev.geometry):
        d = shapely.distance(p, geoms)
        best = d.min()
        row = j.iloc[k]
        if abs(best - dmax) < 1e-6:
            continue  # on the boundary both answers are right to float precision
        if best <= dmax:
            assert row["match"] == "matched"
            assert row["distance_m"] == pytest.approx(best, abs=1e-6)
            chosen = units.index.get_loc(row["unit_id"])
            assert d[chosen] == pytest.approx(best, abs=1e-6)
            ties = units.index[np.round(d, 6) == np.round(best, 6)]
            assert row["unit_id"] == min(ties)
            assert row["measure_m"] == pytest.approx(
                shapely.line_locate_point(geoms[chosen], p), abs=1e-6
            )
        else:
            assert row["match"] in ("too_far", "outside") and pd.isna(row["unit_id"])


# ------------------------------------------------------------------------------------------
# lines, polygons, time windows


def test_line_event_touches_the_units_it_runs_along(cross: gpd.GeoDataFrame) -> None:
    # a work zone drawn 3 m beside Main St from x=-50 to x=120, through the junction
    wz = gpd.GeoDataFrame(
        {"event_id": ["w1"], "kind": ["workzone"]},
        geometry=[shapely.LineString([(-50, 3), (120, 3)])],
        crs=CRS,
    )
    j = tu.assign(cross, wz)
    got = dict(zip(j["unit_id"], j["overlap_m"], strict=True))
    assert set(got) == {"I_0", "S_E", "S_W"}  # not the cross street it only touches
    assert got["S_E"] == pytest.approx(120.0, abs=0.5)
    assert got["S_W"] == pytest.approx(50.0, abs=0.5)
    assert j.set_index("unit_id").loc["I_0", "match"] == "intersection"
    assert (j["event_id"] == "w1").all()


def test_polygon_event_overlap_is_length_inside(cross: gpd.GeoDataFrame) -> None:
    hz = gpd.GeoDataFrame(
        {"event_id": ["h1"], "kind": ["hazard"]},
        geometry=[shapely.box(50, -10, 90, 10)],
        crs=CRS,
    )
    j = tu.assign(cross, hz, settings=JoinSettings(polygon_tolerance_m=0.0))
    assert j["unit_id"].tolist() == ["S_E"]
    assert j["overlap_m"].iloc[0] == pytest.approx(40.0)
    assert j["measure_m"].iloc[0] == pytest.approx(50.0)
    far = hz.assign(geometry=[shapely.box(5000, 5000, 5010, 5010)])
    j = tu.assign(cross, far)
    assert j["match"].tolist() == ["outside"] and pd.isna(j["unit_id"].iloc[0])


def test_active_at_and_between() -> None:
    t = pd.to_datetime(pd.Series(["2018-06-01", "2018-06-10", None, "2018-06-03"]), utc=True)
    e = pd.to_datetime(pd.Series(["2018-06-05", "2018-06-20", "2018-06-04", None]), utc=True)
    wz = pd.DataFrame({"site": list("abcd"), "start": t, "end": e})
    assert active_at(wz, "2018-06-03")["site"].tolist() == ["a", "c", "d"]
    assert active_at(wz, "2018-06-07")["site"].tolist() == ["d"]
    assert active_between(wz, "2018-06-06", "2018-06-11")["site"].tolist() == ["b", "d"]
    with pytest.raises(ValidationError):
        active_between(wz, "2018-06-11", "2018-06-01")


# ------------------------------------------------------------------------------------------
# summaries


def test_summarize_counts_epdo_rates_hazards_and_work_zones(cross: gpd.GeoDataFrame) -> None:
    acc = make_events(
        [(120, 1), (130, 1), (140, 1), (5, 5), (-100, 2)],
        severity=["K", "B", "O", "A", "C"],
        year=pd.array([2020, 2021, 2021, 2022, 2021], dtype="Int64"),
    )
    hz = make_events([(150, 1), (160, 1), (-150, 1)]).assign(
        kind="hazard",
        event_id=["h1", "h2", "h3"],
        status=["reported", "closed", None],
        grade=["major", "major", "general"],
    )
    wz = make_events([(170, 1), (-170, 1)]).assign(
        kind="workzone",
        event_id=["w1", "w2"],
        start=pd.to_datetime(["2024-01-01", "2024-03-01"]).tz_localize("UTC"),
        end=pd.to_datetime(["2024-02-01", "2024-04-01"]).tz_localize("UTC"),
    )
    joined = pd.concat(
        [tu.assign(cross, acc), tu.assign(cross, hz), tu.assign(cross, wz)], ignore_index=True
    )
    s = tu.summarize(cross, joined, at="2024-01-15")
    e = s.loc["S_E"]
    assert (e["crashes"], e["K"], e["B"], e["O"]) == (3, 1, 1, 1)
    assert e["epdo"] == 542 + 11 + 1
    assert e["years"] == 3  # 2020-2022
    assert e["crashes_per_km"] == pytest.approx(3 / 0.2)
    assert e["crashes_per_km_year"] == pytest.approx(3 / 0.2 / 3)
    assert e["epdo_per_km"] == pytest.approx(554 / 0.2)
    assert (e["first_year"], e["last_year"]) == (2020, 2021)
    assert (e["hazards"], e["open_hazards"], e["open_major_hazards"]) == (2, 1, 1)
    assert (e["workzones"], e["active_workzones"]) == (1, 1)
    i0 = s.loc["I_0"]
    assert (i0["crashes"], i0["A"], i0["epdo"]) == (1, 1, 29)
    assert np.isnan(i0["crashes_per_km"])  # intersections have no length
    w = s.loc["S_W"]
    assert (w["C"], w["open_hazards"], w["active_workzones"]) == (1, 1, 0)
    assert s["crashes"].sum() == 5 and s.attrs["epdo_weights"]["K"] == 542
    # weights are data with versions, or the caller's own
    s2 = tu.summarize(cross, joined, weights="fatal-injury-pdo")
    assert s2.loc["I_0", "epdo"] == 11
    s3 = tu.summarize(cross, joined, weights={"K": 10, "A": 5})
    assert s3.loc["S_E", "epdo"] == 10
    # a period keeps only its accidents (year-only accidents by their year)
    s4 = tu.summarize(cross, joined, period=("2021-01-01", "2022-01-01"))
    assert s4.loc["S_E", "crashes"] == 2 and s4.loc["S_E", "years"] == pytest.approx(1.0, 0.01)
    by_year = tu.join.summarize_by_year(joined)
    assert by_year.loc[("S_E", 2021), "crashes"] == 2
    assert by_year.loc[("S_E", 2021), "epdo"] == 12
    with pytest.raises(ValidationError):
        epdo_weights("hsm-1066")
    # the versioned data and the risk module's constant must not drift apart
    from trafficunit.settings import EPDO_WEIGHTS_HSM

    assert epdo_weights("hsm-2010") == EPDO_WEIGHTS_HSM


# ------------------------------------------------------------------------------------------
# real data


def real_units(network: str) -> gpd.GeoDataFrame:
    path = shared_path(*network.split("/"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrafficUnitWarning)
        return tu.build_units(tu.read_network(path))


def real_events(preset: str) -> gpd.GeoDataFrame:
    path = shared_path(*PRESETS[preset].file.split("/"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrafficUnitWarning)
        return tu.read_events(path, preset=preset)


def names_agree(road_names: pd.Series, unit_names: np.ndarray) -> float:
    """Share of (event street, unit name) pairs naming the same road."""
    pairs = zip(road_names, unit_names, strict=True)
    return float(np.mean([isinstance(b, str) and names_match(a, b) for a, b in pairs]))


@pytest.fixture(scope="module")
def helsinki_units() -> gpd.GeoDataFrame:
    return real_units("osm/helsinki-centre.osm.pbf")


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["helsinki-city", "helsinki-fta"])
def test_real_helsinki_crashes_match_within_25_m(
    helsinki_units: gpd.GeoDataFrame, preset: str
) -> None:
    acc = real_events(preset)
    j = tu.assign(helsinki_units, acc, max_distance_m=25)
    rep = j.attrs["report"]
    # measured: helsinki-city 4,746 of 4,788 inside (99.1%), helsinki-fta 539 of 546 (98.7%)
    assert rep["matched_share_inside"] >= 0.97
    assert rep["by_match"]["matched"] + rep["by_match"]["intersection"] > (
        4_500 if preset == "helsinki-city" else 500
    )
    seg = j["match"] == "matched"
    # within 25 m, or up to 15 m farther on the street the crash report names
    far = seg & (j["distance_m"] > 25)
    assert (j.loc[seg, "distance_m"] <= 25 + 15).all()
    if far.any():
        named = helsinki_units.loc[j.loc[far, "unit_id"], "name"].to_numpy()
        assert names_agree(j.loc[far, "road_name"], named) == 1.0
    ints = j["match"] == "intersection"
    radius = helsinki_units.loc[j.loc[ints, "unit_id"], "radius_m"].to_numpy()
    assert (j.loc[ints, "distance_m"].to_numpy() <= radius + 1e-9).all()
    # matched crashes lie within 25 m of the network (intersection or not)
    tree = shapely.STRtree(helsinki_units.to_crs(rep["metric_crs"]).geometry.to_numpy())
    pts = j.loc[seg | ints].to_crs(rep["metric_crs"]).geometry.to_numpy()
    _, d = tree.query_nearest(pts, return_distance=True, all_matches=False)
    assert np.mean(d <= 25) >= 0.99
    # every crash is in the output, once
    assert len(j) == len(acc) and j["event_id"].is_unique
    if preset == "helsinki-fta":
        # street names: the unit's name agrees with the police's street for >= 90%
        m = j[j["unit_id"].notna() & j["road_name"].notna()]
        names = helsinki_units.loc[m["unit_id"], "name"].to_numpy()
        agree = names_agree(m["road_name"], names)
        assert agree >= 0.9  # measured 0.946
        assert rep["name_overrode_nearest"] > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("preset", "network", "min_share", "min_matched"),
    [
        # measured 0.722 / 867: the corridors run through gaps in the filtered extract
        ("portland", "osm/portland-central.osm.pbf", 0.70, 800),
        # measured 0.826 / 2,281: partial coverage
        ("columbus", "osm/columbus.osm.pbf", 0.80, 2_200),
        # measured 0.9375 / 165 of 176
        ("london-stats19", "osm/london-city.osm.pbf", 0.90, 150),
    ],
)
def test_real_crash_tables(preset: str, network: str, min_share: float, min_matched: int) -> None:
    units = real_units(network)
    acc = real_events(preset)
    j = tu.assign(units, acc)
    rep = j.attrs["report"]
    assert rep["matched_share_inside"] >= min_share
    assert rep["matched"] >= min_matched
    if preset != "london-stats19":
        # unmatched crashes inside the area lie in gaps of the extract, far from any road
        far = j.loc[j["match"] == "too_far", "distance_m"]
        assert far.median() > 100
        m = j[j["unit_id"].notna() & j["road_name"].notna()]
        names = units.loc[m["unit_id"], "name"].to_numpy()
        agree = names_agree(m["road_name"], names)
        assert agree >= 0.85  # measured 0.968 Portland, 0.896 Columbus
    s = tu.summarize(units, j)
    assert s["crashes"].sum() == rep["matched"]


def test_real_boston_safety_reports_as_hazards() -> None:
    units = real_units("osm/boston.osm.pbf")
    hz = real_events("boston-safety-reports")
    j = tu.assign(units, hz)
    rep = j.attrs["report"]
    # the Boston extract is small: 78 reports match, 9 inside it do not (measured)
    assert rep["matched"] >= 70 and rep["matched_share_inside"] >= 0.85
    assert (j.loc[j["match"] == "matched", "distance_m"] <= 20).all()  # hazards: 20 m
    s = tu.summarize(units, j, at="2017-06-01")
    assert s["open_hazards"].sum() == rep["matched"]  # all "Unassigned", none closed
    assert s["crashes"].sum() == 0


def test_real_ashford_work_zones_on_their_own_lines() -> None:
    wz = real_events("ashford-roadworks")
    lines = wz[wz.geom_type == "LineString"].to_crs(27700)
    # units drawn along the permits' own lines: every line work zone must touch its own unit
    units = make_units(
        [(f"S{i:04d}", list(g.coords), None, "residential") for i, g in enumerate(lines.geometry)],
        crs="EPSG:27700",
    )
    j = tu.assign(units, wz.loc[lines.index])
    own = j[j["unit_id"].str.slice(1).astype(float) == j.groupby("event_id").ngroup()]
    assert own["event_id"].nunique() == len(lines)
    share = own["overlap_m"].to_numpy() / units.loc[own["unit_id"], "length_m"].to_numpy()
    simple = units.loc[own["unit_id"]].is_simple.to_numpy()
    assert np.allclose(share[simple], 1.0, rtol=0.02)
    # lines that double back on themselves: overlap is the extent along the event
    assert (share[~simple] > 0.5).all() and (share[~simple] <= 1.0 + 1e-9).all()
    active = active_at(j, pd.Timestamp("2018-06-15 12:00", tz="Europe/London"))
    assert 0 < active["event_id"].nunique() < len(lines)


def test_cli_join_with_preset(tmp_path: Path) -> None:
    from trafficunit.cli import app

    net = shared_path("osm", "helsinki-centre.osm.pbf")
    events = shared_path("crashes", "helsinki-fta-2011-2016.csv")
    out = tmp_path / "joined.parquet"
    per_unit = tmp_path / "per_unit.parquet"
    res = CliRunner().invoke(
        app,
        [
            "join",
            str(net),
            str(events),
            "--preset",
            "helsinki-fta",
            "-o",
            str(out),
            "--per-unit",
            str(per_unit),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "matched" in res.output and "98.7% of those inside" in res.output
    joined = gpd.read_parquet(out)
    assert len(joined) == 10_075 and joined["unit_id"].notna().sum() == 539
    assert tu.read_table(per_unit)["crashes"].sum() == 539
    bad = CliRunner().invoke(
        app, ["join", str(net), str(events), "--kind", "accident", "-o", str(out)]
    )
    assert bad.exit_code == 2 and "no position given" in bad.output


def test_cli_join_explicit_columns(tmp_path: Path) -> None:
    from trafficunit.cli import app

    x0, y0 = 385_000, 6_672_000  # Helsinki in EPSG:3067
    units = make_units([("S_1", [(x0, y0), (x0 + 200, y0)], "Main St", "primary")])
    upath = tmp_path / "units.parquet"
    tu.write_table(units, upath)
    csv = tmp_path / "c.csv"
    csv.write_text(
        f"E;N;V;Y\n{x0 + 100},5;{y0 + 4};1;2020\n{x0 + 50};{y0 + 300};3;2021\n", encoding="utf-8"
    )
    out = tmp_path / "j.gpkg"
    res = CliRunner().invoke(
        app,
        [
            "join",
            str(upath),
            str(csv),
            "--kind",
            "accident",
            "--x",
            "E",
            "--y",
            "N",
            "--crs",
            "3067",
            "--severity",
            "V",
            "--severity-map",
            "1=O,2=B,3=K",
            "--time",
            "Y",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    j = gpd.read_file(out)
    assert j["unit_id"].tolist()[0] == "S_1" and j["severity"].tolist() == ["O", "K"]
    assert j["match"].tolist() == ["matched", "outside"]
