"""Benchmark: ``tu.read_events`` with every check, beside a bare pandas + geopandas read.

Run on demand: ``.venv/bin/python benchmarks/bench_read.py [--rows 300000]``.

A generated (not real) crash table as a Shenzhen office would write it: GB18030, Chinese
headers, GCJ-02 positions scattered over Shenzhen, naive Beijing times, Chinese severity
labels. In the same run:

- ``tu.read_events(path, kind="accident", x="经度", y="纬度", crs="gcj02")``: encoding
  detected, columns recognised and checked by content, time zone looked up from the
  coordinates, implausible positions and dates dropped, read summary;
- the peer, a bare read told everything in advance: ``pd.read_csv(encoding="gb18030")``,
  GCJ-02 → WGS84, ``gpd.points_from_xy``, ``pd.to_datetime(format=...)`` localised to
  Asia/Shanghai, severity labels mapped.

With ``../shared/data`` present, the real UK STATS19 London file (20,876 rows) is timed too.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

import trafficunit as tu
from trafficunit.chinacrs import gcj02_to_wgs84, wgs84_to_gcj02

SEVERITY = {"死亡": "K", "重伤": "A", "轻伤": "B", "财产损失": "O"}


def write_table(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    lon = rng.uniform(113.85, 114.35, rows)
    lat = rng.uniform(22.50, 22.75, rows)
    glon, glat = wgs84_to_gcj02(lon, lat)
    t0 = pd.Timestamp("2020-01-01").value // 10**9
    secs = rng.integers(0, 4 * 365 * 86400, rows) + t0
    times = pd.to_datetime(secs, unit="s").strftime("%Y-%m-%d %H:%M:%S")
    df = pd.DataFrame(
        {
            "事故编号": [f"SZ{i:07d}" for i in range(rows)],
            "经度": np.round(glon, 6),
            "纬度": np.round(glat, 6),
            "事故等级": rng.choice(list(SEVERITY), rows, p=[0.02, 0.08, 0.4, 0.5]),
            "发生时间": times,
            "道路名称": rng.choice(["深南大道", "北环大道", "滨海大道", "红荔路"], rows),
        }
    )
    df.to_csv(path, index=False, encoding="gb18030")


def peer(path: Path) -> gpd.GeoDataFrame:
    df = pd.read_csv(path, encoding="gb18030")
    lon, lat = gcj02_to_wgs84(df["经度"].to_numpy(), df["纬度"].to_numpy())
    t = pd.to_datetime(df["发生时间"], format="%Y-%m-%d %H:%M:%S").dt.tz_localize("Asia/Shanghai")
    out = pd.DataFrame(
        {"event_id": df["事故编号"], "time": t, "severity": df["事故等级"].map(SEVERITY)}
    )
    return gpd.GeoDataFrame(out, geometry=gpd.points_from_xy(lon, lat), crs=4326)


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shenzhen.csv"
        write_table(path, args.rows)
        tu.events.zones_at(np.array([114.0]), np.array([22.5]))  # load the zone data once
        ours, t_ours = timed(tu.read_events, path, kind="accident", x="经度", y="纬度", crs="gcj02")
        theirs, t_peer = timed(peer, path)
        assert len(ours) == len(theirs) == args.rows
        assert (ours["time"] == theirs["time"]).all()
        assert (ours["severity"].to_numpy() == theirs["severity"].to_numpy()).all()
        rep = ours.attrs["report"]
        print(
            f"{args.rows:,} generated GB18030 rows: tu.read_events {t_ours:.2f} s "
            f"(encoding {rep['encoding']}, tz {rep['tz']}), bare pandas+geopandas read "
            f"{t_peer:.2f} s; ratio {t_ours / t_peer:.2f}x"
        )
    london = Path(__file__).resolve().parents[2] / "shared" / "data" / "crashes" / "london-2025.csv"
    if london.exists():
        ev, t = timed(
            tu.read_events, london, kind="accident", x="longitude", y="latitude", crs=4326
        )
        df, tp = timed(pd.read_csv, london)
        print(
            f"london-2025.csv ({len(ev):,} rows): tu.read_events {t:.2f} s, "
            f"pd.read_csv alone {tp:.2f} s; ratio {t / tp:.1f}x"
        )


if __name__ == "__main__":
    main()
