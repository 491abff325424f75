"""The ledger inside the server: opening it, auth, live hazards, sweeps and error mapping.

:class:`LedgerService` opens the hazard ledger in ``lifespan`` (``app.state.ledger``), keeps it
pointed at the data folder's units, puts its hazards in the ``live-hazards`` tiles (a store
hook, rebuilt when the ledger's change sequence moves, also for writes made by other server
processes), runs the overdue/reopen sweep periodically, and imports the data folder's
``hazards.parquet`` once. Auth dependencies and the ledger's exceptions' status codes live here
too; :class:`BodyLimit` answers 413 for oversized request bodies.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import logging
import math
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import geopandas as gpd
import pandas as pd
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from trafficunit.datafolder import FILES
from trafficunit.errors import InputFileError
from trafficunit.ledger import (
    AuthenticationError,
    ConflictError,
    ImplausibleGeometry,
    Ledger,
    NotFoundError,
    PermissionDenied,
    Principal,
    StaleVersion,
)
from trafficunit.ledger.lifecycle import STATES, require
from trafficunit.ledger.store import hash_token
from trafficunit.mvt import LiveLayer
from trafficunit.settings import CLOSED_STATUSES

from .settings import Settings
from .store import LIVE_COLUMNS as TABLE_LIVE_COLUMNS
from .store import DataStore

log = logging.getLogger("trafficunit.server.ledger")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

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
_ADMIN_ENV = Principal("env-admin", "admin", "TRAFFICUNIT_ADMIN_TOKEN")


class _LazyLayer:
    """A live tile layer rebuilt from the ledger on first use after a change.

    Writes only move the store's data version (so no stale tile is served); the layer is
    rebuilt when a tile or TileJSON next asks for it, not on every write. Subclasses name the
    layer and its columns and build its frame.
    """

    name = ""
    columns: list[str] = []

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
                    cols = [c for c in self.columns if c in frame.columns]
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
    columns = LIVE_COLUMNS

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
    columns = ZONE_COLUMNS

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


class TooManyAttempts(Exception):
    """Too many failed token attempts from one client address: 429 with ``Retry-After``."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthThrottle:
    """Failed token attempts per client address in a sliding window (per server process).

    After ``limit`` failures within ``window_s`` seconds, every request from that address that
    carries a token gets 429 until the oldest failure leaves the window; requests without a
    token (anonymous reads) are not affected. With several workers each counts its own, so an
    address gets at most ``workers x limit`` tries per window.
    """

    MAX_ADDRESSES = 100_000

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._fails: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, addr: str, now: float) -> collections.deque[float] | None:
        q = self._fails.get(addr)
        if q is None:
            return None
        while q and now - q[0] > self.window_s:
            q.popleft()
        if not q:
            del self._fails[addr]
            return None
        return q

    def check(self, addr: str) -> None:
        """Raise :class:`TooManyAttempts` while ``addr`` is over the limit."""
        now = time.monotonic()
        with self._lock:
            q = self._recent(addr, now)
            if q is None or len(q) < self.limit:
                return
            wait = max(1, math.ceil(self.window_s - (now - q[0])))
        raise TooManyAttempts(
            f"{self.limit} failed token attempts from this address in {self.window_s:g} s; "
            f"retry in {wait} s",
            wait,
        )

    def fail(self, addr: str) -> None:
        """Count a failed attempt from ``addr``."""
        now = time.monotonic()
        with self._lock:
            if addr not in self._fails and len(self._fails) >= self.MAX_ADDRESSES:
                for key in list(self._fails)[: self.MAX_ADDRESSES // 10]:
                    del self._fails[key]  # the oldest entries (insertion order)
            q = self._recent(addr, now)
            if q is None:
                q = self._fails[addr] = collections.deque()
            q.append(now)


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
        n = 0
        cats = self.ledger.catalogue
        for row in frame.itertuples(index=False):
            status = str(getattr(row, "status", "") or "").strip().lower()
            if status in STATES:
                state = status
            elif status in CLOSED_STATUSES:
                state = "closed"
            else:
                state = "reported"
            raw_cat = str(getattr(row, "category", "") or "")
            try:
                category = cats.resolve(raw_cat)
            except ValueError:
                category = "environment.other"
            grade = getattr(row, "grade", None)
            grade = grade if grade in ("general", "major") else None
            t = getattr(row, "reported_at", None)
            t = None if t is None or pd.isna(t) else pd.Timestamp(t)
            if t is not None and t.tzinfo is None:
                t = t.tz_localize("UTC")
            now = datetime.now(UTC)
            res = self.ledger.report(
                row.geometry,
                category=category,
                actor="import",
                role="admin",
                grade=grade,
                description=None if category == raw_cat else f"imported category: {raw_cat}",
                source="import",
                reported_at=min(t.to_pydatetime(), now) if t is not None else None,
                external_id=f"import:{row.event_id}",
                link_duplicates=False,
                initial_state=state,
            )
            n += int(res.created)
        return n


def store_of(request: Request) -> DataStore:
    """The app's data store (checked, so hooks ran)."""
    store: DataStore = request.app.state.store
    store.check()
    return store


def service_of(request: Request) -> LedgerService:
    """The app's ledger service."""
    svc: LedgerService = request.app.state.ledger
    return svc


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if not auth:
        return None
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def client_address(request: Request) -> str:
    """The caller's address (the proxy's ``X-Forwarded-For`` with ``--proxy-headers``)."""
    return request.client.host if request.client is not None else "unknown"


def optional_principal(request: Request) -> Principal | None:
    """The caller's principal, or None without a token; 401 for a bad token, 429 after too
    many bad tokens from the caller's address (:class:`AuthThrottle`)."""
    if not request.headers.get("authorization"):
        return None
    svc = service_of(request)
    addr = client_address(request)
    svc.throttle.check(addr)
    try:
        token = _bearer(request)
        assert token is not None
        return svc.principal(token)
    except AuthenticationError:
        svc.throttle.fail(addr)
        raise


def principal(request: Request) -> Principal:
    """The caller's principal; 401 without a valid token."""
    p = optional_principal(request)
    if p is None:
        raise AuthenticationError(
            "this needs a token: send 'Authorization: Bearer <token>' (create one with "
            "`trafficunit tokens create --role ROLE`)"
        )
    return p


def read_access(request: Request) -> Principal | None:
    """Reads are open unless ``TRAFFICUNIT_LEDGER_READ_REQUIRES_TOKEN`` is set."""
    if service_of(request).settings.ledger.read_requires_token:
        return principal(request)
    return optional_principal(request)


def needs(action: str) -> Callable[[Request], Principal]:
    """A dependency: the caller's principal, 403 unless its role may do ``action``."""

    def dep(request: Request) -> Principal:
        p = principal(request)
        require(p.role, action)
        return p

    dep.__name__ = f"needs_{action}"
    return dep


#: Roles that see who did what (token labels and ids) in histories and reports.
STAFF_ROLES = frozenset({"engineer", "supervisor", "admin"})
#: Actors that are not people: shown to everyone.
_MACHINE_ACTORS = frozenset({"system", "import"})
_TOKEN_IN_ACTOR = re.compile(r"(?:^|\()(T[0-9a-f]{8}|env-admin)\)?$")


def sees_actors(reader: Principal | None) -> bool:
    """Whether ``reader`` may see token labels and ids of actors."""
    return reader is not None and reader.role in STAFF_ROLES


def public_actor(actor: str | None, settings: Settings) -> str | None:
    """What a non-staff reader sees of ``actor`` (``TRAFFICUNIT_LEDGER_PUBLIC_ACTORS``):
    never a token id or label; the admin's display name in ``names`` mode; machine actors
    (``system``, ``import``) as they are."""
    if actor is None or actor in _MACHINE_ACTORS:
        return actor
    ls = settings.ledger
    if ls.public_actors == "names":
        m = _TOKEN_IN_ACTOR.search(actor)
        return ls.public_names.get(m.group(1)) if m else None
    return None


def public_events(events: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """History events for a non-staff reader: ``actor`` per :func:`public_actor`; ``role``
    kept unless ``public_actors`` is ``none``."""
    keep_role = settings.ledger.public_actors != "none"
    return [
        {
            **e,
            "actor": public_actor(e.get("actor"), settings),
            "role": e.get("role") if keep_role or e.get("actor") in _MACHINE_ACTORS else None,
        }
        for e in events
    ]


def public_reports(reports: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """Reports for a non-staff reader: ``reported_by`` per :func:`public_actor`."""
    return [{**r, "reported_by": public_actor(r.get("reported_by"), settings)} for r in reports]


ServiceDep = Annotated[LedgerService, Depends(service_of)]
ReaderDep = Annotated[Principal | None, Depends(read_access)]
PrincipalDep = Annotated[Principal, Depends(principal)]


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
    task = None
    try:
        try:
            svc.hook(store)  # the ledger knows the units before it assigns imported hazards
            n = await run_in_threadpool(svc.import_table, store)
            if n:
                log.info("imported %d hazards from hazards.parquet into the ledger", n)
        except Exception:  # the ledger works without the import
            log.exception("importing hazards.parquet into the ledger failed")
        interval = settings.ledger.sweep_interval_s
        if interval > 0:
            task = asyncio.create_task(_sweeper(svc, store, interval))
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(ValueError):
            store.hooks.remove(svc.hook)
        svc.close()


async def _sweeper(svc: LedgerService, store: DataStore, interval: float) -> None:
    while True:
        try:
            await run_in_threadpool(svc.sweep, store)
        except Exception:
            log.exception("ledger sweep failed")
        await asyncio.sleep(interval)


class BodyLimit:
    """ASGI middleware: a request body larger than ``max_bytes`` gets 413, unread beyond that."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        max_bytes: int,
        paths: dict[str, int] | None = None,
    ):
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths or {}  # path -> its own limit (bulk ingest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(scope["path"])
        if limit is not None and limit != self.max_bytes:
            await BodyLimit(self.app, limit)(scope, receive, send)
            return
        declared = None
        for k, v in scope["headers"]:
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    await _reject(send, 400, "Content-Length is not a number")
                    return
        if declared is not None and declared > self.max_bytes:
            await _reject(send, 413, self._message(declared))
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body = msg.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await _reject(send, 413, self._message(size))
                return
            chunks.append(body)
            more = bool(msg.get("more_body", False))
        replay = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        sent = False

        async def replay_receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return replay
            return await receive()

        await self.app(scope, replay_receive, send)

    def _message(self, size: int) -> str:
        return (
            f"request body of {size} bytes or more exceeds the limit of {self.max_bytes} bytes "
            "(TRAFFICUNIT_LEDGER_MAX_BODY_BYTES)"
        )


async def _reject(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def install_ledger_errors(app: FastAPI) -> None:
    """Status codes of the ledger's refusals."""

    def handler(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def h(request: Request, exc: Exception) -> JSONResponse:
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            body: dict[str, Any] = {"detail": str(exc)}
            if isinstance(exc, StaleVersion):
                body["current_version"] = exc.current_version
            return JSONResponse(body, status_code=status, headers=headers)

        return h

    async def throttled(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TooManyAttempts)
        return JSONResponse(
            {"detail": str(exc)},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )

    app.add_exception_handler(TooManyAttempts, throttled)
    app.add_exception_handler(ImplausibleGeometry, handler(422))
    app.add_exception_handler(NotFoundError, handler(404))
    app.add_exception_handler(ConflictError, handler(409))
    app.add_exception_handler(StaleVersion, handler(412))
    app.add_exception_handler(AuthenticationError, handler(401))
    app.add_exception_handler(PermissionDenied, handler(403))

    async def busy(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"detail": f"the ledger database is busy ({exc}); retry shortly"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    app.add_exception_handler(sqlite3.OperationalError, busy)
    with contextlib.suppress(ImportError):
        import psycopg

        app.add_exception_handler(psycopg.OperationalError, busy)
