"""The hazard ledger library on both backends: lifecycle, roles, versions, duplicates, reopening,
escalation, append-only history, tokens, schema, filters, work zones, KPIs."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trafficunit.errors import ValidationError
from trafficunit.ledger import (
    STATES,
    TRANSITIONS,
    AuthenticationError,
    ConflictError,
    Hazard,
    IllegalTransition,
    Ledger,
    NotFoundError,
    PermissionDenied,
    StaleVersion,
    hazard_kpis,
    load_catalogue,
    qr_png,
)
from trafficunit.ledger._db import connect
from trafficunit.ledger.store import hash_token
from trafficunit.settings import LedgerSettings

from ._ledger_db import (  # noqa: F401  (fixtures)
    drop_pg_database,
    fresh_pg_database,
    ledger_url,
    pg_session_db,
    pg_template,
)

LON0, LAT0 = 24.930, 60.160
M_LAT = 1 / 111_320.0
M_LON = 1 / (111_320.0 * math.cos(math.radians(LAT0)))
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def pt(dx_m: float, dy_m: float) -> dict[str, object]:
    """A GeoJSON point dx_m east and dy_m north of the origin."""
    return {"type": "Point", "coordinates": [LON0 + dx_m * M_LON, LAT0 + dy_m * M_LAT]}


def small_units() -> gpd.GeoDataFrame:
    """Two 200 m segments meeting at an intersection, along the x axis from the origin."""
    x1, x2 = LON0 + 200 * M_LON, LON0 + 400 * M_LON
    return gpd.GeoDataFrame(
        {
            "kind": ["segment", "segment", "intersection"],
            "length_m": [200.0, 200.0, 0.0],
            "radius_m": [np.nan, np.nan, 20.0],
            "name": ["Main St", "Main St", "Main St"],
            "road_class": ["residential"] * 3,
            "road_chief": ["Wang", "Li", "Wang"],
        },
        geometry=[
            shapely.LineString([(LON0, LAT0), (x1, LAT0)]),
            shapely.LineString([(x1, LAT0), (x2, LAT0)]),
            shapely.Point(x1, LAT0),
        ],
        index=pd.Index(["S1", "S2", "I1"], name="unit_id"),
        crs=4326,
    )


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:  # noqa: F811
    led = Ledger.open(ledger_url, units=small_units())
    yield led
    led.close()


def walk(
    led: Ledger, hid: str, path: list[str], *, now: datetime = T0, role: str = "admin"
) -> Hazard:
    """Move ``hid`` along ``path`` with the fields each step needs; the last hazard."""
    h = led.get(hid)
    for to in path:
        kw: dict[str, Any] = {}
        if to == "registered" and h.state == "reported" and h.grade is None:
            kw["grade"] = "general"
        if to == "assigned":
            kw["responsible"] = "District roads office"
        if TRANSITIONS.get((h.state, to)) in ("fail_acceptance", "reopen"):
            kw["comment"] = "because"
        h = led.transition(
            hid, to, actor="tester", role=role, expected_version=h.version, now=now, **kw
        )
    return h


# ------------------------------------------------------------------------------ lifecycle


def test_full_lifecycle_records_every_transition(ledger: Ledger) -> None:
    r = ledger.report(
        pt(50, 5), category="facility.signal", actor="citizen", description="lights out", now=T0
    )
    assert r.created and not r.linked
    h = r.hazard
    assert (h.id, h.state, h.version, h.unit_ids) == ("H1", "reported", 1, ("S1",))
    steps = [
        ("registered", "engineer", {"grade": "一般", "category": "facility.lighting"}),
        ("assigned", "engineer", {"responsible": "Roads office", "road_chief": "Wang"}),
        ("rectifying", "engineer", {"comment": "crew sent"}),
        ("accepted", "supervisor", {"comment": "inspected"}),
        ("closed", "supervisor", {}),
    ]
    for i, (to, role, kw) in enumerate(steps):
        h = ledger.transition(
            "H1",
            to,
            actor=f"{role}-1",
            role=role,
            expected_version=h.version,
            now=T0 + timedelta(days=i + 1),
            **kw,  # type: ignore[arg-type]
        )
        assert (h.state, h.version) == (to, i + 2)
    assert h.grade == "general" and h.category == "facility.lighting"
    assert h.responsible == "Roads office" and h.road_chief == "Wang"
    assert h.deadline == T0 + timedelta(days=2 + 7)  # assigned on day 2, general: 7 days
    assert h.closed_at == T0 + timedelta(days=5) and not h.overdue(T0 + timedelta(days=30))
    hist = ledger.history("H1")
    assert [e["version"] for e in hist] == [1, 2, 3, 4, 5, 6]
    assert [e["to"] for e in hist] == ["reported", *[s[0] for s in steps]]
    assert [e["from"] for e in hist] == [
        None,
        "reported",
        "registered",
        "assigned",
        "rectifying",
        "accepted",
    ]
    assert [e["actor"] for e in hist][:3] == ["citizen", "engineer-1", "engineer-1"]
    assert hist[3]["comment"] == "crew sent" and hist[4]["role"] == "supervisor"
    assert hist[1]["details"] == {"category_was": "facility.signal"}
    assert hist[0]["at"] == "2024-03-01T09:00:00Z"
    assert ledger.check_consistency() == []


def test_deadline_by_grade_and_major_hazards_listed(ledger: Ledger) -> None:
    rules = ledger.settings.deadline_days
    for k, grade in enumerate(["general", "major"]):
        r = ledger.report(pt(20 + 100 * k, 0), category="road.sharp_curve", grade=grade, now=T0)
        h2 = walk(ledger, r.hazard.id, ["registered", "assigned"], role="engineer")
        assert h2.deadline == T0 + timedelta(days=rules[grade])
        assert h2.supervision == ("listed" if grade == "major" else None)
    h = ledger.report(pt(0, 150), category="road.sharp_curve", grade="general", now=T0).hazard
    h = walk(ledger, h.id, ["registered"])
    due = T0 + timedelta(days=3)
    h = ledger.transition(
        h.id,
        "assigned",
        actor="e",
        role="engineer",
        expected_version=h.version,
        responsible="x",
        deadline=due,
        now=T0,
    )
    assert h.deadline == due
    h = ledger.report(pt(0, 300), category="road.sharp_curve", grade="general", now=T0).hazard
    h = walk(ledger, h.id, ["registered"])
    with pytest.raises(ValueError, match="not in the future"):
        ledger.transition(
            h.id,
            "assigned",
            actor="e",
            role="engineer",
            expected_version=h.version,
            responsible="x",
            deadline=T0 - timedelta(days=1),
            now=T0,
        )
    with pytest.raises(ValueError, match="responsible body"):
        ledger.transition(h.id, "assigned", actor="e", role="engineer", expected_version=h.version)
    h0 = ledger.report(pt(0, 450), category="road.sharp_curve", now=T0).hazard
    with pytest.raises(ValueError, match="needs its grade"):
        ledger.transition(h0.id, "registered", actor="e", role="engineer", expected_version=1)
    assert ledger.get(h0.id).version == 1


def test_failed_acceptance_returns_to_rectifying(ledger: Ledger) -> None:
    h = ledger.report(pt(50, 0), category="facility.markings", now=T0).hazard
    h = walk(ledger, h.id, ["registered", "assigned", "rectifying"])
    with pytest.raises(ValueError, match="needs a comment"):
        ledger.transition(
            h.id, "rectifying", actor="s", role="supervisor", expected_version=h.version
        )
    h = ledger.transition(
        h.id,
        "rectifying",
        actor="s",
        role="supervisor",
        expected_version=h.version,
        comment="paint too thin",
    )
    assert h.state == "rectifying"
    h = walk(ledger, h.id, ["accepted"])
    assert h.accepted_at is not None
    h = ledger.transition(
        h.id,
        "rectifying",
        actor="s",
        role="supervisor",
        expected_version=h.version,
        comment="peeled off again",
    )
    assert h.state == "rectifying" and h.accepted_at is None
    actions = [e["action"] for e in ledger.history(h.id)]
    assert actions.count("fail_acceptance") == 2
    assert [e["comment"] for e in ledger.history(h.id) if e["action"] == "fail_acceptance"] == [
        "paint too thin",
        "peeled off again",
    ]


def test_illegal_transitions_change_nothing(ledger: Ledger) -> None:
    paths = {
        "reported": [],
        "registered": ["registered"],
        "assigned": ["registered", "assigned"],
        "rectifying": ["registered", "assigned", "rectifying"],
        "accepted": ["registered", "assigned", "rectifying", "accepted"],
        "closed": ["registered", "assigned", "rectifying", "accepted", "closed"],
    }
    for k, state in enumerate(STATES):
        first = ledger.report(pt(50 * k, 0), category="road.surface_damage", now=T0)
        h = walk(ledger, first.hazard.id, paths[state])
        assert h.state == state
        before = ledger.history(h.id)
        for to in STATES:
            if (state, to) in TRANSITIONS:
                continue
            with pytest.raises(IllegalTransition, match=f"cannot go to '{to}'"):
                ledger.transition(
                    h.id, to, actor="a", role="admin", expected_version=h.version, comment="x"
                )
        with pytest.raises(ValueError, match="unknown state"):
            ledger.transition(h.id, "fixed", actor="a", role="admin", expected_version=h.version)
        assert ledger.get(h.id) == h and ledger.history(h.id) == before


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("reporter", set()),
        ("engineer", {"registered", "assigned", "rectifying"}),
        ("supervisor", {"registered", "assigned", "rectifying", "accepted", "closed", "reopen"}),
        ("admin", {"registered", "assigned", "rectifying", "accepted", "closed", "reopen"}),
    ],
)
def test_roles_may_do_only_their_transitions(ledger: Ledger, role: str, allowed: set[str]) -> None:
    hid = ledger.report(pt(50, 0), category="road.surface_damage", now=T0).hazard.id
    path = ["registered", "assigned", "rectifying", "accepted", "closed", "registered"]
    done = set()
    for i, to in enumerate(path):
        h = ledger.get(hid)
        name = "reopen" if i == 5 else to
        kw: dict[str, object] = {"comment": "c"}
        if to == "registered" and i == 0:
            kw["grade"] = "major"
        if to == "assigned":
            kw["responsible"] = "body"
        try:
            ledger.transition(hid, to, actor=role, role=role, expected_version=h.version, **kw)  # type: ignore[arg-type]
            done.add(name)
        except PermissionDenied as exc:
            assert f"role {role!r} may not" in str(exc)
            walk(ledger, hid, [to])  # an admin does the step so the next one can be tried
    assert done == allowed
    with pytest.raises(PermissionDenied):
        ledger.report(pt(0, 0), category="road.surface_damage", role="nobody")


def test_stale_version_changes_nothing(ledger: Ledger) -> None:
    h = ledger.report(pt(50, 0), category="road.surface_damage", now=T0).hazard
    h2 = walk(ledger, h.id, ["registered"])
    with pytest.raises(StaleVersion, match="is at version 2, not 1") as info:
        ledger.transition(
            h.id, "assigned", actor="e", role="engineer", expected_version=1, responsible="x"
        )
    assert info.value.current_version == 2
    assert ledger.get(h.id) == h2 and len(ledger.history(h.id)) == 2
    with pytest.raises(NotFoundError):
        ledger.transition("H999", "registered", actor="e", role="engineer", expected_version=1)
    with pytest.raises(NotFoundError, match="look like H123"):
        ledger.get("x'; DROP TABLE hazards; --")
    for odd in ("H¹", "H١٢", "", "H-1", "H" + "9" * 19):  # unicode digits found by fuzzing
        with pytest.raises(NotFoundError):
            ledger.get(odd)


# ------------------------------------------------------------------------------ duplicates


def test_duplicates_link_to_the_nearest_open_hazard_of_the_same_category(ledger: Ledger) -> None:
    a = ledger.report(pt(50, 0), category="organisation.speeding", now=T0)
    b = ledger.report(pt(50, 20), category="organisation.speeding", now=T0 + timedelta(days=1))
    assert b.linked and not b.created and b.hazard.id == a.hazard.id
    assert b.hazard.report_count == 2 and b.distance_m == pytest.approx(20, abs=0.2)
    # another category, too far, outside the window: new hazards
    c = ledger.report(pt(50, 0), category="organisation.illegal_parking", now=T0)
    d = ledger.report(pt(50, 45), category="organisation.speeding", now=T0)
    e = ledger.report(
        pt(50, 0),
        category="organisation.speeding",
        reported_at=T0 + timedelta(days=40),
        now=T0 + timedelta(days=40),
    )
    assert c.created and d.created and e.created
    # nearest wins: a report between H1 (50,0) and H4 (50,45), closer to H4
    f = ledger.report(pt(50, 30), category="organisation.speeding", now=T0 + timedelta(days=2))
    assert f.linked and f.hazard.id == d.hazard.id
    # a rectified (accepted) hazard takes no more reports
    walk(ledger, a.hazard.id, ["registered", "assigned", "rectifying", "accepted"])
    g = ledger.report(pt(52, 2), category="organisation.speeding", now=T0 + timedelta(days=3))
    assert g.created or g.hazard.id == e.hazard.id  # e (40 days later) is within its window
    reports = ledger.reports(a.hazard.id)
    assert [r["distance_m"] for r in reports] == [0.0, pytest.approx(20, abs=0.2)]
    assert ledger.history(a.hazard.id)[1]["action"] == "report_linked"
    assert ledger.check_consistency() == []


def test_duplicate_distance_and_window_are_settings(ledger_url: str) -> None:  # noqa: F811
    rules = LedgerSettings(duplicate_distance_m=100.0, duplicate_window_days=1.0)
    with Ledger.open(ledger_url, settings=rules) as led:
        a = led.report(pt(0, 0), category="road.sight_distance", now=T0)
        assert led.report(pt(0, 90), category="road.sight_distance", now=T0).linked
        late = led.report(pt(0, 10), category="road.sight_distance", now=T0 + timedelta(days=2))
        assert late.created and a.hazard.id != late.hazard.id


# ------------------------------------------------------------------------------ sweeps


def test_serious_crash_after_closure_reopens(ledger: Ledger) -> None:
    h = ledger.report(pt(50, 0), category="facility.barrier", now=T0).hazard
    walk(ledger, h.id, ["registered", "assigned", "rectifying", "accepted", "closed"], now=T0)
    other = ledger.report(pt(300, 0), category="facility.barrier", now=T0).hazard
    walk(ledger, other.id, ["registered", "assigned", "rectifying", "accepted", "closed"], now=T0)
    acc = pd.DataFrame(
        {
            "event_id": ["before", "minor", "late", "K1", "A-other"],
            "unit_id": ["S1", "S1", "S1", "S1", "S2"],
            "severity": ["K", "B", "A", "K", "A"],
            "time": pd.to_datetime(
                [
                    T0 - timedelta(days=1),
                    T0 + timedelta(days=5),
                    T0 + timedelta(days=400),
                    T0 + timedelta(days=30),
                    T0 + timedelta(days=366),
                ]
            ),
        }
    )
    now = T0 + timedelta(days=500)
    assert ledger.reopen_for_crashes(acc, now=now) == [h.id]
    r = ledger.get(h.id)
    assert (r.state, r.reopen_count, r.closed_at, r.deadline) == ("registered", 1, None, None)
    last = ledger.history(h.id)[-1]
    assert (last["action"], last["actor"], last["details"]) == (
        "reopen",
        "system",
        {"crash": "K1", "unit_id": "S1"},
    )
    assert "K crash K1 on unit S1" in last["comment"]
    assert ledger.get(other.id).state == "closed"  # its crash came after 365 days
    assert ledger.reopen_for_crashes(acc, now=now) == []  # not closed any more


def test_overdue_hazards_are_flagged_and_escalated_once(ledger: Ledger) -> None:
    h = ledger.report(pt(50, 0), category="facility.signs", grade="general", now=T0).hazard
    h = walk(ledger, h.id, ["registered", "assigned"], now=T0)
    assert not h.overdue(T0 + timedelta(days=6)) and h.overdue(T0 + timedelta(days=8))
    assert ledger.escalate_overdue(now=T0 + timedelta(days=6)) == []
    later = T0 + timedelta(days=8)
    assert ledger.escalate_overdue(now=later) == [h.id]
    assert ledger.escalate_overdue(now=later) == []
    g = ledger.get(h.id)
    assert (g.supervision, g.listed_at, g.version) == ("listed", later, h.version + 1)
    assert ledger.history(h.id)[-1]["action"] == "escalate"
    assert ledger.list_hazards(overdue=True, now=later)[0] == 1
    assert ledger.list_hazards(overdue=False, now=later)[0] == 0
    assert ledger.list_hazards(supervision="listed")[0] == 1


# ------------------------------------------------------------------------------ storage


def test_history_is_append_only(ledger: Ledger) -> None:
    h = ledger.report(pt(50, 0), category="facility.signs", now=T0).hazard
    walk(ledger, h.id, ["registered"])
    for sql in (
        "UPDATE hazard_events SET comment = 'rewritten'",
        "DELETE FROM hazard_events",
    ):
        with pytest.raises(Exception, match="append-only"), ledger.db.transaction(write=True) as tx:
            tx.execute(sql)
    assert len(ledger.history(h.id)) == 2 and ledger.history(h.id)[0]["comment"] is None


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_schema_is_created_once_and_versioned(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":  # a brand-new database, not the session's migrated one
        name, ledger_url = fresh_pg_database(request.getfixturevalue("pg_template"))
        request.addfinalizer(lambda: drop_pg_database(name))
    else:
        ledger_url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    Ledger.open(ledger_url).close()
    with Ledger.open(ledger_url) as led:  # reopening migrates nothing
        with led.db.transaction() as tx:
            rows = tx.all("SELECT version FROM schema_version")
        assert [r["version"] for r in rows] == [
            1,
            2,
        ]  # v2: accidents and level history (the live loop)
        led.report(pt(0, 0), category="road.surface_damage", now=T0)
        with led.db.transaction(write=True) as tx:
            tx.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, 'x')")
    with pytest.raises(Exception, match="schema version 99, newer"):
        Ledger.open(ledger_url)
    db = connect(ledger_url)
    with db.transaction(write=True) as tx:
        tx.execute("DELETE FROM schema_version WHERE version = 99")
        assert tx.scalar("SELECT COUNT(*) AS n FROM hazards") == 1
    db.close()


def test_sqlite_is_wal(tmp_path) -> None:
    with Ledger.open(f"sqlite:///{tmp_path / 'l.sqlite'}") as led, led.db.transaction() as tx:
        assert tx.scalar("PRAGMA journal_mode") == "wal"
    with pytest.raises(ValueError, match="unsupported ledger database URL"):
        Ledger.open("mysql://x/y")


def test_tokens_are_stored_hashed_with_roles(ledger: Ledger) -> None:
    tid, token = ledger.create_token("engineer", label="alice", created_by="admin")
    p = ledger.authenticate(token)
    assert (p.token_id, p.role, p.label, p.name) == (tid, "engineer", "alice", f"alice ({tid})")
    with ledger.db.transaction() as tx:
        stored = tx.all("SELECT * FROM tokens")
    text = json.dumps(stored, default=str)
    assert token not in text and hash_token(token) in text
    with pytest.raises(AuthenticationError, match="unknown token"):
        ledger.authenticate(token + "x")
    with pytest.raises(ValueError, match="unknown role"):
        ledger.create_token("root")
    ledger.revoke_token(tid)
    with pytest.raises(AuthenticationError, match="revoked"):
        ledger.authenticate(token)
    with pytest.raises(NotFoundError):
        ledger.revoke_token("Tnope")
    assert [t["revoked_at"] is not None for t in ledger.list_tokens()] == [True]


# ------------------------------------------------------------------------------ queries


def test_list_filters(ledger: Ledger) -> None:
    a = ledger.report(pt(50, 0), category="facility.signs", grade="major", now=T0).hazard
    b = ledger.report(pt(300, 0), category="facility.lighting", now=T0).hazard
    line = {
        "type": "LineString",
        "coordinates": [pt(20, 3)["coordinates"], pt(380, 3)["coordinates"]],
    }
    c = ledger.report(line, category="facility.markings", now=T0).hazard
    assert set(c.unit_ids) == {"S1", "S2", "I1"} or set(c.unit_ids) == {"S1", "S2"}
    walk(ledger, a.id, ["registered", "assigned"])
    ids = lambda res: [h.id for h in res[1]]  # noqa: E731
    assert ids(ledger.list_hazards()) == [a.id, b.id, c.id]
    west = (LON0 - 0.001, LAT0 - 0.001, LON0 + 100 * M_LON, LAT0 + 0.001)
    assert ids(ledger.list_hazards(bbox=west)) == [a.id, c.id]
    assert ids(ledger.list_hazards(unit_id="S2")) == [b.id, c.id]
    assert ids(ledger.list_hazards(states=["assigned"])) == [a.id]
    assert ids(ledger.list_hazards(grades=["重大"])) == [a.id]
    assert ids(ledger.list_hazards(categories=["facility.lighting"])) == [b.id]
    area = shapely.Point(LON0 + 300 * M_LON, LAT0).buffer(20 * M_LON)
    assert ids(ledger.list_hazards(within=area)) == [b.id, c.id]
    assert ids(ledger.list_hazards(within=area, bbox=west)) == []
    total, page = ledger.list_hazards(limit=1, offset=1)
    assert total == 3 and [h.id for h in page] == [b.id]
    total, page = ledger.list_hazards(bbox=west, limit=1, offset=1)
    assert total == 2 and [h.id for h in page] == [c.id]
    with pytest.raises(ValueError, match="unknown state"):
        ledger.list_hazards(states=["open"])
    frame = ledger.frame(now=T0)
    assert list(frame["event_id"]) == [a.id, b.id, c.id] and frame.crs.to_epsg() == 4326
    assert frame.loc[0, "deadline"] == pd.Timestamp(a.reported_at) + pd.Timedelta(days=90)


BAD_GEOMETRIES = [
    ({"type": "Point", "coordinates": [200, 60]}, "outside longitude"),
    ({"type": "Point", "coordinates": [24.9]}, "malformed|coordinates"),
    ({"type": "Point"}, "no 'coordinates'"),
    ({"type": "GeometryCollection", "geometries": []}, "not supported"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}, "not valid"),
    ({"type": "LineString", "coordinates": [[1, 1], [1, 1]]}, "no length"),
    ({"type": "Point", "coordinates": [float("nan"), 1]}, "finite|malformed"),
    ("not json", "not valid JSON"),
    ([1, 2], "GeoJSON object"),
]


def test_bad_input_is_refused_and_nothing_stored(ledger: Ledger) -> None:
    for geom, message in BAD_GEOMETRIES:
        with pytest.raises(ValueError, match=message):
            ledger.report(geom, category="road.surface_damage")
    with pytest.raises(ValueError, match="unknown hazard category 'road.pothole'"):
        ledger.report(pt(0, 0), category="road.pothole")
    with pytest.raises(ValueError, match="in the future"):
        ledger.report(
            pt(0, 0), category="road.surface_damage", reported_at=T0, now=T0 - timedelta(hours=1)
        )
    with pytest.raises(ValueError, match="more than 4000"):
        ledger.report(pt(0, 0), category="road.surface_damage", description="x" * 4001)
    assert ledger.counts()["hazards"] == 0 and ledger.counts()["reports"] == 0


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    x=st.floats(allow_nan=True, allow_infinity=True, width=64),
    y=st.floats(allow_nan=True, allow_infinity=True, width=64),
)
def test_any_point_is_stored_or_refused_cleanly(tmp_path_factory, x: float, y: float) -> None:
    path = tmp_path_factory.getbasetemp() / "hypo.sqlite"
    with Ledger.open(f"sqlite:///{path}", settings=LedgerSettings(duplicate_distance_m=0)) as led:
        before = led.counts()["hazards"]
        ok = math.isfinite(x) and math.isfinite(y) and abs(x) <= 180 and abs(y) <= 90
        try:
            h = led.report({"type": "Point", "coordinates": [x, y]}, category="environment.other")
        except ValueError:
            assert not ok
            assert led.counts()["hazards"] == before
        else:
            assert ok and h.hazard.geometry.equals(shapely.Point(x, y))


def test_catalogue_default_and_custom(tmp_path) -> None:
    cat = load_catalogue()
    assert cat.classes == ("road", "facility", "organisation", "environment")
    assert len(cat.items) == 25 and cat.resolve("信号灯故障或配时不当") == "facility.signal"
    custom = tmp_path / "cat.json"
    custom.write_text(
        json.dumps(
            {
                "version": "city-2",
                "classes": [{"code": "a", "items": [{"code": "a.one"}, {"code": "a.two"}]}],
            }
        )
    )
    with Ledger.open(
        f"sqlite:///{tmp_path / 'l.sqlite'}", settings=LedgerSettings(catalogue=str(custom))
    ) as led:
        assert led.report(pt(0, 0), category="A.TWO").hazard.category == "a.two"
        with pytest.raises(ValueError, match="unknown hazard category 'road.surface_damage'"):
            led.report(pt(0, 0), category="road.surface_damage")
    (tmp_path / "bad.json").write_text(
        '{"classes": [{"code": "a", "items": [{"code": "x"}, {"code": "x"}]}]}'
    )
    with pytest.raises(ValueError, match="appears twice"):
        load_catalogue(str(tmp_path / "bad.json"))


def test_imports_keep_their_state_and_replay(ledger: Ledger) -> None:
    r = ledger.report(
        pt(0, 0),
        category="facility.signs",
        source="import",
        external_id="B-1",
        initial_state="rectifying",
        role="admin",
        now=T0,
    )
    assert r.created and r.hazard.state == "rectifying"
    assert ledger.history(r.hazard.id)[0]["action"] == "import"
    again = ledger.report(
        pt(9, 9),
        category="facility.signs",
        source="import",
        external_id="B-1",
        initial_state="rectifying",
        role="admin",
    )
    assert again.replayed and again.hazard == r.hazard and ledger.counts()["hazards"] == 1
    with pytest.raises(ValueError, match="only imports"):
        ledger.report(pt(0, 0), category="facility.signs", initial_state="closed")


# ------------------------------------------------------------------------------ units


def test_new_hazards_go_to_the_units_of_the_join(tmp_path, sample_units: gpd.GeoDataFrame) -> None:
    import trafficunit as tu

    with Ledger.open(f"sqlite:///{tmp_path / 'l.sqlite'}", units=sample_units) as led:
        segs = sample_units[sample_units["kind"] == "segment"].iloc[::97]
        mids = shapely.line_interpolate_point(np.asarray(segs.geometry.array), 0.5, normalized=True)
        expected = tu.assign(
            sample_units,
            gpd.GeoDataFrame(
                {"event_id": range(len(mids)), "kind": "hazard"}, geometry=mids, crs=4326
            ),
        )
        got = [
            led.report(
                json.loads(shapely.to_geojson(g)),
                category="environment.other",
                link_duplicates=False,
            ).hazard.unit_ids
            for g in mids
        ]
        assert [ids[0] for ids in got] == list(expected["unit_id"])
        street = segs.geometry.iloc[0]
        line = led.report(json.loads(shapely.to_geojson(street)), category="facility.markings")
        assert segs.index[0] in line.hazard.unit_ids and len(line.hazard.unit_ids) >= 1


def _batch_of_reports(units: gpd.GeoDataFrame, n: int, seed: int) -> list[dict[str, Any]]:
    """Reports near random units: points off a segment's middle, some repeated nearby (to
    link), imports with states and external ids (one id twice), a street as a line."""
    rng = np.random.default_rng(seed)
    segs = units[units["kind"] == "segment"]
    pick = segs.geometry.iloc[rng.integers(0, len(segs), n)]
    at = shapely.line_interpolate_point(
        np.asarray(pick.array), rng.uniform(0, 1, n), normalized=True
    )
    off = rng.normal(0, 0.00005, (n, 2))
    out: list[dict[str, Any]] = []
    for i, (p, (dx, dy)) in enumerate(zip(at, off, strict=True)):
        geom = {"type": "Point", "coordinates": [p.x + dx, p.y + dy]}
        kw: dict[str, Any] = {
            "geometry": geom,
            "category": ["facility.signs", "environment.other"][i % 2],
        }
        kw["reported_at"] = T0 + timedelta(minutes=i)
        if i % 5 == 0:  # an import, in the state the source system had
            kw |= {"source": "import", "role": "admin", "external_id": f"X-{i // 10}"}
            kw["initial_state"] = ["reported", "rectifying", "closed"][i % 3]
        if i % 7 == 3 and out:  # the same hazard reported again a few metres away
            kw["geometry"] = pt(0, 0) | {
                "coordinates": [c + 1e-5 for c in out[-1]["geometry"]["coordinates"]]
            }
            kw["category"] = out[-1]["category"]
        out.append(kw)
    out.append(
        {
            "geometry": json.loads(shapely.to_geojson(segs.geometry.iloc[0])),
            "category": "facility.markings",
        }
    )
    return out


def _stored(led: Ledger, results: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (
            r.created,
            r.linked,
            r.replayed,
            r.hazard.id,
            r.hazard.state,
            r.hazard.category,
            r.hazard.unit_ids,
            r.hazard.report_count,
            [e["action"] for e in led.history(r.hazard.id)],
        )
        for r in results
    ]


def test_a_batch_of_reports_is_what_one_report_at_a_time_records(
    tmp_path: Path, sample_units: gpd.GeoDataFrame
) -> None:
    reports = _batch_of_reports(sample_units.to_crs(4326), 120, seed=7)
    with Ledger.open(f"sqlite:///{tmp_path / 'one.sqlite'}", units=sample_units) as one:
        each = _stored(one, [one.report(**kw, now=T0 + timedelta(days=1)) for kw in reports])
        counts = one.counts()
    with Ledger.open(f"sqlite:///{tmp_path / 'many.sqlite'}", units=sample_units) as many:
        batch = many.report_many([kw | {"now": T0 + timedelta(days=1)} for kw in reports])
        assert batch.errors == {} and None not in batch.results
        assert _stored(many, batch.results) == each  # type: ignore[arg-type]
        assert many.counts() == counts
        assert batch.created == sum(e[0] for e in each)
        assert any(e[1] for e in each) and any(e[2] for e in each)  # links and replays happened
        # the whole batch again: every import is replayed, nothing new for them
        again = many.report_many([kw for kw in reports if "external_id" in kw])
        assert all(r is not None and r.replayed for r in again.results) and again.created == 0


def test_a_batch_with_a_bad_report_records_nothing_or_skips_it(ledger: Ledger) -> None:
    good = {"geometry": pt(50, 2), "category": "facility.signs"}
    bad = {"geometry": {"type": "Point", "coordinates": [500.0, 0.0]}, "category": "facility.signs"}
    with pytest.raises(ValidationError, match="report 1"):
        ledger.report_many([good, bad, good])
    assert ledger.counts()["hazards"] == 0
    batch = ledger.report_many([good, bad, {**good, "link_duplicates": False}], skip_invalid=True)
    assert batch.results[1] is None and list(batch.errors) == [1]
    assert batch.created == 2 and ledger.counts()["hazards"] == 2
    assert batch.results[0] is not None and batch.results[0].hazard.unit_ids == ("S1",)


# ------------------------------------------------------------------------------ work zones


def test_workzones_registry(ledger: Ledger) -> None:
    line = {
        "type": "LineString",
        "coordinates": [pt(20, 2)["coordinates"], pt(150, 2)["coordinates"]],
    }
    z = ledger.register_workzone(
        "KT-2018-001",
        line,
        start="2018-06-01",
        end="2018-06-30",
        actor="e",
        role="engineer",
        lanes_taken=1,
        night_works=True,
    )
    assert z.unit_ids == ("S1",) and z.night_works is True
    ledger.register_workzone(
        "KT-2018-002", pt(300, 0), start="2018-06-20", actor="e", role="engineer"
    )
    with pytest.raises(ConflictError, match="registered already"):
        ledger.register_workzone(
            "KT-2018-001", pt(0, 0), start="2018-01-01", actor="e", role="engineer"
        )
    with pytest.raises(PermissionDenied):
        ledger.register_workzone("KT-X", pt(0, 0), start="2018-01-01", actor="r", role="reporter")
    with pytest.raises(ValueError, match="before start"):
        ledger.register_workzone(
            "KT-Y", pt(0, 0), start="2018-02-01", end="2018-01-01", actor="e", role="engineer"
        )

    def codes(t: str) -> list[str]:
        return [w.site_code for w in ledger.list_workzones(active_at=t)[1]]

    assert codes("2018-05-31") == []
    assert codes("2018-06-10") == ["KT-2018-001"]
    assert codes("2018-06-25") == ["KT-2018-001", "KT-2018-002"]
    assert codes("2019-01-01") == ["KT-2018-002"]  # open-ended
    assert ledger.get_workzone("KT-2018-001").active(datetime(2018, 6, 30, tzinfo=UTC))
    with pytest.raises(NotFoundError):
        ledger.get_workzone("nope")


def test_qr_code_encodes_the_site_page_url() -> None:
    import qrcode
    from PIL import Image

    url = "https://traffic.example.org/workzones/KT-2018-001/page"
    img = Image.open(io.BytesIO(qr_png(url, box_size=4, border=4))).convert("L")
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=1, border=0)
    qr.add_data(url)
    qr.make(fit=True)
    want = np.array(qr.get_matrix(), dtype=bool)
    n = want.shape[0]
    assert img.size == ((n + 8) * 4, (n + 8) * 4)
    px = np.asarray(img)
    centres = (np.arange(n) + 4) * 4 + 2
    got = px[np.ix_(centres, centres)] < 128  # dark modules
    assert (got == want).all()


# ------------------------------------------------------------------------------ KPIs


def test_kpis_by_jurisdiction_and_road_chief(ledger: Ledger) -> None:
    # west zone holds S1 (chief Wang), east zone S2 (chief Li)
    x1 = LON0 + 200 * M_LON
    zones = gpd.GeoDataFrame(
        {"name": ["West", "East"]},
        geometry=[
            shapely.box(LON0 - 0.01, LAT0 - 0.01, x1, LAT0 + 0.01),
            shapely.box(x1, LAT0 - 0.01, x1 + 0.01, LAT0 + 0.01),
        ],
        crs=4326,
    )
    # West: h1 closed on time (5 days after report, deadline 7), h2 overdue, h3 only reported
    h1 = ledger.report(pt(50, 0), category="facility.signs", grade="general", now=T0).hazard
    walk(ledger, h1.id, ["registered", "assigned", "rectifying"], now=T0)
    walk(ledger, h1.id, ["accepted", "closed"], now=T0 + timedelta(days=5))
    h2 = ledger.report(pt(100, 0), category="facility.lighting", grade="general", now=T0).hazard
    walk(ledger, h2.id, ["registered", "assigned"], now=T0)
    ledger.report(pt(150, 0), category="facility.markings", now=T0)
    # East: h4 accepted late (deadline 7 days, accepted after 20)
    h4 = ledger.report(pt(300, 0), category="facility.signs", grade="general", now=T0).hazard
    walk(ledger, h4.id, ["registered", "assigned", "rectifying"], now=T0)
    walk(ledger, h4.id, ["accepted"], now=T0 + timedelta(days=20))
    acc = gpd.GeoDataFrame(
        {"unit_id": ["S1", None, "S2"]},
        geometry=[
            shapely.Point(LON0 + 0.0001, LAT0),
            shapely.Point(LON0 + 0.0002, LAT0 + 0.002),
            shapely.Point(x1 + 0.0005, LAT0),
        ],
        crs=4326,
    )
    now = T0 + timedelta(days=30)
    k = hazard_kpis(ledger.frame(now=now), zones=zones, units=small_units(), accidents=acc, now=now)
    w, e = k.loc["West"], k.loc["East"]
    assert (w["hazards"], w["due"], w["rectified"], w["overdue"]) == (3, 2, 1, 1)
    assert w["rectification_rate"] == 0.5 and w["on_time_rate"] == 1.0
    assert w["median_days_to_close"] == pytest.approx(5.0)
    assert w["km"] == pytest.approx(0.2) and w["hazards_per_km"] == pytest.approx(15.0)
    assert (w["accidents"], w["accidents_linked"]) == (2, 1) and w["accidents_linked_share"] == 0.5
    assert (e["hazards"], e["rectified"], e["on_time_rate"]) == (1, 1, 0.0)
    assert k["median_days_to_close"].isna().to_dict() == {"West": False, "East": True}
    assert e["accidents_linked_share"] == 1.0
    by_chief = hazard_kpis(ledger.frame(now=now), by="road_chief", units=small_units(), now=now)
    assert by_chief.loc["Wang", "hazards"] == 3 and by_chief.loc["Li", "hazards"] == 1
    assert by_chief.loc["Wang", "km"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="need the zones"):
        hazard_kpis(ledger.frame(), by="jurisdiction")
