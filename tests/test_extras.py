"""Optional features name the extra that installs them when their dependency is missing."""

from __future__ import annotations

import sys

import pytest

import trafficunit as tu
from trafficunit._optional import MissingExtraError


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``import MODULE`` fail as if the package were not installed."""
    for name in list(sys.modules):
        if name.split(".")[0] in modules:
            monkeypatch.delitem(sys.modules, name)
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]


def test_hotspots_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    units = tu.build_units(tu.read_network(tu.sample_network_path()))
    events = tu.sample.generate(units, n_accidents=300, n_hazards=0, n_workzones=0)
    joined = tu.assign(units, events["accidents"])
    scored = tu.score(units, joined)  # the default works without the extra
    assert scored["level"].notna().all()
    _hide(monkeypatch, "esda", "libpysal")
    with pytest.raises(MissingExtraError, match=r"trafficunit\[hotspots\]"):
        tu.score(units, joined, hotspot_stats=True)


def test_dask_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    roads = tu.read_network(tu.sample_network_path())
    _hide(monkeypatch, "distributed", "dask")
    with pytest.raises(MissingExtraError, match=r"trafficunit\[dask\]"):
        tu.run_pipeline(roads, roads.iloc[:0], scheduler="local")


def test_serve_without_the_extra_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from typer.testing import CliRunner

    from trafficunit.cli import app

    _hide(monkeypatch, "granian")
    result = CliRunner().invoke(app, ["serve", str(tmp_path), "--port", "18765"])
    assert result.exit_code == 2
    assert "trafficunit[server]" in result.output
    assert "Traceback" not in result.output
