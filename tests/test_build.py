"""The data folder and ``trafficunit build``: from a city's files to a folder `serve` serves fully.

The README's shell example is run verbatim (parsed from README.md) on the City of London extract
and the STATS19 crashes, and a TOML project on Portland; both folders are served in-process and
checked the way a user looks at the map: black spots, accidents, the legend's rule and period,
and the map's start extent.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import trafficunit as tu
from trafficunit.cli import app
from trafficunit.datafolder import SCHEMA_VERSION, DataFolder, check_writable
from trafficunit_server.app import create_app
from trafficunit_server.settings import Settings

from ._serverdata import build_data_dir
from .conftest import ROOT, shared_path

LONDON_NET = ("osm", "london-city.osm.pbf")
LONDON_CRASHES = ("crashes", "london-2025.csv")


def readme_shell_example() -> list[str]:
    """The commands of the first ``console`` block under "Use from a shell" in README.md."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Use from a shell", 1)[1]
    block = re.search(r"```console\n(.*?)```", section, re.S)
    assert block, "README: no console block under 'Use from a shell'"
    return [line[2:].strip() for line in block[1].splitlines() if line.startswith("$ ")]


def run_cli(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{args}: exit {result.exit_code}\n{result.output}"
    return result.output


@pytest.fixture
def serve_in_process() -> Iterator[Any]:
    clients: list[TestClient] = []

    def start(folder: Path) -> TestClient:
        c = TestClient(create_app(Settings(data_dir=folder)))
        c.__enter__()
        clients.append(c)
        return c

    yield start
    for c in clients:
        c.__exit__(None, None, None)


def check_served_fully(client: TestClient, folder: Path) -> dict[str, Any]:
    """What a user sees: scored units with a legend (rule, period), black spots, accidents,
    and a map that opens on the units' extent."""
    data = DataFolder(folder)
    units = data.units.to_crs(4326)
    health = client.get("/healthz").json()
    assert health["problems"] == [], health
    assert {"units", "accidents", "black_spots"} <= set(health["tables"])
    legend = client.get("/legend").json()
    assert legend["rule"].get("text"), legend
    accidents = data.accidents
    assert legend["period"] == data.manifest["period"] and legend["period"], legend
    start, end = (pd.Timestamp(p) for p in legend["period"])
    assert start < end <= pd.Timestamp.now()  # never a period in the future
    assert any("period" in line for line in legend["explanation"])
    assert sum(lv["count"] for lv in legend["levels"]) == len(units)
    assert {lv["level"] for lv in legend["levels"] if lv["count"]} >= {"red", "blue"}
    spots = client.get("/black-spots")
    assert spots.status_code == 200
    assert len(spots.json()["features"]) == len(data.black_spots) > 0
    w, s, e, n = (float(v) for v in units.total_bounds)
    acc = client.get(f"/accidents?bbox={w},{s},{e},{n}")
    assert acc.status_code == 200
    assert len(acc.json()["features"]) >= int(accidents["unit_id"].notna().sum()) > 0
    style = client.get("/style.json").json()
    assert style["metadata"]["trafficunit:bounds"] == pytest.approx([w, s, e, n], abs=1e-5)
    cx, cy = style["center"]
    assert w < cx < e and s < cy < n
    assert 10 <= style["zoom"] <= 17
    tj = client.get("/tiles/risk/tilejson.json").json()
    pad = 0.005  # matched events lie within the snap distance of a unit
    bw, bs, be, bn = tj["bounds"]
    assert bw >= w - pad and bs >= s - pad and be <= e + pad and bn <= n + pad, (tj, w, s, e, n)
    return legend


@pytest.mark.slow(family="real-data build")
def test_readme_shell_example_verbatim_ends_in_a_folder_serve_serves_fully(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve_in_process: Any
) -> None:
    net, crashes = shared_path(*LONDON_NET), shared_path(*LONDON_CRASHES)
    commands = readme_shell_example()
    verbs = [shlex.split(c)[1] for c in commands]
    assert verbs[-1] == "serve" and {"units", "join", "risk", "tiles"} <= set(verbs)
    monkeypatch.chdir(tmp_path)
    served = None
    for command in commands:
        args = shlex.split(command)
        assert args[0] == "trafficunit"
        args = [
            str(net) if a == net.name else str(crashes) if a == crashes.name else a
            for a in args[1:]
        ]
        if args[0] == "serve":
            served = Path(args[1])
            from trafficunit.cli.serve import check_folder

            assert check_folder(served) == []  # what `serve` checks on start: nothing to say
            continue
        run_cli(args)
    assert served is not None
    client = serve_in_process(tmp_path / served)
    legend = check_served_fully(client, tmp_path / served)
    acc = DataFolder(tmp_path / served).accidents
    years = pd.to_datetime(acc["time"], utc=True).dt.year
    assert [int(str(p)[:4]) for p in legend["period"]] == [years.min(), years.max()]
    m = DataFolder(tmp_path / served).manifest
    assert m["schema_version"] == SCHEMA_VERSION
    assert {"units", "risk", "black_spots", "tiles"} <= set(m["timings_s"])
    assert m["files"]["accidents.parquet"]["sha256"] == m["risk_inputs"]["accidents"]["sha256"]
    # the sources: the network, and the crash file with the columns `join` used
    by_kind = {s["kind"]: s for s in m["sources"]}
    assert by_kind["network"]["sha256"] and by_kind["network"]["size"] == net.stat().st_size
    assert by_kind["accident"]["size"] == crashes.stat().st_size
    assert {"longitude", "latitude", "accident_severity"} <= set(json.dumps(by_kind["accident"])
        .replace('"', " ").split())  # fmt: skip


@pytest.mark.slow(family="real-data build")
def test_portland_toml_project_builds_a_served_folder(
    tmp_path: Path, serve_in_process: Any
) -> None:
    shared_path("osm", "portland-central.osm.pbf")
    shared_path("crashes", "portland-corridors-2007-2015.csv")
    lines: list[str] = []
    folder = tu.build(
        ROOT / "tests" / "data" / "portland.toml",
        output=tmp_path / "portland",
        progress=lambda stage, msg: lines.append(stage),
    )
    assert isinstance(folder, DataFolder)
    assert [s for s in dict.fromkeys(lines) if s != "write"] == list(tu.datafolder.STAGES)
    m = folder.manifest
    assert m["period"] and [p[:10] for p in m["period"]] == ["2011-01-01", "2015-12-31"]
    assert set(m["timings_s"]) >= set(tu.datafolder.STAGES)
    crash_source = next(s for s in m["sources"] if s["kind"] == "accident")
    assert crash_source["size"] == Path(crash_source["path"]).stat().st_size
    assert len(crash_source["sha256"]) == 64
    text = json.dumps(crash_source)
    for column in ("LONG", "LAT", "CRASH_SVRTY_SHORT_DESC", "CRASH_DT"):
        assert column in text  # the mapping used (options and the reader's report)
    assert crash_source["join"]["matched"] == m["counts"]["accidents_matched"] > 0
    assert m["crs"] == "EPSG:32610"  # UTM 10N, chosen from the data
    client = serve_in_process(folder.root)
    check_served_fully(client, folder.root)
    # tiles carry the matched accidents only: not one beyond the units
    assert m["tiles"]["features"]["accidents"] == m["counts"]["accidents_matched"]


@pytest.mark.slow(family="real-data build")
def test_flag_form_summary_names_every_mapping_and_stage(tmp_path: Path) -> None:
    net, crashes = shared_path(*LONDON_NET), shared_path(*LONDON_CRASHES)
    out = run_cli(
        [
            "build",
            "--network", str(net),
            "--accidents", str(crashes),
            "--x", "longitude", "--y", "latitude", "--crs", "4326",
            "--time", "date,time", "--severity", "accident_severity",
            "-o", str(tmp_path / "london"),
        ]
    )  # fmt: skip
    for words in ("longitude", "latitude", "accident_severity", "black spots", "tiles", "total"):
        assert words in out, (words, out)
    assert "serve it with: trafficunit serve" in out
    m = DataFolder(tmp_path / "london").manifest
    assert m["command"].startswith("trafficunit build --network")
    assert m["counts"]["accidents"] == 20_876


@pytest.mark.slow(family="real-data build")
def test_build_fails_early_and_keeps_the_previous_folder(tmp_path: Path) -> None:
    net, crashes = shared_path(*LONDON_NET), shared_path(*LONDON_CRASHES)
    good = ["--network", str(net), "--accidents", str(crashes), "--x", "longitude",
            "--y", "latitude", "--crs", "4326", "--time", "date,time"]  # fmt: skip
    out = tmp_path / "london"
    run_cli(["build", *good, "-o", str(out)])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # swapped axes: nothing falls on the network -> exit 2, one line, the old folder intact
    swapped = [a if a not in ("longitude", "latitude") else
               {"longitude": "latitude", "latitude": "longitude"}[a] for a in good]  # fmt: skip
    res = CliRunner().invoke(app, ["build", *swapped, "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "nothing was written" in res.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # an output that cannot be written: told at once, before reading anything
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    t = time.perf_counter()
    for verb in (["build", *good], ["units", str(net)], ["tiles", str(out)],
                 ["risk", str(out)]):  # fmt: skip
        res = CliRunner().invoke(app, [*verb, "-o", str(blocker / "sub" / "x.parquet")])
        assert res.exit_code == 2, (verb, res.output)
        assert "cannot write" in res.output and "Traceback" not in res.output, res.output
    assert time.perf_counter() - t < 20


def test_build_from_a_dict_on_the_embedded_sample_is_the_demo(
    tmp_path: Path, demo_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``build_demo`` (the run's shared build, tests/conftest.py) is a whole folder, and
    ``tu.build`` of the same project as a dict gives the same counts; the basemap of the
    extract is built while tippecanoe builds the risk tiles."""
    from trafficunit import basemap, tiles

    running: list[bool] = []
    seen: list[bool] = []
    real_child, real_basemap = tiles._run_child, basemap.build_basemap

    def run_child(*args: Any, **kw: Any) -> Any:
        running.append(True)
        try:
            return real_child(*args, **kw)
        finally:
            running.pop()

    def build_basemap(*args: Any, **kw: Any) -> Any:
        seen.append(bool(running))
        return real_basemap(*args, **kw)

    monkeypatch.setattr(tiles, "_run_child", run_child)
    monkeypatch.setattr(basemap, "build_basemap", build_basemap)
    folder = DataFolder(demo_folder)
    manifest = folder.manifest
    assert folder.problems(deep=True) == []
    assert manifest["generated_sample"] is True
    assert manifest["counts"]["units"] == len(folder.units)
    assert manifest["counts"]["accidents"] == len(folder.accidents)
    assert manifest["command"].startswith("trafficunit demo")
    again = tu.build(
        {"network": {"path": tu.sample_network_path()}, "sample": {"generate": True}},
        output=tmp_path / "again",
    )
    assert again.manifest["counts"] == manifest["counts"]  # same seed, same folder
    assert seen == [True]  # beside the tiles' tippecanoe
    assert again.manifest["basemap"]["bytes"] == again.path("basemap").stat().st_size > 0
    assert again.manifest["timings_s"]["basemap"] == again.manifest["basemap"]["seconds"] > 0


def test_project_toml_as_written_in_the_issue(tmp_path: Path) -> None:
    """``x = "lng"; y = "lat"`` on one line is accepted; unknown keys and kinds are refused."""
    from trafficunit.project import load_project

    (tmp_path / "city.toml").write_text(
        '[network]\npath = "city.osm.pbf"\ncrs = "EPSG:4547"\n'
        '[[events]]\nkind = "accident"\npath = "acc; 2025.csv"\n'
        'x = "lng"; y = "lat"; crs = "gcj02"   # a comment; with a semicolon\n'
        'severity = "事故等级"; time = ["日期", "时间"]\n'
        '[risk]\nperiod = ["2023-01-01", "2025-12-31"]\n',
        encoding="utf-8",
    )
    p = load_project(tmp_path / "city.toml")
    ev = p["events"][0]
    assert ev["path"] == tmp_path / "acc; 2025.csv"  # relative to the TOML
    assert (ev["x"], ev["y"], ev["crs"], ev["time"]) == ("lng", "lat", "gcj02", ["日期", "时间"])
    assert p["network"]["path"] == tmp_path / "city.osm.pbf"
    (tmp_path / "bad.toml").write_text(
        '[network]\npath = "x.pbf"\n[[events]]\nkind = "crash"\npath = "a.csv"\n'
    )
    with pytest.raises(tu.ValidationError, match="unknown event kind 'crash'"):
        load_project(tmp_path / "bad.toml")
    with pytest.raises(tu.ValidationError, match="unknown key"):
        load_project({"network": {"path": "x.pbf", "crs2": 1}})


def test_event_options_pass_through_to_read_events_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TOML keys are read_events keywords: whatever the reader accepts (encoding=, tz=...)."""
    import trafficunit.events as events_mod

    seen: dict[str, Any] = {}
    real = events_mod.read_events

    def spy(source: Any, **kw: Any) -> Any:
        seen.update(kw)
        return real(source, **kw)

    monkeypatch.setattr(events_mod, "read_events", spy)
    units = tu.build_units(tu.read_network(tu.sample_network_path()))
    acc = tu.sample.accidents(units, n=200)
    acc = acc.assign(lon=acc.geometry.x, lat=acc.geometry.y).drop(columns="geometry")
    pd.DataFrame(acc).to_csv(tmp_path / "acc.csv", index=False)
    tu.build(
        {
            "network": {"path": tu.sample_network_path()},
            "events": [{"kind": "accident", "path": tmp_path / "acc.csv", "x": "lon", "y": "lat",
                        "crs": 4326, "time": "time", "encoding": "utf-8", "tz": "Europe/Helsinki"}],
        },
        output=tmp_path / "out",
    )  # fmt: skip
    assert seen == {"kind": "accident", "x": "lon", "y": "lat", "crs": 4326, "time": "time",
                    "encoding": "utf-8", "tz": "Europe/Helsinki"}  # fmt: skip


# --------------------------------------------------------------------------- serve's checks


def test_serve_says_what_is_missing_or_inconsistent(tmp_path: Path) -> None:
    from trafficunit.cli.serve import check_folder

    folder = build_data_dir(tmp_path / "d")  # a manifest without a schema version: migrated
    m = DataFolder(folder).manifest
    assert m["schema_version"] == SCHEMA_VERSION and m["migrated_from"] == 0
    assert m["rule"]  # kept
    assert check_folder(folder) == []
    (folder / "black_spots.parquet").unlink()
    (folder / "accidents.parquet").touch()
    os.utime(folder / "accidents.parquet", (time.time() + 60, time.time() + 60))
    problems = check_folder(folder)
    assert any("black_spots.parquet" in p for p in problems)
    assert any("newer than the scores" in p for p in problems)


def test_folder_check_follows_the_shell_verbs(tmp_path: Path) -> None:
    """units → (join) → risk → tiles into one folder: each step's check says what is next."""
    units = tu.build_units(tu.read_network(tu.sample_network_path()))
    out = tmp_path / "city"
    folder = DataFolder(out, create=True)
    folder.write("units", units)
    assert any("units are not scored" in p for p in folder.problems())
    acc = tu.assign(units, tu.sample.accidents(units, n=300))
    tu.write_table(acc, out / "accidents.parquet")  # as `join -o city/accidents.parquet` does
    run_cli(["risk", str(out), "-o", str(out)])
    assert [p for p in folder.problems() if "tileset" not in p] == []
    run_cli(["tiles", str(out), "-o", str(out)])
    assert folder.problems(deep=True) == []
    run_cli(["risk", str(out), "-o", str(out), "--scheme", "fixed", "--bands", "1,2,3"])
    assert any("risk.pmtiles was built from other units" in p for p in folder.problems())


def test_serve_with_a_corrupt_table_or_newer_schema_is_one_line_exit_2(tmp_path: Path) -> None:
    folder = build_data_dir(tmp_path / "d")
    (folder / "accidents.parquet").write_bytes(b"PAR1 not really")
    res = CliRunner().invoke(app, ["serve", str(folder), "--port", "1"])
    assert res.exit_code == 2, res.output
    assert "accidents.parquet: corrupt" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) <= 3  # one line, maybe soft-wrapped
    folder = build_data_dir(tmp_path / "e")
    (folder / "manifest.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    res = CliRunner().invoke(app, ["serve", str(folder), "--port", "1"])
    assert res.exit_code == 2 and "newer trafficunit" in res.output, res.output


@pytest.mark.slow(family="real-data build")
def test_server_reload_notices_accidents_changed_after_scoring(tmp_path: Path) -> None:
    net = shared_path(*LONDON_NET)
    crashes = shared_path(*LONDON_CRASHES)
    out = tmp_path / "city"
    tu.build(
        {"network": {"path": net}, "events": [{"kind": "accident", "path": crashes,
         "x": "longitude", "y": "latitude", "crs": 4326, "time": ["date", "time"]}]},
        output=out,
    )  # fmt: skip
    from trafficunit_server.settings import TileServerSettings

    settings = Settings(data_dir=out, tiles=TileServerSettings(reload_check_s=0.0))
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json()["problems"] == []
        folder = DataFolder(out)
        acc = folder.accidents
        tu.write_table(acc.iloc[: len(acc) // 2], out / "accidents.parquet")  # not via risk
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            problems = client.get("/healthz").json()["problems"]
            if problems:
                break
        assert any("changed after the scores" in p for p in problems), problems


# --------------------------------------------------------------------------- tiles, help


def test_interrupted_tile_build_kills_tippecanoe_and_leaves_no_temporaries(
    tmp_path: Path,
) -> None:
    """SIGTERM to a process running tippecanoe: the child's group dies with it; a temp file of
    a killed run is removed by the next build."""
    pidfile = tmp_path / "child.pid"
    script = (
        "import sys; from pathlib import Path; from trafficunit import tiles\n"
        f"tiles._run_child(['sh', '-c', 'echo $$ > {pidfile}; sleep 120 & sleep 120'], {{}},"
        " Path('sh'))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    child = int(pidfile.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    deadline = time.monotonic() + 30
    while True:
        try:
            os.killpg(child, 0)  # the whole group of the child (sh and its sleeps)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "tippecanoe's process group outlived its parent"
        time.sleep(0.05)
    # a temporary archive of a killed build (its pid no longer runs) is cleaned up
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "risk.pmtiles"
    (tmp_path / f".risk.pmtiles.{dead.pid}.tmp.pmtiles").write_bytes(b"half")
    (tmp_path / f".risk.pmtiles.{dead.pid}.staged.pmtiles").write_bytes(b"half")
    (tmp_path / f".risk.pmtiles.{dead.pid}.work").mkdir()
    (tmp_path / f".risk.pmtiles.{dead.pid}.work" / "units.geojsonl").write_text("{}")
    alive = tmp_path / f".risk.pmtiles.{os.getppid()}.tmp.pmtiles"  # a running build's: kept
    alive.write_bytes(b"in progress")
    units = tu.build_units(tu.read_network(tu.sample_network_path()))
    tu.build_tiles(units, output=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [alive.name, "child.pid", "risk.pmtiles"]
    )


def test_tiles_carry_matched_events_unless_all_events(tmp_path: Path) -> None:
    units = tu.build_units(tu.read_network(tu.sample_network_path()))
    acc = tu.sample.accidents(units, n=300)
    far = acc.iloc[:40].copy()
    far["geometry"] = far.geometry.translate(0.2, 0.0)  # ~11 km east: on no unit
    far["event_id"] = far["event_id"] + "-far"
    joined = tu.assign(units, pd.concat([acc, far], ignore_index=True))
    matched = int(joined["unit_id"].notna().sum())
    report = tu.tiles.build_tiles_report(units, output=tmp_path / "a.pmtiles", accidents=joined)
    assert report.features["accidents"] == matched < len(joined)
    report = tu.tiles.build_tiles_report(
        units, output=tmp_path / "b.pmtiles", accidents=joined, all_events=True
    )
    assert report.features["accidents"] == len(joined)


def test_help_lists_verbs_in_pipeline_order_without_bool_placeholders() -> None:
    out = run_cli(["--help"])
    verbs = re.findall(r"^│ (\w+) ", out, re.M)
    assert verbs[:7] == ["build", "units", "join", "risk", "tiles", "serve", "demo"], verbs
    for verb in verbs:
        text = run_cli([verb, "--help"])
        assert "<bool>" not in text, verb


def test_check_writable_names_the_path_and_reason(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(tu.ValidationError, match="cannot write .*f/x.parquet"):
        check_writable(tmp_path / "f" / "x.parquet")
    with pytest.raises(tu.ValidationError, match="is a file, not a folder"):
        check_writable(tmp_path / "f", folder=True)
    assert check_writable(tmp_path / "new" / "x.parquet").parent.is_dir()
    assert not list((tmp_path / "new").iterdir())  # the probe left nothing behind


_toml_values = st.one_of(
    st.integers(-(10**6), 10**6),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12),
    st.lists(st.text(alphabet="日期时间ab;#[]{}=, ", max_size=6), max_size=3),
)


@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True), _toml_values, min_size=1, max_size=5
    )
)
@settings(max_examples=200, deadline=None)
def test_semicolon_separated_keys_read_as_one_key_per_line(table: dict[str, Any]) -> None:
    """`a = 1; b = "x;y"` reads as the same table as one key per line, whatever the values
    hold (semicolons, '#', brackets inside strings and arrays)."""
    import tomllib

    from trafficunit.project import _split_semicolons

    def dump(v: Any) -> str:
        return json.dumps(v, ensure_ascii=False)  # JSON strings/ints/arrays are valid TOML here

    one_line = "; ".join(f"{k} = {dump(v)}" for k, v in table.items()) + "  # done; really"
    assert tomllib.loads(_split_semicolons(one_line)) == table
