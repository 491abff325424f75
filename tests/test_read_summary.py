"""No silent guesses in read_events and `trafficunit join`: encodings, time zones, clock-only
times, implausible positions, the read summary and the join verb's failures."""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import trafficunit as tu
from trafficunit import TrafficUnitWarning, ValidationError
from trafficunit.chinacrs import wgs84_to_gcj02
from trafficunit.cli import app
from trafficunit.cli.join import cli_words
from trafficunit.errors import InputFileError
from trafficunit.events import clock_only

from .conftest import shared_path
from .test_join import make_units

runner = CliRunner()

# Real places in Shenzhen (WGS84 longitude, latitude): Civic Center, Futian station, Luohu
# station, Shenzhen North station, Nanshan's Shenzhen Bay Sports Center, Shekou ferry terminal
SHENZHEN = [
    (114.0596, 22.5430),
    (114.0556, 22.5363),
    (114.1173, 22.5320),
    (114.0295, 22.6094),
    (113.9440, 22.5190),
    (113.9163, 22.4838),
]


def read_quiet(*args: object, **kwargs: object) -> gpd.GeoDataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrafficUnitWarning)
        return tu.read_events(*args, **kwargs)


def shenzhen_csv(path: Path, encoding: str) -> list[tuple[float, float]]:
    """A crash table as a Shenzhen office writes it: Chinese headers, GCJ-02 positions (as
    AMap gives them), naive Beijing times, written in ``encoding``."""
    lon, lat = np.array(SHENZHEN).T
    glon, glat = wgs84_to_gcj02(lon, lat)
    rows = ["事故编号,经度,纬度,事故等级,发生时间,道路名称"]
    sev = ["轻伤", "重伤", "死亡", "财产损失", "轻伤", "重伤"]
    roads = ["深南大道", "福华路", "人民南路", "民治大道", "滨海大道", "望海路"]
    for i, (a, b) in enumerate(zip(glon, glat, strict=True)):
        rows.append(
            f"SZ{i:03d},{a:.6f},{b:.6f},{sev[i]},2024-03-0{i + 1} 21:{10 + i}:00,{roads[i]}"
        )
    path.write_bytes(("\n".join(rows) + "\n").encode(encoding))
    return list(zip(lon, lat, strict=True))


# ------------------------------------------------------------------------------------------
# encodings


@pytest.mark.parametrize("encoding", ["gb18030", "gbk"])
def test_chinese_csv_with_only_x_y_crs_is_read_in_beijing_time(
    tmp_path: Path, encoding: str
) -> None:
    path = tmp_path / "事故.csv"
    wgs = shenzhen_csv(path, encoding)
    ev = tu.read_events(path, kind="accident", x="经度", y="纬度", crs="gcj02")
    rep = ev.attrs["report"]
    assert rep["encoding"] == "gb18030" and rep["encoding_how"].startswith("detected")
    # times: naive, local in Shenzhen, looked up from the coordinates
    assert str(ev["time"].dtype) == "datetime64[us, Asia/Shanghai]"
    assert str(ev["time"].iloc[0]) == "2024-03-01 21:10:00+08:00"
    assert ev["hour"].tolist() == [21] * 6  # evening crashes stay in the evening
    # Luohu station sits on the Hong Kong border: its zone is Hong Kong's, the same clock
    assert rep["tz"] == "Asia/Shanghai" and rep["tz_how"].startswith("looked up from the coord")
    assert rep["tz_zones"] == {"Asia/Shanghai": 5, "Asia/Hong_Kong": 1}
    # the Chinese columns were recognised by name and checked by content, and say so
    assert ev["severity"].tolist() == ["B", "A", "K", "O", "B", "A"]
    assert ev["road_name"].iloc[0] == "深南大道" and ev["event_id"].iloc[0] == "SZ000"
    assert rep["fields"]["time"].startswith("'发生时间' (taken for its name")
    assert rep["fields"]["severity"].startswith("'事故等级' (taken for its name")
    assert rep["fields"]["position"] == "x '经度', y '纬度' (crs gcj02)"
    # GCJ-02 converted back to WGS84 within a metre
    got = np.column_stack([ev.geometry.x, ev.geometry.y])
    assert np.abs(got - np.array(wgs)).max() < 1e-5


def test_big5_cp1252_and_utf8_bom_are_told_apart(tmp_path: Path) -> None:
    big5 = tmp_path / "taipei.csv"
    big5.write_bytes(
        (
            "編號,經度,緯度,事故類別,路名\n"
            "1,121.5170,25.0478,死亡,忠孝東路\n2,121.5440,25.0330,重傷,信義路\n"
            "3,121.5250,25.0520,輕傷,中山北路\n"
        ).encode("big5")
    )
    ev = tu.read_events(big5, kind="accident", x="經度", y="緯度", crs=4326, road_name="路名")
    assert ev.attrs["report"]["encoding"] == "big5"
    assert ev["road_name"].tolist() == ["忠孝東路", "信義路", "中山北路"]
    latin = tmp_path / "helsinki.csv"
    latin.write_bytes(
        "id;itä;pohjoinen;päivä;vakavuus;sää\n"
        "1;25497000;6673400;1.3.2015;vähäinen;selkeä\n"
        "2;25497100;6673500;2.3.2015;vakava;räntä\n".encode("cp1252")
    )
    ev = read_quiet(latin, kind="accident", x="itä", y="pohjoinen", crs=3879)
    assert ev.attrs["report"]["encoding"] == "cp1252"
    assert ev["sää"].tolist() == ["selkeä", "räntä"]
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffx,y,päivä\n24.95,60.17,2020-01-01\n".encode())
    ev = tu.read_events(bom, kind="accident", x="x", y="y", crs=4326)
    assert ev.attrs["report"]["encoding"] == "utf-8-sig"


def test_wrong_encoding_says_the_header_looks_misdecoded(tmp_path: Path) -> None:
    path = tmp_path / "事故.csv"
    shenzhen_csv(path, "gb18030")
    with pytest.raises(ValidationError, match="looks mis-decoded.*encoding=") as err:
        tu.read_events(path, kind="accident", x="经度", y="纬度", crs="gcj02", encoding="latin-1")
    assert "'gb18030'" in str(err.value)
    # the CLI names its flag
    res = runner.invoke(
        app,
        ["join", str(path), str(path), "--x", "经度", "--y", "纬度", "--crs", "gcj02"]
        + ["--encoding", "latin-1", "-o", str(tmp_path / "j.parquet")],
    )
    assert res.exit_code == 2 and "--encoding" in res.output and "encoding=" not in res.output
    # an encoding that cannot decode the file at all
    with pytest.raises(InputFileError, match="cannot decode the file as 'utf-8'"):
        tu.read_events(path, kind="accident", x="经度", y="纬度", crs="gcj02", encoding="utf-8")


# ------------------------------------------------------------------------------------------
# clock times, future and ancient dates


def test_london_without_a_time_option_never_gets_the_run_date() -> None:
    path = shared_path("crashes", "london-2025.csv")
    with pytest.warns(TrafficUnitWarning, match="clock times only"):
        ev = tu.read_events(path, kind="accident", x="longitude", y="latitude", crs=4326)
    rep = ev.attrs["report"]
    # the column 'time' holds clock times only: no event time rather than a guessed date, and
    # the note names the date column to give with it
    assert ev["time"].isna().all()
    assert rep["fields"]["time"] == "-"
    assert any("clock times only" in n and "'date'" in n for n in rep["notes"])
    # given both columns, the times are the file's own dates and clock times
    ev = tu.read_events(
        path, kind="accident", x="longitude", y="latitude", crs=4326, time=["date", "time"]
    )
    raw = pd.read_csv(path, usecols=["date", "time"], dtype=str)
    expect = pd.to_datetime(raw["date"] + " " + raw["time"], format="%Y/%m/%d %H:%M")
    got = ev["time"].dt.tz_localize(None).to_numpy()
    assert (got == expect.to_numpy()).all()
    rep = ev.attrs["report"]
    assert rep["tz"] == "Europe/London"
    # every standard field says where it came from
    assert set(rep["fields"]) == {"position", *tu.events.FIELDS["accident"]}
    assert rep["fields"]["severity"].startswith("'accident_severity' (taken for its name")
    assert ev["severity"].value_counts().to_dict() == {"B": 17_029, "A": 3_754, "K": 93}
    assert rep["fields"]["deaths"] == "-"


def test_clock_times_alone_are_never_completed_with_a_date() -> None:
    table = pd.DataFrame({"lon": [-0.09, -0.1], "lat": [51.51, 51.52], "time": ["12:29", "08:32"]})
    # taken for its name, with no date column beside it: left out, with a warning
    with pytest.warns(TrafficUnitWarning, match="clock times only"):
        ev = tu.read_events(table, kind="accident", x="lon", y="lat", crs=4326)
    assert ev["time"].isna().all() and ev["year"].isna().all()
    assert ev.attrs["report"]["fields"]["time"] == "-"
    # named by the user: an error that says what to give
    with pytest.raises(ValidationError, match=r"clock times only \(e.g. '12:29'\)"):
        tu.read_events(table, kind="accident", x="lon", y="lat", crs=4326, time="time")
    # two date columns: which one is not guessed
    table["reported"] = ["2025-01-02", "2025-01-03"]
    table["occurred"] = ["2025-01-01", "2025-01-02"]
    with pytest.raises(ValidationError, match="'reported', 'occurred'"):
        tu.read_events(table, kind="accident", x="lon", y="lat", crs=4326, time="time")
    # a time format without a year is refused, not completed
    with pytest.raises(ValidationError, match="has no year"):
        tu.read_events(
            table, kind="accident", x="lon", y="lat", crs=4326, time="time", time_format="%H:%M"
        )


def test_future_and_pre_1900_events_are_dropped_with_a_reason() -> None:
    nxt = pd.Timestamp.now(tz="UTC").year + 1
    table = pd.DataFrame(
        {
            "x": [24.95] * 5,
            "y": [60.17] * 5,
            "t": ["2020-05-01 10:00", f"{nxt}-01-01 10:00", "1899-12-31", "12:00", str(nxt)],
        }
    )
    with pytest.warns(TrafficUnitWarning, match="dropped 4 of 5"):
        ev = tu.read_events(table, kind="accident", x="x", y="y", crs=4326, time="t")
    rep = ev.attrs["report"]
    assert rep["dropped"] == {
        "dated in the future": 2,
        "dated before 1900": 1,
        "time without a date": 1,
    }
    assert [e["row"] for e in rep["examples"]["dated in the future"]] == [2, 5]
    assert ev["time"].tolist() == [pd.Timestamp("2020-05-01 10:00", tz="Europe/Helsinki")]


@given(st.from_regex(r"\d{1,2}:\d{2}(:\d{2})?( ?[AaPp][Mm])?", fullmatch=True))
@settings(max_examples=60, deadline=None)
def test_any_clock_time_is_recognised_as_one(text: str) -> None:
    assert clock_only(pd.Series([text])).all()
    assert not clock_only(pd.Series([f"2024-01-02 {text}"])).any()


# ------------------------------------------------------------------------------------------
# time zones


def test_naive_helsinki_times_come_out_in_helsinki() -> None:
    path = shared_path("crashes", "helsinki-fta-2011-2016.csv")
    # the preset's columns without its tz: the zone comes from the coordinates
    kw = tu.presets.get_preset("helsinki-fta").read_kwargs()
    kw.pop("tz")
    ev = read_quiet(path, **kw)
    assert str(ev["time"].dtype) == "datetime64[us, Europe/Helsinki]"
    assert str(ev["time"].iloc[0]) == "2011-03-09 12:00:00+02:00"
    assert ev.attrs["report"]["tz_how"] == "looked up from the coordinates"


def test_rows_in_several_zones_keep_their_local_hour() -> None:
    table = pd.DataFrame(
        {
            "x": [24.95, -0.09, 114.06],
            "y": [60.17, 51.51, 22.54],
            "t": ["2024-01-10 22:00", "2024-01-10 22:00", "2024-01-10 22:00"],
        }
    )
    ev = tu.read_events(table, kind="accident", x="x", y="y", crs=4326, time="t")
    assert str(ev["time"].dtype) == "datetime64[us, UTC]"
    assert ev["time"].dt.strftime("%H:%M").tolist() == ["20:00", "22:00", "14:00"]
    assert ev["hour"].tolist() == [22, 22, 22]
    rep = ev.attrs["report"]
    assert rep["tz_zones"] == {"Europe/Helsinki": 1, "Europe/London": 1, "Asia/Shanghai": 1}
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        tu.read_events(table, kind="accident", x="x", y="y", crs=4326, time="t", tz="Mars/Olympus")


# ------------------------------------------------------------------------------------------
# columns taken for their name only when their content passes


def test_columns_named_like_fields_are_checked_by_content() -> None:
    table = pd.DataFrame(
        {
            "x": [24.95, 24.96, 24.97],
            "y": [60.17, 60.17, 60.18],
            "severity": [1, 2, 3],  # codes: not labels
            "id": ["a", "a", "b"],  # not unique
            "year": [2019, 2020, 2021],
        }
    )
    ev = tu.read_events(table, kind="accident", x="x", y="y", crs=4326)
    rep = ev.attrs["report"]
    assert len(ev) == 3  # nothing dropped for a column the user did not name
    assert ev["severity"].isna().all() and ev["year"].tolist() == [2019, 2020, 2021]
    notes = " ".join(rep["notes"])
    assert "column 'severity' not used for severity" in notes and "severity_map=" in notes
    assert "column 'id' not used for event_id: its values are not unique" in notes
    assert rep["fields"]["year"].startswith("'year' (taken for its name")
    # named by the user, the codes are mapped as told
    ev = tu.read_events(
        table, kind="accident", x="x", y="y", crs=4326, severity="severity",
        severity_map={1: "O", 2: "B", 3: "K"},
    )  # fmt: skip
    assert ev["severity"].tolist() == ["O", "B", "K"]
    assert ev.attrs["report"]["fields"]["severity"] == "'severity' (given)"


# ------------------------------------------------------------------------------------------
# positions that cannot be right


E0, N0 = 25_497_000.0, 6_673_400.0  # Helsinki, EPSG:3879


def test_swapped_zero_and_far_positions_are_dropped_with_reasons() -> None:
    rng = np.random.default_rng(7)
    e = E0 + rng.uniform(-3000, 3000, 40)
    n = N0 + rng.uniform(-3000, 3000, 40)
    e[3], n[3] = n[3], e[3]  # swapped
    e[5], n[5] = 0.0, 0.0  # placeholder
    e[8] = E0 + 900_000.0  # 900 km east: outside the area where GK25 is used
    n[9] = N0 + 600_000.0  # 600 km north: inside GK25's area, far from every other crash
    table = pd.DataFrame({"E": e, "N": n})
    with pytest.warns(TrafficUnitWarning, match="dropped"):
        ev = tu.read_events(table, kind="accident", x="E", y="N", crs=3879)
    rep = ev.attrs["report"]
    assert rep["dropped"]["x and y swapped"] == 1
    assert rep["dropped"]["coordinates (0, 0)"] == 1
    assert rep["dropped"]["outside the valid area"] == 1
    assert rep["dropped"]["far outside the data's extent"] == 1
    assert sum(rep["dropped"].values()) == 4 and len(ev) == 36
    rows = {r: [ex["row"] for ex in exs] for r, exs in rep["examples"].items()}
    assert rows == {
        "x and y swapped": [4],
        "coordinates (0, 0)": [6],
        "outside the valid area": [9],
        "far outside the data's extent": [10],
    }


def test_a_file_with_every_axis_swapped_says_so() -> None:
    table = pd.DataFrame({"E": [N0 + i for i in range(10)], "N": [E0 + i for i in range(10)]})
    with pytest.warns(TrafficUnitWarning):
        ev = tu.read_events(table, kind="accident", x="E", y="N", crs=3879)
    assert len(ev) == 0
    assert ev.attrs["report"]["dropped"] == {"x and y swapped": 10}
    assert any("x='N' y='E'" in h for h in ev.attrs["report"]["hints"])


def test_degrees_given_for_a_metric_crs() -> None:
    table = pd.DataFrame({"lon": np.linspace(24.9, 25.0, 6), "lat": np.linspace(60.1, 60.2, 6)})
    with pytest.warns(TrafficUnitWarning):
        ev = tu.read_events(table, kind="accident", x="lon", y="lat", crs=3879)
    assert len(ev) == 0
    assert ev.attrs["report"]["dropped"] == {"degrees given for a CRS in metres": 6}
    assert "give crs=4326" in ev.attrs["report"]["hints"][0]


@given(
    st.lists(st.tuples(st.floats(24.80, 25.10), st.floats(60.10, 60.30)), min_size=20, max_size=60)
)
@settings(max_examples=25, deadline=None)
def test_positions_of_one_city_are_never_called_outliers(pts: list[tuple[float, float]]) -> None:
    table = pd.DataFrame(pts, columns=["x", "y"])
    ev = tu.read_events(table, kind="accident", x="x", y="y", crs=4326)
    assert len(ev) == len(pts) and ev.attrs["report"]["dropped"] == {}


# ------------------------------------------------------------------------------------------
# join: the likely mistake when most events miss the network


@pytest.fixture(scope="module")
def london_units() -> gpd.GeoDataFrame:
    net = shared_path("osm", "london-city.osm.pbf")
    return tu.build_units(tu.read_network(net))


def test_join_says_x_and_y_look_swapped_on_a_real_file(london_units: gpd.GeoDataFrame) -> None:
    path = shared_path("crashes", "london-2025.csv")
    ok = tu.read_events(path, kind="accident", x="longitude", y="latitude", crs=4326)
    j = tu.assign(london_units, ok)
    # the file covers Greater London, the network the City: most outside, nothing wrong
    assert j.attrs["report"]["diagnosis"]["likely"] == "wider area"
    swapped = tu.read_events(path, kind="accident", x="latitude", y="longitude", crs=4326)
    j = tu.assign(london_units, swapped)
    rep = j.attrs["report"]
    assert rep["matched"] == 0
    assert rep["diagnosis"]["likely"] == "swapped x/y"
    assert "x and y look swapped" in rep["diagnosis"]["message"]


def test_join_says_the_crs_is_wrong() -> None:
    x0, y0 = 385_000, 6_672_000  # Helsinki, EPSG:3067
    units = make_units(
        [
            ("S_1", [(x0, y0), (x0 + 200, y0)], "Main St", "primary"),
            ("S_2", [(x0 + 100, y0 - 100), (x0 + 100, y0 + 100)], "Cross St", "primary"),
        ]
    )
    # positions in EPSG:3067 declared as Swedish SWEREF99 TM (3006): they land in Sweden
    table = pd.DataFrame({"E": x0 + np.arange(10) * 10.0, "N": [y0 + 3.0] * 10})
    ev = tu.read_events(table, kind="accident", x="E", y="N", crs=3006)
    rep = tu.assign(units, ev).attrs["report"]
    assert rep["diagnosis"]["likely"] == "wrong CRS"
    assert "crs=" in rep["diagnosis"]["message"]


def test_join_says_the_positions_look_like_gcj02() -> None:
    # a street grid in Futian (WGS84), crashes placed on it but recorded from AMap (GCJ-02)
    lon0, lat0 = 114.05, 22.53
    lines = []
    for i in range(6):
        lines.append((f"E{i}", [(lon0, lat0 + i * 0.004), (lon0 + 0.03, lat0 + i * 0.004)]))
        lines.append((f"N{i}", [(lon0 + i * 0.006, lat0), (lon0 + i * 0.006, lat0 + 0.02)]))
    units = make_units([(u, c, None, "primary") for u, c in lines], crs="EPSG:4326")
    rng = np.random.default_rng(3)
    k = rng.integers(1, 5, 60)
    lon = lon0 + rng.uniform(0.002, 0.02, 60)
    lat = lat0 + k * 0.004
    glon, glat = wgs84_to_gcj02(lon, lat)
    table = pd.DataFrame({"lng": glon, "lat": glat})
    wrong = tu.read_events(table, kind="accident", x="lng", y="lat", crs=4326)
    rep = tu.assign(units, wrong).attrs["report"]
    assert rep["diagnosis"]["likely"] == "gcj02" and "crs='gcj02'" in rep["diagnosis"]["message"]
    right = tu.read_events(table, kind="accident", x="lng", y="lat", crs="gcj02")
    rep = tu.assign(units, right).attrs["report"]
    assert rep["matched"] == 60 and rep["diagnosis"] is None


# ------------------------------------------------------------------------------------------
# the join verb


def test_cli_words_name_flags_not_keywords() -> None:
    assert cli_words("pass x= and y= (with crs=) or geometry=") == (
        "pass --x and --y (with --crs) or --geometry"
    )
    assert cli_words("give it: time=['date', 'time'].") == "give it: --time date,time."
    assert cli_words("strict=True raises; tz='Asia/Shanghai'; index=3") == (
        "--strict raises; --tz Asia/Shanghai; index=3"
    )


def test_cli_join_checks_the_output_before_any_work(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "joined.parquet"
    # the events file does not exist: the output is checked first
    res = runner.invoke(
        app, ["join", str(tmp_path / "units.parquet"), "missing.csv", "-o", str(out)]
    )
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "cannot write output" in res.output
    assert "Traceback" not in res.output


def test_cli_join_that_would_write_nothing_keeps_the_old_output(tmp_path: Path) -> None:
    x0, y0 = 385_000, 6_672_000
    units = make_units([("S_1", [(x0, y0), (x0 + 200, y0)], "Main St", "primary")])
    upath = tmp_path / "units.parquet"
    tu.write_table(units, upath)
    good = tmp_path / "good.csv"
    good.write_text(f"E,N\n{x0 + 50},{y0 + 3}\n{x0 + 150},{y0 - 2}\n")
    out = tmp_path / "joined.parquet"
    args = ["join", str(upath), str(good), "--x", "E", "--y", "N", "--crs", "3067", "-o", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "position" in res.output and "x 'E', y 'N' (crs EPSG:3067)" in res.output
    before = out.read_bytes()
    # the same file declared in the wrong CRS: every row dropped at the read
    bad = [a if a != "3067" else "3879" for a in args]
    res = runner.invoke(app, bad)
    assert res.exit_code == 2 and "nothing written" in res.output and "--allow-empty" in res.output
    assert "--crs" in res.output and out.read_bytes() == before
    # every row read, none matched: the events lie 5 km away
    far = tmp_path / "far.csv"
    far.write_text(f"E,N\n{x0 + 5000},{y0 + 3}\n{x0 + 5100},{y0 - 2}\n")
    res = runner.invoke(app, [*args[:2], str(far), *args[3:]])
    assert res.exit_code == 2 and "no event of 2 matched a unit" in res.output
    assert out.read_bytes() == before
    res = runner.invoke(app, [*args[:2], str(far), *args[3:], "--allow-empty"])
    assert res.exit_code == 0 and gpd.read_parquet(out)["unit_id"].isna().all()


def test_cli_join_help_presets_and_kind() -> None:
    res = runner.invoke(app, ["join", "--list-presets"])
    assert res.exit_code == 0 and "helsinki-fta" in res.output and "london-stats19" in res.output
    res = runner.invoke(app, ["join", "--help"], env={"COLUMNS": "160"})
    assert res.exit_code == 0
    assert "<bool>" not in res.output
    assert "accident|hazard|workzone" in res.output and "default: (accident" in res.output
    res = runner.invoke(app, ["join", "u.parquet", "e.csv", "--kind", "crash", "-o", "j.parquet"])
    assert res.exit_code == 2 and "crash" in res.output


def test_cli_join_no_position_names_flags(tmp_path: Path) -> None:
    x0, y0 = 385_000, 6_672_000
    units = make_units([("S_1", [(x0, y0), (x0 + 200, y0)], "Main St", "primary")])
    upath = tmp_path / "units.parquet"
    tu.write_table(units, upath)
    csv = tmp_path / "c.csv"
    csv.write_text("lon,lat\n24.9,60.1\n")
    res = runner.invoke(app, ["join", str(upath), str(csv), "-o", str(tmp_path / "j.parquet")])
    assert res.exit_code == 2
    assert "--x and --y (with --crs)" in res.output and "x=" not in res.output
    assert "lon, lat" in res.output  # the columns that look like coordinates


def test_bulk_zone_lookup_equals_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many positions are tested against zone boundaries in bulk: same answers as the
    one-by-one lookup, the Shenzhen / Hong Kong border included."""
    from trafficunit import events
    from trafficunit.events import timezones

    rng = np.random.default_rng(11)
    lon = np.r_[rng.uniform(113.85, 114.35, 3_000), rng.uniform(-0.5, 0.3, 1_000), np.nan]
    lat = np.r_[rng.uniform(22.45, 22.75, 3_000), rng.uniform(51.3, 51.7, 1_000), 22.5]
    one_by_one = events.zones_at(lon, lat)
    monkeypatch.setattr(timezones, "_ZONE_LOOP_MAX", 100)
    bulk = events.zones_at(lon, lat)
    assert (bulk == one_by_one).all()
    assert set(bulk[:-1]) == {"Asia/Shanghai", "Asia/Hong_Kong", "Europe/London"}
    assert bulk[-1] is None
