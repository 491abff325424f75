"""``trafficunit join UNITS EVENTS --kind accident ... -o joined.parquet``."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table
from typer.core import TyperCommand

from .. import io
from .._errors import InputFileError, TrafficUnitError, TrafficUnitWarning, ValidationError
from . import _options as opt
from . import app
from ._common import console, err_console, key_values, preset_file, reader_options

_UNIT_SUFFIXES = (".parquet", ".geoparquet", ".gpkg")

#: read_events / assign keywords → the join verb's flags, for messages printed by the CLI.
FLAGS = {
    "x": "--x",
    "y": "--y",
    "crs": "--crs",
    "tz": "--tz",
    "encoding": "--encoding",
    "sep": "--sep",
    "decimal": "--decimal",
    "geometry": "--geometry",
    "time": "--time",
    "severity": "--severity",
    "severity_map": "--severity-map",
    "event_id": "--id",
    "road_name": "--road-name",
    "time_format": "--time-format",
    "dayfirst": "--dayfirst",
    "columns": "--column",
    "buffer_m": "--buffer-m",
    "preset": "--preset",
    "kind": "--kind",
    "strict": "--strict",
    "max_distance_m": "--max-distance",
}
_KEYWORD_RE = re.compile(
    r"(?<![\w.\-])("
    + "|".join(sorted(FLAGS, key=len, reverse=True))
    + r")=(\[[^\]]*\]|'[^']*'|\"[^\"]*\"|True|False|[\w.:/+-]+)?"
)


def cli_words(text: str) -> str:
    """A library message with its Python keywords written as this verb's flags:
    ``x= and y= (with crs=)`` → ``--x and --y (with --crs)``, ``time=['date', 'time']`` →
    ``--time date,time``, ``strict=True`` → ``--strict``."""

    def one(m: re.Match[str]) -> str:
        flag, val = FLAGS[m.group(1)], m.group(2)
        if not val or val in ("True", "False"):
            return flag
        if val.startswith("["):
            items = re.findall(r"'([^']*)'|\"([^\"]*)\"", val)
            return f"{flag} {','.join(a or b for a, b in items)}"
        if val[0] in "'\"":
            val = val[1:-1]
            return f"{flag} {val!r}" if re.search(r"[\s;|]", val) else f"{flag} {val}"
        return f"{flag} {val}"

    text = text.replace(" See .attrs['report'] for examples;", "")
    text = text.replace("See .attrs['report'] for examples; ", "")
    return _KEYWORD_RE.sub(one, text)


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Trafficunit errors as one line naming the CLI's flags, exit code 2, no traceback."""
    try:
        yield
    except TrafficUnitError as exc:
        err_console.print(
            f"[bold red]error:[/] {cli_words(str(exc))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(code=2) from exc


class FlagHelpCommand(TyperCommand):
    """A command whose ``--help`` row shows no ``<bool>`` placeholder."""

    def get_help_option(self, ctx: Any) -> Any:
        opt = super().get_help_option(ctx)
        if opt is not None:
            opt.metavar = ""
        return opt


def check_writable(path: Path, what: str = "output") -> None:
    """Fail now, before any work, when ``path`` cannot be written (its folder is created)."""
    if path.suffix.lower() not in io.SUFFIXES:
        raise ValidationError(f"{what} {path} must end in {', '.join(io.SUFFIXES)}")
    if path.is_dir():
        raise InputFileError(f"{what} {path} is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InputFileError(f"cannot write {what} {path}: {reason}") from exc


def _load_units(path: Path, quiet: bool) -> Any:
    from ..network import read_network
    from ..units import build_units

    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_dir():  # a data folder: its units
        from ..datafolder import DataFolder

        folder = DataFolder(path)
        if not folder.has("units"):
            raise InputFileError(f"{path}: the data folder has no units; run `trafficunit units`")
        return folder.units
    if path.suffix.lower() in _UNIT_SUFFIXES:
        units = io.read_table(path)
        if "kind" in units.columns:
            return units
    # a road network: build units on the fly
    if not quiet:
        console.print(f"{path.name} is a road network; building units first")
    return build_units(read_network(path), progress=not quiet)


# options of `join` that take several lines
_UnitsPath = Annotated[
    Path | None,
    opt.optional_path(
        "UNITS", "Units (.parquet/.gpkg from `trafficunit units`) or a road network to build them"
    ),
]

_EventsPath = Annotated[
    Path | None,
    opt.optional_path(
        "EVENTS", "Events file (CSV, GeoJSON, GPKG, Shapefile, Parquet); optional with --preset"
    ),
]

_Output = Annotated[
    Path | None,
    typer.Option(
        "-o", "--output", help="Joined events: .parquet or .gpkg, or a data folder (required)"
    ),
]

_Kind = Annotated[
    Literal["accident", "hazard", "workzone"] | None,
    typer.Option(help="What the events are", show_default="accident, or the preset's"),
]

_Column = Annotated[
    list[str] | None,
    typer.Option(
        help="Other field mapping FIELD=COLUMN (repeatable), e.g. hour=Tunti",
        metavar="FIELD=COLUMN",
    ),
]

_AllowEmpty = Annotated[
    bool,
    typer.Option(
        "--allow-empty",
        help="Write the output even when no event is kept or matched",
        metavar="",
    ),
]


@app.command("join", cls=FlagHelpCommand)
def join_cmd(
    units_path: _UnitsPath = None,
    events_path: _EventsPath = None,
    output: _Output = None,
    kind: _Kind = None,
    preset: opt.EventsPreset = None,
    x: opt.EventsX = None,
    y: opt.EventsY = None,
    crs: opt.EventsCrs = None,
    geometry: Annotated[str | None, typer.Option(help="Column of WKT/EWKT geometries")] = None,
    event_id: opt.EventsId = None,
    time: opt.EventsTime = None,
    severity: opt.EventsSeverity = None,
    severity_map: opt.EventsSeverityMap = None,
    road_name: opt.EventsRoadName = None,
    column: _Column = None,
    time_format: opt.EventsTimeFormat = None,
    dayfirst: Annotated[
        bool, typer.Option("--dayfirst", help="Read 01/02 as 1 February", metavar="")
    ] = False,
    tz: opt.EventsTz = None,
    sep: opt.EventsSep = None,
    encoding: opt.EventsEncoding = None,
    decimal: Annotated[
        str | None, typer.Option(help="Decimal mark of coordinates", show_default="per value")
    ] = None,
    buffer_m: Annotated[
        float | None, typer.Option(help="Buffer event geometries by this many metres")
    ] = None,
    max_distance: opt.MaxDistance = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail on any unusable row", metavar="")
    ] = False,
    allow_empty: _AllowEmpty = False,
    per_unit: Annotated[
        Path | None, typer.Option(help="Also write the per-unit summary (.parquet/.gpkg)")
    ] = None,
    list_presets: Annotated[
        bool, typer.Option("--list-presets", help="List the presets and exit", metavar="")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress output", metavar="")
    ] = False,
) -> None:
    """Attach accidents, hazards or work zones to traffic units and report the matches.

    The summary says which source column gave each field, what was detected (encoding,
    separator, CRS, time zone) and why rows were dropped. Nothing is written when no event
    would be (exit 2; the previous output stays).
    """
    if list_presets:
        _print_presets()
        return
    with cli_errors():
        if units_path is None:
            raise ValidationError("give the UNITS file (or a road network) and the EVENTS file")
        if output is None:
            raise ValidationError("give the output with -o joined.parquet or -o DATA_DIR")
        options = reader_options(
            kind=kind or (None if preset else "accident"),
            x=x,
            y=y,
            crs=crs,
            geometry=geometry,
            event_id=event_id,
            time=time,
            severity=severity,
            road_name=road_name,
            columns=key_values(",".join(column or []), "--column") or None,
            severity_map=severity_map,
            time_format=time_format,
            dayfirst=dayfirst,
            tz=tz,
            sep=sep,
            encoding=encoding,
            decimal=decimal,
            buffer_m=buffer_m,
            preset=preset,
            strict=strict,
        )
        job = _JoinJob(units_path, events_path, output, per_unit, max_distance, quiet)
        joined, output, notes = job.run(options, allow_empty=allow_empty)
    print_report(joined, output, notes, per_unit)


def _print_presets() -> None:
    from ..presets import PRESETS

    t = Table(title="presets", show_edge=False)
    for c in ("name", "kind", "file", "description"):
        t.add_column(c)
    for p in PRESETS.values():
        t.add_row(p.name, str(p.kwargs["kind"]), p.file, p.description)
    console.print(t)


@dataclass
class _JoinJob:
    """Files of one ``join`` run: checked before any work, written only when events match."""

    units_path: Path
    events_path: Path | None
    output: Path
    per_unit: Path | None
    max_distance: float | None
    quiet: bool

    def run(self, kwargs: dict[str, Any], *, allow_empty: bool) -> tuple[Any, Path, list[str]]:
        """Read, join and write; returns the joined events, the file written and the notes."""
        from ..datafolder import DataFolder, is_folder_output, timer
        from ..events import read_events
        from ..join import assign, summarize

        output, preset = self.output, kwargs.get("preset")
        into_folder = is_folder_output(output)
        if into_folder:
            DataFolder(output, create=True)
        else:
            check_writable(output)
        if self.per_unit is not None:
            check_writable(self.per_unit, "--per-unit output")
        if not self.units_path.exists():
            raise InputFileError(f"{self.units_path}: no such file")
        events_path = self.events_path
        if events_path is None:
            if preset is None:
                raise ValidationError("give an EVENTS file (or --preset for a known file)")
            events_path = preset_file(preset)
        if preset is not None:
            from ..presets import get_preset

            get_preset(preset)  # unknown names fail before any work
        lap = timer()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TrafficUnitWarning)
            events = read_events(events_path, **kwargs)
        units = _load_units(self.units_path, self.quiet)
        joined = assign(units, events, max_distance_m=self.max_distance)
        notes = [str(w.message) for w in caught]
        empty = _empty_reason(joined.attrs.get("report", {}))
        if empty and not allow_empty:
            print_report(joined, None, notes, None)
            raise ValidationError(
                f"{empty}; nothing written ({output} is left as it was). "
                "--allow-empty writes it anyway"
            )
        if into_folder:  # the folder's table for the kind, with the source in its manifest
            folder = DataFolder(output)
            kind_read = str(events.attrs.get("report", {}).get("kind") or kwargs["kind"])
            table = DataFolder.table_for_kind(kind_read)
            folder.write(table, joined)
            folder.record_source(
                kind_read, events_path, options=kwargs, report=events.attrs.get("report")
            )
            folder.record_stage("join", lap())
            output = folder.path(table)
        else:
            io.write_table(joined, output)
        if self.per_unit is not None:
            io.write_table(summarize(units, joined), self.per_unit)
        return joined, output, notes


def _empty_reason(rep: dict[str, Any]) -> str | None:
    """Why a join result is empty (no event kept, or none matched a unit), else ``None``."""
    read = rep.get("read") or {}
    if not rep.get("events"):
        n = read.get("rows_read")
        why = ", ".join(f"{r} {c:,}" for r, c in (read.get("dropped") or {}).items())
        hints = " ".join(read.get("hints") or [])
        return (f"no event kept of {n:,} rows read ({why})" if n else "no event in the file") + (
            f": {hints}" if hints else ""
        )
    if not rep.get("matched"):
        diag = (rep.get("diagnosis") or {}).get("message")
        return f"no event of {rep['events']:,} matched a unit" + (f": {diag}" if diag else "")
    return None


def print_report(joined: Any, output: Path | None, notes: list[str], per_unit: Path | None) -> None:
    """One screen: where each field came from, what was detected, read and dropped, how
    the events matched."""
    rep = joined.attrs.get("report", {})
    read = rep.get("read") or {}
    if read:
        t = Table(title="fields", show_edge=False)
        t.add_column("field")
        t.add_column("from")
        for fld, src in (read.get("fields") or {}).items():
            t.add_row(fld, cli_words(src))
        console.print(t)
        detected = [
            ("format", read.get("format")),
            (
                "encoding",
                f"{read['encoding']} ({read.get('encoding_how')})"
                if read.get("encoding")
                else None,
            ),
            ("separator", repr(read["sep"]) if read.get("sep") else None),
            ("CRS", read.get("crs")),
            ("time zone", f"{read.get('tz')} ({read.get('tz_how')})" if read.get("tz") else None),
            ("time", read.get("time_built")),
        ]
        console.print(
            "detected: " + "; ".join(f"{k} {v}" for k, v in detected if v), highlight=False
        )
        t = Table(title="events read", show_edge=False)
        t.add_column("")
        t.add_column("rows", justify="right")
        t.add_row("read", f"{read.get('rows_read', 0):,}")
        t.add_row("kept", f"{read.get('rows_kept', 0):,}")
        for reason, n in (read.get("dropped") or {}).items():
            t.add_row(f"dropped: {reason}", f"{n:,}")
        console.print(t)
        for reason, ex in (read.get("examples") or {}).items():
            shown = "; ".join(_example(e) for e in ex[:3])
            console.print(f"  {reason}: {shown}", highlight=False)
        for field, vals in (read.get("unknown_values") or {}).items():
            console.print(f"  unknown {field} values: {vals}", highlight=False)
        for hint in read.get("hints") or []:
            console.print(f"[yellow]check:[/] {cli_words(hint)}", highlight=False)
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
    diag = rep.get("diagnosis") or {}
    if diag.get("message"):
        label = "note" if diag.get("likely") == "wider area" else "[yellow]check[/]"
        console.print(f"{label}: {cli_words(diag['message'])}", highlight=False)
    if rep.get("name_matched"):
        console.print(
            f"street names agreed for {rep['name_matched']:,} matches and moved "
            f"{rep.get('name_overrode_nearest', 0):,} events off a nearer unit of another name"
        )
    for note in dict.fromkeys(notes + list(read.get("notes") or [])):
        console.print(f"[yellow]note:[/] {cli_words(note)}", highlight=False)
    if output is not None:
        console.print(f"wrote [bold]{output}[/] ({rep.get('rows', 0):,} rows)")
    if per_unit is not None:
        console.print(f"wrote [bold]{per_unit}[/]")


def _example(e: dict[str, Any]) -> str:
    vals = ", ".join(f"{k}={v!r}" for k, v in e.items() if k != "row")
    return f"row {e['row']}" + (f" ({vals})" if vals else "")
