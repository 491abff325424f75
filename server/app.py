"""``create_app(settings)``: the FastAPI application.

Shared resources open in ``lifespan`` and live on ``app.state``: the data store (tables, their
spatial indexes, PMTiles archives with cached directories) and the live-tile cache. Stored tiles
are answered by :class:`TileFastPath`, a thin ASGI layer in front of the routers that uses the
same tile logic (:mod:`server.tilehttp`) without routing and dependency overhead; anything it
does not recognise goes to the routers.
"""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from trafficunit.mvt import TileCache

from .archive import Archive
from .errors import NotFound, ServerError, install_error_handlers
from .ledger import BodyLimit, install_ledger_errors, ledger_lifespan
from .routers import accidents, blackspots, hazards, kpis, meta, tiles, tokens, units, workzones
from .settings import Settings
from .store import DataStore
from .tilehttp import TileAnswer, accepts_gzip, etag_matches, parse_zxy, stored_tile

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Routers mounted by :func:`create_app`; later features add theirs here.
ROUTERS = [meta.router, tiles.router, units.router, accidents.router, blackspots.router]
ROUTERS += [hazards.router, workzones.router, tokens.router, kpis.router]


_MEMO_MAX = 65536


def _error_answer(exc: ServerError) -> TileAnswer:
    body = json.dumps({"detail": exc.detail}).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    return TileAnswer(exc.status, headers, body)


class TileFastPath:
    """ASGI layer answering ``GET|HEAD /tiles/{archive}/{z}/{x}/{y}.mvt`` for stored archives.

    Used as the app's outermost middleware (state from ``scope["app"]``), or wrapped around the
    whole FastAPI app by :func:`app_from_env` (``state`` given) so tile requests skip FastAPI's
    own ``__call__`` too. Finished answers are memoised per path, gzip support and method, and
    dropped when the archive changes on disk; ``If-None-Match`` and CORS are applied per request.
    """

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], state: Any = None
    ) -> None:
        self.app = app
        self.state = state
        self._gzip: dict[bytes | None, bool] = {}
        self._store: DataStore | None = None
        self._tile_cache: TileCache | None = None
        self._settings: Settings = Settings.model_construct()
        self._memo: dict[
            tuple[str, bool, bool], tuple[str, int, list[tuple[bytes, bytes]], bytes, str]
        ] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/tiles/") and path.endswith(".mvt"):
                store = self._store
                if store is None:  # resolved once the lifespan has opened the store
                    state = self.state if self.state is not None else scope["app"].state
                    store = self._store = getattr(state, "store", None)
                    self._settings = state.settings
                    self._tile_cache = getattr(state, "tile_cache", None)
                if store is not None and scope["method"] in ("GET", "HEAD"):
                    name = path[7 : path.find("/", 7)]
                    archive = store.archives.get(name)
                    if archive is not None:
                        if not scope["query_string"]:
                            await self._answer(scope, send, self._settings, archive, path)
                            return
                    elif name in tiles.LIVE and self._tile_cache is not None:
                        await self._live(scope, send, store, name, path)
                        return
        await self.app(scope, receive, send)

    async def _live(self, scope: Scope, send: Send, store: DataStore, name: str, path: str) -> None:
        """A live tile without FastAPI's routing (same logic: :func:`tiles.live_answer`)."""
        ae = inm = origin = None
        for k, v in scope["headers"]:
            if k == b"accept-encoding":
                ae = v.decode("latin-1")
            elif k == b"if-none-match":
                inm = v.decode("latin-1")
            elif k == b"origin":
                origin = v
        settings = self._settings
        vary = "Accept-Encoding" if settings.cors_origins == ["*"] else "Accept-Encoding, Origin"
        parts = path[7:-4].split("/")
        try:
            if len(parts) != 4:
                raise NotFound(f"no route {path}")
            z, x, y = parse_zxy(parts[1], parts[2], parts[3])
            query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
            assert self._tile_cache is not None
            answer = tiles.live_answer(
                store,
                settings,
                self._tile_cache,
                name,
                z,
                x,
                y,
                query,
                accept_encoding=ae,
                if_none_match=inm,
                head=scope["method"] == "HEAD",
                vary=vary,
            )
        except ServerError as exc:
            answer = _error_answer(exc)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
        await self._send(send, settings, answer.status, headers, answer.body, origin)

    @staticmethod
    async def _send(
        send: Send,
        settings: Settings,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        origin: bytes | None,
    ) -> None:
        if origin is not None:
            allowed = settings.cors_origins
            if "*" in allowed:
                headers = [*headers, (b"access-control-allow-origin", b"*")]
            elif origin.decode("latin-1") in allowed:
                headers = [*headers, (b"access-control-allow-origin", origin)]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _build(
        self, settings: Settings, archive: Archive, path: str, gz: bool, head: bool
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, str]:
        parts = path[7:-4].split("/")
        vary = "Accept-Encoding" if settings.cors_origins == ["*"] else "Accept-Encoding, Origin"
        try:
            if len(parts) != 4:
                raise NotFound(f"no route {path}")
            z, x, y = parse_zxy(parts[1], parts[2], parts[3])
            answer = stored_tile(
                archive,
                z,
                x,
                y,
                accept_encoding="gzip" if gz else None,
                if_none_match=None,
                head=head,
                max_age=settings.tiles.max_age,
                vary=vary,
            )
        except ServerError as exc:
            answer = _error_answer(exc)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
        etag = next((v for k, v in answer.headers if k == "etag"), "")
        return answer.status, headers, answer.body, etag

    async def _answer(
        self, scope: Scope, send: Send, settings: Settings, archive: Archive, path: str
    ) -> None:
        ae: bytes | None = None
        inm: bytes | None = None
        origin: bytes | None = None
        for k, v in scope["headers"]:
            if k == b"accept-encoding":
                ae = v
            elif k == b"if-none-match":
                inm = v
            elif k == b"origin":
                origin = v
        archive.check()
        gz = self._gzip.get(ae)
        if gz is None:
            gz = accepts_gzip(ae.decode("latin-1") if ae is not None else None)
            if len(self._gzip) < 1024:  # a handful of distinct Accept-Encoding values in practice
                self._gzip[ae] = gz
        head = scope["method"] == "HEAD"
        key = (path, gz, head)
        memo = self._memo.get(key)
        if memo is None or memo[0] != archive.version:
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            memo = (archive.version, *self._build(settings, archive, path, gz, head))
            self._memo[key] = memo
        _, status, headers, body, etag = memo
        if inm is not None and etag and etag_matches(inm.decode("latin-1"), etag):
            status, body = 304, b""
            headers = [h for h in headers if h[0] in (b"etag", b"cache-control", b"vary")]
        await self._send(send, settings, status, headers, body, origin)


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
        # the loaded tables are long-lived: keep them out of the cyclic GC's generations
        gc.collect()
        gc.freeze()
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


def app_from_env() -> TileFastPath:
    """Factory for ``uvicorn server.app:app_from_env --factory`` (settings from the environment).

    The FastAPI app wrapped in :class:`TileFastPath`, so stored tiles skip FastAPI entirely.
    """
    app = create_app(Settings())
    return TileFastPath(app, state=app.state)
