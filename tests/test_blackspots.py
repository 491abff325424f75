"""Roads, sliding windows, black spots and peak searching, worked out by hand.

Main St positions (tests/_risk_net.py): S1 [0, 300], IA at 300, S2 [300, 600], S3 [600, 1000]
traversed against its drawing direction, so an accident 100 m along S3 sits at 900 m.
The accidents of SPEC: K at 100, O at 110, A at 300 (IA), B at 350, B at 360, C at 370, O at 900.
"""

from __future__ import annotations

import warnings
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, Point

import trafficunit as tu
from trafficunit import blackspots as bs
from trafficunit.blackspots import BlackSpotProfile, Criterion
from trafficunit.settings import RiskSettings

from ._risk_net import SPEC, crashes, make_units, network

# -- roads ----------------------------------------------------------------------------------------


def test_road_chains_follow_names_through_intersections() -> None:
    ch = bs.road_chains(network())
    main = ch.loc[ch["road"] == "Main St"]
    assert main["unit_id"].tolist() == ["S1", "IA", "S2", "S3"]
    assert main["start_m"].tolist() == pytest.approx([0, 300, 300, 600])
    assert main["end_m"].tolist() == pytest.approx([300, 300, 600, 1000])
    assert main["reversed"].tolist() == [False, False, False, True]
    assert main["chain_length_m"].iloc[0] == pytest.approx(1000)
    side = ch.loc[ch["road"] == "Side Rd"]
    assert set(side["unit_id"]) == {"S4", "IA", "S5"}
    assert side.loc[side["unit_id"] == "IA", "start_m"].item() == pytest.approx(300)
    assert ch["chain_id"].nunique() == 2


def _oneway(
    uid: str,
    a: tuple[float, float],
    b: tuple[float, float],
    fu: str | None,
    tu_: str | None,
    name: str = "Dual",
) -> tuple[object, ...]:
    return (uid, "segment", LineString([a, b]), name, "forward", fu, tu_, "primary")


def test_junction_crossings_count_in_the_running_distance() -> None:
    # a consolidated junction 20 m across: Main St enters at x=100 and leaves at x=120
    units = make_units(
        [
            (
                "A",
                "segment",
                LineString([(0, 0), (100, 0)]),
                "Main St",
                "both",
                None,
                "J",
                "primary",
            ),
            (
                "B",
                "segment",
                LineString([(120, 0), (220, 0)]),
                "Main St",
                "both",
                "J",
                None,
                "primary",
            ),
            ("J", "intersection", Point(110, 0), "Main St", None, None, None, "primary"),
        ]
    )
    ch = bs.road_chains(units).set_index("unit_id")
    assert ch.loc["B", "start_m"] == pytest.approx(120)
    assert ch.loc["J", "start_m"] == pytest.approx(110)  # the middle of the crossing
    assert ch["chain_length_m"].iloc[0] == pytest.approx(220)


def test_one_way_carriageways_meeting_head_on_are_not_one_road() -> None:
    node = ("I", "intersection", Point(100, 0), "Dual", None, None, None, "primary")
    # both drawn (and driven) into I: two roads
    head_on = make_units(
        [
            _oneway("D1", (0, 0), (100, 0), None, "I"),
            _oneway("D2", (200, 0), (100, 0), None, "I"),
            node,
        ]
    )
    assert bs.road_chains(head_on)["chain_id"].nunique() == 2
    # one in, one out, straight on: one road of 200 m
    through = make_units(
        [
            _oneway("D1", (0, 0), (100, 0), None, "I"),
            _oneway("D2", (100, 0), (200, 0), "I", None),
            node,
        ]
    )
    ch = bs.road_chains(through)
    assert ch["chain_id"].nunique() == 1 and ch["chain_length_m"].iloc[0] == pytest.approx(200)
    # in on one carriageway, back out on the other (a U-turn): two roads
    u_turn = make_units(
        [
            _oneway("D1", (0, 0), (100, 0), None, "I"),
            _oneway("D3", (100, 0), (0, 5), "I", None),
            node,
        ]
    )
    assert bs.road_chains(u_turn)["chain_id"].nunique() == 2


def test_straightest_pair_wins_where_three_same_named_ends_meet() -> None:
    units = make_units(
        [
            ("A", "segment", LineString([(-100, 0), (0, 0)]), "X St", "both", None, "I", "primary"),
            ("B", "segment", LineString([(0, 0), (100, 0)]), "X St", "both", "I", None, "primary"),
            ("C", "segment", LineString([(0, 0), (70, 70)]), "X St", "both", "I", None, "primary"),
            ("I", "intersection", Point(0, 0), "X St", None, None, None, "primary"),
        ]
    )
    ch = bs.road_chains(units)
    seg = ch.loc[ch["kind"] == "segment"]
    by_unit = seg.set_index("unit_id")["chain_id"]
    assert by_unit["A"] == by_unit["B"] != by_unit["C"]


def test_a_ring_road_becomes_one_chain() -> None:
    pts = [(0, 0), (100, 0), (100, 100), (0, 100)]
    rows = [
        (
            f"R{i}",
            "segment",
            LineString([pts[i], pts[(i + 1) % 4]]),
            "Ring",
            "both",
            f"R{(i - 1) % 4}",
            f"R{(i + 1) % 4}",
            "primary",
        )
        for i in range(4)
    ]
    ch = bs.road_chains(make_units(rows))
    assert ch["chain_id"].nunique() == 1
    assert ch["chain_length_m"].iloc[0] == pytest.approx(400)
    assert sorted(ch["start_m"].round(6).tolist()) == [0, 100, 200, 300]


# -- sliding windows ------------------------------------------------------------------------------


def test_sliding_window_counts_by_hand() -> None:
    units = network()
    joined = crashes(units, SPEC)
    w = bs.sliding_windows(units, joined, window_m=500, step_m=100)
    main = w.loc[w["road"] == "Main St"].set_index("start_m")
    assert main.index.tolist() == [0, 100, 200, 300, 400, 500]
    assert main["crashes"].tolist() == [6, 6, 4, 4, 1, 1]
    # K + O + A + 2 B + C = 542 + 1 + 29 + 22 + 6
    assert main["epdo"].tolist() == [600, 600, 57, 57, 1, 1]
    assert main.loc[0, "K"] == 1 and main.loc[0, "A"] == 1 and main.loc[400, "O"] == 1
    side = w.loc[w["road"] == "Side Rd"]
    assert side["start_m"].tolist() == [0, 100]
    assert side["A"].tolist() == [1, 1]  # the intersection's accident counts on both roads
    # the last window ends at the road's end: 1000 m, 500 m window, 300 m step -> 0, 300, 500
    w2 = bs.sliding_windows(units, joined, window_m=500, step_m=300)
    assert w2.loc[w2["road"] == "Main St", "start_m"].tolist() == [0, 300, 500]
    # without intersections, IA's accident drops out
    w3 = bs.sliding_windows(units, joined, window_m=500, step_m=100, include_intersections=False)
    assert w3.loc[w3["road"] == "Main St", "crashes"].tolist() == [5, 5, 3, 3, 1, 1]


# -- black spots ----------------------------------------------------------------------------------


def test_default_profile_finds_the_section_by_hand() -> None:
    units = network()
    joined = crashes(units, SPEC)
    # the latest 3 years, but the data starts in 2021: its own 2 years, said and warned
    with pytest.warns(tu.TrafficUnitWarning, match="2.0 years but profile 'default'"):
        spots = tu.find_black_spots(units, joined)
    assert spots.attrs["period"][0].startswith("2021-01-01")
    assert spots.attrs["period_label"] == "2021-01-01–2022-12-31 (the latest 3 years of the data)"
    assert (spots["type"] == "point").sum() == 0
    sec = spots.loc[spots["type"] == "section"]
    assert len(sec) == 1  # [0, 500] and [100, 600] tie; the overlapping one is dropped
    s = sec.iloc[0]
    assert (s["road"], s["start_m"], s["end_m"], s["length_m"]) == ("Main St", 0, 500, 500)
    assert s["unit_ids"] == "S1;IA;S2"
    assert [s[c] for c in ("crashes", "K", "A", "B", "C", "O", "KA")] == [6, 1, 1, 2, 1, 1, 2]
    assert s["epdo"] == 600
    assert s["rule"].startswith("default section: KA >= 2 or KABC >= 5 or crashes >= 10")
    assert "500 m window" in s["rule"] and "2021-01-01–2022-12-31" in s["rule"]
    assert s["spot_id"] == "BS0001"
    assert s.geometry.length == pytest.approx(500)
    assert s.geometry.coords[0] == (0, 0)
    assert s["explanation"].startswith("K 1, A 1, B 2, C 1, O 1")
    assert spots.crs == units.crs


def test_points_take_each_accident_once() -> None:
    units = network()
    # S3 is drawn from x=1000: measure 200 -> x=800, 250 -> 750, 300 -> 700
    spec = [("S3", 200, "A", 2022)] * 3 + [("S3", 250, "A", 2022)] + [("S3", 300, "A", 2022)] * 2
    joined = crashes(units, spec)
    prof = {"name": "test", "criteria": ["KA >= 2"], "point_radius_m": 30.0}
    spots = tu.find_black_spots(units, joined, profile=prof, types=["point"])
    # circles of 30 m: 3 A at 800 (first, worst), 2 A at 700; the lone A at 750 stays out
    assert spots["crashes"].tolist() == [3, 2]
    assert [round(g.x) for g in spots.geometry] == [800, 700]
    assert spots["unit_ids"].tolist() == ["S3", "S3"]
    # a 60 m circle around 750 holds all six accidents: one point
    wide = tu.find_black_spots(
        units, joined, profile={**prof, "point_radius_m": 60.0}, types=["point"]
    )
    assert wide["crashes"].tolist() == [6] and round(wide.geometry.iloc[0].x) == 750
    assert wide["rule"].iloc[0] == (
        # a year of data is reported as that year, not as the profile's 3-year window
        "test point: KA >= 2 within 60 m over 1 year(s) (2022-01-01–2022-12-31)"
    )


def _injury_spec(last: str) -> tuple[list[tuple[Any, ...]], pd.DataFrame]:
    spec: list[tuple[Any, ...]] = [("S2", m, "B", 2022) for m in (10, 20, 30, 40)] + [
        ("S2", 50, last, 2022)
    ]
    cas = pd.DataFrame(
        {
            "deaths": [0] * 5,
            "serious_injuries": [0, 0, 0, 0, 1 if last == "A" else 0],
            "minor_injuries": [1, 1, 1, 1, 0 if last == "A" else 1],
        }
    )
    return spec, cas


def test_portugal_profile_needs_count_and_severity_index() -> None:
    units = network()
    spec, cas = _injury_spec("A")
    joined = crashes(units, spec)
    joined[cas.columns] = cas.to_numpy()
    spots = tu.find_black_spots(units, joined, profile="pt-ansr", types=["section"])
    # 5 injury accidents at 310-350 m; index = 10 x 1 serious + 3 x 4 slight = 22 > 20
    assert len(spots) == 1
    s = spots.iloc[0]
    assert (s["start_m"], s["end_m"]) == (150, 350)  # first of the tied 200 m windows
    assert s["index"] == 22 and s["KA"] == 1
    assert "KABC >= 5 and index > 20" in s["rule"] and "over 1 year(s)" in s["rule"]
    spec, cas = _injury_spec("B")  # index = 3 x 5 = 15: not a black spot
    joined = crashes(units, spec)
    joined[cas.columns] = cas.to_numpy()
    assert len(tu.find_black_spots(units, joined, profile="pt-ansr")) == 0


def test_korean_rural_sections_are_longer() -> None:
    units = network()
    joined = crashes(units, [("S1", 50, "K", 2022), ("S2", 100, "K", 2022), ("S3", 50, "K", 2022)])
    # fatal accidents at 50, 400 and 950 m: no 600 m window holds three
    assert len(tu.find_black_spots(units, joined, profile="kr-molit", types=["section"])) == 0
    rural = units.assign(rural=True)
    spots = tu.find_black_spots(rural, joined, profile="kr-molit", types=["section"])
    assert len(spots) == 1 and spots["length_m"].item() == pytest.approx(1000)
    assert "(1000 m rural)" in spots["rule"].item()


def test_casualty_criteria_without_casualty_columns_warn() -> None:
    units = network()
    joined = crashes(units, SPEC)
    with pytest.warns(tu.TrafficUnitWarning, match="deaths"):
        tu.find_black_spots(units, joined, profile="in-morth")


def test_profiles_and_user_defined_rules() -> None:
    assert set(bs.PROFILES) >= {"default", "kr-molit", "in-morth", "pt-ansr"}
    assert str(bs.parse_criterion("index > 20")) == "index > 20"
    mine = BlackSpotProfile(name="mine", criteria=(Criterion("crashes", 3),), window_m=300)
    bs.register_profile(mine)
    units = network()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tu.TrafficUnitWarning)
        spots = tu.find_black_spots(units, crashes(units, SPEC), profile="mine")
    assert (spots["type"] == "section").sum() >= 1
    with pytest.raises(tu.ValidationError, match="unknown black-spot profile"):
        tu.find_black_spots(units, crashes(units, SPEC), profile="nope")
    with pytest.raises(tu.ValidationError, match="unknown criterion field"):
        bs.get_profile({"criteria": ["X >= 1"]})
    with pytest.raises(tu.ValidationError, match="cannot read criterion"):
        bs.parse_criterion("KA at least 3")


# -- peak searching -------------------------------------------------------------------------------


def test_peak_search_by_hand() -> None:
    units = network()
    per_100m = pd.Series({"S1": 1.0, "S2": 10.0, "S3": 1.0, "S4": 0.0, "S5": 0.0})
    length = units["length_m"]
    expected = (per_100m * length.reindex(per_100m.index) / 100).reindex(units.index)
    expected["IA"] = 5.0
    predicted = (length / 100).where(units.index.isin(["S1", "S2", "S3"]), 0.0)
    risk = pd.DataFrame(
        {"eb_expected": expected, "eb_predicted": predicted, "eb_variance": 0.5 * expected}
    )
    peaks = bs.peak_search(units, risk, window_m=100, max_cv=0.25).set_index("road")
    main = peaks.loc["Main St"]
    # [300, 400]: IA 5 + 10 along S2 = 15 expected, 1 predicted, CV = sqrt(7.5) / 15
    assert (main["start_m"], main["end_m"]) == (300, 400)
    assert main["expected"] == pytest.approx(15.0)
    assert main["excess"] == pytest.approx(14.0)
    assert main["cv"] == pytest.approx(np.sqrt(7.5) / 15)
    assert bool(main["cv_ok"])
    side = peaks.loc["Side Rd"]  # only IA's 5: CV 0.32 at every size -> whole road, not ok
    assert (side["start_m"], side["end_m"], bool(side["cv_ok"])) == (0, 600, False)
    assert side["expected"] == pytest.approx(5.0)


def test_peak_search_needs_eb_columns() -> None:
    with pytest.raises(tu.ValidationError, match="tu.score"):
        bs.peak_search(network(), pd.DataFrame({"epdo": [1.0]}))


def test_black_spots_keep_input_untouched() -> None:
    units = network()
    joined = crashes(units, SPEC)
    u0, j0 = units.copy(), joined.copy()
    tu.find_black_spots(units, joined)
    pd.testing.assert_frame_equal(units, u0)
    pd.testing.assert_frame_equal(joined, j0)
    assert isinstance(joined, gpd.GeoDataFrame)


def test_an_accident_counts_in_one_section_of_a_ranking() -> None:
    units = network()
    # three accidents in junction IA, one on Side Rd (S4, 10 m north of IA)
    joined = crashes(units, [("IA", 0, "O", 2022)] * 3 + [("S4", 10, "O", 2022)])
    prof = {"name": "test", "criteria": ["crashes >= 3"]}
    # every window through IA has 3 or 4 accidents: Main St and Side Rd both qualify
    w = bs.sliding_windows(units, joined, window_m=500, step_m=100)
    assert (w.groupby("road")["crashes"].max() >= 3).all()
    spots = tu.find_black_spots(units, joined, profile=prof, types=["section"])
    # Side Rd is the worse (4); its section takes IA's accidents, Main St keeps none
    assert spots["road"].tolist() == ["Side Rd"]
    s = spots.iloc[0]
    assert (s["crashes"], s["segment_crashes"], s["junction_crashes"]) == (4, 1, 3)
    assert sorted(s["event_ids"].split(";")) == ["e0", "e1", "e2", "e3"]
    # with the junction's accidents counted once, Main St's remaining windows fail the rule
    main_alone = tu.find_black_spots(
        units, crashes(units, [("IA", 0, "O", 2022)] * 3), profile=prof, types=["section"]
    )
    assert len(main_alone) == 1 and main_alone["junction_crashes"].tolist() == [3]


def test_points_and_sections_show_the_accidents_they_share() -> None:
    units = network()
    joined = crashes(units, [("S2", 50, "O", 2022)] * 3 + [("S2", 250, "O", 2022)] * 2)
    prof = {"name": "test", "criteria": ["crashes >= 3"], "point_radius_m": 20.0}
    spots = tu.find_black_spots(units, joined, profile=prof).set_index("type")
    assert spots.loc["point", "crashes"] == 3 and spots.loc["section", "crashes"] == 5
    assert spots.loc["point", "overlap_crashes"] == 3
    assert spots.loc["section", "overlap_crashes"] == 3
    assert spots.loc["point", "overlap_spot_ids"] == spots.loc["section", "spot_id"]


def _dual_carriageway(gap: float = 20.0, both: bool = False) -> gpd.GeoDataFrame:
    """Dual Rd: eastbound N1, N2 on y=0 through junction J; westbound M1, M2 on y=gap."""
    direction = "both" if both else "forward"
    rows = [
        ("N1", "segment", LineString([(0, 0), (300, 0)]), "Dual", direction, None, "J", "primary"),
        (
            "N2",
            "segment",
            LineString([(300, 0), (600, 0)]),
            "Dual",
            direction,
            "J",
            None,
            "primary",
        ),
        (
            "M1",
            "segment",
            LineString([(600, gap), (300, gap)]),
            "Dual",
            direction,
            None,
            "J",
            "primary",
        ),
        (
            "M2",
            "segment",
            LineString([(300, gap), (0, gap)]),
            "Dual",
            direction,
            "J",
            None,
            "primary",
        ),
        ("J", "intersection", Point(300, gap / 2), "Dual;Cross", None, None, None, "primary"),
    ]
    return make_units(rows)


def test_the_two_carriageways_of_a_divided_road_are_one_corridor() -> None:
    units = _dual_carriageway()
    # per carriageway: two roads, as drawn
    assert bs.road_chains(units)["chain_id"].nunique() == 2
    co = bs.road_corridors(units)
    assert co["chain_id"].nunique() == 1 and co["corridor"].all()
    assert co["unit_id"].tolist().count("J") == 1  # the junction sits once on the corridor
    assert co["carriageway"].nunique() == 2  # per-carriageway ids kept
    pos = co.set_index("unit_id")
    # the westbound carriageway is measured along the eastbound one (the reference line)
    assert pos.loc["M2", ["start_m", "end_m"]].tolist() == pytest.approx([0, 300], abs=1e-6)
    assert pos.loc["M1", ["start_m", "end_m"]].tolist() == pytest.approx([300, 600], abs=1e-6)
    # five accidents each way near x=100..200 and three in the junction: 13 in one window
    spec = [("N1", m, "O", 2022) for m in (100, 120, 140, 160, 180)]
    spec += [("M2", m, "O", 2022) for m in (100, 120, 140, 160, 180)]  # x = 200..120
    spec += [("J", 0, "O", 2022)] * 3
    joined = crashes(units, spec)
    w = bs.sliding_windows(units, joined, window_m=500, step_m=100)
    assert w["corridor"].all() and w["crashes"].max() == 13
    per_way = bs.sliding_windows(units, joined, window_m=500, step_m=100, corridors=False)
    assert per_way["crashes"].max() == 8  # 5 + the junction's 3 on each carriageway
    spots = tu.find_black_spots(units, joined, types=["section"])  # crashes >= 10
    assert len(spots) == 1
    s = spots.iloc[0]
    assert (s["crashes"], s["junction_crashes"], s["carriageways"]) == (13, 3, 2)
    assert bool(s["corridor"]) and len(set(s["event_ids"].split(";"))) == 13
    assert tu.find_black_spots(units, joined, types=["section"], corridors=False).empty


@settings(max_examples=25, deadline=None)
@given(
    gap=st.floats(min_value=3.0, max_value=90.0),
    turn=st.floats(min_value=0.0, max_value=359.0),
    n_crashes=st.integers(min_value=0, max_value=12),
)
def test_corridor_pairing_holds_at_any_orientation(gap: float, turn: float, n_crashes: int) -> None:
    from shapely import affinity

    units = _dual_carriageway(gap=gap)
    rotated = units.copy()
    rotated["geometry"] = [
        affinity.rotate(g, turn, origin=(300, 0), use_radians=False) for g in units.geometry
    ]
    co = bs.road_corridors(rotated)
    # offset measured centre line to centre line; the test stays clear of the 40 m edge
    if gap <= 39.0:
        assert co["corridor"].all() and co["chain_id"].nunique() == 1
    elif gap >= 41.0:
        assert not co["corridor"].any()
    # whatever the pairing, a window counts each accident once
    spec = [("M2", 10 + 20 * i, "O", 2022) for i in range(n_crashes)]
    spec += [("J", 0, "O", 2022)]
    joined = crashes(rotated, spec)
    w = bs.sliding_windows(rotated, joined, window_m=1000, step_m=100, chains=co)
    assert w["crashes"].max() == n_crashes + 1


def test_peak_search_runs_along_the_corridor() -> None:
    from trafficunit.settings import RiskSettings

    units = _dual_carriageway()
    spec = [("N1", 100, "O", 2022), ("M2", 150, "B", 2022), ("J", 0, "O", 2022)]
    spec += [("N2", 50, "O", 2021), ("M1", 20, "O", 2021)]
    joined = crashes(units, spec)
    cfg = RiskSettings(population=("kind",), min_population=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        risk = tu.score(units, joined, period=("2021-01-01", "2022-12-31"), settings=cfg)
    # one window over the whole corridor: every unit's EB values once (both carriageways
    # overlap along the reference line, the junction counts once)
    whole = bs.peak_search(units, risk, window_m=1000, max_cv=1e9)
    assert len(whole) == 1
    assert whole["expected"].iloc[0] == pytest.approx(risk["eb_expected"].sum())
    assert whole["predicted"].iloc[0] == pytest.approx(risk["eb_predicted"].sum())
    # a 300 m window over the western half holds half of each carriageway and the junction
    half = bs.peak_search(units, risk, window_m=300, max_cv=1e9, max_window_m=300)
    west = ["N1", "M2", "J"]
    east = ["N2", "M1", "J"]
    sums = {
        risk.loc[side, "eb_expected"].sum() - risk.loc[side, "eb_predicted"].sum()
        for side in (west, east)
    }
    assert half["excess"].iloc[0] == pytest.approx(max(sums))
    assert len(bs.peak_search(units, risk, corridors=False, window_m=1000, max_cv=1e9)) == 2


@pytest.mark.parametrize(
    ("gap", "both", "why"),
    [(120.0, False, "too far apart"), (20.0, True, "two-way roads are not carriageways")],
)
def test_roads_that_are_not_a_divided_road_stay_apart(gap: float, both: bool, why: str) -> None:
    units = _dual_carriageway(gap=gap, both=both)
    co = bs.road_corridors(units)
    assert not co["corridor"].any(), why


# -- real data ------------------------------------------------------------------------------------


@pytest.mark.slow(family="real-data black spots")
def test_portland_corridor_sections() -> None:
    from .conftest import shared_path

    roads = tu.read_network(shared_path("osm", "portland-central.osm.pbf"))
    events = tu.read_events(
        shared_path("crashes", "portland-corridors-2007-2015.csv"), preset="portland"
    )
    units = tu.build_units(roads, max_length_m=200)
    joined = tu.assign(units, events)
    spots = tu.find_black_spots(units, joined)
    assert spots.attrs["period"][0].startswith("2013-01-01")  # the latest 3 years
    sec = spots.loc[spots["type"] == "section"]
    assert len(sec) >= 5 and (spots["type"] == "point").sum() >= 1
    counts = sec[["K", "A", "B", "C", "O"]].sum(axis=1)
    assert (counts == sec["crashes"]).all()
    assert (sec["length_m"] <= 500 + 1e-6).all()
    # each section's accidents are listed once; its units exist; its line is as long as it says
    n_ids = sec["event_ids"].str.split(";").map(lambda ids: len(set(ids)))
    assert (n_ids == sec["crashes"]).all()
    known = set(units.index)
    assert all(set(s.split(";")) <= known for s in sec["unit_ids"])
    metric = sec.to_crs(sec.estimate_utm_crs())
    ratio = metric.geometry.length / sec["length_m"]
    assert ratio.between(0.9, 1.1).mean() > 0.8
    # the worst section is on a named arterial, with accidents every year-ish
    assert sec["crashes"].iloc[0] >= 20 and sec["road"].iloc[0] != "(unnamed)"


@pytest.mark.slow(family="real-data black spots")
def test_helsinki_sections_count_each_crash_once() -> None:
    from .conftest import shared_path

    roads = tu.read_network(shared_path("osm", "helsinki-centre.osm.pbf"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = tu.read_events(
            shared_path("crashes", "helsinki-city-2000-2022.csv"), preset="helsinki-city"
        )
        units = tu.build_units(roads)
        joined = tu.assign(units, events)
        spots = tu.find_black_spots(units, joined, period=("2000-01-01", "2022-12-31"))
        recent = tu.find_black_spots(units, joined, period=("2020-01-01", "2022-12-31"))
        per_way = tu.find_black_spots(
            units, joined, period=("2020-01-01", "2022-12-31"), corridors=False
        )
        windows = bs.sliding_windows(
            units,
            joined,
            period=("2020-01-01", "2022-12-31"),
            window_m=500,
            step_m=100,
            corridors=False,
        )
    sec = spots.loc[spots["type"] == "section"]
    assert len(sec) >= 10
    listed = sec["event_ids"].str.split(";").explode()
    assert not listed.duplicated().any()  # across the ranking's sections no crash repeats
    assert (sec["segment_crashes"] + sec["junction_crashes"] == sec["crashes"]).all()
    assert (listed.groupby(level=0).size() == sec["crashes"]).all()
    # points and sections: the shared crashes are a visible column, counted exactly
    pts = spots.loc[spots["type"] == "point"]
    in_sections = set(listed)
    shared = pts["event_ids"].str.split(";").map(lambda ids: len(set(ids) & in_sections))
    assert (shared == pts["overlap_crashes"]).all() and shared.sum() > 0
    # Mannerheimintie 2020-22: at most 9 per 500 m on either carriageway (no section), a
    # section as a corridor under the default rule (crashes >= 10), each crash once
    mh = windows.loc[windows["road"] == "Mannerheimintie", "crashes"]
    assert 0 < mh.max() < 10
    assert "Mannerheimintie" not in set(per_way["road"])
    corridor = recent.loc[(recent["type"] == "section") & (recent["road"] == "Mannerheimintie")]
    assert len(corridor) == 1
    c = corridor.iloc[0]
    assert c["crashes"] >= 10 and bool(c["corridor"]) and c["carriageways"] == 2
    ids = c["event_ids"].split(";")
    assert len(ids) == len(set(ids)) == c["crashes"]


# -- point spots against a brute-force greedy --------------------------------------------------


def _brute_points(joined: gpd.GeoDataFrame, radius: float, need: int) -> list[tuple[int, list]]:
    """Every step rescans every free centre: (centre row, member rows) worst first."""
    pts = joined.geometry.to_numpy()
    near = shapely.dwithin(pts[:, None], pts[None, :], radius)
    w = RiskSettings().epdo_weights
    epdo = joined["severity"].map(w).to_numpy(dtype=float)
    alive = np.ones(len(pts), dtype=bool)
    out = []
    while True:
        best: tuple[tuple[float, int], int, np.ndarray] | None = None
        for c in np.flatnonzero(alive):
            m = near[c] & alive
            key = (float(epdo[m].sum()), int(m.sum()))
            if key[1] >= need and (best is None or key > best[0]):
                best = (key, int(c), m)
        if best is None:
            return out
        out.append((best[1], np.flatnonzero(best[2]).tolist()))
        alive[best[2]] = False


_ARM = st.sampled_from(["S1", "S2", "S4", "S5", "IA"])


@settings(max_examples=60, deadline=None)
@given(
    spec=st.lists(
        st.tuples(_ARM, st.integers(0, 60).map(lambda k: 5 * k), st.sampled_from(list("KABCO"))),
        min_size=1,
        max_size=40,
    ),
    radius=st.sampled_from([10.0, 25.0, 50.0]),
    need=st.integers(1, 4),
)
def test_points_match_a_brute_force_greedy(
    spec: list[tuple[str, int, str]], radius: float, need: int
) -> None:
    units = network()
    joined = crashes(units, [(u, min(m, 300), s, 2022) for u, m, s in spec])
    prof = {"name": "t", "criteria": [f"crashes >= {need}"], "point_radius_m": radius}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spots = tu.find_black_spots(units, joined, profile=prof, types=["point"])
    ref = _brute_points(joined, radius, need)
    ids = joined["event_id"].to_numpy()
    got = spots["event_ids"].tolist() if len(spots) else []  # no spots: no columns either
    assert got == [";".join(ids[m]) for _, m in ref]
    assert spots.geometry.tolist() == [joined.geometry.iloc[c] for c, _ in ref]


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 30),
    seed=st.integers(0, 2**32 - 1),
    density=st.floats(0.05, 0.9),
    fractional=st.booleans(),
)
def test_lazy_greedy_equals_the_rescan(n: int, seed: int, density: float, fractional: bool) -> None:
    from scipy.sparse import csr_array

    from trafficunit.blackspots.spots import _greedy_circles

    rng = np.random.default_rng(seed)
    near = rng.random((n, n)) < density
    near = near | near.T | np.eye(n, dtype=bool)  # symmetric, each circle holds its centre
    cols = ["crashes", "K", "A", "B", "C", "O", "deaths", "serious_injuries", "epdo"]
    f = rng.integers(0, 3, (n, len(cols))).astype(float)
    f[:, 0] = 1.0
    if fractional:  # sums that round: the heap must still see the rescan's exact floats
        f[:, -1] = rng.choice([0.1, 0.2, 0.3, 1 / 3, 2.7], n)
    circles = csr_array(near.astype(float))
    prof = tu.blackspots.profiles.get_profile(
        {"name": "t", "criteria": ["crashes >= 2", "KA >= 1"], "combine": "any"}
    )
    got = _greedy_circles((circles @ f).copy(), f, circles.indptr, circles.indices, cols, prof)
    ref = _greedy_circles(
        (circles @ f).copy(), f, circles.indptr, circles.indices, cols, prof, rescan=True
    )
    assert [(c, m.tolist()) for c, m in got] == [(c, m.tolist()) for c, m in ref]


_STEP = st.integers(-40, 40).map(lambda k: 2.5 * k)


@settings(max_examples=150, deadline=None)
@given(
    base=st.lists(st.tuples(_STEP, _STEP), min_size=1, max_size=20),
    exact=st.lists(st.tuples(st.integers(0, 19), st.sampled_from([(1, 0), (0, -1), (0.6, 0.8)]))),
    ring=st.lists(st.tuples(st.integers(0, 19), st.floats(0, 6.3)), max_size=10),
    dups=st.lists(st.integers(0, 19), max_size=5),
    radius=st.sampled_from([10.0, 25.0, 50.0]),
    origin=st.sampled_from([(0.0, 0.0), (512_345.0, 5_432_100.0)]),
)
def test_circles_match_a_brute_force_distance_check(
    base: list[tuple[float, float]],
    exact: list[tuple[int, tuple[float, float]]],
    ring: list[tuple[int, float]],
    dups: list[int],
    radius: float,
    origin: tuple[float, float],
) -> None:
    from trafficunit.blackspots.spots import _circles

    xy = np.asarray(base) + origin
    k = len(xy)
    # exactly at the radius, within rounding of it (UTM-sized coordinates), and duplicates
    at = np.asarray([xy[i % k] + np.multiply(d, radius) for i, d in exact]).reshape(-1, 2)
    near = [xy[i % k] + radius * np.array([np.cos(a), np.sin(a)]) for i, a in ring]
    xy = np.vstack([xy, at, np.asarray(near).reshape(-1, 2), xy[[i % k for i in dups]]])
    pts = shapely.points(xy)
    n = len(pts)
    indptr, rows = _circles(pts, radius)
    got = [rows[indptr[c] : indptr[c + 1]].tolist() for c in range(n)]
    within = shapely.dwithin(pts[:, None], pts[None, :], radius)
    assert got == [np.flatnonzero(within[c]).tolist() for c in range(n)]
    # the boundary is inclusive: a point exactly at the radius is in the circle, both ways
    for e, (i, _) in enumerate(exact):
        assert k + e in got[i % k] and i % k in got[k + e]
    # and the same pairs as the shapely query the circles replaced
    ci, mi = shapely.STRtree(pts).query(pts, predicate="dwithin", distance=radius)
    assert sorted(zip(ci.tolist(), mi.tolist(), strict=True)) == [
        (c, r) for c in range(n) for r in got[c]
    ]
