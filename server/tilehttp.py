"""HTTP semantics of tiles, in one place for the FastAPI routes and the ASGI fast path.

Strong ``ETag`` per representation, ``If-None-Match`` -> 304, ``Cache-Control``, gzip passed
through as stored (decompressed only for clients that do not accept gzip), ``Vary``, 204 for an
empty tile inside the zoom range, 404 outside it, 400 for malformed z/x/y.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NotRequired, TypedDict, Unpack

from trafficunit.errors import clip
from trafficunit.mvt import CachedTile

from .archive import Archive
from .errors import BadRequest, NotFound

MVT = "application/vnd.mapbox-vector-tile"
_VARY = "Accept-Encoding"
_INT = re.compile(r"^(0|[1-9][0-9]{0,7})$")


@dataclass
class TileAnswer:
    """Status, headers and body of a tile response (body empty for HEAD/204/304)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def parse_zxy(z: str, x: str, y: str, *, maxzoom: int = 30) -> tuple[int, int, int]:
    """Validate tile coordinates given as path strings; 400 unless 0 <= x, y < 2**z."""
    for name, value in (("z", z), ("x", x), ("y", y)):
        if not _INT.match(value):
            raise BadRequest(f"tile {name}={clip(value)} is not a non-negative integer")
    zi, xi, yi = int(z), int(x), int(y)
    if zi > maxzoom:
        raise NotFound(f"zoom {zi} is beyond the highest zoom served ({maxzoom})")
    n = 1 << zi
    if xi >= n or yi >= n:
        raise BadRequest(f"tile {zi}/{xi}/{yi} does not exist: x and y must be below {n} at z{zi}")
    return zi, xi, yi


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (``gzip;q=0`` refuses it)."""
    if not accept_encoding:
        return False
    for token in accept_encoding.lower().split(","):
        name, _, params = token.strip().partition(";")
        if name.strip() in ("gzip", "x-gzip", "*"):
            q = params.strip()
            if q.startswith("q=") and q[2:].strip() in ("0", "0.0", "0.00", "0.000"):
                continue
            return True
    return False


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison of ``If-None-Match`` against ``etag`` (RFC 9110 13.1.2)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in if_none_match.split(","))


class TileRequest(TypedDict):
    """What a tile request asks besides the tile: the keywords of :func:`stored_tile` and
    :func:`live_tile`."""

    accept_encoding: str | None
    if_none_match: str | None
    head: bool
    #: Seconds of ``Cache-Control: public, max-age``.
    max_age: int
    #: The ``Vary`` header (default ``Accept-Encoding``).
    vary: NotRequired[str]


def _answer(
    body: bytes, etag: str, gzipped: bool, content_type: str, req: TileRequest
) -> TileAnswer:
    """200 with the tile (no body for HEAD), or 304 when ``If-None-Match`` matches."""
    headers = [
        ("cache-control", f"public, max-age={req['max_age']}"),
        ("etag", etag),
        ("vary", req.get("vary", _VARY)),
    ]
    if etag_matches(req["if_none_match"], etag):
        return TileAnswer(304, headers)
    headers += [("content-type", content_type), ("content-length", str(len(body)))]
    if gzipped:
        headers.append(("content-encoding", "gzip"))
    return TileAnswer(200, headers, b"" if req["head"] else body)


def _empty(req: TileRequest) -> TileAnswer:
    """204: no feature in the tile (inside the zoom range)."""
    cache_control = f"public, max-age={req['max_age']}"
    return TileAnswer(204, [("cache-control", cache_control), ("vary", req.get("vary", _VARY))])


def stored_tile(archive: Archive, z: int, x: int, y: int, **req: Unpack[TileRequest]) -> TileAnswer:
    """Answer for tile z/x/y of a PMTiles archive (coordinates already parsed)."""
    archive.check()
    if z < archive.minzoom or z > archive.maxzoom:
        raise NotFound(
            f"zoom {z} is outside tileset {archive.name!r} (z{archive.minzoom}-z{archive.maxzoom})"
        )
    tile = archive.get(z, x, y)
    if tile is None:
        return _empty(req)
    # gzip passed through as stored; decompressed only for a client that refuses gzip
    as_stored = not tile.gzipped or accepts_gzip(req["accept_encoding"])
    return _answer(
        tile.data if as_stored else tile.identity(),
        tile.etag if as_stored else tile.etag_identity,
        tile.gzipped and as_stored,
        archive.content_type,
        req,
    )


def live_tile(tile: CachedTile, **req: Unpack[TileRequest]) -> TileAnswer:
    """Answer for a finished live tile."""
    if not tile.raw:
        return _empty(req)
    gz = accepts_gzip(req["accept_encoding"])
    return _answer(
        tile.gz if gz else tile.raw, tile.etag[:-1] + '-gz"' if gz else tile.etag, gz, MVT, req
    )
