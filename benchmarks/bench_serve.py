"""Benchmark: serving tiles and GeoJSON over loopback with wrk, beside nginx, in one run.

Run on demand (needs Debian's ``nginx`` and ``wrk``: ``apt-get install -y nginx wrk``)::

    .venv/bin/python benchmarks/bench_serve.py [--grid 320] [--data DIR] [--rounds 3]
        [--only stored,live,geojson] [--duration 10] [--connections 32]

Builds a data folder with ``build_demo`` (the Helsinki sample, or with ``--grid 320`` a
generated street grid of about 200,000 segments; both with the generated event sample) unless
``--data`` is given, then measures with ``wrk -t2 -c32`` on 127.0.0.1, each server in turn:

1. stored tiles: **nginx** serving every tile of ``risk.pmtiles`` extracted to static files
   (same gzip bytes, ``Content-Encoding: gzip``) and **ours** (``trafficunit serve --workers 2``:
   Granian, RSGI fast path, archive directories cached) in ``--rounds`` alternations, the
   median ratio printed; then ours under uvicorn (``--server uvicorn``) and **naive** (FastAPI
   calling ``pmtiles.Reader.get`` per request, which re-reads the directories every call);
2. live tiles z14-z16 (accidents with date/night filters) with the LRU cache disabled (every
   request encodes a tile), **PostGIS** ``ST_AsMVT`` on the same URLs (FastAPI + psycopg pool,
   skipped when no PostGIS), and ours with the cache enabled;
3. GeoJSON of units in 1 km² boxes centred on random units (``/units?bbox=``).

Every request loop is bounded by ``--duration`` seconds and targets 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

WRK_LUA = """
local paths = {}
for line in io.lines(os.getenv("WRK_PATHS")) do paths[#paths + 1] = line end
math.randomseed(42)
request = function()
  return wrk.format("GET", paths[math.random(#paths)], {["Accept-Encoding"] = "gzip"})
end
"""

NAIVE_APP = """
import os
from fastapi import FastAPI, Response
from pmtiles.reader import MmapSource, Reader
app = FastAPI()
fh = open(os.environ["ARCHIVE"], "rb")
reader = Reader(MmapSource(fh))
@app.get("/tiles/risk/{z}/{x}/{y}.mvt")
def tile(z: int, x: int, y: int) -> Response:
    data = reader.get(z, x, y)
    if not data:
        return Response(status_code=204)
    return Response(data, media_type="application/vnd.mapbox-vector-tile",
                    headers={"Content-Encoding": "gzip"})
"""

NGINX_CONF = """
worker_processes 2;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  types {{ application/vnd.mapbox-vector-tile mvt; }}
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location /tiles/ {{
      root {root};
      add_header Content-Encoding gzip;
      add_header Cache-Control "public, max-age=300";
      etag on;
    }}
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0, settle: float = 8.0) -> None:
    """Wait until ``url`` answers, then ``settle`` seconds more (every worker started)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=1):
                time.sleep(settle)  # the first worker answers while the others still load
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


@contextmanager
def process(cmd: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    # Same session as wrk and this script for every server: with the kernel's autogroup
    # scheduling a new session would get its own share of the CPU and skew the comparison.
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)  # nginx and uvicorn masters stop their own workers
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wrk(
    url: str, paths: list[str], tmp: Path, *, duration: int, connections: int
) -> dict[str, float]:
    """Run wrk over ``paths`` picked at random; return req/s, p50 and p99 latency (ms)."""
    lua = tmp / "paths.lua"
    lua.write_text(WRK_LUA)
    plist = tmp / f"paths-{random.random():.6f}.txt"
    plist.write_text("\n".join(paths) + "\n")
    env = {**os.environ, "WRK_PATHS": str(plist)}
    base = ["wrk", "-t2", f"-c{connections}", "--latency", "-s", str(lua)]
    # a short warm-up fills the caches of every worker, then the measured run
    subprocess.run([*base, "-d2s", url], env=env, capture_output=True, check=True)
    out = subprocess.run(
        [*base, f"-d{duration}s", url], env=env, capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return math.nan
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    return {"rps": rps, "p50": pct("50"), "p99": pct("99"), "non2xx": errors}


def show(label: str, r: dict[str, float], ref: dict[str, float] | None = None) -> None:
    ratio = f"  {r['rps'] / ref['rps'] * 100:5.1f}% of nginx" if ref else ""
    bad = f"  ({int(r['non2xx'])} non-2xx)" if r["non2xx"] else ""
    print(
        f"{label:<34} {r['rps']:>9,.0f} req/s  p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms"
        f"{ratio}{bad}"
    )


def extract_tiles(archive: Path, root: Path) -> list[str]:
    """Write every tile of the archive as root/tiles/risk/z/x/y.mvt (bytes as stored)."""
    from pmtiles.reader import MmapSource, all_tiles

    paths = []
    with open(archive, "rb") as fh:
        for (z, x, y), data in all_tiles(MmapSource(fh)):
            p = root / "tiles" / "risk" / str(z) / str(x) / f"{y}.mvt"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            paths.append(f"/tiles/risk/{z}/{x}/{y}.mvt")
    return paths


def serve_ours(
    data: Path, port: int, *, workers: int = 2, cache: int | None = None, server: str = "granian"
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """``trafficunit serve DATA --workers 2`` as a user runs it (``--server`` picks the engine)."""
    env = {}
    if cache is not None:
        env["TRAFFICUNIT_TILES_CACHE_ENTRIES"] = str(cache)
    cli = str(Path(PY).parent / "trafficunit")
    cmd = [cli, "serve", str(data), "--port", str(port), "--workers", str(workers)]
    return process([*cmd, "--server", server], env)


def live_paths(lon0: float, lat0: float, lon1: float, lat1: float) -> list[str]:
    from trafficunit.mvt import lonlat_to_tile

    filters = [
        "",
        "?light=night",
        "?light=day",
        "?from=2017-01-01&to=2017-12-31",
        "?from=2018-01-01&to=2018-06-30&light=night",
    ]
    out = []
    for z in (14, 15, 16):
        x0, y1 = lonlat_to_tile(lon0, lat0, z)
        x1, y0 = lonlat_to_tile(lon1, lat1, z)
        for x in range(x0, x1 + 1):
            for y in range(y0, y1 + 1):
                out += [f"/tiles/live-accidents/{z}/{x}/{y}.mvt{f}" for f in filters]
    return out


def bbox_paths(units: Any, n: int = 500) -> list[str]:
    """1 km² boxes centred on random units: where users look, so dense areas weigh most."""
    rng = np.random.default_rng(7)
    pts = units.geometry.representative_point()
    pick = rng.choice(len(pts), size=n)
    xs, ys = pts.x.to_numpy()[pick], pts.y.to_numpy()[pick]
    out = []
    for x, y in zip(xs, ys, strict=True):
        dlat = 0.5 / 111.32  # half a kilometre
        dlon = 0.5 / (111.32 * math.cos(math.radians(y)))
        box = f"{x - dlon:.5f},{y - dlat:.5f},{x + dlon:.5f},{y + dlat:.5f}"
        out.append(f"/units?bbox={box}&limit=10000")
    return out


def postgis_peer(
    pg_url: str, data: Path, paths: list[str], tmp: Path, w: dict[str, int]
) -> dict[str, float] | None:
    """The same live-tile URLs answered by ST_AsMVT (FastAPI + psycopg pool, 2 workers)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import _postgis_tiles

    try:
        name, url = _postgis_tiles.load(pg_url, str(data / "accidents.parquet"))
    except Exception as exc:
        print(f"(PostGIS peer skipped: {exc})")
        return None
    try:
        port = free_port()
        cmd = [
            PY,
            "-m",
            "uvicorn",
            "_postgis_tiles:app",
            "--app-dir",
            str(Path(__file__).parent),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--no-access-log",
            "--no-proxy-headers",
            "--no-server-header",
            "--log-level",
            "warning",
        ]
        with process(cmd, {"PG_URL": url}):
            wait_http(f"http://127.0.0.1:{port}/docs")
            return wrk(f"http://127.0.0.1:{port}", paths, tmp, **w)
    finally:
        _postgis_tiles.drop(pg_url, name)


def naive_server(tmp: Path, data: Path, port: int) -> AbstractContextManager[Any]:
    naive_py = tmp / "naive_app.py"
    naive_py.write_text(NAIVE_APP)
    cmd = [PY, "-m", "uvicorn", "naive_app:app", "--app-dir", str(tmp), "--port", str(port)]
    cmd += ["--workers", "2", "--http", "httptools", "--loop", "uvloop", "--no-access-log"]
    return process([*cmd, "--log-level", "warning"], {"ARCHIVE": str(data / "risk.pmtiles")})


def stored_section(
    args: argparse.Namespace, data: Path, tmp: Path, w: dict[str, int]
) -> dict[str, float]:
    """nginx, ours (Granian) and ours under uvicorn in turn, ``--rounds`` times; then the naive
    reader once. Ratios are taken within a round and their median printed."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    static = tmp / "static"
    paths = extract_tiles(data / "risk.pmtiles", static)
    print(f"{len(paths)} stored tiles, {args.rounds} round(s) of nginx, ours, ours under uvicorn")
    ratios: dict[str, list[float]] = {"granian": [], "uvicorn": []}
    rates: list[float] = []
    for _ in range(args.rounds):
        port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, root=static))
        with process([nginx, "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"]):
            wait_http(f"http://127.0.0.1:{port}{paths[0]}")
            ref = wrk(f"http://127.0.0.1:{port}", paths, tmp, **w)
        show("stored tiles: nginx static files", ref)
        for server, label in (("granian", "trafficunit serve"), ("uvicorn", "ours under uvicorn")):
            port = free_port()
            with serve_ours(data, port, server=server):
                wait_http(f"http://127.0.0.1:{port}/healthz")
                ours = wrk(f"http://127.0.0.1:{port}", paths, tmp, **w)
            show(f"stored tiles: {label}", ours, ref)
            ratios[server].append(ours["rps"] / ref["rps"])
            if server == "granian":
                rates.append(ours["rps"])
    port = free_port()
    with naive_server(tmp, data, port):
        wait_http(f"http://127.0.0.1:{port}/docs")
        naive = wrk(f"http://127.0.0.1:{port}", paths, tmp, **w)
    show("stored tiles: pmtiles.Reader per call", naive, ref)
    for server, rs in ratios.items():
        rs.sort()
        print(
            f"{server} / nginx per round: {', '.join(f'{r * 100:.1f}%' for r in rs)}; "
            f"median {rs[len(rs) // 2] * 100:.1f}%"
        )
    rates.sort()
    print(f"ours (median) / naive reader: {rates[len(rates) // 2] / naive['rps']:.0f}x\n")
    return ours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data",
        type=Path,
        help="data folder to serve; built there first when it holds no units.parquet "
        "(default: build into a temporary folder)",
    )
    ap.add_argument(
        "--grid",
        type=int,
        default=0,
        help="build the data folder from a generated N x N street grid with the generated "
        "event sample (320: about 200,000 segments) instead of the Helsinki sample",
    )
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3, help="nginx/ours alternations")
    ap.add_argument(
        "--only",
        default="stored,live,geojson",
        help="comma-separated sections to run: stored, live, geojson",
    )
    ap.add_argument(
        "--pg-url",
        default=os.environ.get(
            "TRAFFICUNIT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="PostgreSQL with PostGIS for the ST_AsMVT peer (skipped when unreachable)",
    )
    args = ap.parse_args()
    only = set(args.only.split(","))
    import geopandas as gpd

    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} not found: apt-get install -y nginx wrk")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tmp.chmod(0o755)  # nginx workers run as an unprivileged user
        data = args.data
        if data is None or not (data / "units.parquet").exists():
            sys.path.insert(0, str(ROOT))
            from trafficunit.cli.serve import build_demo

            data = data if data is not None else tmp / "demo"
            t = time.perf_counter()
            network = None
            if args.grid:
                sys.path.insert(0, str(Path(__file__).parent))
                from _synthetic import grid_city_osm

                network = tmp / "grid.osm"
                edges = grid_city_osm(network, n=args.grid)
                print(f"generated a {args.grid} x {args.grid} street grid ({edges:,} edges)")
            build_demo(data, network=network)
            print(f"built the data folder in {time.perf_counter() - t:.1f} s")
        data = data.resolve()
        n_units = pq.ParquetFile(data / "units.parquet").metadata.num_rows
        print(f"{data}: {n_units:,} units")
        print(
            f"wrk -t2 -c{args.connections} -d{args.duration}s, {os.cpu_count()} cores, "
            "everything on this machine\n"
        )
        w = {"duration": args.duration, "connections": args.connections}
        if "stored" in only:
            stored_section(args, data, tmp, w)

        units = gpd.read_parquet(data / "units.parquet").to_crs(4326)
        lon0, lat0, lon1, lat1 = units.total_bounds
        if "live" in only:
            lp = live_paths(lon0, lat0, lon1, lat1)
            print(f"{len(lp)} live tile URLs (z14-z16 x 5 filters)")
            port = free_port()
            with serve_ours(data, port, cache=0):
                wait_http(f"http://127.0.0.1:{port}/healthz")
                cold = wrk(f"http://127.0.0.1:{port}", lp, tmp, **w)
            show("live tiles, no cache (encode each)", cold)
            pg = postgis_peer(args.pg_url, data, lp, tmp, w)
            if pg is not None:
                show("live tiles, PostGIS ST_AsMVT", pg)
                print(f"live tiles, ours without cache / PostGIS: {cold['rps'] / pg['rps']:.2f}x")
            port = free_port()
            with serve_ours(data, port):
                wait_http(f"http://127.0.0.1:{port}/healthz")
                warm = wrk(f"http://127.0.0.1:{port}", lp, tmp, **w)
            show("live tiles, LRU cache", warm)
        if "geojson" in only:
            bp = bbox_paths(units)
            port = free_port()
            with serve_ours(data, port):
                wait_http(f"http://127.0.0.1:{port}/healthz")
                gj = wrk(f"http://127.0.0.1:{port}", bp, tmp, **w)
                sizes, counts = [], []
                for path in bp[:50]:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as r:
                        body = r.read()
                        sizes.append(len(body))
                        counts.append(int(r.headers["X-Total-Count"]))
            print(
                f"\n{len(bp)} boxes of 1 km²: {np.mean(counts):.0f} units, "
                f"{np.mean(sizes) / 1e3:.0f} KB on average (largest {max(counts)}, "
                f"{max(sizes) / 1e3:.0f} KB)"
            )
            show("GeoJSON units in 1 km² boxes", gj)


if __name__ == "__main__":
    main()
