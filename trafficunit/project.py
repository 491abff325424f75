"""``tu.build``: a city's project (network, events, risk options) into a served data folder.

A project is a TOML file (paths relative to it) or a dict with the same keys::

    [network]
    path = "city.osm.pbf"            # any format read_network takes
    crs = "EPSG:4547"                # optional metric CRS for lengths and joins
    [[events]]
    kind = "accident"
    path = "accidents-2025.csv"
    x = "lng"; y = "lat"; crs = "gcj02"
    severity = "事故等级"; time = ["日期", "时间"]
    [[events]]
    kind = "workzone"
    path = "roadworks.gpkg"
    [risk]
    period = ["2023-01-01", "2025-12-31"]

Every key of an ``[[events]]`` table other than ``kind``, ``path`` and ``max_distance_m`` is a
keyword of :func:`trafficunit.read_events`, passed unchanged. ``[network]`` also takes
``max_length_m``, ``junction_merge_m`` and ``all_highways``; ``[risk]`` takes ``measure``,
``scheme``, ``bands``, ``profile`` (black spots) and ``spots_period``; ``[tiles]`` takes
``minzoom``, ``maxzoom`` and ``all_events``; ``[sample]`` (``generate = true``, ``seed``)
draws the labelled GENERATED events of the demo instead of reading files. ``[[zones]]`` (each
``path``, ``tree``, ``levels``, ``layer``, or ``generate = true`` for GENERATED trees) puts
jurisdiction trees in the folder and their codes on the units, events and tiles
(:mod:`trafficunit.zones`).

Stages: network → units → events → join → risk → black spots → tiles. Nothing in the folder is
replaced until every stage has succeeded; each file is then renamed into place, and the
manifest (:mod:`trafficunit.datafolder`) records sources, mappings, counts and times.
"""

from __future__ import annotations

import os
import time
import tomllib
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ._errors import InputFileError, TrafficUnitWarning, ValidationError
from .datafolder import FILES, DataFolder, check_writable, sha256_file, timer

__all__ = ["build", "load_project", "PROJECT_KEYS"]

#: Keys a project may have at the top level and in each table.
PROJECT_KEYS: dict[str, set[str]] = {
    "": {"network", "events", "risk", "tiles", "sample", "name", "zones"},
    "network": {"path", "crs", "max_length_m", "junction_merge_m", "all_highways", "layer"},
    "risk": {"period", "measure", "scheme", "bands", "profile", "spots_period", "hotspots"},
    "tiles": {"minzoom", "maxzoom", "all_events", "name", "basemap"},
    "sample": {"generate", "seed"},
    "zones": {"generate", "path", "tree", "levels", "layer"},
}
_EVENT_OWN_KEYS = {"kind", "path", "max_distance_m", "_notes"}


def load_project(project: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Read a project TOML (paths made absolute, relative to it) or check a dict."""
    if isinstance(project, Mapping):
        data = dict(project)
        base = Path.cwd()
    else:
        path = Path(project)
        if not path.is_file():
            raise InputFileError(f"{path}: no such project file")
        if path.suffix.lower() != ".toml":
            raise ValidationError(
                f"{path}: a project is a .toml file ([network], [[events]], [risk]); for a "
                "network and an accidents file use --network X --accidents Y"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputFileError(f"{path}: not UTF-8 text ({exc})") from exc
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            try:  # `x = "lng"; y = "lat"` on one line, as people write it: one key per line
                data = tomllib.loads(_split_semicolons(text))
            except tomllib.TOMLDecodeError:
                raise InputFileError(f"{path}: not valid TOML ({exc})") from exc
        base = path.resolve().parent
    _check_keys(data, "", PROJECT_KEYS[""])
    for table in ("network", "risk", "tiles", "sample"):
        if table in data:
            if not isinstance(data[table], Mapping):
                raise ValidationError(f"[{table}] must be a table")
            _check_keys(data[table], table, PROJECT_KEYS[table])
    network = dict(data.get("network") or {})
    if "path" not in network:
        raise ValidationError('the project needs [network] path = "city.osm.pbf"')
    network["path"] = _resolve(network["path"], base)
    data["network"] = network
    out_events = []
    for i, ev in _array_of_tables(data, "events"):
        if "path" not in ev:
            raise ValidationError(f"[[events]] #{i} has no path")
        if "kind" not in ev:
            raise ValidationError(
                f"[[events]] #{i} ({ev['path']}) has no kind; use accident, hazard or workzone"
            )
        DataFolder.table_for_kind(str(ev["kind"]))
        ev["path"] = _resolve(ev["path"], base)
        out_events.append(ev)
    data["events"] = out_events
    out_zones = []
    for i, z in _array_of_tables(data, "zones"):
        _check_keys(z, "zones", PROJECT_KEYS["zones"])
        if "path" in z:
            z["path"] = _resolve(z["path"], base)
        elif not z.get("generate"):
            raise ValidationError(
                f'[[zones]] #{i} needs path = "districts.gpkg" (or generate = true for '
                "GENERATED demo trees)"
            )
        out_zones.append(z)
    data["zones"] = out_zones
    return data


def _array_of_tables(data: Mapping[str, Any], name: str) -> list[tuple[int, dict[str, Any]]]:
    """``[[name]]`` tables numbered from 1 (a single ``[name]`` table counts as one)."""
    tables = data.get(name) or []
    if isinstance(tables, Mapping):
        tables = [tables]
    out = []
    for i, t in enumerate(tables, 1):
        if not isinstance(t, Mapping):
            raise ValidationError(f"[[{name}]] #{i} must be a table")
        out.append((i, dict(t)))
    return out


def _split_semicolons(text: str) -> str:
    """Break ``a = 1; b = 2`` into lines at semicolons outside strings, brackets and comments."""
    out: list[str] = []
    for line in text.splitlines():
        cuts, quote, depth, escaped = [], "", 0, False
        for i, ch in enumerate(line):
            if quote:
                if escaped:
                    escaped = False
                elif ch == "\\" and quote == '"':  # escapes exist in "basic" strings only
                    escaped = True
                elif ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch == "#":
                break
            elif ch in "[{":
                depth += 1
            elif ch in "]}":
                depth -= 1
            elif ch == ";" and depth == 0:
                cuts.append(i)
        starts = [0] + [c + 1 for c in cuts]
        ends = [*cuts, len(line)]
        out.extend(line[a:b].strip() for a, b in zip(starts, ends, strict=True))
    return "\n".join(out)


def _check_keys(table: Mapping[str, Any], name: str, allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        where = f"[{name}]" if name else "the project"
        raise ValidationError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}"
        )


def _resolve(path: Any, base: Path) -> Path:
    p = Path(str(path)).expanduser()
    return p if p.is_absolute() else Path(os.path.normpath(base / p))


def _period(value: Any) -> tuple[str, str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        for sep in ("..", ","):
            if sep in value:
                a, b = value.split(sep, 1)
                return a.strip(), b.strip()
        raise ValidationError(f'period {value!r}: give [START, END], e.g. ["2023", "2025"]')
    if len(value) != 2:
        raise ValidationError(f"period {value!r}: give [START, END]")
    return str(value[0]), str(value[1])


Progress = Callable[[str, str], None]


def build(
    project: str | os.PathLike[str] | Mapping[str, Any],
    *,
    output: str | os.PathLike[str],
    progress: Progress | None = None,
    command: str | None = None,
    bars: bool = False,
) -> DataFolder:
    """Build a data folder from a project: units, joined events, risk, black spots, tiles.

    Parameters
    ----------
    project
        A project TOML file (see the module docs) or a dict with the same keys.
    output
        The data folder (created; files in it are replaced only when every stage succeeded;
        other files, such as the server's ``ledger.sqlite``, are left alone).
    progress
        Called with ``(stage, message)`` as stages start and end (the CLI prints them).
    command
        The command line that rebuilds the folder, recorded in the manifest.
    bars
        Progress bars on the long stages (building units).

    Returns
    -------
    DataFolder
        The folder; its manifest holds sources (size, SHA-256, column mapping), CRS, period,
        rule, counts, extent and time per stage.

    Examples
    --------
    >>> import tempfile, trafficunit as tu
    >>> folder = tu.build({"network": {"path": tu.sample_network_path()},
    ...                    "sample": {"generate": True}}, output=tempfile.mkdtemp())
    >>> sorted(folder.tilesets), folder.manifest["counts"]["units"] == len(folder.units)
    (['risk'], True)
    """
    cfg = load_project(project)
    folder = DataFolder(output, create=True)  # writable, checked before any work
    net = cfg["network"]
    risk_cfg = dict(cfg.get("risk") or {})
    tiles_cfg = dict(cfg.get("tiles") or {})
    sample_cfg = dict(cfg.get("sample") or {})
    _check_inputs(cfg, sample_cfg)
    clock = _Clock(progress or (lambda stage, msg: None))
    units = _network_units(net, clock, bars)
    generated = bool(sample_cfg.get("generate"))
    events = _read_all_events(cfg["events"], units, sample_cfg, clock)
    joined, per_source = _join_all(units, events, net, clock)
    accidents = joined.get("accidents")
    if accidents is not None:
        scored, spots = _score_and_spots(units, accidents, joined, risk_cfg, clock)
    else:
        scored, spots = units, None
    zones = None
    zone_counts: dict[str, Any] = {}
    if cfg["zones"]:
        zones, scored, joined, zone_counts = _zones_stage(
            cfg["zones"], units, scored, joined, clock
        )
    finish_folder(
        folder,
        scored=scored,
        joined=joined,
        spots=spots,
        timings=clock.timings,
        lap=clock.lap,
        say=clock.say,
        tiles=tiles_cfg,
        name=str(cfg.get("name") or Path(net["path"]).stem),
        generated=generated,
        basemap_source=(
            net["path"]
            if str(net["path"]).lower().endswith(".pbf") and tiles_cfg.get("basemap", True)
            else None
        ),
        fields={
            "command": command,
            "name": cfg.get("name"),
            "crs": units.attrs.get("report", {}).get("metric_crs") or net.get("crs"),
        },
    )
    _record_zones(folder, zones, zone_counts, clock.say)
    _record_sources(folder, net, sample_cfg if generated else None, per_source)
    return folder


class _Clock:
    """Progress messages and the time of every stage (``timings``, seconds)."""

    def __init__(self, say: Progress) -> None:
        self.say = say
        self.timings: dict[str, float] = {}
        self.lap = timer()

    def done(self, stage: str, msg: str) -> None:
        self.timings[stage] = round(self.lap(), 3)
        self.say(stage, f"{msg} ({self.timings[stage]:.1f} s)")


def _check_inputs(cfg: Mapping[str, Any], sample_cfg: Mapping[str, Any]) -> None:
    """Every file the project names exists, and there are events to read or draw."""
    net = cfg["network"]
    if not Path(net["path"]).exists():
        raise InputFileError(f"{net['path']}: no such network file")
    for ev in cfg["events"]:
        if not Path(ev["path"]).exists():
            raise InputFileError(f"{ev['path']}: no such {ev['kind']} file")
    if not cfg["events"] and not sample_cfg.get("generate"):
        raise ValidationError(
            'the project has no [[events]]; add kind = "accident" with its path '
            "(or [sample] generate = true for the generated demo events)"
        )


def _network_units(net: Mapping[str, Any], clock: _Clock, bars: bool) -> Any:
    """Stages network and units: the roads read, then split into traffic units."""
    from .network import read_network
    from .units import build_units

    clock.say("network", f"reading {net['path']}")
    roads = read_network(
        net["path"],
        highways=None if net.get("all_highways") else "drivable",
        **({"layer": net["layer"]} if net.get("layer") else {}),
    )
    clock.done("network", f"{len(roads):,} roads")
    clock.say("units", "building units")
    units = build_units(
        roads,
        max_length_m=net.get("max_length_m"),
        junction_merge_m=net.get("junction_merge_m"),
        crs=net.get("crs"),
        progress=bars,
    )
    clock.done("units", f"{len(units):,} units")
    return units


_Events = dict[str, list[tuple[dict[str, Any], Any]]]


def _read_all_events(
    sources: list[dict[str, Any]], units: Any, sample_cfg: Mapping[str, Any], clock: _Clock
) -> _Events:
    """Stage events: every source read (its warnings kept as notes), or the GENERATED sample."""
    from . import sample
    from .events import read_events

    clock.say("events", "reading events")
    events: _Events = {}
    if sample_cfg.get("generate"):
        drawn = sample.generate(units, seed=int(sample_cfg.get("seed", 20190401)))
        for table, frame in drawn.items():
            events.setdefault(table, []).append(({"kind": table, "generated": True}, frame))
    for ev in sources:
        options = {k: v for k, v in ev.items() if k not in _EVENT_OWN_KEYS}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TrafficUnitWarning)
            frame = read_events(ev["path"], kind=ev["kind"], **options)
        ev["_notes"] = [str(w.message) for w in caught]
        for note in ev["_notes"]:
            clock.say("events", f"note: {note}")
        events.setdefault(DataFolder.table_for_kind(ev["kind"]), []).append((ev, frame))
    clock.done("events", ", ".join(f"{sum(len(f) for _, f in v):,} {k}" for k, v in events.items()))
    return events


def _join_all(
    units: Any, events: _Events, net: Mapping[str, Any], clock: _Clock
) -> tuple[dict[str, Any], list[tuple[dict[str, Any], dict[str, Any]]]]:
    """Stage join: each source attached to the units; a source with no row on them fails."""
    from .join import assign

    clock.say("join", "joining events to units")
    joined: dict[str, Any] = {}
    join_reports: dict[str, list[dict[str, Any]]] = {}
    per_source: list[tuple[dict[str, Any], dict[str, Any]]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for table, items in events.items():
            parts = []
            for ev, frame in items:
                j = assign(units, frame, max_distance_m=ev.get("max_distance_m"))
                rep = dict(j.attrs.get("report") or {})
                rep["read"] = rep.get("read") or frame.attrs.get("report")
                join_reports.setdefault(table, []).append(rep)
                if not ev.get("generated"):
                    per_source.append((ev, rep))
                    _check_source_joined(ev, frame, rep, table, net)
                parts.append(j)
            joined[table] = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
            if len(parts) > 1 and "event_id" in joined[table]:
                dup = joined[table]["event_id"].duplicated() & joined[table]["unit_id"].isna()
                joined[table] = joined[table][~dup]
    clock.done(
        "join",
        ", ".join(
            f"{sum(int(r.get('matched', 0)) for r in reps):,} of "
            f"{sum(int(r.get('events', 0)) for r in reps):,} {t} on a unit"
            for t, reps in join_reports.items()
        ),
    )
    return joined, per_source


def _check_source_joined(
    ev: Mapping[str, Any], frame: Any, rep: Mapping[str, Any], table: str, net: Mapping[str, Any]
) -> None:
    if len(frame) == 0:
        raise ValidationError(
            f"{ev['path']}: no usable {table} row (see the reader's report: "
            "check x/y, crs and time); nothing was written"
        )
    if not rep.get("matched"):
        raise ValidationError(
            f"{ev['path']}: none of {len(frame):,} {table} falls on the network "
            f"(nearest unit farther than the snap distance): check x/y, crs and "
            f"that the file covers {Path(net['path']).name}; nothing was written"
        )


def _score_and_spots(
    units: Any,
    accidents: Any,
    joined: Mapping[str, Any],
    risk_cfg: Mapping[str, Any],
    clock: _Clock,
) -> tuple[Any, Any]:
    """Stage risk, and the black spots' function (:func:`finish_folder` calls it while
    tippecanoe builds the tiles)."""
    from .blackspots import find_black_spots
    from .risk import score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clock.say("risk", "scoring units")
        scored = score(
            units,
            accidents,
            period=_period(risk_cfg.get("period")),
            hazards=joined.get("hazards"),
            measure=risk_cfg.get("measure"),
            scheme=risk_cfg.get("scheme"),
            bands=risk_cfg.get("bands"),
            hotspot_stats=bool(risk_cfg.get("hotspots", False)),
        )
        period = scored.attrs["rule"].get("period") or []
        clock.done("risk", f"period {' – '.join(str(p)[:10] for p in period)}")
    clock.say("black_spots", "finding black spots (while tippecanoe builds the tiles)")

    def spots() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return find_black_spots(
                units,
                accidents,
                profile=risk_cfg.get("profile", "default"),
                period=_period(risk_cfg.get("spots_period")),
            )

    return scored, spots


def _zones_stage(
    zone_cfgs: list[dict[str, Any]],
    units: Any,
    scored: Any,
    joined: dict[str, Any],
    clock: _Clock,
) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """Stage zones: jurisdiction trees read or generated, their codes on units and events."""
    from .zones import generate_zones, merge_zones, read_zones, with_zone_columns

    clock.say("zones", "assigning units to jurisdiction zones")
    zones = None
    for z in zone_cfgs:
        part = (
            generate_zones(units)
            if z.get("generate")
            else read_zones(
                z["path"], tree=z.get("tree"), levels=z.get("levels"), layer=z.get("layer")
            )
        )
        zones = merge_zones(zones, part)
    assert zones is not None
    scored, joined, zone_counts = with_zone_columns(scored, zones, joined)
    clock.done("zones", f"{len(zones):,} zones in {len(zones.trees)} trees")
    return zones, scored, joined, zone_counts


def _record_zones(
    folder: DataFolder, zones: Any, zone_counts: Mapping[str, Any], say: Progress
) -> None:
    if zones is not None:
        from .zones import FOLDER_FILE

        zones.to_file(folder.root / FOLDER_FILE)
        folder.record_file(FOLDER_FILE)
        with folder.edit_manifest() as mz:
            mz["zones"] = {
                "generated": bool(zones.frame["generated"].any()),
                "trees": {t: list(v) for t, v in zones.trees.items()},
                **zone_counts,
            }
    elif (folder.root / "zones.parquet").exists():
        say("zones", "note: zones.parquet is kept from before (the project names no zones)")


def _record_sources(
    folder: DataFolder,
    net: Mapping[str, Any],
    sample_cfg: Mapping[str, Any] | None,
    per_source: list[tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    """The manifest's sources: the network, the generated sample, each event file's report."""
    folder.record_source(
        "network", net["path"], options={k: v for k, v in net.items() if k != "path"}
    )
    if sample_cfg is not None:
        folder.record_source("generated", None, options={"seed": sample_cfg.get("seed", 20190401)})
    for ev, rep_list in per_source:
        options = {k: v for k, v in ev.items() if k not in ("path", "_notes")}
        entry_report = dict(rep_list.get("read") or {})
        folder.record_source(str(ev["kind"]), ev["path"], options=options, report=entry_report)
        with folder.edit_manifest() as mm:
            mm["sources"][-1]["join"] = {
                k: rep_list.get(k)
                for k in ("events", "matched", "matched_share", "by_match", "max_distance_m")
                if k in rep_list
            }
            if ev.get("_notes"):
                mm["sources"][-1]["warnings"] = ev["_notes"]


def finish_folder(
    folder: DataFolder,
    *,
    scored: Any,
    joined: Mapping[str, Any],
    spots: Any,
    timings: dict[str, float],
    lap: Callable[[], float],
    say: Progress,
    tiles: Mapping[str, Any],
    name: str,
    generated: bool = False,
    fields: Mapping[str, Any] | None = None,
    basemap_source: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Tiles (and the basemap from ``basemap_source``, an OSM .pbf), then every table renamed
    into ``folder``, then a fresh manifest (sources are recorded by the caller). Nothing in the
    folder is replaced if the tiles or the basemap fail. ``spots``: the black spots, or a
    function finding them. The black spots (a function) and the basemap are made while
    tippecanoe builds the tiles (timed as ``timings["black_spots"]`` and ``["basemap"]``; the
    tiles' time includes theirs)."""
    from . import sample
    from .tiles import build_tiles_report

    say("tiles", "building tiles")
    found: list[Any] = []
    beside: list[Callable[[], None]] = []
    if callable(spots):
        find = spots

        def find_spots() -> None:
            t = time.perf_counter()
            found.append(find())
            timings["black_spots"] = round(time.perf_counter() - t, 3)
            say("black_spots", f"{len(found[0]):,} black spots ({timings['black_spots']:.1f} s)")

        beside.append(find_spots)
    all_events = bool(tiles.get("all_events", False))
    accidents = joined.get("accidents")
    tmp_tiles = folder.root / f".{FILES['risk_tiles']}.{os.getpid()}.staged.pmtiles"
    tmp_base = folder.root / f".{FILES['basemap']}.{os.getpid()}.staged.pmtiles"
    basemap: dict[str, Any] | None = None
    if basemap_source is not None:
        source = basemap_source

        def build_base() -> None:
            from .basemap import build_basemap

            nonlocal basemap
            say("basemap", "building the basemap from the extract")
            bm = build_basemap(source, tmp_base)
            timings["basemap"] = round(bm.seconds, 3)
            basemap = {"bytes": bm.bytes, "seconds": timings["basemap"], "features": bm.features}
            say("basemap", f"{bm.bytes / 1e6:.2f} MB in {timings['basemap']:.1f} s")

        beside.append(build_base)

    def meanwhile() -> None:
        for job in beside:
            job()

    try:
        report = build_tiles_report(
            scored,
            output=tmp_tiles,
            accidents=accidents,
            hazards=joined.get("hazards"),
            workzones=joined.get("workzones"),
            all_events=all_events,
            minzoom=tiles.get("minzoom"),
            maxzoom=tiles.get("maxzoom"),
            name=str(tiles.get("name") or "trafficunit risk"),
            description=f"trafficunit {name}"
            + (" (accidents, hazards and work zones are a GENERATED sample)" if generated else ""),
            meanwhile=meanwhile if beside else None,
        )
        timings["tiles"] = round(lap(), 3)
        if found:
            (spots,) = found
        say(
            "tiles",
            f"{report.bytes / 1e6:.2f} MB, {sum(report.features.values()):,} features "
            f"({timings['tiles']:.1f} s)",
        )
        # every stage succeeded: now replace the folder's files
        say("write", f"writing {folder.root}")
        folder.write("units", scored)
        for table in ("accidents", "hazards", "workzones"):
            if table in joined:
                folder.write(table, joined[table])
            elif folder.has(table):
                folder.path(table).unlink()  # an old table of a source no longer in the project
        if spots is not None:
            folder.write("black_spots", spots)
        elif folder.has("black_spots"):
            folder.path("black_spots").unlink()
        os.replace(tmp_tiles, folder.path("risk_tiles"))
        folder.record_file("risk_tiles", units_sha256=sha256_file(folder.path("units")))
        if basemap is not None:
            os.replace(tmp_base, folder.path("basemap"))
            folder.record_file("basemap")
    finally:
        for tmp in (tmp_tiles, tmp_base):
            if tmp.exists():
                tmp.unlink()
    timings["write"] = round(lap(), 3)
    rule = scored.attrs.get("rule", {}) if accidents is not None else {}
    m = folder.read_manifest()
    files = m.get("files", {})
    fresh = {
        **m,
        "sources": [],
        "rule": rule,
        "period": rule.get("period"),
        "period_label": rule.get("period_label"),
        "counts": counts(scored, joined, spots),
        "extent": extent(scored),
        "timings_s": timings,
        "tiles": {
            "features": report.features,
            "bytes": report.bytes,
            "all_events": all_events,
            "minzoom": report.minzoom,
            "maxzoom": report.maxzoom,
        },
        "basemap": basemap,
        "generated_sample": generated,
        "sample_note": sample.GENERATED_LABEL if generated else None,
        "files": files,
        **(fields or {}),
    }
    if accidents is not None:
        fresh["risk_inputs"] = {"accidents": files.get("accidents.parquet")}
    folder.write_manifest(fresh)
    return fresh


def counts(scored: Any, joined: Mapping[str, Any], spots: Any) -> dict[str, Any]:
    """Units, events (and those on a unit), black spots and units per level, for a manifest."""
    out: dict[str, Any] = {"units": len(scored)}
    for table, frame in joined.items():
        ids = frame["event_id"] if "event_id" in frame else frame.index.to_series()
        out[table] = int(ids.nunique())
        if "unit_id" in frame:
            out[f"{table}_matched"] = int(ids[frame["unit_id"].notna()].nunique())
    if spots is not None:
        out["black_spots"] = len(spots)
    if "level" in scored:
        out["levels"] = {str(k): int(v) for k, v in scored["level"].value_counts().items()}
    return out


def extent(frame: Any) -> dict[str, Any] | None:
    """Bounds ``[west, south, east, north]`` (WGS84) and centre of a table, for the map's start."""
    if frame is None or len(frame) == 0 or frame.crs is None:
        return None
    b = frame.to_crs(4326).total_bounds
    w, s, e, n = (round(float(v), 6) for v in b)
    return {"bounds": [w, s, e, n], "center": [round((w + e) / 2, 6), round((s + n) / 2, 6)]}


def check_output(path: str | os.PathLike[str]) -> Path:
    """The output folder, checked for writability before any work."""
    return check_writable(path, folder=True)
