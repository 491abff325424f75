"""The tile fast path: ``GET|HEAD /tiles/{tileset}/{z}/{x}/{y}.mvt`` without routing.

:class:`TileResponder` answers stored tiles (memoised per path) and live tiles with the routes'
own logic (:mod:`.tilehttp`, :func:`.layers.live_answer`) and errors through the one error table
(:func:`.errors.error_reply`); :class:`TileFastPath` is its ASGI layer, :mod:`.rsgi` its RSGI
one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from trafficunit.mvt import TileCache

from .archive import Archive
from .errors import NotFound, error_reply
from .layers import LIVE, live_answer
from .settings import Settings
from .store import DataStore
from .tilehttp import TileAnswer, accepts_gzip, etag_matches, parse_zxy, stored_tile

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("trafficunit.server.fastpath")

_MEMO_MAX = 65536

Headers = list[tuple[str, str]]
RawHeaders = list[tuple[bytes, bytes]]


def error_answer(exc: Exception) -> TileAnswer:
    """An error as a tile answer, through the one error table (:func:`errors.error_reply`)."""
    status, detail, extra = error_reply(exc)
    if status == 500:
        log.error("unhandled error: %s", exc, exc_info=exc)
    body = json.dumps(detail).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    return TileAnswer(status, headers + list(extra.items()), body)


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
    (:mod:`.rsgi`) fast paths; the logic is the routes' own (:mod:`.tilehttp`,
    :func:`.layers.live_answer`).

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
        except Exception as exc:  # answered through the error table
            return error_answer(exc)

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
        """A live tile (same logic as the route: :func:`trafficunit_server.layers.live_answer`)."""
        assert self.store is not None and self.tile_cache is not None
        try:
            return live_answer(
                self.store,
                self.settings,
                self.tile_cache,
                name,
                _zxy(path),
                dict(parse_qsl(query)),
                accept_encoding=ae,
                if_none_match=inm,
                head=head,
                vary=self.vary,
            )
        except Exception as exc:  # answered through the error table
            return error_answer(exc)

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
        if name in LIVE and self.tile_cache is not None:
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
