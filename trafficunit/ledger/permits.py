"""Heavy-vehicle route permits in the ledger's database: lifecycle, history, checked traces.

::

    requested ──approve──▶ approved ──activate──▶ active ──expire──▶ expired
        │                      │                     │
        └──────revoke──────────┴────────revoke───────┴──▶ revoked

A permit fixes a vehicle's route (ordered unit ids from :func:`trafficunit.route`, avoiding
what it asked to avoid in its windows), its daily time windows, validity period and speed caps
per road class. Every change is an event with the actor, role and version (If-Match writes as
for hazards); traces checked against the permit are stored with their summary.

The tables live beside the hazard ledger's and are created here with ``CREATE TABLE IF NOT
EXISTS`` (:func:`ensure_schema`); they do not change the ledger's schema version.

Roles: any token may request a permit; engineers also activate and expire; supervisors and
admins also approve and revoke.

A permit whose validity has ended (``valid_to``, in the permit's time zone) expires by itself:
every read and write first moves such permits, in any state but ``expired`` and ``revoked``, to
``expired`` with an event by ``system`` (:meth:`PermitStore.expire_due`). The store's ``clock``
gives the time (inject one in tests).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import shapely

from ._tables import create_tables
from .errors import (
    IllegalTransition,
    NotFoundError,
    PermissionDenied,
    StaleVersion,
    ValidationError,
)
from .records import VersionedRecord

__all__ = [
    "PERMIT_PERMISSIONS",
    "PERMIT_STATES",
    "PERMIT_TRANSITIONS",
    "Permit",
    "PermitStore",
    "ensure_schema",
    "parse_permit_id",
]

PERMIT_STATES = ("requested", "approved", "active", "expired", "revoked")
PERMIT_TRANSITIONS: dict[tuple[str, str], str] = {
    ("requested", "approved"): "approve",
    ("requested", "revoked"): "revoke",
    ("approved", "active"): "activate",
    ("approved", "revoked"): "revoke",
    ("active", "expired"): "expire",
    ("active", "revoked"): "revoke",
}
_ENG = frozenset({"request", "activate", "expire"})
PERMIT_PERMISSIONS: dict[str, frozenset[str]] = {
    "reporter": frozenset({"request"}),
    "engineer": _ENG,
    "supervisor": _ENG | {"approve", "revoke"},
    "admin": _ENG | {"approve", "revoke"},
}
#: State names in Chinese, for pages and layers.
STATE_ZH = {
    "requested": "已申请",
    "approved": "已批准",
    "active": "生效中",
    "expired": "已过期",
    "revoked": "已撤销",
}


def _require(role: str, action: str) -> None:
    if action not in PERMIT_PERMISSIONS.get(role, frozenset()):
        who = [r for r, acts in PERMIT_PERMISSIONS.items() if action in acts]
        raise PermissionDenied(
            f"role {role!r} may not {action} a permit; that needs a token of role "
            f"{' or '.join(who)}"
        )


_DDL = [
    """CREATE TABLE IF NOT EXISTS permits (
        pk {PK},
        version INTEGER NOT NULL,
        state TEXT NOT NULL,
        vehicle TEXT NOT NULL,
        operator TEXT,
        spec TEXT NOT NULL,
        unit_ids TEXT NOT NULL,
        length_m DOUBLE PRECISION,
        time_s DOUBLE PRECISION,
        route_geojson TEXT,
        created_at TEXT NOT NULL,
        created_by TEXT,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS permits_state ON permits (state)",
    """CREATE TABLE IF NOT EXISTS permit_events (
        permit_pk BIGINT NOT NULL REFERENCES permits (pk),
        version INTEGER NOT NULL,
        action TEXT NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        actor TEXT,
        role TEXT,
        at TEXT NOT NULL,
        comment TEXT,
        PRIMARY KEY (permit_pk, version)
    )""",
    """CREATE TABLE IF NOT EXISTS permit_traces (
        pk {PK},
        permit_pk BIGINT NOT NULL REFERENCES permits (pk),
        at TEXT NOT NULL,
        name TEXT,
        actor TEXT,
        summary TEXT NOT NULL,
        findings TEXT NOT NULL
    )""",
]


def ensure_schema(db: Any) -> None:
    """Create the permit tables if they are missing (idempotent)."""
    create_tables(db, _DDL)


def parse_permit_id(permit_id: str | int) -> int:
    """``"P12"`` or ``12`` → 12; anything else raises NotFoundError."""
    text = str(permit_id).strip().upper()
    if text.startswith("P"):
        text = text[1:]
    if not (text.isascii() and text.isdigit()) or len(text) > 15:
        raise NotFoundError(f"no permit {permit_id!r} (permit ids look like P12)")
    return int(text)


@dataclass
class Permit(VersionedRecord):
    """One permit as stored."""

    ID_PREFIX: ClassVar[str] = "P"
    pk: int
    version: int
    state: str
    vehicle: str
    operator: str | None
    spec: dict[str, Any]
    unit_ids: list[str]
    length_m: float | None
    time_s: float | None
    route: dict[str, Any] | None
    created_at: str
    created_by: str | None
    updated_at: str

    def properties(self) -> dict[str, Any]:
        """JSON properties (no geometry)."""
        return {
            "id": self.id,
            "version": self.version,
            "state": self.state,
            "state_zh": STATE_ZH.get(self.state, self.state),
            "vehicle": self.vehicle,
            "operator": self.operator,
            "windows": self.spec.get("windows", []),
            "tz": self.spec.get("tz", "UTC"),
            "valid_from": self.spec.get("valid_from"),
            "valid_to": self.spec.get("valid_to"),
            "speed_caps_kmh": self.spec.get("speed_caps_kmh", {}),
            "avoid": self.spec.get("avoid", []),
            "unit_ids": self.unit_ids,
            "length_m": self.length_m,
            "time_s": self.time_s,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "updated_at": self.updated_at,
        }

    def to_feature(self) -> dict[str, Any]:
        """A GeoJSON Feature with the route line."""
        return {
            "type": "Feature",
            "id": self.id,
            "geometry": self.route,
            "properties": self.properties(),
        }

    def rules(self) -> Any:
        """The :class:`trafficunit.traces.PermitRules` of this permit."""
        from ..traces import PermitRules

        return PermitRules(
            unit_ids=list(self.unit_ids),
            windows=[tuple(w) for w in self.spec.get("windows", [])],
            tz=self.spec.get("tz", "UTC"),
            valid_from=self.spec.get("valid_from"),
            valid_to=self.spec.get("valid_to"),
            speed_caps_kmh=dict(self.spec.get("speed_caps_kmh", {})),
            permit_id=self.id,
        )


def _system_now() -> datetime:
    return datetime.now(UTC)


def valid_end(valid_to: Any, tz: str | None) -> datetime | None:
    """The instant a permit's validity ends (``valid_to`` read in the permit's zone), or None."""
    if valid_to is None or str(valid_to).strip() == "":
        return None
    import pandas as pd

    try:
        t = pd.Timestamp(str(valid_to))
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"valid_to {valid_to!r} is not a date or time") from exc
    if pd.isna(t):
        raise ValidationError(f"valid_to {valid_to!r} is not a date or time")
    if t.tzinfo is None:
        t = t.tz_localize(tz or "UTC")
    return t.tz_convert("UTC").to_pydatetime()


def _permit(row: dict[str, Any]) -> Permit:
    return Permit(
        pk=int(row["pk"]),
        version=int(row["version"]),
        state=str(row["state"]),
        vehicle=str(row["vehicle"]),
        operator=row.get("operator"),
        spec=json.loads(row["spec"]),
        unit_ids=json.loads(row["unit_ids"]),
        length_m=row.get("length_m"),
        time_s=row.get("time_s"),
        route=json.loads(row["route_geojson"]) if row.get("route_geojson") else None,
        created_at=str(row["created_at"]),
        created_by=row.get("created_by"),
        updated_at=str(row["updated_at"]),
    )


class PermitStore:
    """Permits in a ledger's database (``Ledger.db``)."""

    def __init__(self, db: Any, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        #: the current time (timezone-aware); replace it to test expiry without waiting
        self.clock: Callable[[], datetime] = clock or _system_now
        ensure_schema(db)

    def _now(self) -> str:
        return self.clock().astimezone(UTC).isoformat()

    def expire_due(self) -> list[str]:
        """Move every open permit whose validity has ended to ``expired`` (an event by
        ``system``); returns their ids. Runs before every read and write of the store."""
        now = self.clock()
        with self.db.transaction() as tx:
            rows = tx.all(
                "SELECT * FROM permits WHERE state IN (?, ?, ?)",
                ("requested", "approved", "active"),
            )
        due = [
            p
            for p in map(_permit, rows)
            if (end := valid_end(p.spec.get("valid_to"), p.spec.get("tz"))) is not None
            and end <= now
        ]
        done: list[str] = []
        if not due:
            return done
        at = self._now()
        with self.db.transaction(write=True) as tx:
            for p in due:
                n = tx.execute(
                    "UPDATE permits SET state = 'expired', version = ?, updated_at = ? "
                    "WHERE pk = ? AND version = ?",
                    (p.version + 1, at, p.pk, p.version),
                )
                if n != 1:
                    continue  # changed meanwhile (or swept by another reader)
                tx.execute(
                    "INSERT INTO permit_events (permit_pk, version, action, from_state, to_state,"
                    " actor, role, at, comment) VALUES (?, ?, 'expire', ?, 'expired', 'system',"
                    " 'system', ?, ?)",
                    (p.pk, p.version + 1, p.state, at, f"validity ended {p.spec.get('valid_to')}"),
                )
                done.append(p.id)
        return done

    def request(
        self,
        *,
        vehicle: str,
        route: Any,
        actor: str,
        role: str,
        operator: str | None = None,
        windows: list[tuple[str, str]] | None = None,
        tz: str = "UTC",
        valid_from: str | None = None,
        valid_to: str | None = None,
        speed_caps_kmh: dict[str, float] | None = None,
        avoid: list[str] | None = None,
        origin: list[float] | None = None,
        destination: list[float] | None = None,
    ) -> Permit:
        """Store a requested permit with its computed ``route`` (a routing ``Route``)."""
        _require(role, "request")
        vehicle = str(vehicle).strip()
        if not vehicle:
            raise ValidationError("a permit needs the vehicle's plate")
        end = valid_end(valid_to, tz)  # readable, or a clear error
        if end is not None and end <= self.clock():
            raise ValidationError(f"valid_to {valid_to} is already past: the permit would expire")
        start = valid_end(valid_from, tz)
        if end is not None and start is not None and end <= start:
            raise ValidationError(f"valid_to {valid_to} is not after valid_from {valid_from}")
        spec = {
            "windows": [list(w) for w in (windows or [])],
            "tz": tz,
            "valid_from": valid_from,
            "valid_to": valid_to,
            "speed_caps_kmh": dict(speed_caps_kmh or {}),
            "avoid": list(avoid or []),
            "from": origin,
            "to": destination,
        }
        geom = shapely.geometry.mapping(route.geometry)
        now = self._now()
        with self.db.transaction(write=True) as tx:
            row = tx.one(
                "INSERT INTO permits (version, state, vehicle, operator, spec, unit_ids, length_m,"
                " time_s, route_geojson, created_at, created_by, updated_at)"
                " VALUES (1, 'requested', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING pk",
                (
                    vehicle,
                    operator,
                    json.dumps(spec, ensure_ascii=False),
                    json.dumps(list(route.unit_ids)),
                    float(route.length_m),
                    float(route.time_s),
                    json.dumps(geom),
                    now,
                    actor,
                    now,
                ),
            )
            assert row is not None
            pk = int(row["pk"])
            tx.execute(
                "INSERT INTO permit_events (permit_pk, version, action, from_state, to_state,"
                " actor, role, at, comment) VALUES (?, 1, 'request', NULL, 'requested', ?, ?, ?,"
                " NULL)",
                (pk, actor, role, now),
            )
            return self._get(tx, pk)

    def data_key(self) -> tuple[int, int]:
        """(number of permits, sum of their versions): changes with every write and expiry
        (expired ones are swept first), so it keys cached tiles of the permits layer."""
        self.expire_due()
        with self.db.transaction() as tx:
            row = tx.one("SELECT COUNT(*) AS n, COALESCE(SUM(version), 0) AS v FROM permits")
        assert row is not None
        return int(row["n"]), int(row["v"])

    def _get(self, tx: Any, pk: int) -> Permit:
        row = tx.one("SELECT * FROM permits WHERE pk = ?", (pk,))
        if row is None:
            raise NotFoundError(f"no permit P{pk}")
        return _permit(row)

    def get(self, permit_id: str | int) -> Permit:
        """One permit; NotFoundError if there is none."""
        self.expire_due()
        with self.db.transaction() as tx:
            return self._get(tx, parse_permit_id(permit_id))

    def list_permits(
        self, *, state: str | None = None, limit: int = 1000, offset: int = 0
    ) -> list[Permit]:
        """Permits, newest first, optionally in one state."""
        sql = "SELECT * FROM permits"
        params: list[Any] = []
        if state is not None:
            if state not in PERMIT_STATES:
                raise ValidationError(
                    f"unknown state {state!r}; states: {', '.join(PERMIT_STATES)}"
                )
            sql += " WHERE state = ?"
            params.append(state)
        sql += " ORDER BY pk DESC LIMIT ? OFFSET ?"
        params += [int(limit), int(offset)]
        self.expire_due()
        with self.db.transaction() as tx:
            return [_permit(r) for r in tx.all(sql, params)]

    def transition(
        self,
        permit_id: str | int,
        to: str,
        *,
        actor: str,
        role: str,
        expected_version: int | None,
        comment: str | None = None,
    ) -> Permit:
        """Move a permit to ``to``; StaleVersion if ``expected_version`` is not the current one."""
        if to not in PERMIT_STATES:
            raise ValidationError(f"unknown state {to!r}; states: {', '.join(PERMIT_STATES)}")
        pk = parse_permit_id(permit_id)
        self.expire_due()
        with self.db.transaction(write=True) as tx:
            p = self._get(tx, pk)
            if expected_version is not None and expected_version != p.version:
                raise StaleVersion(
                    f"permit {p.id} is at version {p.version}, not {expected_version}; "
                    "read it again",
                    current_version=p.version,
                )
            action = PERMIT_TRANSITIONS.get((p.state, to))
            if action is None:
                nxt = sorted(b for (a, b) in PERMIT_TRANSITIONS if a == p.state)
                raise IllegalTransition(
                    f"a permit in state {p.state!r} cannot go to {to!r}; allowed: "
                    f"{', '.join(nxt) or 'nothing'}"
                )
            _require(role, action)
            now = self._now()
            version = p.version + 1
            n = tx.execute(
                "UPDATE permits SET state = ?, version = ?, updated_at = ? WHERE pk = ? AND "
                "version = ?",
                (to, version, now, pk, p.version),
            )
            if n != 1:
                raise StaleVersion(
                    f"permit {p.id} changed meanwhile; read it again", current_version=p.version
                )
            tx.execute(
                "INSERT INTO permit_events (permit_pk, version, action, from_state, to_state,"
                " actor, role, at, comment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (pk, version, action, p.state, to, actor, role, now, comment),
            )
            return self._get(tx, pk)

    def history(self, permit_id: str | int) -> list[dict[str, Any]]:
        """Every event of a permit, oldest first."""
        pk = parse_permit_id(permit_id)
        self.expire_due()
        with self.db.transaction() as tx:
            self._get(tx, pk)
            return tx.all(
                "SELECT version, action, from_state, to_state, actor, role, at, comment FROM "
                "permit_events WHERE permit_pk = ? ORDER BY version",
                (pk,),
            )

    def add_trace(
        self, permit_id: str | int, *, name: str | None, actor: str | None, report: Any
    ) -> dict[str, Any]:
        """Store a checked trace's summary and findings (GeoJSON); returns the stored record."""
        pk = parse_permit_id(permit_id)
        summary = json.dumps(report.summary, ensure_ascii=False, default=str)
        findings = report.to_geojson()
        now = self._now()
        with self.db.transaction(write=True) as tx:
            self._get(tx, pk)
            row = tx.one(
                "INSERT INTO permit_traces (permit_pk, at, name, actor, summary, findings) VALUES"
                " (?, ?, ?, ?, ?, ?) RETURNING pk",
                (pk, now, name, actor, summary, findings),
            )
        assert row is not None
        return {
            "trace_id": int(row["pk"]),
            "permit": f"P{pk}",
            "at": now,
            "name": name,
            "summary": json.loads(summary),
            "findings": json.loads(findings),
        }

    def traces(self, permit_id: str | int) -> list[dict[str, Any]]:
        """The traces checked against a permit (summaries), oldest first."""
        pk = parse_permit_id(permit_id)
        with self.db.transaction() as tx:
            self._get(tx, pk)
            rows = tx.all(
                "SELECT pk, at, name, actor, summary FROM permit_traces WHERE permit_pk = ? "
                "ORDER BY pk",
                (pk,),
            )
        return [
            {
                "trace_id": int(r["pk"]),
                "at": r["at"],
                "name": r["name"],
                "actor": r["actor"],
                "summary": json.loads(r["summary"]),
            }
            for r in rows
        ]
