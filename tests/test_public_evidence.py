"""Tokenless public reports (rate and size limits, private receipts, no enumeration) and
evidence files (type from the bytes, size limit, served with their content type)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from trafficunit.ledger.public import LedgerRateLimiter, RateLimiter
from trafficunit_server.app import create_app
from trafficunit_server.settings import LedgerServerSettings, Settings

from ._ledger_db import drop_pg_database, fresh_pg_database, pg_template  # noqa: F401
from ._serverdata import DLON, LAT0, LON0, build_data_dir

ADMIN = "pub-admin-token-0123456789abcdefghijk"
A = {"Authorization": f"Bearer {ADMIN}"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4\n%test\n"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_data_dir(tmp_path_factory.mktemp("pub"))


@pytest.fixture
def client(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("TRAFFICUNIT_OPS_PUBLIC_RATE_LIMIT", "3")
    monkeypatch.setenv("TRAFFICUNIT_OPS_EVIDENCE_MAX_BYTES", "1000")
    monkeypatch.setenv("TRAFFICUNIT_OPS_EVIDENCE_DIR", str(tmp_path / "evidence"))
    cfg = LedgerServerSettings(
        database_url=f"sqlite:///{tmp_path / 'l.sqlite'}", admin_token=ADMIN, sweep_interval_s=0
    )
    with TestClient(create_app(Settings(data_dir=data_dir, ledger=cfg))) as c:
        yield c


def public_hazards(client: TestClient) -> list[dict[str, Any]]:
    feats = client.get("/hazards", params={"limit": 10000}).json()["features"]
    return [f for f in feats if f["properties"]["source"] == "public_report"]


def where() -> dict[str, object]:
    return {"type": "Point", "coordinates": [LON0 + DLON / 2, LAT0 + 0.00002]}


def test_public_report_creates_a_reported_hazard_and_a_private_receipt(
    client: TestClient,
) -> None:
    r = client.post(
        "/public/reports",
        json={
            "geometry": where(),
            "category": "facility.signal",
            "description": "signal dark at night",
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"receipt", "status", "received_at", "status_url"}
    (feat,) = public_hazards(client)
    # the hazard id is not given away
    assert all(
        feat["id"] not in str(v) for k, v in body.items() if k not in ("receipt", "status_url")
    )
    h = feat["properties"]
    assert (h["state"], h["source"], h["description"]) == (
        "reported",
        "public_report",
        "signal dark at night",
    )
    assert client.get(body["status_url"]).json()["status"] == "received"
    # a repeat of the same hazard gets its own receipt and learns nothing about the first
    r2 = client.post("/public/reports", json={"geometry": where(), "category": "facility.signal"})
    assert r2.status_code == 201 and r2.json()["receipt"] != body["receipt"]
    assert set(r2.json()) == set(body)
    assert client.get("/public/reports/not-a-receipt").status_code == 404
    receipt = body["receipt"]
    other = receipt[:-1] + ("y" if receipt.endswith("x") else "x")  # one character off
    assert client.get("/public/reports/" + other).status_code == 404


def test_public_reports_are_rate_and_size_limited(client: TestClient) -> None:
    ok = [
        client.post("/public/reports", json={"geometry": where(), "category": "road.sharp_curve"})
        for _ in range(3)
    ]
    assert [r.status_code for r in ok] == [201, 201, 201]
    r = client.post("/public/reports", json={"geometry": where(), "category": "road.sharp_curve"})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert [f["properties"]["report_count"] for f in public_hazards(client)] == [3]


def test_the_rate_limit_holds_across_server_processes(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two apps on one ledger (as two Granian workers are) share one count per client."""
    monkeypatch.setenv("TRAFFICUNIT_OPS_PUBLIC_RATE_LIMIT", "3")
    cfg = LedgerServerSettings(
        database_url=f"sqlite:///{tmp_path / 'shared.sqlite'}",
        admin_token=ADMIN,
        sweep_interval_s=0,
    )
    body = {"geometry": where(), "category": "road.sharp_curve"}
    with (
        TestClient(create_app(Settings(data_dir=data_dir, ledger=cfg))) as one,
        TestClient(create_app(Settings(data_dir=data_dir, ledger=cfg))) as two,
    ):
        assert one.app.state.ops.public_limiter is not two.app.state.ops.public_limiter
        codes = [c.post("/public/reports", json=body).status_code for c in (one, two, one)]
        assert codes == [201, 201, 201]
        for c in (two, one):  # each process alone has seen fewer than 3
            r = c.post("/public/reports", json=body)
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_the_rate_limit_holds_with_two_granian_workers(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`trafficunit serve --workers 2`: fresh connections land on either worker; the count
    is one (a per-process count would let up to 6 of 10 through)."""
    import httpx

    from .test_supervision import serve as serve_workers

    monkeypatch.setenv("TRAFFICUNIT_OPS_PUBLIC_RATE_LIMIT", "3")
    body = {"geometry": where(), "category": "road.sharp_curve"}
    with serve_workers(data_dir, 2, tmp_path) as served:
        codes = [
            httpx.post(f"{served.url}/public/reports", json=body, timeout=30).status_code
            for _ in range(10)
        ]
    assert sorted(codes) == [201] * 3 + [429] * 7, codes


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_ledger_rate_limiter_window_and_keys(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from trafficunit.ledger._db import connect

    name = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'rate.sqlite'}"
    else:
        name, url = fresh_pg_database(request.getfixturevalue("pg_template"))
    db = connect(url)
    try:
        rl = LedgerRateLimiter(db, 2, 10.0)
        other = LedgerRateLimiter(db, 2, 10.0)  # another process's limiter, same database
        assert rl.allow("a", now=100)[0] and other.allow("a", now=101)[0]
        allowed, wait = rl.allow("a", now=102)
        assert not allowed and wait == pytest.approx(8.0)
        assert other.allow("b", now=102)[0]  # another client has its own count
        assert rl.allow("a", now=110.5)[0]  # the first hit left the window
        assert not other.allow("a", now=110.6)[0]
        with db.transaction() as tx:  # addresses are not stored, only hashes; old hits go
            rows = tx.all("SELECT client_hash, at FROM public_rate_hits ORDER BY at")
        assert all(len(r["client_hash"]) == 64 and r["client_hash"] != "a" for r in rows)
        assert min(r["at"] for r in rows) > 100
    finally:
        db.close()
        if name is not None:
            drop_pg_database(name)


def test_public_report_bad_input(client: TestClient) -> None:
    big = {"geometry": where(), "category": "road.sharp_curve", "description": "x" * 30000}
    assert client.post("/public/reports", json=big).status_code == 413
    bad = client.post("/public/reports", json={"geometry": where(), "category": "nope"})
    assert bad.status_code == 400
    line = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}
    assert (
        client.post(
            "/public/reports", json={"geometry": line, "category": "road.sharp_curve"}
        ).status_code
        == 400
    )
    assert public_hazards(client) == []


def test_rate_limiter_window() -> None:
    rl = RateLimiter(2, 10.0, max_keys=2)
    assert rl.allow("a", now=0)[0] and rl.allow("a", now=1)[0]
    allowed, wait = rl.allow("a", now=2)
    assert not allowed and wait == pytest.approx(8.0)
    assert rl.allow("a", now=10.5)[0]  # the first hit left the window
    rl.allow("b", now=11)
    rl.allow("c", now=12)  # evicts the stalest key, not the newest
    assert set(rl._hits) == {"b", "c"}


def test_evidence_is_typed_by_its_bytes_limited_and_served(client: TestClient) -> None:
    r = client.post("/tokens", json={"role": "engineer"}, headers=A)
    eng = {"Authorization": f"Bearer {r.json()['token']}"}
    h = client.post(
        "/hazards", json={"geometry": where(), "category": "facility.signal"}, headers=eng
    ).json()
    up = client.post(
        f"/evidence/hazard/{h['id']}",
        params={"filename": "../../photo one.png"},
        content=PNG,
        headers={**eng, "Content-Type": "image/jpeg"},
    )
    assert up.status_code == 201, up.text
    meta = up.json()
    assert meta["content_type"] == "image/png" and meta["filename"] == "photo_one.png"
    got = client.get(meta["href"])
    assert got.status_code == 200 and got.content == PNG
    assert got.headers["content-type"] == "image/png"
    assert got.headers["x-content-type-options"] == "nosniff"
    doc = client.post(
        f"/evidence/hazard/{h['id']}", params={"filename": "report.pdf"}, content=PDF, headers=eng
    ).json()
    assert client.get(doc["href"]).headers["content-type"] == "application/pdf"
    listed = client.get(f"/evidence/hazard/{h['id']}").json()["items"]
    assert [e["id"] for e in listed] == [meta["id"], doc["id"]]
    html = client.post(f"/evidence/hazard/{h['id']}", content=b"<html><script>", headers=eng)
    assert html.status_code == 400 and "allowed" in html.json()["detail"]
    big = client.post(f"/evidence/hazard/{h['id']}", content=PNG + b"\x00" * 2000, headers=eng)
    assert big.status_code == 413
    assert client.post("/evidence/hazard/H999", content=PNG, headers=eng).status_code == 404
    assert client.post(f"/evidence/hazard/{h['id']}", content=PNG).status_code == 401
    assert client.post("/evidence/review/GA1", content=PNG, headers=eng).status_code == 404
    assert client.get("/evidence/E999").status_code == 404
    assert len(client.get(f"/evidence/hazard/{h['id']}").json()["items"]) == 2
