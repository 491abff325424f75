"""`trafficunit serve` as users run it: Granian (RSGI fast path + ASGI bridge, the default) and
uvicorn (plain ASGI) started as real processes answer every kind of request the same way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from ._serve import serve
from ._serverdata import DLAT, DLON, LAT0, LON0, build_data_dir

ADMIN = "engines-admin-token-0123456789abcdefgh"
ENGINES = ("granian", "uvicorn")
#: Headers whose values must agree between the engines.
COMPARED = (
    "content-type",
    "content-encoding",
    "content-length",
    "etag",
    "cache-control",
    "vary",
    "access-control-allow-origin",
    "x-total-count",
    "content-disposition",
)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One server per engine over the same data folder (each with its own ledger)."""
    data = build_data_dir(tmp_path_factory.mktemp("engines") / "data")
    with ExitStack() as stack:
        urls = {}
        for engine in ENGINES:
            env = {
                "TRAFFICUNIT_ADMIN_TOKEN": ADMIN,
                "TRAFFICUNIT_DATABASE_URL": f"sqlite:///{data.parent / f'ledger-{engine}.sqlite'}",
                "TRAFFICUNIT_LEDGER_SWEEP_INTERVAL_S": "0",
                "TRAFFICUNIT_LEDGER_MAX_BODY_BYTES": "20000",
            }
            urls[engine] = stack.enter_context(serve(data, server=engine, env=env))
        yield urls


def _both(
    servers: dict[str, str], method: str, path: str, **kw: object
) -> dict[str, httpx.Response]:
    out = {}
    for engine, url in servers.items():
        with httpx.Client(base_url=url, timeout=30) as client:
            out[engine] = client.request(method, path, **kw)  # type: ignore[arg-type]
    return out


def _same(res: dict[str, httpx.Response], servers: dict[str, str]) -> httpx.Response:
    a, b = res["granian"], res["uvicorn"]
    assert a.status_code == b.status_code, (a.status_code, b.status_code, a.text[:200])
    # a body naming each server's own URL compresses to lengths that may differ by a byte
    names_url = servers["granian"].encode() in a.content
    for h in COMPARED:
        if h == "content-length" and names_url:
            continue
        assert a.headers.get(h) == b.headers.get(h), h
    # absolute URLs (TileJSON) name each server's own port
    body_a = a.content.replace(servers["granian"].encode(), b"SERVER")
    body_b = b.content.replace(servers["uvicorn"].encode(), b"SERVER")
    assert body_a == body_b
    return a


def _tile() -> str:
    from trafficunit.mvt import lonlat_to_tile

    x, y = lonlat_to_tile(LON0 + 2 * DLON, LAT0 + 2 * DLAT, 15)
    return f"/tiles/risk/15/{x}/{y}.mvt"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/healthz", {}),
        ("/", {}),  # the web map
        ("/style.json", {}),
        ("/legend", {}),
        ("/tiles", {}),
        ("/tiles/risk/tilejson.json", {}),
        ("TILE", {"Accept-Encoding": "gzip"}),
        ("TILE", {"Accept-Encoding": "identity"}),
        ("TILE", {"Accept-Encoding": "gzip", "Origin": "https://map.example"}),
        ("/tiles/risk/15/99999999/1.mvt", {}),  # malformed: 400
        ("/tiles/risk/25/1/1.mvt", {}),  # beyond the zoom range: 404
        ("/tiles/risk/15/0/0.mvt", {}),  # empty inside the range: 204
        ("/tiles/nope/15/0/0.mvt", {}),
        ("LIVE", {"Accept-Encoding": "gzip"}),
        ("LIVE?light=night&from=2018-01-01", {"Accept-Encoding": "gzip"}),
        ("LIVE?light=dusk", {}),  # bad filter: 400
        (f"/units?bbox={LON0},{LAT0},{LON0 + 3 * DLON},{LAT0 + 3 * DLAT}", {}),
        (f"/units?bbox={LON0},{LAT0},{LON0 + 3 * DLON},{LAT0 + 3 * DLAT}&format=csv", {}),
        # GeoJSON and CSV gzip-compressed for clients that accept it, on both engines
        ("/units", {"Accept-Encoding": "gzip"}),
        ("/units?format=csv", {"Accept-Encoding": "gzip"}),
        ("/readyz", {}),
        ("/units?bbox=-170,-80,170,80", {}),  # too large: 413
        ("/units?bbox=1,2,3", {}),  # malformed: 400
        ("/accidents?limit=5", {}),
        ("/black-spots", {}),
        ("/static/app.js", {}),  # a file streamed in chunks
        ("/openapi.json", {}),
    ],
)
def test_engines_answer_alike(servers: dict[str, str], path: str, headers: dict[str, str]) -> None:
    if path.startswith("TILE"):
        path = _tile()
    elif path.startswith("LIVE"):
        path = _tile().replace("/risk/", "/live-accidents/") + path[4:]
    res = _same(_both(servers, "GET", path, headers=headers), servers)
    if path.startswith("/units") and headers.get("Accept-Encoding") == "gzip":
        assert res.headers["content-encoding"] == "gzip"
        assert int(res.headers["content-length"]) < len(res.content)  # compressed on the wire
    if path.endswith(".mvt") and res.status_code == 200:
        # a 304 on the tile's ETag, and HEAD with the GET's headers and no body
        etag = res.headers["etag"]
        again = _same(
            _both(servers, "GET", path, headers={**headers, "If-None-Match": etag}), servers
        )
        assert again.status_code == 304 and again.content == b""
        head = _same(_both(servers, "HEAD", path, headers=headers), servers)
        assert head.content == b"" and head.headers["etag"] == etag


def test_stored_tile_is_the_archive_bytes_gzip_passed_through(servers: dict[str, str]) -> None:
    res = _both(servers, "GET", _tile(), headers={"Accept-Encoding": "gzip"})["granian"]
    assert res.status_code == 200
    assert res.headers["content-encoding"] == "gzip"
    assert res.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    assert int(res.headers["content-length"]) > 0


def test_request_bodies_reach_the_app_and_the_limit_holds(servers: dict[str, str]) -> None:
    auth = {"Authorization": f"Bearer {ADMIN}"}
    made = _both(servers, "POST", "/tokens", json={"role": "reporter"}, headers=auth)
    for engine, res in made.items():
        assert res.status_code == 201, (engine, res.text)
        token = res.json()["token"]
        hazard = {
            "category": "facility.signal",
            "geometry": {"type": "Point", "coordinates": [LON0 + DLON / 2, LAT0]},
            "description": "engine " + engine,
        }
        with httpx.Client(base_url=servers[engine], timeout=30) as client:
            ok = client.post("/hazards", json=hazard, headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 201, (engine, ok.text)
            assert ok.json()["properties"]["description"] == "engine " + engine
            # a body past the configured maximum: 413 whether declared or streamed in chunks
            big = b'{"description": "' + b"x" * 30000 + b'"}'
            assert client.post("/hazards", content=big, headers=auth).status_code == 413

            def chunks() -> Iterator[bytes]:
                for _ in range(30):
                    yield b"x" * 1000

            assert client.post("/hazards", content=chunks(), headers=auth).status_code == 413
    bad = _both(servers, "POST", "/hazards", content=b"{not json", headers=auth)
    assert {r.status_code for r in bad.values()} == {400}
