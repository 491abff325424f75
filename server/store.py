"""What the server serves, loaded from a data folder built by ``trafficunit build``.

What a folder holds (file names, manifest, checks) is defined in one place,
:mod:`trafficunit.datafolder`; this module asks it and nothing else.

Tables are loaded once, indexed (shapely ``STRtree``) and pre-serialised to GeoJSON strings so
list endpoints only select and join; a table replaced on disk is reloaded (new data version)
on the next request after ``reload_check_s``, and the folder is checked again (what is missing
or inconsistent is logged in one line and shown by ``/healthz``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from trafficunit.datafolder import TABLES, DataFolder
from trafficunit.errors import InputFileError
from trafficunit.io import read_table
from trafficunit.mvt import LiveLayer, TileCache
from trafficunit.tiles import json_values

from .archive import Archive
from .layers import LIVE
from .settings import TileServerSettings

log = logging.getLogger("trafficunit.server")
#: Bookkeeping columns left out of list responses (``?properties=all`` and ``/units/{id}``
#: include them).
LIST_EXCLUDE = frozenset(
    {
        "osm_ids",
        "neighbours",
        "from_unit",
        "to_unit",
        "junction_id",
        "road_classes",
        "layer",
        "source",
    }
)
#: Attributes carried by live tiles (the map styles and popups need no more; details: /units/id),
#: from the layers' specs (:mod:`trafficunit_server.layers`).
LIVE_COLUMNS: dict[str, tuple[str, ...]] = {s.layer: s.columns for s in LIVE.values()}
_ID = {"units": "unit_id", "black_spots": "spot_id"}


def _json_ready(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        s = df[col]
        if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(s):
            out[col] = s.dt.strftime("%Y-%m-%dT%H:%M:%S%z").astype(object).where(s.notna(), None)
        elif pd.api.types.is_float_dtype(s):
            out[col] = s.astype("float64").round(6)
        else:
            out[col] = s
    return out


@dataclass
class Table:
    """One loaded table with its spatial index and pre-serialised GeoJSON features."""

    name: str
    frame: gpd.GeoDataFrame  # EPSG:4326, id as a column, positional index
    tree: shapely.STRtree
    features: np.ndarray  # GeoJSON Feature per row, UTF-8 bytes (list properties)
    stat: tuple[int, int, int]
    features_all: np.ndarray | None = None  # with every property (detail views)
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)

    def bbox_rows(self, bbox: tuple[float, float, float, float] | None) -> np.ndarray:
        """Positions of rows whose geometry intersects ``bbox`` (all rows when None)."""
        if bbox is None:
            return np.arange(len(self.frame))
        return np.sort(self.tree.query(shapely.box(*bbox), predicate="intersects"))


def _feature_texts(
    props: pd.DataFrame, ids: pd.Series, geo_json: Any, cols: list[str]
) -> np.ndarray:
    """GeoJSON Feature text per row, assembled by Arrow kernels (no per-row Python)."""
    if len(props) == 0:
        return np.zeros(0, dtype=object)
    pieces: list[Any] = ['{"type":"Feature","id":', json_values(ids.astype(str)), ',"properties":{']
    for k, col in enumerate(cols):
        pieces += [("," if k else "") + json.dumps(str(col)) + ":", json_values(props[col])]
    pieces += ['},"geometry":', pa.array(geo_json, pa.string()), "}"]
    out = pc.binary_join_element_wise(*pieces, "").cast(pa.binary())
    return np.asarray(out.to_numpy(zero_copy_only=False), dtype=object)  # bytes per row


def _load_table(name: str, path: Path) -> Table:
    df = read_table(path, index=None)
    if not isinstance(df, gpd.GeoDataFrame):
        raise InputFileError(f"{path}: no geometry column; expected a GeoParquet table")
    if df.crs is None:
        raise InputFileError(f"{path}: no CRS in the GeoParquet metadata")
    id_col = _ID.get(name, "event_id")
    if df.index.name == id_col or id_col not in df.columns:
        df = df.reset_index()
    if id_col not in df.columns:
        df[id_col] = np.arange(len(df)).astype(str)
    if name != "units" and name != "black_spots" and df[id_col].duplicated().any():
        # line/polygon events joined to several units: one feature, ';'-joined unit ids
        if "unit_id" in df:
            ids = df.groupby(id_col, sort=False)["unit_id"].agg(
                lambda s: ";".join(s.dropna().astype(str).unique())
            )
            df = df.drop_duplicates(id_col).copy()
            df["unit_id"] = df[id_col].map(ids).replace("", None)
        else:
            df = df.drop_duplicates(id_col)
    df = df.to_crs(4326) if not df.crs.equals("EPSG:4326") else df
    df = df[~(df.geometry.isna() | df.geometry.is_empty)].reset_index(drop=True)
    geoms = np.asarray(df.geometry.array)
    # GeoJSON text per row, built once: coordinates at 1e-7 degrees (about 1 cm)
    geo_json = shapely.to_geojson(shapely.set_precision(geoms, 1e-7)) if len(df) else []
    props = _json_ready(df.drop(columns=[df.geometry.name]))
    full = _feature_texts(props, df[id_col], geo_json, list(props.columns))
    summary_cols = [c for c in props.columns if c not in LIST_EXCLUDE]
    summary = (
        full
        if len(summary_cols) == len(props.columns)
        else _feature_texts(props, df[id_col], geo_json, summary_cols)
    )
    st = os.stat(path)
    return Table(
        name,
        df,
        shapely.STRtree(geoms),
        summary,
        (st.st_ino, st.st_size, st.st_mtime_ns),
        features_all=full,
    )


class DataStore:
    """Tables and tilesets of a data folder, reloaded when their files change.

    Parameters
    ----------
    data_dir
        The folder.
    tiles
        Tile serving settings: ``reload_check_s`` (minimum seconds between two checks of the
        folder) and ``cache_entries`` (tiles kept per archive) are read here.
    night_hours
        The hours of darkness (from, to) for the ``light`` filters.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        tiles: TileServerSettings | None = None,
        night_hours: tuple[int, int] = (19, 7),
    ) -> None:
        self.tiles = tiles or TileServerSettings()
        self.folder = DataFolder(data_dir)  # a missing folder: InputFileError naming the fix
        self.data_dir = self.folder.root
        #: What is missing or inconsistent in the folder (checked on start and on reload).
        self.problems: list[str] = []
        self.reload_check_s = self.tiles.reload_check_s
        self.night_hours = night_hours
        self.tables: dict[str, Table] = {}
        self.archives: dict[str, Archive] = {}
        self.live: dict[str, LiveLayer] = {}
        self.manifest: dict[str, Any] = {}
        self.mask_cache = TileCache(128)  # live-layer filter masks by (version, layer, filter)
        self.version = "0"
        self._checked = 0.0
        self._lock = threading.Lock()
        #: Called with the store on every check (the ledger keeps live hazards in step).
        self.hooks: list[Callable[[DataStore], None]] = []
        self._scan(force=True)

    # -- loading
    def _scan(self, *, force: bool = False) -> None:
        changed = force
        for name in TABLES:
            path = self.folder.path(name)
            if not path.exists():
                if name in self.tables:
                    del self.tables[name]
                    changed = True
                continue
            st = os.stat(path)
            old = self.tables.get(name)
            if old is None or old.stat != (st.st_ino, st.st_size, st.st_mtime_ns):
                self.tables[name] = _load_table(name, path)
                changed = True
        tilesets = self.folder.tilesets
        for name, path in tilesets.items():
            if name not in self.archives:
                try:
                    self.archives[name] = Archive(path, tiles=self.tiles)
                except InputFileError:
                    continue
                changed = True
        for name in list(self.archives):
            if name not in tilesets:
                del self.archives[name]
                changed = True
        if self.folder.has("manifest"):
            try:
                self.manifest = self.folder.read_manifest()
            except InputFileError as exc:
                log.warning("%s", exc)
                self.manifest = {}
        if changed:
            self._build_live()
            stats = repr(sorted((k, t.stat) for k, t in self.tables.items())).encode()
            self.version = hashlib.blake2b(stats, digest_size=6).hexdigest()
            self._check_folder()

    def _check_folder(self) -> None:
        """What is missing or inconsistent, logged in one line when it changes."""
        try:
            problems = self.folder.problems()
        except InputFileError as exc:
            problems = [str(exc)]
        if problems != self.problems and problems:
            log.warning("data folder %s: %s", self.data_dir, "; ".join(problems))
        self.problems = problems

    def _build_live(self) -> None:
        live: dict[str, LiveLayer] = {}
        for name in ("accidents", "hazards", "workzones"):
            table = self.tables.get(name)
            if table is None:
                continue
            cols = [c for c in LIVE_COLUMNS[name] if c in table.frame.columns]
            live[name] = LiveLayer(name, table.frame, id_column="event_id", columns=cols)
        acc = self.tables.get("accidents")
        if acc is not None:
            acc.extra.update(_time_arrays(acc.frame, self.night_hours))
        units = self.tables.get("units")
        if units is not None:
            cols = [c for c in LIVE_COLUMNS["units"] if c in units.frame]
            live["units"] = LiveLayer("units", units.frame, id_column="unit_id", columns=cols)
        self.live = live

    def check(self) -> None:
        """Reload tables that changed on disk (at most every ``reload_check_s``)."""
        now = time.monotonic()
        if now - self._checked >= self.reload_check_s:
            self._checked = now
            # a half-written replacement raises: keep serving what we have
            with self._lock, contextlib.suppress(InputFileError):
                self._scan()
        for hook in self.hooks:
            hook(self)

    def table(self, name: str) -> Table | None:
        self.check()
        return self.tables.get(name)

    def missing(self, table: str) -> str:
        """Why a table is unavailable and the command that builds it (for a 503)."""
        return (
            f"no {self.folder.path(table).name} in the data folder; build it with "
            f"{self.folder.rebuild_command()}"
        )

    def extent(self) -> dict[str, Any] | None:
        """Bounds and centre of the units (WGS84): the manifest's, else the loaded table's."""
        ext = self.manifest.get("extent")
        if isinstance(ext, dict) and ext.get("bounds"):
            return ext
        units = self.tables.get("units")
        if units is None or len(units) == 0:
            return None
        w, s_, e, n = (round(float(v), 6) for v in units.frame.total_bounds)
        return {"bounds": [w, s_, e, n], "center": [(w + e) / 2, (s_ + n) / 2]}

    def rule(self) -> dict[str, Any]:
        """The risk rule (for legends) from the manifest, or a description of the defaults."""
        rule = self.manifest.get("rule")
        return rule if isinstance(rule, dict) else {}


def _time_arrays(frame: pd.DataFrame, night_hours: tuple[int, int]) -> dict[str, np.ndarray]:
    """Per accident: UTC time in ns (1 July of the year when only a year is known), night flag."""
    n = len(frame)
    t_ns = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    if "time" in frame:
        t = pd.to_datetime(frame["time"], utc=True, errors="coerce")
        ok = t.notna().to_numpy()
        if ok.any():
            t_ns[ok] = t[ok].dt.as_unit("ns").astype("int64").to_numpy()
    if "year" in frame:
        yr = pd.to_numeric(frame["year"], errors="coerce")
        fill = (t_ns == np.iinfo(np.int64).min) & yr.notna().to_numpy()
        if fill.any():
            mid = pd.to_datetime(yr[fill].astype(int).astype(str) + "-07-01", utc=True)
            t_ns[fill] = mid.dt.as_unit("ns").astype("int64").to_numpy()
    hour = (
        pd.to_numeric(frame["hour"], errors="coerce")
        if "hour" in frame
        else pd.Series(np.nan, index=frame.index)
    )
    if hour.isna().all() and "time" in frame:
        hour = pd.to_datetime(frame["time"], errors="coerce").dt.hour
    h = hour.to_numpy(dtype=float, na_value=np.nan)
    start, end = night_hours
    night = (h >= start) | (h < end)
    known = ~np.isnan(h)
    return {"t_ns": t_ns, "night": night & known, "day": ~night & known}
