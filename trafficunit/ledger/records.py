"""The ledger's records: a hazard, a work zone, a report's outcome, a caller; rows to records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import shapely

from . import lifecycle as lc
from ._values import dt, json_time, now_utc

__all__ = [
    "CheckedReport",
    "HAZARD_COLS",
    "SOURCES",
    "WZ_COLS",
    "VersionedRecord",
    "Hazard",
    "Principal",
    "ReportResult",
    "WorkZone",
    "feature",
    "hazard_from_row",
    "unit_list",
    "wkb",
    "workzone_from_row",
]

#: Where a hazard report came from (docs/domain.md "Hazard").
SOURCES: tuple[str, ...] = ("public_report", "patrol", "crash_analysis", "audit", "import")


def feature(
    fid: str, geometry: shapely.Geometry, properties: dict[str, Any], **top: Any
) -> dict[str, Any]:
    """A GeoJSON Feature (``top``: more members beside ``id``, e.g. ``version``)."""
    return {
        "type": "Feature",
        "id": fid,
        **top,
        "geometry": json.loads(shapely.to_geojson(geometry)),
        "properties": properties,
    }


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


class VersionedRecord:
    """A stored record with a number, a version and a one-letter public id (``H12``, ``P3``)."""

    ID_PREFIX: ClassVar[str]
    pk: int
    version: int

    @property
    def id(self) -> str:
        """The public id: the record's letter and number."""
        return f"{self.ID_PREFIX}{self.pk}"

    @property
    def etag(self) -> str:
        """A strong ETag naming this version."""
        return f'"{self.id}-v{self.version}"'


@dataclass(frozen=True)
class Hazard(VersionedRecord):
    """One hazard as stored (times in UTC, geometry in WGS84)."""

    ID_PREFIX: ClassVar[str] = "H"
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

    def overdue(self, now: datetime | None = None) -> bool:
        """Past its deadline and not yet accepted."""
        return (
            self.state in lc.OVERDUE_STATES
            and self.deadline is not None
            and self.deadline < now_utc(now)
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
            "deadline": json_time(self.deadline),
            "overdue": self.overdue(now),
            "supervision": self.supervision,
            "listed_at": json_time(self.listed_at),
            "report_count": self.report_count,
            "reopen_count": self.reopen_count,
            "reported_at": json_time(self.reported_at),
            "last_reported_at": json_time(self.last_reported_at),
            "registered_at": json_time(self.registered_at),
            "assigned_at": json_time(self.assigned_at),
            "rectifying_at": json_time(self.rectifying_at),
            "accepted_at": json_time(self.accepted_at),
            "closed_at": json_time(self.closed_at),
            "updated_at": json_time(self.updated_at),
            "unit_ids": list(self.unit_ids),
        }

    def to_feature(self, now: datetime | None = None) -> dict[str, Any]:
        """A GeoJSON Feature; ``version`` and ``unit_ids`` also at the top level."""
        top = {"version": self.version, "unit_ids": list(self.unit_ids)}
        return feature(self.id, self.geometry, self.properties(now), **top)


@dataclass(frozen=True)
class ReportResult:
    """What :meth:`Ledger.report` did: a new hazard, or a report linked to an open one."""

    hazard: Hazard
    created: bool
    linked: bool
    distance_m: float | None = None
    replayed: bool = False


@dataclass(frozen=True)
class ReportBatch:
    """What :meth:`Ledger.report_many` did: a result per report (``None`` where an invalid
    one was skipped) and the skipped ones' reasons by position."""

    results: list[ReportResult | None]
    errors: dict[int, str]

    @property
    def created(self) -> int:
        """How many new hazards were opened."""
        return sum(1 for r in self.results if r is not None and r.created)


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
            "start": json_time(self.start),
            "end": json_time(self.end),
            "active": self.active(now_utc(now)),
            "lanes_taken": self.lanes_taken,
            "night_works": self.night_works,
            "contractor": self.contractor,
            "permit": self.permit,
            "description": self.description,
            "unit_ids": list(self.unit_ids),
            "created_at": json_time(self.created_at),
        }

    def to_feature(self, now: datetime | None = None) -> dict[str, Any]:
        """A GeoJSON Feature identified by the site code."""
        return feature(self.site_code, self.geometry, self.properties(now))


#: The stored columns of a hazard (without its geometry).
HAZARD_COLS = (
    "pk, version, state, category, grade, source, description, road_name, responsible, "
    "road_chief, deadline, supervision, listed_at, report_count, reopen_count, reported_at, "
    "last_reported_at, registered_at, assigned_at, rectifying_at, accepted_at, closed_at, "
    "updated_at, reported_by, unit_ids"
)
#: The stored columns of a work zone (without its geometry).
WZ_COLS = (
    "pk, site_code, version, start_at, end_at, lanes_taken, night_works, contractor, permit, "
    "description, unit_ids, created_at, created_by"
)


def wkb(value: Any) -> bytes:
    return bytes(value) if not isinstance(value, bytes) else value


def hazard_from_row(row: dict[str, Any]) -> Hazard:
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
        deadline=dt(row["deadline"]),
        supervision=row["supervision"],
        listed_at=dt(row["listed_at"]),
        report_count=int(row["report_count"]),
        reopen_count=int(row["reopen_count"]),
        reported_at=dt(row["reported_at"]),  # type: ignore[arg-type]
        last_reported_at=dt(row["last_reported_at"]),  # type: ignore[arg-type]
        registered_at=dt(row["registered_at"]),
        assigned_at=dt(row["assigned_at"]),
        rectifying_at=dt(row["rectifying_at"]),
        accepted_at=dt(row["accepted_at"]),
        closed_at=dt(row["closed_at"]),
        updated_at=dt(row["updated_at"]),  # type: ignore[arg-type]
        reported_by=row["reported_by"],
        unit_ids=unit_list(row["unit_ids"]),
        geometry=shapely.from_wkb(wkb(row["geom"])),
    )


def workzone_from_row(row: dict[str, Any]) -> WorkZone:
    nw = row["night_works"]
    return WorkZone(
        pk=int(row["pk"]),
        site_code=row["site_code"],
        version=int(row["version"]),
        start=dt(row["start_at"]),  # type: ignore[arg-type]
        end=dt(row["end_at"]),
        lanes_taken=None if row["lanes_taken"] is None else int(row["lanes_taken"]),
        night_works=None if nw is None else bool(nw),
        contractor=row["contractor"],
        permit=row["permit"],
        description=row["description"],
        unit_ids=unit_list(row["unit_ids"]),
        created_at=dt(row["created_at"]),  # type: ignore[arg-type]
        created_by=row["created_by"],
        geometry=shapely.from_wkb(wkb(row["geom"])),
    )


def unit_list(joined: Any) -> tuple[str, ...]:
    """The unit ids of a stored ``;``-joined text."""
    return tuple(u for u in (joined or "").split(";") if u)


@dataclass(frozen=True)
class CheckedReport:
    """A report after its checks, before it is stored (see :meth:`Ledger.report`)."""

    geom: shapely.Geometry
    category: str
    grade: str | None
    source: str
    description: str | None
    road_name: str | None
    external_id: str | None
    actor: str
    role: str
    t: datetime  # when it was seen
    t_now: datetime  # when it was received
    initial_state: str
    link_duplicates: bool
