"""Benchmark: where tippecanoe's time goes in the tiles stage, zoom by zoom.

Run on demand: ``.venv/bin/python benchmarks/bench_tiles_zooms.py --folder DIR``.

``DIR`` is a data folder (e.g. ``bench_cli_pipeline.py``'s ``DIR/out-files``). Its scored
units and joined events are prepared and written as :func:`trafficunit.tiles.build_tiles_report`
does, then tippecanoe runs with the same options, its progress read as it goes: printed are the
seconds spent reading the input, on each zoom it passes through (zooms below the archive's
minimum are passes that write no tile; a zoom whose tile was too big is passed again with a
wider spacing, ``retries``) and on finishing the archive.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from trafficunit import io
from trafficunit.datafolder import DataFolder
from trafficunit.settings import TileSettings
from trafficunit.tiles import _tippecanoe_args, prepare_layer, tippecanoe_path, write_geojsonseq

PROGRESS = re.compile(r"%\s+(\d+)/\d+/\d+")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, required=True)
    args = ap.parse_args()
    src = DataFolder(args.folder)
    ts = TileSettings()
    frames = {"units": io.read_table(src.path("units"))}
    for table in ("accidents", "hazards", "workzones"):
        if src.has(table):
            frame = io.read_table(src.path(table), index=None)
            frames[table] = frame[frame["unit_id"].notna()] if "unit_id" in frame else frame
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        cmd = _tippecanoe_args(tippecanoe_path(), ts, "bench", "bench", None, work, False)
        for name, frame in frames.items():
            write_geojsonseq(prepare_layer(frame, name, settings=ts), work / f"{name}.geojsonl")
            cmd += ["--named-layer", f"{name}:{work / f'{name}.geojsonl'}"]
        cmd += ["--progress-interval=0.2", "--output", str(work / "out.pmtiles")]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        assert proc.stderr is not None
        marks: list[tuple[str, float]] = [("read input", t0)]
        retries: dict[str, int] = {}
        for line in iter_lines(proc):
            m = PROGRESS.search(line)
            now = time.perf_counter()
            last = marks[-1][0]
            if m and last.startswith("z") and int(m[1]) < int(last[1:]):
                marks.append(("finish archive", now))  # its progress restarts from low zooms
            elif m and last != "finish archive" and last != f"z{m[1]}":
                marks.append((f"z{m[1]}", now))
            elif "Going to try" in line:
                retries[last] = retries.get(last, 0) + 1
        if proc.wait() != 0:
            raise SystemExit(f"tippecanoe failed ({proc.returncode})")
        end = time.perf_counter()
    marks.append(("end", end))
    for (name, t), (_, t_next) in zip(marks, marks[1:], strict=False):
        below = name.startswith("z") and int(name[1:]) < ts.minzoom
        note = "  (below minzoom: writes no tile)" if below else ""
        note += f"  ({retries[name]} retries)" if name in retries else ""
        print(f"{name:16s} {t_next - t:6.1f} s{note}")
    print(f"tippecanoe total {end - t0:6.1f} s")


def iter_lines(proc: subprocess.Popen[bytes]) -> Iterator[str]:
    """tippecanoe's stderr, line by line (progress lines end in a carriage return)."""
    assert proc.stderr is not None
    buf = b""
    while True:
        ch = proc.stderr.read(1)
        if not ch:
            if buf:
                yield buf.decode(errors="replace")
            return
        if ch in b"\r\n":
            yield buf.decode(errors="replace")
            buf = b""
        else:
            buf += ch


if __name__ == "__main__":
    main()
