"""``trafficunit join UNITS EVENTS --kind accident ... -o joined.parquet``."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .. import io
from .._errors import InputFileError, TrafficUnitWarning, ValidationError
from . import app
from ._common import console, user_errors

_UNIT_SUFFIXES = (".parquet", ".geoparquet", ".gpkg")


def _shared_data() -> Path | None:
    """``../shared/data`` beside the working directory or the repository, or $TRAFFICUNIT_DATA."""
    env = os.environ.get("TRAFFICUNIT_DATA")
    candidates = [Path(env)] if env else []
    candidates += [
        Path.cwd().parent / "shared" / "data",
        Path.cwd() / "shared" / "data",
        Path(__file__).resolve().parents[3] / "shared" / "data",
    ]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def _load_units(path: Path, quiet: bool) -> Any:
    from ..network import read_network
    from ..units import build_units

    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.suffix.lower() in _UNIT_SUFFIXES:
        units = io.read_table(path)
        if "kind" in units.columns:
            return units
    # a road network: build units on the fly
    if not quiet:
        console.print(f"{path.name} is a road network; building units first")
    return build_units(read_network(path), progress=not quiet)


def _pairs(text: str | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if not text:
        return out
    for item in text.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValidationError(
                f"{what}: expected key=value pairs separated by commas, got {item!r}"
            )
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@app.command("join")
def join_cmd(
    units_path: Annotated[
        Path,
        typer.Argument(
            metavar="UNITS",
            help="Units (.parquet/.gpkg from `trafficunit units`) or a road network to build them",
        ),
    ],
    events_path: Annotated[
        Path | None,
        typer.Argument(
            metavar="EVENTS",
            help="Events file (CSV, GeoJSON, GPKG, Shapefile, Parquet); optional with --preset",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Joined events: .parquet or .gpkg")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="accident | hazard | workzone")] = None,
    preset: Annotated[
        str | None,
        typer.Option(help="Column mapping of a known file (see --list-presets); flags override"),
    ] = None,
    x: Annotated[str | None, typer.Option(help="Column of x / easting / longitude")] = None,
    y: Annotated[str | None, typer.Option(help="Column of y / northing / latitude")] = None,
    crs: Annotated[
        str | None, typer.Option(help="CRS of x/y: EPSG code, 'gcj02' or 'bd09'")
    ] = None,
    geometry: Annotated[str | None, typer.Option(help="Column of WKT/EWKT geometries")] = None,
    event_id: Annotated[str | None, typer.Option("--id", help="Column of event ids")] = None,
    time: Annotated[
        str | None, typer.Option(help="Time column(s), comma-separated (date,time); or a year")
    ] = None,
    severity: Annotated[str | None, typer.Option(help="Severity column")] = None,
    severity_map: Annotated[
        str | None, typer.Option(help="Severity codes to KABCO, e.g. '1=O,2=B,3=K'")
    ] = None,
    road_name: Annotated[str | None, typer.Option(help="Street-name column")] = None,
    column: Annotated[
        list[str] | None,
        typer.Option(help="Other field mapping FIELD=COLUMN (repeatable), e.g. hour=Tunti"),
    ] = None,
    time_format: Annotated[str | None, typer.Option(help="strptime format of the time")] = None,
    tz: Annotated[str | None, typer.Option(help="Time zone of naive times")] = None,
    sep: Annotated[str | None, typer.Option(help="CSV separator (default: sniffed)")] = None,
    encoding: Annotated[str | None, typer.Option(help="Text encoding (default: detected)")] = None,
    buffer_m: Annotated[
        float | None, typer.Option(help="Buffer event geometries by this many metres")
    ] = None,
    max_distance: Annotated[
        float | None,
        typer.Option("--max-distance", help="Snap distance, metres (default by kind: 25/20/25)"),
    ] = None,
    strict: Annotated[bool, typer.Option(help="Fail on any unusable row")] = False,
    per_unit: Annotated[
        Path | None, typer.Option(help="Also write the per-unit summary (.parquet/.gpkg)")
    ] = None,
    list_presets: Annotated[
        bool, typer.Option("--list-presets", help="List the presets and exit")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output")] = False,
) -> None:
    """Attach accidents, hazards or work zones to traffic units and report the matches."""
    from ..events import read_events
    from ..join import assign, summarize
    from ..presets import PRESETS, get_preset

    if list_presets:
        t = Table(title="presets", show_edge=False)
        for c in ("name", "kind", "file", "description"):
            t.add_column(c)
        for p in PRESETS.values():
            t.add_row(p.name, str(p.kwargs["kind"]), p.file, p.description)
        console.print(t)
        return
    with user_errors():
        if output is None:
            raise ValidationError("give the output file with -o joined.parquet")
        if output.suffix.lower() not in io.SUFFIXES:
            raise ValidationError(f"output must end in {', '.join(io.SUFFIXES)}")
        if events_path is None:
            if preset is None:
                raise ValidationError("give an EVENTS file (or --preset for a known file)")
            base = _shared_data()
            if base is None:
                raise InputFileError(
                    "no EVENTS file given and ../shared/data not found; pass the file path "
                    "or set TRAFFICUNIT_DATA to the data directory"
                )
            events_path = base / get_preset(preset).file
        columns = _pairs(",".join(column or []), "--column")
        sev_map = _pairs(severity_map, "--severity-map") or None
        kwargs: dict[str, Any] = {
            "kind": kind,
            "x": x,
            "y": y,
            "crs": int(crs) if crs is not None and crs.isdigit() else crs,
            "geometry": geometry,
            "event_id": event_id,
            "time": time.split(",") if time and "," in time else time,
            "severity": severity,
            "road_name": road_name,
            "columns": columns or None,
            "severity_map": _coerce_keys(sev_map) if sev_map else None,
            "time_format": time_format,
            "tz": tz,
            "sep": sep,
            "encoding": encoding,
            "buffer_m": buffer_m,
            "preset": preset,
            "strict": strict,
        }
        units = _load_units(units_path, quiet)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TrafficUnitWarning)
            events = read_events(events_path, **kwargs)
        joined = assign(units, events, max_distance_m=max_distance)
        io.write_table(joined, output)
        if per_unit is not None:
            io.write_table(summarize(units, joined), per_unit)
    print_report(joined, output, [str(w.message) for w in caught], per_unit)


def _coerce_keys(mapping: dict[str, str]) -> dict[Any, str]:
    """'1' → 1 as well, so numeric codes match numeric columns (both kept)."""
    out: dict[Any, str] = dict(mapping)
    for k, v in mapping.items():
        if k.lstrip("-").isdigit():
            out[int(k)] = v
    return out


def print_report(joined: Any, output: Path, notes: list[str], per_unit: Path | None) -> None:
    """One screen: what was read and dropped, how the events matched."""
    rep = joined.attrs.get("report", {})
    read = rep.get("read") or {}
    if read:
        t = Table(title="events read", show_edge=False)
        t.add_column("")
        t.add_column("rows", justify="right")
        t.add_row("read", f"{read.get('rows_read', 0):,}")
        t.add_row("kept", f"{read.get('rows_kept', 0):,}")
        for reason, n in (read.get("dropped") or {}).items():
            t.add_row(f"dropped: {reason}", f"{n:,}")
        console.print(t)
        meta = [
            f"{k} {read[k]!r}" for k in ("format", "encoding", "sep", "crs", "tz") if read.get(k)
        ]
        console.print("source: " + ", ".join(meta), highlight=False)
        for reason, ex in (read.get("examples") or {}).items():
            rows = ", ".join(str(e.get("row")) for e in ex[:5])
            console.print(f"  {reason}: rows {rows}", highlight=False)
        for field, vals in (read.get("unknown_values") or {}).items():
            console.print(f"  unknown {field} values: {vals}", highlight=False)
    t = Table(title="match", show_edge=False)
    t.add_column("status")
    t.add_column("events", justify="right")
    t.add_column("share", justify="right")
    n = max(int(rep.get("events", 0)), 1)
    for status, count in (rep.get("by_match") or {}).items():
        t.add_row(status, f"{count:,}", f"{count / n:.1%}")
    console.print(t)
    share_in = rep.get("matched_share_inside")
    console.print(
        f"matched {rep.get('matched', 0):,} of {rep.get('events', 0):,} events "
        f"({(rep.get('matched_share') or 0):.1%}; "
        f"{(share_in or 0):.1%} of those inside the network's area); "
        f"max distance {rep.get('max_distance_m')} m; distances {rep.get('distance_m')}",
        highlight=False,
    )
    if rep.get("name_matched"):
        console.print(
            f"street names agreed for {rep['name_matched']:,} matches and moved "
            f"{rep.get('name_overrode_nearest', 0):,} events off a nearer unit of another name"
        )
    for note in notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print(f"wrote [bold]{output}[/] ({rep.get('rows', 0):,} rows)")
    if per_unit is not None:
        console.print(f"wrote [bold]{per_unit}[/]")
