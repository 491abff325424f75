"""PMTiles archives read through mmap with cached directories, reopened when replaced on disk.

``pmtiles.reader.Reader.get`` re-reads and decompresses the root directory on every call
(~100 requests/s). :class:`Archive` parses the header and root directory once, keeps leaf
directories in a dict, and keeps finished tiles (bytes + ETag) in a small LRU. A replaced file
(new inode, size or mtime, checked at most every ``reload_check_s``) is reopened on the next
request, so ``trafficunit tiles ... -o risk.pmtiles`` (written atomically) is picked up live.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import mmap
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pmtiles.tile import (
    Compression,
    TileType,
    deserialize_directory,
    deserialize_header,
    find_tile,
    zxy_to_tileid,
)

from trafficunit.errors import InputFileError
from trafficunit.mvt import TileCache

from .settings import TileServerSettings

_CONTENT_TYPES = {
    TileType.MVT: "application/vnd.mapbox-vector-tile",
    TileType.PNG: "image/png",
    TileType.JPEG: "image/jpeg",
    TileType.WEBP: "image/webp",
    TileType.AVIF: "image/avif",
}


@dataclass(frozen=True)
class StoredTile:
    """One tile as stored (possibly gzip) with strong ETags for each representation."""

    data: bytes
    gzipped: bool
    etag: str  # of ``data`` as stored
    etag_identity: str  # of the decompressed bytes, when stored gzipped

    def identity(self) -> bytes:
        return gzip.decompress(self.data) if self.gzipped else self.data


def _decompress(data: bytes, compression: Compression) -> bytes:
    if compression == Compression.GZIP:
        return gzip.decompress(data)
    if compression in (Compression.NONE, Compression.UNKNOWN):
        return data
    raise InputFileError(f"unsupported PMTiles internal compression {compression!r}")


def _directory(buf: bytes, compression: Compression) -> list[Any]:
    # pmtiles' deserialize_directory always gunzips its input
    if compression == Compression.GZIP:
        return deserialize_directory(buf)
    return deserialize_directory(gzip.compress(_decompress(buf, compression)))


class Archive:
    """A PMTiles v3 archive opened for serving.

    Parameters
    ----------
    path
        The ``.pmtiles`` file.
    tiles
        Tile serving settings: ``reload_check_s`` (minimum seconds between two checks of the
        file for replacement) and ``cache_entries`` (tiles kept in memory) are read here.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, tiles: TileServerSettings | None = None
    ) -> None:
        tiles = tiles or TileServerSettings()
        self.path = Path(path)
        self.name = self.path.stem
        self.reload_check_s = tiles.reload_check_s
        self._lock = threading.Lock()
        self._cache = TileCache(tiles.cache_entries)
        self._checked = 0.0
        self._open()

    # -- opening and reloading
    def _open(self) -> None:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise InputFileError(f"{self.path}: cannot open ({exc})") from exc
        with fh:
            st = os.fstat(fh.fileno())
            if st.st_size < 127:
                raise InputFileError(f"{self.path}: too small to be a PMTiles archive")
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            header = deserialize_header(mm[0:127])
        except Exception as exc:
            mm.close()
            raise InputFileError(f"{self.path}: not a PMTiles v3 archive ({exc})") from exc
        comp = header["internal_compression"]
        root_at = header["root_offset"]
        root = _directory(mm[root_at : root_at + header["root_length"]], comp)
        meta_raw = mm[
            header["metadata_offset"] : header["metadata_offset"] + header["metadata_length"]
        ]
        try:
            metadata = json.loads(_decompress(meta_raw, comp)) if meta_raw else {}
        except (ValueError, OSError):
            metadata = {}
        old = getattr(self, "_mm", None)
        self._mm = mm
        self._stat = (st.st_ino, st.st_size, st.st_mtime_ns)
        self.header: dict[str, Any] = dict(header)
        self.metadata: dict[str, Any] = metadata
        self._root = root
        self._leaves: dict[tuple[int, int], list[Any]] = {}
        self._cache.clear()
        self.version = hashlib.blake2b(repr(self._stat).encode(), digest_size=6).hexdigest()
        self.opened_at = time.time()
        if old is not None:
            old.close()

    def check(self) -> None:
        """Reopen the archive if the file was replaced (checked at most every reload_check_s)."""
        now = time.monotonic()
        if now - self._checked < self.reload_check_s:
            return
        self._checked = now
        try:
            st = os.stat(self.path)
        except OSError:
            return  # being replaced: keep serving the old one
        if (st.st_ino, st.st_size, st.st_mtime_ns) != self._stat:
            with self._lock:
                try:
                    self._open()
                except InputFileError:
                    return  # half-written or corrupt replacement: keep the old archive

    # -- properties
    @property
    def minzoom(self) -> int:
        return int(self.header["min_zoom"])

    @property
    def maxzoom(self) -> int:
        return int(self.header["max_zoom"])

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES.get(self.header["tile_type"], "application/octet-stream")

    @property
    def tile_compression(self) -> Compression:
        return Compression(self.header["tile_compression"])

    @property
    def bounds(self) -> list[float]:
        h = self.header
        return [
            h["min_lon_e7"] / 1e7,
            h["min_lat_e7"] / 1e7,
            h["max_lon_e7"] / 1e7,
            h["max_lat_e7"] / 1e7,
        ]

    @property
    def center(self) -> list[float]:
        h = self.header
        return [h["center_lon_e7"] / 1e7, h["center_lat_e7"] / 1e7, float(h["center_zoom"])]

    def vector_layers(self) -> list[dict[str, Any]]:
        layers = self.metadata.get("vector_layers")
        if isinstance(layers, str):
            try:
                layers = json.loads(layers)
            except ValueError:
                layers = None
        return list(layers or [])

    # -- tiles
    def _raw(self, tile_id: int) -> bytes | None:
        h = self.header
        comp = Compression(h["internal_compression"])
        entries = self._root
        for _ in range(4):
            entry = find_tile(entries, tile_id)
            if entry is None:
                return None
            if entry.run_length > 0:
                start = h["tile_data_offset"] + entry.offset
                return self._mm[start : start + entry.length]
            key = (entry.offset, entry.length)
            leaf = self._leaves.get(key)
            if leaf is None:
                start = h["leaf_directory_offset"] + entry.offset
                leaf = _directory(self._mm[start : start + entry.length], comp)
                self._leaves[key] = leaf
            entries = leaf
        return None

    def get(self, z: int, x: int, y: int) -> StoredTile | None:
        """The tile z/x/y, or ``None`` when the archive holds no such tile."""
        self.check()
        key = (z, x, y)
        cached = self._cache.get(key)
        if cached is not None:
            return cached if isinstance(cached, StoredTile) else None
        data = self._raw(zxy_to_tileid(z, x, y))
        if not data:
            self._cache.put(key, False)
            return None
        gz = self.tile_compression == Compression.GZIP or data[:2] == b"\x1f\x8b"
        digest = hashlib.blake2b(data, digest_size=12).hexdigest()
        tile = StoredTile(
            data=data,
            gzipped=gz,
            etag=f'"{digest}{"-gz" if gz else ""}"',
            etag_identity=f'"{digest}"',
        )
        self._cache.put(key, tile)
        return tile

    def close(self) -> None:
        self._mm.close()
