"""The operations routes on the demo folder (Helsinki sample, GENERATED events and zones):
/kpis answers and its health ranking is reproducible from the CSV, /zones colours,
investigations, the escalate transition, road chiefs and grids, the fatal review."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from trafficunit_server.app import create_app
from trafficunit_server.settings import LedgerServerSettings, Settings

ADMIN = "ops-admin-token-0123456789abcdefghij"
A = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture(scope="module")
def demo(demo_folder: Path) -> Path:
    """The demo folder, built once per run (tests/conftest.py); each client copies it."""
    return demo_folder


@pytest.fixture
def client(demo: Path, tmp_path: Path) -> Iterator[TestClient]:
    folder = tmp_path / "data"
    shutil.copytree(demo, folder)
    cfg = LedgerServerSettings(admin_token=ADMIN, sweep_interval_s=0)
    with TestClient(create_app(Settings(data_dir=folder, ledger=cfg))) as c:
        yield c


def token(c: TestClient, role: str) -> dict[str, str]:
    r = c.post("/tokens", json={"role": role, "label": role}, headers=A)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_the_demo_ships_generated_zones_and_kpis_answer(client: TestClient, demo: Path) -> None:
    assert (demo / "zones.parquet").exists()
    # the risk tiles carry the zone codes too
    import gzip

    import mapbox_vector_tile
    from pmtiles.reader import MmapSource, Reader, all_tiles

    with open(demo / "risk.pmtiles", "rb") as f:
        z15 = next(d for (z, _, _), d in all_tiles(Reader(MmapSource(f)).get_bytes) if z == 15)
    layers = mapbox_vector_tile.decode(gzip.decompress(z15) if z15[:2] == b"\x1f\x8b" else z15)
    assert "zone_admin_community" in layers["units"]["features"][0]["properties"]
    trees = client.get("/zones/trees").json()
    assert trees["default"] == "admin" and all(t["generated"] for t in trees["trees"].values())
    k = client.get("/kpis")
    assert k.status_code == 200, k.text
    body = k.json()
    assert body["tree"] == "admin" and body["generated_zones"] is True
    rows = {r["code"]: r for r in body["rows"]}
    districts = [r for r in body["rows"] if r["level"] == "district"]
    assert len(districts) == 4
    # children sum to the parent
    for c in ("accidents", "injury_accidents", "hazards", "rectified", "investigations_open"):
        assert sum(r[c] for r in districts) == rows["GEN"][c]
    assert rows["GEN"]["injury_accidents"] == rows["GEN"]["investigations_open"] > 0
    assert "investigation_rate" in body["definitions"] and body["weights"]
    one = client.get("/kpis", params={"tree": "admin", "level": "street", "parent": "GEN-D1"})
    assert {r["code"] for r in one.json()["rows"]} == {f"GEN-D1-S{i}" for i in range(1, 5)}
    assert client.get("/kpis", params={"tree": "nope"}).status_code == 400
    assert client.get("/kpis", params={"tree": "admin", "level": "nope"}).status_code == 400
    assert client.get("/kpis", params={"from": "2018-01-01"}).status_code == 400
    year = client.get("/kpis", params={"from": "2018-01-01", "to": "2019-01-01"}).json()
    assert year["previous_period"][0].startswith("2017-01-01")
    assert "accidents_prev" in year["rows"][0]


def test_health_ranking_is_reproducible_from_the_csv(client: TestClient) -> None:
    eng = token(client, "engineer")
    # some investigations done, so the rates differ between districts
    items = client.get("/investigations", params={"limit": 60}).json()["items"]
    # an offset past SQLite's integers is refused, not a 500 (schemathesis found it)
    assert client.get("/investigations", params={"offset": 2**63}).status_code in (400, 422)
    for i, it in enumerate(items):
        r = client.post(
            f"/investigations/{it['accident_id']}/transitions",
            json={"to": "investigated"},
            headers=eng,
        )
        assert r.status_code == 200, r.text
        if i > 40:
            break
    weights = client.get("/kpis").json()["weights"]
    text = client.get("/kpis", params={"format": "csv", "tree": "police"}).text
    table = pd.read_csv(io.StringIO(text), index_col="code")
    num = sum(w * table[r].fillna(0.0) for r, w in weights.items())
    den = sum(w * table[r].notna() for r, w in weights.items())
    health = 100 * num / den.where(den > 0)
    assert np.allclose(health, table["health_index"], equal_nan=True, atol=1e-4)
    rank = health.groupby(table["level"]).rank(ascending=False, method="min")
    assert (rank.fillna(-1) == table["health_rank"].fillna(-1)).all()
    brig = table[table["level"] == "brigade"]
    assert brig["health_index"].nunique() > 1  # a real ranking, not all ties


def test_zones_are_coloured_by_the_documented_rule(client: TestClient) -> None:
    r = client.get("/zones", params={"tree": "admin", "level": "district"})
    assert r.status_code == 200
    fc = r.json()
    assert "percentile" in fc["rule"] and len(fc["features"]) == 4
    p = pd.DataFrame([f["properties"] for f in fc["features"]]).set_index("code")
    v = p["epdo_per_km"].to_numpy(float)
    pct = 100 * np.array([(v <= x).sum() for x in v]) / len(v)
    assert np.allclose(p["percentile"], pct)
    bands = [(95, "red"), (85, "orange"), (65, "yellow"), (-1, "blue")]
    want = [next(lv for b, lv in bands if x >= b) for x in pct]
    assert p["risk_level"].tolist() == want and p["colour"].notna().all()
    assert client.get("/zones", params={"tree": "admin", "level": "x"}).status_code == 400
    kids = client.get("/zones", params={"level": "street", "parent": "GEN-D2"}).json()
    assert len(kids["features"]) == 4


def test_investigation_links_show_on_both_sides(client: TestClient) -> None:
    eng, sup = token(client, "engineer"), token(client, "supervisor")
    it = client.get("/investigations", params={"severity": "A", "limit": 1}).json()["items"][0]
    acc = it["accident_id"]
    h = client.post(
        "/hazards",
        json={
            "geometry": {"type": "Point", "coordinates": [it["lon"], it["lat"]]},
            "category": "facility.signal",
        },
        headers=eng,
    ).json()
    r = client.post(
        f"/investigations/{acc}/transitions",
        json={"to": "investigated", "hazards": [h["id"]]},
        headers=eng,
    )
    assert r.status_code == 200 and r.json()["hazards"] == [h["id"]]
    side = client.get(f"/hazards/{h['id']}/accidents").json()["accidents"]
    assert [a["accident_id"] for a in side] == [acc]
    assert (
        client.post(
            f"/investigations/{acc}/transitions", json={"to": "closed"}, headers=eng
        ).status_code
        == 403
    )
    assert (
        client.post(
            f"/investigations/{acc}/transitions", json={"to": "investigated"}, headers=eng
        ).status_code
        == 409
    )
    assert (
        client.post(
            f"/investigations/{acc}/transitions", json={"to": "closed"}, headers=sup
        ).json()["state"]
        == "closed"
    )
    assert client.get("/investigations/NOPE").status_code == 404
    assert (
        client.post(f"/investigations/{acc}/transitions", json={"to": "closed"}).status_code == 401
    )


def test_escalate_transition_over_http(client: TestClient) -> None:
    eng, sup = token(client, "engineer"), token(client, "supervisor")
    h = client.post(
        "/hazards",
        json={
            "geometry": {"type": "Point", "coordinates": [24.9441, 60.1661]},
            "category": "facility.markings",
        },
        headers=eng,
    )
    hid, etag = h.json()["id"], h.headers["etag"]
    assert client.post(f"/hazards/{hid}/escalate", json={}, headers=sup).status_code == 428
    assert (
        client.post(
            f"/hazards/{hid}/escalate", json={}, headers={**eng, "If-Match": etag}
        ).status_code
        == 403
    )
    r = client.post(f"/hazards/{hid}/escalate", json={}, headers={**sup, "If-Match": etag})
    assert r.status_code == 200 and r.json()["level"] == "district"
    assert (
        client.post(
            f"/hazards/{hid}/escalate", json={"level": "city"}, headers={**sup, "If-Match": etag}
        ).status_code
        == 412
    )
    r = client.post(
        f"/hazards/{hid}/escalate",
        json={"level": "city"},
        headers={**sup, "If-Match": r.headers["etag"]},
    )
    assert r.json()["level"] == "city"
    assert (
        client.post(
            f"/hazards/{hid}/escalate", json={}, headers={**sup, "If-Match": "*"}
        ).status_code
        == 409
    )
    listed = client.get("/supervision", params={"level": "city"}).json()["items"]
    assert {"id": hid, "level": "city"} in listed
    assert client.get(f"/hazards/{hid}/history").json()["events"][-1]["action"] == "escalate"


def test_a_report_inside_a_grid_reaches_its_chief_over_http(client: TestClient) -> None:
    eng = token(client, "engineer")
    r = client.post(
        "/road-chiefs",
        json={"name": "Grid 3 chief", "scope": "grid", "targets": ["GENG-3"], "body": "Township 3"},
        headers=eng,
    )
    assert r.status_code == 201, r.text
    assert (
        client.post(
            "/road-chiefs", json={"name": "x", "scope": "grid", "targets": ["NOPE"]}, headers=eng
        ).status_code
        == 400
    )
    grids = client.get("/grids").json()["features"]
    g3 = next(f for f in grids if f["id"] == "GENG-3")
    assert g3["properties"]["road_chiefs"][0]["name"] == "Grid 3 chief"
    units = client.get("/units", params={"limit": 10000, "kind": "segment"}).json()["features"]
    unit = next(u for u in units if u["properties"]["zone_grid_grid"] == "GENG-3")
    coords = unit["geometry"]["coordinates"]
    mid = coords[len(coords) // 2]
    h = client.post(
        "/hazards",
        json={"geometry": {"type": "Point", "coordinates": mid}, "category": "road.surface_damage"},
        headers=eng,
    ).json()
    props: dict[str, Any] = h["properties"]
    assert props["road_chief"] == "Grid 3 chief" and props["responsible"] == "Township 3"
    who = client.get("/road-chiefs", params={"unit_id": h["unit_ids"][0]}).json()
    assert who["road_chief"]["name"] == "Grid 3 chief"
    per_unit = client.get("/road-chiefs/units").json()
    in_g3 = [u["id"] for u in units if u["properties"]["zone_grid_grid"] == "GENG-3"]
    assert set(in_g3) <= {i["unit_id"] for i in per_unit["items"]}
    assert {i["road_chief"] for i in per_unit["items"]} == {"Grid 3 chief"}
    rules = client.put(
        "/routing-rules",
        json={"rules": [{"tree": "grid", "zone": "GENG-3", "responsible": "Roads bureau 3"}]},
        headers=eng,
    )
    assert rules.status_code == 200 and rules.json()["rules"][0]["responsible"] == "Roads bureau 3"
    h = client.post(
        "/hazards",
        json={"geometry": {"type": "Point", "coordinates": mid}, "category": "facility.lighting"},
        headers=eng,
    ).json()
    assert h["properties"]["responsible"] == "Roads bureau 3"


def test_fatal_review_over_http(client: TestClient) -> None:
    sup, eng = token(client, "supervisor"), token(client, "engineer")
    body = client.get("/reviews").json()
    assert body["checks"] == [
        "investigation",
        "rectification",
        "deep_investigation",
        "accountability",
    ]
    assert body["total"] > 0
    acc = body["items"][0]["accident_id"]
    checks = dict.fromkeys(body["checks"], True)
    assert client.post(f"/reviews/{acc}", json={"checks": checks}, headers=eng).status_code == 403
    r = client.post(f"/reviews/{acc}", json={"checks": checks}, headers=sup)
    assert r.status_code == 200 and r.json()["complete"] is True
    assert client.get("/reviews", params={"confirmed": True}).json()["total"] == 1


def test_hazards_carry_their_zones(client: TestClient) -> None:
    eng = token(client, "engineer")
    units = client.get("/units", params={"limit": 50, "kind": "segment"}).json()["features"]
    u = units[0]
    coords = u["geometry"]["coordinates"]
    h = client.post(
        "/hazards",
        json={
            "geometry": {"type": "Point", "coordinates": coords[0]},
            "category": "facility.signs",
        },
        headers=eng,
    ).json()
    z = client.get(f"/hazards/{h['id']}/zones").json()
    unit = client.get(f"/units/{z['unit_id']}").json()
    props = unit.get("properties", unit)
    assert z["zones"]["zone_admin_community"] == props["zone_admin_community"]
    assert client.get("/hazards/H999999/zones").status_code == 404


def test_posted_injury_accidents_open_investigations(client: TestClient) -> None:
    ingest, sup = token(client, "ingest"), token(client, "supervisor")
    units = client.get("/units", params={"limit": 5, "kind": "segment"}).json()["features"]
    lon, lat = units[0]["geometry"]["coordinates"][0]

    def feat(eid: str, sev: str) -> dict[str, Any]:
        return {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {"event_id": eid, "time": "2018-06-01T08:30:00+03:00", "severity": sev},
        }

    fc = {"type": "FeatureCollection", "features": [feat("LIVE-K", "K"), feat("LIVE-O", "O")]}
    r = client.post("/accidents", json=fc, headers=ingest)
    assert r.status_code in (200, 201, 207), r.text
    out = client.post("/operations/sweep", headers=sup).json()
    assert out["opened"] == ["LIVE-K"]
    assert client.get("/investigations/LIVE-K").json()["state"] == "open"
    assert client.get("/investigations/LIVE-O").status_code == 404
    assert client.post("/operations/sweep", headers=sup).json()["opened"] == []


def _all(client: TestClient, path: str, **params: Any) -> list[dict[str, Any]]:
    r = client.get(path, params={"limit": 10000, **params})
    assert r.status_code == 200, r.text
    feats: list[dict[str, Any]] = r.json()["features"]
    assert r.json()["numberMatched"] == len(feats)
    return feats


def report_mid(client: TestClient, unit: dict[str, Any], who: dict[str, str]) -> dict[str, Any]:
    """Report a hazard at the middle vertex of a segment unit; the answer."""
    coords = unit["geometry"]["coordinates"]
    point = {"type": "Point", "coordinates": coords[len(coords) // 2]}
    r = client.post("/hazards", json={"geometry": point, "category": "facility.signs"}, headers=who)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def _count(client: TestClient, path: str, **params: Any) -> int:
    r = client.get(path, params={"limit": 1, **params})
    assert r.status_code == 200, r.text
    return int(r.json()["numberMatched"])


def test_units_carry_their_road_chief_now(client: TestClient, demo: Path) -> None:
    eng = token(client, "engineer")
    before = _all(client, "/units", tree="grid", zone="GENG-2", kind="segment")
    assert before and all(u["properties"]["road_chief"] is None for u in before)
    early = report_mid(client, before[0], eng)  # reported before any chief is appointed
    assert early["properties"]["road_chief"] is None
    r = client.post(
        "/road-chiefs",
        json={"name": "Grid 2 chief", "scope": "grid", "targets": ["GENG-2"], "body": "Town 2"},
        headers=eng,
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    units = _all(client, "/units")
    mine = {u["id"] for u in units if u["properties"]["zone_grid_grid"] == "GENG-2"}
    in_grid = {u["id"] for u in _all(client, "/units", tree="grid", zone="GENG-2")}
    assert mine == in_grid  # the zone filter keeps exactly the grid's units
    hz = client.get(f"/hazards/{early['id']}").json()["properties"]
    assert hz["road_chief"] is None  # the record keeps whom it was routed to (nobody)
    assert (hz["unit_road_chief"], hz["unit_road_chief_id"]) == ("Grid 2 chief", cid)
    chiefs = {u["id"]: u["properties"]["road_chief"] for u in units}
    assert {chiefs[i] for i in mine} == {"Grid 2 chief"}
    assert {c for i, c in chiefs.items() if i not in mine} == {None}
    one = client.get(f"/units/{next(iter(mine))}").json()["properties"]
    assert (one["road_chief"], one["road_chief_id"], one["road_chief_body"]) == (
        "Grid 2 chief",
        cid,
        "Town 2",
    )
    text = client.get("/units", params={"format": "csv", "limit": 10000}).text
    table = pd.read_csv(io.StringIO(text), dtype={"unit_id": str})
    assert set(table.loc[table["road_chief"].notna(), "unit_id"]) == mine
    # a more specific appointment wins on its unit; ending the grid's clears the others
    uid = sorted(mine)[0]
    client.post(
        "/road-chiefs",
        json={"name": "Unit chief", "scope": "unit_ids", "targets": [uid]},
        headers=eng,
    )
    r = client.post(f"/road-chiefs/{cid}/end", json={}, headers=eng)
    assert r.status_code == 200, r.text
    after = {u["id"]: u["properties"]["road_chief"] for u in _all(client, "/units")}
    assert after[uid] == "Unit chief" and {c for i, c in after.items() if i != uid} == {None}
    # the static tiles carry zone codes, never a chief (it changes at run time)
    import gzip

    import mapbox_vector_tile
    from pmtiles.reader import MmapSource, Reader, all_tiles

    with open(demo / "risk.pmtiles", "rb") as f:
        z15 = next(d for (z, _, _), d in all_tiles(Reader(MmapSource(f)).get_bytes) if z == 15)
    layers = mapbox_vector_tile.decode(gzip.decompress(z15) if z15[:2] == b"\x1f\x8b" else z15)
    assert "road_chief" not in layers["units"]["features"][0]["properties"]


def test_zone_filters_keep_a_zone_and_the_zones_below_it(client: TestClient) -> None:
    eng = token(client, "engineer")
    districts = [f"GEN-D{i}" for i in range(1, 5)]
    per = {d: _count(client, "/accidents", tree="admin", zone=d) for d in districts}
    assert sum(per.values()) == _count(client, "/accidents") > 0
    kpis = {r["code"]: r for r in client.get("/kpis").json()["rows"]}
    assert per == {d: kpis[d]["accidents"] for d in districts}
    some = client.get("/accidents", params={"zone": "GEN-D1-S2", "limit": 10000}).json()
    assert some["numberMatched"] == kpis["GEN-D1-S2"]["accidents"] > 0  # default tree: admin
    assert {f["properties"]["zone_admin_street"] for f in some["features"]} == {"GEN-D1-S2"}
    assert {f["properties"]["zone_admin_district"] for f in some["features"]} == {"GEN-D1"}
    severe = _count(client, "/accidents", zone="GEN-D1", severity="K,A")
    assert 0 < severe < per["GEN-D1"]  # combines with the other filters
    # hazards: one at the middle of a unit in each district; they carry their zone codes
    units = _all(client, "/units", kind="segment")
    placed: dict[str, str] = {}
    for d in districts:
        u = next(u for u in units if u["properties"]["zone_admin_district"] == d)
        placed[report_mid(client, u, eng)["id"]] = d
    listed = _all(client, "/hazards")
    zone_of = {f["id"]: f["properties"]["zone_admin_district"] for f in listed}
    assert {i: zone_of[i] for i in placed} == placed
    single = client.get(f"/hazards/{next(iter(placed))}").json()["properties"]
    assert single["zone_admin_district"] == next(iter(placed.values()))
    for d in districts:
        r = client.get("/hazards", params={"tree": "admin", "zone": d, "limit": 100})
        ids = [f["id"] for f in r.json()["features"]]
        assert {i for i, z in zone_of.items() if z == d} == set(ids)
        assert r.json()["numberMatched"] == int(r.headers["x-total-count"]) == len(ids)
    page = client.get("/hazards", params={"zone": "GEN", "limit": 2, "offset": 1}).json()
    assert page["numberMatched"] == len(listed) and page["numberReturned"] == 2
    assert [f["id"] for f in page["features"]] == [f["id"] for f in listed[1:3]]
    csv = client.get("/hazards", params={"zone": "GEN-D2", "format": "csv"}).text
    assert set(pd.read_csv(io.StringIO(csv))["zone_admin_district"]) == {"GEN-D2"}
    for bad in ({"zone": "NOPE"}, {"tree": "admin"}, {"tree": "nope", "zone": "GEN"}):
        for path in ("/hazards", "/accidents", "/units"):
            assert client.get(path, params=bad).status_code == 400, (path, bad)
