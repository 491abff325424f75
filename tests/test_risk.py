"""tu.score and friends on a hand-drawn network where every number is worked out by hand.

The network and accidents are in ``tests/_risk_net.py``: Main St (S1 300 m, IA, S2 300 m,
S3 400 m) and Side Rd (S4, S5 300 m each). Period 2021-2022 = 2 years.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString
from typer.testing import CliRunner

import trafficunit as tu
from trafficunit import risk as rk
from trafficunit import timefilter as tf
from trafficunit.risk import SafetyPerformanceFunction
from trafficunit.settings import RiskSettings

from ._risk_net import SPEC, crashes, make_units, network

PERIOD = ("2021-01-01", "2022-12-31")
ONE_POP = RiskSettings(population=("kind",), min_population=1)


@pytest.fixture()
def units() -> gpd.GeoDataFrame:
    return network()


@pytest.fixture()
def joined(units: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    acc = crashes(units, SPEC)
    extra = crashes(units, [("S1", 20, "K", 2019), ("S2", 10, "O", 2022)])
    extra["event_id"] = ["old", "far"]
    extra.loc[1, "unit_id"] = None  # unmatched: too far from any unit
    extra.loc[1, "match"] = "too_far"
    return pd.concat([acc, extra], ignore_index=True)


def score(units: gpd.GeoDataFrame, joined: pd.DataFrame, **kw: Any) -> gpd.GeoDataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tu.TrafficUnitWarning)
        return tu.score(units, joined, period=PERIOD, **kw)


# -- measures -------------------------------------------------------------------------------------


def test_counts_epdo_and_rates_by_hand(units: gpd.GeoDataFrame, joined: gpd.GeoDataFrame) -> None:
    r = score(units, joined)
    # S1: K + O = 542 + 1; S2: 2 B + C = 22 + 6; S3: O; IA: A = 29
    assert r["epdo"].to_dict() == {"S1": 543.0, "S2": 28.0, "S3": 1.0, "S4": 0, "S5": 0, "IA": 29}
    assert r.loc["S2", ["K", "A", "B", "C", "O"]].tolist() == [0, 0, 2, 1, 0]
    assert r["crashes"].tolist() == [2, 3, 1, 0, 0, 1]
    assert r.loc["S1", "crashes_per_year"] == pytest.approx(1.0)
    assert r.loc["S1", "crashes_per_km_year"] == pytest.approx(2 / (0.3 * 2))
    assert r.loc["S3", "crashes_per_km_year"] == pytest.approx(1 / (0.4 * 2))
    assert r.loc["S1", "epdo_per_km"] == pytest.approx(543 / 0.3)
    assert math.isnan(r.loc["IA", "crashes_per_km_year"])
    assert r["rate_mvkm"].isna().all()  # no AADT
    rep = r.attrs["report"]
    assert (rep["used"], rep["outside_period"], rep["unmatched"]) == (7, 1, 1)
    assert r.attrs["rule"]["years"] == pytest.approx(2.0)


def test_rate_per_million_vehicle_km(units: gpd.GeoDataFrame, joined: gpd.GeoDataFrame) -> None:
    u = units.assign(aadt=[10_000.0, 10_000.0, 5_000.0, 1_000.0, 1_000.0, np.nan])
    r = score(u, joined)
    # 2 accidents / (10,000 veh/day x 365.25 days x 2 years x 0.3 km / 1e6)
    assert r.loc["S1", "rate_mvkm"] == pytest.approx(2 / (10_000 * 365.25 * 2 * 0.3 / 1e6))
    assert r.loc["S4", "rate_mvkm"] == 0.0
    assert math.isnan(r.loc["IA", "rate_mvkm"])


def test_inputs_not_mutated(units: gpd.GeoDataFrame, joined: gpd.GeoDataFrame) -> None:
    u0, j0 = units.copy(), joined.copy()
    score(units, joined, hotspot_stats=True)
    pd.testing.assert_frame_equal(units, u0)
    pd.testing.assert_frame_equal(joined, j0)


# -- empirical Bayes ------------------------------------------------------------------------------


def test_empirical_bayes_with_user_spf(units: gpd.GeoDataFrame, joined: gpd.GeoDataFrame) -> None:
    spf = {
        "segment:*": SafetyPerformanceFunction(
            intercept=math.log(2.0), coefficients={"log_length_km": 1.0}, k=0.5
        ),
        "intersection:*": SafetyPerformanceFunction(intercept=math.log(0.5), k=1.0),
    }
    r = score(units, joined, spf=spf, settings=ONE_POP)
    # S1: N_pred = 2/km-year x 0.3 km x 2 years = 1.2; w = 1/(1 + 0.5 x 1.2) = 0.625
    #     N_exp = 0.625 x 1.2 + 0.375 x 2 = 1.5; excess 0.3
    assert r.loc["S1", "eb_predicted"] == pytest.approx(1.2)
    assert r.loc["S1", "eb_weight"] == pytest.approx(0.625)
    assert r.loc["S1", "eb_expected"] == pytest.approx(1.5)
    assert r.loc["S1", "eb_excess"] == pytest.approx(0.3)
    assert r.loc["S2", "eb_expected"] == pytest.approx(0.625 * 1.2 + 0.375 * 3)
    # S3: 1.6 predicted, w = 1/1.8, one accident: fewer than predicted -> negative excess
    assert r.loc["S3", "eb_expected"] == pytest.approx(1.6 / 1.8 + (0.8 / 1.8) * 1)
    assert r.loc["S3", "eb_excess"] < 0
    # IA: 0.5/year x 2 = 1.0 predicted, w = 0.5, one accident -> expected 1.0, excess 0
    assert r.loc["IA", "eb_expected"] == pytest.approx(1.0)
    assert r.attrs["spf"]["segment:*"]["source"] == "user"


def test_spfs_fitted_by_a_given_fitter(units: gpd.GeoDataFrame, joined: gpd.GeoDataFrame) -> None:
    """A fitter (Dask's workers in a run from files) gets each population not supplied once,
    in their order, and its SPFs are score's own; one BLAS thread fits the same SPFs."""
    from trafficunit.risk import spf as spf_mod

    r = score(units, joined, settings=ONE_POP)
    keys, obs = r["reference_population"], r["crashes"].to_numpy(dtype=float)
    years = r.attrs["rule"]["years"]
    own = spf_mod._fit_populations(r, obs, years, keys, ONE_POP, None)
    assert own == {k: SafetyPerformanceFunction(**v) for k, v in r.attrs["spf"].items()}
    seen: list[str] = []

    def fitter(jobs: list[Any]) -> list[SafetyPerformanceFunction]:
        seen.extend(job[4] for job in jobs)
        return [spf_mod._fit_one(*job) for job in jobs]

    given = spf_mod._fit_populations(r, obs, years, keys, ONE_POP, None, fitter)
    assert given == own and list(given) == list(own) == seen
    user = SafetyPerformanceFunction(intercept=0.0, k=1.0)
    seen.clear()
    some = spf_mod._fit_populations(r, obs, years, keys, ONE_POP, {"intersection:*": user}, fitter)
    assert seen == ["segment:*"] and list(some) == list(own)
    assert some == {**own, "intersection:*": user}


def test_k_per_km_follows_hsm_segment_convention(units: gpd.GeoDataFrame) -> None:
    spf = SafetyPerformanceFunction(
        intercept=0.0, coefficients={"log_length_km": 1.0}, k=0.3, k_per_km=True
    )
    k = spf.overdispersion(units)
    assert k[0] == pytest.approx(0.3 / 0.3)  # S1 is 0.3 km
    assert k[2] == pytest.approx(0.3 / 0.4)
    assert k[5] == pytest.approx(0.3)  # intersections keep k


def test_spf_fitted_by_negative_binomial_recovers_the_truth() -> None:
    rng = np.random.default_rng(7)
    n = 600
    length = rng.uniform(50, 500, n)
    geoms = [LineString([(0, 100 * i), (x, 100 * i)]) for i, x in enumerate(length)]
    units = gpd.GeoDataFrame(
        {"kind": "segment", "length_m": length, "road_class": "primary"},
        geometry=geoms,
        crs="EPSG:32633",
        index=pd.Index([f"S{i}" for i in range(n)], name="unit_id"),
    )
    years, rate, k = 5, 3.0, 0.4  # 3 accidents per km-year, NB2 overdispersion 0.4
    mu = rate * length / 1000 * years
    y = rng.negative_binomial(1 / k, 1 / (1 + k * mu))
    uid = np.repeat(units.index.to_numpy(), y)
    joined = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(len(uid))],
            "unit_id": uid,
            "severity": "O",
            "year": rng.integers(2016, 2021, len(uid)),
        }
    )
    spfs = rk.fit_spfs(units, joined, period=("2016-01-01", "2020-12-31"))
    f = spfs["segment:primary"]
    assert "negative binomial" in f.source
    assert math.exp(f.intercept) == pytest.approx(rate, rel=0.12)
    assert f.k == pytest.approx(k, abs=0.15)
    r = tu.score(units, joined, period=("2016-01-01", "2020-12-31"))
    # EB pulls every unit towards its prediction: expected lies between predicted and observed
    lo = np.minimum(r["eb_predicted"], r["crashes"])
    hi = np.maximum(r["eb_predicted"], r["crashes"])
    assert ((r["eb_expected"] >= lo - 1e-9) & (r["eb_expected"] <= hi + 1e-9)).all()


def test_small_populations_are_pooled(units: gpd.GeoDataFrame, joined: gpd.GeoDataFrame) -> None:
    r = score(units, joined)  # min_population 20 > 5 segments
    assert set(r["reference_population"]) == {"segment:*", "intersection:*"}
    r2 = score(units, joined, settings=RiskSettings(min_population=2))
    assert r2.loc["S1", "reference_population"] == "segment:primary"
    assert r2.loc["S4", "reference_population"] == "segment:residential"


# -- colours --------------------------------------------------------------------------------------


def test_percentile_bands_by_hand(units: gpd.GeoDataFrame, joined: gpd.GeoDataFrame) -> None:
    r = score(units, joined, measure="epdo", settings=ONE_POP)
    # segments' EPDO 543, 28, 1, 0, 0 -> mid-rank percentiles 90, 70, 50, 20, 20
    assert r["score_percentile"].round(6).tolist() == [90.0, 70.0, 50.0, 20.0, 20.0, 50.0]
    # bands 65 / 85 / 95: S1 orange, S2 yellow, the rest blue; IA alone in its population: 50
    assert r["level"].tolist() == ["orange", "yellow", "blue", "blue", "blue", "blue"]
    assert r["level_rank"].tolist() == [3, 2, 1, 1, 1, 1]
    assert r.loc["S1", "colour"] == "#fdae61"
    bands = {b["level"]: b for b in r.attrs["rule"]["bands"]}
    assert bands["red"]["min"] == 95.0 and bands["red"]["colour"] == "#d7191c"
    json.dumps(r.attrs)  # JSON-able for legends and Parquet metadata


def test_custom_percentile_bands(units: gpd.GeoDataFrame, joined: gpd.GeoDataFrame) -> None:
    r = score(units, joined, measure="epdo", bands=(40, 60, 80), settings=ONE_POP)
    assert r["level"].tolist() == ["red", "orange", "yellow", "blue", "blue", "yellow"]


def test_fixed_thresholds_and_hazard_raise(
    units: gpd.GeoDataFrame, joined: gpd.GeoDataFrame
) -> None:
    hz = pd.DataFrame(
        {
            "event_id": ["H1", "H2", "H3", "H4", "H4"],
            "kind": "hazard",
            "unit_id": ["S3", "S2", "S4", "S1", "S2"],
            "grade": ["重大", "general", "major", "general", "general"],
            "status": ["assigned", "Rectifying", "closed", "reported", "reported"],
        }
    )
    both = pd.concat([joined, hz], ignore_index=True)
    r = score(units, both, measure="epdo", scheme="fixed", bands=(10, 100, 500))
    # crash levels: S1 543 red, S2 28 yellow, S3 1 blue, IA 29 yellow
    assert r["crash_level_rank"].tolist() == [4, 2, 1, 1, 1, 2]
    # S3 + major -> orange; S2 + general -> orange; S4's major is closed; S1 capped at red
    assert r["level"].tolist() == ["red", "orange", "orange", "blue", "blue", "yellow"]
    assert r["open_hazards"].tolist() == [1, 2, 1, 0, 0, 0]
    assert r["open_major_hazards"].tolist() == [0, 0, 1, 0, 0, 0]
    assert "2 for a major" in r.attrs["rule"]["hazard_text"]


def test_length_share_scheme(units: gpd.GeoDataFrame, joined: gpd.GeoDataFrame) -> None:
    r = score(units, joined, measure="epdo", scheme="length_share", settings=ONE_POP)
    # by length (1600 m): EPDO 0 (600 m) < 1 (400 m) < 28 (300 m) < 543 (300 m)
    # S3 (600+200)/1600 = 50 % -> class 2; S2 71.9 % -> class 3; S1 90.6 % -> class 4
    assert r.loc[["S1", "S2", "S3", "S4"], "score_percentile"].tolist() == pytest.approx(
        [90.625, 71.875, 50.0, 18.75]
    )
    assert r.loc[["S1", "S2", "S3", "S4"], "risk_class"].tolist() == [4, 3, 2, 1]
    assert r.loc[["S1", "S2", "S3", "S4"], "level"].tolist() == ["orange", "yellow", "blue", "blue"]
    shares = [b["share_percent"] for b in r.attrs["rule"]["bands"]]
    assert shares == [5.0, 10.0, 20.0, 25.0, 40.0]


def test_matrix_scheme(units: gpd.GeoDataFrame, joined: gpd.GeoDataFrame) -> None:
    r = score(units, joined, scheme="matrix", settings=ONE_POP)
    # likelihood from the frequency percentile (S1 70 -> 4, S2 90 -> 5, S3 50 -> 3),
    # severity from the worst accident (K 5, B 3, O 1): 20 red, 15 orange, 3 blue
    assert r.loc[["S1", "S2", "S3"], "likelihood"].tolist() == [4, 5, 3]
    assert r.loc[["S1", "S2", "S3"], "severity_class"].tolist() == [5, 3, 1]
    assert r.loc[["S1", "S2", "S3"], "level"].tolist() == ["red", "orange", "blue"]
    assert r.loc["IA", "level"] == "orange"  # likelihood 3 x severity A 4 = 12


def test_rank_among_units_with_crashes(units: gpd.GeoDataFrame, joined: gpd.GeoDataFrame) -> None:
    cfg = RiskSettings(population=("kind",), min_population=1, rank_among="with_crashes")
    r = score(units, joined, measure="epdo", settings=cfg)
    # only S1, S2, S3 ranked: 543 -> 83.3, 28 -> 50, 1 -> 16.7
    assert r.loc[["S1", "S2", "S3"], "score_percentile"].tolist() == pytest.approx(
        [250 / 3, 50.0, 50 / 3]
    )
    assert r["score_percentile"][["S4", "S5"]].isna().all()


def test_errors_say_what_to_do(units: gpd.GeoDataFrame, joined: gpd.GeoDataFrame) -> None:
    with pytest.raises(tu.ValidationError, match="not a risk column"):
        score(units, joined, measure="nope")
    with pytest.raises(tu.ValidationError, match="fixed_thresholds"):
        score(units, joined, scheme="fixed")
    with pytest.raises(tu.ValidationError, match="aadt"):
        score(units, joined, measure="rate_mvkm")
    with pytest.raises(tu.ValidationError, match="unit_id"):
        tu.score(units, joined.drop(columns="unit_id"), period=PERIOD)
    with pytest.raises(tu.ValidationError, match="period"):
        tu.score(units, joined, period=("2022-01-01", "2021-01-01"))


# -- hotspots, explanations, top ------------------------------------------------------------------


def test_gi_star_finds_the_cluster_in_the_middle_of_a_road() -> None:
    n = 21
    rows = [
        (
            f"S{i:02d}",
            "segment",
            LineString([(100 * i, 0), (100 * (i + 1), 0)]),
            "Long Rd",
            "both",
            f"S{i - 1:02d}" if i else None,
            f"S{i + 1:02d}" if i < n - 1 else None,
            "primary",
        )
        for i in range(n)
    ]
    units = make_units(rows)
    spec = [(f"S{i:02d}", 50, "B", 2021) for i in range(8, 13) for _ in range(4)]
    spec += [("S00", 50, "O", 2021), ("S20", 50, "O", 2021)]
    joined = crashes(units, spec)
    r = tu.score(units, joined, period=("2021-01-01", "2021-12-31"), hotspot_stats=True)
    assert r.loc["S10", "hotspot"] == "hot"
    assert r.loc["S10", "gi_z"] > 3
    assert r.loc["S00", "hotspot"] != "hot"
    assert r.loc["S10", "moran_quadrant"] == "HH"
    assert r.attrs["hotspots"]["measure"] == "epdo"


def test_explain_names_type_time_and_attributes(units: gpd.GeoDataFrame) -> None:
    u = units.assign(maxspeed_kmh=[50, 70, 50, 30, 30, 50])
    spec = [
        ("S2", 50, "B", 2021, {"collision_type": "rear-end", "hour": 8}),
        ("S2", 60, "B", 2021, {"collision_type": "rear-end", "hour": 9}),
        ("S2", 70, "C", 2021, {"collision_type": "angle", "hour": 23}),
        ("S1", 70, "O", 2021, {"collision_type": "angle", "hour": 12}),
    ]
    joined = crashes(u, spec)
    r = tu.score(u, joined, period=("2021-01-01", "2021-12-31"))
    ex = rk.explain(r, joined, unit_ids=["S2"])
    row = ex.loc["S2"]
    assert row["top_type"] == "rear-end" and row["top_type_share"] == pytest.approx(2 / 3)
    assert row["top_time"] == "morning"
    assert row["night_share"] == pytest.approx(1 / 3)  # 23:00 is outside 7-19
    assert row["severity_mix"] == "B 2, C 1"
    assert "67% rear-end" in row["why"]
    assert "speed limit 70 km/h (population median 50)" in row["why"]


def test_top_orders_by_level_then_measure(units: gpd.GeoDataFrame, joined: pd.DataFrame) -> None:
    r = score(units, joined, measure="epdo", settings=ONE_POP)
    assert list(rk.top(r, n=3).index) == ["S1", "S2", "IA"]
    assert list(rk.top(r, n=2, kind="segment").index) == ["S1", "S2"]


# -- before / after -------------------------------------------------------------------------------


def test_compare_periods_eb_by_hand(units: gpd.GeoDataFrame) -> None:
    u = units.assign(area=["B", "B", "A", "B", "B", "B"])
    spec = [("S3", 50 * i, "O", 2019 + (i % 2)) for i in range(4)] + [("S3", 10, "O", 2021)]
    joined = crashes(u, spec)
    spf = SafetyPerformanceFunction(
        intercept=math.log(2.0), coefficients={"log_length_km": 1.0}, k=0.5
    )
    out = rk.compare_periods(
        u,
        joined,
        before=("2019-01-01", "2020-12-31"),
        after=("2021-01-01", "2022-12-31"),
        by="area",
        spf=spf,
    )
    # S3: predicted 1.6 per 2 years, w = 1/1.8, 4 before -> EB 2.6667; r = 1
    assert out.loc["S3", "eb_before"] == pytest.approx(1.6 / 1.8 + 0.8 / 1.8 * 4)
    assert out.loc["S3", "expected_after"] == pytest.approx(8 / 3)
    assert out.loc["S3", "expected_after_var"] == pytest.approx(0.8 / 1.8 * 8 / 3)
    assert out.loc["S3", "change_percent"] == pytest.approx(-75.0)
    area = {row["area"]: row for row in out.attrs["summary"]}
    # theta = (1 / 2.6667) / (1 + Var / 2.6667^2) = 0.375 / 1.16667
    assert area["A"]["theta"] == pytest.approx(0.375 / (1 + 1 / 6))
    assert area["A"]["crashes_before"] == 4 and area["A"]["crashes_after"] == 1


# -- time -----------------------------------------------------------------------------------------


def test_period_years_are_calendar_exact() -> None:
    assert tf.as_period(("2016-01-01", "2022-12-31")).years == 7.0
    assert tf.as_period(("2020-01-01", "2020-06-30")).years == pytest.approx(182 / 365.25)
    with pytest.raises(tu.ValidationError, match="not a date"):
        tf.as_period(("soon", "2020-01-01"))


def test_sun_elevation_matches_solar_geometry() -> None:
    # Helsinki, 21 June 2020: the highest sun is 90 - (60.17 - 23.44) = 53.27 degrees
    t = pd.date_range("2020-06-21 00:00", "2020-06-21 23:59", freq="1min", tz="UTC")
    elev = tf.sun_elevation(np.full(len(t), 24.94), np.full(len(t), 60.17), t)
    assert elev.max() == pytest.approx(53.27, abs=0.1)
    # solar noon: 12:00 - 4 min x 24.94 deg - equation of time (-1.7 min) = 10:22 UTC
    assert t[int(elev.argmax())].strftime("%H:%M") in ("10:21", "10:22", "10:23")
    # at the March equinox the sun passes (almost) overhead on the equator
    t2 = pd.date_range("2024-03-20 11:00", "2024-03-20 13:00", freq="1min", tz="UTC")
    e2 = tf.sun_elevation(np.zeros(len(t2)), np.zeros(len(t2)), t2)
    assert e2.max() > 89.5


def test_night_by_clock_and_by_sun_disagree_where_they_should() -> None:
    from shapely.geometry import Point

    times = pd.to_datetime(
        ["2020-06-21 20:30", "2020-12-21 17:00", "2020-12-21 12:00"]
    ).tz_localize("Europe/Helsinki")
    ev = gpd.GeoDataFrame(
        {"time": times, "hour": times.hour}, geometry=[Point(24.94, 60.17)] * 3, crs=4326
    )
    clock = tf.is_night(ev, by="clock").tolist()
    sun = tf.is_night(ev, by="sun").tolist()
    assert clock == [True, False, False]  # day is 07-19 by the clock
    assert sun == [False, True, False]  # midsummer evening is light; December 17:00 is dark


def test_filter_events_by_period_hour_weekday_light() -> None:
    ev = pd.DataFrame(
        {
            "time": pd.to_datetime(
                ["2021-03-01 08:00", "2021-03-06 23:00", "NaT", "2019-05-05 12:00"]
            ).tz_localize("Europe/Helsinki"),
            "year": [2021, 2021, 2021, 2019],
            "hour": [8, 23, None, 12],
        }
    )
    kept = tf.filter_events(ev, period=("2021-01-01", "2021-12-31"))
    assert len(kept) == 3  # the year-only row counts: 1 July 2021 is inside
    assert len(tf.filter_events(ev, period=("2021-01-01", "2021-06-30"))) == 2
    assert tf.filter_events(ev, hours=range(22, 24))["hour"].tolist() == [23]
    sat = tf.filter_events(ev, weekdays=["Sat"])
    assert len(sat) == 1 and sat.attrs["time_report"]["no_weekday"] == 1
    night = tf.filter_events(ev, light="night")
    assert night["hour"].tolist() == [23]
    table = tf.hour_weekday(ev)
    assert table.loc["Mon", 8] == 1 and table.loc["Sat", 23] == 1 and table.loc["Sun", 12] == 1
    assert int(table.to_numpy().sum()) == 3 and table.attrs["left_out"] == 1


# -- CLI ------------------------------------------------------------------------------------------


def test_cli_risk_writes_scores_and_black_spots(
    tmp_path: object, units: gpd.GeoDataFrame, joined: gpd.GeoDataFrame
) -> None:
    from pathlib import Path

    from trafficunit.cli import app

    d = Path(str(tmp_path))
    tu.write_table(units, d / "units.parquet")
    joined.to_parquet(d / "joined.parquet")
    result = CliRunner().invoke(
        app,
        [
            "risk",
            str(d / "units.parquet"),
            str(d / "joined.parquet"),
            "-o",
            str(d / "risk.parquet"),
            "--period",
            "2021-01-01..2022-12-31",
            "--black-spots",
            str(d / "spots.gpkg"),
            "--spots-period",
            "2020-01-01..2022-12-31",
        ],
    )
    assert result.exit_code == 0, result.output
    out = tu.read_table(d / "risk.parquet")
    assert out.loc["S1", "epdo"] == 543.0
    spots = gpd.read_file(d / "spots.gpkg")
    assert (spots["type"] == "section").sum() == 1
    assert "risk levels" in result.output and "top sections" in result.output
    assert "Main St" in result.output
    bad = CliRunner().invoke(
        app,
        [
            "risk",
            str(d / "units.parquet"),
            str(d / "joined.parquet"),
            "-o",
            str(d / "r.parquet"),
            "--measure",
            "nope",
        ],
    )
    assert bad.exit_code == 2 and "not a risk column" in bad.output


# -- real data ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helsinki() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    from .conftest import shared_path

    roads = tu.read_network(shared_path("osm", "helsinki-centre.osm.pbf"))
    events = tu.read_events(
        shared_path("crashes", "helsinki-city-2000-2022.csv"), preset="helsinki-city"
    )
    units = tu.build_units(roads, max_length_m=200)
    return units, tu.assign(units, events)


@pytest.mark.slow(family="real-data risk")
def test_helsinki_2000_2022_scores(helsinki: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]) -> None:
    units, joined = helsinki
    risk = tu.score(units, joined)
    assert risk.attrs["rule"]["period"][0].startswith("2000-01-01")
    assert risk.attrs["rule"]["years"] == 23.0
    # every matched accident is counted once, on its unit; EPDO adds up (K 542, B 11, O 1)
    assert int(risk["crashes"].sum()) == int(joined["unit_id"].notna().sum())
    assert risk["epdo"].sum() == pytest.approx((542 * risk["K"] + 11 * risk["B"] + risk["O"]).sum())
    # the city's data carries no A/C classes (1 PDO, 2 injury -> B, 3 fatal -> K)
    assert risk[["A", "C"]].to_numpy().sum() == 0
    assert set(risk["level"]) == {"red", "orange", "yellow", "blue"}
    assert (risk.loc[risk["crashes"] == 0, "level"] == "blue").all()
    seg = risk.loc[risk["kind"] == "segment"]
    red_km = seg.loc[seg["level"] == "red", "length_m"].sum() / seg["length_m"].sum()
    assert 0.02 < red_km < 0.3
    fitted = [v["source"] for v in risk.attrs["spf"].values()]
    assert sum("negative binomial" in s for s in fitted) >= len(fitted) - 2
    worst = rk.top(risk, n=1)
    assert worst["level"].item() == "red" and worst["crashes"].item() >= 50
    hot = rk.hotspots(risk, permutations=0)
    # Gi* hot spots are where the accidents are
    assert hot.loc[hot["hotspot"] == "hot", "epdo"].mean() > 3 * hot["epdo"].mean()


@pytest.mark.slow(family="real-data risk")
def test_night_by_sun_matches_recorded_darkness() -> None:
    from .conftest import shared_path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tu.TrafficUnitWarning)
        ev = tu.read_events(
            shared_path("crashes", "helsinki-fta-2011-2016.csv"), preset="helsinki-fta"
        )
    ev = ev.loc[ev["light"].isin(["daylight", "dark", "dark, lit"])]
    dark = ev["light"].isin(["dark", "dark, lit"]).to_numpy()
    # the file gives the hour only: take the middle of the hour
    mid = ev.assign(time=ev["time"] + pd.Timedelta(minutes=30))
    sun = tf.is_night(mid, by="sun").to_numpy(dtype=bool)
    clock = tf.is_night(ev, by="clock").to_numpy(dtype=bool)
    assert len(ev) > 9000
    assert (sun == dark).mean() > 0.95  # measured 0.959
    assert (sun == dark).mean() > (clock == dark).mean() + 0.08  # clock 0.842


@pytest.mark.slow(family="real-data risk")
def test_sparse_corridor_data_warns_with_coverage_and_remedy() -> None:
    from .conftest import shared_path

    roads = tu.read_network(shared_path("osm", "portland-central.osm.pbf"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = tu.read_events(
            shared_path("crashes", "portland-corridors-2007-2015.csv"), preset="portland"
        )
        units = tu.build_units(roads)
        joined = tu.assign(units, events)
    with pytest.warns(tu.TrafficUnitWarning, match="sparse data") as rec:
        risk = tu.score(units, joined)
    text = " ".join(str(w.message) for w in rec)
    assert "rank_among='with_crashes'" in text and "longer period" in text
    cov = risk.attrs["coverage"]
    has = (risk["crashes"] > 0).to_numpy()
    assert (
        cov["share_with_crashes"] == pytest.approx(has.mean()) and cov["share_with_crashes"] < 0.05
    )
    assert cov["median_eb_weight"] == pytest.approx(np.median(risk["eb_weight"].to_numpy()[has]))
    assert cov["max_k"] == max(cov["k"].values()) > 10
    assert cov["levels"] == {lv: int((risk["level"] == lv).sum()) for lv in cov["levels"]}
    # the period is the data's own span, and says so
    times = joined.loc[joined["unit_id"].notna(), "time"].dt.tz_localize(None)
    first, last = times.min().normalize(), times.max().normalize()
    assert risk.attrs["rule"]["period"] == [first.isoformat(), last.isoformat()]
    assert risk.attrs["rule"]["period_label"].endswith("(the data's span)")


def test_dense_data_does_not_warn(units: gpd.GeoDataFrame) -> None:
    spec = [(u, 10, "O", 2021) for u in units.index for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", tu.TrafficUnitWarning)
        r = tu.score(units, crashes(units, spec), period=("2021-01-01", "2021-12-31"))
    assert r.attrs["coverage"]["share_with_crashes"] == 1.0
    assert r.attrs["coverage"]["warnings"] == []
    assert r.attrs["rule"]["period_label"] == "2021-01-01–2021-12-31 (given)"


def test_demo_period_is_the_generated_data_span(demo_folder: Path) -> None:
    """The demo folder (``build_demo``, built once per run in tests/conftest.py) states the
    generated data's span as its period."""
    manifest = json.loads((demo_folder / "manifest.json").read_text(encoding="utf-8"))
    acc = pd.read_parquet(demo_folder / "accidents.parquet")
    t = acc.loc[acc["unit_id"].notna(), "time"].dt.tz_localize(None)
    span = f"{t.min():%Y-%m-%d}–{t.max():%Y-%m-%d}"
    assert manifest["period_label"] == f"{span} (the data's span)"
    assert [p[:10] for p in manifest["period"]] == [f"{t.min():%Y-%m-%d}", f"{t.max():%Y-%m-%d}"]
    assert span in manifest["rule"]["text"]


def test_local_moran_defaults_to_999_permutations_with_the_seed_recorded(
    units: gpd.GeoDataFrame, joined: gpd.GeoDataFrame
) -> None:
    r = tu.score(units, joined, period=PERIOD)
    a = rk.hotspots(r)
    b = rk.hotspots(r, seed=7)
    info = a.attrs["hotspots"]
    assert info["moran_permutations"] == 999 and info["seed"] == RiskSettings().seed
    assert b.attrs["hotspots"]["seed"] == 7
    assert "row-standardised" in info["moran_weights"]


@pytest.mark.slow(family="real-data risk")
def test_day_and_night_come_from_the_files_light_column() -> None:
    from .conftest import shared_path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tu.TrafficUnitWarning)
        ev = tu.read_events(
            shared_path("crashes", "helsinki-fta-2011-2016.csv"), preset="helsinki-fta"
        )
    recorded = ev["light"].astype("string")
    night = tf.filter_events(ev, light="night")
    # every accident the police recorded in the dark is night, every daylight one is day
    assert (
        {"dark", "dark, lit"} <= set(night["light"].dropna()) <= {"dark", "dark, lit", "twilight"}
    )
    assert (night["light"].isin(["dark", "dark, lit"])).sum() == recorded.isin(
        ["dark", "dark, lit"]
    ).sum()
    # twilight and unrecorded light fall back to the sun (time and place known), said in
    # the report
    by = night.attrs["time_report"]["light_by"]
    n_light = int(recorded.isin(["daylight", "dark", "dark, lit"]).sum())
    assert by["light column"] == n_light
    assert by["light column"] + by.get("sun", 0) + by.get("clock", 0) == len(ev)
    assert by.get("sun", 0) == int((~recorded.isin(["daylight", "dark", "dark, lit"])).sum())
    # without a light column: the clock (no location) decides, and says so
    clock = tf.filter_events(pd.DataFrame(ev.drop(columns=["light", "geometry"])), light="night")
    assert set(clock.attrs["time_report"]["light_by"]) == {"clock"}


def _keys_per_unit(units: pd.DataFrame, cfg: RiskSettings) -> pd.Series:
    """The reference populations as strings built unit by unit (the definition)."""
    others = [c for c in cfg.population if c != "kind"]
    key = units["kind"].astype(str)
    if others:
        rest = units[others[0]].astype("string").fillna("unknown")
        for c in others[1:]:
            rest = rest + "/" + units[c].astype("string").fillna("unknown")
        key = key + ":" + rest.astype(str)
    else:
        key = key + ":*"
    codes, _ = pd.factorize(key)
    small = np.bincount(codes)[codes] < cfg.min_population
    return key.where(~small, units["kind"].astype(str) + ":*").rename("reference_population")


_CLASSES = ["primary", "residential", "unknown", None, "tertiary"]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["segment", "intersection"]),
            st.sampled_from(_CLASSES),
            st.sampled_from(["yes", "no", None]),
        ),
        max_size=60,
    ),
    population=st.sampled_from([("kind",), ("road_class", "kind"), ("road_class", "lit")]),
    min_population=st.integers(1, 12),
)
@example(  # two units without a class and two "unknown": one population of four, kept
    rows=[("segment", None, "yes")] * 2 + [("segment", "unknown", "yes")] * 2,
    population=("road_class", "kind"),
    min_population=3,
)
def test_population_keys_equal_keys_built_unit_by_unit(
    rows: list[tuple[Any, ...]], population: tuple[str, ...], min_population: int
) -> None:
    # keys made per distinct combination: the same strings, dtype and pooling (a missing
    # class and "unknown" share one key, so their units count together)
    from trafficunit.risk.spf import _population_keys

    units = pd.DataFrame(rows, columns=["kind", "road_class", "lit"])
    units.index = pd.Index([f"u{i}" for i in range(len(units))], name="unit_id")
    cfg = RiskSettings(population=population, min_population=min_population)
    got, want = _population_keys(units, cfg), _keys_per_unit(units, cfg)
    pd.testing.assert_series_equal(got, want)


@settings(max_examples=30, deadline=None)
@given(
    ranks=st.lists(st.integers(1, 4), max_size=40),
    names=st.lists(st.sampled_from(["red", "#d7191c", "", None]), min_size=4, max_size=4),
)
def test_level_names_by_rank_equal_a_column_of_the_strings(
    ranks: list[int], names: list[Any]
) -> None:
    from trafficunit.risk.scoring import _by_rank

    rank = np.asarray(ranks, dtype=np.int64)
    want, got = pd.DataFrame(index=range(len(rank))), pd.DataFrame(index=range(len(rank)))
    want["level"] = np.array(names, dtype=object)[rank - 1]
    got["level"] = _by_rank(names, rank, got.index)
    pd.testing.assert_frame_equal(got, want)
