"""Benchmark: building z10-z16 risk tiles for 200,000 segments, three ways, in one run.

Run on demand: ``.venv/bin/python benchmarks/bench_tiles.py [--n 200000] [--naive-max-s 600]``.

With ``--folder DIR`` (a data folder, e.g. ``bench_cli_pipeline.py``'s ``DIR/out-files``) it
instead times the pipeline's tiles stage alone on that folder's scored units and joined events
(default zooms, as ``trafficunit pipeline`` builds them): preparing the layers, writing their
GeoJSONSeq, tippecanoe; and prints a digest of every tile's decoded bytes, so two builds (e.g.
two commits) can be checked to give the same archive.

- **ours**: :func:`trafficunit.tiles.build_tiles` (vectorised GeoJSON writer + tippecanoe with
  per-feature minzoom by risk, simplification, drop-densest; output PMTiles, atomic);
- **tippecanoe**: the tippecanoe binary alone on the same features, already written as
  line-delimited GeoJSON (file writing not timed), default options (``-zg`` not used: same zooms);
- **naive**: a Python pipeline with ``mapbox-vector-tile``: for every tile of every zoom, query
  an STRtree, clip with shapely, ``mapbox_vector_tile.encode`` the features, write PMTiles.

Ours is tippecanoe plus a Python preparation step, so it is expected to be about as fast as
tippecanoe alone (the ratio shows the overhead of preparing the data); both must beat naive.
"""

from __future__ import annotations

import argparse
import gzip
import math
import subprocess
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import mapbox_vector_tile
import numpy as np
import shapely
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from trafficunit import mvt
from trafficunit.tiles import (
    build_tiles_report,
    prepare_layer,
    tippecanoe_path,
    write_geojsonseq,
)

LEVELS = np.array(["red", "orange", "yellow", "blue"])
CLASSES = np.array(["primary", "secondary", "tertiary", "residential", "service"])


def grid_segments(n: int, *, seed: int = 1) -> gpd.GeoDataFrame:
    """About ``n`` street segments (~110 m) on a jittered grid east of Helsinki, scored."""
    rng = np.random.default_rng(seed)
    side = int(math.ceil(math.sqrt(n / 2))) + 1
    step_lon, step_lat = 0.002, 0.001  # ~111 m
    i, j = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    x0 = 24.6 + i * step_lon + rng.normal(0, 0.0002, i.shape)
    y0 = 60.0 + j * step_lat + rng.normal(0, 0.0001, i.shape)
    starts, ends = [], []
    for di, dj in ((1, 0), (0, 1)):
        a = (slice(0, side - di), slice(0, side - dj))
        b = (slice(di, side), slice(dj, side))
        starts.append(np.c_[x0[a].ravel(), y0[a].ravel()])
        ends.append(np.c_[x0[b].ravel(), y0[b].ravel()])
    s, e = np.concatenate(starts)[:n], np.concatenate(ends)[:n]
    mid = (s + e) / 2 + rng.normal(0, 0.00005, s.shape)  # one bend per segment
    coords = np.stack([s, mid, e], axis=1).reshape(-1, 2)
    lines = shapely.linestrings(coords, indices=np.repeat(np.arange(len(s)), 3))
    m = len(lines)
    p = rng.random(m)
    level = np.select([p < 0.03, p < 0.12, p < 0.35], ["red", "orange", "yellow"], "blue")
    return gpd.GeoDataFrame(
        {
            "kind": "segment",
            "level": level,
            "road_class": CLASSES[rng.integers(0, len(CLASSES), m)],
            "name": np.char.add("Street ", (np.arange(m) % 997).astype(str)),
            "crashes": rng.poisson(1.5, m),
            "epdo_per_km": rng.gamma(2.0, 10.0, m).round(2),
            "score_percentile": (rng.random(m) * 100).round(1),
            "maxspeed_kmh": rng.choice([30.0, 40.0, 50.0, 60.0], m),
            "length_m": 111.0,
        },
        geometry=lines,
        index=np.char.add("S", np.char.zfill(np.arange(m).astype(str), 12)),
        crs=4326,
    ).rename_axis("unit_id")


def run_ours(units: gpd.GeoDataFrame, out: Path) -> float:
    t = time.perf_counter()
    rep = build_tiles_report(units, output=out, minzoom=10, maxzoom=16)
    took = time.perf_counter() - t
    print(
        f"ours        {took:7.1f} s  (prepare {rep.prepare_s:.1f} s, write {rep.write_s:.1f} s, "
        f"tippecanoe "
        f"{rep.tippecanoe_s:.1f} s)  {rep.bytes / 1e6:6.1f} MB"
    )
    return took


def run_tippecanoe(units: gpd.GeoDataFrame, out: Path, tmp: Path) -> float:
    layer = prepare_layer(units, "units")
    src = tmp / "units.geojsonl"
    write_geojsonseq(layer, src)  # not timed
    cmd = [
        str(tippecanoe_path()),
        "-o",
        str(out),
        "--force",
        "-Z10",
        "-z16",
        "-l",
        "units",
        "--read-parallel",
        "--quiet",
        "--drop-densest-as-needed",
        str(src),
    ]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    took = time.perf_counter() - t
    print(
        f"tippecanoe  {took:7.1f} s  (binary alone, input already GeoJSON)  "
        f"{out.stat().st_size / 1e6:6.1f} MB"
    )
    return took


def run_naive(units: gpd.GeoDataFrame, out: Path, max_s: float) -> tuple[float, bool]:
    """mapbox-vector-tile per tile; stops after ``max_s`` and extrapolates by tiles done."""
    t = time.perf_counter()
    merc = units.to_crs(3857)
    geoms = np.asarray(merc.geometry.array)
    tree = shapely.STRtree(geoms)
    props = units[["level", "road_class", "crashes", "score_percentile"]].to_dict("records")
    minx, miny, maxx, maxy = units.total_bounds
    tiles = []
    for z in range(10, 17):
        x0, y1 = mvt.lonlat_to_tile(minx, miny, z)
        x1, y0 = mvt.lonlat_to_tile(maxx, maxy, z)
        tiles += [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
    done = 0
    finished = True
    with open(out, "wb") as fh:
        writer = Writer(fh)
        for z, x, y in sorted(tiles, key=lambda k: zxy_to_tileid(*k)):
            b = mvt.tile_bounds(z, x, y)
            idx = tree.query(shapely.box(*b))
            if len(idx):
                clipped = shapely.clip_by_rect(geoms[idx], *b)
                feats = [
                    {"geometry": g, "properties": props[i]}
                    for g, i in zip(clipped, idx, strict=True)
                    if not g.is_empty
                ]
                data = mapbox_vector_tile.encode(
                    [{"name": "units", "features": feats}], default_options={"quantize_bounds": b}
                )
                writer.write_tile(zxy_to_tileid(z, x, y), gzip.compress(data))
            done += 1
            if time.perf_counter() - t > max_s:
                finished = False
                break
        writer.finalize(
            {
                "tile_type": TileType.MVT,
                "tile_compression": Compression.GZIP,
                "min_zoom": 10,
                "max_zoom": 16,
                "min_lon_e7": int(minx * 1e7),
                "min_lat_e7": int(miny * 1e7),
                "max_lon_e7": int(maxx * 1e7),
                "max_lat_e7": int(maxy * 1e7),
                "center_zoom": 12,
                "center_lon_e7": int((minx + maxx) / 2 * 1e7),
                "center_lat_e7": int((miny + maxy) / 2 * 1e7),
            },
            {"name": "naive"},
        )
    took = time.perf_counter() - t
    if not finished:
        est = took * len(tiles) / max(done, 1)
        print(
            f"naive       {took:7.1f} s  stopped after {done}/{len(tiles)} tiles; "
            f"estimated {est:.0f} s for all"
        )
        return est, False
    print(f"naive       {took:7.1f} s  ({len(tiles)} tiles, mapbox-vector-tile)")
    return took, True


def tile_digest(path: Path) -> tuple[int, str]:
    """Tiles in an archive and a SHA-256 over every tile's id and gunzipped bytes, in id order."""
    import hashlib

    from pmtiles.reader import MmapSource, Reader, all_tiles

    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as fh:
        tiles = sorted(all_tiles(Reader(MmapSource(fh)).get_bytes), key=lambda t: t[0])
    for zxy, data in tiles:
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        h.update(repr(zxy).encode() + raw)
        n += 1
    return n, h.hexdigest()


def run_folder(folder: Path, out: Path) -> None:
    """The pipeline's tiles stage on a data folder's tables, timed by part."""
    from trafficunit import io
    from trafficunit.datafolder import DataFolder

    src = DataFolder(folder)
    units = io.read_table(src.path("units"))
    events = {
        t: io.read_table(src.path(t), index=None)
        for t in ("accidents", "hazards", "workzones")
        if src.has(t)
    }
    t = time.perf_counter()
    rep = build_tiles_report(units, output=out, **events)
    took = time.perf_counter() - t
    write_s = getattr(rep, "write_s", None)  # older reports counted writing in prepare_s
    parts = f"prepare {rep.prepare_s:.1f} s" + (
        f", write {write_s:.1f} s" if write_s is not None else " (incl. write)"
    )
    print(f"features: {rep.features}")
    print(f"tiles stage {took:7.1f} s  ({parts}, tippecanoe {rep.tippecanoe_s:.1f} s)")
    n, digest = tile_digest(out)
    print(f"{rep.bytes / 1e6:.1f} MB, {n} tiles, digest {digest}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="segments")
    ap.add_argument(
        "--naive-max-s",
        type=float,
        default=600.0,
        help="stop the naive pipeline after this many seconds and extrapolate",
    )
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument(
        "--repeat", type=int, default=2, help="alternate ours/tippecanoe runs; best of each"
    )
    ap.add_argument(
        "--folder", type=Path, help="time the tiles stage on this data folder's tables instead"
    )
    args = ap.parse_args()
    if args.folder is not None:
        with tempfile.TemporaryDirectory() as d:
            run_folder(args.folder, Path(d) / "risk.pmtiles")
        return
    units = grid_segments(args.n)
    print(
        f"{len(units):,} segments, z10-z16, {Path('/proc/cpuinfo').read_text().count('processor')} "
        "cores"
    )
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        # alternate the two so a busy neighbour on a shared machine hits both alike
        ours_t, tip_t = [], []
        for _ in range(args.repeat):
            ours_t.append(run_ours(units, tmp / "ours.pmtiles"))
            tip_t.append(run_tippecanoe(units, tmp / "tip.pmtiles", tmp))
        ours, tip = min(ours_t), min(tip_t)
        print(
            f"best of {args.repeat}: ours {ours:.1f} s, tippecanoe {tip:.1f} s; "
            f"ours / tippecanoe: {ours / tip:.2f}x the time"
        )
        if not args.skip_naive:
            naive, _ = run_naive(units, tmp / "naive.pmtiles", args.naive_max_s)
            print(f"naive / ours: {naive / ours:.1f}x slower")


if __name__ == "__main__":
    main()
