"""Accident-driven hazard investigations and the fatal-accident review (回头看).

Every accident matching the rule (default: severity K, A or B, i.e. fatal and injury
accidents; docs/domain.md "The hazard loop") opens an **investigation** on its unit::

    open ──investigate (hazards found, linked)──▶ investigated [found] ──close──▶ closed
         └─investigate (none found)─────────────▶ investigated [none]  ──close──▶ closed

Engineers investigate and link hazards (``accident_hazards``: the accident↔hazard links, read
from both sides); supervisors close. Each change is kept in ``investigation_events``.

The **fatal-accident review** lists every K accident with four checks — investigation,
rectification, deep investigation, accountability — prefilled from the ledger (investigation:
the investigation is done; rectification: every linked hazard is accepted or closed, no value
when none was found; deep investigation and accountability: not held by the ledger, no
value) and confirmed by a supervisor.

The tables are created on first use (``CREATE TABLE IF NOT EXISTS``), beside the core schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Unpack

import numpy as np
import pandas as pd

from ._invtables import (
    CLOSED,
    INVESTIGATED,
    INVESTIGATION_STATES,
    OPEN,
    REVIEW_CHECKS,
    InvestigationRule,
    ensure_tables,
    event,
    links_of,
    require,
    row_of,
    stamp,
)
from ._values import SYSTEM, iso, parse_hazard_id
from .errors import ConflictError, IllegalTransition, NotFoundError, StaleVersion
from .errors import ValidationError as LedgerValidationError
from .lifecycle import Step, checked_step
from .reviews import confirm_review, reviews
from .store import Ledger

__all__ = [
    "INVESTIGATION_STATES",
    "REVIEW_CHECKS",
    "InvestigationRule",
    "close_investigation",
    "confirm_review",
    "ensure_tables",
    "get_investigation",
    "hazard_accidents",
    "investigation_frame",
    "investigate",
    "link_hazard",
    "links_frame",
    "list_investigations",
    "open_investigations",
    "reviews",
]


def open_investigations(
    ledger: Ledger,
    accidents: pd.DataFrame,
    *,
    rule: InvestigationRule | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Open an investigation for every matching accident that has none; the accident ids opened.

    Parameters
    ----------
    accidents
        Joined accidents: ``event_id``, ``severity``, ``time``, ``unit_id`` (may be missing),
        geometry (optional: its point is kept).
    """
    ensure_tables(ledger)
    rule = rule or InvestigationRule()
    if not len(accidents) or not {"event_id", "severity"} <= set(accidents.columns):
        return []
    sev = accidents["severity"].astype("string").str.upper()
    keep = np.array(sev.isin(sorted(rule.severities)).fillna(False).to_numpy(), dtype=bool)
    times = (
        pd.to_datetime(accidents["time"], utc=True, errors="coerce")
        if "time" in accidents.columns
        else pd.Series(pd.NaT, index=accidents.index, dtype="datetime64[ns, UTC]")
    )
    if rule.since is not None:
        keep &= (times >= pd.Timestamp(rule.since)).fillna(False).to_numpy()
    acc = accidents[keep]
    if not len(acc):
        return []
    ids = acc["event_id"].astype(str).to_numpy()
    with ledger.db.transaction() as tx:
        have = {r["accident_id"] for r in tx.all("SELECT accident_id FROM investigations")}
    new = [i for i, a in enumerate(ids) if a not in have]
    if not new:
        return []
    geo = getattr(acc, "geometry", None)
    pts = None
    if geo is not None and acc.geometry.crs is not None:
        pts = acc.geometry.to_crs(4326).representative_point()
    t = stamp(now)
    unit = (
        acc["unit_id"].astype("string")
        if "unit_id" in acc.columns
        else pd.Series(pd.NA, index=acc.index, dtype="string")
    )
    opened = []
    with ledger.db.transaction(write=True) as tx:
        for i in new:
            a = ids[i]
            if tx.one("SELECT pk FROM investigations WHERE accident_id = ?", (a,)) is not None:
                continue  # opened meanwhile by another process
            u = unit.iloc[i]
            tm = times.loc[acc.index[i]]
            pk = int(
                tx.scalar(
                    "INSERT INTO investigations (accident_id, unit_id, severity, accident_time, "
                    "lon, lat, state, version, opened_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?) "
                    "RETURNING pk",
                    (
                        a,
                        None if pd.isna(u) else str(u),
                        str(sev[keep].iloc[i]),
                        None if pd.isna(tm) else iso(tm.to_pydatetime()),
                        None if pts is None else float(pts.iloc[i].x),
                        None if pts is None else float(pts.iloc[i].y),
                        OPEN,
                        t,
                    ),
                )
            )
            event(tx, pk, t, SYSTEM, SYSTEM, "open", None, OPEN, None, None)
            opened.append(a)
    return opened


def _check_version(row: dict[str, Any], expected: int | None) -> None:
    if expected is not None and int(row["version"]) != int(expected):
        raise StaleVersion(
            f"the investigation of accident {row['accident_id']} is at version {row['version']},"
            f" not {expected}; read it again and retry",
            current_version=int(row["version"]),
        )


def _hazard_pks(tx: Any, hazards: Iterable[str | int]) -> list[int]:
    pks = []
    for h in hazards:
        pk = parse_hazard_id(h)
        if tx.one("SELECT pk FROM hazards WHERE pk = ?", (pk,)) is None:
            raise NotFoundError(f"no hazard H{pk}")
        pks.append(pk)
    return list(dict.fromkeys(pks))


def _link(tx: Any, accident_id: str, pks: Sequence[int], t: str, actor: str) -> list[int]:
    added = []
    for pk in pks:
        if tx.one(
            "SELECT 1 AS x FROM accident_hazards WHERE accident_id = ? AND hazard_pk = ?",
            (accident_id, pk),
        ):
            continue
        tx.execute(
            "INSERT INTO accident_hazards (accident_id, hazard_pk, linked_at, linked_by) "
            "VALUES (?, ?, ?, ?)",
            (accident_id, pk, t, actor),
        )
        added.append(pk)
    return added


#: The state each step starts from, and why another state refuses it.
_FROM = {
    "investigate": (OPEN, ", not 'open'; link further hazards with POST .../hazards"),
    "link": (
        INVESTIGATED,
        "; hazards are linked when investigating (open) or while 'investigated'",
    ),
    "close": (INVESTIGATED, "; only an investigated one can be closed"),
}


def _step(
    ledger: Ledger,
    accident_id: str,
    action: str,
    step: Step,
    apply: Callable[[Any, dict[str, Any], str], None],
) -> dict[str, Any]:
    """One step of an investigation: the ``step``'s role and expected version checked, the state
    of :data:`_FROM` required (else IllegalTransition), ``apply(tx, row, t)`` in one write."""
    from_state, refusal = _FROM[action]
    require(step["role"], action)
    ensure_tables(ledger)
    t = stamp(step.get("now"))
    with ledger.db.transaction(write=True) as tx:
        row = row_of(tx, accident_id)
        _check_version(row, step.get("expected_version"))
        if row["state"] != from_state:
            raise IllegalTransition(
                f"the investigation of accident {accident_id} is {row['state']!r}{refusal}"
            )
        apply(tx, row, t)
    return get_investigation(ledger, accident_id)


def investigate(
    ledger: Ledger,
    accident_id: str,
    *,
    hazards: Sequence[str | int] = (),
    **step: Unpack[Step],
) -> dict[str, Any]:
    """Record the on-site investigation: ``open → investigated``, found (hazards linked) or none.

    Parameters
    ----------
    hazards
        Hazard ids (``"H12"``) found; empty for "none found".
    **step
        Who investigates and how (:class:`~trafficunit.ledger.lifecycle.Step`): ``actor``,
        ``role``, ``comment``, ``expected_version``, ``now``.
    """
    given = checked_step(step)
    actor, role, comment = given["actor"], given["role"], given["comment"]

    def apply(tx: Any, row: dict[str, Any], t: str) -> None:
        pks = _hazard_pks(tx, hazards)
        outcome = "found" if pks else "none"
        _link(tx, str(accident_id), pks, t, actor)
        n = tx.execute(
            "UPDATE investigations SET state = ?, outcome = ?, version = version + 1, "
            "investigated_at = ?, investigated_by = ?, comment = COALESCE(?, comment) "
            "WHERE pk = ? AND version = ?",
            (INVESTIGATED, outcome, t, actor, comment, row["pk"], row["version"]),
        )
        if n != 1:  # pragma: no cover - the write lock makes this impossible
            raise ConflictError("the investigation changed meanwhile; retry")
        details = {"outcome": outcome, "hazards": [f"H{p}" for p in pks]}
        event(
            tx, int(row["pk"]), t, actor, role, "investigate", OPEN, INVESTIGATED, comment, details
        )

    return _step(ledger, accident_id, "investigate", given, apply)


def link_hazard(
    ledger: Ledger,
    accident_id: str,
    hazard_id: str | int,
    *,
    actor: str,
    role: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Link one more hazard to an investigated accident (its outcome becomes ``found``)."""

    def apply(tx: Any, row: dict[str, Any], t: str) -> None:
        pks = _hazard_pks(tx, [hazard_id])
        if _link(tx, str(accident_id), pks, t, actor):
            tx.execute(
                "UPDATE investigations SET outcome = 'found', version = version + 1 WHERE pk = ?",
                (row["pk"],),
            )
            details = {"hazards": [f"H{p}" for p in pks]}
            event(
                tx,
                int(row["pk"]),
                t,
                actor,
                role,
                "link",
                INVESTIGATED,
                INVESTIGATED,
                None,
                details,
            )

    return _step(ledger, accident_id, "link", {"actor": actor, "role": role, "now": now}, apply)


def close_investigation(
    ledger: Ledger,
    accident_id: str,
    **step: Unpack[Step],
) -> dict[str, Any]:
    """``investigated → closed`` (a supervisor); ``step`` as :func:`investigate` takes it."""
    given = checked_step(step)
    actor, role, comment = given["actor"], given["role"], given["comment"]

    def apply(tx: Any, row: dict[str, Any], t: str) -> None:
        tx.execute(
            "UPDATE investigations SET state = ?, version = version + 1, closed_at = ?, "
            "closed_by = ? WHERE pk = ?",
            (CLOSED, t, actor, row["pk"]),
        )
        event(tx, int(row["pk"]), t, actor, role, "close", INVESTIGATED, CLOSED, comment, None)

    return _step(ledger, accident_id, "close", given, apply)


def _public(row: dict[str, Any], hazards: list[str]) -> dict[str, Any]:
    return {
        "accident_id": row["accident_id"],
        "unit_id": row["unit_id"],
        "severity": row["severity"],
        "accident_time": row["accident_time"],
        "state": row["state"],
        "outcome": row["outcome"],
        "version": int(row["version"]),
        "opened_at": row["opened_at"],
        "investigated_at": row["investigated_at"],
        "investigated_by": row["investigated_by"],
        "closed_at": row["closed_at"],
        "closed_by": row["closed_by"],
        "comment": row["comment"],
        "hazards": hazards,
        "lon": row["lon"],
        "lat": row["lat"],
    }


def get_investigation(ledger: Ledger, accident_id: str) -> dict[str, Any]:
    """One investigation with its linked hazards and history."""
    ensure_tables(ledger)
    with ledger.db.transaction() as tx:
        row = row_of(tx, accident_id)
        hz = tx.all(
            "SELECT hazard_pk FROM accident_hazards WHERE accident_id = ? ORDER BY hazard_pk",
            (str(accident_id),),
        )
        ev = tx.all(
            "SELECT at, actor, role, action, from_state, to_state, comment, details FROM "
            "investigation_events WHERE investigation_pk = ? ORDER BY pk",
            (row["pk"],),
        )
    out = _public(row, [f"H{r['hazard_pk']}" for r in hz])
    out["history"] = [
        {**e, "details": json.loads(e["details"]) if e["details"] else None} for e in ev
    ]
    return out


def list_investigations(
    ledger: Ledger,
    *,
    states: Sequence[str] | None = None,
    unit_id: str | None = None,
    severities: Sequence[str] | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> tuple[int, list[dict[str, Any]]]:
    """Investigations matching the filters, oldest first: ``(count, page)``."""
    ensure_tables(ledger)
    where: list[str] = []
    params: list[Any] = []
    if states:
        bad = [s for s in states if s not in INVESTIGATION_STATES]
        if bad:
            raise LedgerValidationError(
                f"unknown investigation state {bad[0]!r}; use {', '.join(INVESTIGATION_STATES)}"
            )
        where.append(f"state IN ({', '.join('?' * len(states))})")
        params += list(states)
    if severities:
        where.append(f"severity IN ({', '.join('?' * len(severities))})")
        params += [s.upper() for s in severities]
    if unit_id:
        where.append("unit_id = ?")
        params.append(unit_id)
    cond = " AND ".join(where) or "1 = 1"
    with ledger.db.transaction() as tx:
        total = int(tx.scalar(f"SELECT COUNT(*) AS n FROM investigations WHERE {cond}", params))
        rows = tx.all(
            f"SELECT * FROM investigations WHERE {cond} ORDER BY pk LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )
        links = links_of(tx, [r["accident_id"] for r in rows])
    return total, [_public(r, links.get(r["accident_id"], [])) for r in rows]


def hazard_accidents(ledger: Ledger, hazard_id: str | int) -> list[dict[str, Any]]:
    """The accidents linked to a hazard (the hazard side of the links)."""
    ensure_tables(ledger)
    pk = parse_hazard_id(hazard_id)
    ledger.get(pk)  # NotFoundError for an unknown hazard
    with ledger.db.transaction() as tx:
        rows = tx.all(
            "SELECT l.accident_id, l.linked_at, l.linked_by, i.severity, i.state, i.outcome "
            "FROM accident_hazards l LEFT JOIN investigations i ON i.accident_id = l.accident_id "
            "WHERE l.hazard_pk = ? ORDER BY l.accident_id",
            (pk,),
        )
    return rows


def investigation_frame(ledger: Ledger) -> pd.DataFrame:
    """Every investigation (``accident_id``, ``state``, ``outcome``, ``severity``, ``unit_id``,
    ``hazards`` linked count), for KPIs."""
    ensure_tables(ledger)
    with ledger.db.transaction() as tx:
        rows = tx.all(
            "SELECT i.accident_id, i.state, i.outcome, i.severity, i.unit_id, i.accident_time, "
            "(SELECT COUNT(*) FROM accident_hazards l WHERE l.accident_id = i.accident_id) "
            "AS hazards FROM investigations i ORDER BY i.pk"
        )
    cols = ["accident_id", "state", "outcome", "severity", "unit_id", "accident_time", "hazards"]
    return pd.DataFrame(rows, columns=cols)


def links_frame(ledger: Ledger) -> pd.DataFrame:
    """Every accident↔hazard link: ``accident_id``, ``hazard_id``."""
    ensure_tables(ledger)
    with ledger.db.transaction() as tx:
        rows = tx.all("SELECT accident_id, hazard_pk FROM accident_hazards ORDER BY accident_id")
    return pd.DataFrame(
        {
            "accident_id": [r["accident_id"] for r in rows],
            "hazard_id": [f"H{r['hazard_pk']}" for r in rows],
        }
    )
