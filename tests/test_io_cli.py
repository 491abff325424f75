"""Atomic outputs and the `trafficunit units` verb."""

from __future__ import annotations

import geopandas as gpd
import pytest
from typer.testing import CliRunner

import trafficunit as tu
from trafficunit.cli import app

from .conftest import shared_path

runner = CliRunner()


@pytest.mark.parametrize("suffix", [".parquet", ".gpkg"])
def test_units_round_trip(tmp_path, sample_units, suffix):
    path = tu.write_table(sample_units, tmp_path / f"units{suffix}")
    back = tu.read_table(path)
    assert back.index.name == "unit_id"
    assert back.index.tolist() == sample_units.index.tolist()
    assert back.crs == sample_units.crs
    assert back["length_m"].sum() == pytest.approx(sample_units["length_m"].sum())


def test_failed_write_keeps_previous_output(tmp_path, sample_units, monkeypatch):
    target = tmp_path / "units.parquet"
    tu.write_table(sample_units, target)
    before = target.read_bytes()

    def boom(self, path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(gpd.GeoDataFrame, "to_parquet", boom)
    with pytest.raises(RuntimeError):
        tu.write_table(sample_units.head(3), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["units.parquet"]  # no temp file left


def test_unknown_output_format(tmp_path, sample_units):
    with pytest.raises(tu.ValidationError, match="unknown output format"):
        tu.write_table(sample_units, tmp_path / "units.csv")


def test_cli_units_builds_and_summarises(tmp_path):
    out = tmp_path / "units.parquet"
    net = shared_path("osm", "helsinki-centre.osm.pbf")
    result = runner.invoke(app, ["units", str(net), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    units = tu.read_table(out)
    n_seg = int((units["kind"] == "segment").sum())
    assert f"{n_seg:,} segments" in result.output
    assert "dropped:" in result.output and "highway not drivable" in result.output
    assert (units.loc[units["kind"] == "segment", "length_m"] <= 200 + 1e-6).all()


def test_cli_units_bad_input_gives_message_and_no_output(tmp_path):
    bad = tmp_path / "bad.osm.pbf"
    bad.write_bytes(b"garbage" * 100)
    out = tmp_path / "units.parquet"
    result = runner.invoke(app, ["units", str(bad), "-o", str(out), "-q"])
    assert result.exit_code == 2
    assert "bad.osm.pbf" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]


def test_cli_help_lists_units():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "units" in result.output
