"""Listed supervision (挂牌督办) at several levels, with escalation of overdue hazards.

Shenzhen lists hazards at two levels, district and city (docs/domain.md, "The hazard loop"):
a local body fixes what it can and escalates the rest. The ledger's core marks a hazard
``supervision = 'listed'`` (a major hazard at assignment, an overdue one by the sweep); this
module adds **which level** lists it (``supervision_levels``; a listed hazard without a row is
at the first level) and the ``escalate`` transition naming the level, kept in the hazard's own
history (``hazard_events``, action ``escalate``, details ``{"level": ..., "from_level": ...}``).

Escalation rule (:func:`escalate_overdue`): a hazard still overdue ``escalate_after_days``
(N) days past its deadline goes from level 1 to level 2, after 2·N days to level 3, and so on
up to the top level; a hazard overdue but not yet listed is listed at level 1 first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Unpack

from . import lifecycle as lc
from ._tables import ensure
from .errors import IllegalTransition
from .errors import ValidationError as LedgerValidationError
from .store import Ledger, _dt, _json_time, _now, iso, parse_hazard_id

__all__ = [
    "SupervisionSettings",
    "ensure_tables",
    "escalate",
    "escalate_overdue",
    "level_of",
    "levels_frame",
]

_DDL = [
    """CREATE TABLE IF NOT EXISTS supervision_levels (
        hazard_pk BIGINT PRIMARY KEY REFERENCES hazards (pk),
        level TEXT NOT NULL,
        since TEXT NOT NULL
    )""",
]


@dataclass(frozen=True)
class SupervisionSettings:
    """Levels of listed supervision, lowest first, and the escalation delay.

    Parameters
    ----------
    levels
        Default ``("district", "city")`` (Shenzhen's two levels).
    escalate_after_days
        N: days overdue before a hazard goes up one level (**ours**: 30).
    """

    levels: tuple[str, ...] = ("district", "city")
    escalate_after_days: float = 30.0

    def __post_init__(self) -> None:
        if not self.levels or len(set(self.levels)) != len(self.levels):
            raise LedgerValidationError("supervision levels must be distinct and at least one")
        if self.escalate_after_days <= 0:
            raise LedgerValidationError("escalate_after_days must be positive")


def ensure_tables(ledger: Ledger) -> None:
    """Create this module's table if needed."""
    ensure(ledger.db, "supervision", _DDL)


def level_of(ledger: Ledger, hazard_id: str | int, settings: SupervisionSettings) -> str | None:
    """The level listing the hazard (None: not listed)."""
    ensure_tables(ledger)
    h = ledger.get(hazard_id)
    if h.supervision != "listed":
        return None
    with ledger.db.transaction() as tx:
        lv = tx.scalar("SELECT level FROM supervision_levels WHERE hazard_pk = ?", (h.pk,))
    return str(lv) if lv else settings.levels[0]


def levels_frame(ledger: Ledger, settings: SupervisionSettings) -> dict[str, str]:
    """``hazard id -> level`` for every listed hazard."""
    ensure_tables(ledger)
    with ledger.db.transaction() as tx:
        rows = tx.all(
            "SELECT h.pk, s.level FROM hazards h LEFT JOIN supervision_levels s "
            "ON s.hazard_pk = h.pk WHERE h.supervision = 'listed'"
        )
    return {f"H{r['pk']}": (r["level"] or settings.levels[0]) for r in rows}


def _escalate_tx(
    ledger: Ledger,
    tx: Any,
    pk: int,
    to_level: str | None,
    settings: SupervisionSettings,
    *,
    actor: str,
    role: str,
    comment: str | None,
    t: datetime,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    h = ledger._get(tx, pk)
    if h.state not in lc.OPEN_STATES:
        raise IllegalTransition(
            f"hazard {h.id} is {h.state!r}: only open hazards are put under supervision"
        )
    current = None
    if h.supervision == "listed":
        current = tx.scalar("SELECT level FROM supervision_levels WHERE hazard_pk = ?", (pk,))
        current = str(current) if current else settings.levels[0]
    idx = -1 if current is None else settings.levels.index(current)
    if to_level is None:
        if idx + 1 >= len(settings.levels):
            raise IllegalTransition(f"hazard {h.id} is already listed at the top level {current!r}")
        to_level = settings.levels[idx + 1]
    if to_level not in settings.levels:
        raise LedgerValidationError(
            f"unknown supervision level {to_level!r}; levels: {', '.join(settings.levels)}"
        )
    if settings.levels.index(to_level) <= idx:
        raise IllegalTransition(
            f"hazard {h.id} is listed at {current!r}; escalation goes up, to "
            f"{', '.join(settings.levels[idx + 1 :]) or 'nothing (top level)'}"
        )
    seq = tx.next_change()
    version = h.version + 1
    listed_at = iso(h.listed_at) if h.listed_at else iso(t)
    tx.execute(
        "UPDATE hazards SET supervision = 'listed', listed_at = ?, version = ?, updated_at = ?, "
        "change_seq = ? WHERE pk = ? AND version = ?",
        (listed_at, version, iso(t), seq, pk, h.version),
    )
    tx.execute("DELETE FROM supervision_levels WHERE hazard_pk = ?", (pk,))
    tx.execute(
        "INSERT INTO supervision_levels (hazard_pk, level, since) VALUES (?, ?, ?)",
        (pk, to_level, iso(t)),
    )
    ledger._event(
        tx,
        pk,
        version,
        t,
        actor,
        role,
        "escalate",
        h.state,
        h.state,
        comment or f"listed supervision (挂牌督办) at {to_level} level",
        {"level": to_level, "from_level": current, **(details or {})},
    )
    return {"id": h.id, "level": to_level, "from_level": current, "version": version}


def escalate(
    ledger: Ledger,
    hazard_id: str | int,
    *,
    level: str | None = None,
    settings: SupervisionSettings | None = None,
    **step: Unpack[lc.Step],
) -> dict[str, Any]:
    """The ``escalate`` transition: list the hazard at ``level`` (default: the next one up).

    Supervisors (and admins) may escalate. The state does not change; the version does.
    ``step`` (:class:`~trafficunit.ledger.lifecycle.Step`) says who escalates and how:
    ``actor``, ``role``, ``comment``, ``expected_version``, ``now``.
    """
    given = lc.checked_step(step)
    actor, role, comment = given["actor"], given["role"], given["comment"]
    expected_version, now = given["expected_version"], given["now"]
    settings = settings or SupervisionSettings()
    if role != "system":
        lc.require(role, "escalate")
    ensure_tables(ledger)
    pk = parse_hazard_id(hazard_id)
    t = _now(now)
    with ledger.db.transaction(write=True) as tx:
        h = ledger._get(tx, pk)
        if expected_version is not None and h.version != int(expected_version):
            from .errors import StaleVersion

            raise StaleVersion(
                f"hazard {h.id} is at version {h.version}, not {expected_version}",
                current_version=h.version,
            )
        out = _escalate_tx(
            ledger, tx, pk, level, settings, actor=actor, role=role, comment=comment, t=t
        )
        ledger._sync(tx)
    return out


def escalate_overdue(
    ledger: Ledger, *, settings: SupervisionSettings | None = None, now: datetime | None = None
) -> list[dict[str, Any]]:
    """List overdue hazards at level 1 and move those overdue k·N days up to level k+1.

    Returns the escalations made (``id``, ``level``, ``from_level``), each also an ``escalate``
    event by ``system`` in the hazard's history.
    """
    settings = settings or SupervisionSettings()
    ensure_tables(ledger)
    t = _now(now)
    n_days = settings.escalate_after_days
    out = []
    with ledger.db.transaction(write=True) as tx:
        rows = tx.all(
            "SELECT h.pk, h.deadline, h.supervision, s.level FROM hazards h "
            "LEFT JOIN supervision_levels s ON s.hazard_pk = h.pk "
            f"WHERE {lc.overdue_sql('h.')} ORDER BY h.pk",
            (iso(t),),
        )
        for r in rows:
            deadline = _dt(r["deadline"])
            assert deadline is not None
            overdue_days = (t - deadline) / timedelta(days=1)
            want = min(int(overdue_days // n_days), len(settings.levels) - 1)
            listed = r["supervision"] == "listed"
            cur = (settings.levels.index(r["level"]) if r["level"] else 0) if listed else -1
            if want <= cur:
                continue
            target = settings.levels[want]
            out.append(
                _escalate_tx(
                    ledger,
                    tx,
                    int(r["pk"]),
                    target,
                    settings,
                    actor="system",
                    role="system",
                    comment=(
                        f"overdue {overdue_days:.0f} days since {_json_time(deadline)}: listed "
                        f"supervision (挂牌督办) at {target} level"
                    ),
                    t=t,
                    details={
                        "deadline": _json_time(deadline),
                        "overdue_days": round(overdue_days, 1),
                    },
                )
            )
        ledger._sync(tx)
    return out
