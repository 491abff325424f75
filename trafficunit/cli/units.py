"""``trafficunit units NETWORK -o units.parquet``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .. import io
from ..network import read_network
from ..units import build_units, summary_table
from . import app
from ._common import console, user_errors
from ._options import AllHighways, Quiet, UnitsCrs


@app.command("units")
def units_cmd(
    network: Annotated[
        Path, typer.Argument(help="OSM PBF/XML(.gz/.bz2) file or a line file (GPKG, GeoJSON...)")
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", help="Output .parquet (GeoParquet) or .gpkg, or a data folder"
        ),
    ],
    max_length_m: Annotated[float, typer.Option(help="Longest segment unit, metres")] = 200.0,
    junction_merge_m: Annotated[
        float, typer.Option(help="Junction nodes closer than this become one intersection")
    ] = 20.0,
    all_highways: AllHighways = False,
    crs: UnitsCrs = None,
    quiet: Quiet = False,
) -> None:
    """Build traffic units (intersections and segments) from a road network."""
    from ..datafolder import check_writable, is_folder_output, timer

    with user_errors():
        into_folder = is_folder_output(output)
        if not into_folder and output.suffix.lower() not in io.SUFFIXES:
            raise typer.BadParameter(
                f"output must end in {', '.join(io.SUFFIXES)}, or be a data folder"
            )
        check_writable(output, folder=into_folder)  # before any work
        lap = timer()
        roads = read_network(network, highways=None if all_highways else "drivable")
        read_s = lap()
        units = build_units(
            roads,
            max_length_m=max_length_m,
            junction_merge_m=junction_merge_m,
            crs=crs,
            progress=not quiet,
        )
        if into_folder:
            output = write_units_into_folder(
                output, units, network, read_s=read_s, units_s=lap(), crs=crs
            )
        else:
            io.write_table(units, output)
    print_summary(roads, units, output)


def write_units_into_folder(
    out: Path, units: object, network: Path, *, read_s: float, units_s: float, crs: str | None
) -> Path:
    """Units into a data folder, with the network as the manifest's source."""
    import shlex

    from ..datafolder import DataFolder
    from ..project import extent

    folder = DataFolder(out, create=True)
    path = folder.write("units", units)
    rep = getattr(units, "attrs", {}).get("report") or {}
    folder.record_source(
        "network",
        network,
        options={"crs": crs} if crs else None,
    )
    with folder.edit_manifest() as m:
        m["command"] = m.get("command") or shlex.join(
            ["trafficunit", "units", str(network), "-o", str(out)]
        )
        m["crs"] = rep.get("metric_crs") or crs
        m["extent"] = extent(units)
        m["counts"]["units"] = len(units)  # type: ignore[arg-type]
        m["timings_s"]["network"] = round(read_s, 3)
        m["timings_s"]["units"] = round(units_s, 3)
    return path


def print_summary(roads: object, units: object, output: Path | None) -> None:
    """The one-screen summary: units by kind and road class, km, what was dropped and why."""
    import geopandas as gpd

    assert isinstance(units, gpd.GeoDataFrame) and isinstance(roads, gpd.GeoDataFrame)
    net = roads.attrs.get("report")
    rep = units.attrs.get("report")
    table = Table(title="traffic units", show_edge=False)
    table.add_column("kind")
    table.add_column("road class")
    table.add_column("units", justify="right")
    table.add_column("km", justify="right")
    summary = summary_table(units).reset_index()
    for kind, cls, n, km in summary[["kind", "road_class", "units", "km"]].itertuples(index=False):
        table.add_row(str(kind), str(cls), f"{int(n):,}", f"{km:.2f}")
    console.print(table)
    seg = units[units["kind"] == "segment"]
    console.print(
        f"{len(units):,} units: {len(seg):,} segments ({seg['length_m'].sum() / 1000:.2f} km), "
        f"{len(units) - len(seg):,} intersections"
        + (f", {rep['junction_links']} links inside junctions" if rep else "")
    )
    if net is not None:
        console.print(
            f"read {net['ways_read']:,} ways from {net['source']}, kept {net['ways_kept']:,}; "
            f"{net.get('clipped', 0):,} clipped at the extract's edge; "
            f"speed limits not understood: {net['maxspeed_unparsed']:,}"
            + (
                f" ({', '.join(net['maxspeed_values_unparsed'][:5])})"
                if net.get("maxspeed_values_unparsed")
                else ""
            )
        )
        dropped = {k: v for k, v in net["dropped"].items() if v}
        if rep is not None:
            dropped.update({k: v for k, v in rep["dropped"].items() if v})
        if dropped:
            console.print("dropped: " + ", ".join(f"{v:,} {k}" for k, v in sorted(dropped.items())))
    if rep is not None:
        console.print(f"lengths measured in {rep['metric_crs']}")
    if output is not None:
        console.print(f"wrote [bold]{output}[/]")
