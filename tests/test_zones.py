"""Jurisdiction trees: reading both file shapes, GENERATED trees over the Helsinki sample, the
longest-part rule, events by unit, a data folder's zones and the ``zones`` verb."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import trafficunit as tu
from trafficunit.cli import app
from trafficunit.errors import InputFileError, ValidationError
from trafficunit.io import write_table
from trafficunit.zones import (
    Zones,
    assign_events,
    assign_units,
    generate_zones,
    read_folder_zones,
    read_zones,
    write_folder_zones,
    zone_column,
)


@pytest.fixture(scope="module")
def gen(sample_units: gpd.GeoDataFrame) -> Zones:
    return generate_zones(sample_units)


@pytest.fixture(scope="module")
def unit_zones(sample_units: gpd.GeoDataFrame, gen: Zones) -> pd.DataFrame:
    return assign_units(sample_units, gen)


def test_generated_trees_nest_and_are_labelled(gen: Zones) -> None:
    assert gen.trees == {
        "admin": ("city", "district", "street", "community"),
        "police": ("detachment", "brigade", "squadron"),
        "grid": ("grid",),
    }
    f = gen.frame
    assert f["generated"].all() and f["name"].str.contains("(generated)", regex=False).all()
    assert f["name_zh"].str.contains("生成").all()
    # children tile their parent: same area, no overlap
    for tree in gen.trees:
        parent_of = gen.parent_of(tree)
        part = f[f["tree"] == tree].set_index("code")
        for code in part.index:
            kids = [c for c, p in parent_of.items() if p == code]
            if not kids:
                continue
            geoms = part.loc[kids].geometry
            assert shapely.union_all(geoms.to_numpy()).equals(part.loc[code].geometry)
            area = shapely.area(np.asarray(geoms.array, dtype=object)).sum()
            assert area == pytest.approx(shapely.area(part.loc[code].geometry), rel=1e-9)
    assert len(gen.level("admin", "community")) == 32 and len(gen.level("grid", "grid")) == 4


def test_every_sample_unit_has_a_consistent_zone_chain(
    sample_units: gpd.GeoDataFrame, gen: Zones, unit_zones: pd.DataFrame
) -> None:
    assert list(unit_zones.columns) == gen.columns()
    assert unit_zones.notna().all().all()
    parent = gen.parent_of("admin")
    levels = gen.trees["admin"]
    for upper, lower in zip(levels, levels[1:], strict=False):
        lo = unit_zones[zone_column("admin", lower)]
        up = unit_zones[zone_column("admin", upper)]
        assert (lo.map(parent) == up).all()
    # grids are cut by road length: each holds a quarter, give or take the cut's unit
    m = sample_units.to_crs(sample_units.estimate_utm_crs())
    share = m.length.groupby(unit_zones["zone_grid_grid"].to_numpy()).sum() / m.length.sum()
    assert share.between(0.15, 0.35).all()


X0, Y0 = 385_000.0, 6_672_000.0  # central Helsinki in EPSG:3067


def two_halves() -> Zones:
    """A tree of one root split at x = X0 into west and east (EPSG:3067, metres)."""
    z = Zones(
        gpd.GeoDataFrame(
            {
                "tree": "t",
                "level": ["all", "half", "half"],
                "code": ["R", "W", "E"],
                "parent": [None, "R", "R"],
            },
            geometry=[
                shapely.box(X0 - 1000, Y0 - 1000, X0 + 1000, Y0 + 1000),
                shapely.box(X0 - 1000, Y0 - 1000, X0, Y0 + 1000),
                shapely.box(X0, Y0 - 1000, X0 + 1000, Y0 + 1000),
            ],
            crs=3067,
        )
    )
    return z


@settings(max_examples=60, deadline=None)
@given(
    west=st.floats(1.0, 900.0),
    east=st.floats(1.0, 900.0),
    y=st.floats(-900.0, 900.0),
)
def test_a_unit_crossing_a_border_goes_by_its_longest_part(
    west: float, east: float, y: float
) -> None:
    z = two_halves()
    units = gpd.GeoDataFrame(
        {"kind": ["segment"]},
        geometry=[shapely.LineString([(X0 - west, Y0 + y), (X0 + east, Y0 + y)])],
        index=pd.Index(["S1"], name="unit_id"),
        crs=3067,
    )
    got = assign_units(units, z)["zone_t_half"].iloc[0]
    if abs(west - east) > 1e-3:  # zones are stored in WGS84: the border moves by < 1 mm
        assert got == ("W" if west > east else "E")
    assert assign_units(units, z)["zone_t_all"].iloc[0] == "R"


def test_points_either_side_of_a_border_and_outside() -> None:
    z = two_halves()
    units = gpd.GeoDataFrame(
        {"kind": ["intersection"] * 3},
        geometry=[
            shapely.Point(X0 + 1e-3, Y0 + 5),
            shapely.Point(X0 - 10, Y0),
            shapely.Point(X0 + 5000, Y0),
        ],
        index=pd.Index(["I1", "I2", "I3"], name="unit_id"),
        crs=3067,
    )
    got = assign_units(units, z)["zone_t_half"]
    assert got.iloc[0] == "E" and got.iloc[1] == "W" and pd.isna(got.iloc[2])


def test_events_take_their_units_zone_else_their_point(
    sample_units: gpd.GeoDataFrame, gen: Zones, unit_zones: pd.DataFrame
) -> None:
    uid = sample_units.index[0]
    far_pt = gen.level("admin", "community").geometry.iloc[-1].representative_point()
    events = gpd.GeoDataFrame(
        {"unit_id": [uid, None], "event_id": ["a", "b"]},
        geometry=[far_pt, far_pt],  # the first lies elsewhere but is on unit uid
        crs=4326,
    )
    out = assign_events(events, gen, unit_zones=unit_zones)
    assert out.iloc[0]["zone_admin_community"] == unit_zones.loc[uid, "zone_admin_community"]
    assert out.iloc[1]["zone_admin_community"] == gen.level("admin", "community")["code"].iloc[-1]


def test_read_one_zone_per_row_and_one_leaf_per_row(tmp_path: Path, gen: Zones) -> None:
    long = gen.frame[gen.frame["tree"] == "police"].drop(columns=["generated"])
    long.to_file(tmp_path / "police.geojson")
    back = read_zones(tmp_path / "police.geojson")
    assert back.trees == {"police": ("detachment", "brigade", "squadron")}
    # no level column: named by --levels in order of depth
    long.drop(columns=["level", "tree"]).to_file(tmp_path / "nolevel.gpkg")
    named = read_zones(tmp_path / "nolevel.gpkg", tree="pol", levels=["a", "b", "c"])
    assert named.trees == {"pol": ("a", "b", "c")}
    # one leaf per row with a column per level: upper levels are unions of leaves
    leaves = gen.leaves("admin").copy()
    parent = gen.parent_of("admin")
    leaves["community"] = leaves["code"]
    leaves["street"] = leaves["community"].map(parent)
    leaves["district"] = leaves["street"].map(parent)
    leaves[["district", "street", "community", "geometry"]].to_file(tmp_path / "wide.gpkg")
    wide = read_zones(tmp_path / "wide.gpkg", levels=["district", "street", "community"])
    assert wide.trees["admin"] == ("district", "street", "community")
    d1 = wide.level("admin", "district").set_index("code").geometry["GEN-D1"]
    orig = gen.level("admin", "district").set_index("code").geometry["GEN-D1"]
    assert d1.symmetric_difference(orig).area < 1e-12


@pytest.mark.parametrize(
    ("codes", "parents", "message"),
    [
        (["A", "A"], [None, None], "appears twice"),
        (["A", "B"], [None, "X"], "not a zone of the tree"),
        (["A", "B"], ["B", "A"], "cycle"),
    ],
)
def test_bad_trees_are_refused(
    tmp_path: Path, codes: list[str], parents: list[str | None], message: str
) -> None:
    f = gpd.GeoDataFrame(
        {"code": codes, "parent": parents, "level": ["x", "y"]},
        geometry=[shapely.box(0, 0, 1, 1)] * 2,
        crs=4326,
    )
    f.to_file(tmp_path / "bad.geojson")
    with pytest.raises(InputFileError, match=message):
        read_zones(tmp_path / "bad.geojson")


def test_a_zone_needs_a_polygon_and_the_file_a_crs(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="polygon"):
        Zones(
            gpd.GeoDataFrame(
                {"tree": "t", "level": "l", "code": ["A"], "parent": [None]},
                geometry=[shapely.Point(0, 0)],
                crs=4326,
            )
        )
    with pytest.raises(ValidationError, match="no CRS"):
        Zones(
            gpd.GeoDataFrame(
                {"tree": "t", "level": "l", "code": ["A"], "parent": [None]},
                geometry=[shapely.box(0, 0, 1, 1)],
            )
        )


@pytest.fixture
def folder(tmp_path: Path, sample_units: gpd.GeoDataFrame) -> Path:
    write_table(sample_units, tmp_path / "units.parquet")
    acc = tu.assign(sample_units, tu.sample.generate(sample_units, seed=7)["accidents"])
    write_table(acc, tmp_path / "accidents.parquet")
    return tmp_path


def test_folder_zones_merge_by_tree_and_put_codes_on_the_tables(folder: Path, gen: Zones) -> None:
    police = Zones(gen.frame[gen.frame["tree"] == "police"])
    write_folder_zones(folder, police)
    admin = Zones(gen.frame[gen.frame["tree"] == "admin"])
    report = write_folder_zones(folder, admin)
    assert set(report["trees"]) == {"police", "admin"}
    assert report["units"]["outside"] == 0
    back = read_folder_zones(folder)
    assert back is not None and set(back.trees) == {"police", "admin"}
    units = gpd.read_parquet(folder / "units.parquet")
    acc = gpd.read_parquet(folder / "accidents.parquet")
    assert {"zone_police_brigade", "zone_admin_community"} <= set(units.columns)
    assert acc["zone_admin_district"].notna().all()
    assert units.geometry.name == "geometry" and units.index.name == "unit_id"
    # loading again replaces the columns, never duplicates them
    write_folder_zones(folder, admin)
    units2 = gpd.read_parquet(folder / "units.parquet")
    assert list(units2.columns) == list(units.columns)


def test_zones_verb_loads_generates_and_refuses_bad_files(folder: Path, gen: Zones) -> None:
    r = CliRunner().invoke(app, ["zones", "generate", "--data-dir", str(folder)])
    assert r.exit_code == 0, r.output
    assert "admin" in r.output and "0 outside" in r.output
    grid = gen.frame[gen.frame["tree"] == "grid"].copy()
    grid["tree"] = "grid2"
    grid.to_file(folder / "grid2.geojson")
    r = CliRunner().invoke(
        app, ["zones", "load", str(folder / "grid2.geojson"), "--data-dir", str(folder)]
    )
    assert r.exit_code == 0, r.output
    assert "zone_grid2_grid" in gpd.read_parquet(folder / "units.parquet").columns
    r = CliRunner().invoke(app, ["zones", "show", "--data-dir", str(folder)])
    assert r.exit_code == 0 and "grid2" in r.output
    (folder / "bad.geojson").write_text("{not json")
    r = CliRunner().invoke(
        app, ["zones", "load", str(folder / "bad.geojson"), "--data-dir", str(folder)]
    )
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert np.all(gpd.read_parquet(folder / "units.parquet")["zone_grid2_grid"].notna())


def test_zones_are_a_stage_of_build_and_loading_later_keeps_the_scores(
    tmp_path: Path, gen: Zones
) -> None:
    police = gen.frame[gen.frame["tree"] == "police"]
    police.to_file(tmp_path / "police.geojson")
    project = {
        "network": {"path": str(tu.sample_network_path())},
        "sample": {"generate": True},
        "zones": [{"path": str(tmp_path / "police.geojson")}],
        "tiles": {"basemap": False},
    }
    folder = tu.build(project, output=tmp_path / "out")
    assert folder.problems() == []
    assert read_folder_zones(folder.root).trees == {  # type: ignore[union-attr]
        "police": ("detachment", "brigade", "squadron")
    }
    units = gpd.read_parquet(folder.path("units"))
    assert units["zone_police_squadron"].notna().all() and "level" in units.columns
    assert folder.manifest["zones"]["units"]["outside"] == 0
    # a tree loaded later: the scores stay valid; only the tiles lack the new codes
    admin = Zones(gen.frame[gen.frame["tree"] == "admin"])
    write_folder_zones(folder.root, admin)
    problems = folder.problems()
    assert len(problems) == 1 and "risk.pmtiles was built from other units" in problems[0]
    assert "zone_admin_community" in gpd.read_parquet(folder.path("accidents")).columns
    with pytest.raises(ValidationError, match="needs path"):
        tu.build({**project, "zones": [{"tree": "x"}]}, output=tmp_path / "bad")
