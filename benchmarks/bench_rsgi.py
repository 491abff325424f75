"""Benchmark: the server under Granian's RSGI interface against Granian's ASGI interface.

Both run the same tile fast path (:class:`trafficunit_server.fastpath.TileResponder`): RSGI
through :func:`trafficunit_server.rsgi.rsgi_from_env` (one ``response_bytes`` call per tile),
ASGI through :func:`trafficunit_server.app.app_from_env` (:class:`TileFastPath`, ASGI message
dicts). Run on demand (needs ``wrk``: ``apt-get install -y wrk``)::

    .venv/bin/python benchmarks/bench_rsgi.py [--data DIR] [--rounds 5] [--duration 5]
        [--connections 16] [--port 8640]

Builds the demo data folder (``build_demo``) unless ``--data`` is given and starts both
interfaces (each one Granian worker, single-threaded runtime, HTTP/1.1, as ``trafficunit
serve``; on 127.0.0.1 ports ``--port`` and ``--port + 1``). Each of ``--rounds`` rounds runs
``wrk`` on both, back to back in alternating order, for three loads: stored tiles (every tile of
``risk.pmtiles`` at z14-z15, gzip accepted), live tiles (live-accidents at z14 with a night
filter, cached) and GeoJSON (``/units?bbox=``, through the RSGI bridge or straight to
FastAPI). The median requests/s and the median of the per-round ratios RSGI/ASGI are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_serve import wrk

PY = Path(sys.executable)
GRANIAN = PY.parent / "granian"
TARGETS = {
    "rsgi": ("rsgi", "trafficunit_server.rsgi:rsgi_from_env"),
    "asgi": ("asgi", "trafficunit_server.app:app_from_env"),
}


def _paths(data: Path) -> dict[str, list[str]]:
    """Request paths of the three workloads over the data folder's units."""
    import geopandas as gpd
    import numpy as np

    from trafficunit import mvt

    units = gpd.read_parquet(data / "units.parquet").to_crs(4326)
    xy = np.asarray([(p.x, p.y) for p in units.geometry.representative_point()])
    stored = sorted(
        {f"/tiles/risk/{z}/{x}/{y}.mvt" for z in (14, 15) for x, y in _tiles(mvt, xy, z)}
    )
    live = sorted(
        {f"/tiles/live-accidents/14/{x}/{y}.mvt?light=night" for x, y in _tiles(mvt, xy, 14)}
    )
    rng = np.random.default_rng(7)
    boxes = []
    for lon, lat in xy[rng.choice(len(xy), size=min(200, len(xy)), replace=False)]:
        d = 0.004
        boxes.append(f"/units?bbox={lon - d:.5f},{lat - d / 2:.5f},{lon + d:.5f},{lat + d / 2:.5f}")
    return {"stored": stored, "live": live, "geojson": boxes}


def _tiles(mvt: object, xy: object, z: int) -> set[tuple[int, int]]:
    return {mvt.lonlat_to_tile(lon, lat, z) for lon, lat in xy}  # type: ignore[attr-defined]


@contextmanager
def _serve(kind: str, data: Path, port: int, log: Path) -> Iterator[str]:
    interface, target = TARGETS[kind]
    cmd = [str(GRANIAN), "--interface", interface, "--factory", target]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += ["--runtime-mode", "st", "--http", "1", "--no-ws", "--log-level", "warning"]
    env = {**os.environ, "TRAFFICUNIT_DATA_DIR": str(data)}
    with log.open("ab") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{kind} server did not start; see {log}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="a data folder (default: build the demo)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--port", type=int, default=8640)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-rsgi-"))
    data = args.data
    if data is None:
        from trafficunit.cli.serve import build_demo

        data = tmp / "demo"
        build_demo(data)
    paths = _paths(data)
    print(
        f"data {data}: {len(paths['stored'])} stored, {len(paths['live'])} live tiles, "
        f"{len(paths['geojson'])} bboxes; wrk -c{args.connections} -d{args.duration}s"
    )
    rps: dict[tuple[str, str], list[float]] = {}
    with (
        _serve("rsgi", data, args.port, tmp / "rsgi.log") as rsgi,
        _serve("asgi", data, args.port + 1, tmp / "asgi.log") as asgi,
    ):
        urls = {"rsgi": rsgi, "asgi": asgi}
        for r in range(args.rounds):
            for load, plist in paths.items():
                # the two interfaces back to back, in alternating order: a busy machine
                # slows both runs of a pair alike
                for kind in ("rsgi", "asgi") if r % 2 == 0 else ("asgi", "rsgi"):
                    got = wrk(
                        urls[kind], plist, tmp, duration=args.duration, connections=args.connections
                    )
                    if got["non2xx"]:
                        raise RuntimeError(f"{kind} {load}: {got['non2xx']} non-2xx answers")
                    rps.setdefault((kind, load), []).append(got["rps"])
            done = ", ".join(f"{k}/{w} {v[-1]:,.0f}" for (k, w), v in rps.items())
            print(f"round {r + 1}: {done}", flush=True)
    print("\nrequests/s (median of rounds)   RSGI     ASGI   RSGI/ASGI (median of rounds)")
    for load in paths:
        a, b = rps[("rsgi", load)], rps[("asgi", load)]
        ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
        print(
            f"  {load:<29} {statistics.median(a):>7,.0f} {statistics.median(b):>8,.0f}"
            f"   {ratio:.2f}"
        )


if __name__ == "__main__":
    main()
