"""Hazards in a run from files on Dask, and `trafficunit pipeline` from files: the results of
one process on the same inputs."""

from __future__ import annotations

import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from typer.testing import CliRunner

import trafficunit as tu
from trafficunit import distributed
from trafficunit.errors import InputFileError, ValidationError
from trafficunit.settings import DistributedSettings

from .test_distributed import _grid_city, _objects_as_none
from .test_distributed import client as client  # the module's two-worker cluster fixture

pytest.importorskip("distributed")


def _odd_hazards(hz: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The generated hazards and some no unit takes or that count only once: far outside the
    city, without a geometry, and the first hazard again (same id and place, graded major):
    one process keeps the first row of a hazard on a unit, so the order must hold."""
    metric = hz.geometry.to_crs(3067)
    odd = hz.iloc[[0, 1, 2]].copy()
    far = shapely.Point(metric.iloc[1].x + 5000.0, metric.iloc[1].y + 3000.0)
    geoms = [metric.iloc[0], far, None]
    odd = odd.set_geometry(gpd.GeoSeries(geoms, crs=3067).to_crs(hz.crs).to_numpy())
    odd["event_id"] = [hz["event_id"].iloc[0], "odd-far", "odd-none"]
    odd["grade"] = ["general" if hz["grade"].iloc[0] == "major" else "major", "major", "major"]
    odd["status"] = "reported" if hz["status"].iloc[0] == "closed" else hz["status"].iloc[0]
    return pd.concat([hz, odd], ignore_index=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Roads, accidents and hazards (a GENERATED sample) as GeoParquet files in the schema,
    and the hazards frame."""
    roads = _grid_city()
    events = tu.sample.generate(tu.build_units(roads), seed=5)
    hz = _odd_hazards(events["hazards"])
    d = tmp_path_factory.mktemp("files")
    roads.to_parquet(d / "roads.parquet")
    events["accidents"].to_parquet(d / "accidents.parquet")
    hz.to_parquet(d / "hazards.parquet", row_group_size=40)
    return d / "roads.parquet", d / "accidents.parquet", d / "hazards.parquet", hz


@pytest.mark.slow(family="single process equals Dask")
def test_from_files_hazards_same_as_single_process(client, files, tmp_path):
    """Hazards as a file or a frame in a run from files: joined by the workers to the same
    units, distances and statuses as one process, and counted in the same levels."""
    roads, acc, hz_file, hz = files
    cfg = DistributedSettings(cell_size_m=1000.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = distributed.run_pipeline(roads, acc, hazards=hz_file, scheduler=None)
        frames = distributed.run_pipeline(
            tu.read_network(roads), tu.read_table(acc, index=None), hazards=hz, scheduler=None
        )
        runs = [
            distributed.run_pipeline(
                roads, acc, hazards=h, scheduler=client, settings=cfg, outdir=tmp_path / f"o{n}"
            )
            for n, h in enumerate((hz_file, hz))
        ]
    ref = _objects_as_none(single.hazards)
    assert len(ref) == len(hz) and ref["unit_id"].notna().sum() > 100
    by_id = ref.set_index("event_id")["match"]
    assert by_id["odd-far"] == "outside" and by_id["odd-none"] == "outside"
    pd.testing.assert_frame_equal(_objects_as_none(frames.hazards), ref)
    risk = _objects_as_none(single.risk)
    assert (risk["hazard_raise"] > 0).sum() > 10 and (risk["open_major_hazards"] > 0).any()
    for n, dask in enumerate(runs):
        assert dask.report["cells"] >= 4 and "from_files" in dask.report
        pd.testing.assert_frame_equal(_objects_as_none(dask.hazards), ref)
        pd.testing.assert_frame_equal(_objects_as_none(dask.risk.read()), risk)
        assert dask.report["risk"]["rule"] == single.risk.attrs["rule"]
        summary = dask.report["from_files"]["hazards"]
        assert summary["rows"] == len(ref) and summary["cells"] >= 2
        assert dask.report["client_peak_rss_mb"]["hazards"] > 0
        saved = tu.read_table(tmp_path / f"o{n}" / "hazards.parquet", index=None)
        pd.testing.assert_frame_equal(_objects_as_none(saved), ref)
        assert not (tmp_path / f"o{n}" / "frag").exists()


def test_from_files_hazards_resume(client, files, tmp_path, monkeypatch):
    """A run killed while scoring resumes with the hazards joined on disk (no task again);
    other hazards start the run over."""
    roads, acc, hz_file, hz = files
    cfg = DistributedSettings(cell_size_m=1000.0)
    out = tmp_path / "run"
    import trafficunit.risk.scoring as scoring

    class Boom(Exception):
        pass

    def boom(*args, **kwargs):
        raise Boom

    monkeypatch.setattr(scoring, "_scored", boom)
    with pytest.raises(Boom):
        distributed.run_pipeline(
            roads, acc, hazards=hz_file, scheduler=client, settings=cfg, outdir=out
        )
    assert list((tmp_path / ".run.partial" / "frag" / "hazards-joined").glob("cell-*.parquet"))
    monkeypatch.undo()
    again = distributed.run_pipeline(
        roads, acc, hazards=hz_file, scheduler=client, settings=cfg, outdir=out
    )
    assert again.report["resumed"] is True and again.report["tasks"] == 0
    assert len(again.hazards) == len(hz)
    fewer = distributed.run_pipeline(
        roads, acc, hazards=hz.iloc[:50], scheduler=client, settings=cfg, outdir=out
    )
    assert fewer.report["resumed"] is False and len(fewer.hazards) == 50


def test_bad_hazards_file(client, files, tmp_path):
    """A hazard file missing, not Parquet or Parquet without a geometry: a clear error before
    any work, from files and from frames, on Dask and in one process."""
    roads, acc, _, hz = files
    plain = tmp_path / "plain.parquet"
    pd.DataFrame(hz.drop(columns="geometry")).to_parquet(plain)
    text = tmp_path / "text.parquet"
    text.write_text("event_id,x,y\n")
    cases = [
        (tmp_path / "missing.parquet", "no such file"),
        (text, "cannot read as GeoParquet"),
        (plain, "no geometry column"),
    ]
    frames = tu.read_network(roads).iloc[:20], tu.read_table(acc, index=None).iloc[:20]
    for path, message in cases:
        for sched in (client, None):
            for inputs in ((roads, acc), frames):
                with pytest.raises(InputFileError, match=message):
                    distributed.run_pipeline(
                        *inputs, hazards=path, scheduler=sched, outdir=tmp_path / "never"
                    )
    with pytest.raises(ValidationError, match="GeoDataFrame"):
        distributed.run_pipeline(*frames, hazards=pd.DataFrame(hz), scheduler=None)
    assert not list(tmp_path.glob("*never*"))


def _cli(*args: str) -> object:
    from trafficunit.cli import app

    return CliRunner().invoke(app, ["pipeline", *args])


def test_cli_pipeline_from_files(files, tmp_path):
    """`trafficunit pipeline` on GeoParquet files in the schema runs from the files (the
    report says so); the data folder holds the hazards and the levels of one process."""
    roads, acc, hz_file, _ = files
    out = tmp_path / "results"
    dask = ["--scheduler", "local", "--workers", "2", "--threads", "--cell-size-m", "1000"]
    res = _cli(
        str(roads), "--accidents", str(acc), "--hazards", str(hz_file), *dask, "-o", str(out), "-q"
    )
    assert res.exit_code == 0, res.output
    assert "pipeline: dask, from files" in res.output and "levels:" in res.output
    folder = tu.DataFolder(out)
    assert folder.problems(deep=True) == []
    pipeline = folder.manifest["pipeline"]
    assert pipeline["from_files"]["hazards"]["rows"] == len(folder.hazards)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = distributed.run_pipeline(roads, acc, hazards=hz_file, scheduler=None)
    risk = folder.units
    assert risk.index.equals(single.risk.index)
    for col in ("crashes", "eb_expected", "open_hazards", "hazard_raise", "level"):
        np.testing.assert_array_equal(risk[col].to_numpy(), single.risk[col].to_numpy())
    assert folder.manifest["counts"]["black_spots"] == len(folder.black_spots)
    assert folder.manifest["rule"] == single.risk.attrs["rule"]
    assert not list(tmp_path.glob(".results*"))


def test_cli_pipeline_reads_frames_otherwise(files, tmp_path):
    """Without a scheduler, or with a reading option, the CLI reads the inputs into frames
    as before (the summary says which); bad hazard files end with exit code 2."""
    roads, acc, hz_file, _ = files
    res = _cli(
        str(roads), "--accidents", str(acc), "--scheduler", "none", "-o", str(tmp_path / "a"), "-q"
    )
    assert res.exit_code == 0, res.output
    assert "pipeline: single process" in res.output and "from files" not in res.output
    assert "from_files" not in tu.DataFolder(tmp_path / "a").manifest["pipeline"]
    dask = ["--scheduler", "local", "--workers", "2", "--threads", "--cell-size-m", "1000"]
    read = ["--tz", "Europe/Helsinki"]  # a reading option: tu.read_events reads the file
    res = _cli(str(roads), "--accidents", str(acc), *read, *dask, "-o", str(tmp_path / "d"), "-q")
    assert res.exit_code == 0, res.output
    assert "pipeline: dask, from frames" in res.output
    assert "from_files" not in tu.DataFolder(tmp_path / "d").manifest["pipeline"]
    text = tmp_path / "text.parquet"
    text.write_text("not parquet")
    plain = tmp_path / "plain.parquet"
    pd.DataFrame({"event_id": ["h1"], "x": [24.9], "y": [60.2]}).to_parquet(plain)
    for bad, message in ((tmp_path / "missing.parquet", "no such file"), (text, "cannot read")):
        res = _cli(
            str(roads), "--accidents", str(acc), "--hazards", str(bad), "-o", str(tmp_path / "b")
        )
        assert res.exit_code == 2 and message in res.output, res.output
    res = _cli(
        str(roads), "--accidents", str(acc), "--hazards", str(plain), "-o", str(tmp_path / "c")
    )
    assert res.exit_code == 2 and "GeoDataFrame" in res.output, res.output
