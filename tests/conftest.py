"""Shared fixtures: real data from ../shared/data, the embedded sample, small synthetic networks.

Also the ``--slow`` option: tests marked ``slow`` (long runs on real data) form families
(``@pytest.mark.slow(family="...")``, else one family per test function). ``--slow=sample``
(``make test``) runs the first collected test of each family, ``--slow=rest`` only the others,
``--slow=all`` (the default) every test: ``sample`` and ``rest`` together are the whole suite,
which is how ``.ci/run`` runs it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import LineString

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, skipping the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} not present (expected ../shared/data beside the repo)")
    return path


SLOW_MODES = ("all", "sample", "rest")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        choices=SLOW_MODES,
        default="all",
        help="slow tests: all (default); sample: one per family plus every fast test (make "
        "test); rest: only the slow tests the sample leaves out",
    )


def slow_family(item: pytest.Item) -> str | None:
    """The family of a ``slow``-marked test (its ``family=`` or its function), else None."""
    mark = item.get_closest_marker("slow")
    if mark is None:
        return None
    family = mark.kwargs.get("family")
    if family:
        return str(family)
    return f"{item.path.name}::{getattr(item, 'originalname', item.name)}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the tests ``--slow`` asks for; the first collected test of a slow family samples it."""
    mode = config.getoption("slow")
    if mode == "all":
        return
    seen: set[str] = set()
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        family = slow_family(item)
        sampled = family is None or family not in seen
        if family is not None:
            seen.add(family)
        (keep if sampled == (mode == "sample") else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data not present beside the repository")
    return SHARED_DATA


def built_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]
) -> Path:
    """``build(folder)`` once per test run, shared by every pytest-xdist worker: the first
    caller builds under a lock, the others wait for it and get the same folder. Treat it as
    read-only; copy it to write."""
    base = tmp_path_factory.getbasetemp()
    # a worker's basetemp is popen-gwN inside the run's own: share the run's
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built-once"
    root.mkdir(exist_ok=True)
    done = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            staging = root / ".staging"
            shutil.rmtree(staging / name, ignore_errors=True)
            staging.mkdir(exist_ok=True)
            build(staging / name)
            (staging / name).rename(done)  # whole or absent, even if a build fails
    return done


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo data folder (``trafficunit demo --no-serve``: the embedded Helsinki network and
    the GENERATED sample), built once per run; read-only, copy it to serve or write."""
    from trafficunit.cli.serve import build_demo

    return built_once(tmp_path_factory, "demo", build_demo)


@pytest.fixture(scope="session")
def sample_roads() -> gpd.GeoDataFrame:
    import trafficunit as tu

    return tu.read_network(tu.sample_network_path())


@pytest.fixture(scope="session")
def sample_units(sample_roads: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    import trafficunit as tu

    return tu.build_units(sample_roads, max_length_m=200)


def lines_gdf(
    coords: list[list[tuple[float, float]]], crs: str = "EPSG:3067", **cols
) -> gpd.GeoDataFrame:
    """A GeoDataFrame of lines in a metric CRS (Finland's ETRS-TM35FIN by default)."""
    data = {"highway": ["residential"] * len(coords)}
    data.update(cols)
    return gpd.GeoDataFrame(data, geometry=[LineString(c) for c in coords], crs=crs)
