"""The ledger's HTTP API on both backends: the contract, every transition and role, every
error (nothing stored), live tiles and bbox queries at once, tokens, work zones, KPIs, sweeps,
imports, duplicate linking on real Boston reports, and a bounded schemathesis run."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import geopandas as gpd
import mapbox_vector_tile
import pandas as pd
import pytest
import shapely
from fastapi.testclient import TestClient

from trafficunit import mvt
from trafficunit.io import write_table
from trafficunit_server import Settings, create_app
from trafficunit_server.settings import LedgerServerSettings

from ._ledger_db import ledger_url, pg_session_db, pg_template  # noqa: F401  (fixtures)
from ._serverdata import DLAT, DLON, LAT0, LON0, build_data_dir, grid_events, grid_units

ADMIN = "test-admin-token-0123456789abcdefgh"
A = {"Authorization": f"Bearer {ADMIN}"}
ON_S0000E = [LON0 + DLON / 2, LAT0 + 0.00002]  # beside the first east-going segment


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Units and accidents of the test grid, no hazards table."""
    d = tmp_path_factory.mktemp("ledgerdata")
    units = grid_units()
    write_table(units, d / "units.parquet")
    write_table(grid_events(units)["accidents"], d / "accidents.parquet")
    zones = gpd.GeoDataFrame(
        {"name": ["West", "East"], "code": ["W", "E"]},
        geometry=[
            shapely.box(LON0 - 0.01, LAT0 - 0.01, LON0 + 2.25 * DLON, LAT0 + 0.02),
            shapely.box(LON0 + 2.25 * DLON, LAT0 - 0.01, LON0 + 0.03, LAT0 + 0.02),
        ],
        crs=4326,
    )
    zones.to_file(d / "zones.geojson", driver="GeoJSON")
    return d


def make_client(data_dir: Path, url: str, **ledger: Any) -> TestClient:
    cfg = {"database_url": url, "admin_token": ADMIN, "sweep_interval_s": 0, **ledger}
    settings = Settings(data_dir=data_dir, ledger=LedgerServerSettings(**cfg))
    return TestClient(create_app(settings))


@pytest.fixture
def client(data_dir: Path, ledger_url: str) -> Iterator[TestClient]:  # noqa: F811
    with make_client(data_dir, ledger_url) as c:
        yield c


def token(client: TestClient, role: str) -> dict[str, str]:
    r = client.post("/tokens", json={"role": role, "label": f"{role} test"}, headers=A)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture
def roles(client: TestClient) -> dict[str, dict[str, str]]:
    return {r: token(client, r) for r in ("reporter", "engineer", "supervisor")} | {"admin": A}


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def report(client: TestClient, headers: dict[str, str], **body: Any) -> Any:
    payload = {"geometry": point(*ON_S0000E), "category": "facility.signal", **body}
    return client.post("/hazards", json=payload, headers=headers)


def move(client: TestClient, hid: str, to: str, headers: dict[str, str], etag: str, **body: Any):
    return client.post(
        f"/hazards/{hid}/transitions",
        json={"to": to, **body},
        headers={**headers, "If-Match": etag},
    )


def decode(content: bytes) -> dict[str, list[dict[str, Any]]]:
    if content[:2] == b"\x1f\x8b":
        content = gzip.decompress(content)
    return {k: v["features"] for k, v in mapbox_vector_tile.decode(content).items()}


# ------------------------------------------------------------------------------ contract


def test_report_contract_and_live_visibility(client: TestClient, roles: dict) -> None:
    z, (x, y) = 16, mvt.lonlat_to_tile(ON_S0000E[0], ON_S0000E[1], 16)
    before = client.get(f"/tiles/live-hazards/{z}/{x}/{y}.mvt")
    assert before.status_code in (204, 404)
    r = report(client, roles["reporter"], description="signal dark at night", grade="一般")
    assert r.status_code == 201
    body = r.json()
    assert (body["id"], body["version"], body["unit_ids"]) == ("H1", 1, ["S0000ETESTSEG"])
    assert r.headers["etag"] == '"H1-v1"' and r.headers["location"] == "/hazards/H1"
    assert body["properties"]["state"] == "reported" and body["properties"]["grade"] == "general"
    assert body["geometry"] == point(*ON_S0000E) and body["linked"] is False
    got = client.get("/hazards/H1")
    assert got.headers["etag"] == '"H1-v1"' and got.json()["properties"] == body["properties"]
    assert client.get("/hazards/H1", headers={"If-None-Match": '"H1-v1"'}).status_code == 304
    # at once in bbox queries, unit filters and the live tiles
    bbox = f"{LON0},{LAT0 - 0.001},{LON0 + DLON},{LAT0 + 0.001}"
    listed = client.get("/hazards", params={"bbox": bbox}).json()
    assert [f["id"] for f in listed["features"]] == ["H1"] and listed["numberMatched"] == 1
    assert client.get("/hazards", params={"unit_id": "S0000ETESTSEG"}).json()["numberMatched"] == 1
    far = f"{LON0 + 3 * DLON},{LAT0},{LON0 + 4 * DLON},{LAT0 + DLAT}"
    assert client.get("/hazards", params={"bbox": far}).json()["numberMatched"] == 0
    tile = client.get(f"/tiles/live-hazards/{z}/{x}/{y}.mvt")
    assert tile.status_code == 200
    feats = decode(tile.content)["hazards"]
    assert [(f["properties"]["event_id"], f["properties"]["status"]) for f in feats] == [
        ("H1", "reported")
    ]
    # a transition shows in the tiles at once too
    move(client, "H1", "registered", roles["engineer"], '"H1-v1"')
    tile = client.get(f"/tiles/live-hazards/{z}/{x}/{y}.mvt")
    assert decode(tile.content)["hazards"][0]["properties"]["status"] == "registered"
    # and in the unit's detail, with its current state
    unit_hazards = client.get("/units/S0000ETESTSEG").json()["hazards"]
    assert [(h["id"], h["properties"]["state"]) for h in unit_hazards] == [("H1", "registered")]
    csv_rows = list(csv.DictReader(io.StringIO(client.get("/hazards?format=csv").text)))
    assert csv_rows[0]["id"] == "H1" and csv_rows[0]["unit_ids"] == "S0000ETESTSEG"
    assert csv_rows[0]["geometry_wkt"].startswith("POINT (24.9315")


def test_every_transition_with_the_roles_that_may_do_it(client: TestClient, roles: dict) -> None:
    hid = report(client, roles["reporter"]).json()["id"]
    etag = '"H1-v1"'
    steps = [
        ("registered", "engineer", {"grade": "major"}),
        ("assigned", "engineer", {"responsible": "Roads office", "road_chief": "Wang"}),
        ("rectifying", "engineer", {"comment": "crew on site"}),
        ("accepted", "supervisor", {}),
        ("rectifying", "supervisor", {"comment": "failed acceptance: lens still broken"}),
        ("accepted", "supervisor", {"comment": "fixed"}),
        ("closed", "supervisor", {}),
        ("registered", "supervisor", {"comment": "crash after closure"}),
    ]
    order = ["reporter", "engineer", "supervisor", "admin"]
    for k, (to, least, body) in enumerate(steps):
        for weaker in order[: order.index(least)]:
            r = move(client, hid, to, roles[weaker], etag, **body)
            assert r.status_code == 403, (to, weaker, r.text)
            assert f"role '{weaker}' may not" in r.json()["detail"]
        r = move(client, hid, to, roles[least], etag, **body)
        assert r.status_code == 200, (to, r.text)
        assert r.json()["properties"]["state"] == to and r.json()["version"] == k + 2
        etag = r.headers["etag"]
        assert etag == f'"H1-v{k + 2}"'
    h = client.get(f"/hazards/{hid}").json()["properties"]
    assert (h["reopen_count"], h["supervision"], h["responsible"]) == (1, "listed", "Roads office")
    hist = client.get(f"/hazards/{hid}/history", headers=roles["engineer"]).json()
    assert hist["version"] == 9 and [e["version"] for e in hist["events"]] == list(range(1, 10))
    assert [e["action"] for e in hist["events"]] == [
        "report",
        "register",
        "assign",
        "start",
        "accept",
        "fail_acceptance",
        "accept",
        "close",
        "reopen",
    ]
    assert [e["role"] for e in hist["events"]][1:4] == ["engineer"] * 3
    assert hist["events"][5]["comment"] == "failed acceptance: lens still broken"
    assert all(e["actor"].startswith(e["role"]) for e in hist["events"])  # staff see labels
    # anonymous readers see each actor's role, never a token's label or id
    public = client.get(f"/hazards/{hid}/history").json()["events"]
    assert [e["role"] for e in public] == [e["role"] for e in hist["events"]]
    assert all(e["actor"] is None for e in public)
    assert not any(
        t in json.dumps(public) for e in hist["events"] for t in (e["actor"], e["actor"][-10:])
    )


def test_errors_are_4xx_with_a_message_and_store_nothing(client: TestClient, roles: dict) -> None:
    rep, eng = roles["reporter"], roles["engineer"]
    report(client, rep)
    history = client.get("/hazards/H1/history").json()

    def refused(r: Any, status: int, text: str) -> None:
        assert r.status_code == status, r.text
        assert text in r.json()["detail"], r.json()

    refused(report(client, {}), 401, "needs a token")
    assert report(client, {}).headers["www-authenticate"] == "Bearer"
    refused(report(client, {"Authorization": "Bearer nope"}), 401, "unknown token")
    refused(report(client, {"Authorization": "Basic abc"}), 401, "Bearer <token>")
    bad_geoms = [
        ({"type": "Point", "coordinates": [24.9, 95]}, "outside longitude"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}, "valid"),
        ({"type": "Curve", "coordinates": []}, "not supported"),
        ({"coordinates": [1, 2]}, "not supported"),
    ]
    for g, text in bad_geoms:
        refused(report(client, rep, geometry=g), 400, text)
    refused(report(client, rep, category="road.pothole"), 400, "unknown hazard category")
    refused(report(client, rep, grade="medium"), 400, "grade")
    refused(report(client, rep, colour="red"), 400, "colour")
    refused(report(client, rep, source="tweet"), 400, "source")
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    refused(report(client, rep, reported_at=future), 400, "in the future")
    big = {
        "geometry": point(*ON_S0000E),
        "category": "road.sight_distance",
        "description": "x" * 2_000_000,
    }
    refused(client.post("/hazards", json=big, headers=rep), 413, "exceeds the limit")
    r = client.post(
        "/hazards", content=b"{not json", headers={**rep, "content-type": "application/json"}
    )
    assert r.status_code == 400
    # transitions
    refused(move(client, "H1", "closed", eng, '"H1-v1"'), 409, "cannot go to 'closed'")
    refused(
        move(client, "H1", "registered", eng, '"H1-v7"', grade="major"), 412, "version 1, not 7"
    )
    assert (
        move(client, "H1", "registered", eng, '"H1-v7"', grade="major").json()["current_version"]
        == 1
    )
    refused(move(client, "H1", "registered", eng, '"H2-v1"', grade="major"), 412, "not -1")
    refused(move(client, "H1", "registered", eng, "garbage", grade="major"), 400, "not an ETag")
    r = client.post("/hazards/H1/transitions", json={"to": "registered"}, headers=eng)
    refused(r, 428, "If-Match")
    refused(move(client, "H1", "registered", eng, '"H1-v1"'), 400, "needs its grade")
    refused(
        move(client, "H1", "registered", eng, '"H1-v1"', grade="major", responsible="x"),
        400,
        "when assigning",
    )
    refused(move(client, "H1", "fixed", eng, '"H1-v1"'), 400, "to")
    refused(move(client, "H9", "registered", eng, '"H9-v1"', grade="major"), 404, "no hazard H9")
    refused(client.get("/hazards/abc"), 404, "look like H123")
    refused(client.get("/hazards/H42/history"), 404, "no hazard H42")
    refused(client.get("/hazards", params={"state": "fixed"}), 400, "unknown state")
    refused(client.get("/hazards", params={"jurisdiction": "West"}), 400, "no jurisdictions")
    # nothing of the above was stored
    assert client.get("/hazards").json()["numberMatched"] == 1
    assert client.get("/hazards/H1/history").json() == history
    assert client.get("/hazards/H1").headers["etag"] == '"H1-v1"'


def test_duplicate_reports_are_linked(client: TestClient, roles: dict) -> None:
    first = report(client, roles["reporter"], category="organisation.speeding")
    near = [ON_S0000E[0] + 0.0001, ON_S0000E[1]]  # ~5.5 m east
    second = report(
        client, roles["reporter"], category="organisation.speeding", geometry=point(*near)
    )
    assert second.status_code == 200 and second.json()["linked"] is True
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["properties"]["report_count"] == 2 and second.json()["version"] == 2
    assert second.json()["linked_distance_m"] == pytest.approx(5.5, abs=0.3)
    other = report(client, roles["reporter"], category="organisation.illegal_parking")
    assert other.status_code == 201
    reports = client.get(f"/hazards/{first.json()['id']}/reports").json()["reports"]
    assert len(reports) == 2 and reports[1]["geometry"]["coordinates"] == near
    again = report(client, roles["reporter"], category="environment.other", external_id="ext-1")
    replay = report(client, roles["reporter"], category="environment.other", external_id="ext-1")
    assert replay.status_code == 200 and replay.json()["replayed"] is True
    assert replay.json()["id"] == again.json()["id"]


def test_categories_catalogue(client: TestClient) -> None:
    cat = client.get("/hazard-categories").json()
    assert [c["code"] for c in cat["classes"]] == [
        "road",
        "facility",
        "organisation",
        "environment",
    ]
    assert "facility.signal" in cat["items"] and cat["states"][0] == "reported"
    assert cat["deadline_days"] == {"general": 7.0, "major": 90.0}
    assert {"from": "accepted", "to": "rectifying", "action": "fail_acceptance"} in cat[
        "transitions"
    ]


# ------------------------------------------------------------------------------ tokens, reads


def test_tokens_roles_and_revocation(client: TestClient, roles: dict) -> None:
    for role in ("reporter", "engineer", "supervisor"):
        r = client.post("/tokens", json={"role": "admin"}, headers=roles[role])
        assert r.status_code == 403 and "needs a token of role admin" in r.json()["detail"]
        assert client.get("/tokens", headers=roles[role]).status_code == 403
    assert client.post("/tokens", json={"role": "root"}, headers=A).status_code == 400
    listing = client.get("/tokens", headers=A)
    assert listing.status_code == 200 and len(listing.json()["tokens"]) == 3
    for hdr in roles.values():
        assert hdr["Authorization"].split()[1] not in listing.text
    me = client.get("/tokens/me", headers=roles["engineer"]).json()
    assert me["role"] == "engineer" and me["label"] == "engineer test"
    assert client.get("/tokens/me", headers=A).json()["role"] == "admin"
    assert client.delete(f"/tokens/{me['token_id']}", headers=roles["engineer"]).status_code == 403
    assert client.delete(f"/tokens/{me['token_id']}", headers=A).status_code == 204
    r = report(client, roles["engineer"])
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert client.delete("/tokens/Tnothing", headers=A).status_code == 404


def test_reads_can_be_closed(data_dir: Path, tmp_path: Path) -> None:
    with make_client(data_dir, f"sqlite:///{tmp_path / 'l.sqlite'}", read_requires_token=True) as c:
        rep = token(c, "reporter")
        for path in ("/hazards", "/hazard-categories", "/workzones"):
            assert c.get(path).status_code == 401
            assert c.get(path, headers=rep).status_code == 200
    with make_client(data_dir, f"sqlite:///{tmp_path / 'l.sqlite'}") as c:
        assert c.get("/hazards").status_code == 200


# ------------------------------------------------------------------------------ work zones


def test_workzones_api(client: TestClient, roles: dict) -> None:
    line = {"type": "LineString", "coordinates": [[LON0 + 0.0003, LAT0], [LON0 + 0.0027, LAT0]]}
    z, (x, y) = 16, mvt.lonlat_to_tile(LON0 + 0.0015, LAT0, 16)
    live = f"/tiles/live-workzones/{z}/{x}/{y}.mvt"

    def on_map(**params: str) -> list[str]:
        tile = client.get(live, params=params)
        assert tile.status_code in (200, 204), tile.text
        feats = decode(tile.content).get("workzones", []) if tile.status_code == 200 else []
        return sorted(f["properties"]["site_code"] for f in feats)

    table_sites = on_map()  # the data folder's own work zones
    body = {
        "site_code": "KT-2018-0001",
        "geometry": line,
        "start": "2018-05-01",
        "end": "2018-06-30T18:00:00Z",
        "lanes_taken": 1,
        "night_works": True,
    }
    assert client.post("/workzones", json=body, headers=roles["reporter"]).status_code == 403
    r = client.post("/workzones", json=body, headers=roles["engineer"])
    assert r.status_code == 201, r.text
    z = r.json()
    # the works reach into both junctions' influence discs (20 m)
    assert z["properties"]["unit_ids"] == ["I0000TESTNODE", "I0100TESTNODE", "S0000ETESTSEG"]
    assert z["id"] == "KT-2018-0001"
    assert z["links"]["qr"].endswith("/workzones/KT-2018-0001/qr.png")
    assert client.post("/workzones", json=body, headers=roles["engineer"]).status_code == 409
    bad = {**body, "site_code": "KT 2"}
    assert client.post("/workzones", json=bad, headers=roles["engineer"]).status_code == 400
    later = {**body, "site_code": "KT-2018-0002", "start": "2018-06-15", "end": None}
    assert client.post("/workzones", json=later, headers=roles["supervisor"]).status_code == 201

    def active(t: str) -> list[str]:
        return [f["id"] for f in client.get("/workzones", params={"active": t}).json()["features"]]

    assert active("2018-04-30") == []
    assert active("2018-06-01") == ["KT-2018-0001"]
    assert active("2018-06-20") == ["KT-2018-0001", "KT-2018-0002"]
    assert active("now") == ["KT-2018-0002"]
    # registered sites are on the live work-zone tiles at once, with the date filter
    assert on_map() == sorted([*table_sites, "KT-2018-0001", "KT-2018-0002"])
    assert "KT-2018-0001" in on_map(active="2018-06-01")
    assert "KT-2018-0002" not in on_map(active="2018-06-01")
    unit_zones = client.get("/units/S0000ETESTSEG").json()["workzones"]
    assert {"KT-2018-0001", "KT-2018-0002"} <= {w["id"] for w in unit_zones}
    assert client.get("/workzones", params={"active": "soon"}).status_code == 400
    qr = client.get("/workzones/KT-2018-0001/qr.png")
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/png"
    assert qr.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert qr.headers["x-qr-url"] == "http://testserver/workzones/KT-2018-0001/page"
    page = client.get("/workzones/KT-2018-0001/page")
    assert page.status_code == 200 and "Work zone KT-2018-0001" in page.text
    assert "not active now" in page.text
    assert client.get("/workzones/nope/qr.png").status_code == 404


# ------------------------------------------------------------------------------ KPIs, sweeps


def test_kpis_json_and_csv(data_dir: Path, ledger_url: str) -> None:  # noqa: F811
    with make_client(data_dir, ledger_url) as c:
        assert c.get("/kpis").status_code == 400  # no jurisdictions configured
        by_chief = c.get("/kpis", params={"by": "road_chief"}).json()
        assert by_chief["rows"] == []
    with make_client(data_dir, ledger_url, jurisdictions=data_dir / "zones.geojson") as c:
        eng = token(c, "engineer")
        report(c, eng)  # West
        east = [LON0 + 4 * DLON + DLON / 2, LAT0 + 0.00002]
        r = report(c, eng, geometry=point(*east), category="facility.lighting")
        move(c, r.json()["id"], "registered", eng, r.headers["etag"], grade="general")
        k = c.get("/kpis").json()
        rows = {row["jurisdiction"]: row for row in k["rows"]}
        assert (rows["West"]["hazards"], rows["East"]["hazards"]) == (1, 1)
        n_acc = len(pd.read_parquet(data_dir / "accidents.parquet"))
        assert rows["West"]["accidents"] + rows["East"]["accidents"] == n_acc
        assert rows["West"]["accidents_linked_share"] == 1.0
        assert rows["West"]["km"] > 0 and rows["West"]["hazards_per_km"] > 0
        assert "rectification_rate" in k["definitions"]
        text = c.get("/kpis", params={"format": "csv"}).text
        assert text.splitlines()[0].startswith("jurisdiction,hazards,km,hazards_per_km")
        assert [h["id"] for h in c.get("/hazards?jurisdiction=East").json()["features"]] == ["H2"]
        assert c.get("/hazards?jurisdiction=North").status_code == 404
        assert c.get("/kpis", params={"from": "2020-01-01"}).status_code == 400


def test_sweep_escalates_overdue_and_needs_a_supervisor(client: TestClient, roles: dict) -> None:
    led = client.app.state.ledger.ledger  # type: ignore[attr-defined]
    report(client, roles["reporter"])
    past = datetime.now(UTC) - timedelta(days=30)
    h = led.transition(
        "H1",
        "registered",
        actor="t",
        role="engineer",
        expected_version=1,
        grade="general",
        now=past,
    )
    led.transition(
        "H1",
        "assigned",
        actor="t",
        role="engineer",
        expected_version=h.version,
        responsible="x",
        now=past,
    )
    assert client.get("/hazards", params={"overdue": "true"}).json()["numberMatched"] == 1
    assert client.post("/hazard-sweeps", headers=roles["engineer"]).status_code == 403
    r = client.post("/hazard-sweeps", headers=roles["supervisor"])
    assert r.status_code == 200 and r.json()["escalated"] == ["H1"]
    props = client.get("/hazards/H1").json()["properties"]
    assert props["overdue"] is True and props["supervision"] == "listed"
    assert client.post("/hazard-sweeps", headers=roles["supervisor"]).json()["escalated"] == []


def test_data_folder_hazards_are_imported_once(data_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "withhazards"
    d.mkdir()
    for f in ("units.parquet", "accidents.parquet"):
        (d / f).write_bytes((data_dir / f).read_bytes())
    write_table(grid_events(grid_units())["hazards"], d / "hazards.parquet")
    url = f"sqlite:///{tmp_path / 'l.sqlite'}"
    for _ in range(2):  # the restart imports nothing new
        with make_client(d, url) as c:
            got = c.get("/hazards").json()["features"]
            assert [f["properties"]["state"] for f in got] == ["rectifying", "closed", "reported"]
            assert got[0]["properties"]["category"] == "facility.markings"
            assert c.get("/hazards/H1/history").json()["events"][0]["action"] == "import"


# ------------------------------------------------------------------------------ real data


@pytest.mark.slow
def test_boston_reports_through_the_api_link_like_a_brute_force_greedy(
    data_dir: Path,
    ledger_url: str,  # noqa: F811
    shared_data: Path,
) -> None:
    """300 real citizen reports: the API links exactly the reports a geodesic brute force does.

    The served units are the Helsinki test grid, so the distance-to-units check is widened
    to the whole globe (TRAFFICUNIT_LEDGER_UNITS_MARGIN_M)."""
    with make_client(data_dir, ledger_url, units_margin_m=2.1e7) as client:
        _boston(client, {"reporter": token(client, "reporter")}, shared_data)


def _boston(client: TestClient, roles: dict, shared_data: Path) -> None:
    from pyproj import Geod

    path = shared_data / "hazards" / "boston-safety-reports-2016.csv"
    raw = pd.read_csv(path, encoding="utf-8-sig", nrows=300)
    raw = raw[raw["X"].notna() & raw["Y"].notna()].reset_index(drop=True)
    cats = {
        "people speed": "organisation.speeding",
        "people run red lights / stop signs": "organisation.signal_violation",
    }
    raw["category"] = raw["REQUESTTYPE"].map(cats).fillna("environment.other")
    raw["t"] = pd.to_datetime(raw["REQUESTDATE"], utc=True)
    rep = roles["reporter"]
    rows: list[dict[str, Any]] = raw.to_dict("records")  # type: ignore[assignment]
    linked_to = []
    for row in rows:
        r = client.post(
            "/hazards",
            headers=rep,
            json={
                "geometry": point(row["X"], row["Y"]),
                "category": row["category"],
                "reported_at": row["t"].isoformat(),
                "external_id": f"boston-{row['OBJECTID']}",
            },
        )
        assert r.status_code in (200, 201), r.text
        linked_to.append(r.json()["id"] if r.status_code == 200 else None)
    # brute force: every report against every hazard opened before it (geodesic metres)
    geod = Geod(ellps="WGS84")
    hazards: list[dict[str, Any]] = []  # x, y, category, first, last, id
    expected: list[str | None] = []
    for row in rows:
        best: tuple[float, dict[str, Any]] | None = None
        t = row["t"]
        for h in hazards:
            if h["category"] != row["category"]:
                continue
            if not (h["first"] - timedelta(days=30) <= t <= h["last"] + timedelta(days=30)):
                continue
            d = geod.inv(h["x"], h["y"], row["X"], row["Y"])[2]
            if d <= 30.0 and (best is None or d < best[0]):
                best = (d, h)
        if best is None:
            hazards.append(
                {
                    "x": row["X"],
                    "y": row["Y"],
                    "category": row["category"],
                    "first": t,
                    "last": t,
                    "id": f"H{len(hazards) + 1}",
                }
            )
            expected.append(None)
        else:
            h = best[1]
            h["first"], h["last"] = min(h["first"], t), max(h["last"], t)
            expected.append(h["id"])
    assert linked_to == expected
    assert sum(x is not None for x in expected) > 10  # real duplicates exist in this sample
    assert client.get("/hazards").json()["numberMatched"] == len(hazards)


# ------------------------------------------------------------------------------ fuzzing


#: Operations that answer with an event stream (their OpenAPI entries say JSON)
EVENT_STREAMS = {"/alerts/stream"}


def test_schemathesis_finds_no_server_error(data_dir: Path, tmp_path: Path) -> None:
    """A bounded property-based run over every operation of the OpenAPI schema: no 5xx.

    On a complete data folder (so no endpoint lacks its table) with jurisdictions configured,
    as an admin (so writes get past auth and their bodies are exercised).
    """
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    cases = 0
    failures: list[str] = []
    streamed: set[str] = set()

    def run(op: Any) -> None:
        # an event stream never ends by itself: schemathesis keeps what came before the request
        # timeout (10 s by default, 8 cases: 80 s here); its status, the thing checked, comes
        # first, so a 2 s cut checks the same
        timeout = {"timeout": 2.0} if op.path in EVENT_STREAMS else {}

        @settings(
            max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=op.as_strategy())
        def check(case: Any) -> None:
            nonlocal cases
            cases += 1
            response = case.call(headers=A, **timeout)
            if "text/event-stream" in " ".join(response.headers.get("content-type", [])):
                streamed.add(op.path)
            if response.status_code >= 500:
                failures.append(
                    f"{op.method.upper()} {op.path}: {response.status_code} "
                    f"{response.text[:200]} for {case.as_curl_command()}"
                )

        check()

    full = build_data_dir(tmp_path / "full")
    zones = data_dir / "zones.geojson"
    with make_client(full, f"sqlite:///{tmp_path / 'fuzz.sqlite'}", jurisdictions=zones) as c:
        schema = schemathesis.openapi.from_asgi("/openapi.json", c.app)
        for result in schema.get_all_operations():
            op = result.ok()  # type: ignore[union-attr]
            if op.path.startswith("/tiles") or op.path in ("/style.json",):
                continue  # the tiles have their own fuzz test in test_server.py
            run(op)
    assert cases > 100
    assert streamed == EVENT_STREAMS  # the short timeout is given to every stream, and only
    print(f"schemathesis: {cases} cases")
    assert failures == [], "\n".join(failures)


def test_shutdown_waits_for_a_sweep_in_flight(data_dir: Path, tmp_path: Path) -> None:
    """The periodic sweep runs in a worker thread; closing the ledger under it crashed."""
    import threading

    from trafficunit_server.ledger import LedgerService

    settings = Settings(
        data_dir=data_dir,
        ledger=LedgerServerSettings(database_url=f"sqlite:///{tmp_path / 'l.sqlite'}"),
    )
    svc = LedgerService(settings)
    real = svc.ledger.escalate_overdue
    started = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def slow() -> list[str]:
        started.set()
        assert release.wait(60)  # held until close() has been asked for
        out = real()  # still uses the database after close() was asked for
        order.append("sweep finished")
        return out

    svc.ledger.escalate_overdue = slow  # type: ignore[method-assign]
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(svc.sweep(None)))
    worker.start()
    assert started.wait(60)

    def close() -> None:
        svc.close()
        order.append("closed")

    closer = threading.Thread(target=close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # close() waits: the sweep holds the ledger
    release.set()
    worker.join(60)
    closer.join(60)
    assert not closer.is_alive() and not worker.is_alive()
    assert result == {"escalated": [], "reopened": []}  # the sweep finished on an open ledger
    assert order == ["sweep finished", "closed"]
    assert svc.sweep(None) == {"escalated": [], "reopened": []}  # and none runs after close
