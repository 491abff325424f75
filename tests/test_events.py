"""Reading accidents, hazards and work zones: messy CSVs, GIS formats, real files."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer

import trafficunit as tu
from trafficunit import TrafficUnitWarning, ValidationError
from trafficunit.errors import CRSError, InputFileError
from trafficunit.events import FIELDS, to_float
from trafficunit.presets import PRESETS, get_preset

from .conftest import shared_path

# Helsinki GK25 (EPSG:3879) positions near the Senate Square
E0, N0 = 25_497_000.0, 6_673_400.0


def read_quiet(*args: object, **kwargs: object) -> gpd.GeoDataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrafficUnitWarning)
        return tu.read_events(*args, **kwargs)


# ------------------------------------------------------------------------------------------
# messy CSVs


def test_latin1_semicolons_decimal_commas_spaces_and_quoted_newlines(tmp_path: Path) -> None:
    text = (
        " Id ; Päivä ; Itä ; Pohjoinen ; Vakavuus ; Kuvaus \r\n"
        ' 7 ; 09.03.2011 ; 25497000,5 ; 6673400,25 ; 3 ; "Törmäys; kaksi\r\nriviä" \r\n'
        "8;17.06.2011;25497100;6673500;1;ei kuvausta\r\n"
    )
    path = tmp_path / "onnettomuudet.csv"
    path.write_bytes(text.encode("latin-1"))
    ev = tu.read_events(
        path,
        kind="accident",
        x="Itä",
        y="Pohjoinen",
        crs=3879,
        event_id="Id",
        time="Päivä",
        time_format="%d.%m.%Y",
        severity="Vakavuus",
        severity_map={1: "O", 2: "B", 3: "K"},
        tz="Europe/Helsinki",
    )
    rep = ev.attrs["report"]
    assert rep["sep"] == ";" and rep["encoding"] in ("cp1252", "latin-1")
    assert rep["rows_read"] == 2 and rep["dropped"] == {}
    assert ev["event_id"].tolist() == ["7", "8"]
    assert ev["severity"].tolist() == ["K", "O"]
    assert ev["Kuvaus"].iloc[0] == "Törmäys; kaksi\r\nriviä"
    assert str(ev["time"].iloc[0]) == "2011-03-09 00:00:00+02:00"
    assert ev["year"].tolist() == [2011, 2011]
    assert ev["hour"].isna().all()  # a date without a clock says nothing of the hour
    # the decimal comma was honoured: back in GK25 the point is at the half metre
    tr = Transformer.from_crs(4326, 3879, always_xy=True)
    x, y = tr.transform(ev.geometry.iloc[0].x, ev.geometry.iloc[0].y)
    assert x == pytest.approx(25_497_000.5, abs=1e-3) and y == pytest.approx(6_673_400.25, abs=1e-3)


def test_utf8_bom_and_tabs_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "tabs.tsv"
    path.write_bytes(
        "\ufefflon\tlat\tsev\twhen\n24.95\t60.17\tSerious\t2024-05-01 07:15\n".encode()
    )
    ev = read_quiet(path, kind="accident", x="lon", y="lat", crs=4326, severity="sev", time="when")
    assert ev.attrs["report"]["encoding"] == "utf-8-sig" and ev.attrs["report"]["sep"] == "\t"
    assert ev["severity"].tolist() == ["A"] and ev["hour"].tolist() == [7]


def test_every_dropped_row_is_counted_with_its_reason(tmp_path: Path) -> None:
    rows = [
        "id,lon,lat,severity,date",
        "a,24.95,60.17,fatal,2024-01-01 10:00",  # kept
        "b,,60.17,fatal,2024-01-01",  # missing coordinates
        "c,abc,60.17,fatal,2024-01-01",  # unparseable
        "d,24.95,95.0,fatal,2024-01-01",  # outside the valid area
        "e,24.95,60.17,fatal,31.02.2024 25:61",  # bad time
        "f,24.95,60.17,a bit bent,2024-01-01",  # unknown severity
        "g,24.95,60.17,,2024-01-01",  # missing severity
        "a,24.96,60.18,slight,2024-01-02",  # duplicate id
        "h,0,0,slight,2024-01-02",  # zeros are a placeholder, not a position
    ]
    path = tmp_path / "crashes.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    kwargs = {
        "kind": "accident",
        "x": "lon",
        "y": "lat",
        "crs": 4326,
        "event_id": "id",
        "severity": "severity",
        "time": "date",
        "tz": "UTC",
    }
    with pytest.warns(TrafficUnitWarning, match="dropped 8 of 9 rows"):
        ev = tu.read_events(path, **kwargs)
    rep = ev.attrs["report"]
    assert ev["event_id"].tolist() == ["a"]
    assert rep["rows_read"] == 9 and rep["rows_kept"] == 1
    assert rep["dropped"] == {
        "missing coordinates": 1,
        "coordinates (0, 0)": 1,
        "unparseable coordinates": 1,
        "outside the valid area": 1,
        "bad time": 1,
        "unknown severity": 1,
        "missing severity": 1,
        "duplicate id": 1,
    }
    assert rep["examples"]["bad time"] == [{"row": 5, "date": "31.02.2024 25:61"}]
    assert rep["unknown_values"]["severity"] == {"a bit bent": 1}
    with pytest.raises(ValidationError, match=r"8 of 9 rows are unusable.*'a bit bent'"):
        tu.read_events(path, strict=True, **kwargs)


def test_valid_area_of_a_national_grid(tmp_path: Path) -> None:
    # a GK25 (EPSG:3879) table with an easting typed without its zone prefix 25
    table = pd.DataFrame({"E": [E0, 497_000.0], "N": [N0, N0], "s": ["K", "K"]})
    ev = read_quiet(table, kind="accident", x="E", y="N", crs=3879, severity="s")
    assert ev.attrs["report"]["dropped"] == {"outside the valid area": 1}
    # a user's own area
    box = (24.9, 60.1, 25.0, 60.2)
    ev = read_quiet(
        table.iloc[:1], kind="accident", x="E", y="N", crs=3879, severity="s", valid_area=box
    )
    assert len(ev) == 1
    ev = read_quiet(
        table.iloc[:1],
        kind="accident",
        x="E",
        y="N",
        crs=3879,
        severity="s",
        valid_area=(0, 0, 1, 1),
    )
    assert len(ev) == 0


def test_cgcs2000_gauss_kruger_zone() -> None:
    # Shenzhen in CGCS2000 / 3-degree Gauss-Kruger CM 114E (EPSG:4547), false easting 500 km
    to_gk = Transformer.from_crs(4490, 4547, always_xy=True)
    x, y = to_gk.transform(114.0579, 22.5431)
    table = pd.DataFrame({"x": [f"{x:.3f}".replace(".", ",")], "y": [y], "s": ["重伤"]})
    ev = tu.read_events(table, kind="accident", x="x", y="y", crs=4547, severity="s")
    p = ev.geometry.iloc[0]
    assert (p.x, p.y) == pytest.approx((114.0579, 22.5431), abs=1e-7)
    assert ev["severity"].tolist() == ["A"]


def test_to_float_handles_the_ways_people_write_numbers() -> None:
    s = pd.Series(["25501661,91", " 1 234,5 ", "1,234.5", "1.234,5", "-3", "x", None, "7."])
    out = to_float(s)
    assert out.iloc[:5].tolist() == [25501661.91, 1234.5, 1234.5, 1234.5, -3.0]
    assert math.isnan(out.iloc[5]) and math.isnan(out.iloc[6]) and out.iloc[7] == 7.0


# ------------------------------------------------------------------------------------------
# times


def test_times_year_only_date_plus_hour_and_offsets() -> None:
    table = pd.DataFrame(
        {
            "x": [24.95] * 4,
            "y": [60.17] * 4,
            "when": ["2019", "2020-02-03", "2021-06-01T10:30:00Z", "2022-07-01 08:00+03:00"],
            "h": [None, "14", None, None],
            "s": ["O"] * 4,
        }
    )
    ev = tu.read_events(
        table,
        kind="accident",
        x="x",
        y="y",
        crs=4326,
        time="when",
        severity="s",
        columns={"hour": "h"},
        tz="Europe/Helsinki",
    )
    assert pd.isna(ev["time"].iloc[0]) and ev["year"].iloc[0] == 2019
    assert str(ev["time"].iloc[1]) == "2020-02-03 14:00:00+02:00"
    assert str(ev["time"].iloc[2]) == "2021-06-01 13:30:00+03:00"  # Z converted
    assert str(ev["time"].iloc[3]) == "2022-07-01 08:00:00+03:00"
    assert ev["year"].tolist() == [2019, 2020, 2021, 2022]
    assert str(ev["time"].dtype) == "datetime64[us, Europe/Helsinki]"


def test_naive_times_are_local_time_looked_up_from_the_coordinates() -> None:
    table = pd.DataFrame({"x": [24.95], "y": [60.17], "t": ["2020-01-01 22:00"], "s": ["K"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrafficUnitWarning)  # nothing to warn about
        ev = tu.read_events(table, kind="accident", x="x", y="y", crs=4326, time="t", severity="s")
    assert str(ev["time"].iloc[0]) == "2020-01-01 22:00:00+02:00"
    assert str(ev["time"].dtype) == "datetime64[us, Europe/Helsinki]"
    assert ev["hour"].tolist() == [22]  # an evening crash stays in the evening
    rep = ev.attrs["report"]
    assert rep["tz"] == "Europe/Helsinki" and rep["tz_how"] == "looked up from the coordinates"
    # tz= overrides the lookup
    ev = tu.read_events(
        table, kind="accident", x="x", y="y", crs=4326, time="t", severity="s", tz="UTC"
    )
    assert str(ev["time"].iloc[0]) == "2020-01-01 22:00:00+00:00"
    assert ev.attrs["report"]["tz_how"] == "given"


def test_date_and_clock_columns_joined() -> None:
    table = pd.DataFrame(
        {"x": [-0.09], "y": [51.51], "d": ["2025/08/11"], "c": ["12:29"], "s": ["Slight"]}
    )
    ev = tu.read_events(
        table,
        kind="accident",
        x="x",
        y="y",
        crs=4326,
        time=["d", "c"],
        severity="s",
        tz="Europe/London",
    )
    assert str(ev["time"].iloc[0]) == "2025-08-11 12:29:00+01:00"
    assert ev["hour"].iloc[0] == 12 and ev["severity"].iloc[0] == "B"


def test_severity_from_counts_when_no_severity_column() -> None:
    table = pd.DataFrame(
        {"x": [24.95] * 4, "y": [60.17] * 4, "dead": [1, 0, 0, None], "hurt": [0, 2, 0, None]}
    )
    ev = tu.read_events(
        table,
        kind="accident",
        x="x",
        y="y",
        crs=4326,
        columns={"deaths": "dead", "injuries": "hurt"},
    )
    assert ev["severity"].tolist()[:3] == ["K", "B", "O"] and pd.isna(ev["severity"].iloc[3])
    assert ev["deaths"].dtype == "Int64"


# ------------------------------------------------------------------------------------------
# hazards, work zones, geometry


def test_hazards_grades_and_work_zone_windows() -> None:
    hz = pd.DataFrame(
        {
            "x": [114.05, 114.06, 114.07],
            "y": [22.54] * 3,
            "g": ["一般", "重大", "catastrophic"],
            "cat": ["  signs ", "lighting", "x"],
        }
    )
    ev = read_quiet(
        hz, kind="hazard", x="x", y="y", crs=4490, columns={"grade": "g", "category": "cat"}
    )
    assert ev["grade"].tolist() == ["general", "major"]
    assert ev["category"].tolist() == ["signs", "lighting"]
    assert ev.attrs["report"]["dropped"] == {"unknown grade": 1}
    assert list(ev.columns[: len(FIELDS["hazard"]) + 1]) == [
        "event_id",
        "kind",
        "category",
        "grade",
        "status",
        "reported_at",
        "road_name",
    ]


def test_wkt_column_with_srid_falls_back_to_xy_and_buffers() -> None:
    table = pd.DataFrame(
        {
            "wkt": ["SRID=27700;LINESTRING(601645 141579,601589 141588)", None, "not wkt"],
            "e": [None, 601591.0, 601591.0],
            "n": [None, 141588.0, 141588.0],
            "from": ["2018-06-01", "2018-06-02", "2018-06-03"],
            "to": ["2018-06-05", "2018-06-03", "2018-06-04"],
        }
    )
    ev = read_quiet(
        table,
        kind="workzone",
        geometry="wkt",
        x="e",
        y="n",
        crs=27700,
        columns={"start": "from", "end": "to"},
        tz="Europe/London",
    )
    assert ev.attrs["report"]["dropped"] == {"unparseable coordinates": 1}
    assert ev.geom_type.tolist() == ["LineString", "Point"]
    buffered = read_quiet(
        table.iloc[:2],
        kind="workzone",
        geometry="wkt",
        x="e",
        y="n",
        crs=27700,
        columns={"start": "from", "end": "to"},
        tz="Europe/London",
        buffer_m=10,
    )
    assert buffered.geom_type.tolist() == ["Polygon", "Polygon"]
    area = buffered.to_crs(27700).area.iloc[1]
    assert area == pytest.approx(math.pi * 100, rel=0.02)


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".parquet", ".shp"])
def test_gis_formats_carry_geometry_and_crs(tmp_path: Path, suffix: str) -> None:
    gdf = gpd.GeoDataFrame(
        {"id": ["1", "2"], "sev": ["fatal", "PDO"]},
        geometry=[shapely.Point(E0, N0), shapely.Point(E0 + 100, N0)],
        crs=3879,
    )
    path = tmp_path / f"events{suffix}"
    if suffix == ".parquet":
        gdf.to_parquet(path)
    else:
        gdf.to_file(path)
    ev = tu.read_events(path, kind="accident", event_id="id", severity="sev")
    assert ev.crs.to_epsg() == 4326 and ev["severity"].tolist() == ["K", "O"]
    lon, lat = Transformer.from_crs(3879, 4326, always_xy=True).transform(E0, N0)
    assert (ev.geometry.iloc[0].x, ev.geometry.iloc[0].y) == pytest.approx((lon, lat), abs=1e-9)


def test_shapefile_without_crs_needs_one(tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame({"sev": ["K"]}, geometry=[shapely.Point(24.95, 60.17)])
    path = tmp_path / "nocrs.shp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gdf.to_file(path)
    with pytest.raises(CRSError, match="give crs="):
        tu.read_events(path, kind="accident", severity="sev")
    ev = tu.read_events(path, kind="accident", severity="sev", crs=4326)
    assert len(ev) == 1


def test_helpful_errors() -> None:
    table = pd.DataFrame({"longitude": [1.0], "latitude": [2.0], "sev": ["K"]})
    with pytest.raises(ValidationError, match="did you mean 'longitude'"):
        tu.read_events(table, kind="accident", x="longitud", y="latitude", crs=4326)
    with pytest.raises(ValidationError, match="longitude, latitude"):
        tu.read_events(table, kind="accident", severity="sev")
    with pytest.raises(CRSError, match="give crs="):
        tu.read_events(table, kind="accident", x="longitude", y="latitude")
    with pytest.raises(ValidationError, match="kind must be one of"):
        tu.read_events(table, kind="crash", x="longitude", y="latitude", crs=4326)
    with pytest.raises(ValidationError, match="unknown preset"):
        get_preset("nowhere")
    with pytest.raises(InputFileError, match="no such file"):
        tu.read_events("/nonexistent/file.csv", kind="accident")
    with pytest.raises(ValidationError, match="severity_map gives"):
        tu.read_events(
            table,
            kind="accident",
            x="longitude",
            y="latitude",
            crs=4326,
            severity="sev",
            severity_map={"K": "fatal"},
        )


def test_inputs_not_mutated_and_extra_columns_kept() -> None:
    table = pd.DataFrame({"x": [24.95], "y": [60.17], "s": ["K"], "kind": ["car"], "note": ["z"]})
    before = table.copy()
    ev = tu.read_events(table, kind="accident", x="x", y="y", crs=4326, severity="s")
    pd.testing.assert_frame_equal(table, before)
    assert ev["kind"].iloc[0] == "accident" and ev["src_kind"].iloc[0] == "car"
    assert ev["note"].iloc[0] == "z"


# ------------------------------------------------------------------------------------------
# real files


def read_preset(name: str) -> gpd.GeoDataFrame:
    path = shared_path(*PRESETS[name].file.split("/"))
    return read_quiet(path, preset=name)


def test_real_helsinki_city() -> None:
    ev = read_preset("helsinki-city")
    rep = ev.attrs["report"]
    assert (rep["rows_read"], rep["rows_kept"]) == (52_312, 52_310)
    assert rep["dropped"] == {"missing coordinates": 2}
    assert rep["sep"] == ";" and rep["crs"] == "EPSG:3879"
    assert ev["severity"].value_counts().to_dict() == {"O": 41_624, "B": 10_485, "K": 201}
    assert ev["time"].isna().all() and ev["year"].min() == 2000 and ev["year"].max() == 2022
    lon, lat = ev.geometry.x, ev.geometry.y
    assert lon.between(24.7, 25.3).all() and lat.between(60.1, 60.3).all()


def test_real_helsinki_fta() -> None:
    ev = read_preset("helsinki-fta")
    rep = ev.attrs["report"]
    assert (rep["rows_read"], rep["rows_kept"]) == (10_081, 10_075)
    # the two outliers the data README mentions lie ~790 km from the rest
    assert rep["dropped"] == {"missing coordinates": 4, "far outside the data's extent": 2}
    assert ev["severity"].value_counts().to_dict() == {"O": 8_691, "B": 1_361, "K": 23}
    first = ev.iloc[0]
    # Päivä 09.03.2011, Tunti 13 (the 13th hour: 12:00-12:59), Helsinki winter time
    assert str(first["time"]) == "2011-03-09 12:00:00+02:00" and first["hour"] == 12
    assert first["road_name"] == "HUOPALAHDENTIE X TURUNVÄYLÄ"
    assert first["collision_type"] == "rear-end" and first["light"] == "daylight"
    # fatal severity and the death count agree row by row
    assert ((ev["severity"] == "K") == (ev["deaths"] > 0)).all() and ev["deaths"].sum() == 23
    assert ev["injuries"].sum() == 1_677
    assert ev["hour"].dropna().between(0, 23).all()


def test_real_portland_columbus_london() -> None:
    pdx = read_preset("portland")
    assert len(pdx) == 5_890 and pdx.attrs["report"]["encoding"] == "utf-8-sig"
    # SE Division St typed at latitude 46.50 instead of 45.50, 111 km north of the rest
    assert pdx.attrs["report"]["dropped"] == {"far outside the data's extent": 1}
    assert pdx.attrs["report"]["examples"]["far outside the data's extent"][0]["LAT"] == (
        "46.50444444"
    )
    assert pdx["severity"].value_counts().to_dict() == {"B": 3_040, "O": 2_831, "K": 19}
    assert str(pdx["time"].iloc[0]) == "2007-01-02 15:00:00-08:00"
    assert pdx["hour"].isna().sum() == 52  # CRASH_HR_NO 99 = unknown
    assert pdx["road_name"].iloc[0] == "SE 122ND AVE"
    cmh = read_preset("columbus")
    assert len(cmh) == 3_040 and cmh["time"].isna().all()
    assert cmh["severity"].value_counts().to_dict() == {
        "B": 1_528,
        "C": 674,
        "A": 532,
        "K": 153,
        "O": 153,
    }
    ldn = read_preset("london-stats19")
    assert len(ldn) == 20_876 and ldn["time"].notna().all()
    assert ldn["severity"].value_counts().to_dict() == {"B": 17_029, "A": 3_754, "K": 93}
    assert ldn["event_id"].is_unique


def test_real_boston_cad_and_safety_reports() -> None:
    cad = read_preset("boston-cad")
    rep = cad.attrs["report"]
    # 11 dispatches placed in the Atlantic, ~900 km from Boston
    assert rep["dropped"] == {
        "unknown severity": 16,
        "far outside the data's extent": 11,
        "duplicate id": 1,
    }
    assert rep["unknown_values"]["severity"]["PICK A SUB-TYPE"] == 4
    assert str(cad["time"].iloc[0]) == "2016-01-01 00:56:45-05:00"
    hz = read_preset("boston-safety-reports")
    assert len(hz) == 8_503 and (hz["kind"] == "hazard").all()
    assert hz["event_id"].is_unique
    assert hz["event_id"].str.startswith("row").sum() == 11  # 11 reports without an id
    assert not hz["category"].str.contains("&nbsp;").any()
    assert hz["category"].nunique() == 21
    assert (hz["grade"] == "general").all() and (hz["status"] == "Unassigned").all()
    assert hz["COMMENTS"].str.contains("\n").any()  # quoted newlines survived


def test_real_ashford_work_zones_and_time_windows() -> None:
    wz = read_preset("ashford-roadworks")
    assert len(wz) == 981
    assert wz.geom_type.value_counts().to_dict() == {"Point": 847, "LineString": 129, "Polygon": 5}
    assert (wz["end"] >= wz["start"]).all()
    assert wz["start"].min() == pd.Timestamp("2018-03-12", tz="Europe/London")
    assert str(wz["end"].iloc[0]) == "2018-06-29 23:59:59+01:00"
    at = pd.Timestamp("2018-06-15 12:00", tz="Europe/London")
    active = tu.join.active_at(wz, at)
    assert len(active) == 134
    assert ((active["start"] <= at) & (active["end"] >= at)).all()
    inactive = wz.drop(active.index)
    assert not ((inactive["start"] <= at) & (inactive["end"] >= at)).any()
    june = tu.join.active_between(wz, "2018-06-01", "2018-06-30")
    assert len(june) == 973
    # the lines are in Ashford (BNG converted to WGS84)
    minx, miny, maxx, maxy = wz.total_bounds
    assert 0.5 < minx < maxx < 1.1 and 51.0 < miny < maxy < 51.3
    assert np.isfinite(wz.to_crs(27700).length).all()


def test_reads_back_what_it_wrote(tmp_path):
    """A file in the standard schema (as trafficunit writes it) needs no column mapping."""
    acc = tu.read_events(
        shared_path("crashes", "helsinki-fta-2011-2016.csv"), preset="helsinki-fta"
    )
    path = tmp_path / "acc.parquet"
    acc.to_parquet(path)
    back = tu.read_events(path, kind="accident")
    assert len(back) == len(acc)
    assert back["event_id"].tolist() == acc["event_id"].tolist()
    assert (back["time"] == acc["time"]).all()  # same instants (time zone may be normalised)
    assert back["severity"].tolist() == acc["severity"].tolist()
    assert back["hour"].tolist() == acc["hour"].tolist()
    assert not [c for c in back.columns if str(c).startswith("src_")]
