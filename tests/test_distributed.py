"""Scale-out on Dask: partitioned build → join → score equals the single-process run."""

from __future__ import annotations

import json
import warnings
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import trafficunit as tu
from trafficunit import distributed
from trafficunit.settings import DistributedSettings

from .conftest import shared_path

distributed_pkg = pytest.importorskip("distributed")

PERIOD = ("2011-01-01", "2016-12-31")


@pytest.fixture(scope="module")
def client():
    # two workers as threads of this process: the same scheduling as processes, fast to start
    with distributed.cluster(
        "local", settings=DistributedSettings(n_workers=2, processes=False)
    ) as c:
        yield c


def _grid_city(n: int = 24, spacing: float = 90.0, seed: int = 3) -> gpd.GeoDataFrame:
    """A perturbed n x n street grid (ways of 6 blocks) and a long bridge across it, EPSG:4326.

    GENERATED, not real data. The bridge meets no street (grade-separated), so its units'
    context spans many cells: partitions must grow their halo to build it exactly.
    """
    rng = np.random.default_rng(seed)
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    x = jj * spacing + rng.normal(0, 6, ii.shape)
    y = ii * spacing + rng.normal(0, 6, ii.shape)
    lines, cls, speed, name = [], [], [], []
    speeds = np.array(["30", "40", "50"])
    for axis in (0, 1):
        for k in range(n):
            for s in range(0, n - 1, 6):
                idx = np.arange(s, min(s + 6, n - 1) + 1)
                xs, ys = (x[k, idx], y[k, idx]) if axis == 0 else (x[idx, k], y[idx, k])
                lines.append(shapely.LineString(np.c_[xs, ys]))
                cls.append("primary" if k % 7 == 0 else "residential")
                speed.append(speeds[rng.integers(3)])
                name.append(f"St {axis}-{k}")
    bridge = shapely.LineString([(-30, -45), (n * spacing * 0.97, n * spacing * 0.9)])
    lines.append(shapely.segmentize(bridge, 25.0))
    cls.append("trunk")
    speed.append("80")
    name.append("Bridge")
    gdf = gpd.GeoDataFrame(
        {
            "osm_id": np.arange(1, len(lines) + 1),
            "highway": cls,
            "maxspeed": speed,
            "name": name,
            "bridge": ["yes" if nm == "Bridge" else None for nm in name],
        },
        geometry=lines,
        crs=3067,
    )
    gdf = gdf.set_geometry(gdf.geometry.translate(385000, 6671000)).to_crs(4326)
    return tu.read_network(gdf)


def _equal(a: distributed.PipelineResult, b: distributed.PipelineResult) -> None:
    """The same ids, attributes, geometries, matches and scores."""
    assert a.units.index.equals(b.units.index)
    pd.testing.assert_frame_equal(pd.DataFrame(a.units), pd.DataFrame(b.units))
    assert shapely.equals_exact(a.units.geometry.values, b.units.geometry.values, 0).all()
    pd.testing.assert_frame_equal(pd.DataFrame(a.joined), pd.DataFrame(b.joined))
    pd.testing.assert_frame_equal(pd.DataFrame(a.risk), pd.DataFrame(b.risk))
    ra, rb = a.joined.attrs["report"], b.joined.attrs["report"]
    for key in ("events", "rows", "by_match", "matched", "distance_m", "name_matched"):
        assert ra[key] == rb[key], key
    assert a.risk.attrs["spf"] == b.risk.attrs["spf"]


def _na_as_none(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(df).astype(object)
    return out.where(out.notna(), None)


def _crossing(units: gpd.GeoDataFrame, size: float, crs) -> int:
    """Segments that cross a cell border of the grid the run used."""
    seg = units[units["kind"] == "segment"].to_crs(crs)
    b = seg.bounds
    return int(
        (
            (np.floor(b.minx / size) != np.floor(b.maxx / size))
            | (np.floor(b.miny / size) != np.floor(b.maxy / size))
        ).sum()
    )


@pytest.mark.slow(family="single process equals Dask")
def test_real_extract_same_as_single_process(client):
    roads = tu.read_network(shared_path("osm", "helsinki-centre.osm.pbf"))
    acc = tu.read_events(
        shared_path("crashes", "helsinki-fta-2011-2016.csv"), preset="helsinki-fta"
    )
    cfg = DistributedSettings(cell_size_m=500.0, halo_m=200.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = distributed.run_pipeline(roads, acc, scheduler=None, period=PERIOD)
        dask = distributed.run_pipeline(roads, acc, scheduler=client, settings=cfg, period=PERIOD)
    _equal(single, dask)
    assert dask.report["cells"] >= 9 and dask.report["tasks"] >= 9
    assert _crossing(dask.units, 500.0, dask.units.attrs["report"]["metric_crs"]) > 50
    assert single.joined["unit_id"].notna().sum() > 500
    assert (dask.risk["crashes"] > 0).sum() > 100


@pytest.fixture(scope="module")
def generated():
    roads = _grid_city()
    units = tu.build_units(roads)
    events = tu.sample.generate(units, seed=5)
    return roads, events["accidents"], events["hazards"]


@pytest.mark.slow(family="single process equals Dask")
def test_generated_network_same_as_single_process(client, generated):
    roads, acc, hz = generated
    # small cells and halo: the bridge's units (and the grid's near cell borders) force retries
    cfg = DistributedSettings(cell_size_m=700.0, halo_m=200.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = distributed.run_pipeline(roads, acc, hazards=hz, scheduler=None)
        dask = distributed.run_pipeline(roads, acc, hazards=hz, scheduler=client, settings=cfg)
    _equal(single, dask)
    pd.testing.assert_frame_equal(pd.DataFrame(single.hazards), pd.DataFrame(dask.hazards))
    assert dask.report["halo_retries"] > 0 and dask.report["max_halo_m"] >= 400
    assert dask.report["cells"] >= 9
    bridge = dask.units[dask.units["name"] == "Bridge"]
    assert len(bridge) >= 10 and bridge.index.isin(single.units.index).all()
    assert dask.risk["open_hazards"].sum() == single.risk["open_hazards"].sum() > 0


@pytest.mark.slow(family="single process equals Dask")
def test_events_far_from_every_unit(client, generated):
    """Accidents far beyond the network (in its edge cells) are outside, as in one process."""
    roads, acc, _ = generated
    far = acc.iloc[:3].copy()
    # 5 km east and 3 km north of the city: no unit within reach
    far = far.set_geometry(far.geometry.to_crs(3067).translate(5000.0, 3000.0).to_crs(acc.crs))
    far["event_id"] = ["far-1", "far-2", "far-3"]
    events = pd.concat([acc, far], ignore_index=True)
    cfg = DistributedSettings(cell_size_m=700.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = distributed.run_pipeline(roads, events, scheduler=None)
        dask = distributed.run_pipeline(roads, events, scheduler=client, settings=cfg)
    _equal(single, dask)
    tail = dask.joined.iloc[-3:]
    assert tail["match"].tolist() == ["outside"] * 3 and tail["unit_id"].isna().all()


def test_join_cell_without_units():
    """A join cell with no unit within reach (a lake, a far corner): its events are all
    loose, left for the client to settle (tu.assign itself needs units)."""
    from trafficunit.distributed._join import _FLOAT_COLUMNS, _join_cell
    from trafficunit.join import MATCH_STATUSES
    from trafficunit.settings import JoinSettings

    payload = {
        "columns": {},
        "pos": np.array([4, 7]),
        "is_pt": np.array([True, True]),
        "x": np.array([385_000.0, 386_000.0]),
        "y": np.array([6_671_000.0, 6_672_000.0]),
        "shapes": None,
    }
    units = gpd.GeoDataFrame({"kind": [], "_upos": []}, geometry=[], crs=4326)
    res, report = _join_cell(units, payload, pyproj.CRS(3067).to_wkt(), JoinSettings())
    assert res["_pos"].tolist() == [4, 7] and (res["unit"] == -1).all() and report == {}
    assert (res["match"] == MATCH_STATUSES.index("outside")).all()
    assert res[list(_FLOAT_COLUMNS)].isna().all().all()


def test_scheduler_address(generated):
    roads, acc, _ = generated
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as lc:
        res = distributed.run_pipeline(
            roads,
            acc,
            scheduler=lc.scheduler_address,
            settings=DistributedSettings(cell_size_m=1200.0),
        )
    ref = distributed.run_pipeline(roads, acc, scheduler=None)
    assert res.units.index.equals(ref.units.index)
    np.testing.assert_array_equal(res.risk["crashes"], ref.risk["crashes"])
    quick = DistributedSettings(connect_timeout_s=1.0)
    with (
        pytest.raises(tu.TrafficUnitError, match="cannot reach the Dask scheduler"),
        distributed.cluster("tcp://127.0.0.1:9", settings=quick),
    ):
        pass


class _Boom(RuntimeError):
    pass


def test_interrupted_run_resumes_without_mixing(client, generated, tmp_path, monkeypatch):
    roads, acc, _ = generated
    out = tmp_path / "run"
    cfg = DistributedSettings(cell_size_m=1000.0)
    first = distributed.run_pipeline(
        roads, acc.iloc[:300], scheduler=client, settings=cfg, outdir=out
    )
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert {"units.parquet", "joined.parquet", "risk.parquet", "report.json"} <= set(before)
    # a second run on more accidents dies while scoring: the first run's output is untouched
    import trafficunit.risk as risk_mod

    def boom(*args, **kwargs):
        raise _Boom("killed")

    monkeypatch.setattr(risk_mod, "score", boom)
    with pytest.raises(_Boom):
        distributed.run_pipeline(roads, acc, scheduler=client, settings=cfg, outdir=out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    staging = tmp_path / ".run.partial"
    assert (staging / "units.done").exists() and (staging / "joined.done").exists()
    assert len(list((staging / "build").glob("*.parquet"))) >= 4
    # started again: resumes from the saved stages and replaces the output as a whole
    monkeypatch.undo()
    again = distributed.run_pipeline(roads, acc, scheduler=client, settings=cfg, outdir=out)
    assert again.report["resumed"] is True
    assert not staging.exists()
    report = json.loads((out / "report.json").read_text())
    assert report["accidents"] == len(acc) != first.report["accidents"]
    ref = distributed.run_pipeline(roads, acc, scheduler=None)
    pd.testing.assert_frame_equal(
        _na_as_none(tu.read_table(out / "units.parquet")), _na_as_none(ref.units)
    )
    risk = tu.read_table(out / "risk.parquet")
    np.testing.assert_array_equal(risk.loc[ref.risk.index, "crashes"], ref.risk["crashes"])
    joined = tu.read_table(out / "joined.parquet", index=None)
    assert joined["unit_id"].fillna("").tolist() == ref.joined["unit_id"].fillna("").tolist()


def test_changed_inputs_start_over(client, generated, tmp_path, monkeypatch):
    roads, acc, _ = generated
    out = tmp_path / "run"
    cfg = DistributedSettings(cell_size_m=1000.0)
    import trafficunit.risk as risk_mod

    monkeypatch.setattr(risk_mod, "score", lambda *a, **k: (_ for _ in ()).throw(_Boom()))
    with pytest.raises(_Boom):
        distributed.run_pipeline(roads, acc.iloc[:200], scheduler=client, settings=cfg, outdir=out)
    monkeypatch.undo()
    # other accidents: the saved stages do not belong to this run and are discarded
    res = distributed.run_pipeline(
        roads, acc.iloc[200:400], scheduler=client, settings=cfg, outdir=out
    )
    assert res.report["resumed"] is False
    assert len(tu.read_table(out / "joined.parquet", index=None)) == 200


def test_cli_pipeline(tmp_path, generated):
    from trafficunit.cli import app

    roads, acc, _ = generated
    net = tmp_path / "roads.parquet"
    roads.to_parquet(net)
    events = tmp_path / "accidents.parquet"
    acc.to_parquet(events)
    out = tmp_path / "results"
    res = CliRunner().invoke(
        app,
        [
            "pipeline",
            str(net),
            "--accidents",
            str(events),
            "--scheduler",
            "local",
            "--workers",
            "2",
            "--threads",
            "--cell-size-m",
            "600",
            "-o",
            str(out),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "halo retries" in res.output and "levels:" in res.output
    # the same kind of data folder as `trafficunit build` writes, complete for `serve`
    folder = tu.DataFolder(out)
    assert folder.problems(deep=True) == []
    risk = folder.units
    assert risk["crashes"].sum() == folder.accidents["unit_id"].notna().sum()
    assert folder.manifest["counts"]["black_spots"] == len(folder.black_spots)
    assert set(folder.tilesets) == {"risk"}
    assert not list(tmp_path.glob(".results*"))  # the run's staging is gone
    bad = CliRunner().invoke(
        app, ["pipeline", str(net), "--accidents", str(events), "-o", str(tmp_path / "x.parquet")]
    )
    assert bad.exit_code == 2 and "directory" in bad.output


def test_grid_cells_are_half_open():
    crs = pyproj.CRS(3067)
    grid = distributed.Grid.over(np.array([0.0, 0.0, 999.0, 999.0]), 100.0, crs)
    i, j = grid.cell_of(np.array([0.0, 99.999, 100.0, 250.0]), np.array([0.0, 0.0, 0.0, 199.9]))
    assert i.tolist() == [0, 0, 1, 2] and j.tolist() == [0, 0, 0, 1]
    assert grid.box(0, 0)[2] == grid.box(1, 0)[0] == 100.0
    with pytest.raises(tu.ValidationError):
        distributed.Grid.over(np.zeros(4), 0.0, crs)


@settings(max_examples=60, deadline=None)
# an extent whose far edge is where the last cell would end, in float arithmetic
@example(x0=980977.9999999999, y0=980977.9999999999, w=67599.0, h=67599.0, count=0, workers=1)
@given(
    x0=st.floats(-1e6, 1e6),
    y0=st.floats(-1e6, 1e6),
    w=st.floats(0.0, 2e5),
    h=st.floats(0.0, 2e5),
    count=st.integers(0, 10**7),
    workers=st.integers(1, 8),
)
def test_chosen_grid_covers_the_extent_with_even_cells(x0, y0, w, h, count, workers):
    """The cells of a chosen size cover the extent, with no row or column wholly outside it."""
    bounds = np.array([x0, y0, x0 + w, y0 + h])
    grid = distributed._grid_for(
        bounds,
        pyproj.CRS(3067),
        size=None,
        count=count,
        per_cell=5_000,
        n_workers=workers,
        min_size=800.0,
    )
    # the cells' boxes (which decide what a build task keeps) cover the extent, half-open
    assert grid.x0 <= bounds[0] and bounds[2] < grid.box(grid.nx - 1, 0)[2]
    assert grid.y0 <= bounds[1] and bounds[3] < grid.box(0, grid.ny - 1)[3]
    assert grid.x0 + (grid.nx - 1) * grid.size <= bounds[2]
    assert grid.y0 + (grid.ny - 1) * grid.size <= bounds[3]
    assert grid.size >= 800.0


def _objects_as_none(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns with missing values as None (a GeoParquet round trip's pd.NA)."""
    out = pd.DataFrame(df).drop(columns="geometry")
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].where(out[col].notna(), None)
    return out


@pytest.mark.slow(family="single process equals Dask")
def test_real_extract_from_files_same_as_single_process(client, tmp_path):
    """From GeoParquet files, the workers read, partition, build, join and score through
    disk: the same units, matches, EB values and levels as one process on the same files."""
    roads = tu.read_network(shared_path("osm", "helsinki-centre.osm.pbf"))
    acc = tu.read_events(
        shared_path("crashes", "helsinki-fta-2011-2016.csv"), preset="helsinki-fta"
    )
    roads.to_parquet(tmp_path / "roads.parquet")
    acc.to_parquet(tmp_path / "accidents.parquet", row_group_size=4000)
    files = (tmp_path / "roads.parquet", tmp_path / "accidents.parquet")
    cfg = DistributedSettings(cell_size_m=500.0, halo_m=200.0)
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = distributed.run_pipeline(*files, scheduler=None, period=PERIOD)
        dask = distributed.run_pipeline(
            *files, scheduler=client, settings=cfg, period=PERIOD, outdir=out
        )
    assert isinstance(dask.units, distributed.PartitionedFrame)
    assert dask.report["cells"] >= 9 and dask.report["halo_retries"] > 0
    units, joined, risk = dask.units.read(), dask.joined.read(), dask.risk.read()
    assert units.index.equals(single.units.index)
    pd.testing.assert_frame_equal(_objects_as_none(units), _objects_as_none(single.units))
    assert shapely.equals_exact(units.geometry.values, single.units.geometry.values, 0).all()
    pd.testing.assert_frame_equal(_objects_as_none(joined), _objects_as_none(single.joined))
    pd.testing.assert_frame_equal(_objects_as_none(risk), _objects_as_none(single.risk))
    assert dask.report["risk"]["spf"] == single.risk.attrs["spf"]
    assert single.joined["unit_id"].notna().sum() > 500
    # the outputs are partitioned GeoParquet datasets; the working files are gone
    assert sorted(p.name for p in out.iterdir()) == [
        "joined",
        "manifest.json",
        "report.json",
        "risk",
        "units",
    ]
    assert len(dask.joined.paths) >= 4 and len(dask.joined) == len(single.joined)
    assert not list(tmp_path.glob(".out*"))


def test_from_files_resumes_after_a_failure(client, generated, tmp_path, monkeypatch):
    """A run from files killed while scoring resumes from the cells on disk: no task of the
    finished stages runs again, and the result is the single-process one."""
    roads, acc, _ = generated
    files = (tmp_path / "roads.parquet", tmp_path / "accidents.parquet")
    roads.to_parquet(files[0])
    acc.to_parquet(files[1])
    out = tmp_path / "run"
    cfg = DistributedSettings(cell_size_m=1000.0)
    import trafficunit.risk.scoring as scoring

    monkeypatch.setattr(scoring, "_scored", lambda *a, **k: (_ for _ in ()).throw(_Boom()))
    with pytest.raises(_Boom):
        distributed.run_pipeline(*files, scheduler=client, settings=cfg, outdir=out)
    staging = tmp_path / ".run.partial"
    assert len(list((staging / "units").glob("cell-*.parquet"))) >= 4
    assert len(list((staging / "joined").glob("cell-*.parquet"))) >= 4
    monkeypatch.undo()
    again = distributed.run_pipeline(*files, scheduler=client, settings=cfg, outdir=out)
    assert again.report["resumed"] is True and again.report["tasks"] == 0
    ref = distributed.run_pipeline(*files, scheduler=None)
    risk = again.risk.read()
    assert risk.index.equals(ref.risk.index)
    np.testing.assert_array_equal(risk["crashes"], ref.risk["crashes"])
    np.testing.assert_array_equal(risk["eb_expected"], ref.risk["eb_expected"])
    assert (risk["level"] == ref.risk["level"]).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 400), spread=st.sampled_from([0.01, 0.5]))
def test_cell_hull_and_halo_roads_as_from_every_projected_line(seed, n, spread):
    """The hull a build task sends back, made from the few units that may hold its
    vertices, is the hull of all their projected coordinates; the roads a task keeps by
    their stored bounds are those whose projected line meets the cell grown by the halo
    (lines in degrees, away from the UTM zone's central meridian, where the grid turns)."""
    from trafficunit.distributed._build import _metric_bounds
    from trafficunit.distributed._tasks import _BOUNDS, _hull_candidates, _meets, _units_hull

    rng = np.random.default_rng(seed)
    start = np.c_[rng.uniform(24.0, 24.0 + spread, n), rng.uniform(60.0, 60.0 + spread / 2, n)]
    steps = rng.normal(scale=0.002, size=(n, 3, 2)) * rng.integers(0, 2, (n, 1, 1))
    xy = np.cumsum(np.concatenate([start[:, None], steps], axis=1), axis=1)
    geoms = shapely.linestrings(xy)
    points = ~np.any(steps != 0, axis=(1, 2))
    geoms[points] = shapely.points(start[points])  # intersections
    units = gpd.GeoDataFrame(geometry=geoms, crs=4326)
    mcrs = pyproj.CRS(32635)
    metric = units.geometry.to_crs(mcrs).to_numpy()
    b = _metric_bounds(units, mcrs)
    hull = shapely.convex_hull(
        shapely.multipoints(_hull_candidates(shapely.get_coordinates(metric)))
    )
    assert shapely.equals_exact(_units_hull(units, b, mcrs), hull, 0)
    roads = units.copy()
    roads[list(_BOUNDS)] = b
    tb = shapely.total_bounds(metric)
    cx, cy = rng.uniform(tb[0], tb[2]), rng.uniform(tb[1], tb[3])
    box = (cx - 300.0, cy - 300.0, cx + 300.0, cy + 300.0)
    halo = float(rng.choice([0.0, 100.0, 400.0]))
    region = shapely.box(box[0] - halo, box[1] - halo, box[2] + halo, box[3] + halo)
    assert np.array_equal(_meets(roads, box, halo, mcrs), shapely.intersects(metric, region))
    assert np.array_equal(_meets(units, box, halo, mcrs), shapely.intersects(metric, region))


def test_from_files_score_counts_on_the_workers(client, generated, tmp_path, monkeypatch):
    """The score from files equals the single run's, its attributes too: counted on the
    workers (accidents without a date or year left out), and on the client when an event id
    is in two cells (the single run counts its first row only)."""
    roads, acc, _ = generated
    roads.to_parquet(tmp_path / "roads.parquet")
    acc = acc.copy()
    acc.loc[acc.index[:40], ["time", "year"]] = (pd.NaT, pd.NA)
    xy = acc.geometry.to_crs(3067)
    far = int(np.argmax(xy.distance(xy.iloc[0]).to_numpy()))
    twice = acc.copy()
    twice.loc[twice.index[far], "event_id"] = twice["event_id"].iloc[0]
    cfg = DistributedSettings(cell_size_m=1000.0)
    from trafficunit.distributed import _score

    apart, real = [], _score._ids_apart
    monkeypatch.setattr(_score, "_ids_apart", lambda paths: apart.append(real(paths)) or apart[-1])
    fitted, on_workers = [], _score._fit_on_workers

    def fitter(client: Any) -> Any:  # the populations' fits, recorded
        fit = on_workers(client)
        return lambda jobs: fitted.append([job[4] for job in jobs]) or fit(jobs)

    monkeypatch.setattr(_score, "_fit_on_workers", fitter)
    for n, events in enumerate((acc, twice)):
        files = (tmp_path / "roads.parquet", tmp_path / f"accidents-{n}.parquet")
        events.to_parquet(files[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            single = distributed.run_pipeline(*files, scheduler=None)
            dask = distributed.run_pipeline(
                *files, scheduler=client, settings=cfg, outdir=tmp_path / f"out-{n}"
            )
        assert dask.report["cells"] >= 4
        pd.testing.assert_frame_equal(
            _objects_as_none(dask.risk.read()), _objects_as_none(single.risk)
        )
        assert dask.report["risk"] == json.loads(json.dumps(single.risk.attrs))
        assert single.risk.attrs["report"]["no_date"] == 40
    assert single.risk.attrs["report"]["used"] == len(acc) - 41
    assert apart == [True, False]  # the event id in two cells: counted on the client
    # fitted (the largest here, the others on the workers), every population of the single run's
    assert fitted and fitted[-1] == list(single.risk.attrs["spf"])


def test_id_hashes():
    from trafficunit.distributed._score import _id_hashes

    ids = pd.Series(["g1", "g10", "", None, "g1", "é", "g01"], dtype="string")
    h = _id_hashes(ids)
    assert h.dtype == np.uint64 and len(h) == len(set(h)) == 6
    assert set(_id_hashes(ids.iloc[[1, 0, 4]])) == set(_id_hashes(ids.iloc[:2]))
    assert set(_id_hashes(ids.iloc[3:6])) <= set(h) and len(_id_hashes(ids.iloc[:0])) == 0


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=20), st.text(min_size=200, max_size=400), st.none())))
def test_hashes_are_the_polynomial_of_the_bytes(ids):
    """Each id's hash is its length x Q plus its UTF-8 bytes' sum of byte x P^(i + 1), modulo
    2^64 (``_HASH_P`` for a missing id), whether the ids are alike in length or a few long."""
    from trafficunit.distributed import _score

    mask = 2**64 - 1
    p, q = int(_score._HASH_P), int(_score._HASH_Q)

    def reference(text: str | None) -> int:
        if text is None:
            return p
        raw = text.encode()
        return (len(raw) * q + sum(b * pow(p, i + 1, 2**64) for i, b in enumerate(raw))) & mask

    got = _score._hashes(pd.Series(ids, dtype="string"))
    assert got.dtype == np.uint64
    assert [int(v) for v in got] == [reference(t) for t in ids]


_IDS = st.text(alphabet="ab-é0", max_size=4)


@settings(max_examples=60, deadline=None)
@given(
    units=st.lists(_IDS, unique=True, max_size=30),
    others=st.lists(st.one_of(_IDS, st.none()), max_size=30),
    bits=st.sampled_from([3, 6, 64]),
)
def test_unit_keys_locate_ids_as_positions_does(units, others, bits):
    """Unit ids located by their hashes, then compared: the positions of
    ``risk.measures._positions`` (-1 for ids of no unit, missing ones too), also where an
    id's hash is a unit's (hashes cut to a few bits); units sharing a hash give no keys."""
    from trafficunit.distributed import _score
    from trafficunit.risk.measures import _positions

    real = _score._hashes
    index = pd.Index(units, dtype="string")
    ids = pd.Index(list(units[::2]) + others, dtype="string")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_score, "_hashes", lambda ids: real(ids) % np.uint64(2**bits - 1))
        keys = _score._UnitKeys.of(index)
        h = _score._hashes(index)
        got = None if keys is None else keys.positions(ids)
    if got is None:
        assert len(set(h.tolist())) < len(h)
        return
    assert got.tolist() == _positions(pd.Series(ids), index).tolist()


@pytest.mark.slow(family="single process equals Dask")
def test_from_files_odd_events_same_as_single_process(client, generated, tmp_path):
    """From files, accidents the cells cannot join from coordinates alone (missing, empty, a
    line) or that no unit takes (far outside, too far, in a cell without units): the same
    matches and distances as one process. Most cells are joined columnar, the others from
    their geometries."""
    roads, acc, _ = generated
    metric = acc.iloc[:7].to_crs(3067).geometry.tolist()
    odd = [
        shapely.Point(metric[0].x + 5000, metric[0].y + 3000),  # outside, no unit within reach
        shapely.Point(metric[1].x + 45, metric[1].y + 45),  # in a block: too far
        shapely.Point(metric[2].x - 4000, metric[2].y - 2500),  # outside
        None,
        shapely.Point(),
        shapely.LineString([(metric[3].x, metric[3].y), (metric[3].x + 25, metric[3].y + 20)]),
    ]
    extra = acc.iloc[: len(odd)].copy()
    extra = extra.set_geometry(gpd.GeoSeries(odd, crs=3067).to_crs(acc.crs).to_numpy())
    extra["event_id"] = [f"odd-{i}" for i in range(len(odd))]
    events = pd.concat([acc, extra], ignore_index=True)
    files = (tmp_path / "roads.parquet", tmp_path / "accidents.parquet")
    roads.to_parquet(files[0])
    events.to_parquet(files[1], row_group_size=700)
    cfg = DistributedSettings(cell_size_m=700.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = distributed.run_pipeline(*files, scheduler=None)
        dask = distributed.run_pipeline(
            *files, scheduler=client, settings=cfg, outdir=tmp_path / "out"
        )
    joined = dask.joined.read()
    pd.testing.assert_frame_equal(_objects_as_none(joined), _objects_as_none(single.joined))
    a, b = joined.geometry.to_numpy(), single.joined.geometry.to_numpy()
    assert (shapely.equals_exact(a, b, 0) | (shapely.is_missing(a) & shapely.is_missing(b))).all()
    by_id = joined.groupby("event_id")["match"].agg(list)
    statuses = [by_id[f"odd-{i}"] for i in range(len(odd))]
    assert statuses[:5] == [["outside"], ["too_far"], ["outside"], ["outside"], ["outside"]]
    assert len(statuses[5]) > 1  # the line: one row per unit it touches


def test_from_files_builds_largest_cells_first_events_after(
    client, generated, tmp_path, monkeypatch
):
    """From files, the build tasks go out largest cell first (by its road fragments' bytes),
    and the event partitioning that runs beside them at a lower priority: it fills the
    workers a cell no longer keeps busy instead of delaying the cells. So do the joins (by
    the events' bytes), each counting its cell's accidents once joined."""
    import pyarrow.parquet as pq

    from trafficunit.distributed import _files, _runner, _score, _tasks

    roads, acc, _ = generated
    files = (tmp_path / "roads.parquet", tmp_path / "accidents.parquet")
    roads.to_parquet(files[0])
    acc.to_parquet(files[1], row_group_size=500)
    sizes: dict[tuple[str, tuple[int, int]], int] = {}
    real_bytes, real_submit = _files._frag_bytes, client.submit

    def frag_bytes(stage, cell, kind="roads"):
        sizes[kind, cell] = real_bytes(stage, cell, kind)
        return sizes[kind, cell]

    calls = []

    def submit(fn, *args, **kw):
        calls.append((fn, args, kw.get("priority", 0)))
        return real_submit(fn, *args, **kw)

    monkeypatch.setattr(_files, "_frag_bytes", frag_bytes)
    monkeypatch.setattr(client, "submit", submit)
    cfg = DistributedSettings(cell_size_m=1000.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = distributed.run_pipeline(
            *files, scheduler=client, settings=cfg, outdir=tmp_path / "o"
        )
    first = [(a[1], p) for fn, a, p in calls if fn is _tasks.build_cell and a[3] == a[4]]
    events = [p for fn, a, p in calls if a and a[0] is _tasks.partition_events]
    assert len(first) == res.report["cells"] >= 4 and len(events) >= 2
    order = [sizes["roads", c] for c, _ in first]
    assert order == sorted(order, reverse=True) and order[0] > order[-1]
    assert max(events) < min(p for _, p in first)
    # the accidents partitioned by whole row groups, each read once
    chunks = [a[3] for fn, a, p in calls if a and a[0] is _tasks.partition_events]
    meta = pq.ParquetFile(files[1]).metadata
    whole = [(g, 0, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
    assert sorted(chunks) == whole and len(whole) >= 2
    tasks = [(a[0], a[2:], p) for fn, a, p in calls if fn is _runner._summarised]
    joins = [(a[0][1], a[1], p) for fn, a, p in tasks if fn is _score._joined_and_counted]
    assert len(joins) >= 4 and {p for *_, p in joins} == {0}
    order = [sizes["events", c] for c, _, _ in joins]
    assert order == sorted(order, reverse=True) and order[0] > order[-1]
    for c, (summary, fn, args), _ in joins:  # each join counts its own cell's accidents
        assert fn is _score._tally_part and args[0].stem == summary.stem == f"cell-{c[0]}-{c[1]}"
    assert not [fn for fn, _, _ in tasks if fn is _score._tally_part]  # none counted apart


def test_local_workers_reuse_freed_memory():
    """A local cluster's worker processes reuse the memory of a freed array for the next one
    (as one process does), not map and fault it in anew: fewer page faults than arrays made
    (Dask's default trim threshold, 64 KiB, maps every array over 128 KiB afresh: here 500
    faults an 8 MB array, numpy asking for huge pages)."""
    pytest.importorskip("resource")

    def faults_of_reuse() -> int:
        import resource

        np.ones(2**20)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(100):
            a = np.ones(2**20)  # 8 MB
            del a
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    with distributed.cluster("local", settings=DistributedSettings(n_workers=1)) as c:
        faults = c.submit(faults_of_reuse, pure=False).result()
    assert faults < 100


def test_parts_keep_statistics_but_not_of_wkb(tmp_path):
    """A working or result part reads back as written, with min/max statistics on every
    column and the index (a reader of the dataset skips row groups by them) but the WKB
    geometry, and dictionaries on the text columns only."""
    import pyarrow.parquet as pq

    from trafficunit.distributed._parts import _write_part

    frame = gpd.GeoDataFrame(
        {"kind": ["segment", "intersection", "segment"], "crashes": [3, 0, 1]},
        geometry=shapely.points([0.0, 1.0, 2.0], [0.0, 1.0, 2.0]),
        crs=4326,
        index=pd.Index(["u3", "u1", "u2"], name="unit_id"),
    )
    _write_part(frame, tmp_path / "part" / "cell-0-0.parquet")
    path = tmp_path / "part" / "cell-0-0.parquet"
    pd.testing.assert_frame_equal(gpd.read_parquet(path), frame)
    meta = pq.ParquetFile(path).metadata.row_group(0)
    cols = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert {n for n, c in cols.items() if c.is_stats_set} == {"kind", "crashes", "unit_id"}
    assert cols["unit_id"].statistics.min == "u1" and cols["crashes"].statistics.max == 3
    dictionary = {n for n, c in cols.items() if "RLE_DICTIONARY" in c.encodings}
    assert dictionary == {"kind", "unit_id"}


@pytest.mark.parametrize(
    "index",
    [
        pd.Index(["u3", "u1", "u2"], name="unit_id"),
        pd.MultiIndex.from_arrays([["a", "b", "c"], [3, 1, 2]], names=["cell", "row"]),
        pd.Index(["u3", "u1", "u2"]),  # unnamed: converted as to_parquet does
        pd.RangeIndex(3),
        pd.Index([7, 5, 6], name="kind"),  # a name of a column too
    ],
)
def test_part_table_is_the_one_to_parquet_makes(index):
    """A GeoDataFrame part converted with its index as plain columns (no index hash table
    built) is the table geopandas' ``to_parquet`` makes: columns, types, order, metadata."""
    from geopandas.io.arrow import _geopandas_to_arrow

    from trafficunit.distributed._parts import _geo_table

    frame = gpd.GeoDataFrame(
        {"kind": ["segment", "intersection", None], "crashes": [3, 0, 1], "lit": None},
        geometry=shapely.points([0.0, 1.0, 2.0], [0.0, 1.0, 2.0]),
        crs=4326,
        index=index,
    )
    frame["name"] = frame["kind"].astype("string")
    frame.attrs = {"report": {"units": 3}}
    got, want = _geo_table(frame), _geopandas_to_arrow(frame)
    assert got.equals(want, check_metadata=True)
    assert got.schema.metadata == want.schema.metadata


@pytest.mark.parametrize("nulls_in_one", [False, True])
def test_road_fragments_read_as_geopandas_reads_each(tmp_path, nulls_in_one):
    """A cell's road fragments read as one frame equal each read by geopandas, concatenated,
    each road once (its first copy) in ``_rid`` order; a fragment whose column of nulls has
    another type is read that way too (its fragments' rows still in the order of the
    files)."""
    from trafficunit.distributed._parts import _read_parts, _write_part
    from trafficunit.distributed._tasks import _read_roads

    def frag(rids: list[int], name: Any) -> gpd.GeoDataFrame:
        x = np.asarray(rids, dtype=float)
        return gpd.GeoDataFrame(
            {"_rid": np.asarray(rids, dtype=np.int64), "name": name, "oneway": x > 2},
            geometry=shapely.linestrings(np.c_[x, x, x + 1, x + 1].reshape(-1, 2, 2)),
            crs=4326,
            index=pd.Index(np.asarray(rids) % 4, dtype=np.int64),
        )

    paths = [tmp_path / f"{k}.parquet" for k in range(3)]
    _write_part(frag([5, 9, 12], pd.array(["a", None, "c"], dtype="string")), paths[0])
    _write_part(frag([1, 9], None if nulls_in_one else pd.array(["b", "x"], "string")), paths[1])
    # road 1 again, other values: its first copy (in the file order) is the one kept
    _write_part(frag([2, 3, 1], pd.array(["d", "e", "f"], dtype="string")), paths[2])
    got = _read_roads(paths)
    want = _read_parts(paths).drop_duplicates("_rid").sort_values("_rid", kind="stable")
    assert got is not None and got["_rid"].tolist() == [1, 2, 3, 5, 9, 12]
    first = got["name"].iloc[0]
    assert first is None if nulls_in_one else first == "b"
    pd.testing.assert_frame_equal(got, want)
    assert got.crs == want.crs and got.crs.to_epsg() == 4326
    assert _read_roads([]) is None
