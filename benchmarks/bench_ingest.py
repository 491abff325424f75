"""Benchmark: the live loop, accidents through ``POST /accidents`` with the warning rules on.

Run on demand: ``.venv/bin/python benchmarks/bench_ingest.py [--city N] [--batches 10]``.

Builds a data folder (units scored with ``tu.score``) on the Helsinki sample network, or with
``--city N`` on a generated N x N street grid (``benchmarks/_synthetic.py``; N=225 gives about
150,000 units; GENERATED, not real data), then, in one process through the ASGI app
(``fastapi.testclient``, SQLite ledger, the four default warning rules on):

- throughput: ``--batches`` POSTs of ``--batch-size`` generated accidents each (accidents/s,
  acknowledged = stored durably, counted into levels, rules evaluated);
- write -> visible: ``--writes`` single-accident POSTs, each followed by the live-units tile
  at the accident; the time from the acknowledgement to that tile (p50/p99), checked to carry
  the unit's new crash count;
- the named peer: a full batch rebuild of the levels (``tu.score`` of every unit with every
  accident), what a batch product needs per change; ratio peer / live p50.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import mapbox_vector_tile
import numpy as np
import pandas as pd

import trafficunit as tu
from trafficunit import mvt
from trafficunit.io import write_table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ADMIN = "bench-admin-token-0123456789"
H = {"Authorization": f"Bearer {ADMIN}"}


def build(folder: Path, city: int | None) -> tuple[Any, Any, float]:
    """Units, the accidents of the build, and the seconds of the batch rebuild (the peer)."""
    warnings.simplefilter("ignore")
    t = time.perf_counter()
    if city:
        from benchmarks._synthetic import grid_city_osm

        osm = folder / "city.osm"
        grid_city_osm(osm, n=city)
        roads = tu.read_network(osm)
    else:
        roads = tu.read_network(tu.sample_network_path())
    units = tu.build_units(roads)
    print(f"units: {len(units):,} ({time.perf_counter() - t:.1f} s to build)", flush=True)
    n_acc = max(1500, len(units) // 10)
    ev = tu.sample.generate(units, seed=5, n_accidents=n_acc, n_hazards=10, n_workzones=5)
    acc = tu.assign(units, ev["accidents"])
    t = time.perf_counter()
    risk = tu.score(units, acc, period=("2016-01-01", "2018-12-31"))
    rebuild_s = time.perf_counter() - t
    out = risk.to_crs(4326)
    rule = json.loads(json.dumps(risk.attrs["rule"], default=str))
    out.attrs = {}
    write_table(out, folder / "units.parquet")
    write_table(acc.to_crs(4326), folder / "accidents.parquet")
    (folder / "manifest.json").write_text(json.dumps({"rule": rule}), encoding="utf-8")
    return units.to_crs(4326), acc, rebuild_s


def feature(eid: str, pt: Any, sev: str, when: pd.Timestamp) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [pt.x, pt.y]},
        "properties": {
            "event_id": eid,
            "time": when.isoformat(),
            "severity": sev,
            "collision_type": "rear-end",
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--city", type=int, default=None, help="Generated N x N grid (225: ~150k)")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--writes", type=int, default=200, help="Single writes timed to the tile")
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from trafficunit_server import Settings, create_app
    from trafficunit_server.settings import LedgerServerSettings

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        units, _, rebuild_s = build(folder, args.city)
        segs = units[units["kind"] == "segment"]
        rng = np.random.default_rng(7)
        mids = segs.geometry.interpolate(0.5, normalized=True).to_numpy()
        # positions that join to their own segment (short ones fall in an intersection)
        probe = gpd.GeoDataFrame(
            {"event_id": [str(i) for i in range(len(mids))], "kind": "accident"},
            geometry=mids,
            crs=4326,
        )
        hit = tu.assign(units, probe).drop_duplicates("event_id")
        own = hit["unit_id"].astype(str).to_numpy() == segs.index.astype(str).to_numpy()
        segs, mids = segs[own], mids[own]
        settings = Settings(
            data_dir=folder,
            ledger=LedgerServerSettings(
                admin_token=ADMIN, sweep_interval_s=0, sqlite_synchronous="FULL"
            ),
        )
        t0 = pd.Timestamp("2017-01-01T00:00:00+00:00")
        with TestClient(create_app(settings)) as c:
            # throughput
            k = 0
            t = time.perf_counter()
            for _ in range(args.batches):
                pick = rng.integers(len(mids), size=args.batch_size)
                feats = []
                for p in pick:
                    when = t0 + pd.Timedelta(minutes=int(k))
                    feats.append(feature(f"G{k}", mids[p], "OOOCB"[k % 5], when))
                    k += 1
                r = c.post(
                    "/accidents", json={"type": "FeatureCollection", "features": feats}, headers=H
                )
                assert r.status_code == 200 and r.json()["stored"] == args.batch_size, r.text
            wall = time.perf_counter() - t
            rate = args.batches * args.batch_size / wall
            n_alerts = len(c.get("/alerts", params={"limit": 100000}).json()["alerts"])
            # write -> visible in the next tile request
            lat_ms = []
            post_ms = []
            for _ in range(args.writes):
                p = int(rng.integers(len(mids)))
                uid = str(segs.index[p])
                when = t0 + pd.Timedelta(minutes=int(k))
                z = 17
                x, y = mvt.lonlat_to_tile(mids[p].x, mids[p].y, z)
                before = _crashes(c.get(f"/tiles/live-units/{z}/{x}/{y}.mvt").content, uid)
                a = time.perf_counter()
                r = c.post("/accidents", json=feature(f"G{k}", mids[p], "O", when), headers=H)
                b = time.perf_counter()
                k += 1
                assert r.json()["stored"] == 1, r.text
                tile = c.get(f"/tiles/live-units/{z}/{x}/{y}.mvt")
                e = time.perf_counter()
                after = _crashes(tile.content, uid)
                assert after == before + 1, (uid, before, after, r.json()["items"])
                post_ms.append((b - a) * 1000)
                lat_ms.append((e - b) * 1000)
        p50, p99 = np.percentile(lat_ms, [50, 99])
        w50, w99 = np.percentile(post_ms, [50, 99])
        print(
            f"network: {'generated grid ' + str(args.city) if args.city else 'Helsinki sample'}"
            f", units {len(units):,}"
        )
        print(
            f"ingest: {rate:,.0f} accidents/s in batches of {args.batch_size} "
            f"({args.batches} POSTs, rules on, {n_alerts} alerts)"
        )
        print(f"single write POST: p50 {w50:.1f} ms, p99 {w99:.1f} ms")
        print(
            f"ack -> next live-units tile shows it: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
            f"({args.writes} writes)"
        )
        print(
            f"peer: batch rebuild of every level (tu.score): {rebuild_s * 1000:.0f} ms; "
            f"ratio peer / live p50 = {rebuild_s * 1000 / p50:.0f}x"
        )


def _crashes(content: bytes, uid: str) -> int:
    if content[:2] == b"\x1f\x8b":
        content = gzip.decompress(content)
    layers = mapbox_vector_tile.decode(content)
    for f in layers.get("units", {}).get("features", []):
        if f["properties"].get("unit_id") == uid:
            return int(f["properties"]["crashes"])
    raise AssertionError(f"{uid} not in the tile")


if __name__ == "__main__":
    main()
