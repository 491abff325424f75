"""Jurisdictions, investigations, supervision levels and road chiefs inside the server.

:class:`OperationsService` (``app.state.ops``) holds the data folder's zone trees
(``zones.parquet``, reloaded when it changes; or the older single jurisdictions file as a
one-level tree ``jurisdiction``), the units' zone codes (cached per units table), the KPI,
investigation and supervision settings (``TRAFFICUNIT_OPS_*``), and routes new reports to
their responsible body and road chief (a :attr:`Ledger.report_hooks` hook). Its sweep opens the
investigations the accidents call for and escalates overdue hazards up the supervision levels;
:func:`ops_lifespan` runs it at start and every ``TRAFFICUNIT_LEDGER_SWEEP_INTERVAL_S``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import geopandas as gpd
import pandas as pd
from fastapi import Depends, FastAPI, Request
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.concurrency import run_in_threadpool

from trafficunit.ledger import investigations as inv
from trafficunit.ledger import roadchiefs as rc
from trafficunit.ledger import supervision as sup
from trafficunit.ledger.catalogue import load_catalogue_set
from trafficunit.ledger.errors import ValidationError as LedgerValidationError
from trafficunit.ledger.kpis import DEFAULT_TARGETS, DEFAULT_WEIGHTS, KpiSettings, load_targets
from trafficunit.ledger.public import LedgerRateLimiter
from trafficunit.zones import FOLDER_FILE, Zones, assign_units, read_folder_zones

from .errors import BadRequest
from .ledger.service import every
from .store import DataStore

log = logging.getLogger("trafficunit.server.operations")


class OperationsSettings(BaseSettings):
    """Jurisdiction KPIs, investigations, supervision levels, routing (``TRAFFICUNIT_OPS_*``)."""

    model_config = SettingsConfigDict(env_prefix="TRAFFICUNIT_OPS_", extra="ignore")

    zones: Path | None = Field(
        default=None, description="Zone trees file (default: zones.parquet in the data folder)"
    )
    investigation_severities: list[str] = Field(
        default_factory=lambda: ["K", "A", "B"],
        description="Accident severities that open an investigation",
    )
    investigations_since: datetime | None = Field(
        default=None, description="Only accidents from this time open investigations"
    )
    supervision_levels: list[str] = Field(
        default_factory=lambda: ["district", "city"],
        description="Listed-supervision levels, lowest first",
    )
    escalate_after_days: float = Field(
        default=30.0, description="Days overdue before a hazard goes up one supervision level"
    )
    fixed_at_once_days: float = Field(
        default=1.0, description="A general hazard accepted within this many days was fixed at once"
    )
    health_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_WEIGHTS), description="Health-index weights"
    )
    targets: Path | None = Field(
        default=None, description="KPI targets file (JSON or CSV; default: the sources' targets)"
    )
    default_tree: str | None = Field(
        default=None, description="Tree of /kpis and /zones when none is asked (default: first)"
    )
    grid_tree: str = Field(default="grid", description="The tree whose zones are the grids")
    catalogue_overlays: list[Path] = Field(
        default_factory=list,
        description="District catalogue overlays (JSON files; items added in their zone only)",
    )
    public_rate_limit: int = Field(
        default=10,
        description="Public reports accepted per client per window (all server processes)",
    )
    public_rate_window_s: float = Field(default=3600.0, description="The window, seconds")
    public_max_bytes: int = Field(default=20_000, description="Largest public report body")
    evidence_dir: Path | None = Field(
        default=None, description="Where evidence files are kept (default: data folder/evidence)"
    )
    evidence_max_bytes: int = Field(
        default=5_000_000,
        description="Largest evidence file (also bounded by TRAFFICUNIT_LEDGER_MAX_BODY_BYTES)",
    )


class OperationsService:
    """The server's zone trees, settings and operational sweeps."""

    def __init__(self, settings: Any, ledger_svc: Any) -> None:
        self.settings = settings
        self.ops = OperationsSettings()
        self.ledger_svc = ledger_svc
        self.ledger = ledger_svc.ledger
        targets = load_targets(self.ops.targets) if self.ops.targets else DEFAULT_TARGETS
        self.kpi_settings = KpiSettings(
            investigation_severities=frozenset(
                s.upper() for s in self.ops.investigation_severities
            ),
            fixed_at_once_days=self.ops.fixed_at_once_days,
            weights=dict(self.ops.health_weights),
            targets=tuple(targets),
        )
        self.rule = inv.InvestigationRule(
            severities=frozenset(s.upper() for s in self.ops.investigation_severities),
            since=self.ops.investigations_since,
        )
        self.supervision = sup.SupervisionSettings(
            levels=tuple(self.ops.supervision_levels),
            escalate_after_days=self.ops.escalate_after_days,
        )
        self.public_limiter = LedgerRateLimiter(
            self.ledger.db, self.ops.public_rate_limit, self.ops.public_rate_window_s
        )
        self.evidence_dir = self.ops.evidence_dir or (Path(self.settings.data_dir) / "evidence")
        self._lock = threading.Lock()
        self._zones: Zones | None = None
        self._zones_key: Any = None
        self._uz: pd.DataFrame | None = None
        self._uz_key: Any = None
        self.store: DataStore | None = None
        self._units: gpd.GeoDataFrame | None = None
        self._live_seq = 0
        self._units_key: Any = None
        self._chiefs: pd.DataFrame | None = None
        self._chiefs_key: Any = None
        inv.ensure_tables(self.ledger)
        sup.ensure_tables(self.ledger)
        rc.ensure_tables(self.ledger)
        self.catalogues = load_catalogue_set(
            self.ledger.settings.catalogue, [str(p) for p in self.ops.catalogue_overlays]
        )
        if self.catalogues.overlays:
            self.ledger.catalogue = self.catalogues.union()
            self.ledger.report_hooks.append(self._check_category)
        self.ledger.report_hooks.append(rc.router(self.ledger, self._routing_context))

    # -- zones
    def _zones_path(self) -> Path:
        return self.ops.zones or (Path(self.settings.data_dir) / FOLDER_FILE)

    def has_zone_file(self) -> bool:
        """Whether the zone-trees file exists (else only the older jurisdictions file)."""
        return self._zones_path().exists()

    def zones(self) -> Zones | None:
        """The zone trees (reloaded when the file changes), or None."""
        p = self._zones_path()
        try:
            st = p.stat()
            key: Any = (str(p), st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        legacy = getattr(self.ledger_svc, "zones", None)
        if key is None and legacy is None:
            return None
        if key != self._zones_key or self._zones is None:
            with self._lock:
                if key != self._zones_key or self._zones is None:
                    if key is not None:
                        self._zones = (
                            read_folder_zones(p.parent) if p.name == FOLDER_FILE else _read_any(p)
                        )
                    else:
                        self._zones = _legacy(legacy, self.ledger_svc.zone_field)
                    self._zones_key = key
                    self._uz = None
        return self._zones

    def require_zones(self) -> Zones:
        """The zone trees; 400 when none are configured."""
        z = self.zones()
        if z is None:
            raise BadRequest(
                "no jurisdictions configured: load zone trees with `trafficunit zones load FILE "
                "--data-dir DIR` (the demo ships generated ones), or set "
                "TRAFFICUNIT_LEDGER_JURISDICTIONS; or ask /kpis?by=road_chief"
            )
        return z

    def tree(self, tree: str | None) -> str:
        """The tree asked, else the configured default, else ``admin``, else the first."""
        z = self.require_zones()
        if tree is not None:
            if tree not in z.trees:
                raise BadRequest(f"no zone tree {tree!r}; trees: {', '.join(z.trees)}")
            return tree
        if self.ops.default_tree in z.trees:
            return str(self.ops.default_tree)
        return "admin" if "admin" in z.trees else next(iter(z.trees))

    def units(self, store: DataStore) -> gpd.GeoDataFrame | None:
        """The store's units frame (indexed by ``unit_id``), or None."""
        t = store.tables.get("units")
        if t is None:
            return None
        if self._units_key != id(t):
            f = t.frame
            if "unit_id" in f.columns:
                f = f.set_index(f["unit_id"].astype(str).to_numpy()).rename_axis("unit_id")
                f = f.drop(columns="unit_id")
            self._units, self._units_key = f, id(t)
        return self._units

    def unit_zones(self, store: DataStore) -> pd.DataFrame | None:
        """Zone codes of the store's units (their stored ``zone_*`` columns when current)."""
        z = self.zones()
        table = store.tables.get("units")
        if z is None or table is None:
            return None
        key = (id(table), id(z))
        if self._uz is None or self._uz_key != key:
            with self._lock:
                if self._uz is None or self._uz_key != key:
                    f = self.units(store)
                    assert f is not None
                    cols = z.columns()
                    if all(c in f.columns for c in cols):
                        uz = f[cols].astype("string")
                    else:
                        uz = assign_units(f, z)
                    uz.index = f.index.astype(str)
                    self._uz, self._uz_key = uz, key
        return self._uz

    def unit_chiefs(self, store: DataStore) -> pd.DataFrame | None:
        """The road chief of every unit now: ``road_chief``, ``road_chief_id``,
        ``road_chief_body`` indexed by unit id (None without units).

        Appointments change at run time (in any server process), so the valid ones are read
        from the ledger on every call; the per-unit table is recomputed only when they, the
        units or the zones change.
        """
        units = self.units(store)
        if units is None:
            return None
        now = datetime.now(UTC)
        valid = rc.list_chiefs(self.ledger, at=now)
        key = (self._units_key, id(self.zones()), json.dumps(valid, sort_keys=True))
        if self._chiefs is None or key != self._chiefs_key:
            table = rc.chiefs_for_units(valid, units, unit_zones=self.unit_zones(store), at=now)
            table.index = table.index.astype(str)
            with self._lock:
                self._chiefs, self._chiefs_key = table, key
        return self._chiefs

    def _check_category(
        self, tx: Any, pk: int, category: str, grade: str | None, unit_ids: list[str]
    ) -> None:
        """Refuse a district item reported outside its district ("1 + N")."""
        if category in self.catalogues.city.items:
            return
        _, uz = self._routing_context()
        codes: list[str] = []
        if unit_ids and uz is not None and unit_ids[0] in uz.index:
            codes = [str(v) for v in uz.loc[unit_ids[0]].dropna()]
        if not self.catalogues.allowed(category, codes):
            zones = sorted(o.zone for o in self.catalogues.overlays if category in o.items)
            raise LedgerValidationError(
                f"category {category!r} is a district item of {', '.join(zones)}; this place "
                "is outside it (GET /catalogue?zone=CODE lists the items valid there)"
            )

    def _routing_context(self) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        store = self.store
        if store is None:
            return None, None
        return self.units(store), self.unit_zones(store)

    # -- sweeps
    def _live_investigations(self) -> list[str]:
        """Investigations of the injury accidents posted since the last sweep."""
        frame, seq = _live_frame(self.ledger, self._live_seq)
        self._live_seq = seq
        if frame is None:
            return []
        return inv.open_investigations(self.ledger, frame, rule=self.rule)

    def sweep(self, store: DataStore | None) -> dict[str, Any]:
        """Open the investigations the accidents call for; escalate overdue hazards."""
        opened: list[str] = []
        lock = getattr(self.ledger_svc, "_sweeping", None) or contextlib.nullcontext()
        with lock:  # never while the ledger closes
            if getattr(self.ledger_svc, "_closed", False):
                return {"opened": [], "escalated": []}
            acc = store.tables.get("accidents") if store is not None else None
            if acc is not None:
                opened = inv.open_investigations(self.ledger, acc.frame, rule=self.rule)
            opened += self._live_investigations()
            escalated = sup.escalate_overdue(self.ledger, settings=self.supervision)
        return {"opened": opened, "escalated": escalated}


def _live_frame(ledger: Any, seq: int) -> tuple[gpd.GeoDataFrame | None, int]:
    """Accidents posted to the server (``POST /accidents``, stored in the ledger) after
    change ``seq``, and the latest change seen; None without the live accident store."""
    try:
        from trafficunit.ledger.accidents import accidents_since
    except ImportError:  # a trafficunit without the live loop
        return None, seq
    rows = accidents_since(ledger.db, seq)
    if not len(rows):
        return None, seq
    frame = gpd.GeoDataFrame(
        rows[["event_id", "unit_id", "severity", "time"]],
        geometry=gpd.points_from_xy(rows["lon"], rows["lat"]),
        crs=4326,
    )
    return frame, int(rows["change_seq"].max())


def _read_any(p: Path) -> Zones:
    from trafficunit.zones import read_zones

    return read_zones(p)


def _legacy(zones: gpd.GeoDataFrame, field: str | None) -> Zones:
    """The older flat jurisdictions file as a one-level tree ``jurisdiction``."""
    names = zones[field].astype(str) if field else zones.index.astype(str)
    frame = gpd.GeoDataFrame(
        {
            "tree": "jurisdiction",
            "level": "zone",
            "code": names.to_numpy(),
            "name": names.to_numpy(),
            "parent": None,
        },
        geometry=zones.geometry.to_numpy(),
        crs=zones.crs,
    ).drop_duplicates("code")
    return Zones(frame)


def ops_of(request: Request) -> OperationsService:
    """The app's operations service (the store checked first)."""
    store: DataStore = request.app.state.store
    store.check()
    svc: OperationsService = request.app.state.ops
    svc.store = store
    return svc


OpsDep = Annotated[OperationsService, Depends(ops_of)]


@contextlib.asynccontextmanager
async def ops_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the operations service after the ledger; sweep at start and periodically."""
    svc = await run_in_threadpool(OperationsService, app.state.settings, app.state.ledger)
    app.state.ops = svc
    store: DataStore = app.state.store
    svc.store = store
    try:
        store.check()
        out = await run_in_threadpool(svc.sweep, store)
        if out["opened"]:
            log.info("opened %d accident investigations", len(out["opened"]))
    except Exception:
        log.exception("the operations sweep failed at start")

    def sweep() -> None:
        store.check()
        svc.sweep(store)

    interval = app.state.settings.ledger.sweep_interval_s
    async with every(interval, sweep, "operations sweep", wait_first=True, logger=log):
        yield
