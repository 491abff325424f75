"""``trafficunit build city.toml -o DATA_DIR`` (or the flag form): a city's files into a data
folder that ``trafficunit serve`` serves, in one command."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .._errors import ValidationError
from . import _options as opt
from . import app
from ._common import (
    console,
    period_bounds,
    preset_file,
    progress_printer,
    reader_options,
    user_errors,
)


def _command_line(
    project: Path | None,
    output: Path,
    network: Path | None,
    accidents: Path | None,
    hazards: Path | None,
    workzones: Path | None,
    flags: dict[str, Any],
) -> str:
    """The command that rebuilds the folder (recorded in its manifest)."""
    args = ["trafficunit", "build"]
    if project is not None:
        args.append(str(project))
    for flag, value in (
        ("--network", network),
        ("--accidents", accidents),
        ("--hazards", hazards),
        ("--workzones", workzones),
    ):
        if value is not None:
            args += [flag, str(value)]
    for key, given in flags.items():
        if given is None:
            continue
        flag = "--id" if key == "event_id" else "--" + key.replace("_", "-")
        if isinstance(given, list):
            text = ",".join(map(str, given))
        elif isinstance(given, dict):
            text = ",".join(f"{k}={v}" for k, v in given.items() if isinstance(k, str))
        else:
            text = str(given)
        args += [flag, text]
    return shlex.join([*args, "-o", str(output)])


def project_from_flags(
    *,
    network: Path,
    accidents: Path | None,
    hazards: Path | None,
    workzones: Path | None,
    accident_options: dict[str, Any],
    metric_crs: str | None,
    period: str | None,
    all_events: bool,
    max_distance: float | None,
) -> dict[str, Any]:
    """The project dict :func:`trafficunit.build` takes, from the flags of the one-off form."""
    project: dict[str, Any] = {"network": {"path": str(network)}, "events": []}
    if metric_crs:
        project["network"]["crs"] = metric_crs
    if accidents is not None:
        ev: dict[str, Any] = {"kind": "accident", "path": str(accidents)}
        ev.update({k: v for k, v in accident_options.items() if v is not None})
        if max_distance is not None:
            ev["max_distance_m"] = max_distance
        project["events"].append(ev)
    for kind, path in (("hazard", hazards), ("workzone", workzones)):
        if path is not None:
            project["events"].append({"kind": kind, "path": str(path)})
    if period:
        project["risk"] = {"period": list(period_bounds(period))}
    if all_events:
        project["tiles"] = {"all_events": True}
    return project


@app.command("build")
def build_cmd(
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Data folder to write (served by `serve`)")
    ],
    project: Annotated[
        Path | None,
        opt.optional_path(
            "[PROJECT.toml]",
            "The city's project file (\\[network], \\[\\[events]], \\[risk]); or --network",
        ),
    ] = None,
    network: Annotated[
        Path | None, typer.Option(help="Road network (flag form instead of a project file)")
    ] = None,
    accidents: Annotated[Path | None, typer.Option(help="Accidents file (flag form)")] = None,
    hazards: Annotated[Path | None, typer.Option(help="Hazards file (flag form)")] = None,
    workzones: Annotated[Path | None, typer.Option(help="Work-zones file (flag form)")] = None,
    preset: opt.EventsPreset = None,
    x: opt.EventsX = None,
    y: opt.EventsY = None,
    crs: opt.EventsCrs = None,
    time: opt.EventsTime = None,
    time_format: opt.EventsTimeFormat = None,
    tz: opt.EventsTz = None,
    severity: opt.EventsSeverity = None,
    severity_map: opt.EventsSeverityMap = None,
    event_id: opt.EventsId = None,
    road_name: opt.EventsRoadName = None,
    encoding: opt.EventsEncoding = None,
    sep: opt.EventsSep = None,
    max_distance: opt.MaxDistance = None,
    metric_crs: opt.MetricCrs = None,
    period: opt.ScoringPeriod = None,
    all_events: opt.AllEvents = False,
    quiet: opt.Quiet = False,
) -> None:
    """One command from a city's files to a served folder: network → units → events → join →
    risk → black spots → tiles (then `trafficunit serve DATA_DIR`).

    In the flag form, --preset, the column flags (--x to --sep) and --max-distance read the
    --accidents file, as `trafficunit join` reads its EVENTS.
    """
    from ..project import build

    with user_errors():
        flags = reader_options(
            preset=preset,
            x=x,
            y=y,
            crs=crs,
            time=time,
            time_format=time_format,
            tz=tz,
            severity=severity,
            severity_map=severity_map,
            event_id=event_id,
            road_name=road_name,
            encoding=encoding,
            sep=sep,
        )
        files = {"accidents": accidents, "hazards": hazards, "workzones": workzones}
        _check_form(project, network, files, flags)
        spec: Any = project
        if network is not None:
            accidents = accidents or _preset_accidents(preset)
            spec = project_from_flags(
                network=network,
                accidents=accidents,
                hazards=hazards,
                workzones=workzones,
                accident_options=flags,
                metric_crs=metric_crs,
                period=period,
                all_events=all_events,
                max_distance=max_distance,
            )
        command = _command_line(project, output, network, accidents, hazards, workzones, flags)
        command += " --all-events" if all_events else ""
        command += f" --period {period}" if period and project is None else ""
        command += f" --metric-crs {metric_crs}" if metric_crs and project is None else ""
        command += f" --max-distance {max_distance:g}" if max_distance is not None else ""
        progress = progress_printer(quiet)
        folder = build(spec, output=output, progress=progress, command=command, bars=not quiet)
    print_summary(folder.manifest, output)


def _check_form(
    project: Path | None,
    network: Path | None,
    files: dict[str, Path | None],
    flags: dict[str, Any],
) -> None:
    """A project file or the flag form (``--network``), not both; a project takes no flag."""
    if project is not None and network is not None:
        raise ValidationError("give a PROJECT.toml or --network, not both")
    if project is None and network is None:
        raise ValidationError(
            "give a project file (trafficunit build city.toml -o DATA_DIR) or the flag "
            "form (trafficunit build --network X.pbf --accidents Y.csv ... -o DATA_DIR)"
        )
    if project is not None:
        given = [f"--{k.replace('_', '-')}" for k, v in flags.items() if v is not None]
        given += [f"--{n}" for n, v in files.items() if v is not None]
        if given:
            raise ValidationError(
                f"{', '.join(given)} belong to the flag form; with {project} put them in "
                "its [[events]] table"
            )


def _preset_accidents(preset: str | None) -> Path:
    """Flag form without ``--accidents``: the file of ``--preset`` in the shared data."""
    if preset is None:
        raise ValidationError("give the accidents file with --accidents FILE")
    return preset_file(preset)


def print_summary(manifest: dict[str, Any], output: Path) -> None:
    """One screen: which source column became which field, counts, time per stage."""
    sources = [s for s in manifest.get("sources", []) if s.get("kind") not in ("network",)]
    if sources:
        t = Table(title="sources: field ← column", show_edge=False)
        for c in ("source", "field", "column(s)"):
            t.add_column(c, overflow="fold")
        for s in sources:
            name = Path(str(s.get("path", s.get("kind")))).name
            mapping = s.get("mapping") or s.get("columns") or {}
            if not isinstance(mapping, dict):  # a reader's report in another shape: as given
                mapping = {"mapping": mapping}
            first = True
            for fld, cols in mapping.items():
                shown = ", ".join(map(str, cols)) if isinstance(cols, list) else str(cols)
                t.add_row(name if first else "", str(fld), shown)
                first = False
            if first:
                t.add_row(name, "(no mapping reported)", "")
        console.print(t)
        for s in sources:
            detected = [
                f"{k} {s[k]!r}" for k in ("format", "encoding", "sep", "crs", "tz") if s.get(k)
            ]
            join = s.get("join") or {}
            line = f"{Path(str(s.get('path', ''))).name}: " + ", ".join(detected)
            if s.get("rows_read") is not None:
                line += f"; read {s['rows_read']:,}, kept {s.get('rows_kept', 0):,}"
            if s.get("dropped"):
                line += " (dropped: " + ", ".join(f"{n:,} {r}" for r, n in s["dropped"].items())
                line += ")"
            if join:
                line += (
                    f"; {join.get('matched', 0):,} on a unit "
                    f"({100 * (join.get('matched_share') or 0):.1f} %)"
                )
            console.print(line, highlight=False)
            for note in s.get("warnings") or []:
                console.print(f"  [yellow]note:[/] {note}", highlight=False)
    counts = manifest.get("counts", {})
    t = Table(title=f"data folder {output}", show_edge=False)
    t.add_column("stage")
    t.add_column("seconds", justify="right")
    t.add_column("result")
    results = {
        "units": f"{counts.get('units', 0):,} units",
        "events": ", ".join(
            f"{counts[k]:,} {k}" for k in ("accidents", "hazards", "workzones") if k in counts
        ),
        "join": ", ".join(
            f"{counts.get(k + '_matched', 0):,} of {counts[k]:,} {k}"
            for k in ("accidents", "hazards", "workzones")
            if k in counts
        ),
        "risk": ", ".join(
            f"{lv} {counts.get('levels', {}).get(lv, 0):,}"
            for lv in ("red", "orange", "yellow", "blue")
        ),
        "black_spots": f"{counts.get('black_spots', 0):,} black spots",
        "tiles": (
            f"{(manifest.get('tiles') or {}).get('bytes', 0) / 1e6:.2f} MB"
            + ("" if (manifest.get("tiles") or {}).get("all_events") else ", matched events")
        ),
    }
    for stage, sec in (manifest.get("timings_s") or {}).items():
        t.add_row(stage.replace("_", " "), f"{sec:.2f}", results.get(stage, ""))
    t.add_row("total", f"{sum((manifest.get('timings_s') or {}).values()):.2f}", "")
    console.print(t)
    period = manifest.get("period") or []
    console.print(
        f"period {' – '.join(str(p)[:10] for p in period) or 'none'}; CRS {manifest.get('crs')}; "
        f"extent {((manifest.get('extent') or {}).get('bounds'))}",
        highlight=False,
    )
    console.print(f"wrote [bold]{output}[/]; serve it with: trafficunit serve {output}")
