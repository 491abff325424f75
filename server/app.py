"""``create_app(settings)``: the FastAPI application.

Shared resources open in ``lifespan`` and live on ``app.state``: the data store (tables, their
spatial indexes, PMTiles archives with cached directories) and the live-tile cache. Stored tiles
are answered by :class:`~.fastpath.TileFastPath`, a thin ASGI layer in front of the routers
that uses the same tile logic (:mod:`.tilehttp`, :mod:`.layers`) without routing and dependency
overhead; anything it does not recognise goes to the routers.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles

from trafficunit.mvt import TileCache

from . import alerts, push
from .bounds import InputBounds
from .errors import install_error_handlers
from .fastpath import TileFastPath
from .ledger import BodyLimit, ledger_lifespan
from .live import live_lifespan
from .live import router as live_router
from .operations import ops_lifespan
from .routers import (
    accidents,
    blackspots,
    hazards,
    investigations,
    kpis,
    meta,
    permits,
    public,
    roadchiefs,
    sitefile,
    tiles,
    tokens,
    units,
    webmap,
    workzones,
    zones,
)
from .settings import Settings
from .store import DataStore

#: Routers mounted by :func:`create_app`; later features add theirs here.
# webmap first: its /units/{id}/why and /black-spots/why precede the data routes' paths
ROUTERS = [webmap.router, meta.router, tiles.router, units.router, accidents.router]
ROUTERS += [blackspots.router]
ROUTERS += [hazards.router, workzones.router, tokens.router, kpis.router]
ROUTERS += [zones.router, investigations.router, roadchiefs.router, public.router]
ROUTERS += [permits.router, sitefile.router]
ROUTERS += [live_router, push.router, alerts.router]  # /alerts/stream before /alerts/{id}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the trafficunit server over ``settings.data_dir``.

    Parameters
    ----------
    settings
        Server settings (default: from ``TRAFFICUNIT_*`` environment variables).
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.stopping = asyncio.Event()  # set on SIGTERM under Granian: streams end
        app.state.store = DataStore(
            settings.data_dir,
            tiles=settings.tiles,
            night_hours=settings.query.night_hours,
        )
        app.state.tile_cache = TileCache(settings.tiles.cache_entries)
        # the loaded tables are long-lived: keep them out of the cyclic GC's generations
        gc.collect()
        gc.freeze()
        try:
            async with (
                ledger_lifespan(app),
                ops_lifespan(app),
                live_lifespan(app),
                push.push_lifespan(app),
            ):
                yield
        finally:
            for archive in app.state.store.archives.values():
                archive.close()

    app = FastAPI(
        title=settings.title,
        summary="Traffic units: risk tiles, units, accidents and black spots",
        version="0.1.0",
        lifespan=lifespan,
        # Swagger UI and ReDoc are served from vendored assets (trafficunit_server.routers.webmap)
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)  # the one table: library, ledger and server errors
    for router in ROUTERS:
        app.include_router(router)
    static = files("trafficunit_server") / "static"
    # follow_symlink: an editable install (make setup) links the package's files from build/
    app.mount("/static", StaticFiles(directory=str(static), follow_symlink=True), name="static")
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "HEAD", "OPTIONS", "POST", "PATCH", "DELETE"],
        allow_headers=["*"],
        expose_headers=["ETag", "X-Total-Count", "Location"],
    )
    # GeoJSON, CSV and other text answers gzip-compressed for clients that accept it (tiles
    # are answered before this, already compressed; event streams are never buffered)
    app.add_middleware(
        GZipMiddleware,
        minimum_size=1024,
        compresslevel=5,
        exclude_content_types=("text/event-stream", "image/png", "application/x-protobuf"),
    )
    app.add_middleware(TileFastPath)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.ledger.max_body_bytes,
        paths={"/accidents": settings.ledger.ingest_max_body_bytes},
    )
    app.add_middleware(InputBounds)  # outermost: bounds before anything parses the request
    return app


def app_from_env() -> TileFastPath:
    """Factory for ``uvicorn --factory trafficunit_server.app:app_from_env`` (settings from the
    environment; the entry point ``app`` of the group ``trafficunit.server``).

    The FastAPI app wrapped in :class:`TileFastPath`, so stored tiles skip FastAPI entirely.
    """
    from .supervision import bind_to_parent

    bind_to_parent()  # a worker of `trafficunit serve --server uvicorn` dies with its parent
    app = create_app(Settings())
    return TileFastPath(app, state=app.state)
