"""``trafficunit tiles RISK_OR_UNITS [--accidents J] [--hazards H] [--workzones W] -o OUT``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .. import io
from .._errors import InputFileError
from . import app
from ._common import console, user_errors
from ._options import AllEvents, JoinedAccidents, JoinedHazards


def _read_optional(path: Path | None) -> object:
    if path is None:
        return None
    frame = io.read_table(path, index=None)
    if not hasattr(frame, "geometry"):
        raise InputFileError(f"{path}: no geometry column; give a GeoParquet or GeoPackage")
    return frame


@app.command("tiles")
def tiles_cmd(
    units: Annotated[
        Path,
        typer.Argument(
            help="Scored units (tu.score) or units: .parquet or .gpkg; or a data folder (its "
            "units, accidents, hazards and work zones)"
        ),
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Output .pmtiles, or a data folder")
    ],
    accidents: JoinedAccidents = None,
    hazards: JoinedHazards = None,
    workzones: Annotated[
        Path | None, typer.Option(help="Work zones joined to the units (tu.assign output)")
    ] = None,
    minzoom: Annotated[int, typer.Option(help="Lowest zoom")] = 8,
    maxzoom: Annotated[int, typer.Option(help="Highest zoom")] = 16,
    name: Annotated[str, typer.Option(help="Tileset name in the metadata")] = "trafficunit risk",
    all_events: AllEvents = False,
) -> None:
    """Build a PMTiles v3 archive: units coloured by risk level, accidents, hazards, work zones."""
    from ..datafolder import DataFolder, check_writable, is_folder_output, sha256_file, timer
    from ..tiles import build_tiles_report

    with user_errors():
        into_folder = is_folder_output(output)
        target = DataFolder(output, create=True).path("risk_tiles") if into_folder else output
        check_writable(target)  # before any work
        lap = timer()
        if units.is_dir():
            source = DataFolder(units)
            events = {
                t: (given if given is not None else (source.path(t) if source.has(t) else None))
                for t, given in (
                    ("accidents", accidents),
                    ("hazards", hazards),
                    ("workzones", workzones),
                )
            }
            accidents, hazards, workzones = (
                events["accidents"],
                events["hazards"],
                events["workzones"],
            )
            units = source.path("units")
        frame = io.read_table(units)
        report = build_tiles_report(
            frame,
            output=target,
            accidents=_read_optional(accidents),
            hazards=_read_optional(hazards),
            workzones=_read_optional(workzones),
            minzoom=minzoom,
            maxzoom=maxzoom,
            name=name,
            all_events=all_events,
        )
        if into_folder:
            folder = DataFolder(output)
            made_from = Path(units).resolve() == folder.path("units").resolve()
            folder.record_file(
                "risk_tiles",
                units_sha256=sha256_file(folder.path("units")) if made_from else None,
            )
            folder.record_stage(
                "tiles",
                lap(),
                tiles={
                    "features": report.features,
                    "bytes": report.bytes,
                    "all_events": all_events,
                    "minzoom": report.minzoom,
                    "maxzoom": report.maxzoom,
                },
            )
        output = target
    table = Table(title="tiles", show_edge=False)
    table.add_column("layer")
    table.add_column("features", justify="right")
    for layer, n in report.features.items():
        table.add_row(layer, f"{n:,}")
    console.print(table)
    console.print(
        f"z{report.minzoom}-z{report.maxzoom}, {report.bytes / 1e6:.2f} MB in "
        f"{report.prepare_s + report.write_s + report.tippecanoe_s:.1f} s "
        f"(tippecanoe {report.tippecanoe_s:.1f} s)"
    )
    console.print(f"wrote [bold]{output}[/]")
