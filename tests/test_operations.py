"""The closed loop as the traffic police run it, on the Helsinki sample with GENERATED zones:
investigations opened by injury accidents, accident↔hazard links, KPIs that roll up the
jurisdiction tree, supervision levels, road chiefs and routing, the fatal-accident review."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

import trafficunit as tu
from trafficunit.ledger import IllegalTransition, Ledger, PermissionDenied
from trafficunit.ledger import investigations as inv
from trafficunit.ledger import roadchiefs as rc
from trafficunit.ledger import supervision as sup
from trafficunit.ledger.errors import ValidationError
from trafficunit.ledger.kpis import COUNTS, RATES, KpiSettings, zone_kpis
from trafficunit.zones import Zones, assign_units, generate_zones

from ._ledger_db import drop_pg_database, fresh_pg_database, pg_template  # noqa: F401

NOW = datetime(2019, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def world(sample_units: gpd.GeoDataFrame) -> dict[str, Any]:
    acc = tu.assign(sample_units, tu.sample.generate(sample_units, seed=11)["accidents"])
    zones = generate_zones(sample_units)
    return {
        "units": sample_units,
        "accidents": acc,
        "zones": zones,
        "unit_zones": assign_units(sample_units, zones),
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def led(request: pytest.FixtureRequest, tmp_path: Path, world: dict[str, Any]) -> Iterator[Ledger]:
    if request.param == "sqlite":
        url, name = f"sqlite:///{tmp_path / 'ops.sqlite'}", None
    else:
        name, url = fresh_pg_database(request.getfixturevalue("pg_template"))
    ledger = Ledger.open(url, units=world["units"])
    try:
        yield ledger
    finally:
        ledger.close()
        if name is not None:
            drop_pg_database(name)


def kpis(led: Ledger, world: dict[str, Any], **kw: Any) -> pd.DataFrame:
    return zone_kpis(
        world["zones"],
        kw.pop("tree", "admin"),
        units=world["units"],
        unit_zones=world["unit_zones"],
        accidents=world["accidents"],
        hazards=led.frame(now=NOW),
        investigations=inv.investigation_frame(led),
        links=inv.links_frame(led),
        now=NOW,
        **kw,
    )


def injury(world: dict[str, Any]) -> pd.DataFrame:
    a = world["accidents"]
    return a[a["severity"].isin(["K", "A", "B"]) & a["unit_id"].notna()]


def report_at(led: Ledger, accident: pd.Series, **kw: Any) -> str:
    r = led.report(
        accident.geometry,
        category=kw.pop("category", "facility.signal"),
        actor="eng",
        role="engineer",
        link_duplicates=False,
        now=NOW - timedelta(days=kw.pop("days_ago", 40)),
        **kw,
    )
    return r.hazard.id


def move(led: Ledger, hid: str, *states: str, at: datetime, **kw: Any) -> None:
    for s in states:
        extra = {}
        if s == "registered":
            extra["grade"] = kw.get("grade", "general")
        if s == "assigned":
            extra["responsible"] = "roads office"
        led.transition(
            hid, s, actor="sup", role="supervisor", expected_version=None, now=at, **extra
        )


# ----------------------------------------------------------------------------- investigations


def test_injury_accidents_open_investigations_by_the_rule(led: Ledger, world: dict) -> None:
    acc = world["accidents"]
    opened = inv.open_investigations(led, acc, now=NOW)
    want = set(acc.loc[acc["severity"].isin(["K", "A", "B"]), "event_id"])
    assert set(opened) == want and len(want) > 0
    assert inv.open_investigations(led, acc, now=NOW) == []  # once per accident
    total, items = inv.list_investigations(led, states=["open"], limit=5)
    assert total == len(want) and all(i["state"] == "open" for i in items)
    o = acc[acc["severity"] == "O"]["event_id"].iloc[0]
    with pytest.raises(Exception, match="no investigation"):
        inv.get_investigation(led, o)


def test_a_configurable_rule_and_a_start_time(tmp_path: Path, world: dict) -> None:
    acc = world["accidents"]
    since = pd.Timestamp("2018-01-01", tz="UTC")
    with Ledger.open(f"sqlite:///{tmp_path / 'k.sqlite'}") as led:
        rule = inv.InvestigationRule(severities=frozenset({"K"}), since=since.to_pydatetime())
        opened = inv.open_investigations(led, acc, rule=rule, now=NOW)
    t = pd.to_datetime(acc["time"], utc=True)
    want = acc[(acc["severity"] == "K") & (t >= since)]["event_id"]
    assert set(opened) == set(want)


def test_investigation_links_hazards_and_moves_the_rates(led: Ledger, world: dict) -> None:
    inv.open_investigations(led, world["accidents"], now=NOW)
    inj = injury(world)
    district = world["unit_zones"]["zone_admin_district"]
    inj = inj[inj["unit_id"].map(district) == "GEN-D1"]
    a1, a2 = inj.iloc[0], inj.iloc[1]
    before = kpis(led, world).loc["GEN-D1"]
    assert before["investigated"] == 0 and np.isnan(before["discovery_rate"])

    hid = report_at(led, a1)
    out = inv.investigate(led, a1["event_id"], hazards=[hid], actor="eng", role="engineer", now=NOW)
    assert (out["state"], out["outcome"], out["hazards"]) == ("investigated", "found", [hid])
    assert [a["accident_id"] for a in inv.hazard_accidents(led, hid)] == [a1["event_id"]]
    k1 = kpis(led, world).loc["GEN-D1"]
    assert (k1["investigated"], k1["investigations_found"], k1["accidents_linked"]) == (1, 1, 1)
    assert k1["investigation_rate"] == pytest.approx(1 / k1["injury_accidents"])
    assert k1["discovery_rate"] == 1.0
    assert k1["accident_linkage_rate"] == pytest.approx(1 / k1["injury_accidents"])

    inv.investigate(led, a2["event_id"], actor="eng", role="engineer", now=NOW)
    k2 = kpis(led, world).loc["GEN-D1"]
    assert (k2["investigated"], k2["investigations_found"]) == (2, 1)
    assert k2["investigation_rate"] == pytest.approx(2 / k2["injury_accidents"])
    assert k2["discovery_rate"] == 0.5  # one of the two investigations found a hazard
    assert inv.get_investigation(led, a2["event_id"])["outcome"] == "none"

    # a hazard found later is linked to the investigated accident; its outcome becomes found
    h2 = report_at(led, a2, category="facility.lighting")
    assert inv.link_hazard(led, a2["event_id"], h2, actor="eng", role="engineer")["outcome"] == (
        "found"
    )
    assert kpis(led, world).loc["GEN-D1", "discovery_rate"] == 1.0

    with pytest.raises(IllegalTransition):
        inv.investigate(led, a1["event_id"], actor="eng", role="engineer")
    with pytest.raises(PermissionDenied):
        inv.investigate(led, inj.iloc[2]["event_id"], actor="r", role="reporter")
    with pytest.raises(PermissionDenied):
        inv.close_investigation(led, a1["event_id"], actor="eng", role="engineer")
    closed = inv.close_investigation(led, a1["event_id"], actor="sup", role="supervisor")
    assert closed["state"] == "closed"
    assert [e["action"] for e in closed["history"]] == ["open", "investigate", "close"]
    assert kpis(led, world).loc["GEN-D1", "investigated"] == 2  # closed still counts


# ----------------------------------------------------------------------------- KPIs


def busy_ledger(led: Ledger, world: dict) -> None:
    """Investigations and hazards in every state, spread over the sample."""
    inv.open_investigations(led, world["accidents"], now=NOW)
    inj = injury(world)
    rng = np.random.default_rng(5)
    picks = inj.iloc[rng.choice(len(inj), size=40, replace=False)]
    for i, (_, a) in enumerate(picks.iterrows()):
        if i % 3 == 0:
            inv.investigate(led, a["event_id"], actor="eng", role="engineer", now=NOW)
            continue
        hid = report_at(led, a, days_ago=60 - i)
        if i % 3 == 1:
            inv.investigate(
                led, a["event_id"], hazards=[hid], actor="eng", role="engineer", now=NOW
            )
        t0 = NOW - timedelta(days=50 - i)
        grade = "major" if i % 4 == 0 else "general"
        if i % 5 == 0:
            move(led, hid, "registered", "assigned", "rectifying", "accepted", at=t0, grade=grade)
        elif i % 5 == 1:
            move(led, hid, "registered", "assigned", at=t0, grade=grade)
        elif i % 5 == 2:
            move(
                led,
                hid,
                "registered",
                "assigned",
                "rectifying",
                "accepted",
                "closed",
                at=t0,
                grade=grade,
            )


def test_children_sum_to_their_parent_at_every_level(led: Ledger, world: dict) -> None:
    busy_ledger(led, world)
    for tree in ("admin", "police"):
        k = kpis(led, world, tree=tree)
        assert k.loc[k["parent"].isna(), "injury_accidents"].sum() > 0
        parents = k["parent"].dropna().unique()
        assert len(parents) > 1
        for parent in parents:
            kids = k[k["parent"] == parent]
            for c in COUNTS:
                assert kids[c].sum() == k.loc[parent, c], (tree, parent, c)
            assert kids["km"].sum() == pytest.approx(k.loc[parent, "km"])
        # rates come from the summed counts
        root = k[k["parent"].isna()].iloc[0]
        for rate, (num, den) in RATES.items():
            if root[den]:
                assert root[rate] == pytest.approx(root[num] / root[den])
    k = kpis(led, world, level="street", parent="GEN-D2")
    assert set(k.index) == {f"GEN-D2-S{i}" for i in range(1, 5)}


def test_health_index_targets_and_period_change(led: Ledger, world: dict) -> None:
    busy_ledger(led, world)
    weights = {"investigation_rate": 2.0, "discovery_rate": 1.0, "rectification_rate": 1.0}
    targets = (
        {"kpi": "investigation_rate", "value": 0.5},
        {"kpi": "investigation_rate", "value": 0.9, "tree": "admin", "zone": "GEN-D1"},
        {"kpi": "discovery_rate", "value": 0.3, "level": "district"},
    )
    cfg = KpiSettings(weights=weights, targets=targets)
    k = kpis(led, world, settings=cfg)
    # the documented formula: 100 * sum(w * r) / sum(w) over the rates present
    for code, row in k.iterrows():
        rates = {r: row[r] for r in weights if np.isfinite(row[r])}
        if not rates:
            assert np.isnan(row["health_index"]), code
            continue
        want = 100 * sum(weights[r] * v for r, v in rates.items()) / sum(weights[r] for r in rates)
        assert row["health_index"] == pytest.approx(want), code
    d = k[k["level"] == "district"]
    expected_rank = d["health_index"].rank(ascending=False, method="min")
    assert (d["health_rank"].astype(float) == expected_rank).all()
    assert k.loc["GEN-D1", "investigation_rate_target"] == 0.9
    assert k.loc["GEN-D2", "investigation_rate_target"] == 0.5
    assert k.loc["GEN", "discovery_rate_target"] != k.loc["GEN", "discovery_rate_target"]  # none
    assert k.loc["GEN-D2", "discovery_rate_target"] == 0.3
    met = k.loc["GEN-D1", "investigation_rate_met"]
    assert bool(met) == (k.loc["GEN-D1", "investigation_rate"] >= 0.9)

    # period over period: the previous period of the same length
    year = kpis(led, world, period=("2018-01-01", "2019-01-01"))
    acc = world["accidents"]
    t = pd.to_datetime(acc["time"], utc=True)
    in_2017 = acc[
        (t >= pd.Timestamp("2017-01-01", tz="UTC")) & (t < pd.Timestamp("2018-01-01", tz="UTC"))
    ]
    in_2018 = acc[
        (t >= pd.Timestamp("2018-01-01", tz="UTC")) & (t < pd.Timestamp("2019-01-01", tz="UTC"))
    ]
    assert year.loc["GEN", "accidents"] == len(in_2018)
    assert year.loc["GEN", "accidents_prev"] == len(in_2017)
    assert year.loc["GEN", "accidents_change"] == len(in_2018) - len(in_2017)
    with pytest.raises(Exception, match="before its end"):
        kpis(led, world, period=("2019-01-01", "2018-01-01"))
    with pytest.raises(Exception, match="unknown health-index rate"):
        KpiSettings(weights={"nope": 1.0})


# ----------------------------------------------------------------------------- supervision


def test_major_hazard_overdue_past_n_days_escalates_district_to_city(
    led: Ledger, world: dict
) -> None:
    a = injury(world).iloc[0]
    hid = report_at(led, a)
    t0 = NOW - timedelta(days=30)
    move(led, hid, "registered", "assigned", at=t0, grade="major")
    cfg = sup.SupervisionSettings(levels=("district", "city"), escalate_after_days=20)
    h = led.get(hid)
    assert h.supervision == "listed"  # a major hazard is listed when assigned
    assert sup.level_of(led, hid, cfg) == "district"
    deadline = h.deadline
    assert deadline is not None
    assert sup.escalate_overdue(led, settings=cfg, now=deadline + timedelta(days=19)) == []
    assert sup.level_of(led, hid, cfg) == "district"
    out = sup.escalate_overdue(led, settings=cfg, now=deadline + timedelta(days=21))
    assert out == [
        {"id": hid, "level": "city", "from_level": "district", "version": led.get(hid).version}
    ]
    assert sup.level_of(led, hid, cfg) == "city"
    last = led.history(hid)[-1]
    assert last["action"] == "escalate" and last["details"]["level"] == "city"
    assert last["details"]["from_level"] == "district" and last["actor"] == "system"
    assert sup.escalate_overdue(led, settings=cfg, now=deadline + timedelta(days=90)) == []
    assert sup.levels_frame(led, cfg) == {hid: "city"}


def test_escalate_transition_names_the_level(led: Ledger, world: dict) -> None:
    a = injury(world).iloc[0]
    hid = report_at(led, a)
    cfg = sup.SupervisionSettings(levels=("district", "city", "province"))
    with pytest.raises(PermissionDenied):
        sup.escalate(led, hid, settings=cfg, actor="eng", role="engineer")
    out = sup.escalate(led, hid, settings=cfg, actor="sup", role="supervisor")
    assert (out["level"], out["from_level"]) == ("district", None)
    out = sup.escalate(
        led,
        hid,
        level="province",
        settings=cfg,
        actor="sup",
        role="supervisor",
        comment="needs the province",
    )
    assert (out["level"], out["from_level"]) == ("province", "district")
    with pytest.raises(IllegalTransition, match="top level"):
        sup.escalate(led, hid, settings=cfg, actor="sup", role="supervisor")
    with pytest.raises(IllegalTransition, match="goes up"):
        sup.escalate(led, hid, level="city", settings=cfg, actor="sup", role="supervisor")
    with pytest.raises(ValidationError):
        sup.escalate(led, hid, level="nation", settings=cfg, actor="sup", role="supervisor")
    assert led.history(hid)[-1]["comment"] == "needs the province"


# ----------------------------------------------------------------------------- road chiefs


def test_a_report_inside_a_grid_reaches_its_chief(led: Ledger, world: dict) -> None:
    units = world["units"]
    uz = world["unit_zones"]
    led.report_hooks.append(rc.router(led, lambda: (units, uz)))
    rc.appoint(
        led,
        name="Chief Two",
        scope="grid",
        targets=["GENG-2"],
        body="Grid 2 office",
        actor="eng",
        role="engineer",
        valid_from="2000-01-01T00:00:00Z",
    )
    rc.appoint(
        led,
        name="Retired",
        scope="grid",
        targets=["GENG-1"],
        actor="eng",
        role="engineer",
        valid_from="2000-01-01T00:00:00Z",
        valid_to="2001-01-01T00:00:00Z",
    )
    rc.set_rules(
        led,
        [
            {
                "tree": "grid",
                "zone": "GENG-2",
                "category": "facility",
                "responsible": "Traffic facilities, grid 2",
            }
        ],
        actor="eng",
        role="engineer",
    )
    acc = world["accidents"]
    acc = acc[acc["unit_id"].notna() & (acc["match"] == "matched")]
    grid = acc["unit_id"].map(uz["zone_grid_grid"])
    in2, in1 = acc[grid == "GENG-2"].iloc[0], acc[grid == "GENG-1"].iloc[0]
    h = led.get(report_at(led, in2))
    assert h.unit_ids and uz.loc[h.unit_ids[0], "zone_grid_grid"] == "GENG-2"
    assert (h.road_chief, h.responsible) == ("Chief Two", "Traffic facilities, grid 2")
    assert led.history(h.id)[0]["details"]["routed"]["road_chief_id"] == "RC1"
    # a category no rule names falls back to the chief's body
    h = led.get(report_at(led, in2, category="environment.other"))
    assert (h.road_chief, h.responsible) == ("Chief Two", "Grid 2 office")
    # grid 1's only chief has left: nobody is named, nothing is guessed
    h = led.get(report_at(led, in1))
    assert (h.road_chief, h.responsible) == (None, None)
    # a chief appointed to the unit itself comes before the grid's
    rc.appoint(
        led,
        name="Unit chief",
        scope="unit_ids",
        targets=[str(in2["unit_id"])],
        actor="eng",
        role="engineer",
        valid_from="2000-01-01T00:00:00Z",
    )
    assert led.get(report_at(led, in2, category="facility.lighting")).road_chief == "Unit chief"


def test_chiefs_by_road_name_ref_and_validity(world: dict) -> None:
    units = world["units"]
    name = units["name"].dropna().iloc[0]
    chiefs = [
        {
            "id": "RC1",
            "name": "by name",
            "body": None,
            "scope": "road_name",
            "targets": [name],
            "tree": None,
            "valid_from": "2000-01-01T00:00:00.000000Z",
            "valid_to": None,
        },
        {
            "id": "RC2",
            "name": "newer by name",
            "body": None,
            "scope": "road_name",
            "targets": [name],
            "tree": None,
            "valid_from": "2010-01-01T00:00:00.000000Z",
            "valid_to": "2020-01-01T00:00:00.000000Z",
        },
    ]
    got = rc.chiefs_for_units(chiefs, units, at=datetime(2015, 1, 1, tzinfo=UTC))
    on_road = units["name"].fillna("").str.split(";").map(lambda xs: name in xs)
    assert (got.loc[on_road, "road_chief"] == "newer by name").all()
    assert got.loc[~on_road, "road_chief"].isna().all()
    later = rc.chiefs_for_units(chiefs, units, at=datetime(2021, 1, 1, tzinfo=UTC))
    assert (later.loc[on_road, "road_chief"] == "by name").all()


# ----------------------------------------------------------------------------- 回头看


def test_fatal_accident_review_prefills_and_a_supervisor_confirms(led: Ledger, world: dict) -> None:
    acc = world["accidents"]
    inv.open_investigations(led, acc, now=NOW)
    fatal = acc[(acc["severity"] == "K") & acc["unit_id"].notna()]
    items = inv.reviews(led, acc)
    assert {r["accident_id"] for r in items} == set(acc.loc[acc["severity"] == "K", "event_id"])
    k = fatal.iloc[0]
    hid = report_at(led, k)
    inv.investigate(led, k["event_id"], hazards=[hid], actor="eng", role="engineer", now=NOW)
    r = next(i for i in inv.reviews(led, acc) if i["accident_id"] == k["event_id"])
    assert r["checks"]["investigation"]["prefill"] is True
    assert r["checks"]["rectification"]["prefill"] is False
    assert r["checks"]["deep_investigation"]["prefill"] is None and not r["confirmed"]
    move(led, hid, "registered", "assigned", "rectifying", "accepted", at=NOW)
    r = next(i for i in inv.reviews(led, acc) if i["accident_id"] == k["event_id"])
    assert r["checks"]["rectification"]["prefill"] is True
    checks = dict.fromkeys(inv.REVIEW_CHECKS, True)
    with pytest.raises(PermissionDenied):
        inv.confirm_review(led, k["event_id"], checks, actor="eng", role="engineer")
    with pytest.raises(ValidationError, match="missing"):
        inv.confirm_review(
            led, k["event_id"], {"investigation": True}, actor="s", role="supervisor"
        )
    out = inv.confirm_review(
        led, k["event_id"], checks, actor="s", role="supervisor", accidents=acc
    )
    assert out["confirmed"] and out["complete"] and out["confirmed_by"] == "s"
    out = inv.confirm_review(
        led,
        k["event_id"],
        {**checks, "accountability": False},
        actor="s",
        role="supervisor",
        accidents=acc,
    )
    assert out["confirmed"] and not out["complete"]
    with pytest.raises(Exception, match="no fatal accident"):
        inv.confirm_review(led, "nope", checks, actor="s", role="supervisor", accidents=acc)


def test_zones_generated_once_per_sample(world: dict) -> None:
    z: Zones = world["zones"]
    assert world["unit_zones"].notna().all().all() and len(z) == 67
