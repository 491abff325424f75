"""Options that several verbs declare alike (same flag, help and meaning), declared once here
so that they stay one; a verb imports the ones it has."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def data_dir_option(folder: str) -> Any:
    """``--data-dir`` (read by :func:`._common.data_folder`); ``folder`` says whose it is."""
    return typer.Option(
        "--data-dir", help=f"{folder} (default: TRAFFICUNIT_DATA_DIR or demo-output)"
    )


def optional_path(metavar: str, help: str) -> Any:
    """A positional path a verb can do without, shown as ``metavar`` in its usage line."""
    return typer.Argument(metavar=metavar, help=help, show_default=False)


#: How an events file is read (:func:`trafficunit.read_events`): the EVENTS of ``join``, the
#: ``--accidents`` of ``build`` and ``pipeline``.
EventsPreset = Annotated[
    str | None,
    typer.Option(
        help="Column mapping of a known file (`trafficunit join --list-presets`); flags override"
    ),
]
EventsX = Annotated[str | None, typer.Option(help="Column of x / easting / longitude")]
EventsY = Annotated[str | None, typer.Option(help="Column of y / northing / latitude")]
EventsCrs = Annotated[str | None, typer.Option(help="CRS of x/y: EPSG code, 'gcj02' or 'bd09'")]
EventsTime = Annotated[
    str | None,
    typer.Option(help="Time column(s), comma-separated (date,time); or a year column"),
]
EventsTimeFormat = Annotated[str | None, typer.Option(help="strptime format of the time")]
EventsSeverity = Annotated[str | None, typer.Option(help="Severity column")]
EventsSeverityMap = Annotated[
    str | None, typer.Option(help="Severity codes to KABCO, e.g. '1=O,2=B,3=K'")
]
EventsId = Annotated[str | None, typer.Option("--id", help="Column of event ids")]
EventsRoadName = Annotated[str | None, typer.Option(help="Street-name column")]
#: ... and those the reader finds by itself when they are not given.
EventsTz = Annotated[
    str | None,
    typer.Option(
        help="Time zone of times written without one, e.g. Asia/Shanghai",
        show_default="looked up from the coordinates",
    ),
]
EventsEncoding = Annotated[
    str | None,
    typer.Option(
        help="Text encoding, e.g. gb18030, big5, cp1252",
        show_default="detected: UTF-8, GB18030, Big5 or cp1252",
    ),
]
EventsSep = Annotated[str | None, typer.Option(help="CSV separator", show_default="sniffed")]
#: ``--max-distance`` of the events file's join (``join``, ``build``).
MaxDistance = Annotated[
    float | None,
    typer.Option("--max-distance", help="Snap distance, metres (default by kind: 25/20/25)"),
]
#: ``--period`` of the scores a verb writes (``build``, ``pipeline``).
ScoringPeriod = Annotated[
    str | None,
    typer.Option(help="Scoring period START..END or START,END (default: the data's years)"),
]
#: ``--metric-crs`` of the units built from the network (``build``, ``pipeline``).
MetricCrs = Annotated[
    str | None, typer.Option("--metric-crs", help="Metric CRS (default: UTM zone)")
]
#: ``--crs`` of the units a verb builds (``units``, ``resegment``).
UnitsCrs = Annotated[
    str | None, typer.Option(help="Metric CRS for lengths (default: UTM zone of the data)")
]
#: Unit sizes when the verb has no default of its own (``pipeline``, ``resegment``).
MaxLengthM = Annotated[
    float | None, typer.Option(help="Longest segment unit, metres (default: 200)")
]
JunctionMergeM = Annotated[
    float | None, typer.Option(help="Junction merge distance, metres (default: 20)")
]
#: Events joined to the units, the verb's input (``tiles``, ``resegment``).
JoinedAccidents = Annotated[
    Path | None, typer.Option(help="Accidents joined to the units (tu.assign output)")
]
JoinedHazards = Annotated[
    Path | None, typer.Option(help="Hazards joined to the units (tu.assign output)")
]
#: ``--all-events`` of the tiles (``tiles``, ``build``).
AllEvents = Annotated[
    bool,
    typer.Option("--all-events", help="Tiles keep events on no unit (default: matched only)"),
]
#: ``--all-highways`` when reading the network (``units``, ``resegment``).
AllHighways = Annotated[
    bool, typer.Option("--all-highways", help="Keep every highway, not only drivable roads")
]
#: ``--quiet`` of the verbs that show progress (bars or lines).
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output")]
#: ``--host`` the server listens on (``serve``, ``demo``).
Host = Annotated[str, typer.Option(help="Interface to listen on")]
