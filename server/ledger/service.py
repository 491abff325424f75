"""The ledger service: opening the ledger, live hazard and work-zone layers, sweeps, imports.

:class:`LedgerService` opens the hazard ledger in ``lifespan`` (``app.state.ledger``), keeps it
pointed at the data folder's units, puts its hazards in the ``live-hazards`` tiles (a store
hook, rebuilt when the ledger's change sequence moves, also for writes made by other server
processes), runs the overdue/reopen sweep periodically, and imports the data folder's
``hazards.parquet`` once. Who calls is :mod:`.auth`; turning requests and answers into HTTP is
:mod:`.http`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar, cast

import geopandas as gpd
import pandas as pd
from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

from trafficunit import InputFileError
from trafficunit.datafolder import FILES
from trafficunit.ledger import Ledger, Principal, hash_token
from trafficunit.ledger import lifecycle as lc
from trafficunit.mvt import LiveLayer
from trafficunit.settings import CLOSED_STATUSES

from ..settings import Settings
from ..store import LIVE_COLUMNS as TABLE_LIVE_COLUMNS
from ..store import DataStore
from .auth import AuthThrottle, service_of

log = logging.getLogger("trafficunit.server.ledger")

#: Columns of the hazards carried by the live tiles.
LIVE_COLUMNS = [
    "event_id",
    "status",
    "grade",
    "category",
    "overdue",
    "supervision",
    "report_count",
    "unit_id",
]
T = TypeVar("T")
_ONCE_LOCK = threading.Lock()

_ADMIN_ENV = Principal("env-admin", "admin", "TRAFFICUNIT_ADMIN_TOKEN")


class _LazyLayer:
    """A live tile layer rebuilt from the ledger on first use after a change.

    Writes only move the store's data version (so no stale tile is served); the layer is
    rebuilt when a tile or TileJSON next asks for it, not on every write. Subclasses name the
    layer and its columns and build its frame.
    """

    name = ""
    #: the columns the layer carries, where its frame has them (not ``columns``: that name is
    #: the built layer's, reached through ``__getattr__``)
    carried: tuple[str, ...] = ()

    def __init__(self, svc: LedgerService) -> None:
        self._svc = svc
        self._layer: LiveLayer | None = None
        self._key: Any = None
        self._lock = threading.Lock()

    def _state(self) -> Any:
        """What the layer depends on: a change rebuilds it."""
        return self._svc._known_seq

    def _frame(self) -> gpd.GeoDataFrame:
        raise NotImplementedError

    def get(self) -> LiveLayer:
        """The current layer."""
        key = self._state()
        if self._layer is None or self._key != key:
            with self._lock:
                if self._layer is None or self._key != key:
                    frame = self._frame().reset_index(drop=True)
                    cols = [c for c in self.carried if c in frame.columns]
                    self._layer = LiveLayer(self.name, frame, id_column="event_id", columns=cols)
                    self._key = key
        return self._layer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)

    def __len__(self) -> int:
        return len(self.get())


class LazyHazardLayer(_LazyLayer):
    """The ledger's hazards as a live tile layer."""

    name = "hazards"
    carried = tuple(LIVE_COLUMNS)

    def _frame(self) -> gpd.GeoDataFrame:
        return self._svc.ledger.frame()


#: Columns of the work zones carried by the live tiles: those of ``workzones.parquet``'s layer.
ZONE_COLUMNS = list(TABLE_LIVE_COLUMNS["workzones"])


class LazyWorkZoneLayer(_LazyLayer):
    """The data folder's work zones plus those registered through the API, as a live layer.

    A site code registered through the API replaces a row of ``workzones.parquet`` with the
    same code.
    """

    name = "workzones"
    carried = tuple(ZONE_COLUMNS)

    def __init__(self, svc: LedgerService) -> None:
        super().__init__(svc)
        self.base: Any = (
            None  # the store's workzones table (trafficunit_server.store.Table) or None
        )

    def _state(self) -> Any:
        return (self._svc._known_seq, id(self.base))

    def _frame(self) -> gpd.GeoDataFrame:
        _, zones = self._svc.ledger.list_workzones(limit=10_000_000)
        registered = gpd.GeoDataFrame(
            {
                "event_id": [z.site_code for z in zones],
                "unit_id": [";".join(z.unit_ids) or None for z in zones],
                "site_code": [z.site_code for z in zones],
                "start": pd.to_datetime(
                    pd.Series([z.start for z in zones], dtype=object), utc=True
                ),
                "end": pd.to_datetime(pd.Series([z.end for z in zones], dtype=object), utc=True),
                "lanes_taken": pd.array([z.lanes_taken for z in zones], dtype="Int64"),
            },
            geometry=[z.geometry for z in zones],
            crs=4326,
        )
        if self.base is None or not len(self.base.frame):
            return registered
        table = self.base.frame
        if "site_code" in table and len(registered):
            table = table[~table["site_code"].astype(str).isin(registered["site_code"])]
        cols = [c for c in ZONE_COLUMNS if c in table.columns]
        return pd.concat([table[[*cols, table.geometry.name]].to_crs(4326), registered])


class LedgerService:
    """The server's ledger and what keeps it tied to the data store."""

    def __init__(self, settings: Settings) -> None:
        ls = settings.ledger
        self.settings = settings
        url = ls.database_url or f"sqlite:///{(settings.data_dir / FILES['ledger']).resolve()}"
        self.rules = ls.rules()
        self.ledger = Ledger.open(
            url,
            settings=self.rules,
            sqlite_synchronous=ls.sqlite_synchronous,
            pool_size=ls.pool_size,
        )
        self._admin_hash = hash_token(ls.admin_token) if ls.admin_token else None
        self.throttle = AuthThrottle(ls.auth_failures, ls.auth_window_s)
        self.zones: gpd.GeoDataFrame | None = None
        self.zone_names: pd.Series | None = None
        if ls.jurisdictions is not None:
            self._load_zones()
        self._lock = threading.Lock()
        self._sweeping = threading.Lock()  # a sweep and close() never overlap
        self._closed = False
        self._units_table: object = None
        self._proxy = LazyHazardLayer(self)
        self._zones = LazyWorkZoneLayer(self)
        self._layer_seq = -1
        self._base_version: str | None = None
        self._set_version: str | None = None
        self._polled = 0.0
        self._known_seq = 0

    def _load_zones(self) -> None:
        ls = self.settings.ledger
        path = ls.jurisdictions
        try:
            zones = gpd.read_file(path)
        except Exception as exc:
            raise InputFileError(f"{path}: cannot read the jurisdictions file ({exc})") from exc
        if zones.crs is None:
            raise InputFileError(f"{path}: the jurisdictions have no CRS")
        zones = zones.to_crs(4326)
        field = ls.jurisdiction_field
        if field is None:
            field = next((c for c in ("name", "code", "id") if c in zones.columns), None)
        if field is None or field not in zones.columns:
            raise InputFileError(
                f"{path}: no column {field!r} naming the jurisdictions; set "
                "TRAFFICUNIT_LEDGER_JURISDICTION_FIELD"
            )
        self.zones = zones
        self.zone_field = field
        self.zone_names = zones[field].astype(str)

    def close(self) -> None:
        """Close the database once a sweep in flight has finished.

        The periodic sweep runs in a worker thread that cancelling its task does not stop;
        closing SQLite connections under it crashed the process.
        """
        with self._sweeping:
            self._closed = True
            self.ledger.close()

    # -- auth
    def principal(self, token: str) -> Principal:
        """Who holds ``token`` (the bootstrap admin token, or a stored one)."""
        if self._admin_hash is not None and hmac.compare_digest(
            hash_token(token), self._admin_hash
        ):
            return _ADMIN_ENV
        return self.ledger.authenticate(token)

    # -- the store hook
    def hook(self, store: DataStore) -> None:
        """Keep the ledger's units and the live hazard layer in step with the store."""
        units = store.tables.get("units")
        if units is not self._units_table:
            with self._lock:
                if units is not self._units_table:
                    self.ledger.set_units(units.frame if units is not None else None)
                    self._units_table = units
        now = time.monotonic()
        seq = self.ledger.index.seq
        if now - self._polled >= store.reload_check_s:
            self._polled = now
            with contextlib.suppress(Exception):  # a busy database: try again next time
                seq = max(seq, self.ledger.change_seq())
        self._known_seq = max(self._known_seq, seq)
        if store.live.get("hazards") is not self._proxy:
            store.live["hazards"] = cast(LiveLayer, self._proxy)
        self._zones.base = store.tables.get("workzones")
        if store.live.get("workzones") is not self._zones:
            store.live["workzones"] = cast(LiveLayer, self._zones)
        from ..routers.permits import attach_layer  # the live-permits tileset (issue 19)

        attach_layer(self, store)
        if self._known_seq != self._layer_seq or store.version != self._set_version:
            with self._lock:
                if store.version != self._set_version:
                    self._base_version = store.version
                self._layer_seq = self._known_seq
                self._set_version = f"{self._base_version}.{self._layer_seq}"
                store.version = self._set_version

    def note_write(self) -> None:
        """A write the in-memory hazard index does not see (a work zone): move the version now."""
        with contextlib.suppress(Exception):
            self._known_seq = max(self._known_seq, self.ledger.change_seq())

    # -- sweeps and imports
    def sweep(self, store: DataStore | None) -> dict[str, list[str]]:
        """Escalate overdue hazards; reopen closed ones with a serious crash after closure.

        Does nothing once the service is closed.
        """
        with self._sweeping:
            if self._closed:
                return {"escalated": [], "reopened": []}
            escalated = self.ledger.escalate_overdue()
            reopened: list[str] = []
            acc = store.tables.get("accidents") if store is not None else None
            if acc is not None:
                reopened = self.ledger.reopen_for_crashes(acc.frame)
        return {"escalated": escalated, "reopened": reopened}

    def import_table(self, store: DataStore) -> int:
        """Import the data folder's hazards (``hazards.parquet``) with their states; how many.

        Each row is imported once (its ``event_id`` is the report's external id), so a restart
        or a rebuilt table adds only new rows. Unknown categories become
        ``environment.other`` with the original named in the description.
        """
        table = store.tables.get("hazards")
        if table is None or not len(table):
            return 0
        frame = table.frame
        cats = self.ledger.catalogue
        now = datetime.now(UTC)
        reports = []
        for row in frame.itertuples(index=False):
            status = str(getattr(row, "status", "") or "").strip().lower()
            if status in lc.STATES:
                state = status
            elif status in CLOSED_STATUSES:
                state = lc.CLOSED
            else:
                state = lc.INITIAL_STATE
            raw_cat = str(getattr(row, "category", "") or "")
            try:
                category = cats.resolve(raw_cat)
            except ValueError:
                category = "environment.other"
            grade = getattr(row, "grade", None)
            t = getattr(row, "reported_at", None)
            t = None if t is None or pd.isna(t) else pd.Timestamp(t)
            if t is not None and t.tzinfo is None:
                t = t.tz_localize("UTC")
            reports.append(
                {
                    "geometry": row.geometry,
                    "category": category,
                    "actor": "import",
                    "role": "admin",
                    "grade": grade if grade in lc.GRADES else None,
                    "description": None if category == raw_cat else f"imported category: {raw_cat}",
                    "source": "import",
                    "reported_at": min(t.to_pydatetime(), now) if t is not None else None,
                    "external_id": f"import:{row.event_id}",
                    "link_duplicates": False,
                    "initial_state": state,
                }
            )
        # one transaction, one vectorised unit assignment; a row the ledger refuses (no
        # geometry, say) is left out and named in the log, the others are imported
        batch = self.ledger.report_many(reports, skip_invalid=True)
        for i, reason in list(batch.errors.items())[:20]:
            log.warning(
                "hazards.parquet row %d (%s) not imported: %s", i, reports[i]["external_id"], reason
            )
        if len(batch.errors) > 20:
            log.warning("... and %d more rows not imported", len(batch.errors) - 20)
        return batch.created


# --------------------------------------------------------------------------------------------
# lifespan and app wiring


@contextlib.asynccontextmanager
async def ledger_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the ledger (after the store), import, sweep periodically; close at the end."""
    settings: Settings = app.state.settings
    svc = await run_in_threadpool(LedgerService, settings)
    app.state.ledger = svc
    store: DataStore = app.state.store
    store.hooks.append(svc.hook)
    try:
        await _import_once(svc, store)
        interval = settings.ledger.sweep_interval_s
        async with every(interval, lambda: svc.sweep(store), "ledger sweep"):
            yield
    finally:
        with contextlib.suppress(ValueError):
            store.hooks.remove(svc.hook)
        svc.close()


async def _import_once(svc: LedgerService, store: DataStore) -> None:
    """Import ``hazards.parquet`` (the ledger works without it: a failure is logged)."""
    try:
        svc.hook(store)  # the ledger knows the units before it assigns imported hazards
        n = await run_in_threadpool(svc.import_table, store)
        if n:
            log.info("imported %d hazards from hazards.parquet into the ledger", n)
    except Exception:
        log.exception("importing hazards.parquet into the ledger failed")


def made_once(owner: Any, name: str, make: Callable[[], T]) -> T:
    """``owner``'s attribute ``name``, made by ``make()`` the first time it is asked for (once,
    under a lock, however many threads ask): a router's store kept on the ledger service."""
    value: T | None = getattr(owner, name, None)
    if value is None:
        with _ONCE_LOCK:
            value = getattr(owner, name, None)
            if value is None:
                value = make()
                setattr(owner, name, value)
    return value


@contextlib.asynccontextmanager
async def every(
    interval: float,
    fn: Callable[[], Any],
    what: str,
    *,
    wait_first: bool = False,
    logger: logging.Logger = log,
) -> AsyncIterator[None]:
    """Run ``fn`` in a worker thread every ``interval`` seconds while inside (never when
    ``interval`` <= 0), the first time at once or, with ``wait_first``, after ``interval``; a
    failure is logged to ``logger`` as ``what`` and the next round runs."""

    async def repeat() -> None:
        if wait_first:
            await asyncio.sleep(interval)
        while True:
            try:
                await run_in_threadpool(fn)
            except Exception:
                logger.exception("%s failed", what)
            await asyncio.sleep(interval)

    task = asyncio.create_task(repeat()) if interval > 0 else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


ServiceDep = Annotated[LedgerService, Depends(service_of)]
