"""Warning rules: validation, window semantics against a brute-force count, incremental ==
batch, and the Helsinki FTA replay through POST /accidents and `trafficunit warn` (same
alerts), plus the alert lifecycle and the hazard an alert opens."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import trafficunit as tu
from trafficunit.cli import app as cli_app
from trafficunit.errors import ValidationError
from trafficunit.io import write_table
from trafficunit.warnings import Engine, evaluate, load_rules

FTA = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "crashes"
    / "helsinki-fta-2011-2016.csv"
)
if not FTA.exists():
    FTA = Path("/work/shared/data/crashes/helsinki-fta-2011-2016.csv")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"scope": "unit"}, "has no id"),
        ({"id": "x", "scope": "city", "window": "1d", "threshold": {"count": 1}}, "scope must"),
        ({"id": "x", "window": "soon", "threshold": {"count": 1}}, "not a duration"),
        ({"id": "x", "window": "1d", "threshold": {"crashes": 1}}, "threshold must be"),
        ({"id": "x", "window": "1d", "threshold": {"count": -1}}, "positive number"),
        (
            {"id": "x", "window": "1d", "threshold": {"count": 1}, "where": {"colour": "red"}},
            "unknown filter",
        ),
        (
            {"id": "x", "window": "1d", "threshold": {"count": 1}, "where": {"severity": "Z"}},
            "KABCO",
        ),
        (
            {"id": "x", "window": "1d", "threshold": {"count": 1}, "where": {"hour": [25, 3]}},
            "hour must",
        ),
        ({"id": "x", "threshold": {"count": 1}}, "no window"),
    ],
)
def test_bad_rules_are_refused_with_the_reason(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        load_rules([rule])


def test_default_rules_and_yaml_files(tmp_path: Path) -> None:
    ids = [r.id for r in load_rules()]
    assert ids == ["cluster-rear-end", "turned-red", "night-workzone-on-red", "hazard-overdue"]
    p = tmp_path / "rules.yaml"
    p.write_text("- id: a\n  scope: zone\n  grid_m: 500\n  window: 2w\n  threshold: {epdo: 50}\n")
    (r,) = load_rules(p)
    assert (r.scope, r.window_s, r.metric, r.threshold, r.grid_m) == (
        "zone",
        14 * 86400,
        "epdo",
        50.0,
        500.0,
    )
    p.write_text("- id: a\n  window: [\n")
    with pytest.raises(ValidationError, match="not valid YAML"):
        load_rules(p)
    dup = [{"id": "a", "window": "1d", "threshold": {"count": 1}}] * 2
    with pytest.raises(ValidationError, match="unique"):
        load_rules(dup)


def _brute(events: pd.DataFrame, window_s: int, thr: float) -> list[tuple[str, str]]:
    """One event at a time: the count in (t - w, t] per unit, firing on an upward crossing."""
    secs = pd.to_datetime(events["time"], utc=True).dt.as_unit("s").astype("int64")
    ev = events.assign(ts=secs).sort_values(["ts", "event_id"], kind="stable")
    seen: dict[str, list[int]] = {}
    out = []
    for row in ev.itertuples():
        ts = seen.setdefault(row.unit_id, [])
        ts.append(row.ts)
        n = sum(1 for t in ts if t > row.ts - window_s)
        if n >= thr and n - 1 < thr:
            out.append((row.unit_id, row.event_id))
    return out


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["U1", "U2", "U3"]), st.integers(0, 20 * 86400)),
        min_size=1,
        max_size=60,
    ),
    st.integers(1, 4),
    st.integers(1, 7),
    st.integers(1, 5),
)
def test_window_counts_match_a_brute_force_count_and_chunking_does_not_matter(
    items: list[tuple[str, int]], thr: int, days: int, chunks: int
) -> None:
    t0 = pd.Timestamp("2020-01-01", tz="UTC")
    events = pd.DataFrame(
        {
            "event_id": [f"e{i:03d}" for i in range(len(items))],
            "unit_id": [u for u, _ in items],
            "severity": "O",
            "time": [t0 + pd.Timedelta(seconds=s) for _, s in items],
        }
    )
    rules = [{"id": "r", "window": f"{days}d", "threshold": {"count": thr}}]
    whole = evaluate(rules, events)
    assert [(a["scope_id"], a["evidence"][-1]) for a in whole] == _brute(events, days * 86400, thr)
    # the same events in time order, fed in several calls (as several POSTs)
    ordered = events.assign(_k=events["time"]).sort_values(["_k", "event_id"]).drop(columns="_k")
    engine = Engine(rules)
    fed: list[dict[str, Any]] = []
    for part in np.array_split(np.arange(len(ordered)), chunks):
        fed += engine.feed(ordered.iloc[part])
    assert [a["id"] for a in fed] == [a["id"] for a in whole]


# ------------------------------------------------------- corridor: chained units, length_m


def _corridor_events(spec: list[tuple[str, str, int]]) -> pd.DataFrame:
    t0 = pd.Timestamp("2021-03-01T12:00:00Z")
    return pd.DataFrame(
        {
            "event_id": [e for e, _, _ in spec],
            "unit_id": [u for _, u, _ in spec],
            "severity": "O",
            "time": [t0 + pd.Timedelta(days=d) for _, _, d in spec],
        }
    )


def test_corridor_rule_slides_length_m_along_the_chained_road() -> None:
    """Main St is S1 [0-300 m], IA (300), S2 [300-600], S3 [600-1000] (tests/_risk_net.py);
    a unit sits at its middle: S1 150, IA 300, S2 450, S3 800."""
    from ._risk_net import network

    units = network()
    stretch = {"id": "stretch", "scope": "corridor", "length_m": 400, "window": "30d"}
    stretch["threshold"] = {"count": 3}
    whole = {"id": "road", "scope": "corridor", "window": "30d", "threshold": {"count": 3}}
    events = _corridor_events(
        [("a", "S1", 0), ("b", "S3", 1), ("c", "S2", 2), ("d", "IA", 3), ("e", "S2", 4)]
    )
    got = evaluate([stretch, whole], events, units)
    # the whole road reaches 3 with c; a 400 m stretch only with d (a, d, c within 150-550 m:
    # b at 800 m is too far), and e adds to a stretch already at 3: no second alert
    fired = [(a["rule"], a["evidence"], a["unit_ids"]) for a in got]
    assert fired == [
        ("stretch", ["a", "c", "d"], ["IA", "S1", "S2"]),
        ("road", ["a", "b", "c"], ["S2", "S1", "S3"]),
    ]
    st_alert = got[0]
    assert st_alert["scope_id"] == "Main St#0:150-550m"  # road#chain:stretch from its first
    # the intersection's accident counts on Side Rd too (alone there: no alert)
    assert not any(a["scope_id"].startswith("Side Rd") for a in got)
    # the same accidents one at a time (as POSTs): the same alerts
    engine = Engine([stretch, whole], units)
    fed = [a for i in range(len(events)) for a in engine.feed(events.iloc[[i]])]
    assert sorted(a["id"] for a in fed) == sorted(a["id"] for a in got)
    # rules are validated: length_m only on a corridor, positive; corridors need units
    with pytest.raises(ValidationError, match="length_m needs scope: corridor"):
        load_rules([{**stretch, "scope": "unit"}])
    with pytest.raises(ValidationError, match="positive number of metres"):
        load_rules([{**stretch, "length_m": -5}])
    with pytest.raises(ValidationError, match="chain into roads"):
        Engine([stretch], None)


def _brute_stretch(
    units: Any, events: pd.DataFrame, window_s: int, length: float, thr: int
) -> list[tuple[str, str]]:
    """(chain road, trigger) by brute force: every 1 m stretch start, every earlier event."""
    ch = tu.blackspots.road_chains(units)
    where = {
        (r, u): (a + b) / 2
        for r, u, a, b in zip(ch["road"], ch["unit_id"], ch["start_m"], ch["end_m"], strict=True)
    }
    ev = events.assign(_t=events["time"]).sort_values(["_t", "event_id"]).reset_index(drop=True)
    out = []
    for i, e in ev.iterrows():
        for road in sorted({r for r, u in where if u == e["unit_id"]}):
            seen = ev.iloc[: i + 1]
            seen = seen[seen["_t"] > e["_t"] - pd.Timedelta(seconds=window_s)]
            pos = np.array([where.get((road, u), np.nan) for u in seen["unit_id"]])
            pos = pos[~np.isnan(pos)]
            p = where[(road, e["unit_id"])]
            best = max(
                int(((pos >= a) & (pos <= a + length)).sum())
                for a in np.arange(p - length, p + 1, 1.0)
            )
            if best >= thr and best - 1 < thr:
                out.append((road, str(e["event_id"])))
    return out


@settings(max_examples=25, deadline=None)
@given(
    items=st.lists(
        st.tuples(st.sampled_from(["S1", "S2", "S3", "S4", "S5", "IA"]), st.integers(0, 40)),
        min_size=1,
        max_size=14,
    ),
    length=st.sampled_from([100, 250, 400, 700]),
    days=st.integers(1, 20),
    thr=st.integers(2, 4),
)
def test_corridor_stretches_match_a_brute_force_count(
    items: list[tuple[str, int]], length: int, days: int, thr: int
) -> None:
    from ._risk_net import network

    units = network()
    events = _corridor_events([(f"e{k:02d}", u, d) for k, (u, d) in enumerate(items)])
    rule = {"id": "s", "scope": "corridor", "length_m": length, "window": f"{days}d"}
    rule["threshold"] = {"count": thr}
    got = evaluate([rule], events, units)
    mine = sorted((a["scope_id"].split("#")[0], a["evidence"][-1]) for a in got)
    trig = sorted((a["scope_id"].split("#")[0], a["unit_ids"][0]) for a in got)
    brute = _brute_stretch(units, events, days * 86400, float(length), thr)
    by_id = dict(zip(events["event_id"], events["unit_id"], strict=True))
    assert trig == sorted((r, by_id[e]) for r, e in brute)
    # the trigger is the newest of its evidence (events in time order, ties by id)
    assert mine == sorted(brute)


# --------------------------------------------------------------- Helsinki FTA replay (real)

REPLAY_RULES = [
    {
        "id": "rear-end-pair",
        "scope": "unit",
        "window": "180d",
        "where": {"collision_type": "rear_end"},
        "threshold": {"count": 2},
    },
    {
        "id": "injury-zone",
        "scope": "zone",
        "grid_m": 1000,
        "window": "180d",
        "where": {"severity": ["K", "A", "B"]},
        "threshold": {"count": 2},
    },
    {
        "id": "night-corridor-epdo",
        "scope": "corridor",
        "window": "365d",
        "where": {"hour": [19, 7]},
        "threshold": {"epdo": 12},
    },
    {
        "id": "night-stretch",
        "scope": "corridor",
        "length_m": 500,
        "window": "365d",
        "where": {"hour": [19, 7]},
        "threshold": {"count": 3},
    },
    {"id": "turned-red"},
]


@pytest.fixture(scope="module")
def fta_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    if not FTA.exists():
        pytest.skip(f"{FTA} is not here (../shared/data)")
    d = tmp_path_factory.mktemp("fta")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        units = tu.build_units(tu.read_network(tu.sample_network_path()))
        acc = tu.read_events(FTA, preset="helsinki-fta")
        joined = tu.assign(units, acc)
    joined = joined[joined["unit_id"].notna()].drop_duplicates("event_id")
    t = pd.to_datetime(joined["time"], utc=True)
    # the build: 2014 (the sample's area has accidents from 2014 on); the replay: 2015 to mid-2016
    before = joined[t < pd.Timestamp("2015-01-01", tz="UTC")]
    replay = joined[
        (t >= pd.Timestamp("2015-01-01", tz="UTC")) & (t < pd.Timestamp("2016-07-01", tz="UTC"))
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        risk = tu.score(units, before, period=("2014-01-01", "2014-12-31"))
    out = risk.copy()
    out.attrs = {}
    write_table(out, d / "units.parquet")
    manifest = {"rule": json.loads(json.dumps(risk.attrs["rule"], default=str))}
    (d / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    # the replayed accidents as GeoJSON, in the standard fields (times with their offset)
    rt = pd.to_datetime(replay["time"]).dt.tz_convert("Europe/Helsinki")
    feats = []
    for row, when in zip(replay.itertuples(), rt, strict=True):
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [row.geometry.x, row.geometry.y]},
                "properties": {
                    "event_id": str(row.event_id),
                    "time": when.isoformat(),
                    **({} if pd.isna(row.hour) else {"hour": int(row.hour)}),
                    "severity": row.severity,
                    "collision_type": None if pd.isna(row.collision_type) else row.collision_type,
                    "light": None if pd.isna(row.light) else row.light,
                },
            }
        )
    order = np.argsort([f["properties"]["time"] for f in feats], kind="stable")
    feats = [feats[i] for i in order]
    path = d / "replay.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}), encoding="utf-8")
    (d / "rules.json").write_text(json.dumps(REPLAY_RULES), encoding="utf-8")
    return d, path, len(feats)


BATCH = 25


def test_fta_replay_gives_the_same_alerts_through_the_api_and_the_cli(
    fta_folder: tuple[Path, Path, int], tmp_path: Path
) -> None:
    from .test_hazard_api import A, make_client

    d, replay, n = fta_folder
    assert n > 100
    feats = json.loads(replay.read_text(encoding="utf-8"))["features"]
    # batch: the CLI, twice (deterministic)
    runner = CliRunner()
    outs = []
    for k in range(2):
        out = tmp_path / f"alerts{k}.json"
        res = runner.invoke(
            cli_app,
            [
                "warn",
                str(d),
                "--rules",
                str(d / "rules.json"),
                "--accidents",
                str(replay),
                "--batch-size",
                str(BATCH),
                "-o",
                str(out),
            ],
        )
        assert res.exit_code == 0, res.output
        outs.append(json.loads(out.read_text(encoding="utf-8")))
    assert outs[0] == outs[1]
    batch = outs[0]
    rules_fired = {a["rule"] for a in batch}
    assert {
        "rear-end-pair",
        "injury-zone",
        "night-corridor-epdo",
        "night-stretch",
        "turned-red",
    } <= rules_fired
    # live: the same accidents POSTed in time order, BATCH per request
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with make_client(d, url, warning_rules=str(d / "rules.json")) as c:
        for lo in range(0, len(feats), BATCH):
            body = {"type": "FeatureCollection", "features": feats[lo : lo + BATCH]}
            r = c.post("/accidents", json=body, headers=A)
            assert r.status_code == 200, r.text
            assert r.json()["rejected"] == 0, r.json()
        live = c.get("/alerts", params={"limit": 100000}).json()["alerts"]
    key = lambda a: (a["rule"], a["scope_id"], a["time"], a["evidence"])  # noqa: E731
    assert sorted(map(key, live)) == sorted(map(key, batch))
    assert sorted(a["id"] for a in live) == sorted(a["id"] for a in batch)


def test_builtins_fire_on_level_changes_work_zones_and_overdue_hazards() -> None:
    from trafficunit.live import LevelChange

    engine = Engine(load_rules())
    t = pd.Timestamp("2020-05-01T23:30:00Z").value
    zones = pd.DataFrame(
        {
            "site_code": ["WZ-9"],
            "unit_id": ["U1;U2"],
            "start": [pd.Timestamp("2020-04-01", tz="UTC")],
            "end": [pd.Timestamp("2020-06-01", tz="UTC")],
            "night_works": [True],
        }
    )
    changes = [
        LevelChange("U1", "orange", "red", "accident"),
        LevelChange("U3", "blue", "yellow", "accident"),
        LevelChange("U4", "red", "red", "accident"),
    ]
    got = engine.level_changes(changes, t, evidence=["a1"], workzones=zones)
    assert [(a["rule"], a["scope_id"]) for a in got] == [
        ("turned-red", "U1"),
        ("night-workzone-on-red", "U1"),
    ]
    assert got[1]["evidence"] == ["a1", "WZ-9"]
    hz = pd.DataFrame(
        {
            "event_id": ["H1", "H2"],
            "unit_id": ["U1", "U2"],
            "overdue": [True, False],
            "deadline": [pd.Timestamp("2020-04-01", tz="UTC")] * 2,
        }
    )
    first = engine.hazards(hz)
    assert [(a["rule"], a["hazard_id"]) for a in first] == [("hazard-overdue", "H1")]
    assert engine.hazards(hz) == []  # once per hazard


def test_night_work_zone_becoming_active_on_a_red_unit_fires_once() -> None:
    engine = Engine(load_rules())
    zones = pd.DataFrame(
        {
            "site_code": ["WZ-1", "WZ-2", "WZ-3"],
            "unit_id": ["U1;U2", "U1", "U3"],
            "start": pd.to_datetime(["2020-05-02", "2020-05-01", "2020-05-01"], utc=True),
            "end": pd.to_datetime(["2020-05-09", "2020-05-09", None], utc=True),
            "night_works": [True, False, True],
        }
    )
    t = lambda s: pd.Timestamp(s, tz="UTC").value  # noqa: E731
    # before WZ-1 starts: nothing (WZ-2 is daytime works, U3 is not red)
    assert engine.workzones_on_red(["U1"], t("2020-05-01T22:00"), zones) == []
    got = engine.workzones_on_red(["U1"], t("2020-05-02T22:00"), zones)
    assert [(a["scope_id"], a["evidence"]) for a in got] == [("U1", ["WZ-1"])]
    assert got[0]["time"] == "2020-05-02T22:00:00Z"
    # while it lasts: not again; U2 turning red later: its own alert
    assert engine.workzones_on_red(["U1"], t("2020-05-03T22:00"), zones) == []
    got2 = engine.workzones_on_red(["U1", "U2"], t("2020-05-04T22:00"), zones)
    assert [(a["scope_id"], a["evidence"]) for a in got2] == [("U2", ["WZ-1"])]
    # an open-ended zone counts; after WZ-1 ends nothing more from it
    got3 = engine.workzones_on_red(["U1", "U3"], t("2020-05-10T22:00"), zones)
    assert [(a["scope_id"], a["evidence"]) for a in got3] == [("U3", ["WZ-3"])]
    # a second engine (a restart, or the batch replay) gives the same alert id
    again = Engine(load_rules()).workzones_on_red(["U1"], t("2020-05-05T01:00"), zones)
    assert again[0]["id"] == got[0]["id"]


def test_warn_cli_on_a_data_folder_and_its_errors(tmp_path: Path) -> None:
    from ._serverdata import grid_events, grid_units

    d = tmp_path / "data"
    d.mkdir()
    units = grid_units()
    write_table(units, d / "units.parquet")
    acc = grid_events(units)["accidents"]
    write_table(acc, d / "accidents.parquet")
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "- id: any-two-in-a-year\n  scope: zone\n  grid_m: 100000\n  window: 365d\n"
        "  threshold: {count: 2}\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    out = tmp_path / "alerts.csv"
    res = runner.invoke(cli_app, ["warn", str(d), "--rules", str(rules), "-o", str(out)])
    assert res.exit_code == 0, res.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("id,rule,scope,scope_id")
    # the grid's accidents are 5 days apart in one zone: two within a year cross the threshold
    assert len(lines) == 2 and "A0000;A0001" in lines[1]
    # a period with nothing in it: no alert
    res = runner.invoke(cli_app, ["warn", str(d), "--rules", str(rules), "--from", "2030-01-01"])
    assert res.exit_code == 0 and "0 alert(s)" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: x\n  window: 3 fortnights\n  threshold: {count: 1}\n", encoding="utf-8")
    res = runner.invoke(cli_app, ["warn", str(d), "--rules", str(bad)])
    assert res.exit_code == 2 and "not a duration" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(cli_app, ["warn", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no units.parquet" in res.output
