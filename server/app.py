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
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles

from trafficunit.mvt import TileCache

from . import alerts, push
from .archive import Archive
from .bounds import InputBounds
from .errors import NotFound, ServerError, install_error_handlers
from .ledger import BodyLimit, install_ledger_errors, ledger_lifespan
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
from .tilehttp import TileAnswer, accepts_gzip, etag_matches, parse_zxy, stored_tile

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Routers mounted by :func:`create_app`; later features add theirs here.
# webmap first: its /units/{id}/why and /black-spots/why precede the data routes' paths
ROUTERS = [webmap.router, meta.router, tiles.router, units.router, accidents.router]
ROUTERS += [blackspots.router]
ROUTERS += [hazards.router, workzones.router, tokens.router, kpis.router]
ROUTERS += [zones.router, investigations.router, roadchiefs.router, public.router]
ROUTERS += [permits.router, sitefile.router]
ROUTERS += [live_router, push.router, alerts.router]  # /alerts/stream before /alerts/{id}


_MEMO_MAX = 65536

Headers = list[tuple[str, str]]
RawHeaders = list[tuple[bytes, bytes]]


def _error_answer(exc: ServerError) -> TileAnswer:
    body = json.dumps({"detail": exc.detail}).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    return TileAnswer(exc.status, headers, body)


def _zxy(path: str) -> tuple[int, int, int]:
    """z, x, y of ``/tiles/{tileset}/{z}/{x}/{y}.mvt`` (404 for another shape, 400 if bad)."""
    parts = path[7:-4].split("/")
    if len(parts) != 4:
        raise NotFound(f"no route {path}")
    return parse_zxy(parts[1], parts[2], parts[3])


def _raw(headers: Headers) -> RawHeaders:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


class TileResponder:
    """Tile answers without routing, shared by the ASGI (:class:`TileFastPath`) and RSGI
    (:mod:`server.rsgi`) fast paths; the logic is the routes' own (:mod:`server.tilehttp`,
    :func:`tiles.live_answer`).

    Stored tiles are memoised per path, gzip support and method, and dropped when the archive
    changes on disk; ``If-None-Match`` and CORS are applied per request.
    """

    def __init__(self) -> None:
        self.store: DataStore | None = None
        self.settings: Settings = Settings.model_construct()
        self.tile_cache: TileCache | None = None
        self._gzip: dict[str | bytes | None, bool] = {}
        self._memo: dict[tuple[str, bool, bool], tuple[str, int, Headers, RawHeaders, bytes, str]]
        self._memo = {}

    def bind(self, state: Any) -> DataStore | None:
        """Take the store, settings and tile cache from ``app.state`` once the lifespan opened
        them; the store, or None while it is not open yet."""
        if self.store is None:
            self.store = getattr(state, "store", None)
            self.settings = state.settings
            self.tile_cache = getattr(state, "tile_cache", None)
        return self.store

    @property
    def vary(self) -> str:
        if self.settings.cors_origins == ["*"]:
            return "Accept-Encoding"
        return "Accept-Encoding, Origin"

    def cors(self, origin: str | None) -> str | None:
        """``Access-Control-Allow-Origin`` for a request's ``Origin`` (None: add nothing)."""
        if origin is None:
            return None
        allowed = self.settings.cors_origins
        if "*" in allowed:
            return "*"
        return origin if origin in allowed else None

    def _accepts_gzip(self, ae: str | bytes | None) -> bool:
        gz = self._gzip.get(ae)
        if gz is None:
            text = ae.decode("latin-1") if isinstance(ae, bytes) else ae
            gz = accepts_gzip(text)
            if len(self._gzip) < 1024:  # a handful of distinct Accept-Encoding values in practice
                self._gzip[ae] = gz
        return gz

    def _build(self, archive: Archive, path: str, gz: bool, head: bool) -> TileAnswer:
        try:
            z, x, y = _zxy(path)
            return stored_tile(
                archive,
                z,
                x,
                y,
                accept_encoding="gzip" if gz else None,
                if_none_match=None,
                head=head,
                max_age=self.settings.tiles.max_age,
                vary=self.vary,
            )
        except ServerError as exc:
            return _error_answer(exc)

    def stored(
        self,
        archive: Archive,
        path: str,
        ae: str | bytes | None,
        inm: str | None,
        head: bool,
    ) -> tuple[int, Headers, RawHeaders, bytes]:
        """A stored tile: status, headers (as text and as bytes) and body."""
        archive.check()
        gz = self._accepts_gzip(ae)
        key = (path, gz, head)
        memo = self._memo.get(key)
        if memo is None or memo[0] != archive.version:
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            answer = self._build(archive, path, gz, head)
            etag = next((v for k, v in answer.headers if k == "etag"), "")
            memo = (
                archive.version,
                answer.status,
                answer.headers,
                _raw(answer.headers),
                answer.body,
                etag,
            )
            self._memo[key] = memo
        _, status, headers, raw, body, etag = memo
        if inm is not None and etag and etag_matches(inm, etag):
            keep = ("etag", "cache-control", "vary")
            headers = [h for h in headers if h[0] in keep]
            return 304, headers, _raw(headers), b""
        return status, headers, raw, body

    def live(
        self,
        name: str,
        path: str,
        query: str,
        ae: str | None,
        inm: str | None,
        head: bool,
    ) -> TileAnswer:
        """A live tile (same logic as the route: :func:`tiles.live_answer`)."""
        assert self.store is not None and self.tile_cache is not None
        try:
            z, x, y = _zxy(path)
            return tiles.live_answer(
                self.store,
                self.settings,
                self.tile_cache,
                name,
                z,
                x,
                y,
                dict(parse_qsl(query)),
                accept_encoding=ae,
                if_none_match=inm,
                head=head,
                vary=self.vary,
            )
        except ServerError as exc:
            return _error_answer(exc)

    def route(self, state: Any, method: str, path: str, query: str | bytes) -> Any:
        """What the fast path answers: an :class:`Archive` (stored tile, no query string), a
        live layer's name (str), or None (hand the request to the app)."""
        if not (path.startswith("/tiles/") and path.endswith(".mvt")):
            return None
        store = self.store if self.store is not None else self.bind(state)
        if store is None or method not in ("GET", "HEAD"):
            return None
        name = path[7 : path.find("/", 7)]
        archive = store.archives.get(name)
        if archive is not None:
            return None if query else archive
        if name in tiles.LIVE and self.tile_cache is not None:
            return name
        return None


class TileFastPath:
    """ASGI layer answering ``GET|HEAD /tiles/{tileset}/{z}/{x}/{y}.mvt`` (stored and live).

    Used as the app's outermost middleware (state from ``scope["app"]``), or wrapped around the
    whole FastAPI app by :func:`app_from_env` (``state`` given) so tile requests skip FastAPI's
    own ``__call__`` too. Anything else goes to the app.
    """

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], state: Any = None
    ) -> None:
        self.app = app
        self.state = state
        self.tiles = TileResponder()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            state = self.state if self.state is not None else scope["app"].state
            target = self.tiles.route(state, scope["method"], path, scope["query_string"])
            if target is not None:
                ae: bytes | None = None
                inm = origin = None
                for k, v in scope["headers"]:
                    if k == b"accept-encoding":
                        ae = v
                    elif k == b"if-none-match":
                        inm = v.decode("latin-1")
                    elif k == b"origin":
                        origin = v.decode("latin-1")
                head = scope["method"] == "HEAD"
                if isinstance(target, str):
                    query = scope["query_string"].decode("latin-1")
                    text = ae.decode("latin-1") if ae is not None else None
                    answer = self.tiles.live(target, path, query, text, inm, head)
                    status, raw, body = answer.status, _raw(answer.headers), answer.body
                else:
                    status, _, raw, body = self.tiles.stored(target, path, ae, inm, head)
                allow = self.tiles.cors(origin)
                if allow is not None:
                    raw = [*raw, (b"access-control-allow-origin", allow.encode("latin-1"))]
                await send({"type": "http.response.start", "status": status, "headers": raw})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


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
        # Swagger UI and ReDoc are served from vendored assets (server.routers.webmap)
        docs_url=None,
        redoc_url=None,
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
    """Factory for ``uvicorn server.app:app_from_env --factory`` (settings from the environment).

    The FastAPI app wrapped in :class:`TileFastPath`, so stored tiles skip FastAPI entirely.
    """
    from .supervision import bind_to_parent

    bind_to_parent()  # a worker of `trafficunit serve --server uvicorn` dies with its parent
    app = create_app(Settings())
    return TileFastPath(app, state=app.state)
