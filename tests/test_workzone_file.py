"""The work-zone file: PATCH with If-Match, inspections with photos, rectification orders,
the page listing it all, the A4 board and the KPIs."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from trafficunit.io import write_table
from trafficunit_server import Settings, create_app
from trafficunit_server.settings import LedgerServerSettings

from ._ledger_db import ledger_url, pg_session_db, pg_template  # noqa: F401  (fixtures)
from ._serverdata import LAT0, LON0, grid_units

ADMIN = "test-admin-token-0123456789abcdef"
A = {"Authorization": f"Bearer {ADMIN}"}
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture
def client(tmp_path: Path, ledger_url: str) -> TestClient:  # noqa: F811
    """On SQLite and on PostgreSQL + PostGIS (skipped without a server)."""
    write_table(grid_units(), tmp_path / "units.parquet")
    settings = Settings(
        data_dir=tmp_path,
        ledger=LedgerServerSettings(
            database_url=ledger_url,
            admin_token=ADMIN,
            sweep_interval_s=0,
        ),
    )
    with TestClient(create_app(settings)) as c:
        yield c


def _token(client: TestClient, role: str) -> dict[str, str]:
    r = client.post("/tokens", json={"role": role}, headers=A)
    assert r.status_code == 201
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_extended_inspected_ordered_and_ended(client: TestClient) -> None:
    eng, rep = _token(client, "engineer"), _token(client, "reporter")
    now = datetime.now(UTC)
    code = f"SZ-2025-{secrets.token_hex(3)}"  # the file's tables outlive a test on PostgreSQL
    body = {
        "site_code": code,
        "geometry": {
            "type": "LineString",
            "coordinates": [[LON0 + 0.0003, LAT0], [LON0 + 0.0027, LAT0]],
        },
        "start": (now - timedelta(days=10)).isoformat(),
        "end": (now + timedelta(days=2)).isoformat(),
        "lanes_taken": 1,
        "contractor": "深圳路桥 Demo Works",
    }
    assert client.post("/workzones", json=body, headers=eng).status_code == 201
    url = f"/workzones/{code}"
    # KPIs: the active site was never inspected
    k = client.get("/kpis/workzones", params={"days": 7}).json()
    assert {"site_code": code, "last_inspection": None} in k["not_inspected_sites"]
    open_before = k["open_orders"]
    # extend: If-Match required, stale refused, reporters refused
    later = (now + timedelta(days=30)).isoformat()
    assert client.patch(url, json={"end": later}, headers=eng).status_code == 428
    assert (
        client.patch(
            url, json={"end": later}, headers={**rep, "If-Match": f'"{code}-v1"'}
        ).status_code
        == 403
    )
    assert (
        client.patch(
            url, json={"end": later}, headers={**eng, "If-Match": f'"{code}-v9"'}
        ).status_code
        == 412
    )
    r = client.patch(url, json={"end": later}, headers={**eng, "If-Match": f'"{code}-v1"'})
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == f'"{code}-v2"'
    assert r.json()["properties"]["end"].startswith(later[:16])
    # a failed inspection with a photo opens a rectification order (a hazard with a deadline)
    insp = {
        "result": "fail",
        "checklist": {
            "signs": True,
            "cones": False,
            "night_lighting": False,
            "lanes_as_permitted": True,
        },
        "notes": "两处锥桶倒伏 / two cones down",
        "photos": [
            {
                "name": "cones.png",
                "content_type": "image/png",
                "data": base64.b64encode(PNG).decode(),
            }
        ],
    }
    bad = dict(insp, result="pass")
    assert client.post(f"{url}/inspections", json=bad, headers=eng).status_code == 400
    r = client.post(f"{url}/inspections", json=insp, headers=eng)
    assert r.status_code == 201, r.text
    out = r.json()
    order = out["order"]
    assert order and out["photos"]
    h = client.get(f"/hazards/{order}").json()["properties"]
    assert h["state"] == "assigned" and h["deadline"] and h["responsible"] == "深圳路桥 Demo Works"
    photo = client.get(f"{url}/photos/{out['photos'][0]}")
    assert photo.status_code == 200 and photo.content == PNG
    assert client.get(f"/workzones/OTHER/photos/{out['photos'][0]}").status_code == 404
    k = client.get("/kpis/workzones", params={"days": 7}).json()
    assert code not in {s["site_code"] for s in k["not_inspected_sites"]}
    assert k["open_orders"] == open_before + 1
    assert any(o["hazard"] == order and o["site_code"] == code for o in k["orders"])
    # a passing inspection later, then the site ends
    ok = {"result": "pass", "checklist": dict.fromkeys(insp["checklist"], True)}
    assert client.post(f"{url}/inspections", json=ok, headers=eng).status_code == 201
    r = client.patch(
        url, json={"end_now": True, "comment": "完工 finished"}, headers={**eng, "If-Match": "*"}
    )
    assert r.status_code == 200 and r.json()["properties"]["active"] is False
    f = client.get(f"{url}/file").json()
    actions = [e["action"] for e in f["events"]]
    assert actions == ["register", "extend", "order", "inspection_fail", "inspection_pass", "end"]
    assert f["orders"][0]["hazard"] == order
    page = client.get(f"{url}/page").text
    for text in (
        "extend",
        "inspection_fail",
        "不合格 fail",
        order,
        "cones",
        "end",
        "finished",
        f"/photos/{out['photos'][0]}",
        "board.pdf",
    ):
        assert text in page, text
    pdf = client.get(f"{url}/board.pdf")
    assert pdf.status_code == 200 and pdf.content[:5] == b"%PDF-"
    assert pdf.headers["content-type"] == "application/pdf"
    assert (
        client.patch(
            "/workzones/NOPE", json={"end_now": True}, headers={**eng, "If-Match": "*"}
        ).status_code
        == 404
    )
