"""Options that several verbs declare alike (same flag, help and meaning), declared once here
so that they stay one; a verb imports the ones it has."""

from __future__ import annotations

from typing import Annotated, Any

import typer


def data_dir_option(folder: str) -> Any:
    """``--data-dir`` (read by :func:`._common.data_folder`); ``folder`` says whose it is."""
    return typer.Option(
        "--data-dir", help=f"{folder} (default: TRAFFICUNIT_DATA_DIR or demo-output)"
    )


#: ``--x``/``--y``/``--tz``/``--severity`` of the accidents file (``build``, ``pipeline``).
AccidentsX = Annotated[str | None, typer.Option(help="Accidents: column of x / longitude")]
AccidentsY = Annotated[str | None, typer.Option(help="Accidents: column of y / latitude")]
AccidentsTz = Annotated[str | None, typer.Option(help="Accidents: time zone of naive times")]
AccidentsSeverity = Annotated[str | None, typer.Option(help="Accidents: severity column")]
#: ``--metric-crs`` of the units built from the network (``build``, ``pipeline``).
MetricCrs = Annotated[
    str | None, typer.Option("--metric-crs", help="Metric CRS (default: UTM zone)")
]
#: ``--all-highways`` when reading the network (``units``, ``resegment``).
AllHighways = Annotated[
    bool, typer.Option("--all-highways", help="Keep every highway, not only drivable roads")
]
#: ``--quiet`` of verbs whose only progress output is a bar (``units``, ``resegment``).
QuietBar = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")]
#: ``--host`` the server listens on (``serve``, ``demo``).
Host = Annotated[str, typer.Option(help="Interface to listen on")]
