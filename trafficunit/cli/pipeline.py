"""``trafficunit pipeline NETWORK --accidents ... --scheduler local -o OUTDIR``: build, join,
score on Dask."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .._errors import InputFileError, ValidationError
from . import _options as opt
from . import app
from ._common import console, period_bounds, reader_options, user_errors


def _file_id(path: Path | None) -> str:
    if path is None:
        return "none"
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _read_events(path: Path, kind: str, preset: str | None, read: dict[str, Any]) -> Any:
    from .. import io
    from ..events import read_events

    if path.suffix.lower() in (".parquet", ".geoparquet") and preset is None and not read:
        table = io.read_table(path, index=None)
        if "event_id" in table.columns:  # already in the events schema (tu.read_events)
            return table
    return read_events(path, kind=kind, preset=preset, **read)


_PARQUET = (".parquet", ".geoparquet")


def _in_schema(path: Path, *, events: bool) -> bool:
    """Whether ``path`` is GeoParquet (for ``events``, with an ``event_id`` column: as
    ``tu.read_events`` writes them), by its schema alone."""
    import pyarrow.parquet as pq

    if path.suffix.lower() not in _PARQUET:
        return False
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # said before any input is read
        raise InputFileError(f"{path}: cannot read as Parquet ({exc})") from exc
    return b"geo" in (schema.metadata or {}) and (not events or "event_id" in schema.names)


def _from_files(
    network: Path, accidents: Path, hazards: Path | None, scheduler: str, custom_read: bool
) -> bool:
    """Whether the run goes from the files, out of this process (on Dask, every input a
    GeoParquet file already in the schema, no reading options); else the inputs are read
    into frames here first."""
    for p in (network, accidents, hazards):
        if p is not None and not p.is_file():
            raise InputFileError(f"{p}: no such file")
    events = [accidents] if hazards is None else [accidents, hazards]
    schema = [_in_schema(network, events=False), *(_in_schema(p, events=True) for p in events)]
    return scheduler.lower() != "none" and not custom_read and all(schema)


@app.command("pipeline")
def pipeline_cmd(
    network: Annotated[Path, typer.Argument(help="Road network: OSM file or a line file")],
    accidents: Annotated[
        Path, typer.Option("--accidents", help="Accidents file (CSV, GeoJSON, GPKG, Parquet)")
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", help="Data folder (as `trafficunit build` writes; served by `serve`)"
        ),
    ],
    scheduler: Annotated[
        str, typer.Option(help="'local' (start a local cluster), a scheduler address, or 'none'")
    ] = "local",
    workers: Annotated[int, typer.Option(help="Workers of the local cluster")] = 2,
    threads: Annotated[
        bool, typer.Option("--threads", help="Local workers as threads of this process")
    ] = False,
    memory_limit: Annotated[
        str, typer.Option(help="Memory limit per local worker ('auto', '4GB')")
    ] = "auto",
    hazards: Annotated[
        Path | None, typer.Option("--hazards", help="Hazards file, counted as open hazards")
    ] = None,
    preset: opt.EventsPreset = None,
    x: opt.EventsX = None,
    y: opt.EventsY = None,
    crs: opt.EventsCrs = None,
    time: opt.EventsTime = None,
    severity: opt.EventsSeverity = None,
    tz: opt.EventsTz = None,
    period: opt.ScoringPeriod = None,
    max_length_m: opt.MaxLengthM = None,
    junction_merge_m: opt.JunctionMergeM = None,
    metric_crs: opt.MetricCrs = None,
    cell_size_m: Annotated[
        float | None, typer.Option(help="Partition cell size, m (default: from the data)")
    ] = None,
    halo_m: Annotated[float | None, typer.Option(help="First halo around a cell, m")] = None,
    quiet: opt.Quiet = False,
) -> None:
    """Build units, join the accidents and score, partitioned spatially on Dask; the results
    equal a single-process run. An interrupted run started again resumes where it stopped.

    --preset and the column flags (--x to --tz) read the --accidents file, as `trafficunit
    join` reads its EVENTS.

    With a scheduler and every input a GeoParquet file already in the schema (the network
    as `tu.read_network` writes it, accidents and hazards as `tu.read_events` writes them,
    with event_id) and no reading option, the workers read the files themselves: the
    inputs never pass through this process (the summary says "from files"). Otherwise
    they are read into frames here first ("from frames"). Writing the data folder then
    reads the units, joined accidents and scored units back: black spots need whole roads.
    """
    with user_errors():
        from ..datafolder import DataFolder
        from ..distributed import run_pipeline
        from ..network import read_network
        from ..settings import DistributedSettings

        if output.suffix:
            raise ValidationError(f"-o {output}: give a directory (no suffix), e.g. -o results")
        folder = DataFolder(output, create=True)  # writable, checked before any work
        # the run's own resumable staging lives beside the folder until the folder is written
        work = output.parent / f".{output.name}.pipeline-run"
        per = period_bounds(period) if period else None
        flags = reader_options(x=x, y=y, crs=crs, time=time, severity=severity, tz=tz)
        read = {k: v for k, v in flags.items() if v is not None}
        custom = bool(read) or preset is not None
        files = _from_files(network, accidents, hazards, scheduler, custom)
        if files:  # the workers read the files (out of core); hazards from their file too
            roads, acc, hz = network, accidents, hazards
        else:
            roads = read_network(network)
            acc = _read_events(accidents, "accident", preset, read)
            hz = _read_events(hazards, "hazard", None, {}) if hazards is not None else None
        cfg = DistributedSettings(n_workers=workers, processes=not threads).with_(
            cell_size_m=cell_size_m, halo_m=halo_m, memory_limit=memory_limit
        )
        ident = "|".join(
            [_file_id(network), _file_id(accidents), _file_id(hazards), repr(read), str(preset)]
        )
        result = run_pipeline(
            roads,
            acc,
            hazards=hz,
            period=per,
            scheduler=None if scheduler.lower() == "none" else scheduler,
            outdir=work,
            max_length_m=max_length_m,
            junction_merge_m=junction_merge_m,
            crs=metric_crs,
            settings=cfg,
            fingerprint=hashlib.sha256(ident.encode()).hexdigest(),
            progress=not quiet,
        )
        risk, joined = write_folder(
            folder, result, network, accidents, hazards, read, preset, period=per
        )
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    print_summary(result.report, risk, joined, output)


def write_folder(
    folder: Any,
    result: Any,
    network: Path,
    accidents: Path,
    hazards: Path | None,
    read: dict[str, Any],
    preset: str | None,
    *,
    period: Any,
) -> tuple[Any, Any]:
    """The pipeline's results as a data folder: scored units, joined events, black spots
    (single process: they need whole roads; found while tippecanoe builds the tiles), tiles
    and the manifest; the scored units and joined accidents written. A run from files is read
    back here: its units, joined accidents and scored units."""
    import shlex
    import sys
    import warnings

    from ..blackspots import find_black_spots
    from ..datafolder import timer
    from ..distributed import PartitionedFrame
    from ..project import finish_folder

    lap = timer()
    parts = isinstance(result.risk, PartitionedFrame)
    joined_acc = result.joined.read() if parts else result.joined
    units = result.units.read() if parts else result.units
    crs = units.crs
    risk = result.risk.read() if parts else result.risk
    if parts:  # the attributes of a run from files are in its report
        risk.attrs = dict(result.report.get("risk", {}))
    read_s = lap()
    timings = {k: float(v) for k, v in result.report["seconds"].items() if k != "total"}
    if parts:
        timings["read results"] = round(read_s, 3)

    def spots() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return find_black_spots(units, joined_acc)

    joined = {"accidents": joined_acc}
    if result.hazards is not None:
        joined["hazards"] = result.hazards
    finish_folder(
        folder,
        scored=risk,
        joined=joined,
        spots=spots,
        timings=timings,
        lap=lap,
        say=lambda stage, msg: None,
        tiles={},
        name=network.stem,
        fields={
            "command": shlex.join(["trafficunit", *sys.argv[1:]]),
            "crs": str(crs) if crs is not None else None,
            "pipeline": {k: v for k, v in result.report.items() if k != "seconds"},
        },
    )
    folder.record_source("network", network)
    folder.record_source(
        "accident",
        accidents,
        options={**read, "preset": preset},
        report=joined_acc.attrs.get("report", {}).get("read") or {},
    )
    if hazards is not None:
        folder.record_source("hazard", hazards)
    return risk, joined_acc


def print_summary(report: dict[str, Any], risk: Any, joined: Any, output: Path) -> None:
    """Stages and their times, cells and retries, risk levels, matches."""
    how = ", from files" if "from_files" in report else ""
    if report["mode"] == "dask" and not how:
        how = ", from frames"
    console.print(f"pipeline: {report['mode']}{how}")
    t = Table(show_edge=False)
    t.add_column("stage")
    t.add_column("seconds", justify="right")
    for stage, sec in report["seconds"].items():
        t.add_row(stage, f"{sec:,.1f}")
    console.print(t)
    if report["mode"] == "dask":
        console.print(
            f"{report['cells']:,} cells, {report['tasks']:,} build tasks, "
            f"{report['halo_retries']:,} halo retries (largest halo {report['max_halo_m']:,.0f} m)"
            + (" - resumed an interrupted run" if report.get("resumed") else "")
        )
    rep = joined.attrs.get("report", {})
    files = report.get("from_files", {}).get("joined")
    if files:  # the cells' join summaries count rows (an accident that is a line: several)
        by = files["by_match"]
        on = by.get("matched", 0) + by.get("intersection", 0)
        console.print(
            f"{report['units']:,} units; {report['accidents']:,} accidents, "
            f"{files['rows']:,} joined rows, {on:,} on a unit"
        )
    elif rep:
        console.print(
            f"{report['units']:,} units; {rep['events']:,} accidents, {rep['matched']:,} on a unit "
            f"({100 * (rep['matched_share'] or 0):.1f} %)"
        )
    levels = risk["level"].value_counts()
    console.print(
        "levels: "
        + ", ".join(
            f"{lv} {int(levels.get(lv, 0)):,}" for lv in ("red", "orange", "yellow", "blue")
        )
    )
    console.print(
        f"wrote [bold]{output}[/] (scored units, accidents, black spots, risk.pmtiles, "
        f"manifest.json); serve it with: trafficunit serve {output}"
    )
