"""tu.build_basemap: a PMTiles basemap from the units' OSM extract (tippecanoe)."""

from __future__ import annotations

from pathlib import Path

import pytest

import trafficunit as tu
from trafficunit.basemap import BASEMAP_LAYERS


@pytest.fixture(scope="module")
def basemap(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tu.basemap.BasemapReport]:
    out = tmp_path_factory.mktemp("basemap") / "basemap.pmtiles"
    return out, tu.build_basemap(tu.sample_network_path(), out)


def test_basemap_holds_every_layer(basemap: tuple[Path, tu.basemap.BasemapReport]) -> None:
    out, rep = basemap
    assert out.exists() and rep.bytes == out.stat().st_size > 10_000
    assert rep.seconds >= rep.tippecanoe_s > 0
    assert set(rep.features) == set(BASEMAP_LAYERS)
    assert all(rep.features[name] > 0 for name in ("roads", "buildings", "rail", "parks"))
    # z15 tile over Helsinki's centre (Esplanadi): streets with names, footways, buildings
    layers = tu.tiles.read_tile_layers(out, 15, 18654, 9485)
    assert {"roads", "buildings"} <= set(layers)
    classes = {f["properties"].get("class") for f in layers["roads"]}
    assert "footway" in classes and classes & {"primary", "secondary", "tertiary", "residential"}
    assert any(f["properties"].get("name") for f in layers["roads"])


def test_basemap_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(tu.InputFileError, match="no such OSM extract"):
        tu.build_basemap(tmp_path / "missing.osm.pbf", tmp_path / "b.pmtiles")
    src = tmp_path / "roads.geojson"
    src.write_text("{}")
    with pytest.raises(tu.ValidationError, match=r"\.pbf"):
        tu.build_basemap(src, tmp_path / "b.pmtiles")
    with pytest.raises(tu.ValidationError, match=r"\.pmtiles"):
        tu.build_basemap(tu.sample_network_path(), tmp_path / "b.mbtiles")
    assert not list(tmp_path.glob("b.*"))
