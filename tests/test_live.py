"""The live loop: ledger writes and posted accidents move unit levels at once (API, tiles,
legend, data version, level history); POST /accidents contract; batch and live agree."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import shapely
import shapely.ops
from fastapi.testclient import TestClient

import trafficunit as tu
from trafficunit import mvt
from trafficunit.io import write_table
from trafficunit.live import LiveRisk
from trafficunit.risk import SafetyPerformanceFunction

from ._ledger_db import ledger_url, pg_session_db, pg_template  # noqa: F401  (fixtures)
from ._serverdata import grid_events, grid_units
from .test_hazard_api import A, decode, make_client, token


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("livedata")
    units = grid_units()
    write_table(units, d / "units.parquet")
    write_table(grid_events(units)["accidents"], d / "accidents.parquet")
    return d


@pytest.fixture
def client(data_dir: Path, ledger_url: str) -> Iterator[TestClient]:  # noqa: F811
    with make_client(data_dir, ledger_url) as c:
        yield c


def _blue_segment() -> tuple[str, list[float]]:
    units = grid_units()
    seg = units[(units["kind"] == "segment") & (units["level"] == "blue")].iloc[3]
    mid = shapely.line_interpolate_point(seg.geometry, 0.5, normalized=True)
    return str(seg.name), [mid.x, mid.y + 0.00002]


def _tile_level(client: TestClient, unit_id: str, lon: float, lat: float) -> str:
    z, (x, y) = 16, mvt.lonlat_to_tile(lon, lat, 16)
    r = client.get(f"/tiles/live-units/{z}/{x}/{y}.mvt")
    assert r.status_code == 200, r.text
    feats = decode(r.content)["units"]
    found = [f["properties"]["level"] for f in feats if f["properties"]["unit_id"] == unit_id]
    assert found, f"{unit_id} not in the live units tile"
    return str(found[0])


def test_major_hazard_on_a_blue_unit_turns_it_orange_at_once(client: TestClient) -> None:
    unit_id, (lon, lat) = _blue_segment()
    eng = token(client, "engineer")
    before = client.get(f"/units/{unit_id}").json()
    assert before["properties"]["level"] == "blue"
    assert before["properties"]["open_hazards"] == 0
    assert _tile_level(client, unit_id, lon, lat) == "blue"
    legend_before = client.get("/legend").json()
    version = client.get("/healthz").json()["data_version"]
    r = client.post(
        "/hazards",
        json={
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "category": "facility.signal",
            "grade": "major",
        },
        headers=eng,
    )
    assert r.status_code == 201, r.text
    assert r.json()["unit_ids"] == [unit_id]
    # the next requests: detail, tile, legend, data version
    after = client.get(f"/units/{unit_id}").json()
    assert after["properties"]["level"] == "orange"
    assert after["properties"]["open_hazards"] == 1
    assert after["properties"]["open_major_hazards"] == 1
    assert _tile_level(client, unit_id, lon, lat) == "orange"
    assert client.get("/healthz").json()["data_version"] != version
    listed = client.get("/units", params={"level": "orange"}).json()
    assert unit_id in [f["id"] for f in listed["features"]]
    hist = after["level_history"]
    assert [(h["from"], h["to"]) for h in hist] == [("blue", "orange")]
    assert "hazard" in hist[0]["reason"]
    legend_after = client.get("/legend").json()
    assert legend_after != legend_before
    # closing it (via the lifecycle) brings the unit back to blue
    hid, etag = r.json()["id"], r.headers["etag"]
    sup = token(client, "supervisor")
    for to in ("registered", "assigned", "rectifying", "accepted"):
        body: dict[str, Any] = {"to": to}
        if to == "assigned":
            body["responsible"] = "road team"
        m = client.post(f"/hazards/{hid}/transitions", json=body, headers={**sup, "If-Match": etag})
        assert m.status_code == 200, m.text
        etag = m.headers["etag"]
    assert client.get(f"/units/{unit_id}").json()["properties"]["level"] == "blue"
    assert _tile_level(client, unit_id, lon, lat) == "blue"
    hist = client.get("/levels/history", params={"unit_id": unit_id}).json()["changes"]
    assert [(h["from"], h["to"]) for h in hist] == [("orange", "blue"), ("blue", "orange")]


def _feature(eid: str, lon: float, lat: float, **props: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {"event_id": eid, "time": "2018-06-01T08:30:00+03:00", **props},
    }


def test_post_accidents_contract(client: TestClient, data_dir: Path, ledger_url: str) -> None:  # noqa: F811
    unit_id, (lon, lat) = _blue_segment()
    ingest = token(client, "ingest")
    before = client.get(f"/units/{unit_id}").json()["properties"]
    # roles: a reporter may not post accidents, no token is 401
    fc = {"type": "FeatureCollection", "features": [_feature("N1", lon, lat, severity="K")]}
    assert client.post("/accidents", json=fc).status_code == 401
    assert client.post("/accidents", json=fc, headers=token(client, "reporter")).status_code == 403
    # a batch with good and bad items: the good ones stored, each bad one with a reason
    feats = [
        _feature("N1", lon, lat, severity="K"),
        _feature("N2", lon, lat, severity="死亡"),  # Chinese class: fatal
        _feature("N3", lon, lat, severity="严重"),  # unknown class
        {"type": "Feature", "geometry": None, "properties": {"event_id": "N4"}},
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {"event_id": "N5", "severity": "A"},
        },  # no time
        _feature("N6", lon + 1.0, lat, severity="B"),  # far off the network
        _feature("N7", lon, lat, severity="B", time="2018-06-01T08:30:00"),  # no offset
        _feature("N1", lon, lat, severity="K"),  # repeated in the batch
    ]
    r = client.post(
        "/accidents", json={"type": "FeatureCollection", "features": feats}, headers=ingest
    )
    assert r.status_code == 200, r.text
    out = r.json()
    status = {(it["index"], it["event_id"]): it["status"] for it in out["items"]}
    assert status[(0, "N1")] == "stored" and status[(1, "N2")] == "stored"
    assert status[(7, "N1")] == "duplicate"
    reasons = {
        it["event_id"]: it.get("reason", "") for it in out["items"] if it["status"] == "rejected"
    }
    assert set(reasons) == {"N3", "N4", "N5", "N6", "N7"}
    assert "severity" in reasons["N3"] and "Point" in reasons["N4"]
    assert "time" in reasons["N5"] and "unit" in reasons["N6"] and "offset" in reasons["N7"]
    assert (out["stored"], out["duplicates"], out["rejected"]) == (2, 1, 5)
    # counted at once: two fatal accidents, EPDO + 2 x 542, level history says why
    after = client.get(f"/units/{unit_id}").json()["properties"]
    assert after["crashes"] == before["crashes"] + 2
    assert after["epdo"] == pytest.approx(before["epdo"] + 2 * 542.0)
    # idempotent: the same post again stores nothing and changes nothing
    again = client.post(
        "/accidents", json={"type": "FeatureCollection", "features": feats[:2]}, headers=ingest
    ).json()
    assert (again["stored"], again["duplicates"]) == (0, 2)
    assert client.get(f"/units/{unit_id}").json()["properties"]["crashes"] == after["crashes"]
    # an accident already in the data folder's table is a duplicate too
    base = client.post(
        "/accidents", json=_feature("A0000", lon, lat, severity="K"), headers=ingest
    ).json()
    assert base["items"][0]["status"] == "duplicate"
    # all_or_nothing: one bad item refuses the batch, nothing stored
    mixed = {
        "type": "FeatureCollection",
        "features": [_feature("N8", lon, lat, severity="C"), feats[2]],
    }
    r = client.post("/accidents", params={"all_or_nothing": "true"}, json=mixed, headers=ingest)
    assert r.status_code == 422 and r.json()["stored"] == 0
    assert client.get(f"/units/{unit_id}").json()["properties"]["crashes"] == after["crashes"]
    # a malformed body is one 400
    assert client.post("/accidents", content=b"{", headers=ingest).status_code == 400
    assert client.post("/accidents", json={"type": "Point"}, headers=ingest).status_code == 400


def test_posted_accidents_survive_a_restart(data_dir: Path, ledger_url: str) -> None:  # noqa: F811
    unit_id, (lon, lat) = _blue_segment()
    with make_client(data_dir, ledger_url) as c:
        before = c.get(f"/units/{unit_id}").json()["properties"]["crashes"]
        feats = [_feature(f"R{i}", lon, lat, severity="O") for i in range(3)]
        r = c.post("/accidents", json={"type": "FeatureCollection", "features": feats}, headers=A)
        assert r.json()["stored"] == 3
    with make_client(data_dir, ledger_url) as c:
        assert c.get(f"/units/{unit_id}").json()["properties"]["crashes"] == before + 3


def test_a_batch_of_10000_is_one_request(client: TestClient) -> None:
    unit_id, (lon, lat) = _blue_segment()
    before = client.get(f"/units/{unit_id}").json()["properties"]["crashes"]
    feats = [_feature(f"B{i:05d}", lon, lat, severity="O") for i in range(10_000)]
    r = client.post("/accidents", json={"type": "FeatureCollection", "features": feats}, headers=A)
    assert r.status_code == 200 and r.json()["stored"] == 10_000
    assert client.get(f"/units/{unit_id}").json()["properties"]["crashes"] == before + 10_000
    too_many = {"type": "FeatureCollection", "features": feats + feats[:1]}
    assert client.post("/accidents", json=too_many, headers=A).status_code == 400


# ------------------------------------------------------------------- batch and live agree


def test_live_levels_agree_with_a_rebuild_from_the_same_inputs() -> None:
    warnings.simplefilter("ignore")
    units = tu.build_units(tu.read_network(tu.sample_network_path()))
    ev = tu.sample.generate(units, seed=11, n_accidents=2500, n_hazards=60)
    acc = tu.assign(units, ev["accidents"])
    hz = tu.assign(units, ev["hazards"])
    ids = acc["event_id"].drop_duplicates().sample(frac=1.0, random_state=3).to_numpy()
    first = acc[acc["event_id"].isin(ids[:1500])]
    later = acc[~acc["event_id"].isin(ids[:1500])]
    period = ("2016-01-01", "2019-12-31")
    built = tu.score(units, first, hazards=hz, period=period)
    live = LiveRisk(built, built.attrs["rule"])
    assert live.rescore
    t = pd.to_datetime(later["time"], utc=True).dt.as_unit("ns").astype("int64").to_numpy()
    # in three posts, as a server would receive them
    for part in np.array_split(np.arange(len(later)), 3):
        live.add_accidents(
            later["unit_id"].to_numpy()[part], later["severity"].to_numpy()[part], t[part]
        )
    # hazards closed since the build: the open ones only
    open_hz = hz[hz["event_id"].isin(hz["event_id"].drop_duplicates().iloc[::2])]
    live.set_hazards(open_hz)
    spf = {k: SafetyPerformanceFunction(**d) for k, d in built.attrs["spf"].items()}
    rebuilt = tu.score(units, pd.concat([first, later]), hazards=open_hz, period=period, spf=spf)
    assert (live.levels() == rebuilt["level"].to_numpy()).all()
    for col in ("crashes", "epdo", "eb_excess", "score_percentile", "open_hazards"):
        np.testing.assert_allclose(
            live.a[col].astype(float), rebuilt[col].to_numpy(dtype=float), equal_nan=True
        )
    # and the live state moved: some unit's level changed from the first build
    assert (live.levels() != built["level"].to_numpy()).any()


# ------------------------------------------------------------------------------ alerts


def test_alerts_fire_on_ingest_and_move_through_their_states(
    tmp_path: Path,
    ledger_url: str,  # noqa: F811
) -> None:
    import csv
    import io
    import json

    import geopandas as gpd

    from ._serverdata import DLON, LAT0, LON0

    d = tmp_path / "data"
    d.mkdir()
    units = grid_units()
    write_table(units, d / "units.parquet")
    zones = gpd.GeoDataFrame(
        {"name": ["West", "East"]},
        geometry=[
            shapely.box(LON0 - 0.01, LAT0 - 0.01, LON0 + 2.25 * DLON, LAT0 + 0.02),
            shapely.box(LON0 + 2.25 * DLON, LAT0 - 0.01, LON0 + 0.03, LAT0 + 0.02),
        ],
        crs=4326,
    )
    zones.to_file(d / "zones.geojson", driver="GeoJSON")
    rules = d / "rules.yaml"
    rules.write_text(
        "- id: two-in-a-day\n  scope: unit\n  window: 1d\n  threshold: {count: 2}\n"
        "- id: turned-red\n",
        encoding="utf-8",
    )
    unit_id, (lon, lat) = _blue_segment()
    with make_client(
        d, ledger_url, warning_rules=str(rules), jurisdictions=str(d / "zones.geojson")
    ) as c:
        eng, sup, rep = (token(c, r) for r in ("engineer", "supervisor", "reporter"))
        one = _feature("X1", lon, lat, severity="O", time="2020-03-01T08:00:00+02:00")
        two = _feature("X2", lon, lat, severity="O", time="2020-03-01T17:00:00+02:00")
        three = _feature("X3", lon, lat, severity="O", time="2020-03-05T17:00:00+02:00")
        assert c.post("/accidents", json=one, headers=eng).json()["stored"] == 1
        assert c.get("/alerts").json()["alerts"] == []
        assert c.post("/accidents", json=two, headers=eng).json()["stored"] == 1
        c.post("/accidents", json=three, headers=eng)  # 4 days later: no new alert
        alerts = c.get("/alerts", params={"rule": "two-in-a-day"}).json()["alerts"]
        assert len(alerts) == 1
        a = alerts[0]
        assert (a["scope_id"], a["evidence"], a["state"]) == (unit_id, ["X1", "X2"], "new")
        assert a["assignee"] == "West"  # the unit's jurisdiction
        assert a["time"] == "2020-03-01T15:00:00Z"
        # GeoJSON at the unit, CSV
        gj = c.get("/alerts", params={"format": "geojson"}).json()
        assert gj["features"][0]["geometry"]["type"] == "Point"
        rows = list(csv.DictReader(io.StringIO(c.get("/alerts?format=csv").text)))
        assert rows[0]["evidence"] == "X1;X2" and rows[0]["unit_ids"] == unit_id
        # states: roles and order
        aid = a["id"]

        def move(to: str, who: dict[str, str], **kw: Any) -> Any:
            return c.post(f"/alerts/{aid}/transitions", json={"to": to, **kw}, headers=who)

        assert move("acknowledged", rep).status_code == 403
        assert move("resolved", eng).status_code == 403  # closing is a supervisor's
        assert move("acknowledged", eng).status_code == 200
        assert move("acknowledged", eng).status_code == 409
        r = move("dispatched", eng, assignee="road team 3")
        assert r.status_code == 200 and r.json()["assignee"] == "road team 3"
        # one call opens a hazard investigation, linked both ways
        h = c.post(f"/alerts/{aid}/hazard", json={"grade": "general"}, headers=eng)
        assert h.status_code == 201, h.text
        hid = h.json()["hazard_id"]
        assert h.json()["hazard"]["unit_ids"] == [unit_id]
        reports = c.get(f"/hazards/{hid}/reports").json()
        assert json.dumps(reports).count(f"alert:{aid}") == 1
        assert c.post(f"/alerts/{aid}/hazard", json={}, headers=eng).status_code == 409
        assert move("resolved", sup).status_code == 200
        got = c.get(f"/alerts/{aid}").json()
        assert [(e["from_state"], e["to_state"]) for e in got["history"]] == [
            ("new", "acknowledged"),
            ("acknowledged", "dispatched"),
            ("dispatched", "resolved"),
        ]
        assert got["hazard_id"] == hid
        assert c.get("/alerts", params={"state": "new"}).json()["alerts"] == [
            x for x in c.get("/alerts").json()["alerts"] if x["state"] == "new"
        ]


def test_an_alert_goes_to_the_road_chief_appointed_for_its_unit(
    tmp_path: Path,
    ledger_url: str,  # noqa: F811
) -> None:
    d = tmp_path / "data"
    d.mkdir()
    write_table(grid_units(), d / "units.parquet")
    rules = d / "rules.yaml"
    rules.write_text(
        "- id: two-in-a-day\n  scope: unit\n  window: 1d\n  threshold: {count: 2}\n",
        encoding="utf-8",
    )
    unit_id, (lon, lat) = _blue_segment()
    with make_client(d, ledger_url, warning_rules=str(rules)) as c:
        eng, sup = (token(c, r) for r in ("engineer", "supervisor"))
        chief = {"name": "Li Wei (路长)", "scope": "unit_ids", "targets": [unit_id]}
        r = c.post("/road-chiefs", json=chief, headers=sup)
        assert r.status_code == 201, r.text
        for eid, hour in (("C1", "08"), ("C2", "17")):
            f = _feature(eid, lon, lat, severity="O", time=f"2020-03-01T{hour}:00:00+02:00")
            assert c.post("/accidents", json=f, headers=eng).json()["stored"] == 1
        alerts = c.get("/alerts", params={"rule": "two-in-a-day"}).json()["alerts"]
        assert [a["assignee"] for a in alerts] == ["Li Wei (路长)"]


def _zone_on(seg: Any, code: str, *, night: bool, start: Any, hours: float = 48) -> dict[str, Any]:
    """A work-zone body over the middle fifth of ``seg``."""
    piece = shapely.ops.substring(seg, 0.4, 0.6, normalized=True)
    return {
        "site_code": code,
        "geometry": json.loads(shapely.to_geojson(piece)),
        "start": start.isoformat(),
        "end": (start + pd.Timedelta(hours=hours)).isoformat(),
        "night_works": night,
    }


def test_night_work_zone_registered_on_a_red_unit_fires_once(
    data_dir: Path,
    ledger_url: str,  # noqa: F811
) -> None:
    units = grid_units()
    segs = units[units["kind"] == "segment"]
    red = segs[segs["level"] == "red"].iloc[0]
    yellow = segs[segs["level"] == "yellow"].iloc[0]
    now = pd.Timestamp.now(tz="UTC").floor("s")
    with make_client(data_dir, ledger_url) as c:
        eng = token(c, "engineer")

        def night_alerts() -> list[dict[str, Any]]:
            got = c.get("/alerts", params={"rule": "night-workzone-on-red"}).json()
            return list(got["alerts"])

        assert night_alerts() == []
        # registered through the API on a unit that is red already: an alert at once
        r = c.post(
            "/workzones",
            json=_zone_on(red.geometry, "NW-1", night=True, start=now - pd.Timedelta(hours=1)),
            headers=eng,
        )
        assert r.status_code == 201, r.text
        assert str(red.name) in r.json()["properties"]["unit_ids"]
        got = night_alerts()
        assert [(a["scope_id"], a["evidence"]) for a in got] == [(str(red.name), ["NW-1"])]
        # daytime works, or works that start tomorrow, on the same red unit: none
        for code, night, start in (
            ("DW-1", False, now),
            ("NW-2", True, now + pd.Timedelta(days=1)),
        ):
            body = _zone_on(red.geometry, code, night=night, start=start)
            assert c.post("/workzones", json=body, headers=eng).status_code == 201
        assert len(night_alerts()) == 1
        # a night site on a yellow unit: nothing until the unit turns red (here a major
        # hazard raises it by two), then one alert naming the site registered through the API
        body = _zone_on(yellow.geometry, "NW-3", night=True, start=now - pd.Timedelta(hours=1))
        assert c.post("/workzones", json=body, headers=eng).status_code == 201
        assert len(night_alerts()) == 1
        mid = shapely.line_interpolate_point(yellow.geometry, 0.5, normalized=True)
        hz = {
            "geometry": {"type": "Point", "coordinates": [mid.x, mid.y]},
            "category": "facility.signal",
            "grade": "major",
        }
        assert c.post("/hazards", json=hz, headers=eng).status_code == 201
        assert c.get(f"/units/{yellow.name}").json()["properties"]["level"] == "red"
        got = {(a["scope_id"], a["evidence"][-1]) for a in night_alerts()}
        assert got == {(str(red.name), "NW-1"), (str(yellow.name), "NW-3")}
        n = len(night_alerts())
    # a restart evaluates the same sites again: nothing twice
    with make_client(data_dir, ledger_url) as c:
        c.get("/healthz")
        assert len(c.get("/alerts", params={"rule": "night-workzone-on-red"}).json()["alerts"]) == n


def test_without_a_chief_an_alert_goes_to_the_units_deepest_admin_zone() -> None:
    import geopandas as gpd

    from trafficunit_server import alerts

    units = gpd.GeoDataFrame(
        {
            "unit_id": ["S1", "S2", "S3"],
            "zone_admin_city": ["SZ", "SZ", "SZ"],
            "zone_admin_district": ["FT", "NS", None],
        },
        geometry=[shapely.Point(0, 0)] * 3,
        crs=4326,
    )
    # S3 has no district: its city
    assert alerts.assignees(None, units) == {"S1": "FT", "S2": "NS", "S3": "SZ"}
