"""``trafficunit trace-check DATA_DIR traces/ --permits permits.csv -o report.parquet``.

Every GPX or CSV file under ``traces/`` is matched to the units of ``DATA_DIR/units.parquet``
and checked against its permit (off-route stretches, speeding per unit, driving outside the
permitted hours). A trace belongs to the permit whose ``permit_id`` or ``vehicle`` its file
name starts with (or to the only permit). A GPX file with several tracks is checked track by
track.

``permits.csv`` columns: ``permit_id``; the route as ``route`` (unit ids separated by spaces,
``;`` or ``|``) or as ``from_lon``, ``from_lat``, ``to_lon``, ``to_lat`` (optionally ``avoid``,
e.g. ``red;workzones``); optional ``vehicle``, ``windows`` (``22:00-06:00;...``), ``tz``,
``valid_from``, ``valid_to`` and ``speed_caps`` (``primary=40;default=30``, km/h).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from .._errors import InputFileError, TrafficUnitError, ValidationError
from . import app
from ._common import console, err_console, user_errors
from ._options import Quiet

_SEP = re.compile(r"[\s;|,]+")


def _text(row: Any, col: str) -> str:
    v = row.get(col)
    if v is None:
        return ""
    s = str(v).strip()
    return "" if s.lower() in ("nan", "<na>", "none") else s


def _permits(path: Path, graph: Any, tz_default: str, workzones: Any) -> dict[str, Any]:
    from ..io import read_table
    from ..routing import parse_hhmm
    from ..routing import route as make_route
    from ..traces import PermitRules

    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    table = read_table(path)
    table.columns = [str(c).strip().lower() for c in table.columns]
    if "permit_id" not in table.columns:
        raise InputFileError(f"{path}: no permit_id column")
    out: dict[str, Any] = {}
    for i, row in enumerate(table.to_dict("records")):
        pid = _text(row, "permit_id")
        if not pid:
            raise ValidationError(f"{path}: row {i} has no permit_id")
        where = f"{path}: permit {pid}"
        ids = [u for u in _SEP.split(_text(row, "route")) if u]
        if not ids:
            try:
                xy = [float(row[c]) for c in ("from_lon", "from_lat", "to_lon", "to_lat")]
            except (KeyError, TypeError, ValueError) as exc:
                raise ValidationError(
                    f"{where}: give route (unit ids) or from_lon, from_lat, to_lon, to_lat"
                ) from exc
            avoid = [a for a in _SEP.split(_text(row, "avoid")) if a]
            try:
                ids = make_route(graph, xy[:2], xy[2:], avoid=avoid, workzones=workzones).unit_ids
            except TrafficUnitError as exc:
                raise ValidationError(f"{where}: {exc}") from exc
        windows = []
        for w in (x for x in re.split(r"[;|,]", _text(row, "windows")) if x.strip()):
            parts = w.strip().split("-")
            if len(parts) != 2:
                raise ValidationError(f"{where}: window {w!r} is not HH:MM-HH:MM")
            windows.append((parts[0].strip(), parts[1].strip()))
        caps: dict[str, float] = {}
        for item in (x for x in _SEP.split(_text(row, "speed_caps")) if x):
            k, _, v = item.partition("=")
            try:
                caps[k.strip()] = float(v)
            except ValueError as exc:
                raise ValidationError(f"{where}: speed cap {item!r} is not class=km/h") from exc
        rules = PermitRules(
            unit_ids=ids,
            windows=windows,
            tz=_text(row, "tz") or tz_default,
            valid_from=_text(row, "valid_from") or None,
            valid_to=_text(row, "valid_to") or None,
            speed_caps_kmh=caps,
            permit_id=pid,
        )
        graph.unit_rows(ids, where)  # unknown unit ids: a clear error now
        for a, b in windows:  # a bad time of day: a clear error now, not per trace
            try:
                parse_hhmm(a), parse_hhmm(b)
            except ValidationError as exc:
                raise ValidationError(f"{where}: {exc}") from exc
        out[pid] = (rules, _text(row, "vehicle"))
    if not out:
        raise InputFileError(f"{path}: no permits")
    return out


def _which(name: str, permits: dict[str, Any]) -> str | None:
    if len(permits) == 1:
        return next(iter(permits))
    best = None
    for pid, (_, vehicle) in permits.items():
        for key in (pid, vehicle):
            if key and name.startswith(key) and (best is None or len(key) > best[1]):
                best = (pid, len(key))
    return best[0] if best else None


@app.command("trace-check")
def trace_check_cmd(
    data_dir: Annotated[
        Path, typer.Argument(help="Data folder with units.parquet (and workzones.parquet)")
    ],
    traces: Annotated[Path, typer.Argument(help="A trace file (.gpx/.csv) or a folder of them")],
    permits: Annotated[Path, typer.Option("--permits", help="permits.csv (see above)")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Findings, one row per finding (.parquet)")
    ],
    geojson: Annotated[
        Path | None, typer.Option("--geojson", help="Also write the findings as a GeoJSON layer")
    ] = None,
    crs: Annotated[str, typer.Option("--crs", help="CRS of CSV coordinates")] = "EPSG:4326",
    tz: Annotated[
        str, typer.Option("--tz", help="Time zone of CSV times without one, and of permits")
    ] = "UTC",
    sigma_m: Annotated[float, typer.Option("--sigma", help="GPS noise, metres")] = 20.0,
    quiet: Quiet = False,
) -> None:
    """Check GPS traces against route permits: off-route stretches, speeding, outside hours.

    Writes one row per finding (trace, track, permit, kind, English and Chinese label, times,
    length, line) to OUTPUT and a summary per trace to OUTPUT with the suffix .json. A trace
    that cannot be read or checked is listed there with its reason and the exit code is 2.
    "Keep right" is not checked: the units have no lanes.
    """
    with user_errors():
        import geopandas as gpd
        import pandas as pd
        from tqdm.auto import tqdm

        from ..io import atomic_path, read_table, write_table
        from ..routing import UnitGraph
        from ..traces import check_trace, read_gpx_tracks, read_trace

        units_path = data_dir / "units.parquet"
        if not units_path.exists():
            raise InputFileError(f"{data_dir}: no units.parquet (build the folder first)")
        if output.suffix.lower() not in (".parquet", ".geoparquet"):
            raise ValidationError(f"{output}: the report is GeoParquet; name it .parquet")
        graph = UnitGraph(read_table(units_path))
        wz_path = data_dir / "workzones.parquet"
        workzones = read_table(wz_path) if wz_path.exists() else None
        rules_by_id = _permits(permits, graph, tz, workzones)
        if traces.is_dir():
            files = sorted(p for p in traces.rglob("*") if p.suffix.lower() in (".gpx", ".csv"))
        elif traces.exists():
            files = [traces]
        else:
            raise InputFileError(f"{traces}: no such file or folder")
        if not files:
            raise InputFileError(f"{traces}: no .gpx or .csv traces")
        frames = []
        summaries = []
        failed = 0
        for path in tqdm(files, desc="traces", disable=quiet, unit="trace"):
            pid = _which(path.stem, rules_by_id)
            entry: dict[str, Any] = {"trace": str(path), "permit_id": pid}
            try:
                if pid is None:
                    raise ValidationError(
                        "no permit: the file name starts with no permit_id or vehicle"
                    )
                rules = rules_by_id[pid][0]
                if path.suffix.lower() == ".gpx":
                    tracks = read_gpx_tracks(path)
                else:
                    tracks = [("", read_trace(path, crs=crs, tz=rules.tz or tz))]
                for name, trace in tracks:
                    report = check_trace(graph, trace, rules, sigma_m=sigma_m)
                    f = report.findings.copy()
                    f.insert(0, "permit_id", pid)
                    f.insert(0, "track", name)
                    f.insert(0, "trace", str(path))
                    frames.append(f)
                    summaries.append(
                        {**entry, "track": name, "status": "checked", **report.summary}
                    )
            except TrafficUnitError as exc:
                failed += 1
                summaries.append({**entry, "status": "error", "error": str(exc)})
                err_console.print(f"[bold red]error:[/] {path}: {exc}", highlight=False)
        cols = ["trace", "track", "permit_id"]
        findings = (
            pd.concat(frames, ignore_index=True)
            if frames
            else gpd.GeoDataFrame({c: [] for c in cols}, geometry=[], crs=4326)
        )
        findings = gpd.GeoDataFrame(findings, geometry="geometry", crs=4326)
        write_table(findings, output)
        with atomic_path(output.with_suffix(".json")) as tmp:
            tmp.write_text(
                json.dumps(summaries, ensure_ascii=False, indent=2, default=str), encoding="utf-8"
            )
        if geojson is not None:
            g = findings.copy()
            for c in ("start_time", "end_time"):
                if c in g:
                    g[c] = g[c].astype(str)
            with atomic_path(geojson) as tmp:
                tmp.write_text(g.to_json(na="null", drop_id=True), encoding="utf-8")
        checked = sum(1 for s in summaries if s["status"] == "checked")
        console.print(
            f"{checked} trace(s) checked, {len(findings)} finding(s), {failed} failed → {output}"
        )
        if failed:
            raise typer.Exit(code=2)
