"""The hazard catalogue "1 + N": a city catalogue of 4 classes (56 items fit), district overlays
that only add items, versioned, valid only inside their zone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pytest
from fastapi.testclient import TestClient

from trafficunit.errors import InputFileError
from trafficunit.ledger.catalogue import load_catalogue, load_catalogue_set
from trafficunit.zones import generate_zones, write_folder_zones
from trafficunit_server.app import create_app
from trafficunit_server.settings import LedgerServerSettings, Settings

from ._serverdata import build_data_dir

ADMIN = "cat-admin-token-0123456789abcdefghijk"
A = {"Authorization": f"Bearer {ADMIN}"}


def overlay(path: Path, zone: str, items: list[str], **extra: object) -> Path:
    doc = {
        "zone": zone,
        "tree": "admin",
        "version": "2024-1",
        "classes": [{"code": "road", "items": [{"code": c, "name": c} for c in items]}],
        **extra,
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_a_city_list_of_4_classes_and_56_items_loads(tmp_path: Path) -> None:
    classes = [
        {
            "code": f"c{i}",
            "name": f"class {i}",
            "items": [
                {"code": f"c{i}.item{j}", "name": f"item {j}", "name_zh": f"项{j}"}
                for j in range(14)
            ],
        }
        for i in range(4)
    ]
    p = tmp_path / "city.json"
    p.write_text(json.dumps({"version": "city-2024", "classes": classes}), encoding="utf-8")
    cat = load_catalogue(str(p))
    assert (len(cat.classes), len(cat.items), cat.version) == (4, 56, "city-2024")
    default = load_catalogue()
    assert len(default.classes) == 4


def test_overlays_add_never_remove_and_apply_in_their_zone(tmp_path: Path) -> None:
    o1 = overlay(tmp_path / "d1.json", "GEN-D1", ["road.tram_rails"])
    o2 = overlay(tmp_path / "d2.json", "GEN-D2", ["road.cobbles"], version="7")
    cs = load_catalogue_set(None, [o1, o2])
    city = load_catalogue()
    assert cs.version == f"{city.version}+GEN-D1:2024-1+GEN-D2:7"
    d1 = cs.for_zones(["GEN", "GEN-D1", "GEN-D1-S1"])
    assert "road.tram_rails" in d1.items and "road.cobbles" not in d1.items
    assert set(city.items) <= set(d1.items)  # nothing of the city's is lost
    assert set(cs.union().items) == set(city.items) | {"road.tram_rails", "road.cobbles"}
    assert cs.allowed("road.tram_rails", ["GEN-D1"]) and not cs.allowed("road.tram_rails", ["X"])
    assert cs.allowed("facility.signal", [])
    # an overlay may not change a city item, nor remove one
    with pytest.raises(InputFileError, match="city item"):
        load_catalogue_set(None, [overlay(tmp_path / "bad.json", "GEN-D1", ["facility.signal"])])
    with pytest.raises(InputFileError, match="cannot remove"):
        load_catalogue_set(None, [overlay(tmp_path / "rm.json", "GEN-D1", [], remove=["x"])])
    with pytest.raises(InputFileError, match="distinct codes"):
        load_catalogue_set(None, [o1, overlay(tmp_path / "d3.json", "GEN-D3", ["road.tram_rails"])])


@pytest.fixture
def client(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    folder = build_data_dir(tmp_path_factory.mktemp("cat"))
    units = gpd.read_parquet(folder / "units.parquet")
    zones = generate_zones(units)
    write_folder_zones(folder, zones)
    # the district holding the grid's south-west corner gets an item of its own
    d = zones.level("admin", "district")
    west = d.geometry.bounds["minx"].min()
    south = d.geometry.bounds["miny"].min()
    sw = d[(d.geometry.bounds["minx"] == west) & (d.geometry.bounds["miny"] == south)]
    o = overlay(tmp_path / "o.json", str(sw["code"].iloc[0]), ["road.tram_rails"])
    monkeypatch.setenv("TRAFFICUNIT_OPS_CATALOGUE_OVERLAYS", json.dumps([str(o)]))
    cfg = LedgerServerSettings(
        database_url=f"sqlite:///{tmp_path / 'l.sqlite'}", admin_token=ADMIN, sweep_interval_s=0
    )
    with TestClient(create_app(Settings(data_dir=folder, ledger=cfg))) as c:
        c.sw_code = str(sw["code"].iloc[0])  # type: ignore[attr-defined]
        yield c


def test_a_district_item_is_valid_only_inside_its_district(client: TestClient) -> None:
    from ._serverdata import DLAT, DLON, LAT0, LON0

    eng = {
        "Authorization": "Bearer "
        + client.post("/tokens", json={"role": "engineer"}, headers=A).json()["token"]
    }
    code = client.sw_code  # type: ignore[attr-defined]
    cat = client.get("/catalogue", params={"zone": code}).json()
    assert "road.tram_rails" in json.dumps(cat["catalogue"]) and cat["overlays"][0]["zone"] == code
    assert "road.tram_rails" not in json.dumps(client.get("/catalogue").json()["catalogue"])
    inside = {"type": "Point", "coordinates": [LON0 + DLON / 2, LAT0 + 0.00002]}
    outside = {"type": "Point", "coordinates": [LON0 + 4.5 * DLON, LAT0 + 5 * DLAT + 0.00002]}
    ok = client.post(
        "/hazards", json={"geometry": inside, "category": "road.tram_rails"}, headers=eng
    )
    assert ok.status_code == 201, ok.text
    no = client.post(
        "/hazards", json={"geometry": outside, "category": "road.tram_rails"}, headers=eng
    )
    assert no.status_code == 400 and "district item" in no.json()["detail"]
    ids = [
        f["id"]
        for f in client.get("/hazards", params={"limit": 10000}).json()["features"]
        if f["properties"]["category"] == "road.tram_rails"
    ]
    assert ids == [ok.json()["id"]]  # the refused report left nothing behind
