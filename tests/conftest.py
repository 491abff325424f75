"""Shared fixtures: real data from ../shared/data, the embedded sample, small synthetic networks."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data not present beside the repository")
    return SHARED_DATA


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
