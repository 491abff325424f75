"""Risk tiles (tippecanoe PMTiles), the live MVT encoder and the generated sample."""

from __future__ import annotations

import contextlib
import gzip
from pathlib import Path
from typing import Any

import geopandas as gpd
import mapbox_vector_tile
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pmtiles.reader import MmapSource, Reader
from typer.testing import CliRunner

import trafficunit as tu
from trafficunit import mvt
from trafficunit.cli import app
from trafficunit.errors import TrafficUnitError, ValidationError
from trafficunit.io import write_table
from trafficunit.tiles import (
    build_tiles,
    build_tiles_report,
    feature_ids,
    iso_datetimes,
    read_tile_layers,
)

from ._serverdata import LAT0, LON0, grid_events, grid_units


@pytest.fixture(scope="module")
def grid() -> gpd.GeoDataFrame:
    return grid_units()


@pytest.fixture(scope="module")
def archive(grid: gpd.GeoDataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiles") / "risk.pmtiles"
    build_tiles(grid, output=out, **grid_events(grid))
    return out


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    return (z, *mvt.lonlat_to_tile(lon, lat, z))


# --------------------------------------------------------------------------- feature ids


def test_feature_ids_are_stable_distinct_and_safe_in_javascript() -> None:
    ids = [f"S{i:012d}" for i in range(20000)]
    a = feature_ids(ids)
    b = feature_ids(list(reversed(ids)))[::-1]
    assert np.array_equal(a, b)  # independent of order
    assert len(np.unique(a)) == len(ids)
    assert a.min() >= 0 and a.max() < 2**53
    assert feature_ids(["I0VGAJCHN8YW3"])[0] == feature_ids(np.array(["I0VGAJCHN8YW3"]))[0]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-(2**62), 2**62) | st.none(), min_size=1, max_size=30),
    st.sampled_from([None, "UTC", "Europe/Helsinki", "America/St_Johns", "Asia/Kathmandu"]),
    st.sampled_from(["s", "ms", "us", "ns"]),
)
def test_iso_datetimes_match_strftime(ns: list[int | None], tz: str | None, unit: str) -> None:
    """Tile times read as strftime writes them: wall time to the second (floored, also before
    1970), the zone's offset of that instant (historical ones with seconds too), None for NaT."""
    raw = np.array([np.datetime64("NaT") if v is None else v for v in ns], dtype="datetime64[ns]")
    s = pd.Series(raw.astype(f"datetime64[{unit}]"), index=np.arange(len(ns)) * 3)
    if tz is not None:
        s = s.dt.tz_localize("UTC").dt.tz_convert(tz)
    expected = s.dt.strftime("%Y-%m-%dT%H:%M:%S%z").astype(object).where(s.notna(), None)
    got = iso_datetimes(s)
    assert got.index.equals(s.index)
    assert got.tolist() == expected.tolist()


def test_accident_times_in_tiles_carry_their_offset() -> None:
    times = pd.Series(
        pd.to_datetime(["2016-01-15 08:00:00", "2016-07-15 17:30:05.9", None], format="ISO8601")
    ).dt.tz_localize("Europe/Helsinki")
    acc = gpd.GeoDataFrame(
        {"event_id": ["a", "b", "c"], "severity": "K", "time": times},
        geometry=shapely.points([(LON0, LAT0)] * 3),
        crs=4326,
    )
    layer = tu.tiles.prepare_layer(acc, "accidents")
    assert layer["time"].tolist() == ["2016-01-15T08:00:00+0200", "2016-07-15T17:30:05+0300", None]


def test_layers_written_in_parallel_match_one_at_a_time(
    tmp_path: Path, grid: gpd.GeoDataFrame
) -> None:
    events = grid_events(grid)
    layers = {"units": tu.tiles.prepare_layer(grid, "units")}
    layers |= {k: tu.tiles.prepare_layer(v, k) for k, v in events.items()}
    paths = {k: tmp_path / f"{k}.geojsonl" for k in layers}
    counts = tu.tiles._write_layers(layers, paths)
    assert list(counts) == list(layers)
    for k, frame in layers.items():
        assert counts[k] == len(frame)
        tu.tiles.write_geojsonseq(frame, tmp_path / "one.geojsonl")
        assert paths[k].read_bytes() == (tmp_path / "one.geojsonl").read_bytes()


# --------------------------------------------------------------------------- archives


def test_archive_is_pmtiles_v3_with_one_layer_per_kind(archive: Path) -> None:
    with open(archive, "rb") as fh:
        reader = Reader(MmapSource(fh))
        header = reader.header()
        meta = reader.metadata()
    assert header["version"] == 3
    assert (header["min_zoom"], header["max_zoom"]) == (8, 16)
    layers = {layer["id"] for layer in meta["vector_layers"]}
    assert layers == {"units", "accidents", "hazards", "workzones"}


def test_units_carry_level_colour_measures_and_stable_ids(
    archive: Path, grid: gpd.GeoDataFrame
) -> None:
    layers = read_tile_layers(archive, *_tile_of(LON0 + 0.007, LAT0 + 0.003, 16))
    feats = layers["units"]
    assert feats
    by_id = {f["properties"]["unit_id"]: f for f in feats}
    for uid, f in by_id.items():
        assert f["id"] == int(feature_ids([uid])[0])
        assert f["properties"]["level"] == grid.loc[uid, "level"]
        assert f["properties"]["colour"] == grid.loc[uid, "colour"]
        assert f["properties"]["crashes"] == grid.loc[uid, "crashes"]
    kinds = {f["properties"]["kind"]: f["geometry"]["type"] for f in feats}
    assert kinds == {"segment": "LineString", "intersection": "Point"}
    z13 = read_tile_layers(archive, *_tile_of(LON0 + 0.007, LAT0 + 0.003, 13))
    assert set(z13) == {"units", "accidents", "hazards", "workzones"}
    assert len(z13["hazards"]) == 3
    wz = z13["workzones"]
    assert len(wz) == 1 and set(wz[0]["properties"]["unit_id"].split(";")) == set(
        grid_events(grid)["workzones"]["unit_id"]
    )


def test_low_zooms_keep_the_riskiest_units_first(archive: Path, grid: gpd.GeoDataFrame) -> None:
    z8 = read_tile_layers(archive, *_tile_of(LON0, LAT0, 8))["units"]
    levels8 = {f["properties"]["level"] for f in z8}
    classes8 = {(f["properties"]["level"], f["properties"]["road_class"]) for f in z8}
    # red units whatever their class; otherwise only the main roads (primary from z10 < no)
    assert "red" in levels8
    assert all(lv == "red" for lv, cls in classes8 if cls == "residential")
    z16 = read_tile_layers(archive, *_tile_of(LON0 + 0.007, LAT0 + 0.003, 16))["units"]
    assert {f["properties"]["level"] for f in z16} == {"red", "orange", "yellow", "blue"}
    n_red = int((grid["level"] == "red").sum())
    assert len({f["properties"]["unit_id"] for f in z8}) >= n_red
    # fatal accidents show from z9, property-damage ones only from z14
    z10 = read_tile_layers(archive, *_tile_of(LON0, LAT0, 10)).get("accidents", [])
    assert z10 and {f["properties"]["severity"] for f in z10} <= {"K", "A"}


def test_plain_units_without_levels_are_tiled_grey(tmp_path: Path, grid: gpd.GeoDataFrame) -> None:
    plain = grid.drop(columns=["level", "level_rank", "colour", "crashes", "epdo"])
    report = build_tiles_report(plain, output=tmp_path / "u.pmtiles", minzoom=12, maxzoom=14)
    assert report.features == {"units": len(grid)}
    feats = read_tile_layers(tmp_path / "u.pmtiles", *_tile_of(LON0 + 0.007, LAT0 + 0.003, 14))
    assert {f["properties"]["level"] for f in feats["units"]} == {"none"}
    assert {f["properties"]["colour"] for f in feats["units"]} == {"#8c8c8c"}


def test_failed_build_leaves_previous_archive_intact(
    tmp_path: Path, grid: gpd.GeoDataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "risk.pmtiles"
    out.write_bytes(b"previous archive")
    monkeypatch.setattr("trafficunit.tiles.tippecanoe_path", lambda: Path("/bin/false"))
    with pytest.raises(TrafficUnitError, match="tippecanoe failed"):
        build_tiles(grid, output=out)
    assert out.read_bytes() == b"previous archive"
    assert [p.name for p in tmp_path.iterdir()] == ["risk.pmtiles"]


def _children() -> set[int]:
    """Processes this one started that have not been waited for (Linux)."""
    out: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            out |= {int(p) for p in (task / "children").read_text().split()}
    return out


def test_work_meanwhile_runs_beside_tippecanoe(tmp_path: Path, grid: gpd.GeoDataFrame) -> None:
    """``meanwhile`` (the pipeline's black spots) runs in this process while tippecanoe, its
    own process, builds the tiles, its layers already written; the archive is the one built
    without it."""
    seen: list[Any] = []

    def meanwhile() -> None:
        work = next(tmp_path.glob(".a.pmtiles.*.work"))
        # the layers (tippecanoe's own temporary files may be there too by now)
        layers = sorted(p.name for p in work.glob("*.geojsonl"))
        seen.append((layers, (tmp_path / "a.pmtiles").exists()))

    events = grid_events(grid)
    build_tiles_report(grid, output=tmp_path / "a.pmtiles", meanwhile=meanwhile, **events)
    build_tiles_report(grid, output=tmp_path / "b.pmtiles", **events)
    [(written, archived)] = seen
    assert written == sorted(f"{k}.geojsonl" for k in ("units", *events))
    assert not archived  # before tippecanoe's archive is in place
    assert _all_tiles(tmp_path / "a.pmtiles") == _all_tiles(tmp_path / "b.pmtiles")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pmtiles", "b.pmtiles"]


def _all_tiles(path: Path) -> list[Any]:
    from pmtiles.reader import all_tiles

    with path.open("rb") as fh:
        return sorted(all_tiles(Reader(MmapSource(fh)).get_bytes), key=lambda t: t[0])


def test_failing_meanwhile_stops_tippecanoe(tmp_path: Path, grid: gpd.GeoDataFrame) -> None:
    """An exception in ``meanwhile`` kills tippecanoe and goes on: no archive, no temporary
    file and no tippecanoe left running."""
    out = tmp_path / "risk.pmtiles"
    out.write_bytes(b"previous archive")
    before = _children()

    def meanwhile() -> None:
        raise RuntimeError("black spots failed")

    with pytest.raises(RuntimeError, match="black spots failed"):
        build_tiles_report(grid, output=out, meanwhile=meanwhile)
    assert out.read_bytes() == b"previous archive"
    assert [p.name for p in tmp_path.iterdir()] == ["risk.pmtiles"]
    assert _children() <= before


def test_bad_inputs_raise_clear_errors(tmp_path: Path, grid: gpd.GeoDataFrame) -> None:
    with pytest.raises(ValidationError, match="no CRS"):
        build_tiles(grid.set_crs(None, allow_override=True), output=tmp_path / "a.pmtiles")
    with pytest.raises(ValidationError, match=".pmtiles"):
        build_tiles(grid, output=tmp_path / "a.mbtiles")
    with pytest.raises(ValidationError, match="zoom range"):
        build_tiles(grid, output=tmp_path / "a.pmtiles", minzoom=12, maxzoom=10)


def test_projected_input_is_reprojected(tmp_path: Path, grid: gpd.GeoDataFrame) -> None:
    out = tmp_path / "p.pmtiles"
    build_tiles(grid.to_crs(3067), output=out, minzoom=14, maxzoom=14)
    feats = read_tile_layers(out, *_tile_of(LON0 + 0.007, LAT0 + 0.003, 14))["units"]
    assert len(feats) > 10


@pytest.mark.slow
def test_helsinki_units_tile_end_to_end(tmp_path: Path) -> None:
    units = tu.build_units(tu.read_network(tu.sample_network_path()))
    report = build_tiles_report(units, output=tmp_path / "h.pmtiles")
    assert report.features["units"] == len(units)
    z16 = read_tile_layers(tmp_path / "h.pmtiles", *_tile_of(24.9441, 60.1685, 16))["units"]
    assert z16, "the centre of Helsinki has units at z16"
    ids = {f["properties"]["unit_id"] for f in z16}
    assert ids <= set(units.index)


def test_cli_tiles_verb(tmp_path: Path, grid: gpd.GeoDataFrame) -> None:
    write_table(grid, tmp_path / "risk.parquet")
    events = grid_events(grid)
    write_table(events["accidents"], tmp_path / "acc.parquet")
    result = CliRunner().invoke(
        app,
        [
            "tiles",
            str(tmp_path / "risk.parquet"),
            "--accidents",
            str(tmp_path / "acc.parquet"),
            "-o",
            str(tmp_path / "out.pmtiles"),
            "--maxzoom",
            "14",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "accidents" in result.output
    layers = read_tile_layers(tmp_path / "out.pmtiles", *_tile_of(LON0 + 0.007, LAT0 + 0.003, 14))
    assert set(layers) == {"units", "accidents"}
    bad = CliRunner().invoke(app, ["tiles", str(tmp_path / "nope.parquet"), "-o", "x.pmtiles"])
    assert bad.exit_code == 2 and "no such file" in bad.output


# --------------------------------------------------------------------------- live encoder


def _decode(tile: bytes) -> dict[str, list[dict[str, Any]]]:
    if tile[:2] == b"\x1f\x8b":
        tile = gzip.decompress(tile)
    out = mapbox_vector_tile.decode(tile, default_options={"y_coord_down": True})
    return {k: v["features"] for k, v in out.items()}


def test_live_layer_round_trips_through_a_reference_decoder() -> None:
    z, x, y = 15, *mvt.lonlat_to_tile(24.94, 60.17, 15)
    minx, miny, maxx, maxy = mvt.tile_bounds(z, x, y)
    sx, sy = (maxx - minx) / 4096, (maxy - miny) / 4096
    merc = [
        shapely.Point(minx + 100 * sx, maxy - 200 * sy),
        shapely.Point(minx + 4000 * sx, maxy - 50 * sy),
    ]
    line = shapely.LineString([(minx - 50, miny + 10), (maxx + 50, maxy - 10)])
    poly = shapely.box(minx + 10, miny + 10, minx + 200, miny + 200)
    gdf = gpd.GeoDataFrame(
        {
            "event_id": ["p1", "p2", "l1", "g1"],
            "severity": ["K", None, "B", "O"],
            "n": pd.array([3, -7, None, 0], dtype="Int64"),
            "x": [1.25, np.nan, 2.5, 1e-3],
            "flag": [True, False, None, True],
        },
        geometry=[*merc, line, poly],
        crs=3857,
    )
    layer = mvt.LiveLayer("events", gdf)
    feats = _decode(mvt.encode_tile([layer.encode(z, x, y)]))["events"]
    by = {f["properties"]["event_id"]: f for f in feats}
    assert set(by) == {"p1", "p2", "l1", "g1"}
    assert by["p1"]["geometry"] == {"type": "Point", "coordinates": [100, 200]}
    assert by["p2"]["geometry"]["coordinates"] == [4000, 50]
    assert by["p1"]["properties"] == {
        "event_id": "p1",
        "severity": "K",
        "n": 3,
        "x": 1.25,
        "flag": True,
    }
    assert by["p2"]["properties"] == {"event_id": "p2", "n": -7, "flag": False}
    assert by["l1"]["geometry"]["type"] == "LineString"
    coords = np.array(by["l1"]["geometry"]["coordinates"])
    assert coords.min() >= -64 and coords.max() <= 4096 + 64  # clipped to the buffer
    assert by["g1"]["geometry"]["type"] == "Polygon"
    assert by["l1"]["id"] == int(feature_ids(["l1"])[0])


def test_live_filter_mask_and_empty_tiles() -> None:
    pts = gpd.GeoDataFrame(
        {"event_id": ["a", "b"], "hour": [1, 12]},
        geometry=[shapely.Point(24.94, 60.17), shapely.Point(24.9401, 60.1701)],
        crs=4326,
    )
    layer = mvt.LiveLayer("accidents", pts)
    z, x, y = 16, *mvt.lonlat_to_tile(24.94, 60.17, 16)
    only_b = _decode(mvt.encode_tile([layer.encode(z, x, y, mask=np.array([False, True]))]))
    assert [f["properties"]["event_id"] for f in only_b["accidents"]] == ["b"]
    assert mvt.encode_tile([layer.encode(z, x + 5, y)]) == b""
    assert mvt.encode_tile([layer.encode(z, x, y, mask=np.array([False, False]))]) == b""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.lists(st.tuples(st.integers(-40, 4136), st.integers(-40, 4136)), min_size=2, max_size=8),
        min_size=1,
        max_size=6,
    )
)
def test_encoded_lines_match_quantised_clipped_input(lines: list[list[tuple[int, int]]]) -> None:
    """Whatever lines go in, the decoder gets the same vertices (deduplicated), never garbage."""
    z, x, y = 14, 9327, 4742
    minx, miny, maxx, maxy = mvt.tile_bounds(z, x, y)
    sx, sy = (maxx - minx) / 4096, (maxy - miny) / 4096
    geoms = [
        shapely.LineString([(minx + px * sx, maxy - py * sy) for px, py in pts]) for pts in lines
    ]
    gdf = gpd.GeoDataFrame(
        {"event_id": [f"e{i}" for i in range(len(geoms))]}, geometry=geoms, crs=3857
    )
    tile = mvt.encode_tile([mvt.LiveLayer("l", gdf).encode(z, x, y)])
    feats = _decode(tile).get("l", []) if tile else []
    got = {str(f["properties"]["event_id"]): f["geometry"]["coordinates"] for f in feats}
    expected = {}
    for i, pts in enumerate(lines):
        dedup = [list(p) for k, p in enumerate(pts) if k == 0 or pts[k - 1] != p]
        if len(dedup) >= 2:  # a line needs two distinct points to be drawn
            expected[f"e{i}"] = dedup
    assert got == expected
    assert all(f["geometry"]["type"] == "LineString" for f in feats)


@given(st.lists(st.integers(min_value=0, max_value=2**64 - 1), max_size=40))
def test_varints_match_the_protobuf_rule(values: list[int]) -> None:
    # the protobuf rule, value by value: 7 bits at a time, high bit set on all but the last
    expected = b""
    for v in values:
        while v > 0x7F:
            expected += bytes([(v & 0x7F) | 0x80])
            v >>= 7
        expected += bytes([v])
    data, nb = mvt._varint(np.array(values, dtype=np.uint64))
    assert data.tobytes() == expected
    assert nb.sum() == len(expected)


def test_point_fast_path_encodes_like_the_geometry_path() -> None:
    rng = np.random.default_rng(3)
    z, x, y = 15, *mvt.lonlat_to_tile(24.94, 60.17, 15)
    minx, miny, maxx, maxy = mvt.tile_bounds(z, x, y)
    pad = (maxx - minx) * 0.05
    xy = np.c_[rng.uniform(minx - pad, maxx + pad, 300), rng.uniform(miny - pad, maxy + pad, 300)]
    gdf = gpd.GeoDataFrame(
        {"event_id": [f"p{i}" for i in range(300)], "severity": rng.choice(list("KABCO"), 300)},
        geometry=shapely.points(xy),
        crs=3857,
    )
    layer = mvt.LiveLayer("pts", gdf)
    assert layer.points is not None
    rows = layer.query(z, x, y)
    args = (
        "pts",
        layer.geoms[rows],
        layer.ids[rows],
        layer.columns,
        rows,
        (minx, miny, maxx, maxy),
    )
    fast = mvt.encode_layer(*args, points=layer.points[rows])
    slow = mvt.encode_layer(*args)
    assert fast == slow and len(fast) > 0


def test_tile_cache_is_lru() -> None:
    cache = mvt.TileCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)  # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3


# --------------------------------------------------------------------------- sample


def test_generated_sample_is_labelled_deterministic_and_on_the_network(
    grid: gpd.GeoDataFrame,
) -> None:
    a = tu.sample.generate(grid, seed=7, n_accidents=300)
    b = tu.sample.generate(grid, seed=7, n_accidents=300)
    acc = a["accidents"]
    pd.testing.assert_frame_equal(acc, b["accidents"])
    assert acc["generated"].all() and (acc["source"] == tu.sample.GENERATED_LABEL).all()
    for col in (
        "event_id",
        "kind",
        "time",
        "year",
        "hour",
        "severity",
        "deaths",
        "serious_injuries",
        "minor_injuries",
        "road_name",
    ):
        assert col in acc
    assert acc["event_id"].is_unique and set(acc["severity"]) <= set("KABCO")
    assert acc["time"].dt.tz is not None
    assert (acc["time"].dt.hour == acc["hour"]).all()
    assert (acc.loc[acc["severity"] == "K", "deaths"] >= 1).all()
    # every accident lies within 40 m of a unit
    metric = grid.to_crs(3067)
    dist = acc.to_crs(3067).geometry.apply(lambda p: metric.distance(p).min())
    assert dist.max() < 40
    other = tu.sample.generate(grid, seed=8, n_accidents=300)["accidents"]
    assert not acc.geometry.geom_equals(other.geometry).all()
    assert set(a["hazards"]["grade"]) <= {"general", "major"}
    wz = a["workzones"]
    assert (wz["end"] > wz["start"]).all() and (wz.geometry.geom_type == "LineString").all()
