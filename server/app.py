"""``create_app(settings)``: the FastAPI application.

Shared resources open in ``lifespan`` and live on ``app.state``: the data store (tables, their
spatial indexes, PMTiles archives with cached directories) and the live-tile cache. Stored tiles
are answered by :class:`TileFastPath`, a thin ASGI layer in front of the routers that uses the
same tile logic (:mod:`server.tilehttp`) without routing and dependency overhead; anything it
does not recognise goes to the routers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from trafficunit.mvt import TileCache

from .errors import ServerError, install_error_handlers
from .ledger import BodyLimit, install_ledger_errors, ledger_lifespan
from .routers import accidents, blackspots, hazards, kpis, meta, tiles, tokens, units, workzones
from .settings import Settings
from .store import DataStore
from .tilehttp import TileAnswer, parse_zxy, stored_tile

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Routers mounted by :func:`create_app`; later features add theirs here.
ROUTERS = [meta.router, tiles.router, units.router, accidents.router, blackspots.router]
ROUTERS += [hazards.router, workzones.router, tokens.router, kpis.router]


class TileFastPath:
    """ASGI layer answering ``GET|HEAD /tiles/{archive}/{z}/{x}/{y}.mvt`` for stored archives."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path: str = scope["path"]
            if (
                path.startswith("/tiles/")
                and path.endswith(".mvt")
                and not scope.get("query_string")
            ):
                parts = path[7:-4].split("/")
                state = scope["app"].state
                store: DataStore | None = getattr(state, "store", None)
                if len(parts) == 4 and store is not None and parts[0] in store.archives:
                    await self._answer(scope, send, state, store, parts)
                    return
        await self.app(scope, receive, send)

    async def _answer(
        self, scope: Scope, send: Send, state: Any, store: DataStore, parts: list[str]
    ) -> None:
        ae = inm = origin = None
        for k, v in scope["headers"]:
            if k == b"accept-encoding":
                ae = v.decode("latin-1")
            elif k == b"if-none-match":
                inm = v.decode("latin-1")
            elif k == b"origin":
                origin = v.decode("latin-1")
        settings: Settings = state.settings
        vary = "Accept-Encoding" if settings.cors_origins == ["*"] else "Accept-Encoding, Origin"
        try:
            z, x, y = parse_zxy(parts[1], parts[2], parts[3])
            answer = stored_tile(
                store.archives[parts[0]],
                z,
                x,
                y,
                accept_encoding=ae,
                if_none_match=inm,
                head=scope["method"] == "HEAD",
                max_age=settings.tiles.max_age,
                vary=vary,
            )
        except ServerError as exc:
            body = json.dumps({"detail": exc.detail}).encode()
            answer = TileAnswer(
                exc.status,
                [("content-type", "application/json"), ("content-length", str(len(body)))],
                body,
            )
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
        if origin is not None:
            allowed = settings.cors_origins
            if "*" in allowed:
                headers.append((b"access-control-allow-origin", b"*"))
            elif origin in allowed:
                headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})


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
        app.state.store = DataStore(
            settings.data_dir,
            reload_check_s=settings.tiles.reload_check_s,
            cache_entries=settings.tiles.cache_entries,
            night_hours=settings.query.night_hours,
        )
        app.state.tile_cache = TileCache(settings.tiles.cache_entries)
        try:
            async with ledger_lifespan(app):
                yield
        finally:
            for archive in app.state.store.archives.values():
                archive.close()

    app = FastAPI(
        title=settings.title,
        summary="Traffic units: risk tiles, units, accidents and black spots",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    install_ledger_errors(app)
    for router in ROUTERS:
        app.include_router(router)
    static = files("server") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "HEAD", "OPTIONS", "POST", "DELETE"],
        allow_headers=["*"],
        expose_headers=["ETag", "X-Total-Count", "Location"],
    )
    app.add_middleware(TileFastPath)
    app.add_middleware(BodyLimit, max_bytes=settings.ledger.max_body_bytes)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn server.app:app_from_env --factory`` (settings from the environment)."""
    return create_app(Settings())
