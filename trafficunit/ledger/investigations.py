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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from . import lifecycle as lc
from ._tables import ensure
from .errors import ConflictError, IllegalTransition, NotFoundError, PermissionDenied
from .errors import ValidationError as LedgerValidationError
from .store import Ledger, _now, iso, parse_hazard_id

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

INVESTIGATION_STATES = ("open", "investigated", "closed")
#: The four checks of the fatal-accident review (回头看).
REVIEW_CHECKS = ("investigation", "rectification", "deep_investigation", "accountability")

_DDL = [
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
        CHECK (state IN ('open', 'investigated', 'closed')),
        CHECK (outcome IS NULL OR outcome IN ('found', 'none'))
    )""",
    "CREATE INDEX IF NOT EXISTS investigations_state ON investigations (state)",
    "CREATE INDEX IF NOT EXISTS investigations_unit ON investigations (unit_id)",
    """CREATE TABLE IF NOT EXISTS investigation_events (
        pk {PK},
        investigation_pk BIGINT NOT NULL REFERENCES investigations (pk),
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        role TEXT NOT NULL,
        action TEXT NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        comment TEXT,
        details TEXT
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


def _require(role: str, action: str) -> None:
    need = _NEEDS[action]
    if role == "system":
        return
    if _RANK.get(role, -1) < _RANK[need]:
        raise PermissionDenied(
            f"role {role!r} may not {action.replace('_', ' ')} an investigation; that needs a "
            f"token of role {need} or above"
        )


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
    t = _stamp(now)
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
                    "lon, lat, state, version, opened_at) VALUES (?, ?, ?, ?, ?, ?, 'open', 1, ?) "
                    "RETURNING pk",
                    (
                        a,
                        None if pd.isna(u) else str(u),
                        str(sev[keep].iloc[i]),
                        None if pd.isna(tm) else iso(tm.to_pydatetime()),
                        None if pts is None else float(pts.iloc[i].x),
                        None if pts is None else float(pts.iloc[i].y),
                        t,
                    ),
                )
            )
            _event(tx, pk, t, "system", "system", "open", None, "open", None, None)
            opened.append(a)
    return opened


def _stamp(now: datetime | None) -> str:
    return _now(now).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event(
    tx: Any,
    pk: int,
    at: str,
    actor: str,
    role: str,
    action: str,
    from_state: str | None,
    to_state: str,
    comment: str | None,
    details: dict[str, Any] | None,
) -> None:
    tx.execute(
        "INSERT INTO investigation_events (investigation_pk, at, actor, role, action, "
        "from_state, to_state, comment, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            pk,
            at,
            actor,
            role,
            action,
            from_state,
            to_state,
            comment,
            json.dumps(details, ensure_ascii=False) if details else None,
        ),
    )


def _row(tx: Any, accident_id: str) -> dict[str, Any]:
    row = tx.one("SELECT * FROM investigations WHERE accident_id = ?", (str(accident_id),))
    if row is None:
        raise NotFoundError(f"no investigation of accident {accident_id!r}")
    return row


def _check_version(row: dict[str, Any], expected: int | None) -> None:
    if expected is not None and int(row["version"]) != int(expected):
        from .errors import StaleVersion

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


def investigate(
    ledger: Ledger,
    accident_id: str,
    *,
    hazards: Sequence[str | int] = (),
    actor: str,
    role: str,
    comment: str | None = None,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Record the on-site investigation: ``open → investigated``, found (hazards linked) or none.

    Parameters
    ----------
    hazards
        Hazard ids (``"H12"``) found; empty for "none found".
    """
    _require(role, "investigate")
    ensure_tables(ledger)
    t = _stamp(now)
    with ledger.db.transaction(write=True) as tx:
        row = _row(tx, accident_id)
        _check_version(row, expected_version)
        if row["state"] != "open":
            raise IllegalTransition(
                f"the investigation of accident {accident_id} is {row['state']!r}, not 'open'; "
                "link further hazards with POST .../hazards"
            )
        pks = _hazard_pks(tx, hazards)
        outcome = "found" if pks else "none"
        _link(tx, str(accident_id), pks, t, actor)
        n = tx.execute(
            "UPDATE investigations SET state = 'investigated', outcome = ?, version = version + 1,"
            " investigated_at = ?, investigated_by = ?, comment = COALESCE(?, comment) "
            "WHERE pk = ? AND version = ?",
            (outcome, t, actor, comment, row["pk"], row["version"]),
        )
        if n != 1:  # pragma: no cover - the write lock makes this impossible
            raise ConflictError("the investigation changed meanwhile; retry")
        _event(
            tx,
            int(row["pk"]),
            t,
            actor,
            role,
            "investigate",
            "open",
            "investigated",
            comment,
            {"outcome": outcome, "hazards": [f"H{p}" for p in pks]},
        )
    return get_investigation(ledger, accident_id)


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
    _require(role, "link")
    ensure_tables(ledger)
    t = _stamp(now)
    with ledger.db.transaction(write=True) as tx:
        row = _row(tx, accident_id)
        if row["state"] != "investigated":
            raise IllegalTransition(
                f"the investigation of accident {accident_id} is {row['state']!r}; hazards are "
                "linked when investigating (open) or while 'investigated'"
            )
        pks = _hazard_pks(tx, [hazard_id])
        if _link(tx, str(accident_id), pks, t, actor):
            tx.execute(
                "UPDATE investigations SET outcome = 'found', version = version + 1 WHERE pk = ?",
                (row["pk"],),
            )
            _event(
                tx,
                int(row["pk"]),
                t,
                actor,
                role,
                "link",
                "investigated",
                "investigated",
                None,
                {"hazards": [f"H{p}" for p in pks]},
            )
    return get_investigation(ledger, accident_id)


def close_investigation(
    ledger: Ledger,
    accident_id: str,
    *,
    actor: str,
    role: str,
    comment: str | None = None,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """``investigated → closed`` (a supervisor)."""
    _require(role, "close")
    ensure_tables(ledger)
    t = _stamp(now)
    with ledger.db.transaction(write=True) as tx:
        row = _row(tx, accident_id)
        _check_version(row, expected_version)
        if row["state"] != "investigated":
            raise IllegalTransition(
                f"the investigation of accident {accident_id} is {row['state']!r}; only an "
                "investigated one can be closed"
            )
        tx.execute(
            "UPDATE investigations SET state = 'closed', version = version + 1, closed_at = ?, "
            "closed_by = ? WHERE pk = ?",
            (t, actor, row["pk"]),
        )
        _event(tx, int(row["pk"]), t, actor, role, "close", "investigated", "closed", comment, None)
    return get_investigation(ledger, accident_id)


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
        row = _row(tx, accident_id)
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
        links = _links_of(tx, [r["accident_id"] for r in rows])
    return total, [_public(r, links.get(r["accident_id"], [])) for r in rows]


def _links_of(tx: Any, accident_ids: Sequence[str]) -> dict[str, list[str]]:
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


# --------------------------------------------------------------------------------------------
# the fatal-accident review (回头看)


def reviews(ledger: Ledger, accidents: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """Every K accident with its four checks, prefilled and (when done) confirmed.

    Parameters
    ----------
    accidents
        Joined accidents (``event_id``, ``severity``, ``time``, ``unit_id``); fatal ones not
        yet in the ledger's investigations are listed too (with the investigation check False).
    """
    ensure_tables(ledger)
    with ledger.db.transaction() as tx:
        inv = {
            r["accident_id"]: r for r in tx.all("SELECT * FROM investigations WHERE severity = 'K'")
        }
        confirmed = {r["accident_id"]: r for r in tx.all("SELECT * FROM fatal_reviews")}
        links = _links_of(tx, list(inv))
        states = {
            f"H{r['pk']}": r["state"]
            for r in tx.all(
                "SELECT h.pk, h.state FROM hazards h JOIN accident_hazards l "
                "ON l.hazard_pk = h.pk JOIN investigations i ON i.accident_id = l.accident_id "
                "WHERE i.severity = 'K'"
            )
        }
    fatal: dict[str, dict[str, Any]] = {}
    if accidents is not None and len(accidents) and "severity" in accidents.columns:
        k = accidents[accidents["severity"].astype("string").str.upper() == "K"]
        for a, unit, tm in zip(
            k["event_id"].astype(str),
            k["unit_id"] if "unit_id" in k.columns else [None] * len(k),
            k["time"] if "time" in k.columns else [None] * len(k),
            strict=True,
        ):
            fatal[a] = {
                "unit_id": None if unit is None or pd.isna(unit) else str(unit),
                "accident_time": None
                if tm is None or pd.isna(tm)
                else pd.Timestamp(tm).isoformat(),
            }
    for a, row in inv.items():
        fatal.setdefault(a, {"unit_id": row["unit_id"], "accident_time": row["accident_time"]})
    out = []
    for a in sorted(fatal):
        r: dict[str, Any] | None = inv.get(a)
        hz = links.get(a, [])
        done = [h for h in hz if states.get(h) in lc.DONE_STATES]
        investigated = r is not None and r["state"] in ("investigated", "closed")
        if not hz:
            rect, rect_basis = None, "no hazard linked: nothing to rectify, or not investigated"
        else:
            rect = len(done) == len(hz)
            rect_basis = f"{len(done)} of {len(hz)} linked hazards accepted or closed"
        prefill: dict[str, dict[str, Any]] = {
            "investigation": {
                "prefill": investigated,
                "basis": "no investigation" if r is None else f"investigation {r['state']}",
            },
            "rectification": {"prefill": rect, "basis": rect_basis},
            "deep_investigation": {"prefill": None, "basis": "not held by the ledger: confirm"},
            "accountability": {"prefill": None, "basis": "not held by the ledger: confirm"},
        }
        c = confirmed.get(a)
        checks = json.loads(c["checks"]) if c else {}
        for name in REVIEW_CHECKS:
            prefill[name]["confirmed"] = checks.get(name)
        out.append(
            {
                "accident_id": a,
                **fatal[a],
                "hazards": hz,
                "checks": prefill,
                "confirmed": c is not None,
                "confirmed_by": c["confirmed_by"] if c else None,
                "confirmed_at": c["confirmed_at"] if c else None,
                "comment": c["comment"] if c else None,
                "complete": c is not None and all(checks.get(n) is True for n in REVIEW_CHECKS),
            }
        )
    return out


def confirm_review(
    ledger: Ledger,
    accident_id: str,
    checks: dict[str, bool],
    *,
    actor: str,
    role: str,
    comment: str | None = None,
    accidents: pd.DataFrame | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A supervisor confirms (or corrects) the four checks of a fatal accident's review.

    ``checks`` must give all four (:data:`REVIEW_CHECKS`) as true/false; a later confirmation
    replaces an earlier one.
    """
    _require(role, "confirm_review")
    ensure_tables(ledger)
    missing = [n for n in REVIEW_CHECKS if not isinstance(checks.get(n), bool)]
    extra = [n for n in checks if n not in REVIEW_CHECKS]
    if missing or extra:
        raise LedgerValidationError(
            f"a review confirms the four checks {', '.join(REVIEW_CHECKS)} as true or false"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {extra}" if extra else "")
        )
    known = {r["accident_id"] for r in reviews(ledger, accidents)}
    if str(accident_id) not in known:
        raise NotFoundError(f"no fatal accident {accident_id!r} to review")
    t = _stamp(now)
    with ledger.db.transaction(write=True) as tx:
        tx.execute("DELETE FROM fatal_reviews WHERE accident_id = ?", (str(accident_id),))
        tx.execute(
            "INSERT INTO fatal_reviews (accident_id, checks, comment, confirmed_by, confirmed_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                str(accident_id),
                json.dumps({n: checks[n] for n in REVIEW_CHECKS}),
                comment,
                actor,
                t,
            ),
        )
    return next(r for r in reviews(ledger, accidents) if r["accident_id"] == str(accident_id))
