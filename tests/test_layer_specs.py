"""One spec per live layer: the GeoJSON list and the live tiles mean the same by one query.

For every layer of :data:`trafficunit_server.layers.LIVE` and every one of its parameters, good
and bad values go to the list route and to the live tile holding the whole test grid: both must
accept or refuse (same status class, 400 for a bad value) and keep the same features.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mapbox_vector_tile
import pytest
from fastapi.testclient import TestClient

from trafficunit import mvt
from trafficunit_server import Settings, create_app
from trafficunit_server.layers import (
    ACCIDENTS,
    HAZARDS,
    LIVE,
    PERMITS,
    UNITS,
    WORKZONES,
    LayerSpec,
)
from trafficunit_server.settings import QuerySettings, TileServerSettings

from ._serverdata import LAT0, LON0, build_data_dir, grid_units

SEG = str(grid_units().query("kind == 'segment'").index[0])

#: Values per parameter: accepted ones, refused ones (400) and "no filter" ones.
CASES: dict[str, dict[str, list[str]]] = {
    ACCIDENTS.tileset: {
        "from": ["2018-01-01", "2018-03-01T12:00:00+02:00", "", "yesterday", "2018-02-30", "1000"],
        "to": ["2018-01-31", "2018-02-01T00:00:00Z", "2017-01-01", "tomorrow", "99999-01-01"],
        "light": ["day", "night", "all", "", "dusk", "DAY"],
        "severity": ["K", "K,A", "O,O", "", "Z", "KA", "k", ",,"],
        "unit_id": [SEG, "no-such-unit", "", "x" * 101],
    },
    UNITS.tileset: {
        "level": ["red", "red,orange", "purple", ""],
        "kind": ["segment", "intersection", "roundabout", ""],
        "road_class": ["primary", "primary,secondary", "track", ""],
        "min_crashes": ["9", "0", "-1", "abc", "nan", "inf", ""],
        "min_epdo": ["1.5", "1e9", "x"],
        "min_epdo_per_km": ["0", "-inf"],
        "min_eb_excess": ["0", "1,2"],
        "min_score_percentile": ["50", "0", "100", "101", "-0.5"],
        "min_open_hazards": ["1", "0"],
    },
    HAZARDS.tileset: {
        "state": ["open", "reported", "reported,closed", "closed", "", "Z", "open,closed"],
        "grade": ["major", "general", "一般", "重大,general", "", "Z", "minor"],
    },
    WORKZONES.tileset: {
        "active": ["2018-06-01", "2018-05-01T00:00:00Z", "2019-06-01", "now", "", "soon"],
    },
    PERMITS.tileset: {},  # the active permits' routes, no filter
}
#: Queries that join parameters (checks across them).
JOINED: dict[str, list[dict[str, str]]] = {
    ACCIDENTS.tileset: [
        {"from": "2018-02-01", "to": "2018-01-01"},
        {"from": "2018-01-01", "to": "2018-01-01"},
        {"from": "2018-01-01", "to": "2018-03-31", "light": "night", "severity": "K,A"},
    ],
    UNITS.tileset: [{"level": "red", "kind": "segment", "min_crashes": "1"}],
    HAZARDS.tileset: [{"state": "open", "grade": "major"}],
}
ROUTES = {
    ACCIDENTS.tileset: "/accidents",
    UNITS.tileset: "/units",
    HAZARDS.tileset: "/hazards",
    WORKZONES.tileset: "/workzones",
    PERMITS.tileset: "/permits",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir: Path = build_data_dir(tmp_path_factory.mktemp("specs"))
    s = Settings(
        data_dir=data_dir,
        tiles=TileServerSettings(reload_check_s=0.0),
        query=QuerySettings(max_bbox_km2=50.0, max_limit=5000),
    )
    with TestClient(create_app(s)) as c:
        yield c


def _tile_url(name: str) -> str:
    x, y = mvt.lonlat_to_tile(LON0 + 0.007, LAT0 + 0.003, 11)  # one tile holds the grid
    return f"/tiles/{name}/11/{x}/{y}.mvt"


def _key(spec: LayerSpec) -> str:
    return "unit_id" if spec is UNITS else "site_code" if spec is WORKZONES else "event_id"


def _tile(client: TestClient, spec: LayerSpec, query: dict[str, str]) -> tuple[int, set[str]]:
    r = client.get(_tile_url(spec.tileset), params=query)
    if r.status_code != 200:
        return r.status_code, set()
    content = r.content
    if content[:2] == b"\x1f\x8b":
        content = gzip.decompress(content)
    feats = mapbox_vector_tile.decode(content).get(spec.layer, {"features": []})["features"]
    return 200, {str(f["properties"][_key(spec)]) for f in feats}


def _route(client: TestClient, spec: LayerSpec, query: dict[str, str]) -> tuple[int, set[str]]:
    r = client.get(ROUTES[spec.tileset], params={**query, "limit": "5000"})
    if r.status_code != 200:
        return r.status_code, set()
    return 200, {str(f["properties"].get(_key(spec), f["id"])) for f in r.json()["features"]}


def _queries() -> Iterator[tuple[str, dict[str, str]]]:
    for name, params in CASES.items():
        for param, values in params.items():
            for v in values:
                yield name, {param: v}
        for q in JOINED.get(name, []):
            yield name, q


def test_every_layer_and_parameter_has_cases() -> None:
    assert set(CASES) == set(LIVE) == set(ROUTES)
    for name, spec in LIVE.items():
        assert set(CASES[name]) == {p.name for p in spec.params}, name


@pytest.mark.parametrize(
    ("name", "query"), list(_queries()), ids=[f"{n}:{q}" for n, q in _queries()]
)
def test_list_route_and_live_tile_agree(
    client: TestClient, name: str, query: dict[str, str]
) -> None:
    spec = LIVE[name]
    t_status, t_ids = _tile(client, spec, query)
    r_status, r_ids = _route(client, spec, query)
    assert t_status // 100 == r_status // 100 or {t_status, r_status} == {200, 204}, (
        t_status,
        r_status,
    )
    assert t_status in (200, 204, 400) and r_status in (200, 400)
    if spec is WORKZONES:
        # the list holds the ledger's registered sites; the tiles add the data folder's own
        # (site codes not registered): compare the registered ones
        t_ids &= set(_route(client, spec, {})[1])
    assert t_ids == r_ids


def test_filters_keep_what_they_say(client: TestClient) -> None:
    """The agreement above is not two empty answers: filters select, refusals say why."""
    every = _route(client, ACCIDENTS, {})[1]
    night = _route(client, ACCIDENTS, {"light": "night"})[1]
    fatal = _route(client, ACCIDENTS, {"severity": "K"})[1]
    assert every and night and fatal and night < every and fatal < every
    assert _route(client, ACCIDENTS, {"light": "all"})[1] == every
    bad = client.get(_tile_url("live-accidents"), params={"severity": "Z"})
    assert bad.status_code == 400 and "KABCO" in bad.json()["detail"]
    opened = _tile(client, HAZARDS, {"state": "open"})[1]
    assert opened and opened == _tile(client, HAZARDS, {"status": "open"})[1]  # the old name
    assert _tile(client, UNITS, {"level": "red"})[1] < _tile(client, UNITS, {})[1]


def test_a_layer_spec_is_its_routes_documentation(client: TestClient) -> None:
    doc: dict[str, Any] = client.get("/openapi.json").json()["paths"]
    for name, route in ROUTES.items():
        if route in ("/hazards", "/workzones"):
            continue  # the ledger's lists: more parameters than the layer's
        listed = {p["name"] for p in doc[route]["get"]["parameters"]}
        assert {p.name for p in LIVE[name].params} <= listed, route
    tile = {p["name"] for p in doc["/tiles/{tileset}/{z}/{x}/{y}.mvt"]["get"]["parameters"]}
    assert {p.name for s in LIVE.values() for p in s.params} <= tile
