"""The investigation tables and what the investigation and review modules share: creating the
tables, the role each step needs, the time stamp, history events and the accident↔hazard links.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import lifecycle as lc
from ._db import EVENT_COLUMNS
from ._tables import ensure
from ._values import SYSTEM, event_fields, now_utc
from .errors import NotFoundError, PermissionDenied
from .store import Ledger

__all__ = [
    "INVESTIGATION_STATES",
    "REVIEW_CHECKS",
    "InvestigationRule",
    "ensure_tables",
]

OPEN, INVESTIGATED, CLOSED = "open", "investigated", "closed"
INVESTIGATION_STATES = (OPEN, INVESTIGATED, CLOSED)
#: States of an investigation that is done (the accident was investigated).
DONE = (INVESTIGATED, CLOSED)
#: The four checks of the fatal-accident review (回头看).
REVIEW_CHECKS = ("investigation", "rectification", "deep_investigation", "accountability")

_DDL_TEMPLATE = [
    """CREATE TABLE IF NOT EXISTS investigations (
        pk {PK},
        accident_id TEXT NOT NULL UNIQUE,
        unit_id TEXT,
        severity TEXT NOT NULL,
        accident_time TEXT,
        lon {REAL},
        lat {REAL},
        state TEXT NOT NULL,
        outcome TEXT,
        version INTEGER NOT NULL,
        opened_at TEXT NOT NULL,
        investigated_at TEXT,
        investigated_by TEXT,
        closed_at TEXT,
        closed_by TEXT,
        comment TEXT,
        CHECK (state IN {STATES}),
        CHECK (outcome IS NULL OR outcome IN ('found', 'none'))
    )""",
    "CREATE INDEX IF NOT EXISTS investigations_state ON investigations (state)",
    "CREATE INDEX IF NOT EXISTS investigations_unit ON investigations (unit_id)",
    """CREATE TABLE IF NOT EXISTS investigation_events (
        pk {PK},
        investigation_pk BIGINT NOT NULL REFERENCES investigations (pk),
        {EVENT_COLUMNS}
    )""",
    """CREATE TABLE IF NOT EXISTS accident_hazards (
        accident_id TEXT NOT NULL,
        hazard_pk BIGINT NOT NULL REFERENCES hazards (pk),
        linked_at TEXT NOT NULL,
        linked_by TEXT NOT NULL,
        PRIMARY KEY (accident_id, hazard_pk)
    )""",
    "CREATE INDEX IF NOT EXISTS accident_hazards_hazard ON accident_hazards (hazard_pk)",
    """CREATE TABLE IF NOT EXISTS fatal_reviews (
        accident_id TEXT PRIMARY KEY,
        checks TEXT NOT NULL,
        comment TEXT,
        confirmed_by TEXT NOT NULL,
        confirmed_at TEXT NOT NULL
    )""",
]
_DDL = [
    s.replace("{STATES}", lc.sql_in(INVESTIGATION_STATES)).replace("{EVENT_COLUMNS}", EVENT_COLUMNS)
    for s in _DDL_TEMPLATE
]

_RANK = {r: i for i, r in enumerate(lc.ROLES)}
_NEEDS = {"investigate": "engineer", "link": "engineer", "close": "supervisor"}
_NEEDS["confirm_review"] = "supervisor"


@dataclass(frozen=True)
class InvestigationRule:
    """Which accidents open an investigation.

    Parameters
    ----------
    severities
        KABCO severities that open one (default K, A, B: fatal and injury accidents).
    since
        Only accidents at or after this time (None: all), so loading years of history does not
        open thousands of investigations nobody will run.
    """

    severities: frozenset[str] = field(default_factory=lambda: frozenset({"K", "A", "B"}))
    since: datetime | None = None


def ensure_tables(ledger: Ledger) -> None:
    """Create this module's tables if needed."""
    ensure(ledger.db, "investigations", _DDL)


def require(role: str, action: str) -> None:
    """PermissionDenied unless ``role`` may do ``action`` to an investigation."""
    need = _NEEDS[action]
    if role == SYSTEM:
        return
    if _RANK.get(role, -1) < _RANK[need]:
        raise PermissionDenied(
            f"role {role!r} may not {action.replace('_', ' ')} an investigation; that needs a "
            f"token of role {need} or above"
        )


def stamp(now: datetime | None) -> str:
    """The stored time of ``now`` (default: the current time)."""
    return now_utc(now).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event(tx: Any, pk: int, at: str, *what: Any) -> None:
    """Append one event to an investigation's history; ``what`` are the values of
    :data:`~trafficunit.ledger._values.EVENT_FIELDS` (actor, role, action, from, to, comment,
    details)."""
    tx.insert("investigation_events", {"investigation_pk": pk, "at": at, **event_fields(*what)})


def row_of(tx: Any, accident_id: str) -> dict[str, Any]:
    """The investigation of an accident; NotFoundError if there is none."""
    row = tx.one("SELECT * FROM investigations WHERE accident_id = ?", (str(accident_id),))
    if row is None:
        raise NotFoundError(f"no investigation of accident {accident_id!r}")
    return row


def links_of(tx: Any, accident_ids: Sequence[str]) -> dict[str, list[str]]:
    """The hazard ids linked to each of ``accident_ids``."""
    out: dict[str, list[str]] = {}
    for i in range(0, len(accident_ids), 500):
        chunk = list(accident_ids[i : i + 500])
        if not chunk:
            continue
        for r in tx.all(
            "SELECT accident_id, hazard_pk FROM accident_hazards WHERE accident_id IN "
            f"({', '.join('?' * len(chunk))}) ORDER BY hazard_pk",
            chunk,
        ):
            out.setdefault(r["accident_id"], []).append(f"H{r['hazard_pk']}")
    return out
