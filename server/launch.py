"""How ``trafficunit serve`` starts the server: the server's side of the library↔server seam.

The library never names this package. It finds this module through the entry point
``launcher`` of the group ``trafficunit.server`` (``pyproject.toml``), and calls three things:

- :func:`check_settings` refuses the settings the server would refuse, before any worker;
- :func:`port_holders` says who holds a busy port, for the "cannot listen" error;
- :func:`run` serves a data folder under Granian (RSGI) or uvicorn (ASGI) until stopped.

The same group names the application factories for other servers: ``app``
(:func:`.app.app_from_env`, ASGI) and ``rsgi`` (:func:`.rsgi.rsgi_from_env`).
"""

from __future__ import annotations

import os
from pathlib import Path

from trafficunit.errors import ValidationError

from .supervision import ENV_SUPERVISOR, ENV_WORKERS, describe_port_holders, granian_server

#: This package's import name (``trafficunit_server`` once installed), for the factories'
#: import strings the worker processes load.
PACKAGE = __name__.rpartition(".")[0]


def check_settings(data_dir: Path) -> None:
    """Raise :class:`~trafficunit.errors.ValidationError` (one line) for settings the server
    would refuse (``TRAFFICUNIT_*`` environment variables) over ``data_dir``."""
    from pydantic import ValidationError as PydanticError

    from .settings import Settings

    try:
        Settings(data_dir=data_dir)
    except PydanticError as exc:
        first = exc.errors()[0]
        msg = str(first.get("msg", exc)).removeprefix("Value error, ")
        if not msg.startswith("TRAFFICUNIT_"):
            where = ".".join(str(p) for p in first.get("loc", ()))
            msg = f"setting {where} (TRAFFICUNIT_* environment): {msg}"
        raise ValidationError(msg) from exc


def port_holders(port: int) -> str | None:
    """Who listens on ``port`` (PIDs and command lines), None when unknown."""
    return describe_port_holders(port)


def run(
    data_dir: Path,
    *,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    server: str = "granian",
    proxy_headers: bool = False,
    max_respawns: int = 5,
    respawn_window: float = 60.0,
) -> bool:
    """Serve ``data_dir`` until interrupted; False when Granian gave up respawning workers.

    ``granian`` runs the RSGI app (:mod:`.rsgi`): tiles are answered from Granian's Rust HTTP
    layer with one call each. ``uvicorn`` runs the plain ASGI app.
    """
    os.environ["TRAFFICUNIT_DATA_DIR"] = str(data_dir.resolve())
    # workers die with this process and report the count in /healthz (.supervision)
    os.environ[ENV_SUPERVISOR] = str(os.getpid())
    os.environ[ENV_WORKERS] = str(workers)
    if server == "uvicorn":
        import uvicorn

        uvicorn.run(
            f"{PACKAGE}.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers if workers > 1 else None,
            log_level=log_level,
            access_log=False,
            proxy_headers=proxy_headers,
            server_header=False,
        )
        return True
    from granian.constants import HTTPModes, Interfaces, RuntimeModes
    from granian.log import LogLevels

    factory = "rsgi_behind_proxy" if proxy_headers else "rsgi_from_env"
    # failed workers are respawned (bounded rate, a warning each); a stop (SIGTERM, Ctrl-C)
    # lets in-flight requests finish for up to 30 s
    granian = granian_server(
        respawn_limit=max_respawns,
        respawn_window_s=respawn_window,
        target=f"{PACKAGE}.rsgi:{factory}",
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
        workers_kill_timeout=30,
    )
    granian.serve()
    return not granian.gave_up
