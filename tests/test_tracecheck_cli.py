"""``trafficunit trace-check``: a batch of traces against permits, bad input as exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from typer.testing import CliRunner

import trafficunit as tu
from trafficunit.cli import app
from trafficunit.routing import UnitGraph
from trafficunit.traces import generate_trace

from .conftest import shared_path


def _gpx(path: Path, tracks: list[gpd.GeoDataFrame]) -> None:
    body = ""
    for k, t in enumerate(tracks):
        pts = "".join(
            f'<trkpt lat="{p.y:.7f}" lon="{p.x:.7f}">'
            f"<time>{ts.tz_convert('UTC'):%Y-%m-%dT%H:%M:%SZ}</time></trkpt>"
            for p, ts in zip(t.geometry, t["time"], strict=True)
        )
        body += f"<trk><name>leg{k}</name><trkseg>{pts}</trkseg></trk>"
    path.write_text(
        f'<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">{body}</gpx>',
        encoding="utf-8",
    )


@pytest.fixture(scope="module")
def folder(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, gpd.GeoDataFrame, tu.routing.Route]:
    units = tu.build_units(tu.read_network(shared_path("osm", "helsinki-centre.osm.pbf")))
    out = tmp_path_factory.mktemp("data")
    units.to_parquet(out / "units.parquet")
    g = UnitGraph(units)
    m = units.to_crs(g.crs)
    segs = m[(m["kind"] == "segment") & m["junction_id"].isna()].sort_values("length_m")
    a, b = segs.index[-1], segs.index[-40]
    r = tu.route(
        g,
        units.geometry[a].interpolate(0.5, normalized=True),
        units.geometry[b].interpolate(0.5, normalized=True),
    )
    return out, units, r


def test_batch_report(folder, tmp_path: Path) -> None:
    data, units, r = folder
    g = UnitGraph(units)
    traces = tmp_path / "traces"
    traces.mkdir()
    # at night, inside the window; and in the day, outside it
    night = generate_trace(
        g, r, interval_s=5, noise_m=10, start="2025-11-30 23:00", tz="Europe/Helsinki"
    )
    day = generate_trace(
        g, r, interval_s=5, noise_m=10, start="2025-11-30 12:00", tz="Europe/Helsinki"
    )
    _gpx(traces / "P1-night.gpx", [night, day])  # two tracks: checked one by one
    csv = pd.DataFrame(
        {
            "time": day["time"].dt.tz_convert("Europe/Helsinki").dt.tz_localize(None).astype(str),
            "lon": day.geometry.x,
            "lat": day.geometry.y,
        }
    )
    csv.to_csv(traces / "P1-day.csv", index=False)
    (traces / "ZZ-nobody.csv").write_text("time,lon,lat\n", encoding="utf-8")
    permits = tmp_path / "permits.csv"
    pd.DataFrame(
        {
            "permit_id": ["P1", "P2"],
            "vehicle": ["粤B12345", "粤B99999"],
            "route": [" ".join(r.unit_ids), r.unit_ids[0]],
            "windows": ["22:00-06:00", ""],
            "tz": ["Europe/Helsinki", ""],
        }
    ).to_csv(permits, index=False)
    out = tmp_path / "report.parquet"
    res = CliRunner().invoke(
        app,
        [
            "trace-check",
            str(data),
            str(traces),
            "--permits",
            str(permits),
            "-o",
            str(out),
            "--geojson",
            str(tmp_path / "f.geojson"),
            "-q",
        ],
    )
    assert res.exit_code == 2, res.output  # the trace with no permit
    assert "ZZ-nobody" in res.output
    findings = gpd.read_parquet(out)
    summary = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    checked = [s for s in summary if s["status"] == "checked"]
    assert len(checked) == 3  # two GPX tracks + one CSV
    outside = findings[findings["kind"] == "outside_window"]
    assert set(outside["track"]) == {"leg1", ""}  # the day-time ones
    assert (findings["kind"] == "off_route").sum() == 0
    assert {"label_en", "label_zh", "permit_id", "trace"} <= set(findings.columns)
    layer = json.loads((tmp_path / "f.geojson").read_text(encoding="utf-8"))
    assert layer["type"] == "FeatureCollection" and len(layer["features"]) == len(findings)
    assert all("keep_right" in s for s in checked)


def test_bad_input_is_one_line_exit_2(folder, tmp_path: Path) -> None:
    data, units, r = folder
    permits = tmp_path / "permits.csv"
    t = tmp_path / "t.csv"

    def run(permit: dict, trace_csv: str) -> tuple[int, str]:
        pd.DataFrame({"permit_id": ["P1"], **{k: [v] for k, v in permit.items()}}).to_csv(
            permits, index=False
        )
        t.write_text(trace_csv, encoding="utf-8")
        report = tmp_path / "r.parquet"
        args = ["trace-check", str(data), str(t), "--permits", str(permits), "-o", str(report)]
        res = CliRunner().invoke(app, args)
        assert "Traceback" not in res.output
        return res.exit_code, " ".join(res.output.split())  # the message, unwrapped

    one = "time,lon,lat\n2025-11-30T22:00:00Z,24.94,60.17\n"
    code, out = run({"route": "NOPE"}, one)
    assert code == 2 and "not in the units" in out, out
    # origin off the network
    code, out = run({"from_lon": 0.0, "from_lat": 0.0, "to_lon": 24.94, "to_lat": 60.17}, one)
    assert code == 2 and "off the network" in out, out
    # a projected trace read as lon/lat, unsorted or repeated times: the trace fails, with why
    o, d = shapely.get_point(r.geometry, 0), shapely.get_point(r.geometry, -1)
    ends = {"from_lon": o.x, "from_lat": o.y, "to_lon": d.x, "to_lat": d.y}
    code, out = run(ends, "time,lon,lat\n2025-11-30T22:00:00Z,385000,6672000\n")
    assert code == 2 and "projected" in out, out
    p0, p1 = f"{o.x},{o.y}", f"{d.x},{d.y}"
    code, out = run(ends, f"time,lon,lat\n2025-11-30T22:00:05Z,{p0}\n2025-11-30T22:00:00Z,{p1}\n")
    assert code == 2 and "not in order" in out, out
    code, out = run(ends, f"time,lon,lat\n2025-11-30T22:00:00Z,{p0}\n2025-11-30T22:00:00Z,{p1}\n")
    assert code == 2 and "duplicate time" in out, out
