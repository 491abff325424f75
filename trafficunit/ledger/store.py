"""The hazard ledger: hazards through their lifecycle, their history, tokens and work zones.

:class:`Ledger` is the write path of the hazard closed loop. It stores every hazard with a
``version`` (optimistic concurrency: a write names the version it read and a stale one changes
nothing), every transition with who, when and a comment in an append-only history, every
citizen report (duplicates are linked to the open hazard they repeat and counted), access
tokens (only their HMAC-SHA256 hashes), and the road-works registry. The database is SQLite
(WAL, no setup) or PostgreSQL + PostGIS, chosen by one URL (see :mod:`trafficunit.ledger._db`).

>>> import tempfile, pathlib
>>> from trafficunit.ledger import Ledger
>>> path = pathlib.Path(tempfile.mkdtemp()) / "ledger.sqlite"
>>> ledger = Ledger.open(f"sqlite:///{path}")
>>> r = ledger.report({"type": "Point", "coordinates": [24.94, 60.17]},
...                   category="facility.signal", actor="demo")
>>> h = ledger.transition(r.hazard.id, "registered", actor="eng", role="engineer",
...                       expected_version=r.hazard.version, grade="major")
>>> (h.state, h.grade, h.version)
('registered', 'major', 2)
>>> ledger.close()
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .._errors import clip
from ..settings import LedgerSettings
from . import lifecycle as lc
from ._db import Database, Tx, connect, migrate
from .catalogue import Catalogue, load_catalogue
from .errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    StaleVersion,
    ValidationError,
)
from .geometry import (
    GeometryLimits,
    check_plausible,
    distances_m,
    expand_bbox,
    parse_geometry,
)
from .live import LiveIndex, OpenHazard

__all__ = [
    "SOURCES",
    "Hazard",
    "Ledger",
    "Principal",
    "ReportResult",
    "WorkZone",
    "hash_token",
    "iso",
    "parse_time",
]

#: Where a hazard report came from (docs/domain.md "Hazard").
SOURCES: tuple[str, ...] = ("public_report", "patrol", "crash_analysis", "audit", "import")
_MAX_TEXT = 4000
_TS = "%Y-%m-%dT%H:%M:%S.%fZ"
_TOKEN_KEY = b"trafficunit-token-v1"
_SYSTEM = "system"


# --------------------------------------------------------------------------------------------
# time


def parse_time(value: Any, what: str = "time") -> datetime:
    """A timezone-aware UTC datetime from a datetime, pandas Timestamp or ISO text.

    Naive values are taken as UTC.
    """
    if isinstance(value, datetime):
        t = value
    else:
        try:
            t = pd.Timestamp(value).to_pydatetime()
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"{what}={clip(value)} is not an ISO date or datetime") from exc
        if pd.isna(t):
            raise ValidationError(f"{what}={clip(value)} is not a date")
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    t = t.astimezone(UTC)
    if not 1900 <= t.year <= 2200:
        raise ValidationError(f"{what}={clip(value)} is outside the years 1900-2200")
    return t


def iso(t: datetime | None) -> str | None:
    """The stored form of a time: fixed-width ISO 8601 UTC (sorts as text)."""
    return None if t is None else t.astimezone(UTC).strftime(_TS)


def _dt(text: Any) -> datetime | None:
    if text is None:
        return None
    if isinstance(text, datetime):
        return text.astimezone(UTC)
    return datetime.strptime(str(text), _TS).replace(tzinfo=UTC)


def _json_time(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _now(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else parse_time(now, "now")


def _text(value: Any, what: str, *, required: bool = False, limit: int = _MAX_TEXT) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValidationError(f"{what} is required")
        return None
    text = str(value).strip()
    if len(text) > limit:
        raise ValidationError(f"{what} has {len(text)} characters, more than {limit}")
    if "\x00" in text:
        raise ValidationError(f"{what} contains a NUL character")
    return text


def hash_token(token: str) -> str:
    """The stored form of a token: HMAC-SHA256 hex digest."""
    return hmac.new(_TOKEN_KEY, token.encode("utf-8"), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's id, role and label."""

    token_id: str
    role: str
    label: str | None = None

    @property
    def name(self) -> str:
        """How the caller appears in the history."""
        return f"{self.label} ({self.token_id})" if self.label else self.token_id


@dataclass(frozen=True)
class Hazard:
    """One hazard as stored (times in UTC, geometry in WGS84)."""

    pk: int
    version: int
    state: str
    category: str
    grade: str | None
    source: str
    description: str | None
    road_name: str | None
    responsible: str | None
    road_chief: str | None
    deadline: datetime | None
    supervision: str | None
    listed_at: datetime | None
    report_count: int
    reopen_count: int
    reported_at: datetime
    last_reported_at: datetime
    registered_at: datetime | None
    assigned_at: datetime | None
    rectifying_at: datetime | None
    accepted_at: datetime | None
    closed_at: datetime | None
    updated_at: datetime
    reported_by: str | None
    unit_ids: tuple[str, ...]
    geometry: shapely.Geometry

    @property
    def id(self) -> str:
        """The public id, ``"H"`` + number."""
        return f"H{self.pk}"

    @property
    def etag(self) -> str:
        """A strong ETag naming this version."""
        return f'"{self.id}-v{self.version}"'

    def overdue(self, now: datetime | None = None) -> bool:
        """Past its deadline and not yet accepted."""
        return (
            self.state in lc.OVERDUE_STATES
            and self.deadline is not None
            and self.deadline < _now(now)
        )

    def properties(self, now: datetime | None = None) -> dict[str, Any]:
        """JSON-ready attributes (the GeoJSON ``properties``)."""
        return {
            "id": self.id,
            "version": self.version,
            "state": self.state,
            "category": self.category,
            "grade": self.grade,
            "source": self.source,
            "description": self.description,
            "road_name": self.road_name,
            "responsible": self.responsible,
            "road_chief": self.road_chief,
            "deadline": _json_time(self.deadline),
            "overdue": self.overdue(now),
            "supervision": self.supervision,
            "listed_at": _json_time(self.listed_at),
            "report_count": self.report_count,
            "reopen_count": self.reopen_count,
            "reported_at": _json_time(self.reported_at),
            "last_reported_at": _json_time(self.last_reported_at),
            "registered_at": _json_time(self.registered_at),
            "assigned_at": _json_time(self.assigned_at),
            "rectifying_at": _json_time(self.rectifying_at),
            "accepted_at": _json_time(self.accepted_at),
            "closed_at": _json_time(self.closed_at),
            "updated_at": _json_time(self.updated_at),
            "unit_ids": list(self.unit_ids),
        }

    def to_feature(self, now: datetime | None = None) -> dict[str, Any]:
        """A GeoJSON Feature; ``version`` and ``unit_ids`` also at the top level."""
        return {
            "type": "Feature",
            "id": self.id,
            "version": self.version,
            "unit_ids": list(self.unit_ids),
            "geometry": json.loads(shapely.to_geojson(self.geometry)),
            "properties": self.properties(now),
        }


@dataclass(frozen=True)
class ReportResult:
    """What :meth:`Ledger.report` did: a new hazard, or a report linked to an open one."""

    hazard: Hazard
    created: bool
    linked: bool
    distance_m: float | None = None
    replayed: bool = False


@dataclass(frozen=True)
class WorkZone:
    """One registered road-works site."""

    pk: int
    site_code: str
    version: int
    start: datetime
    end: datetime | None
    lanes_taken: int | None
    night_works: bool | None
    contractor: str | None
    permit: str | None
    description: str | None
    unit_ids: tuple[str, ...]
    created_at: datetime
    created_by: str | None
    geometry: shapely.Geometry

    def active(self, t: datetime) -> bool:
        """Whether the site's permitted period contains ``t``."""
        return self.start <= t and (self.end is None or t <= self.end)

    def properties(self, now: datetime | None = None) -> dict[str, Any]:
        """JSON-ready attributes."""
        return {
            "site_code": self.site_code,
            "version": self.version,
            "start": _json_time(self.start),
            "end": _json_time(self.end),
            "active": self.active(_now(now)),
            "lanes_taken": self.lanes_taken,
            "night_works": self.night_works,
            "contractor": self.contractor,
            "permit": self.permit,
            "description": self.description,
            "unit_ids": list(self.unit_ids),
            "created_at": _json_time(self.created_at),
        }

    def to_feature(self, now: datetime | None = None) -> dict[str, Any]:
        """A GeoJSON Feature identified by the site code."""
        return {
            "type": "Feature",
            "id": self.site_code,
            "geometry": json.loads(shapely.to_geojson(self.geometry)),
            "properties": self.properties(now),
        }


_HAZARD_COLS = (
    "pk, version, state, category, grade, source, description, road_name, responsible, "
    "road_chief, deadline, supervision, listed_at, report_count, reopen_count, reported_at, "
    "last_reported_at, registered_at, assigned_at, rectifying_at, accepted_at, closed_at, "
    "updated_at, reported_by, unit_ids"
)
_WZ_COLS = (
    "pk, site_code, version, start_at, end_at, lanes_taken, night_works, contractor, permit, "
    "description, unit_ids, created_at, created_by"
)


def _wkb(value: Any) -> bytes:
    return bytes(value) if not isinstance(value, bytes) else value


def _hazard(row: dict[str, Any]) -> Hazard:
    return Hazard(
        pk=int(row["pk"]),
        version=int(row["version"]),
        state=row["state"],
        category=row["category"],
        grade=row["grade"],
        source=row["source"],
        description=row["description"],
        road_name=row["road_name"],
        responsible=row["responsible"],
        road_chief=row["road_chief"],
        deadline=_dt(row["deadline"]),
        supervision=row["supervision"],
        listed_at=_dt(row["listed_at"]),
        report_count=int(row["report_count"]),
        reopen_count=int(row["reopen_count"]),
        reported_at=_dt(row["reported_at"]),  # type: ignore[arg-type]
        last_reported_at=_dt(row["last_reported_at"]),  # type: ignore[arg-type]
        registered_at=_dt(row["registered_at"]),
        assigned_at=_dt(row["assigned_at"]),
        rectifying_at=_dt(row["rectifying_at"]),
        accepted_at=_dt(row["accepted_at"]),
        closed_at=_dt(row["closed_at"]),
        updated_at=_dt(row["updated_at"]),  # type: ignore[arg-type]
        reported_by=row["reported_by"],
        unit_ids=tuple(u for u in (row["unit_ids"] or "").split(";") if u),
        geometry=shapely.from_wkb(_wkb(row["geom"])),
    )


def _workzone(row: dict[str, Any]) -> WorkZone:
    nw = row["night_works"]
    return WorkZone(
        pk=int(row["pk"]),
        site_code=row["site_code"],
        version=int(row["version"]),
        start=_dt(row["start_at"]),  # type: ignore[arg-type]
        end=_dt(row["end_at"]),
        lanes_taken=None if row["lanes_taken"] is None else int(row["lanes_taken"]),
        night_works=None if nw is None else bool(nw),
        contractor=row["contractor"],
        permit=row["permit"],
        description=row["description"],
        unit_ids=tuple(u for u in (row["unit_ids"] or "").split(";") if u),
        created_at=_dt(row["created_at"]),  # type: ignore[arg-type]
        created_by=row["created_by"],
        geometry=shapely.from_wkb(_wkb(row["geom"])),
    )


def parse_hazard_id(hazard_id: str | int) -> int:
    """The database key of a public hazard id (``"H12"`` or ``12``); NotFoundError if malformed."""
    text = str(hazard_id).strip()
    digits = text[1:] if text[:1] in ("H", "h") else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise NotFoundError(f"no hazard {clip(hazard_id)}: hazard ids look like H123")
    return int(digits)


@dataclass
class _Assigned:
    unit_ids: list[str] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)
    matches: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# the ledger


class Ledger:
    """The hazard ledger over one database.

    Open with :meth:`open`; it creates or migrates the schema. Safe to use from many threads;
    several processes may share one database.

    Parameters
    ----------
    db
        An open :class:`~trafficunit.ledger._db.Database`.
    settings
        :class:`~trafficunit.settings.LedgerSettings`.
    units
        Traffic units (GeoDataFrame or :class:`trafficunit.join.UnitIndex`) new hazards and
        work zones are assigned to; None to store them without units.
    """

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
    ) -> Ledger:
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

    def __enter__(self) -> Ledger:
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
        out = _Assigned()
        if self._units is None:
            return out
        from ..join import assign

        events = gpd.GeoDataFrame(
            {"event_id": ["new"], "kind": [kind], "road_name": [road_name]},
            geometry=[geom],
            crs=4326,
        )
        joined = assign(self._units, events)
        hit = joined[joined["unit_id"].notna()]
        out.unit_ids = [str(u) for u in hit["unit_id"]]
        out.distances = [float(d) for d in hit["distance_m"].fillna(0.0)]
        out.matches = [str(m) for m in hit["match"]]
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
                        _dt(r["reported_at"]),  # type: ignore[arg-type]
                        _dt(r["last_reported_at"]),  # type: ignore[arg-type]
                        shapely.from_wkb(_wkb(r["geom"])),
                    )
                )
            else:
                self.index.discard(pk)
            self.index.seq = max(self.index.seq, int(r["change_seq"]))

    def change_seq(self) -> int:
        """The database's latest change sequence number (moves on every write)."""
        with self.db.transaction() as tx:
            return int(tx.scalar("SELECT value FROM counters WHERE name = 'change'"))

    def _duplicate_of(
        self, geom: shapely.Geometry, category: str, t: datetime
    ) -> tuple[int, float] | None:
        d = self.settings.duplicate_distance_m
        if d <= 0:
            return None
        window = timedelta(days=self.settings.duplicate_window_days)
        cands = [
            h
            for h in self.index.near(expand_bbox(geom.bounds, d), category)
            if h.reported_at - window <= t <= h.last_reported_at + window
        ]
        if not cands:
            return None
        dist = distances_m(geom, np.array([h.geometry for h in cands], dtype=object))
        best = int(np.argmin(dist))  # ties: the first, i.e. the oldest hazard (lowest pk)
        if dist[best] > d:
            return None
        return cands[best].pk, float(dist[best])

    # -- reads
    def _get(self, tx: Tx, pk: int) -> Hazard:
        row = tx.one(f"SELECT {_HAZARD_COLS}, {tx.geom_out()} FROM hazards WHERE pk = ?", (pk,))
        if row is None:
            raise NotFoundError(f"no hazard H{pk}")
        return _hazard(row)

    def get(self, hazard_id: str | int) -> Hazard:
        """The hazard ``hazard_id`` (``"H12"``); NotFoundError if there is none."""
        pk = parse_hazard_id(hazard_id)
        with self.db.transaction() as tx:
            return self._get(tx, pk)

    def history(self, hazard_id: str | int) -> list[dict[str, Any]]:
        """Every recorded event of a hazard, oldest first: version, at, actor, role, action,
        from, to, comment, details."""
        pk = parse_hazard_id(hazard_id)
        with self.db.transaction() as tx:
            if tx.one("SELECT pk FROM hazards WHERE pk = ?", (pk,)) is None:
                raise NotFoundError(f"no hazard H{pk}")
            rows = tx.all(
                "SELECT version, at, actor, role, action, from_state, to_state, comment, details "
                "FROM hazard_events WHERE hazard_pk = ? ORDER BY version",
                (pk,),
            )
        return [
            {
                "version": int(r["version"]),
                "at": _json_time(_dt(r["at"])),
                "actor": r["actor"],
                "role": r["role"],
                "action": r["action"],
                "from": r["from_state"],
                "to": r["to_state"],
                "comment": r["comment"],
                "details": json.loads(r["details"]) if r["details"] else None,
            }
            for r in rows
        ]

    def reports(self, hazard_id: str | int) -> list[dict[str, Any]]:
        """The citizen/patrol reports of a hazard (the first and every linked duplicate)."""
        pk = parse_hazard_id(hazard_id)
        with self.db.transaction() as tx:
            rows = tx.all(
                "SELECT pk, reported_at, received_at, reported_by, source, description, "
                f"external_id, distance_m, {tx.geom_out()} FROM hazard_reports "
                "WHERE hazard_pk = ? ORDER BY pk",
                (pk,),
            )
        return [
            {
                "report": int(r["pk"]),
                "reported_at": _json_time(_dt(r["reported_at"])),
                "received_at": _json_time(_dt(r["received_at"])),
                "reported_by": r["reported_by"],
                "source": r["source"],
                "description": r["description"],
                "external_id": r["external_id"],
                "distance_m": r["distance_m"],
                "geometry": json.loads(shapely.to_geojson(shapely.from_wkb(_wkb(r["geom"])))),
            }
            for r in rows
        ]

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

    def list_hazards(
        self,
        *,
        bbox: tuple[float, float, float, float] | None = None,
        within: shapely.Geometry | None = None,
        unit_id: str | None = None,
        states: Sequence[str] | None = None,
        grades: Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
        overdue: bool | None = None,
        supervision: str | None = None,
        limit: int = 1000,
        offset: int = 0,
        now: datetime | None = None,
    ) -> tuple[int, list[Hazard]]:
        """Hazards matching every filter given, oldest first: ``(count before paging, page)``.

        Parameters
        ----------
        bbox
            ``(minlon, minlat, maxlon, maxlat)``: hazards whose geometry meets it.
        within
            A WGS84 area (a jurisdiction, a grid cell): hazards whose geometry meets it.
        unit_id
            Hazards assigned to this unit.
        states, grades, categories
            Allowed values (unknown states or grades raise ValidationError).
        overdue
            True: only overdue hazards; False: none of them.
        supervision
            ``"listed"``: only hazards under listed supervision.
        """
        t = _now(now)
        where: list[str] = []
        params: list[Any] = []
        for col, values, allowed in (
            ("state", states, lc.STATES),
            ("grade", [lc.normalise_grade(g) for g in grades] if grades else None, lc.GRADES),
            ("category", categories, None),
        ):
            if values:
                bad = [v for v in values if allowed is not None and v not in allowed]
                if bad:
                    raise ValidationError(f"unknown {col} {clip(bad[0])}; use {', '.join(allowed)}")  # type: ignore[arg-type]
                where.append(f"{col} IN ({', '.join('?' * len(values))})")
                params += list(values)
        if unit_id:
            where.append("pk IN (SELECT hazard_pk FROM hazard_units WHERE unit_id = ?)")
            params.append(unit_id)
        if overdue is not None:
            cond = "(state IN ('assigned', 'rectifying') AND deadline IS NOT NULL AND deadline < ?)"
            where.append(cond if overdue else f"NOT {cond}")
            params.append(iso(t))
        if supervision:
            where.append("supervision = ?")
            params.append(supervision)
        with self.db.transaction() as tx:
            sw, sp, shape = self._spatial_where(tx, bbox, within)
            where += sw
            params += sp
            cond = " AND ".join(where) or "1 = 1"
            if shape is None:
                total = int(tx.scalar(f"SELECT COUNT(*) AS n FROM hazards WHERE {cond}", params))
                rows = tx.all(
                    f"SELECT {_HAZARD_COLS}, {tx.geom_out()} FROM hazards WHERE {cond} "
                    "ORDER BY pk LIMIT ? OFFSET ?",
                    [*params, int(limit), int(offset)],
                )
                return total, [_hazard(r) for r in rows]
            cands = tx.all(f"SELECT pk, geom FROM hazards WHERE {cond} ORDER BY pk", params)
            if not cands:
                return 0, []
            geoms = shapely.from_wkb([_wkb(r["geom"]) for r in cands])
            pks = np.array([r["pk"] for r in cands], dtype=np.int64)
            pks = pks[shapely.intersects(geoms, shape)]
            page = pks[int(offset) : int(offset) + int(limit)].tolist()
            rows = []
            for i in range(0, len(page), 500):
                chunk = page[i : i + 500]
                rows += tx.all(
                    f"SELECT {_HAZARD_COLS}, {tx.geom_out()} FROM hazards "
                    f"WHERE pk IN ({', '.join('?' * len(chunk))}) ORDER BY pk",
                    chunk,
                )
            return len(pks), [_hazard(r) for r in rows]

    def frame(self, *, now: datetime | None = None) -> gpd.GeoDataFrame:
        """Every hazard as a GeoDataFrame (EPSG:4326), for KPIs, exports and live tiles.

        Columns: ``event_id`` (the hazard id), the :meth:`Hazard.properties` fields (times as
        tz-aware UTC datetimes, ``unit_id`` the ``;``-joined unit ids, ``overdue`` as of
        ``now``) and ``geometry``.
        """
        t = _now(now)
        with self.db.transaction() as tx:
            rows = tx.all(f"SELECT {_HAZARD_COLS}, {tx.geom_out()} FROM hazards ORDER BY pk")
        times = (
            "deadline",
            "listed_at",
            "reported_at",
            "last_reported_at",
            "registered_at",
            "assigned_at",
            "rectifying_at",
            "accepted_at",
            "closed_at",
            "updated_at",
        )
        cols = [c.strip() for c in _HAZARD_COLS.split(",")]
        df = pd.DataFrame(rows, columns=[*cols, "geom"])
        geoms = shapely.from_wkb([_wkb(g) for g in df["geom"]]) if len(df) else []
        out = pd.DataFrame(
            {
                "event_id": "H" + df["pk"].astype("int64").astype(str),
                "kind": "hazard",
            }
        )
        for c in cols:
            if c in ("pk", "unit_ids"):
                continue
            out[c] = df[c]
        for c in times:
            out[c] = pd.to_datetime(df[c], utc=True, format="ISO8601")
        for c in ("version", "report_count", "reopen_count"):
            out[c] = df[c].astype("int64")
        out["unit_id"] = df["unit_ids"].replace("", None)
        out["status"] = out["state"]
        out["overdue"] = (
            out["state"].isin(lc.OVERDUE_STATES)
            & out["deadline"].notna()
            & (out["deadline"] < pd.Timestamp(t))
        ).astype(bool)
        return gpd.GeoDataFrame(out, geometry=np.asarray(geoms, dtype=object), crs=4326)

    # -- writes
    def report(
        self,
        geometry: Any,
        *,
        category: str,
        actor: str = "anonymous",
        role: str = "reporter",
        grade: str | None = None,
        description: str | None = None,
        source: str = "public_report",
        road_name: str | None = None,
        reported_at: Any = None,
        external_id: str | None = None,
        link_duplicates: bool = True,
        initial_state: str = "reported",
        now: datetime | None = None,
    ) -> ReportResult:
        """Record a report: a new hazard, or a report linked to the open hazard it repeats.

        A report within ``settings.duplicate_distance_m`` of an open hazard of the same
        category reported within ``settings.duplicate_window_days`` is linked to the nearest
        such hazard (its ``report_count`` goes up, its version too) instead of opening another.
        A new hazard is assigned to the units at once.

        Parameters
        ----------
        geometry
            GeoJSON geometry (point, line or polygon, WGS84) or a shapely geometry.
        category
            An item code of the catalogue (``GET /hazard-categories``).
        actor, role
            Who reports (recorded) and their role (must be allowed to report).
        grade
            ``general``/``major`` (一般/重大) when already known; else set at registration.
        source
            One of :data:`SOURCES`.
        reported_at
            When it was seen (default: now; not in the future).
        external_id
            The report's id in another system: reporting it again returns the stored hazard
            (``replayed``) and changes nothing, so imports can be rerun.
        link_duplicates
            False to always open a new hazard.
        initial_state
            Imports only (``source="import"``): the state the hazard had in the source
            system. The history then starts with one ``import`` event into that state.
        """
        lc.require(role, "report")
        if initial_state != "reported":
            if source != "import" or initial_state not in lc.STATES:
                raise ValidationError(
                    "only imports (source='import') may start in another state than 'reported'"
                )
            link_duplicates = False
        t_now = _now(now)
        if isinstance(geometry, shapely.Geometry):
            geometry = json.loads(shapely.to_geojson(geometry))
        geom = parse_geometry(geometry, max_vertices=self.settings.max_vertices)
        if source != "import":  # imports keep what the source system recorded
            self._check_plausible(geom, "hazard")
        category = self.catalogue.resolve(category)
        grade = lc.normalise_grade(grade)
        if source not in SOURCES:
            raise ValidationError(f"unknown source {clip(source)}; use one of {', '.join(SOURCES)}")
        description = _text(description, "description")
        road_name = _text(road_name, "road_name", limit=200)
        external_id = _text(external_id, "external_id", limit=200)
        actor = _text(actor, "actor", required=True, limit=200) or "anonymous"
        t = t_now if reported_at is None else parse_time(reported_at, "reported_at")
        if t > t_now + timedelta(minutes=5):
            raise ValidationError(
                f"reported_at {_json_time(t)} is in the future (server time {_json_time(t_now)})"
            )
        if external_id is not None:  # a replayed import needs no unit assignment
            with self.db.transaction() as tx:
                prior = tx.one(
                    "SELECT hazard_pk FROM hazard_reports WHERE external_id = ?", (external_id,)
                )
                if prior is not None:
                    return ReportResult(
                        self._get(tx, int(prior["hazard_pk"])), False, False, None, True
                    )
        units = self._assign(geom, "hazard", road_name)
        wkb = shapely.to_wkb(geom)
        with self.db.transaction(write=True) as tx:
            if external_id is not None:
                prior = tx.one(
                    "SELECT hazard_pk FROM hazard_reports WHERE external_id = ?", (external_id,)
                )
                if prior is not None:
                    return ReportResult(
                        self._get(tx, int(prior["hazard_pk"])), False, False, None, True
                    )
            self._sync(tx)
            dup = self._duplicate_of(geom, category, t) if link_duplicates else None
            seq = tx.next_change()
            if dup is not None:
                pk, dist = dup
                old = self._get(tx, pk)
                version = old.version + 1
                last = max(old.last_reported_at, t)
                first = min(old.reported_at, t)
                tx.execute(
                    "UPDATE hazards SET report_count = report_count + 1, version = ?, "
                    "last_reported_at = ?, reported_at = ?, updated_at = ?, change_seq = ? "
                    "WHERE pk = ?",
                    (version, iso(last), iso(first), iso(t_now), seq, pk),
                )
                rpk = self._insert_report(
                    tx, pk, t, t_now, actor, source, description, external_id, dist, wkb
                )
                self._event(
                    tx,
                    pk,
                    version,
                    t_now,
                    actor,
                    role,
                    "report_linked",
                    old.state,
                    old.state,
                    description,
                    {
                        "report": rpk,
                        "distance_m": round(dist, 2),
                        "report_count": old.report_count + 1,
                    },
                )
                hazard = self._get(tx, pk)
                self._sync(tx)
                return ReportResult(hazard, False, True, dist)
            pk = int(
                tx.scalar(
                    "INSERT INTO hazards (version, state, category, grade, source, description, "
                    "road_name, report_count, reopen_count, reported_at, last_reported_at, "
                    "updated_at, reported_by, unit_ids, geom, geom_type, minx, miny, maxx, maxy, "
                    f"change_seq) VALUES (1, ?, ?, ?, ?, ?, ?, 1, 0, ?, ?, ?, ?, ?, "
                    f"{tx.geom_in}, ?, ?, ?, ?, ?, ?) RETURNING pk",
                    (
                        initial_state,
                        category,
                        grade,
                        source,
                        description,
                        road_name,
                        iso(t),
                        iso(t),
                        iso(t_now),
                        actor,
                        ";".join(units.unit_ids),
                        wkb,
                        geom.geom_type,
                        *geom.bounds,
                        seq,
                    ),
                )
            )
            for uid, d, m in zip(units.unit_ids, units.distances, units.matches, strict=True):
                tx.execute(
                    "INSERT INTO hazard_units (hazard_pk, unit_id, distance_m, match) "
                    "VALUES (?, ?, ?, ?)",
                    (pk, uid, d, m),
                )
            rpk = self._insert_report(
                tx, pk, t, t_now, actor, source, description, external_id, 0.0, wkb
            )
            routed = self._run_report_hooks(tx, pk, category, grade, units.unit_ids, source)
            self._event(
                tx,
                pk,
                1,
                t_now,
                actor,
                role,
                "report" if initial_state == "reported" else "import",
                None,
                initial_state,
                description,
                {
                    "report": rpk,
                    "unit_ids": units.unit_ids,
                    **({"routed": routed} if routed else {}),
                },
            )
            hazard = self._get(tx, pk)
            self._sync(tx)
        return ReportResult(hazard, True, False, None)

    def _run_report_hooks(
        self, tx: Tx, pk: int, category: str, grade: str | None, unit_ids: list[str], source: str
    ) -> dict[str, Any]:
        """Run :attr:`report_hooks` for a new hazard; apply ``responsible``/``road_chief``."""
        if source == "import" or not self.report_hooks:
            return {}
        out: dict[str, Any] = {}
        for hook in self.report_hooks:
            try:
                out.update(hook(tx, pk, category, grade, list(unit_ids)) or {})
            except ValidationError:  # a hook refusing the report (e.g. a district-only item)
                raise
            except Exception as exc:  # routing must never lose a report
                out["routing_error"] = str(exc)[:500]
        sets = {k: str(out[k])[:200] for k in ("responsible", "road_chief") if out.get(k)}
        if sets:
            tx.execute(
                f"UPDATE hazards SET {', '.join(f'{k} = ?' for k in sets)} WHERE pk = ?",
                [*sets.values(), pk],
            )
        return out

    def _insert_report(
        self,
        tx: Tx,
        pk: int,
        t: datetime,
        received: datetime,
        actor: str,
        source: str,
        description: str | None,
        external_id: str | None,
        distance: float,
        wkb: bytes,
    ) -> int:
        return int(
            tx.scalar(
                "INSERT INTO hazard_reports (hazard_pk, reported_at, received_at, reported_by, "
                "source, description, external_id, distance_m, geom) VALUES "
                f"(?, ?, ?, ?, ?, ?, ?, ?, {tx.geom_in}) RETURNING pk",
                (pk, iso(t), iso(received), actor, source, description, external_id, distance, wkb),
            )
        )

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
        tx.execute(
            "INSERT INTO hazard_events (hazard_pk, version, at, actor, role, action, from_state, "
            "to_state, comment, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                pk,
                version,
                iso(at),
                actor,
                role,
                action,
                from_state,
                to_state,
                comment,
                json.dumps(details, ensure_ascii=False) if details else None,
            ),
        )

    def transition(
        self,
        hazard_id: str | int,
        to: str,
        *,
        actor: str,
        role: str,
        expected_version: int | None,
        comment: str | None = None,
        grade: str | None = None,
        category: str | None = None,
        responsible: str | None = None,
        road_chief: str | None = None,
        deadline: Any = None,
        now: datetime | None = None,
        details: dict[str, Any] | None = None,
    ) -> Hazard:
        """Move a hazard to state ``to``; the whole change or nothing.

        Parameters
        ----------
        hazard_id
            ``"H12"``.
        to
            The target state (see :mod:`trafficunit.ledger.lifecycle`).
        actor, role
            Who does it (recorded) and their role (checked against the action; ``"system"``
            for the ledger's own sweeps).
        expected_version
            The version the caller read; a different stored version raises
            :class:`StaleVersion` and changes nothing. None skips the check.
        comment
            Recorded in the history; required when failing acceptance or reopening.
        grade, category
            Registration: the grade (required unless the report gave one) and a corrected
            category.
        responsible, road_chief, deadline
            Assignment: the responsible body (required), the road chief, and a deadline
            (default: by grade, ``settings.deadline_days``).

        Raises
        ------
        NotFoundError, StaleVersion, IllegalTransition, PermissionDenied, ValidationError
        """
        pk = parse_hazard_id(hazard_id)
        t = _now(now)
        comment = _text(comment, "comment")
        grade = lc.normalise_grade(grade)
        category = self.catalogue.resolve(category) if category is not None else None
        responsible = _text(responsible, "responsible", limit=200)
        road_chief = _text(road_chief, "road_chief", limit=200)
        due = None if deadline is None else parse_time(deadline, "deadline")
        with self.db.transaction(write=True) as tx:
            h = self._get(tx, pk)
            if expected_version is not None and h.version != int(expected_version):
                raise StaleVersion(
                    f"hazard {h.id} is at version {h.version}, not {expected_version}; "
                    "read it again (GET) and retry with its ETag",
                    current_version=h.version,
                )
            action = lc.transition_action(h.state, to)
            if role != _SYSTEM:
                lc.require(role, action)
            sets: dict[str, Any] = {}
            info: dict[str, Any] = dict(details or {})
            if action == "register":
                g = grade or h.grade
                if g is None:
                    raise ValidationError(
                        "registering a hazard needs its grade: 'general' (一般) or 'major' (重大)"
                    )
                sets.update(grade=g, registered_at=iso(t))
                if category is not None and category != h.category:
                    sets["category"] = category
                    info["category_was"] = h.category
            elif grade is not None or category is not None:
                raise ValidationError("grade and category are set when registering a hazard")
            if action == "assign":
                body = responsible or h.responsible
                if body is None:
                    raise ValidationError(
                        "assigning a hazard needs the responsible body ('responsible')"
                    )
                if due is not None and due <= t:
                    raise ValidationError(f"deadline {_json_time(due)} is not in the future")
                g = h.grade or "general"
                due = due or lc.deadline_for(g, t, self.settings.deadline_days)
                sets.update(responsible=body, deadline=iso(due), assigned_at=iso(t))
                if road_chief is not None:
                    sets["road_chief"] = road_chief
                if g == "major" and self.settings.list_major and h.supervision is None:
                    sets.update(supervision="listed", listed_at=iso(t))
                    info["listed"] = "major hazard"
            elif responsible is not None or road_chief is not None or due is not None:
                raise ValidationError(
                    "responsible, road_chief and deadline are set when assigning a hazard"
                )
            if action == "start":
                sets["rectifying_at"] = iso(t)
            elif action == "accept":
                sets["accepted_at"] = iso(t)
            elif action == "fail_acceptance":
                if comment is None:
                    raise ValidationError("a failed acceptance needs a comment saying what failed")
                sets["accepted_at"] = None
            elif action == "close":
                sets["closed_at"] = iso(t)
            elif action == "reopen":
                if comment is None:
                    raise ValidationError("reopening a hazard needs a comment saying why")
                sets.update(
                    registered_at=iso(t),
                    assigned_at=None,
                    rectifying_at=None,
                    accepted_at=None,
                    closed_at=None,
                    deadline=None,
                    reopen_count=h.reopen_count + 1,
                )
            seq = tx.next_change()
            version = h.version + 1
            sets.update(state=to, version=version, updated_at=iso(t), change_seq=seq)
            assignments = ", ".join(f"{k} = ?" for k in sets)
            n = tx.execute(
                f"UPDATE hazards SET {assignments} WHERE pk = ? AND version = ?",
                [*sets.values(), pk, h.version],
            )
            if n != 1:  # pragma: no cover - the write lock makes this impossible
                raise ConflictError(f"hazard {h.id} changed during the transition; retry")
            self._event(tx, pk, version, t, actor, role, action, h.state, to, comment, info or None)
            out = self._get(tx, pk)
            self._sync(tx)
        return out

    def escalate_overdue(self, *, now: datetime | None = None) -> list[str]:
        """Put overdue hazards under listed supervision (挂牌督办); the ids newly listed.

        Does nothing when ``settings.list_overdue`` is False. Each escalation is a history
        event by ``system``; a hazard already listed is left alone.
        """
        if not self.settings.list_overdue:
            return []
        t = _now(now)
        out = []
        with self.db.transaction(write=True) as tx:
            rows = tx.all(
                "SELECT pk, version, state, deadline FROM hazards WHERE state IN "
                "('assigned', 'rectifying') AND deadline IS NOT NULL AND deadline < ? "
                "AND supervision IS NULL ORDER BY pk",
                (iso(t),),
            )
            for r in rows:
                seq = tx.next_change()
                version = int(r["version"]) + 1
                tx.execute(
                    "UPDATE hazards SET supervision = 'listed', listed_at = ?, version = ?, "
                    "updated_at = ?, change_seq = ? WHERE pk = ?",
                    (iso(t), version, iso(t), seq, r["pk"]),
                )
                self._event(
                    tx,
                    int(r["pk"]),
                    version,
                    t,
                    _SYSTEM,
                    _SYSTEM,
                    "escalate",
                    r["state"],
                    r["state"],
                    f"overdue since {_json_time(_dt(r['deadline']))}: "
                    "listed supervision (挂牌督办)",
                    {"deadline": _json_time(_dt(r["deadline"]))},
                )
                out.append(f"H{r['pk']}")
        return out

    def reopen_for_crashes(
        self, accidents: pd.DataFrame, *, now: datetime | None = None
    ) -> list[str]:
        """Reopen closed hazards that had a serious crash on their unit after closing.

        A crash counts when its ``severity`` is in ``settings.reopen_severities``, its
        ``unit_id`` is one of the hazard's units and its ``time`` falls after the hazard's
        closure and within ``settings.reopen_days`` of it. Each reopening is a ``reopen``
        transition by ``system`` naming the crash. Returns the ids reopened.

        Parameters
        ----------
        accidents
            Joined accidents (``tu.assign``): ``event_id``, ``unit_id``, ``time``,
            ``severity``.
        """
        need = {"unit_id", "time", "severity"}
        if not need <= set(accidents.columns) or not len(accidents):
            return []
        t = _now(now)
        acc = pd.DataFrame(
            {
                "unit_id": accidents["unit_id"].astype("string"),
                "time": pd.to_datetime(accidents["time"], utc=True, errors="coerce"),
                "severity": accidents["severity"].astype("string"),
                "event_id": (
                    accidents["event_id"].astype(str)
                    if "event_id" in accidents
                    else pd.Series(accidents.index.astype(str), index=accidents.index)
                ),
            }
        )
        acc = acc[
            acc["unit_id"].notna()
            & acc["time"].notna()
            & acc["severity"].isin(sorted(self.settings.reopen_severities))
            & (acc["time"] <= pd.Timestamp(t))
        ]
        if not len(acc):
            return []
        with self.db.transaction() as tx:
            rows = tx.all(
                "SELECT h.pk, h.version, h.closed_at, u.unit_id FROM hazards h "
                "JOIN hazard_units u ON u.hazard_pk = h.pk WHERE h.state = 'closed'"
            )
        if not rows:
            return []
        closed = pd.DataFrame(rows)
        closed["closed_at"] = pd.to_datetime(closed["closed_at"], utc=True, format="ISO8601")
        m = closed.merge(acc, on="unit_id")
        period = pd.Timedelta(days=self.settings.reopen_days)
        m = m[(m["time"] > m["closed_at"]) & (m["time"] <= m["closed_at"] + period)]
        m = m.sort_values(["pk", "time"]).drop_duplicates("pk")
        out = []
        records: list[dict[Any, Any]] = m.to_dict("records")
        for r in records:
            try:
                self.transition(
                    int(r["pk"]),
                    "registered",
                    actor=_SYSTEM,
                    role=_SYSTEM,
                    expected_version=int(r["version"]),
                    comment=(
                        f"reopened: {r['severity']} crash {r['event_id']} on unit {r['unit_id']} "
                        f"at {r['time'].isoformat()}, within {self.settings.reopen_days:g} days of "
                        "closure"
                    ),
                    details={"crash": str(r["event_id"]), "unit_id": str(r["unit_id"])},
                    now=t,
                )
            except (StaleVersion, ConflictError):
                continue  # changed meanwhile (e.g. reopened by another process)
            out.append(f"H{r['pk']}")
        return out

    # -- tokens
    def create_token(
        self, role: str, *, label: str | None = None, created_by: str | None = None
    ) -> tuple[str, str]:
        """Create a token of ``role``; ``(token_id, token)``. Only the hash is stored."""
        if role not in lc.ROLES:
            raise ValidationError(f"unknown role {clip(role)}; use one of {', '.join(lc.ROLES)}")
        label = _text(label, "label", limit=200)
        token = "tu_" + secrets.token_urlsafe(32)
        token_id = "T" + secrets.token_hex(4)
        with self.db.transaction(write=True) as tx:
            tx.execute(
                "INSERT INTO tokens (token_id, token_hash, role, label, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (token_id, hash_token(token), role, label, iso(_now(None)), created_by),
            )
        return token_id, token

    def authenticate(self, token: str) -> Principal:
        """The principal of a token; AuthenticationError when unknown or revoked."""
        if not token or len(token) > 200:
            raise AuthenticationError("missing or malformed token")
        with self.db.transaction() as tx:
            row = tx.one(
                "SELECT token_id, role, label, revoked_at FROM tokens WHERE token_hash = ?",
                (hash_token(token),),
            )
        if row is None:
            raise AuthenticationError("unknown token")
        if row["revoked_at"] is not None:
            raise AuthenticationError(f"token {row['token_id']} was revoked")
        return Principal(row["token_id"], row["role"], row["label"])

    def revoke_token(self, token_id: str) -> None:
        """Revoke a token by its id; NotFoundError if there is none."""
        with self.db.transaction(write=True) as tx:
            n = tx.execute(
                "UPDATE tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL",
                (iso(_now(None)), token_id),
            )
            if (
                n == 0
                and tx.one("SELECT 1 AS x FROM tokens WHERE token_id = ?", (token_id,)) is None
            ):
                raise NotFoundError(f"no token {clip(token_id)}")

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every token's id, role, label and times (never the token or its hash)."""
        with self.db.transaction() as tx:
            rows = tx.all(
                "SELECT token_id, role, label, created_at, created_by, revoked_at FROM tokens "
                "ORDER BY pk"
            )
        return [
            {
                **{k: r[k] for k in ("token_id", "role", "label", "created_by")},
                "created_at": _json_time(_dt(r["created_at"])),
                "revoked_at": _json_time(_dt(r["revoked_at"])),
            }
            for r in rows
        ]

    # -- work zones
    def register_workzone(
        self,
        site_code: str,
        geometry: Any,
        *,
        start: Any,
        end: Any = None,
        actor: str,
        role: str,
        lanes_taken: int | None = None,
        night_works: bool | None = None,
        contractor: str | None = None,
        permit: str | None = None,
        description: str | None = None,
        now: datetime | None = None,
    ) -> WorkZone:
        """Register a road-works site (one code per site); ConflictError if the code exists.

        The site is assigned to the units it occupies at once.
        """
        lc.require(role, "workzone")
        code = _text(site_code, "site_code", required=True, limit=64)
        assert code is not None
        if not all(c.isalnum() or c in "-_." for c in code):
            raise ValidationError(
                f"site_code {clip(code)} may hold only letters, digits, '-', '_' and '.'"
            )
        geom = parse_geometry(
            json.loads(shapely.to_geojson(geometry))
            if isinstance(geometry, shapely.Geometry)
            else geometry,
            max_vertices=self.settings.max_vertices,
        )
        self._check_plausible(geom, "workzone")
        t0 = parse_time(start, "start")
        t1 = None if end is None else parse_time(end, "end")
        if t1 is not None and t1 < t0:
            raise ValidationError(f"end {_json_time(t1)} is before start {_json_time(t0)}")
        if lanes_taken is not None and not 0 <= int(lanes_taken) <= 20:
            raise ValidationError(f"lanes_taken must be 0..20, got {lanes_taken}")
        contractor = _text(contractor, "contractor", limit=200)
        permit = _text(permit, "permit", limit=200)
        description = _text(description, "description")
        units = self._assign(geom, "workzone", None)
        t = _now(now)
        with self.db.transaction(write=True) as tx:
            if tx.one("SELECT pk FROM workzones WHERE site_code = ?", (code,)) is not None:
                raise ConflictError(
                    f"a work zone with site code {clip(code)} is registered already"
                )
            seq = tx.next_change()
            pk = int(
                tx.scalar(
                    "INSERT INTO workzones (site_code, version, start_at, end_at, lanes_taken, "
                    "night_works, contractor, permit, description, unit_ids, geom, geom_type, "
                    "minx, miny, maxx, maxy, created_at, created_by, updated_at, change_seq) "
                    "VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, "
                    f"{tx.geom_in}, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "RETURNING pk",
                    (
                        code,
                        iso(t0),
                        iso(t1),
                        None if lanes_taken is None else int(lanes_taken),
                        None if night_works is None else int(bool(night_works)),
                        contractor,
                        permit,
                        description,
                        ";".join(units.unit_ids),
                        shapely.to_wkb(geom),
                        geom.geom_type,
                        *geom.bounds,
                        iso(t),
                        actor,
                        iso(t),
                        seq,
                    ),
                )
            )
            for uid, d, m in zip(units.unit_ids, units.distances, units.matches, strict=True):
                tx.execute(
                    "INSERT INTO workzone_units (workzone_pk, unit_id, distance_m, match) "
                    "VALUES (?, ?, ?, ?)",
                    (pk, uid, d, m),
                )
            row = tx.one(f"SELECT {_WZ_COLS}, {tx.geom_out()} FROM workzones WHERE pk = ?", (pk,))
        assert row is not None
        return _workzone(row)

    def get_workzone(self, site_code: str) -> WorkZone:
        """The work zone ``site_code``; NotFoundError if there is none."""
        with self.db.transaction() as tx:
            row = tx.one(
                f"SELECT {_WZ_COLS}, {tx.geom_out()} FROM workzones WHERE site_code = ?",
                (str(site_code),),
            )
        if row is None:
            raise NotFoundError(f"no work zone with site code {clip(site_code)}")
        return _workzone(row)

    def list_workzones(
        self,
        *,
        active_at: Any = None,
        bbox: tuple[float, float, float, float] | None = None,
        unit_id: str | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> tuple[int, list[WorkZone]]:
        """Work zones (active at ``active_at`` when given, meeting ``bbox``), by site code."""
        where: list[str] = []
        params: list[Any] = []
        if active_at is not None:
            t = iso(parse_time(active_at, "active"))
            where.append("start_at <= ? AND (end_at IS NULL OR end_at >= ?)")
            params += [t, t]
        if unit_id:
            where.append("pk IN (SELECT workzone_pk FROM workzone_units WHERE unit_id = ?)")
            params.append(unit_id)
        with self.db.transaction() as tx:
            sw, sp, shape = self._spatial_where(tx, bbox, None)
            cond = " AND ".join(where + sw) or "1 = 1"
            rows = tx.all(
                f"SELECT {_WZ_COLS}, {tx.geom_out()} FROM workzones WHERE {cond} "
                "ORDER BY site_code",
                params + sp,
            )
        zones = [_workzone(r) for r in rows]
        if shape is not None and zones:
            keep = shapely.intersects(np.array([z.geometry for z in zones], dtype=object), shape)
            zones = [z for z, k in zip(zones, keep, strict=True) if k]
        return len(zones), zones[int(offset) : int(offset) + int(limit)]

    # -- bulk helpers
    def counts(self) -> dict[str, Any]:
        """Hazards by state, reports, history events, work zones (for health checks)."""
        with self.db.transaction() as tx:
            by_state = {
                r["state"]: int(r["n"])
                for r in tx.all("SELECT state, COUNT(*) AS n FROM hazards GROUP BY state")
            }
            reports = int(tx.scalar("SELECT COUNT(*) AS n FROM hazard_reports"))
            events = int(tx.scalar("SELECT COUNT(*) AS n FROM hazard_events"))
            zones = int(tx.scalar("SELECT COUNT(*) AS n FROM workzones"))
        return {
            "hazards": sum(by_state.values()),
            "by_state": by_state,
            "reports": reports,
            "events": events,
            "workzones": zones,
        }

    def check_consistency(self) -> list[str]:
        """Problems found in the stored data (empty when consistent).

        Checks that every hazard's history has one event per version from 1 to its current
        version, that its report count matches its stored reports, and that every hazard has
        a report and a valid state.
        """
        problems = []
        with self.db.transaction() as tx:
            rows = tx.all(
                "SELECT h.pk, h.version, h.report_count, "
                "(SELECT COUNT(*) FROM hazard_events e WHERE e.hazard_pk = h.pk) AS n_events, "
                "(SELECT MAX(version) FROM hazard_events e WHERE e.hazard_pk = h.pk) AS max_v, "
                "(SELECT COUNT(*) FROM hazard_reports r WHERE r.hazard_pk = h.pk) AS n_reports "
                "FROM hazards h"
            )
        for r in rows:
            if int(r["n_events"]) != int(r["version"]) or int(r["max_v"] or 0) != int(r["version"]):
                problems.append(
                    f"H{r['pk']}: version {r['version']} but {r['n_events']} history events"
                )
            if int(r["n_reports"]) != int(r["report_count"]):
                problems.append(
                    f"H{r['pk']}: report_count {r['report_count']} but {r['n_reports']} reports"
                )
        return problems
