"""Inputs, auth and files of the server, hardened: every header and path value parsed with
bounds, error bodies in the project's words with at most a short echo, geometry sanity for
reports (422 with a reason, a hint for swapped axes), a failed-token throttle (429 +
Retry-After), a long bootstrap admin token, anonymous histories without token labels or ids,
owner-only ledger files and gzip-compressed GeoJSON and CSV."""

from __future__ import annotations

import gzip
import json
import math
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError as PydanticError

from trafficunit.io import write_table
from trafficunit.ledger.errors import ImplausibleGeometry
from trafficunit.ledger.geometry import GeometryLimits, check_plausible, parse_geometry
from trafficunit_server import Settings, create_app
from trafficunit_server.settings import LedgerServerSettings

from ._serverdata import DLAT, DLON, LAT0, LON0, N, grid_events, grid_units

ADMIN = "hardening-admin-token-0123456789abcdef"
A = {"Authorization": f"Bearer {ADMIN}"}
ON_GRID = [LON0 + DLON / 2, LAT0 + 0.00002]
#: The grid's bounding box (lon/lat).
GRID = (LON0, LAT0, LON0 + (N - 1) * DLON, LAT0 + (N - 1) * DLAT)
#: Longest error detail accepted: a sentence, never the input in full.
SHORT = 400


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hardening")
    units = grid_units()
    write_table(units, d / "units.parquet")
    write_table(grid_events(units)["accidents"], d / "accidents.parquet")
    return d


def make_client(data_dir: Path, db: Path, **ledger: Any) -> TestClient:
    cfg = {
        "database_url": f"sqlite:///{db}",
        "admin_token": ADMIN,
        "sweep_interval_s": 0,
        **ledger,
    }
    return TestClient(create_app(Settings(data_dir=data_dir, ledger=LedgerServerSettings(**cfg))))


@pytest.fixture
def client(data_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(data_dir, tmp_path / "ledger.sqlite") as c:
        yield c


def new_token(c: TestClient, role: str, label: str) -> tuple[str, dict[str, str]]:
    r = c.post("/tokens", json={"role": role, "label": label}, headers=A)
    assert r.status_code == 201, r.text
    return r.json()["token_id"], {"Authorization": f"Bearer {r.json()['token']}"}


def report(c: TestClient, headers: dict[str, str], geometry: Any, **kw: Any) -> Any:
    body = {"geometry": geometry, "category": "facility.signal", **kw}
    return c.post("/hazards", json=body, headers=headers)


def detail(r: Any) -> str:
    text: str = r.json()["detail"]
    assert len(text) < SHORT, text
    return text


# ------------------------------------------------------------------------------ bounds


def test_a_4301_digit_if_match_is_a_400_with_a_short_reason(client: TestClient) -> None:
    r = report(client, A, {"type": "Point", "coordinates": ON_GRID})
    assert r.status_code == 201
    hid = r.json()["id"]
    for value in ('"' + "9" * 4301 + '"', f'"{hid}-v' + "1" * 4301 + '"', "1" * 200):
        t = client.post(
            f"/hazards/{hid}/transitions",
            json={"to": "registered", "grade": "general"},
            headers={**A, "If-Match": value},
        )
        assert t.status_code == 400, t.text
        assert "If-Match" in detail(t) and "9" * 50 not in t.text and "1" * 50 not in t.text
    # nothing changed
    assert client.get(f"/hazards/{hid}").json()["version"] == 1


def test_long_path_values_are_refused_without_echoing_them(client: TestClient) -> None:
    long_id = "H" + "7" * 5000
    for path in (
        f"/hazards/{long_id}",
        f"/hazards/{long_id}/history",
        f"/units/{'u' * 5000}",
        f"/workzones/{'w' * 5000}",
    ):
        r = client.get(path)
        assert r.status_code in (404, 414), (path, r.status_code)
        assert len(r.text) < SHORT and "7" * 50 not in r.text and "u" * 50 not in r.text
    # a mid-length id (under the segment bound) is a 404 that echoes a prefix only
    r = client.get(f"/hazards/H{'8' * 200}")
    assert r.status_code == 404 and "8" * 50 not in detail(r) and "(201 characters)" in detail(r)
    r = client.get("/units", params={"bbox": "1," * 1000})
    assert r.status_code == 400 and len(detail(r)) < SHORT and "1," * 30 not in r.text
    r = client.get("/units", params={"bbox": "1," * 5000})
    assert r.status_code == 414 and "query string" in detail(r)
    huge_header = {"Authorization": "Bearer " + "x" * 5000}
    r = client.get("/hazards", headers=huge_header)
    assert r.status_code == 400 and "Authorization" in detail(r)


@pytest.mark.parametrize(
    ("geometry", "words"),
    [
        ({"type": "Point", "coordinates": "24.9,60.1"}, "a Point is [lon, lat]"),
        ({"type": "Point", "coordinates": [24.9]}, "a position must be [lon, lat]"),
        ({"type": "LineString", "coordinates": [[24.9, 60.1]]}, "fewer than two positions"),
        ({"type": "Polygon", "coordinates": [[[24.9, 60.1], [24.91, 60.1]]]}, "not closed"),
        ({"type": "Polygon", "coordinates": [[["a", 60.1]]]}, "numbers only"),
        ({"type": "Polygon", "coordinates": {"x": 1}}, "a Polygon is"),
        ({"type": "Nope" * 500, "coordinates": [1, 2]}, "is not supported"),
    ],
)
def test_malformed_geometries_are_told_in_our_words(
    client: TestClient, geometry: Any, words: str
) -> None:
    r = report(client, A, geometry)
    assert r.status_code == 400, r.text
    text = detail(r)
    assert words in text
    for internal in ("ParseException", "parse_error", "json.exception", "GEOS", "IllegalArgument"):
        assert internal not in text


def test_a_malformed_json_body_is_a_400_in_our_words(client: TestClient) -> None:
    r = client.post(
        "/hazards",
        content=b'{"geometry": {' + b"x" * 3000,
        headers={**A, "content-type": "application/json"},
    )
    assert r.status_code == 400
    assert "x" * 50 not in r.text and len(r.text) < SHORT


# ------------------------------------------------------------------------------ geometry sanity


def test_a_world_polygon_is_422_with_a_reason_and_stores_nothing(client: TestClient) -> None:
    first = report(client, A, {"type": "Point", "coordinates": ON_GRID})
    assert first.status_code == 201
    world = {
        "type": "Polygon",
        "coordinates": [[[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]]],
    }
    r = report(client, A, world)
    assert r.status_code == 422, r.text
    assert "510 million km²" in detail(r) and "1.00 km²" in detail(r)
    # not linked to the existing hazard as a duplicate either: nothing changed
    assert client.get("/hazards").json()["numberMatched"] == 1
    assert client.get(f"/hazards/{first.json()['id']}").json()["version"] == 1


def test_a_swapped_point_is_422_with_a_hint(client: TestClient) -> None:
    r = report(client, A, {"type": "Point", "coordinates": [ON_GRID[1], ON_GRID[0]]})
    assert r.status_code == 422, r.text
    assert "swapped" in detail(r) and "[longitude, latitude]" in detail(r)
    # swapped beyond the latitude range: a 400 with the same hint
    r = report(client, A, {"type": "Point", "coordinates": [60.17, 124.94]})
    assert r.status_code == 400 and "latitude" in detail(r)


def test_long_lines_and_far_reports_are_422_and_limits_are_configurable(
    data_dir: Path, tmp_path: Path
) -> None:
    line = {"type": "LineString", "coordinates": [ON_GRID, [ON_GRID[0] + 0.2, ON_GRID[1]]]}
    far = {"type": "Point", "coordinates": [ON_GRID[0] + 1.0, ON_GRID[1]]}  # ~55 km east
    with make_client(data_dir, tmp_path / "a.sqlite") as c:
        r = report(c, A, line)
        assert r.status_code == 422 and "long, more than the 5.0 km" in detail(r)
        r = report(c, A, far)
        assert r.status_code == 422 and "outside the area of the served units" in detail(r)
        assert "swapped" not in detail(r)
        zone = {"site_code": "WZ-1", "geometry": line, "start": "2024-01-01T00:00:00Z"}
        assert c.post("/workzones", json=zone, headers=A).status_code == 201  # 20 km allowed
    with make_client(
        data_dir, tmp_path / "b.sqlite", hazard_max_length_m=50_000, units_margin_m=100_000
    ) as c:
        assert report(c, A, line).status_code == 201
        assert report(c, A, far).status_code == 201


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fx=st.floats(0, 1),
    fy=st.floats(0, 1),
    side_m=st.floats(1, 3000),
)
def test_square_reports_are_refused_exactly_when_larger_than_the_limit(
    fx: float, fy: float, side_m: float
) -> None:
    """A square of side ``side_m`` m anywhere over the units: accepted below 1 km², refused
    (ImplausibleGeometry) above, within 1 % of the limit either way."""
    lon = GRID[0] + fx * (GRID[2] - GRID[0])
    lat = GRID[1] + fy * (GRID[3] - GRID[1])
    dlat = side_m / 111_195.0
    dlon = side_m / (111_195.0 * math.cos(math.radians(lat)))
    ring = [[lon, lat], [lon + dlon, lat], [lon + dlon, lat + dlat], [lon, lat + dlat], [lon, lat]]
    geom = parse_geometry({"type": "Polygon", "coordinates": [ring]})
    area = side_m * side_m
    limits = GeometryLimits()
    if area < 0.99e6:
        check_plausible(geom, "hazard", limits, GRID)
    elif area > 1.01e6:
        with pytest.raises(ImplausibleGeometry, match="more than the 1.00 km²"):
            check_plausible(geom, "hazard", limits, GRID)


@settings(max_examples=60, deadline=None)
@given(fx=st.floats(0, 1), fy=st.floats(0, 1))
def test_any_point_of_the_units_swapped_gets_the_hint(fx: float, fy: float) -> None:
    lon = GRID[0] + fx * (GRID[2] - GRID[0])
    lat = GRID[1] + fy * (GRID[3] - GRID[1])
    check_plausible(
        parse_geometry({"type": "Point", "coordinates": [lon, lat]}),
        "hazard",
        GeometryLimits(),
        GRID,
    )
    with pytest.raises(ImplausibleGeometry, match="look swapped"):
        check_plausible(
            parse_geometry({"type": "Point", "coordinates": [lat, lon]}),
            "hazard",
            GeometryLimits(),
            GRID,
        )


# ------------------------------------------------------------------------------ auth


def test_300_bad_tokens_get_429_after_the_limit(data_dir: Path, tmp_path: Path) -> None:
    with make_client(data_dir, tmp_path / "l.sqlite", auth_failures=20) as c:
        _, good = new_token(c, "engineer", "crew")
        codes = []
        for i in range(300):
            r = c.get("/tokens/me", headers={"Authorization": f"Bearer wrong-{i}"})
            codes.append(r.status_code)
        assert codes[:20] == [401] * 20
        assert set(codes[20:]) == {429}
        r = c.get("/tokens/me", headers={"Authorization": "Bearer wrong-again"})
        assert r.status_code == 429
        retry = int(r.headers["retry-after"])
        assert 1 <= retry <= 60 and "failed token attempts" in detail(r)
        # while blocked, a good token from the same address waits too; anonymous reads do not
        assert c.get("/tokens/me", headers=good).status_code == 429
        assert c.get("/hazards").status_code == 200
    # another app (another address's counters) is not affected; the throttle is per address
    with make_client(data_dir, tmp_path / "l.sqlite", auth_failures=20) as c:
        assert c.get("/tokens/me", headers=good).status_code == 200


def test_a_short_admin_token_is_refused(data_dir: Path) -> None:
    with pytest.raises(PydanticError, match="at least 32"):
        LedgerServerSettings(admin_token="a")
    with pytest.raises(PydanticError, match="at least 32"):
        LedgerServerSettings(admin_token="x" * 31)
    assert LedgerServerSettings(admin_token="x" * 32).admin_token == "x" * 32


def test_anonymous_history_and_reports_show_no_token_ids_or_labels(
    data_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "h.sqlite"
    with make_client(data_dir, db) as c:
        rep_id, rep = new_token(c, "reporter", "Alice Reporter")
        eng_id, eng = new_token(c, "engineer", "Bob Engineer")
        r = report(c, rep, {"type": "Point", "coordinates": ON_GRID})
        hid, etag = r.json()["id"], r.headers["etag"]
        t = c.post(
            f"/hazards/{hid}/transitions",
            json={"to": "registered", "grade": "general"},
            headers={**eng, "If-Match": etag},
        )
        assert t.status_code == 200
        secrets = (rep_id, eng_id, "Alice", "Bob", "env-admin")
        staff = c.get(f"/hazards/{hid}/history", headers=eng).json()["events"]
        assert "Alice Reporter" in staff[0]["actor"] and eng_id in staff[1]["actor"]
        for headers in ({}, rep):  # anonymous, and a reporter token
            for path in (f"/hazards/{hid}/history", f"/hazards/{hid}/reports"):
                body = c.get(path, headers=headers).text
                assert not any(s in body for s in secrets), (path, body)
        public = c.get(f"/hazards/{hid}/history").json()["events"]
        assert [(e["actor"], e["role"]) for e in public] == [
            (None, "reporter"),
            (None, "engineer"),
        ]
    names = json.dumps({eng_id: "Roads office"})
    with make_client(data_dir, db, public_actors="names", public_names=json.loads(names)) as c:
        public = c.get(f"/hazards/{hid}/history").json()["events"]
        assert [(e["actor"], e["role"]) for e in public] == [
            (None, "reporter"),
            ("Roads office", "engineer"),
        ]
    with make_client(data_dir, db, public_actors="none") as c:
        public = c.get(f"/hazards/{hid}/history").json()["events"]
        assert [(e["actor"], e["role"]) for e in public] == [(None, None), (None, None)]


# ------------------------------------------------------------------------------ files, gzip


def test_the_ledger_files_are_owner_only(client: TestClient, tmp_path: Path) -> None:
    assert report(client, A, {"type": "Point", "coordinates": ON_GRID}).status_code == 201
    files = sorted(tmp_path.glob("ledger.sqlite*"))
    assert [f.name for f in files][:1] == ["ledger.sqlite"]
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, (f.name, oct(f.stat().st_mode))


@pytest.mark.parametrize("fmt", ["geojson", "csv"])
def test_units_are_gzipped_when_the_client_accepts_it(client: TestClient, fmt: str) -> None:
    r = client.get(f"/units?format={fmt}", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in r.headers["vary"].lower()
    raw = client.get(f"/units?format={fmt}", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers
    assert r.content == raw.content  # the same document once decoded
    assert len(gzip.compress(raw.content)) < len(raw.content)
    assert int(r.headers["content-length"]) < len(raw.content)


def test_healthz_and_readyz(client: TestClient) -> None:
    health = client.get("/healthz").json()
    assert health["workers"] == {"configured": 1, "running": 1}
    assert health["data_version"]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["data_version"] == health["data_version"]


def test_readyz_is_503_without_units(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with make_client(empty, tmp_path / "e.sqlite") as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and "units" in r.json()["detail"]
        assert c.get("/healthz").status_code == 200
