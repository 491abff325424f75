"""``trafficunit resegment OLD_UNITS NEW_NETWORK -o NEW_UNITS``: rebuild units, keep history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .. import io
from . import _options as opt
from . import app
from ._common import console, user_errors


@app.command("resegment")
def resegment_cmd(
    old_units: Annotated[
        Path, typer.Argument(help="Previous units (.parquet/.gpkg), or the last history table")
    ],
    new_network: Annotated[
        Path, typer.Argument(help="The edited road network (OSM file or line file)")
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="New units, .parquet (GeoParquet) or .gpkg")
    ],
    lineage: Annotated[
        Path | None, typer.Option("--lineage", help="Write the lineage table here (.parquet)")
    ] = None,
    history: Annotated[
        Path | None,
        typer.Option("--history", help="Write every unit version (current and retired) here"),
    ] = None,
    accidents: opt.JoinedAccidents = None,
    hazards: opt.JoinedHazards = None,
    events_out: Annotated[
        Path | None,
        typer.Option(
            "--events-dir",
            help="Directory for the re-assigned events (default: beside the new units)",
        ),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option(help="Date the new units take effect (default: now, UTC)")
    ] = None,
    max_length_m: opt.MaxLengthM = None,
    junction_merge_m: opt.JunctionMergeM = None,
    all_highways: opt.AllHighways = False,
    crs: opt.UnitsCrs = None,
    quiet: opt.Quiet = False,
) -> None:
    """Rebuild the units of an edited network; unchanged units keep their ids, the rest get a
    lineage (split, merged, reshaped, removed, added) and the events follow.

    The events are those joined to OLD_UNITS. Give --max-length-m, --junction-merge-m and
    --crs the values the old units were built with: unchanged units keep their ids only then.
    """
    with user_errors():
        from ..lineage import resegment
        from ..network import read_network

        for path in (output, lineage, history):
            if path is not None and path.suffix.lower() not in io.SUFFIXES:
                raise typer.BadParameter(f"{path}: must end in {', '.join(io.SUFFIXES)}")
        old = io.read_table(old_units)
        roads: Any = new_network
        if not new_network.name.lower().endswith((".parquet", ".geoparquet")):
            roads = read_network(new_network, highways=None if all_highways else "drivable")
        acc = io.read_table(accidents, index=None) if accidents is not None else None
        hz = io.read_table(hazards, index=None) if hazards is not None else None
        result = resegment(
            old,
            roads,
            accidents=acc,
            hazards=hz,
            as_of=as_of,
            max_length_m=max_length_m,
            junction_merge_m=junction_merge_m,
            crs=crs,
            progress=not quiet,
        )
        io.write_table(result.units, output)
        written = [output]
        if lineage is not None:
            io.write_table(result.lineage, lineage)
            written.append(lineage)
        if history is not None:
            io.write_table(result.history, history)
            written.append(history)
        out_dir = events_out or output.parent
        for src, frame in ((accidents, result.accidents), (hazards, result.hazards)):
            if src is not None and frame is not None:
                target = out_dir / f"{src.name.split('.')[0]}-resegmented.parquet"
                io.write_table(frame, target)
                written.append(target)
    print_summary(result.summary, written)


def print_summary(summary: dict[str, Any], written: list[Path]) -> None:
    """One screen: units by change kind, attribute changes, events kept/moved/joined again."""
    from ..lineage import CHANGE_KINDS, change_lines

    table = Table(title=f"re-segmentation as of {summary.get('as_of')}", show_edge=False)
    table.add_column("units")
    for kind in CHANGE_KINDS:
        table.add_column(kind, justify="right")
    for uk in ("segment", "intersection"):
        row = summary.get(uk, {})
        table.add_row(f"{uk}s", *(f"{row.get(k, 0):,}" for k in CHANGE_KINDS))
    console.print(table)
    console.print(
        f"{summary.get('old_units', 0):,} old units ({summary.get('old_km', 0):.2f} km of "
        f"segments) -> {summary.get('new_units', 0):,} new ({summary.get('new_km', 0):.2f} km)"
    )
    for line in change_lines(summary):
        console.print(line, highlight=False)
    for path in written:
        console.print(f"wrote [bold]{path}[/]")
