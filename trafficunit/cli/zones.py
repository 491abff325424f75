"""``trafficunit zones load FILE``: jurisdiction trees (districts, police areas, grids).

``load`` reads polygons (one zone per row with code/parent/level, or one leaf per row with a
column per level: ``--levels district,street,community``), stores them in the folder's
``zones.parquet`` (trees of the same name are replaced, others kept) and puts the zone codes
on ``units.parquet``, ``accidents.parquet`` and ``hazards.parquet``; a running server picks the
files up. ``generate`` stores GENERATED trees over the units (demos, tests); ``show`` lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ._common import console, data_folder, user_errors, verb_group
from ._options import data_dir_option

zones_app = verb_group("zones", "Load, generate and list the jurisdiction trees of a data folder.")
DataDirOpt = Annotated[Path | None, data_dir_option("The data folder")]


def _print(report: dict[str, Any]) -> None:
    table = Table(title="zones", show_edge=False)
    table.add_column("tree")
    table.add_column("levels")
    for tree, levels in report["trees"].items():
        table.add_row(tree, " > ".join(levels))
    console.print(table)
    for name in ("units", "accidents", "hazards"):
        if name in report:
            r = report[name]
            console.print(f"{name}: {r['rows']} rows, {r['outside']} outside every zone")


@zones_app.command("load")
def load(
    file: Annotated[Path, typer.Argument(help="Polygon file (GeoPackage, GeoJSON, GeoParquet...)")],
    data_dir: DataDirOpt = None,
    tree: Annotated[
        str | None, typer.Option("--tree", help="Tree name when the file has no 'tree' column")
    ] = None,
    levels: Annotated[
        str | None,
        typer.Option("--levels", help="Level names top first, comma-separated (see the docs)"),
    ] = None,
    layer: Annotated[str | None, typer.Option("--layer", help="GeoPackage layer")] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Drop the folder's other trees")
    ] = False,
) -> None:
    """Load jurisdiction trees into a data folder and put zone codes on its units and events."""
    with user_errors():
        from ..zones import read_zones, write_folder_zones

        names = [s.strip() for s in levels.split(",") if s.strip()] if levels else None
        zones = read_zones(file, tree=tree, levels=names, layer=layer)
        report = write_folder_zones(data_folder(data_dir), zones, merge=not replace)
    _print(report)


@zones_app.command("generate")
def generate(data_dir: DataDirOpt = None) -> None:
    """Store GENERATED trees (admin, police, grid) over the folder's units: not real boundaries."""
    with user_errors():
        from ..io import read_table
        from ..zones import generate_zones, write_folder_zones

        folder = data_folder(data_dir)
        units = read_table(folder / "units.parquet")
        report = write_folder_zones(folder, generate_zones(units), merge=True)
    _print(report)


@zones_app.command("show")
def show(data_dir: DataDirOpt = None) -> None:
    """List the folder's trees, levels and zone counts."""
    with user_errors():
        from ..zones import read_folder_zones

        folder = data_folder(data_dir)
        zones = read_folder_zones(folder)
        if zones is None:
            from .._errors import InputFileError

            raise InputFileError(f"{folder}: no zones.parquet (run `trafficunit zones load FILE`)")
    table = Table(title=f"zones of {folder}", show_edge=False)
    for col in ("tree", "level", "zones", "generated"):
        table.add_column(col)
    f = zones.frame
    for tree, lvs in zones.trees.items():
        for lv in lvs:
            part = f[(f["tree"] == tree) & (f["level"] == lv)]
            table.add_row(tree, lv, str(len(part)), "yes" if part["generated"].any() else "no")
    console.print(table)
