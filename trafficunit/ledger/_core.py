"""The ledger's core: the database, settings, units, the live index and shared SQL steps.

:class:`LedgerCore` is the base of every concern's mixin (:mod:`.hazards`, :mod:`.reporting`,
:mod:`.duplicates`, :mod:`.transitions`, :mod:`.sweeps`, :mod:`.tokens`, :mod:`.workzones`,
:mod:`.frames`); :class:`~trafficunit.ledger.Ledger` joins them. What several concerns share
lives here: reading a hazard in a transaction (:meth:`LedgerCore._get`), appending a history
event (:meth:`LedgerCore._event`), assigning a geometry to units, the bbox/area filter and
keeping the in-memory index of open hazards in step with the database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

import geopandas as gpd
import shapely

from ..settings import LedgerSettings
from . import lifecycle as lc
from ._db import Database, Tx, connect, migrate
from ._values import dt, event_fields, iso
from .catalogue import Catalogue, load_catalogue
from .errors import NotFoundError
from .geometry import GeometryLimits, check_plausible
from .live import LiveIndex, OpenHazard
from .records import HAZARD_COLS, CheckedReport, Hazard, hazard_from_row, wkb

__all__ = ["LedgerCore"]


@dataclass
class _Assigned:
    unit_ids: list[str] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)
    matches: list[str] = field(default_factory=list)


class LedgerCore:
    """Database, settings, units and live index (see :class:`~trafficunit.ledger.Ledger`)."""

    def __init__(
        self,
        db: Database,
        *,
        settings: LedgerSettings | None = None,
        units: Any = None,
    ) -> None:
        self.db = db
        self.settings = settings or LedgerSettings()
        self.catalogue: Catalogue = load_catalogue(self.settings.catalogue)
        self.index = LiveIndex()
        #: Called inside the write transaction of every new hazard (not imports) as
        #: ``hook(tx, hazard_pk, category, grade, unit_ids)``; a returned dict may set
        #: ``responsible`` and ``road_chief`` (routing, :mod:`~trafficunit.ledger.roadchiefs`)
        #: and is recorded in the report event's details under ``routed``.
        self.report_hooks: list[
            Callable[[Tx, int, str, str | None, list[str]], dict[str, Any] | None]
        ] = []
        self._units: Any = None
        self.set_units(units)
        with self.db.transaction() as tx:
            self._sync(tx)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        settings: LedgerSettings | None = None,
        units: Any = None,
        sqlite_synchronous: str = "FULL",
        pool_size: int = 10,
    ) -> Self:
        """Connect to ``url``, create or migrate the schema and load the live index.

        Parameters
        ----------
        url
            ``sqlite:///path`` (or a file path) or ``postgresql://...``.
        settings, units
            See :class:`Ledger`.
        sqlite_synchronous
            SQLite ``synchronous`` pragma: FULL (default) makes every acknowledged write
            survive a power cut, NORMAL only a crash of the process.
        pool_size
            PostgreSQL connections kept.
        """
        db = connect(url, sqlite_synchronous=sqlite_synchronous, pool_size=pool_size)
        try:
            migrate(db)
            return cls(db, settings=settings, units=units)
        except BaseException:
            db.close()
            raise

    def close(self) -> None:
        """Close the database connections."""
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- units
    def set_units(self, units: Any) -> None:
        """Use ``units`` (GeoDataFrame or UnitIndex, or None) for new hazards and work zones."""
        if units is None or len(units) == 0:
            self._units = None
            self._units_bounds = None
            return
        from ..join import UnitIndex

        self._units = units if isinstance(units, UnitIndex) else UnitIndex(units)
        frame = self._units.units
        if frame.crs is not None and not frame.crs.equals(4326):
            frame = frame.to_crs(4326)
        minx, miny, maxx, maxy = (float(v) for v in frame.total_bounds)
        self._units_bounds = (minx, miny, maxx, maxy)

    def _check_plausible(self, geom: shapely.Geometry, kind: str) -> None:
        """Refuse a report too large, too long or far from the units (ImplausibleGeometry)."""
        s = self.settings
        limits = GeometryLimits(s.max_area_m2, s.max_length_m, s.units_margin_m)
        check_plausible(geom, kind, limits, getattr(self, "_units_bounds", None))

    def _assign(self, geom: shapely.Geometry, kind: str, road_name: str | None) -> _Assigned:
        return self._assign_many([geom], kind, [road_name])[0]

    def _assign_many(
        self, geoms: list[shapely.Geometry], kind: str, road_names: list[str | None]
    ) -> list[_Assigned]:
        """Each geometry's units, from one vectorised :func:`~trafficunit.assign` call (each
        event is matched on its own: the result of one is that of a call with it alone)."""
        out = [_Assigned() for _ in geoms]
        if self._units is None or not geoms:
            return out
        from ..join import assign

        events = gpd.GeoDataFrame(
            {
                "event_id": [str(i) for i in range(len(geoms))],
                "kind": [kind] * len(geoms),
                "road_name": road_names,
            },
            geometry=geoms,
            crs=4326,
        )
        joined = assign(self._units, events)
        hit = joined[joined["unit_id"].notna()]
        rows = zip(
            hit["event_id"].astype(int),
            hit["unit_id"].astype(str),
            hit["distance_m"].fillna(0.0).astype(float),
            hit["match"].astype(str),
            strict=True,
        )
        for i, uid, dist, match in rows:
            out[i].unit_ids.append(uid)
            out[i].distances.append(dist)
            out[i].matches.append(match)
        return out

    # -- the live index
    def _sync(self, tx: Tx) -> None:
        """Bring the live index up to the database's latest committed change."""
        rows = tx.all(
            "SELECT pk, state, category, reported_at, last_reported_at, change_seq, "
            + tx.geom_out()
            + " FROM hazards WHERE change_seq > ? ORDER BY change_seq",
            (self.index.seq,),
        )
        for r in rows:
            pk = int(r["pk"])
            if r["state"] in lc.OPEN_STATES:
                self.index.upsert(
                    OpenHazard(
                        pk,
                        r["category"],
                        dt(r["reported_at"]),  # type: ignore[arg-type]
                        dt(r["last_reported_at"]),  # type: ignore[arg-type]
                        shapely.from_wkb(wkb(r["geom"])),
                    )
                )
            else:
                self.index.discard(pk)
            self.index.seq = max(self.index.seq, int(r["change_seq"]))

    def change_seq(self) -> int:
        """The database's latest change sequence number (moves on every write)."""
        with self.db.transaction() as tx:
            return int(tx.scalar("SELECT value FROM counters WHERE name = 'change'"))

    def _get(self, tx: Tx, pk: int) -> Hazard:
        row = tx.one(f"SELECT {HAZARD_COLS}, {tx.geom_out()} FROM hazards WHERE pk = ?", (pk,))
        if row is None:
            raise NotFoundError(f"no hazard H{pk}")
        return hazard_from_row(row)

    def _spatial_where(
        self,
        tx: Tx,
        bbox: tuple[float, float, float, float] | None,
        within: shapely.Geometry | None,
    ) -> tuple[list[str], list[Any], shapely.Geometry | None]:
        """SQL conditions for a bbox / area filter, and the shape to post-filter by (SQLite)."""
        where: list[str] = []
        params: list[Any] = []
        shape = None
        if bbox is not None:
            shape = shapely.box(*bbox)
        if within is not None:
            shape = within if shape is None else shapely.intersection(shape, within)
        if shape is None:
            return where, params, None
        if shape.is_empty:
            return ["1 = 0"], [], None
        if tx.pg:
            where.append(
                "geom && ST_GeomFromWKB(?, 4326) AND ST_Intersects(geom, ST_GeomFromWKB(?, 4326))"
            )
            wkb = shapely.to_wkb(shape)
            params += [wkb, wkb]
            return where, params, None
        minx, miny, maxx, maxy = shape.bounds
        where.append("maxx >= ? AND minx <= ? AND maxy >= ? AND miny <= ?")
        params += [minx, maxx, miny, maxy]
        return where, params, shape

    @staticmethod
    def _event(
        tx: Tx,
        pk: int,
        version: int,
        at: datetime,
        actor: str,
        role: str,
        action: str,
        from_state: str | None,
        to_state: str,
        comment: str | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append one event to a hazard's history."""
        tx.insert(
            "hazard_events",
            {
                "hazard_pk": pk,
                "version": version,
                "at": iso(at),
                **event_fields(actor, role, action, from_state, to_state, comment, details),
            },
        )

    def _insert_report(
        self, tx: Tx, pk: int, report: CheckedReport, distance: float, wkb: bytes
    ) -> int:
        """Store one report row of hazard ``pk``; its key."""
        return int(
            tx.scalar(
                "INSERT INTO hazard_reports (hazard_pk, reported_at, received_at, reported_by, "
                "source, description, external_id, distance_m, geom) VALUES "
                f"(?, ?, ?, ?, ?, ?, ?, ?, {tx.geom_in}) RETURNING pk",
                (
                    pk,
                    iso(report.t),
                    iso(report.t_now),
                    report.actor,
                    report.source,
                    report.description,
                    report.external_id,
                    distance,
                    wkb,
                ),
            )
        )

    @staticmethod
    def _insert_units(tx: Tx, kind: str, pk: int, units: _Assigned) -> None:
        """Store the units a new hazard or work zone (``kind``) was assigned to."""
        for uid, d, m in zip(units.unit_ids, units.distances, units.matches, strict=True):
            tx.execute(
                f"INSERT INTO {kind}_units ({kind}_pk, unit_id, distance_m, match) "
                "VALUES (?, ?, ?, ?)",
                (pk, uid, d, m),
            )
