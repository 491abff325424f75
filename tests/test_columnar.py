"""Point events stored columnar (PointTable): read, joined and scored as the GeoDataFrame."""

from __future__ import annotations

import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import shapely
from geopandas.testing import assert_geodataframe_equal
from hypothesis import given, settings
from hypothesis import strategies as st

import trafficunit as tu
from trafficunit import distributed
from trafficunit.join.columnar import PointTable, events_input


@pytest.fixture(scope="module")
def network() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    roads = tu.read_network(tu.sample_network_path())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        units = tu.build_units(roads)
    return roads, units


def _accidents(units: gpd.GeoDataFrame, n: int, seed: int = 0) -> gpd.GeoDataFrame:
    """``n`` accidents near the units (a few far away), in EPSG:4326, with a time and a
    severity."""
    rng = np.random.default_rng(seed)
    m = units[units["kind"] == "segment"].to_crs(units.estimate_utm_crs())
    at = shapely.line_interpolate_point(
        m.geometry.values[rng.integers(len(m), size=n)], rng.random(n), normalized=True
    )
    xy = shapely.get_coordinates(at) + rng.normal(0, 8, (n, 2))
    xy[: n // 20] += 5_000  # some outside the network
    t0 = pd.Timestamp("2020-01-01", tz="Europe/Helsinki")
    return gpd.GeoDataFrame(
        {
            "event_id": pd.array([f"e{i}" for i in range(n)], dtype="string"),
            "kind": "accident",
            "time": t0 + pd.to_timedelta(rng.integers(0, 2 * 365 * 86400, n), unit="s"),
            "severity": pd.array(rng.choice(list("KABCO"), n), dtype="string"),
        },
        geometry=shapely.points(xy),
        crs=m.crs,
    ).to_crs(4326)


@settings(max_examples=25, deadline=None)
@given(
    xy=st.lists(
        st.tuples(st.floats(-180, 180, allow_nan=False), st.floats(-90, 90, allow_nan=False)),
        min_size=1,
        max_size=40,
    ),
    crs=st.sampled_from([4326, 3067, "EPSG:3879"]),
)
def test_read_equals_geopandas(tmp_path_factory, xy, crs) -> None:
    path = tmp_path_factory.mktemp("pts") / "e.parquet"
    n = len(xy)
    gdf = gpd.GeoDataFrame(
        {"event_id": pd.array([f"e{i}" for i in range(n)], dtype="string"), "v": np.arange(n)},
        geometry=shapely.points(np.array(xy)),
        crs=crs,
    )
    gdf.to_parquet(path)
    table = PointTable.read_parquet(path)
    assert table is not None and len(table) == n
    out = table.to_geodataframe()
    ref = gpd.read_parquet(path)
    assert_geodataframe_equal(out, ref)
    assert list(out.columns) == list(ref.columns)
    assert bool(shapely.equals_identical(out.geometry.values, ref.geometry.values).all())
    # written back from its coordinates: the file geopandas writes, read back the same
    again = path.with_name("again.parquet")
    table.to_parquet(again)
    assert_geodataframe_equal(gpd.read_parquet(again), ref)
    assert pq.read_schema(again).equals(pq.read_schema(path), check_metadata=True)


@pytest.mark.parametrize(
    "geoms",
    [
        [shapely.Point(1, 2), shapely.LineString([(0, 0), (1, 1)])],
        [shapely.Point(1, 2), None],
        [shapely.Point(1, 2), shapely.Point()],
        [shapely.Point(1, 2), shapely.Point(1, 2, 3)],
        [shapely.Point(1, 2), shapely.MultiPoint([(0, 0), (1, 1)])],
    ],
)
def test_anything_but_2d_points_is_read_as_a_geodataframe(tmp_path, geoms) -> None:
    path = tmp_path / "e.parquet"
    gpd.GeoDataFrame({"v": range(len(geoms))}, geometry=geoms, crs=4326).to_parquet(path)
    assert PointTable.read_parquet(path) is None
    got = events_input(path, columnar=True)
    assert isinstance(got, gpd.GeoDataFrame)
    assert_geodataframe_equal(got, gpd.read_parquet(path))


def test_join_of_the_table_equals_the_join_of_the_frame(network, tmp_path) -> None:
    _, units = network
    acc = _accidents(units, 3000)
    acc.to_parquet(tmp_path / "a.parquet")
    table = PointTable.read_parquet(tmp_path / "a.parquet")
    assert table is not None
    ref = tu.assign(units, acc)
    got = tu.assign(units, table)
    assert isinstance(got, PointTable)
    assert "geometry" not in got.frame.columns
    assert got.frame.attrs["report"] == ref.attrs["report"]
    assert ref["match"].nunique() > 1  # matched and unmatched events both
    assert_geodataframe_equal(got.to_geodataframe(), ref)


def test_pipeline_from_a_path_equals_the_pipeline_from_frames(network, tmp_path) -> None:
    roads, units = network
    acc = _accidents(units, 3000, seed=1)
    acc.to_parquet(tmp_path / "a.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = distributed.run_pipeline(roads, acc, scheduler=None)
        got = distributed.run_pipeline(roads, tmp_path / "a.parquet", scheduler=None)
    assert_geodataframe_equal(got.units, ref.units)
    assert_geodataframe_equal(got.joined, ref.joined)
    assert_geodataframe_equal(got.risk, ref.risk)
    assert got.joined.attrs == ref.joined.attrs and got.risk.attrs == ref.risk.attrs
    assert got.report["accidents"] == len(acc)
    assert "read accidents" in got.report["seconds"]
    assert "output" in got.report["client_peak_rss_mb"]


def test_single_run_to_an_outdir_joins_columnar_and_resumes(network, tmp_path, monkeypatch) -> None:
    roads, units = network
    acc = _accidents(units, 3000, seed=3)
    acc.to_parquet(tmp_path / "a.parquet")
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = distributed.run_pipeline(roads, acc, scheduler=None)
        from trafficunit import risk

        real_score = risk.score

        def crash(*args, **kwargs):
            raise RuntimeError("killed in the score")

        # a run killed after its join: the joined accidents are staged (columnar)...
        monkeypatch.setattr(risk, "score", crash)
        with pytest.raises(RuntimeError, match="killed"):
            distributed.run_pipeline(roads, tmp_path / "a.parquet", scheduler=None, outdir=out)
        staged = out.parent / f".{out.name}.partial" / "joined.parquet"
        assert isinstance(PointTable.read_parquet(staged), PointTable)
        assert not out.exists()
        # ...and the next run resumes from them: the same results, files and frames
        monkeypatch.setattr(risk, "score", real_score)
        got = distributed.run_pipeline(roads, tmp_path / "a.parquet", scheduler=None, outdir=out)
    assert_geodataframe_equal(got.joined, ref.joined)
    assert "output" in got.report["client_peak_rss_mb"]  # joined columnar, points made last
    # the units come back from the staged file (missing values read as None, not <NA>)
    scored = ["crashes", "eb_expected", "level"]
    pd.testing.assert_frame_equal(got.risk[scored], ref.risk[scored])
    joined_file = gpd.read_parquet(out / "joined.parquet")
    assert_geodataframe_equal(joined_file, ref.joined)


def test_score_leaves_the_units_alone(network) -> None:
    _, units = network
    before = units.copy()
    joined = tu.assign(units, _accidents(units, 2000, seed=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        risk = tu.score(units, joined)
    assert "level" in risk.columns and "level" not in units.columns
    assert_geodataframe_equal(units, before)
