"""The HTTP server: routes, tile semantics, limits, CSV, reload, never a 500 for bad input."""

from __future__ import annotations

import gzip
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import mapbox_vector_tile
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trafficunit import mvt
from trafficunit.io import write_table
from trafficunit.tiles import build_tiles, feature_ids
from trafficunit_server import Settings, create_app
from trafficunit_server.settings import QuerySettings, TileServerSettings

from ._serverdata import LAT0, LON0, build_data_dir, grid_events, grid_units

CENTRE = (LON0 + 0.007, LAT0 + 0.003)


def _tile(z: int, lon: float = CENTRE[0], lat: float = CENTRE[1]) -> str:
    x, y = mvt.lonlat_to_tile(lon, lat, z)
    return f"{z}/{x}/{y}"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_data_dir(tmp_path_factory.mktemp("data"))


def _wait_for(check: Any, timeout: float = 60.0) -> None:
    """Poll ``check()`` until true (a replaced file is seen on a later request), or fail."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the timeout"
        time.sleep(0.01)


def _client(data_dir: Path, **kw: Any) -> TestClient:
    s = Settings(
        data_dir=data_dir,
        tiles=TileServerSettings(reload_check_s=0.0),
        query=QuerySettings(max_bbox_km2=50.0, max_limit=500),
        **kw,
    )
    return TestClient(create_app(s))


@pytest.fixture(scope="module")
def client(data_dir: Path) -> Iterator[TestClient]:
    with _client(data_dir) as c:
        yield c


def _decode(content: bytes) -> dict[str, list[dict[str, Any]]]:
    if content[:2] == b"\x1f\x8b":
        content = gzip.decompress(content)
    return {k: v["features"] for k, v in mapbox_vector_tile.decode(content).items()}


# --------------------------------------------------------------------------- meta


def test_healthz_lists_tables_and_tilesets(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["tables"]["units"] == len(grid_units())
    assert body["tilesets"] == ["risk"]


def test_openapi_documents_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for p in (
        "/tiles",
        "/tiles/{tileset}/tilejson.json",
        "/tiles/{tileset}/{z}/{x}/{y}.mvt",
        "/units",
        "/units/{unit_id}",
        "/accidents",
        "/black-spots",
        "/healthz",
        "/style.json",
    ):
        assert p in paths, p


def test_style_and_legend_explain_the_rule(client: TestClient) -> None:
    style = client.get("/style.json").json()
    assert style["version"] == 8
    assert style["sources"]["risk"]["url"].endswith("/tiles/risk/tilejson.json")
    ids = {layer["id"] for layer in style["layers"]}
    assert {
        "units-segments",
        "units-intersections",
        "accidents",
        "hazards",
        "accidents-live",
    } <= ids
    legend = style["metadata"]["trafficunit:legend"]
    assert [lv["label"] for lv in legend["levels"]][0] == "red: test band red"
    # the data folder's open hazards (imported into the ledger) raise their units' levels
    units = grid_units()
    hz = grid_events(units)["hazards"]
    rank = units["level_rank"].copy()
    for uid, grade, status in zip(hz["unit_id"], hz["grade"], hz["status"], strict=True):
        if status != "closed":
            rank[uid] = min(4, rank[uid] + {"major": 2, "general": 1}[grade])
    assert legend["levels"][0]["count"] == int((rank == 4).sum())
    assert "fewer than 1 accident stays blue" in legend["explanation"]
    assert legend["generated_sample"] is True


def test_index_page_uses_vendored_maplibre(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "/static/vendor/maplibre-gl/maplibre-gl.js" in page.text
    assert "http" not in page.text.split("<body>")[0].replace("http-equiv", "")  # no CDN
    js = client.get("/static/vendor/maplibre-gl/maplibre-gl.js")
    assert js.status_code == 200 and len(js.content) > 500_000


# --------------------------------------------------------------------------- tiles


def test_tiles_list_and_tilejson(client: TestClient) -> None:
    sets = {t["name"]: t for t in client.get("/tiles").json()["tilesets"]}
    assert sets["risk"]["kind"] == "stored"
    assert {"live-accidents", "live-hazards", "live-workzones", "live-units"} <= set(sets)
    tj = client.get("/tiles/risk/tilejson.json").json()
    assert tj["tilejson"] == "3.0.0"
    assert tj["tiles"] == ["http://testserver/tiles/risk/{z}/{x}/{y}.mvt"]
    assert (tj["minzoom"], tj["maxzoom"]) == (8, 16)
    assert {v["id"] for v in tj["vector_layers"]} == {"units", "accidents", "hazards", "workzones"}
    assert tj["bounds"][0] == pytest.approx(LON0, abs=1e-3)
    live = client.get("/tiles/live-accidents/tilejson.json").json()
    assert live["tilejson"] == "3.0.0" and live["vector_layers"][0]["id"] == "accidents"
    # every tileset the list names has a TileJSON a map can open (the ledger's lazy layers too)
    for name in sets:
        answer = client.get(f"/tiles/{name}/tilejson.json")
        assert answer.status_code == 200, (name, answer.text[:200])
        assert answer.json()["vector_layers"], name
    assert client.get("/tiles/nope/tilejson.json").status_code == 404


def test_stored_tile_gzip_passthrough_etag_and_304(client: TestClient) -> None:
    url = f"/tiles/risk/{_tile(15)}.mvt"
    raw = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.headers["vary"] == "Accept-Encoding"
    assert raw.headers["cache-control"].startswith("public, max-age=")
    etag = raw.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    layers = _decode(raw.content)
    assert {f["properties"]["unit_id"] for f in layers["units"]} <= set(grid_units().index)
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    # clients without gzip get the decompressed tile and a different strong ETag
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert plain.content[:2] != b"\x1f\x8b" and _decode(plain.content) == layers
    assert plain.headers["etag"] != etag
    refused = client.get(url, headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers


def test_head_has_headers_and_no_body(client: TestClient) -> None:
    url = f"/tiles/risk/{_tile(15)}.mvt"
    get = client.get(url)
    head = client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == get.headers["etag"]
    assert int(head.headers["content-length"]) > 0


def test_tile_status_codes(client: TestClient) -> None:
    assert client.get("/tiles/risk/12/0/0.mvt").status_code == 204  # empty, inside zoom range
    assert client.get(f"/tiles/risk/{_tile(17)}.mvt").status_code == 404  # beyond maxzoom
    assert client.get(f"/tiles/risk/{_tile(4)}.mvt").status_code == 404  # below minzoom
    assert client.get("/tiles/nope/12/0/0.mvt").status_code == 404
    for bad in ("12/a/0", "12/-1/0", "12/0/4096", "x/0/0", "12/01/0", "12/1.5/0"):
        r = client.get(f"/tiles/risk/{bad}.mvt")
        assert r.status_code == 400, bad
        assert "detail" in r.json()


def test_cors_any_origin_by_default(client: TestClient) -> None:
    r = client.get(f"/tiles/risk/{_tile(15)}.mvt", headers={"Origin": "https://example.org"})
    assert r.headers["access-control-allow-origin"] == "*"
    r = client.get("/units?limit=1", headers={"Origin": "https://example.org"})
    assert r.headers["access-control-allow-origin"] == "*"


def test_cors_configured_origins(data_dir: Path) -> None:
    with _client(data_dir, cors_origins=["https://maps.example.org"]) as c:
        url = f"/tiles/risk/{_tile(15)}.mvt"
        ok = c.get(url, headers={"Origin": "https://maps.example.org"})
        assert ok.headers["access-control-allow-origin"] == "https://maps.example.org"
        assert "Origin" in ok.headers["vary"]
        other = c.get(url, headers={"Origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in other.headers
        pre = c.options(
            "/units",
            headers={"Origin": "https://maps.example.org", "Access-Control-Request-Method": "GET"},
        )
        assert pre.status_code == 200


def test_replaced_archive_is_picked_up_without_restart(tmp_path: Path, data_dir: Path) -> None:
    d = tmp_path / "d"
    shutil.copytree(data_dir, d)
    with _client(d) as c:
        url = f"/tiles/risk/{_tile(14)}.mvt"
        before = c.get(url)
        assert "accidents" in _decode(before.content)
        # rebuild with units only, written atomically over the served file
        build_tiles(grid_units(), output=d / "risk.pmtiles", maxzoom=14)
        _wait_for(lambda: c.get(url).headers.get("etag") != before.headers["etag"])
        after = c.get(url)
        assert after.status_code == 200
        assert after.headers["etag"] != before.headers["etag"]
        assert set(_decode(after.content)) == {"units"}
        assert c.get("/tiles/risk/tilejson.json").json()["maxzoom"] == 14


def test_live_accident_tiles_filter_by_night_and_dates(client: TestClient) -> None:
    url = f"/tiles/live-accidents/{_tile(11)}.mvt"  # one tile holds the whole grid
    every = _decode(client.get(url).content)["accidents"]
    night = _decode(client.get(url + "?light=night").content)["accidents"]
    day = _decode(client.get(url + "?light=day").content)["accidents"]
    assert len(every) == client.get("/healthz").json()["tables"]["accidents"]
    assert len(night) + len(day) == len(every) and night and day
    assert {f["properties"]["hour"] for f in night} == {23}
    assert {f["properties"]["hour"] for f in day} == {12}
    early = _decode(client.get(url + "?from=2018-01-01&to=2018-01-31").content)["accidents"]
    assert {f["properties"]["time"][:7] for f in early} == {"2018-01"}
    assert len(early) == 7  # every fifth day in January: 1, 6, ..., 31
    ids = {f["id"] for f in every}
    assert ids == {int(i) for i in feature_ids([f["properties"]["event_id"] for f in every])}
    assert client.get(url + "?light=dusk").status_code == 400
    assert client.get(url + "?from=yesterday").status_code == 400
    assert client.get(url + "?from=2018-02-01&to=2018-01-01").status_code == 400
    assert client.get(f"/tiles/live-accidents/{_tile(5)}.mvt").status_code == 404
    empty = client.get(url + "?from=2030-01-01")
    assert empty.status_code == 204


def test_live_tiles_are_cached_with_strong_etags(client: TestClient) -> None:
    url = f"/tiles/live-hazards/{_tile(14)}.mvt?status=open"
    first = client.get(url)
    assert first.status_code == 200
    assert {f["properties"]["status"] for f in _decode(first.content)["hazards"]} == {
        "rectifying",
        "reported",
    }
    hits = client.app.state.tile_cache.hits  # type: ignore[attr-defined]
    second = client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert second.status_code == 304
    assert client.app.state.tile_cache.hits == hits + 1  # type: ignore[attr-defined]
    wz = client.get(f"/tiles/live-workzones/{_tile(14)}.mvt?active=2018-06-01")
    assert len(_decode(wz.content)["workzones"]) == 1
    assert client.get(f"/tiles/live-workzones/{_tile(14)}.mvt?active=2019-06-01").status_code == 204


# --------------------------------------------------------------------------- lists


def test_units_bbox_filters_and_order(client: TestClient) -> None:
    grid = grid_units()
    bbox = f"{LON0 - 0.001},{LAT0 - 0.001},{LON0 + 0.0045},{LAT0 + 0.0025}"
    r = client.get(f"/units?bbox={bbox}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    fc = r.json()
    assert fc["type"] == "FeatureCollection"
    got = {f["id"] for f in fc["features"]}
    assert got and got <= set(grid.index)
    assert fc["numberMatched"] == len(got) == int(r.headers["x-total-count"])
    ranks = [f["properties"]["level_rank"] for f in fc["features"]]
    assert ranks == sorted(ranks, reverse=True)  # riskiest first
    red = client.get(f"/units?bbox={bbox}&level=red").json()["features"]
    assert red and {f["properties"]["level"] for f in red} == {"red"}
    segs = client.get("/units?kind=segment&road_class=primary").json()
    assert segs["numberMatched"] == int(
        ((grid["kind"] == "segment") & (grid["road_class"] == "primary")).sum()
    )
    many = client.get("/units?min_crashes=9").json()
    assert many["numberMatched"] == int((grid["crashes"] >= 9).sum())
    limited = client.get("/units?limit=3").json()
    assert limited["numberReturned"] == 3 and limited["numberMatched"] == len(grid)


def test_lists_leave_out_bookkeeping_unless_asked(client: TestClient) -> None:
    summary = client.get("/units?limit=1").json()["features"][0]["properties"]
    assert "neighbours" not in summary and "osm_ids" not in summary and "level" in summary
    full = client.get("/units?limit=1&properties=all").json()["features"][0]["properties"]
    assert full["neighbours"] == "S0000ETESTSEG;I0000TESTNODE" and full["osm_ids"] == "1001;1002"
    assert client.get("/units?properties=some").status_code == 400
    uid = client.get("/units?limit=1").json()["features"][0]["id"]
    assert "neighbours" in client.get(f"/units/{uid}").json()["properties"]


def test_unit_detail_has_measures_and_events(client: TestClient) -> None:
    grid = grid_units()
    uid = grid[grid["kind"] == "segment"].index[0]
    r = client.get(f"/units/{uid}")
    assert r.status_code == 200
    unit = r.json()
    assert unit["id"] == uid
    assert unit["properties"]["crashes"] == grid.loc[uid, "crashes"]
    assert unit["geometry"]["type"] == "LineString"
    assert [a["properties"]["unit_id"] for a in unit["accidents"]] == [uid]
    # hazards.parquet is imported into the ledger on start and assigned to units there
    assert [(h["id"], h["properties"]["state"]) for h in unit["hazards"]] == [("H1", "rectifying")]
    assert unit["hazards"][0]["unit_ids"] == [uid]
    assert unit["workzones"] == []
    wz_unit = grid[grid["kind"] == "segment"].index[6]
    assert [w["id"] for w in client.get(f"/units/{wz_unit}").json()["workzones"]] == ["W1"]
    assert client.get("/units/NOPE").status_code == 404


def test_accidents_by_period_light_and_severity(client: TestClient) -> None:
    jan = client.get("/accidents?from=2018-01-01&to=2018-01-31").json()
    assert jan["numberMatched"] == 7
    night = client.get("/accidents?light=night").json()["features"]
    assert night and {f["properties"]["hour"] for f in night} == {23}
    ka = client.get("/accidents?severity=K,A").json()["features"]
    assert ka and {f["properties"]["severity"] for f in ka} == {"K", "A"}


def test_black_spots_and_csv_export(client: TestClient) -> None:
    spots = client.get("/black-spots").json()
    assert [f["id"] for f in spots["features"]] == ["BS1", "BS2"]
    assert client.get("/black-spots?type=section").json()["numberMatched"] == 1
    csv = client.get("/black-spots?format=csv")
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("spot_id,") and "geometry_wkt" in lines[0] and len(lines) == 3
    by_accept = client.get("/units?limit=5", headers={"Accept": "text/csv"})
    assert by_accept.headers["content-type"].startswith("text/csv")
    assert len(by_accept.text.strip().splitlines()) == 6
    assert client.get("/units?format=xml").status_code == 406


def test_limits_and_bbox_errors(client: TestClient) -> None:
    assert client.get("/units?bbox=20,55,30,65").status_code == 413
    assert client.get("/units?limit=501").status_code == 400
    assert client.get("/units?limit=0").status_code == 400
    assert client.get("/units?limit=abc").status_code == 400
    for bad in ("1,2,3", "a,b,c,d", "24.95,60.16,24.93,60.17", "200,0,201,1", "nan,0,1,1"):
        assert client.get(f"/units?bbox={bad}").status_code == 400, bad
    assert client.get("/accidents?from=notadate").status_code == 400


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(["/units", "/accidents", "/black-spots"]),
    bbox=st.one_of(
        st.none(),
        st.text(max_size=40),
        st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=3, max_size=5).map(
            lambda v: ",".join(map(str, v))
        ),
    ),
    limit=st.one_of(st.none(), st.integers(-5, 10**6).map(str), st.text(max_size=5)),
    frm=st.one_of(st.none(), st.text(max_size=12), st.dates().map(str)),
)
def test_bad_list_input_is_never_a_500(
    client: TestClient, path: str, bbox: str | None, limit: str | None, frm: str | None
) -> None:
    params = {k: v for k, v in (("bbox", bbox), ("limit", limit), ("from", frm)) if v is not None}
    r = client.get(path, params=params)
    assert r.status_code in (200, 400, 406, 413), (params, r.text)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tileset=st.sampled_from(["risk", "live-accidents", "live-hazards", "nope"]),
    z=st.one_of(st.integers(-2, 40).map(str), st.text(max_size=4)),
    x=st.one_of(st.integers(-2, 2**20).map(str), st.text(max_size=4)),
    y=st.one_of(st.integers(-2, 2**20).map(str), st.text(max_size=4)),
)
def test_bad_tile_addresses_are_never_a_500(
    client: TestClient, tileset: str, z: str, x: str, y: str
) -> None:
    z, x, y = (quote(v, safe="") for v in (z, x, y))
    r = client.get(f"/tiles/{tileset}/{z}/{x}/{y}.mvt")
    assert r.status_code in (200, 204, 400, 404), (z, x, y, r.text)


def test_missing_tables_answer_503_not_500(tmp_path: Path, data_dir: Path) -> None:
    d = tmp_path / "only-tiles"
    d.mkdir()
    shutil.copy(data_dir / "risk.pmtiles", d / "risk.pmtiles")
    with _client(d) as c:
        assert c.get("/units").status_code == 503
        assert c.get("/accidents").status_code == 503
        assert c.get("/black-spots").status_code == 503
        assert c.get(f"/tiles/risk/{_tile(15)}.mvt").status_code == 200
        assert c.get("/style.json").status_code == 200


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv("TRAFFICUNIT_DATA_DIR", str(data_dir))
    monkeypatch.setenv("TRAFFICUNIT_QUERY_MAX_LIMIT", "7")
    monkeypatch.setenv("TRAFFICUNIT_CORS_ORIGINS", '["https://a.example"]')
    s = Settings()
    assert s.data_dir == data_dir and s.query.max_limit == 7
    assert s.cors_origins == ["https://a.example"]
    with TestClient(create_app(s)) as c:
        assert c.get("/units?limit=8").status_code == 400
    assert os.environ["TRAFFICUNIT_DATA_DIR"] == str(data_dir)


def test_replaced_table_is_reloaded_with_a_new_data_version(tmp_path: Path, data_dir: Path) -> None:
    d = tmp_path / "d"
    shutil.copytree(data_dir, d)
    with _client(d) as c:
        v1 = c.get("/healthz").json()["data_version"]
        units = grid_units()
        write_table(units[units["level"] == "red"], d / "units.parquet")
        _wait_for(lambda: c.get("/healthz").json()["data_version"] != v1)
        body = c.get("/healthz").json()
        assert body["data_version"] != v1
        assert body["tables"]["units"] == int((units["level"] == "red").sum())
        assert {f["properties"]["level"] for f in c.get("/units").json()["features"]} == {"red"}


def test_serve_verb_refuses_a_missing_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from trafficunit.cli import app

    result = CliRunner().invoke(app, ["serve", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "no such folder" in result.output


@pytest.mark.parametrize("verb", ["serve", "demo"])
def test_a_busy_port_is_one_clear_line_before_any_work(verb: str, data_dir: Path) -> None:
    import socket

    from typer.testing import CliRunner

    from trafficunit.cli import app

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = [str(data_dir)] if verb == "serve" else ["-o", str(data_dir.parent / "demo-out")]
        result = CliRunner().invoke(app, [verb, *args, "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output
    assert not (data_dir.parent / "demo-out").exists()  # the demo did not build first
