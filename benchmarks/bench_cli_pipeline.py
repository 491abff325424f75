"""Benchmark: `trafficunit pipeline` from files or from frames, and what writing its folder costs.

Run on demand: ``.venv/bin/python benchmarks/bench_cli_pipeline.py --data DIR
[--edges 50000] [--accidents 100000] [--mode files|frames]``.

``DIR`` gets (once) ``bench_scale.py``'s GENERATED grid city (not real data) with
``--accidents`` accidents and 2,000 hazards on accident points (``event_id``, ``kind``,
``grade``, ``status``), all GeoParquet in the schema. The command then runs in this process
on a local cluster of two worker processes, writing ``DIR/out-MODE``: ``files`` as the CLI
chooses (the workers read the files), ``frames`` as before (the inputs read into frames here
first). Printed: the wall time, this process's peak resident memory over the whole command
(``getrusage``: the client, not the workers), the run's per-stage client peaks and the
folder's timings (black spots and tiles are single-process).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def generate(data: Path, edges: int, accidents: int) -> None:
    """The city, accidents and hazards of ``data`` (GENERATED), unless already there."""
    if all((data / f).exists() for f in ("roads.parquet", "accidents.parquet", "hazards.parquet")):
        return
    sys.path.insert(0, str(HERE))
    from bench_scale import accidents_on_grid, grid_city_lines

    data.mkdir(parents=True, exist_ok=True)
    n = max(2, round((1 + math.sqrt(1 + 2 * edges)) / 2))
    roads, x, y = grid_city_lines(n)
    roads.to_parquet(data / "roads.parquet")
    acc = accidents_on_grid(x, y, accidents)
    acc.to_parquet(data / "accidents.parquet")
    rng = np.random.default_rng(7)
    rows = np.sort(rng.choice(len(acc), min(2000, len(acc)), replace=False))
    hz = acc.iloc[rows][["geometry"]].reset_index(drop=True)
    hz.insert(0, "event_id", [f"H{i:05d}" for i in range(len(hz))])
    hz.insert(1, "kind", "hazard")
    hz.insert(2, "grade", rng.choice(["general", "major"], len(hz), p=[0.85, 0.15]))
    hz.insert(3, "status", rng.choice(["reported", "rectifying", "closed"], len(hz)))
    hz.to_parquet(data / "hazards.parquet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--edges", type=int, default=50_000)
    ap.add_argument("--accidents", type=int, default=100_000)
    ap.add_argument("--mode", choices=("files", "frames"), default="files")
    args = ap.parse_args()
    generate(args.data, args.edges, args.accidents)
    from typer.testing import CliRunner

    import trafficunit.cli.pipeline as cli
    from trafficunit.cli import app

    if args.mode == "frames":  # the inputs read into frames here, as before the files path
        cli._from_files = lambda *a: False  # type: ignore[assignment]
    d, out = args.data, args.data / f"out-{args.mode}"
    inputs = [str(d / "roads.parquet"), "--accidents", str(d / "accidents.parquet")]
    inputs += ["--hazards", str(d / "hazards.parquet")]
    t = time.perf_counter()
    res = CliRunner().invoke(
        app, ["pipeline", *inputs, "--scheduler", "local", "--workers", "2", "-o", str(out), "-q"]
    )
    wall = time.perf_counter() - t
    print(res.output)
    if res.exit_code != 0:
        raise SystemExit(f"exit code {res.exit_code}: {res.exception!r}")
    m = json.loads((out / "manifest.json").read_text())
    print(f"wall {wall:.1f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KB on Linux
    print(f"client peak over the command: {peak} MB")
    print("client peaks by stage (MB):", m["pipeline"]["client_peak_rss_mb"])
    print("worker peaks (MB):", m["pipeline"]["worker_peak_rss_mb"])
    print("timings (s):", m["timings_s"])
    print("counts:", m["counts"])


if __name__ == "__main__":
    main()
