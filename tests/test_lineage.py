"""Re-segmentation with lineage: scripted edits of a real extract, events following their units."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import geopandas as gpd
import numpy as np
import osmium
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from osmium.osm import mutable
from typer.testing import CliRunner

import trafficunit as tu
from trafficunit.lineage import CHANGE_KINDS, history

from .conftest import lines_gdf, shared_path

NEW_WAY = 9_000_000_001
NEW_NODE = 9_000_000_001


# --------------------------------------------------------------------------------------------
# scripted edits of helsinki-centre.osm.pbf


def _way_nodes(src: Path, ids: set[int]) -> tuple[dict[int, list[int]], dict[int, tuple]]:
    ways: dict[int, list[int]] = {}
    locs: dict[int, tuple[float, float]] = {}
    fp = osmium.FileProcessor(str(src)).with_locations()
    for o in fp.with_filter(osmium.filter.EntityFilter(osmium.osm.WAY)):
        if isinstance(o, osmium.osm.Way) and o.id in ids:
            ways[o.id] = [n.ref for n in o.nodes]
            for n in o.nodes:
                if n.location.valid():
                    locs[n.ref] = (n.lon, n.lat)
    return ways, locs


def _plan(src: Path, roads: gpd.GeoDataFrame) -> dict:
    """Choose the edits: a way to slow down, a node to hang a new street on, a junction to move."""
    ways, locs = _way_nodes(src, set(roads["osm_id"].astype(int)))
    ends: Counter[int] = Counter()
    for nodes in ways.values():
        for i, n in enumerate(nodes):
            ends[n] += 1 if i in (0, len(nodes) - 1) else 2
    named = roads[roads["name"].notna() & roads["maxspeed_kmh"].notna()]
    lengths = named.to_crs(3067).length.sort_values(ascending=False)
    by_length = named.loc[lengths.index, "osm_id"].astype(int).tolist()
    speed_way = by_length[0]
    # the new street starts at a plain interior node (degree 2) of another long way
    for way in by_length[1:]:
        mid = [n for n in ways[way][1:-1] if ends[n] == 2 and n in locs]
        if mid:
            base_way, attach = way, mid[len(mid) // 2]
            break
    # the junction to move: a three-or-more-way node near the middle of the extract
    cx, cy = np.mean(list(locs.values()), axis=0)
    junctions = [n for n, c in ends.items() if c >= 3 and n in locs]
    moved = min(junctions, key=lambda n: (locs[n][0] - cx) ** 2 + (locs[n][1] - cy) ** 2)
    return {
        "speed_way": speed_way,
        "base_way": base_way,
        "attach": attach,
        "attach_xy": locs[attach],
        "moved": moved,
        "moved_xy": locs[moved],
    }


def _edit_copy(src: Path, dst: Path, plan: dict, *, edits: tuple[str, ...]) -> None:
    """Copy an OSM file applying the chosen ``edits``: "street", "junction", "speed"."""
    lon, lat = plan["attach_xy"]

    class Editor(osmium.SimpleHandler):
        def __init__(self, writer: osmium.SimpleWriter) -> None:
            super().__init__()
            self.w = writer
            self.added = False

        def node(self, n: osmium.osm.Node) -> None:
            if "junction" in edits and n.id == plan["moved"]:  # ~5.5 m east
                loc = osmium.osm.Location(n.lon + 0.0001, n.lat)
                self.w.add_node(n.replace(location=loc))
            else:
                self.w.add_node(n)

        def way(self, w: osmium.osm.Way) -> None:
            if "street" in edits and not self.added:
                self.added = True  # a ~70 m street from the attach node
                self.w.add_node(
                    mutable.Node(id=NEW_NODE, location=(lon + 0.0006, lat + 0.0006), version=1)
                )
                self.w.add_way(
                    mutable.Way(
                        id=NEW_WAY,
                        nodes=[plan["attach"], NEW_NODE],
                        tags={"highway": "residential", "name": "Uusi katu"},
                        version=1,
                    )
                )
            if "speed" in edits and w.id == plan["speed_way"]:
                tags = dict(w.tags)
                tags["maxspeed"] = "20"
                self.w.add_way(w.replace(tags=tags))
            else:
                self.w.add_way(w)

        def relation(self, r: osmium.osm.Relation) -> None:
            self.w.add_relation(r)

    writer = osmium.SimpleWriter(str(dst))
    try:
        Editor(writer).apply_file(str(src))
    finally:
        writer.close()


@pytest.fixture(scope="module")
def edited(tmp_path_factory: pytest.TempPathFactory) -> dict:
    src = shared_path("osm", "helsinki-centre.osm.pbf")
    roads = tu.read_network(src)
    plan = _plan(src, roads)
    dst = tmp_path_factory.mktemp("lineage") / "edited.osm.pbf"
    _edit_copy(src, dst, plan, edits=("street", "junction", "speed"))
    old = tu.build_units(roads)
    acc = tu.read_events(
        shared_path("crashes", "helsinki-fta-2011-2016.csv"), preset="helsinki-fta"
    )
    joined = tu.assign(old, acc)
    new_roads = tu.read_network(dst)
    result = tu.resegment(old, new_roads, accidents=joined, as_of="2024-05-01")
    return {
        "plan": plan,
        "roads": roads,
        "new_roads": new_roads,
        "old": old,
        "joined": joined,
        "accidents": acc,
        "result": result,
        "path": dst,
    }


def _on_way(units: pd.DataFrame, way: int) -> pd.Series:
    ids = units["osm_ids"].fillna("").str.split(";")
    return ids.map(lambda xs: str(way) in xs)


def _near(units: gpd.GeoDataFrame, lonlat: tuple[float, float], metres: float) -> pd.Series:
    pt = gpd.GeoSeries([shapely.Point(lonlat)], crs=4326).to_crs(3067).iloc[0]
    return units.geometry.to_crs(3067).distance(pt) <= metres


def test_every_unit_is_in_the_lineage(edited):
    new, lineage = edited["result"]
    old = edited["old"]
    assert set(lineage["old_id"].dropna()) == set(old.index)
    assert set(lineage["new_id"].dropna()) == set(new.index)
    assert set(lineage["kind"]) <= set(CHANGE_KINDS)
    unchanged = lineage[lineage["kind"] == "unchanged"]
    assert (unchanged["old_id"] == unchanged["new_id"]).all()
    # three local edits leave almost every unit alone
    assert len(unchanged) > 0.97 * len(old)
    # no kind mixes unit kinds
    kinds = pd.concat([old["kind"], new["kind"]])
    kinds = kinds[~kinds.index.duplicated()]
    pairs = lineage.dropna(subset=["old_id", "new_id"])
    assert (kinds.loc[pairs["old_id"]].to_numpy() == kinds.loc[pairs["new_id"]].to_numpy()).all()


def test_new_street(edited):
    new, lineage = edited["result"]
    old, plan = edited["old"], edited["plan"]
    added = lineage[lineage["kind"] == "added"]
    new_street = new[_on_way(new, NEW_WAY) & (new["kind"] == "segment")]
    assert len(new_street) == 1 and new_street["name"].iloc[0] == "Uusi katu"
    assert new_street.index[0] in set(added["new_id"])
    # a new T-junction where it meets the old street
    at_attach = new[(new["kind"] == "intersection") & _near(new, plan["attach_xy"], 1.0)]
    assert len(at_attach) == 1 and at_attach["degree"].iloc[0] == 3
    assert at_attach.index[0] in set(added["new_id"])
    # the old segment it lands on is split in two at the new junction, shares adding up to 1
    hit = old[(old["kind"] == "segment") & _near(old, plan["attach_xy"], 0.5)]
    assert len(hit) == 1
    rows = lineage[lineage["old_id"] == hit.index[0]]
    assert set(rows["kind"]) == {"split"} and len(rows) == 2
    assert rows["share"].sum() == pytest.approx(1.0, abs=1e-3)
    assert (rows["share_new"] > 0.99).all()
    # the new pieces keep the street's attributes
    pieces = new.loc[rows["new_id"]]
    assert (pieces["name"] == hit["name"].iloc[0]).all()


def test_moved_junction(edited):
    new, lineage = edited["result"]
    old, plan = edited["old"], edited["plan"]
    before = old[(old["kind"] == "intersection") & _near(old, plan["moved_xy"], 25.0)]
    moved = before.index[_near(before, plan["moved_xy"], 15.0)]
    assert len(moved) == 1
    rows = lineage[lineage["old_id"] == moved[0]]
    assert rows["kind"].tolist() == ["reshaped"]
    # it moved ~5.5 m (0.0001 degrees of longitude at 60.17 N) and its disc mostly overlaps
    assert rows["distance_m"].iloc[0] == pytest.approx(5.5, abs=3.0)
    assert rows["share"].iloc[0] > 0.7
    # the roads ending at the moved node are reshaped too (or re-split), never removed; the
    # arms of the junction that end at its other nodes keep their ids
    seg = old[old["kind"] == "segment"]
    ends = gpd.GeoSeries(
        np.r_[
            shapely.get_point(seg.geometry.values, 0), shapely.get_point(seg.geometry.values, -1)
        ],
        crs=old.crs,
    )
    at_node = np.r_[seg.index, seg.index][
        _near(ends.to_frame("geometry").set_geometry("geometry"), plan["moved_xy"], 0.5).to_numpy()
    ]
    arms = lineage[lineage["old_id"].isin(at_node)]
    assert len(set(at_node)) >= 2
    assert set(arms["kind"]) <= {"reshaped", "split", "merged"}
    assert arms["new_id"].notna().all()
    # a 5 m move leaves most of every longer arm where it was
    share = arms.groupby("old_id")["share"].sum()
    long_arms = old.loc[share.index, "length_m"] > 50
    assert long_arms.sum() >= 2 and (share[long_arms] > 0.85).all()
    others = lineage[
        lineage["old_id"].isin(
            old.index[old["to_unit"].eq(moved[0]) | old["from_unit"].eq(moved[0])]
        )
    ]
    assert set(others["kind"]) <= {"reshaped", "split", "merged", "unchanged"}


def test_changed_speed_limit_keeps_ids(edited):
    new, lineage = edited["result"]
    old, plan = edited["old"], edited["plan"]
    way = plan["speed_way"]
    before = old[_on_way(old, way) & (old["kind"] == "segment")]
    after = new[_on_way(new, way) & (new["kind"] == "segment")]
    assert (before["maxspeed_kmh"] != 20).all() and (after["maxspeed_kmh"] == 20).all()
    rows = lineage[lineage["old_id"].isin(before.index)]
    # a stretch whose extent did not change keeps its id; the lineage names the attribute
    kept = rows[rows["kind"] == "unchanged"]
    assert len(kept) >= 1
    assert kept["changed"].str.contains("maxspeed_kmh").all()
    assert set(kept["new_id"]) <= set(after.index)
    assert not rows["kind"].isin(["removed"]).any()


def test_every_accident_keeps_a_unit(edited):
    result, joined = edited["result"], edited["joined"]
    moved = result.accidents
    assert len(moved) == len(joined)
    assert (moved["event_id"].to_numpy() == joined["event_id"].to_numpy()).all()
    had = joined["unit_id"].notna().to_numpy()
    assert had.sum() > 400
    assert moved["unit_id"].notna().to_numpy()[had].all()
    assert set(moved["unit_id"].dropna()) <= set(result.units.index)
    rep = result.summary["accidents"]
    assert rep["lost"] == 0 and rep["matched_after"] >= rep["matched_before"]
    # accidents on unchanged units stay put with the same measures
    kept = moved["reassigned"] == "kept"
    assert (moved.loc[kept, "unit_id"] == joined.loc[kept, "unit_id"]).all()
    np.testing.assert_allclose(moved.loc[kept, "measure_m"], joined.loc[kept, "measure_m"])
    # those on changed units moved to a successor of their old unit ...
    via = moved[moved["reassigned"] == "lineage"]
    assert len(via) >= 5
    lin = result.lineage
    succ = set(zip(lin["old_id"].dropna(), lin["new_id"].fillna(""), strict=False))
    fresh_int = set(lin.loc[lin["kind"] == "added", "new_id"])
    ok = [
        (p, u) in succ or u in fresh_int
        for p, u in zip(via["previous_unit_id"], via["unit_id"], strict=True)
    ]
    assert all(ok)
    # ... where a fresh spatial join on the new units puts them too
    fresh = tu.assign(result.units, edited["accidents"])
    same = fresh.loc[via.index, "unit_id"].to_numpy() == via["unit_id"].to_numpy()
    assert same.mean() >= 0.9


def test_versions_and_history(edited, tmp_path):
    result = edited["result"]
    new, lineage = result
    as_of = pd.Timestamp("2024-05-01", tz="UTC")
    kept = new.index.isin(edited["old"].index)
    assert new.loc[kept, "valid_from"].isna().all()  # the old units had no history
    assert (new.loc[~kept, "valid_from"] == as_of).all()
    assert new["valid_to"].isna().all()
    hist = result.history
    retired = hist[hist["valid_to"].notna()]
    assert set(retired["unit_id"]) == set(edited["old"].index) - set(new.index)
    assert (retired["valid_to"] == as_of).all()
    # a second version: undo the new street; the history follows a unit through both
    src = shared_path("osm", "helsinki-centre.osm.pbf")
    dst = tmp_path / "v3.osm.pbf"
    _edit_copy(src, dst, edited["plan"], edits=("junction", "speed"))
    v3 = tu.resegment(hist, tu.read_network(dst), as_of="2025-01-01")
    street = new.index[_on_way(new, NEW_WAY) & (new["kind"] == "segment")][0]
    assert v3.lineage.set_index("old_id").loc[street, "kind"] == "removed"
    # the split segment came back whole in v3: its id is the one it had in v1
    old = edited["old"]
    split_old = old.index[(old["kind"] == "segment") & _near(old, edited["plan"]["attach_xy"], 0.5)]
    split_old = split_old[0]
    assert split_old not in new.index
    assert split_old in v3.units.index
    assert v3.units.loc[split_old, "valid_from"] == pd.Timestamp("2025-01-01", tz="UTC")
    h = history(split_old, [lineage, v3.lineage], units_history=v3.history)
    assert {"descendant", "ancestor"} <= set(h["direction"])
    assert sorted(h["as_of"].dt.year.unique()) == [2024, 2025]
    # split in two in 2024, merged back into the same unit (same id) in 2025
    year = h["as_of"].dt.year
    assert (h.loc[year == 2024, "kind"] == "split").all()
    assert (h.loc[year == 2025, "kind"] == "merged").all()
    pieces = set(h.loc[year == 2024, "new_id"])
    assert len(pieces) == 2 and pieces == set(h.loc[year == 2025, "old_id"])
    assert h["old_valid_to"].notna().all()
    # tables round-trip through GeoParquet
    tu.write_table(v3.history, tmp_path / "h.parquet")
    tu.write_table(v3.lineage, tmp_path / "l.parquet")
    back = pd.read_parquet(tmp_path / "l.parquet")
    assert len(back) == len(v3.lineage)


def test_identity_is_all_unchanged(sample_roads, sample_units):
    new, lineage = tu.resegment(sample_units, sample_roads, as_of="2024-01-01")
    assert new.index.equals(sample_units.index)
    assert (lineage["kind"] == "unchanged").all() and (lineage["changed"] == "").all()
    pd.testing.assert_series_equal(new["length_m"], sample_units["length_m"])


# --------------------------------------------------------------------------------------------
# small synthetic networks: exact shares, merges, removals, hazards


def _units(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    return tu.build_units(gdf, max_length_m=1000)


def test_merge_and_remove_exact_shares():
    # a street of two ways with different limits, and a side street
    v1 = lines_gdf(
        [[(0, 0), (300, 0)], [(300, 0), (500, 0)], [(300, 0), (300, 200)]],
        maxspeed=["50", "30", "30"],
        name=["A", "A", "B"],
        osm_id=[1, 2, 3],
    )
    # v2: the side street is gone and the limits agree: A becomes one 500 m unit
    v2 = lines_gdf(
        [[(0, 0), (300, 0)], [(300, 0), (500, 0)]],
        maxspeed=["50", "50"],
        name=["A", "A"],
        osm_id=[1, 2],
    )
    old = _units(v1)
    new, lineage = tu.resegment(old, v2, max_length_m=1000, as_of="2024-01-01")
    seg = lineage[lineage["unit_kind"] == "segment"]
    merged = seg[seg["kind"] == "merged"]
    assert len(merged) == 2 and merged["new_id"].nunique() == 1
    np.testing.assert_allclose(sorted(merged["share_new"]), [0.4, 0.6], atol=1e-6)
    np.testing.assert_allclose(merged["share"], 1.0, atol=1e-6)
    removed = lineage[lineage["kind"] == "removed"]
    assert set(removed["unit_kind"]) == {"segment", "intersection"}
    assert old.loc[removed["old_id"], "name"].dropna().str.contains("B").all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(at=st.floats(0.1, 0.9), length=st.floats(60, 900))
def test_split_shares_follow_the_cut(at, length):
    street = lines_gdf([[(0, 0), (length, 0)]], osm_id=[1])
    old = _units(street)
    cut = at * length
    v2 = lines_gdf(
        [[(0, 0), (cut, 0)], [(cut, 0), (length, 0)], [(cut, 0), (cut, 50)]],
        osm_id=[1, 1, 2],
    )
    new, lineage = tu.resegment(old, v2, max_length_m=1000, as_of="2024-01-01")
    rows = lineage[lineage["old_id"] == old.index[0]]
    assert set(rows["kind"]) == {"split"}
    got = sorted(rows["share"])
    np.testing.assert_allclose(got, sorted([at, 1 - at]), atol=1e-6)
    np.testing.assert_allclose(rows["overlap_m"].sum(), length, rtol=1e-6)


def test_hazards_open_move_closed_stay():
    old = _units(lines_gdf([[(0, 0), (400, 0)]], osm_id=[1]))
    new_net = lines_gdf(
        [[(0, 0), (200, 0)], [(200, 0), (400, 0)], [(200, 0), (200, 80)]], osm_id=[1, 1, 2]
    )
    hz = gpd.GeoDataFrame(
        {
            "event_id": ["h1", "h2", "h3"],
            "kind": "hazard",
            "status": ["open", "closed", "open"],
            "grade": "general",
        },
        geometry=[shapely.Point(50, 3), shapely.Point(350, 3), shapely.Point(100, 300)],
        crs=3067,
    )
    joined = tu.assign(old, hz)
    assert joined["unit_id"].notna().tolist() == [True, True, False]
    res = tu.resegment(old, new_net, hazards=joined, max_length_m=1000, as_of="2024-01-01")
    out = res.hazards.set_index("event_id")
    west = res.units[
        (res.units["kind"] == "segment")
        & res.units.geometry.intersects(shapely.Point(50, 0).buffer(0.1))
    ].index[0]
    assert out.loc["h1", "unit_id"] == west and out.loc["h1", "reassigned"] == "lineage"
    west_geom = res.units.loc[west, "geometry"]
    expected = shapely.line_locate_point(west_geom, shapely.Point(50, 0))
    assert out.loc["h1", "measure_m"] == pytest.approx(expected)
    assert out.loc["h1", "distance_m"] == pytest.approx(3.0)
    # a closed hazard stays on the unit it was closed on (history), the far one stays unmatched
    assert out.loc["h2", "unit_id"] == old.index[0] and out.loc["h2", "reassigned"] == "kept"
    assert pd.isna(out.loc["h3", "unit_id"]) and out.loc["h3", "reassigned"] == "retried"


def test_bad_inputs(sample_units, sample_roads):
    with pytest.raises(tu.ValidationError, match="unit_id"):
        tu.resegment(sample_units.reset_index(drop=True), sample_roads)
    with pytest.raises(tu.ValidationError, match="as_of"):
        tu.resegment(sample_units, sample_roads, as_of="not a date")
    with pytest.raises(tu.ValidationError, match="tu.assign"):
        tu.resegment(sample_units, sample_roads, accidents=sample_roads)


# --------------------------------------------------------------------------------------------
# CLI


def test_cli_resegment(edited, tmp_path):
    from trafficunit.cli import app

    old_path = tmp_path / "old.parquet"
    joined_path = tmp_path / "joined.parquet"
    tu.write_table(edited["old"], old_path)
    tu.write_table(edited["joined"], joined_path)
    out = tmp_path / "new.parquet"
    res = CliRunner().invoke(
        app,
        [
            "resegment",
            str(old_path),
            str(edited["path"]),
            "-o",
            str(out),
            "--lineage",
            str(tmp_path / "lineage.parquet"),
            "--accidents",
            str(joined_path),
            "--as-of",
            "2024-05-01",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "split" in res.output and "moved through the lineage" in res.output
    new = tu.read_table(out)
    assert new.index.equals(edited["result"].units.index)
    moved = tu.read_table(tmp_path / "joined-resegmented.parquet", index=None)
    assert moved["unit_id"].notna().sum() >= edited["joined"]["unit_id"].notna().sum()
    bad = CliRunner().invoke(
        app, ["resegment", str(tmp_path / "nope.parquet"), str(edited["path"]), "-o", str(out)]
    )
    assert bad.exit_code == 2 and "no such file" in bad.output
