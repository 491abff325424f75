"""Route permits over HTTP: request with a computed route, roles and If-Match through the
lifecycle, history, QR code and page, the layer, and traces checked against a permit."""

from __future__ import annotations

import gzip

import geopandas as gpd
import mapbox_vector_tile
import pandas as pd
import pytest
import shapely
from fastapi.testclient import TestClient

import trafficunit as tu
from trafficunit import mvt
from trafficunit.io import write_table
from trafficunit.routing import UnitGraph
from trafficunit.traces import generate_trace
from trafficunit_server import Settings, create_app
from trafficunit_server.settings import LedgerServerSettings

from ._ledger_db import ledger_url, pg_session_db, pg_template  # noqa: F401  (fixtures)
from .conftest import shared_path

ADMIN = "test-admin-token-0123456789abcdef"
A = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, gpd.GeoDataFrame, list]:
    units = tu.build_units(tu.read_network(shared_path("osm", "helsinki-centre.osm.pbf")))
    d = tmp_path_factory.mktemp("permitdata")
    write_table(units, d / "units.parquet")
    settings = Settings(
        data_dir=d,
        ledger=LedgerServerSettings(
            database_url=f"sqlite:///{d / 'ledger.sqlite'}",
            admin_token=ADMIN,
            sweep_interval_s=0,
        ),
    )
    g = UnitGraph(units)
    m = units.to_crs(g.crs)
    segs = m[(m["kind"] == "segment") & m["junction_id"].isna()].sort_values("length_m")
    a, b = segs.index[-1], segs.index[-30]
    ends = [
        units.geometry[a].interpolate(0.5, normalized=True),
        units.geometry[b].interpolate(0.5, normalized=True),
    ]
    with TestClient(create_app(settings)) as client:
        yield client, units, ends


def _token(client: TestClient, role: str) -> dict[str, str]:
    r = client.post("/tokens", json={"role": role}, headers=A)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _tile_features(client: TestClient, url: str) -> list[dict]:
    r = client.get(url)
    assert r.status_code in (200, 204), r.text
    if r.status_code == 204:
        return []
    content = gzip.decompress(r.content) if r.content[:2] == b"\x1f\x8b" else r.content
    return mapbox_vector_tile.decode(content).get("permits", {"features": []})["features"]


def _tile_ids(client: TestClient, url: str) -> list[str]:
    return [f["properties"]["event_id"] for f in _tile_features(client, url)]


def _gpx(tracks: list[gpd.GeoDataFrame]) -> bytes:
    body = ""
    for k, t in enumerate(tracks):
        pts = "".join(
            f'<trkpt lat="{p.y:.7f}" lon="{p.x:.7f}">'
            f"<time>{ts.tz_convert('UTC'):%Y-%m-%dT%H:%M:%SZ}</time></trkpt>"
            for p, ts in zip(t.geometry, t["time"], strict=True)
        )
        body += f"<trk><name>leg{k}</name><trkseg>{pts}</trkseg></trk>"
    return (
        '<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">'
        f"{body}</gpx>"
    ).encode()


def test_permit_lifecycle_roles_and_page(setup) -> None:
    client, units, (o, d) = setup
    rep, eng, sup = (_token(client, r) for r in ("reporter", "engineer", "supervisor"))
    body = {
        "vehicle": "粤B12345",
        "operator": "Demo Transport",
        "windows": [["22:00", "06:00"]],
        "tz": "Europe/Helsinki",
        "from": [o.x, o.y],
        "to": [d.x, d.y],
        "avoid": ["red", "workzones"],
        "valid_from": str(pd.Timestamp.now(tz="Europe/Helsinki").date()),
        "valid_to": str((pd.Timestamp.now(tz="Europe/Helsinki") + pd.Timedelta(days=30)).date()),
    }
    # red needs risk levels the plain units do not have: a clear 400
    r = client.post("/permits", json=body, headers=rep)
    assert r.status_code == 400 and "level" in r.json()["detail"]
    body["avoid"] = ["workzones"]
    r = client.post("/permits", json=body, headers=rep)
    assert r.status_code == 201, r.text
    p = r.json()
    pid = p["id"]
    assert r.headers["ETag"] == f'"{pid}-v1"'
    assert p["properties"]["state"] == "requested" and p["properties"]["state_zh"] == "已申请"
    assert len(p["properties"]["unit_ids"]) >= 3 and p["properties"]["length_m"] > 100
    assert tu.routing.check_route(units, p["properties"]["unit_ids"]).ok
    assert p["geometry"]["type"] == "LineString"
    # off the network
    off = dict(body, **{"from": [0.0, 0.0]})
    r = client.post("/permits", json=off, headers=rep)
    assert r.status_code == 400 and "off the network" in r.json()["detail"]
    assert client.post("/permits", json=body).status_code == 401
    url = f"/permits/{pid}/transitions"
    to = {"to": "approved"}
    assert client.post(url, json=to, headers=sup).status_code == 428
    assert (
        client.post(url, json=to, headers={**rep, "If-Match": '"' + pid + '-v1"'}).status_code
        == 403
    )
    assert client.post(url, json=to, headers={**eng, "If-Match": f'"{pid}-v1"'}).status_code == 403
    assert client.post(url, json=to, headers={**sup, "If-Match": f'"{pid}-v7"'}).status_code == 412
    r = client.post(url, json=to, headers={**sup, "If-Match": f'"{pid}-v1"'})
    assert r.status_code == 200 and r.json()["properties"]["state"] == "approved"
    # the live tileset carries active permits only: nothing yet
    mid = shapely.geometry.shape(p["geometry"]).interpolate(0.5, normalized=True)
    z, (x, y) = 15, mvt.lonlat_to_tile(mid.x, mid.y, 15)
    tile_url = f"/tiles/live-permits/{z}/{x}/{y}.mvt"
    assert "live-permits" in [t["name"] for t in client.get("/tiles").json()["tilesets"]]
    assert pid not in _tile_ids(client, tile_url)
    r = client.post(url, json={"to": "active"}, headers={**eng, "If-Match": r.headers["ETag"]})
    assert r.status_code == 200 and r.json()["properties"]["state"] == "active"
    feats = _tile_features(client, tile_url)
    (f,) = [f for f in feats if f["properties"]["event_id"] == pid]
    assert f["properties"]["vehicle"] == "粤B12345" and f["properties"]["state_zh"] == "生效中"
    assert f["geometry"]["type"] in ("LineString", "MultiLineString")
    tj = client.get("/tiles/live-permits/tilejson.json").json()
    assert tj["vector_layers"][0]["id"] == "permits"
    r = client.post(url, json={"to": "approved"}, headers={**sup, "If-Match": r.headers["ETag"]})
    assert r.status_code == 409
    r = client.post(url, json={"to": "expired"}, headers={**eng, "If-Match": "*"})
    assert r.status_code == 200 and r.json()["properties"]["version"] == 4
    assert pid not in _tile_ids(client, tile_url)  # expired: off the layer (no stale tile)
    hist = client.get(f"/permits/{pid}/history").json()
    assert [e["to_state"] for e in hist["events"]] == ["requested", "approved", "active", "expired"]
    assert [e["role"] for e in hist["events"]] == ["reporter", "supervisor", "engineer", "engineer"]
    layer = client.get("/permits").json()
    assert layer["type"] == "FeatureCollection" and any(f["id"] == pid for f in layer["features"])
    png = client.get(f"/permits/{pid}/qr.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    page = client.get(f"/permits/{pid}/page").text
    assert "粤B12345" in page and "已过期" in page and "Keep right" in page
    assert client.get("/permits/P99999").status_code == 404


def test_trace_against_a_permit(setup) -> None:
    client, units, (o, d) = setup
    rep = _token(client, "reporter")
    body = {
        "vehicle": "粤B99999",
        "windows": [["22:00", "06:00"]],
        "tz": "Europe/Helsinki",
        "from": [o.x, o.y],
        "to": [d.x, d.y],
    }
    p = client.post("/permits", json=body, headers=rep).json()
    route = tu.route(units, o, d)
    assert route.unit_ids == p["properties"]["unit_ids"]
    g = UnitGraph(units)
    night = generate_trace(
        g, route, interval_s=5, noise_m=10, start="2025-11-30 23:00", tz="Europe/Helsinki"
    )
    r = client.post(
        f"/permits/{p['id']}/traces", files={"trace": ("night.gpx", _gpx([night]))}, headers=rep
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["summary"]["counts"].get("off_route", 0) == 0
    assert out["summary"]["counts"].get("outside_window", 0) == 0
    assert out["findings"]["type"] == "FeatureCollection"
    assert set(route.unit_ids) & set(out["summary"]["units"])
    # in the day: outside the window
    day = night.assign(time=night["time"] - pd.Timedelta(hours=11))
    r = client.post(
        f"/permits/{p['id']}/traces", files={"trace": ("day.gpx", _gpx([day]))}, headers=rep
    )
    assert r.json()["summary"]["counts"]["outside_window"] == 1
    # two tracks, unsorted CSV, empty: 400 with the reason
    r = client.post(
        f"/permits/{p['id']}/traces", files={"trace": ("two.gpx", _gpx([night, day]))}, headers=rep
    )
    assert r.status_code == 400 and "2 tracks" in r.json()["detail"]
    csv = b"time,lon,lat\n2025-11-30T22:00:05Z,24.94,60.17\n2025-11-30T22:00:00Z,24.94,60.17\n"
    r = client.post(f"/permits/{p['id']}/traces", files={"trace": ("t.csv", csv)}, headers=rep)
    assert r.status_code == 400 and "not in order" in r.json()["detail"]
    csv = b"time,lon,lat\n2025-11-30T22:00:00Z,24.94,60.17\n2025-11-30T22:00:00Z,24.94,60.17\n"
    r = client.post(f"/permits/{p['id']}/traces", files={"trace": ("t.csv", csv)}, headers=rep)
    assert r.status_code == 400 and "duplicate time" in r.json()["detail"]
    csv = b"time,lon,lat\n2025-11-30T22:00:00Z,385000,6672000\n"  # metres read as degrees
    r = client.post(f"/permits/{p['id']}/traces", files={"trace": ("t.csv", csv)}, headers=rep)
    assert r.status_code == 400 and "projected" in r.json()["detail"]
    r = client.post(f"/permits/{p['id']}/traces", content=b"", headers=rep)
    assert r.status_code == 400
    hist = client.get(f"/permits/{p['id']}/history").json()
    assert len(hist["traces"]) == 2


def test_permit_store_on_both_backends(ledger_url: str) -> None:  # noqa: F811
    """The permit tables and their lifecycle on SQLite and PostgreSQL (skipped without one)."""
    from types import SimpleNamespace

    from trafficunit.ledger import Ledger, PermissionDenied, StaleVersion
    from trafficunit.ledger.errors import IllegalTransition
    from trafficunit.ledger.permits import PermitStore

    ledger = Ledger.open(ledger_url)
    try:
        store = PermitStore(ledger.db)
        PermitStore(ledger.db)  # the tables exist already: nothing happens
        route = SimpleNamespace(
            unit_ids=["S1", "I1", "S2"],
            length_m=250.0,
            time_s=30.0,
            geometry=shapely.LineString([(24.9, 60.1), (24.91, 60.1)]),
        )
        p = store.request(
            vehicle="粤B1",
            route=route,
            actor="op",
            role="reporter",
            windows=[("22:00", "06:00")],
            tz="Asia/Shanghai",
        )
        assert p.state == "requested" and p.unit_ids == ["S1", "I1", "S2"]
        with pytest.raises(PermissionDenied):
            store.transition(p.id, "approved", actor="x", role="engineer", expected_version=1)
        with pytest.raises(StaleVersion):
            store.transition(p.id, "approved", actor="x", role="supervisor", expected_version=3)
        p = store.transition(p.id, "approved", actor="s", role="supervisor", expected_version=1)
        with pytest.raises(IllegalTransition):
            store.transition(p.id, "expired", actor="e", role="engineer", expected_version=2)
        p = store.transition(p.id, "revoked", actor="s", role="admin", expected_version=2)
        assert [e["to_state"] for e in store.history(p.id)] == ["requested", "approved", "revoked"]
        assert p.rules().windows == [("22:00", "06:00")]
        assert any(q.id == p.id for q in store.list_permits(state="revoked"))
    finally:
        ledger.close()


def test_permit_expires_at_the_end_of_its_validity(ledger_url: str) -> None:  # noqa: F811
    """Past ``valid_to`` a permit reads ``expired`` with an event by ``system`` (clock injected:
    no waiting); a request already past its end, or ending before it starts, is refused."""
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from trafficunit.ledger import Ledger
    from trafficunit.ledger.errors import ValidationError
    from trafficunit.ledger.permits import PermitStore

    now = [datetime(2026, 3, 1, 12, 0, tzinfo=UTC)]
    ledger = Ledger.open(ledger_url)
    try:
        store = PermitStore(ledger.db, clock=lambda: now[0])
        route = SimpleNamespace(
            unit_ids=["S1"],
            length_m=1.0,
            time_s=1.0,
            geometry=shapely.LineString([(24.9, 60.1), (24.91, 60.1)]),
        )
        kw = {"vehicle": "粤B7", "route": route, "actor": "op", "role": "reporter"}
        # valid to midnight at the start of 2 March in Shanghai = 16:00 UTC on 1 March
        p = store.request(**kw, tz="Asia/Shanghai", valid_to="2026-03-02")
        keep = store.request(**kw, tz="Asia/Shanghai")  # no end: never expires by itself
        p = store.transition(p.id, "approved", actor="s", role="supervisor", expected_version=1)
        p = store.transition(p.id, "active", actor="e", role="engineer", expected_version=2)
        now[0] = datetime(2026, 3, 1, 15, 59, tzinfo=UTC)
        assert store.get(p.id).state == "active"
        now[0] = datetime(2026, 3, 1, 16, 0, tzinfo=UTC)
        assert store.get(p.id).state == "expired" and store.get(p.id).version == 4
        assert store.get(keep.id).state == "requested"
        ev = store.history(p.id)[-1]
        assert (ev["action"], ev["from_state"], ev["to_state"], ev["actor"]) == (
            "expire",
            "active",
            "expired",
            "system",
        )
        assert ev["at"].startswith("2026-03-01T16:00")
        assert [q.id for q in store.list_permits(state="expired")] == [p.id]
        assert store.expire_due() == []  # swept once
        # a requested permit past its end expires too
        q = store.request(**kw, valid_to="2026-03-05T00:00:00Z")
        now[0] += timedelta(days=10)
        assert [x.state for x in store.list_permits() if x.id == q.id] == ["expired"]
        with pytest.raises(ValidationError, match="already past"):
            store.request(**kw, valid_to="2026-03-01")
        with pytest.raises(ValidationError, match="not after"):
            store.request(**kw, valid_from="2026-05-02", valid_to="2026-05-01")
        with pytest.raises(ValidationError, match="not a date"):
            store.request(**kw, valid_to="soon")
    finally:
        ledger.close()
