"""Road chiefs (路长制), grids and the routing of new reports to the responsible body.

"The grid fixes the boundary, the road chief carries the responsibility" (docs/domain.md,
"The work"). A **road chief** is appointed to units by road ``name``, by ``ref``, by explicit
``unit_ids`` or by a ``grid`` (a zone code of any tree), for a validity period
(``valid_from``, ``valid_to`` exclusive, open-ended when missing).

The chief of a unit at time ``t``: among appointments valid at ``t``, the most specific scope
wins — ``unit_ids`` before ``ref`` before ``road_name`` before ``grid`` — and among equals the
latest ``valid_from`` (then the latest appointment).

**Routing rules** (data, ``routing_rules``) name the responsible body of a new report: each rule
may require a zone (``tree`` + ``zone`` code at any level), a ``road_class`` of the unit, a
``category`` (an item code or its class, e.g. ``facility``) and a ``grade``; empty fields match
anything. The first matching rule by ``priority`` (lowest first) gives ``responsible``; the
chief of the report's first unit becomes its ``road_chief``. :func:`router` makes the
:attr:`Ledger.report_hooks <trafficunit.ledger.Ledger.report_hooks>` hook that does it as the
report is stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from . import lifecycle as lc
from ._db import Tx
from ._tables import ensure
from .errors import NotFoundError
from .errors import ValidationError as LedgerValidationError
from .store import Ledger, _now, _text, iso, parse_time

__all__ = [
    "SCOPES",
    "appoint",
    "chiefs_for_units",
    "end_appointment",
    "ensure_tables",
    "list_chiefs",
    "list_rules",
    "route_unit",
    "router",
    "set_rules",
]

#: Appointment scopes, most specific first.
SCOPES = ("unit_ids", "ref", "road_name", "grid")

_DDL = [
    """CREATE TABLE IF NOT EXISTS road_chiefs (
        pk {PK},
        name TEXT NOT NULL,
        body TEXT,
        contact TEXT,
        scope TEXT NOT NULL,
        targets TEXT NOT NULL,
        tree TEXT,
        valid_from TEXT NOT NULL,
        valid_to TEXT,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        CHECK (scope IN ('unit_ids', 'ref', 'road_name', 'grid'))
    )""",
    """CREATE TABLE IF NOT EXISTS routing_rules (
        pk {PK},
        priority INTEGER NOT NULL,
        tree TEXT,
        zone TEXT,
        road_class TEXT,
        category TEXT,
        grade TEXT,
        responsible TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL
    )""",
]
_RULE_FIELDS = ("priority", "tree", "zone", "road_class", "category", "grade", "responsible")


def ensure_tables(ledger: Ledger) -> None:
    """Create this module's tables if needed."""
    ensure(ledger.db, "roadchiefs", _DDL)


# fmt: off
#: Columns of a road chief's row shown as they are stored (``targets`` read from its JSON).
_SHOWN = (
    "name", "body", "contact", "scope", "targets", "tree", "valid_from", "valid_to", "created_at",
    "created_by",
)
# fmt: on


def _chief(row: dict[str, Any]) -> dict[str, Any]:
    out = {"id": f"RC{row['pk']}", **{k: row[k] for k in _SHOWN}}
    out["targets"] = json.loads(out["targets"])
    return out


def appoint(
    ledger: Ledger,
    *,
    name: str,
    scope: str,
    targets: Sequence[str],
    valid_from: Any = None,
    valid_to: Any = None,
    body: str | None = None,
    contact: str | None = None,
    tree: str | None = None,
    actor: str,
    role: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Appoint a road chief; the appointment (``id`` ``"RC<n>"``).

    Parameters
    ----------
    scope, targets
        ``unit_ids`` (unit ids), ``ref`` (road refs), ``road_name`` (road names, exact) or
        ``grid`` (zone codes; ``tree`` names their tree, default ``grid``).
    valid_from, valid_to
        The period (ISO times; ``valid_to`` exclusive; default from now, open-ended).
    """
    if role != "system":
        lc.require(role, "assign")
    ensure_tables(ledger)
    if scope not in SCOPES:
        raise LedgerValidationError(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
    name = _text(name, "name", required=True, limit=200) or ""
    tg = [str(x).strip() for x in targets if str(x).strip()]
    if not tg:
        raise LedgerValidationError(f"an appointment by {scope} needs at least one target")
    if len(tg) > 10_000:
        raise LedgerValidationError("at most 10000 targets per appointment")
    t = _now(now)
    start = t if valid_from is None else parse_time(valid_from, "valid_from")
    end = None if valid_to is None else parse_time(valid_to, "valid_to")
    if end is not None and end <= start:
        raise LedgerValidationError("valid_to must be after valid_from")
    if scope == "grid":
        tree = tree or "grid"
    with ledger.db.transaction(write=True) as tx:
        pk = int(
            tx.scalar(
                "INSERT INTO road_chiefs (name, body, contact, scope, targets, tree, valid_from, "
                "valid_to, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "RETURNING pk",
                (
                    name,
                    _text(body, "body", limit=200),
                    _text(contact, "contact", limit=200),
                    scope,
                    json.dumps(tg, ensure_ascii=False),
                    tree,
                    iso(start),
                    iso(end),
                    iso(t),
                    actor,
                ),
            )
        )
        row = tx.one("SELECT * FROM road_chiefs WHERE pk = ?", (pk,))
    assert row is not None
    return _chief(row)


def end_appointment(
    ledger: Ledger, chief_id: str, *, valid_to: Any = None, actor: str, role: str
) -> dict[str, Any]:
    """End an appointment at ``valid_to`` (default now); the history stays."""
    lc.require(role, "assign")
    ensure_tables(ledger)
    pk = _pk(chief_id)
    end = _now(None) if valid_to is None else parse_time(valid_to, "valid_to")
    with ledger.db.transaction(write=True) as tx:
        row = tx.one("SELECT * FROM road_chiefs WHERE pk = ?", (pk,))
        if row is None:
            raise NotFoundError(f"no road chief appointment {chief_id!r}")
        tx.execute("UPDATE road_chiefs SET valid_to = ? WHERE pk = ?", (iso(end), pk))
        row = tx.one("SELECT * FROM road_chiefs WHERE pk = ?", (pk,))
    assert row is not None
    return _chief(row)


def _pk(chief_id: str) -> int:
    s = str(chief_id).strip().upper().removeprefix("RC")
    if not (s.isascii() and s.isdigit()) or len(s) > 18:
        raise NotFoundError(f"no road chief appointment {chief_id!r} (ids look like RC3)")
    return int(s)


def list_chiefs(ledger: Ledger, *, at: datetime | None = None) -> list[dict[str, Any]]:
    """Appointments (valid at ``at`` when given), oldest first."""
    ensure_tables(ledger)
    with ledger.db.transaction() as tx:
        if at is None:
            rows = tx.all("SELECT * FROM road_chiefs ORDER BY pk")
        else:
            rows = tx.all(
                "SELECT * FROM road_chiefs WHERE valid_from <= ? AND (valid_to IS NULL OR "
                "valid_to > ?) ORDER BY pk",
                (iso(at), iso(at)),
            )
    return [_chief(r) for r in rows]


def chiefs_for_units(
    chiefs: Sequence[dict[str, Any]],
    units: pd.DataFrame,
    *,
    unit_zones: pd.DataFrame | None = None,
    at: datetime | None = None,
) -> pd.DataFrame:
    """The chief of every unit at ``at`` (the precedence of the module docs).

    Parameters
    ----------
    chiefs
        :func:`list_chiefs`.
    units
        Indexed by ``unit_id``, with ``name`` (``;``-joined names count each) and ``ref``.
    unit_zones
        :func:`trafficunit.zones.assign_units` of the units (for grid appointments).

    Returns
    -------
    pandas.DataFrame
        Aligned to ``units``: ``road_chief`` (name), ``road_chief_id``, ``road_chief_body``.
    """
    t = iso(_now(at))
    n = len(units)
    valid = [
        k
        for k, c in enumerate(chiefs)
        if c["valid_from"] <= t and (c["valid_to"] is None or c["valid_to"] > t)
    ]
    # precedence: scope rank, then the latest valid_from, then the latest appointment
    latest = sorted(
        valid, key=lambda k: (chiefs[k]["valid_from"], int(str(chiefs[k]["id"])[2:])), reverse=True
    )
    order = sorted(latest, key=lambda k: SCOPES.index(chiefs[k]["scope"]))  # stable
    prio = np.full(len(chiefs) + 1, len(chiefs) + 1, dtype=np.int64)
    prio[order] = np.arange(len(order))
    pos, k = _candidates(chiefs, valid, units, unit_zones)
    idx = np.full(n, -1, dtype=np.int64)
    if len(pos):
        o = np.lexsort((prio[k], pos))  # per unit row: the best appointment first
        first = np.r_[True, pos[o][1:] != pos[o][:-1]]
        idx[pos[o][first]] = k[o][first]
    out = pd.DataFrame(index=units.index)
    for col, field in (
        ("road_chief", "name"),
        ("road_chief_id", "id"),
        ("road_chief_body", "body"),
    ):
        values = np.array([c[field] for c in chiefs] + [None], dtype=object)  # last: no chief
        out[col] = pd.array(values[idx], dtype="string")  # idx -1 picks the last
    return out


def _candidates(
    chiefs: Sequence[dict[str, Any]],
    valid: Sequence[int],
    units: pd.DataFrame,
    unit_zones: pd.DataFrame | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Every (unit row position, appointment position) whose scope names the unit: one join
    per scope of the appointments' targets with the units' ids, names, refs or zone codes."""
    n = len(units)
    keyed: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # scope -> (row positions, keys)

    def split(col: str) -> tuple[np.ndarray, np.ndarray]:
        if col not in units.columns or not n:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)
        parts = pd.Series(units[col].to_numpy(), dtype="string").str.split(";").explode()
        parts = parts.dropna().str.strip()
        return parts.index.to_numpy(dtype=np.int64), parts.to_numpy(dtype=object)

    used = {chiefs[k]["scope"] for k in valid}
    if "unit_ids" in used:
        keyed["unit_ids"] = (np.arange(n), units.index.astype(str).to_numpy(dtype=object))
    for scope, col in (("road_name", "name"), ("ref", "ref")):
        if scope in used:
            keyed[scope] = split(col)
    gp, gv = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=object)]
    trees = {str(chiefs[k]["tree"]) for k in valid if chiefs[k]["scope"] == "grid"}
    if unit_zones is not None and n:
        uz = unit_zones.reindex(units.index)
        for tree in sorted(trees):  # key "<tree>|<code>", any level of the tree
            for col in [c for c in uz.columns if str(c).startswith(f"zone_{tree}_")]:
                v = uz[col].astype("string")
                ok = v.notna().to_numpy()
                gp.append(np.flatnonzero(ok))
                gv.append((tree + "|" + v[ok]).to_numpy(dtype=object))
    keyed["grid"] = (np.concatenate(gp), np.concatenate(gv))
    pos_out, k_out = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for scope, (pos, keys) in keyed.items():
        tk = [
            ((f"{chiefs[k]['tree']}|{t}" if scope == "grid" else t), k)
            for k in valid
            if chiefs[k]["scope"] == scope
            for t in chiefs[k]["targets"]
        ]
        if not tk or not len(pos):
            continue
        table = pd.DataFrame(tk, columns=["key", "k"])
        hit = pd.DataFrame({"pos": pos, "key": keys}).merge(table, on="key")
        pos_out.append(hit["pos"].to_numpy(dtype=np.int64))
        k_out.append(hit["k"].to_numpy(dtype=np.int64))
    return np.concatenate(pos_out), np.concatenate(k_out)


def set_rules(
    ledger: Ledger, rules: Sequence[dict[str, Any]], *, actor: str, role: str
) -> list[dict[str, Any]]:
    """Replace the routing rules (a list of dicts with :data:`_RULE_FIELDS`)."""
    lc.require(role, "assign")
    ensure_tables(ledger)
    clean = []
    for i, r in enumerate(rules):
        if not isinstance(r, dict):
            raise LedgerValidationError(f"rules[{i}] is not an object")
        extra = set(r) - set(_RULE_FIELDS)
        if extra:
            raise LedgerValidationError(f"rules[{i}]: unknown fields {sorted(extra)}")
        resp = _text(r.get("responsible"), f"rules[{i}].responsible", required=True, limit=200)
        if (r.get("zone") is None) != (r.get("tree") is None):
            raise LedgerValidationError(f"rules[{i}]: give tree and zone together")
        grade = lc.normalise_grade(r.get("grade"))
        try:
            prio = int(r.get("priority", (i + 1) * 10))
        except (TypeError, ValueError) as exc:
            raise LedgerValidationError(f"rules[{i}].priority is not an integer") from exc
        clean.append(
            (
                prio,
                r.get("tree"),
                r.get("zone"),
                r.get("road_class"),
                ledger.catalogue.resolve(r["category"])
                if r.get("category") and "." in str(r["category"])
                else r.get("category"),
                grade,
                resp,
            )
        )
    t = iso(_now(None))
    with ledger.db.transaction(write=True) as tx:
        tx.execute("DELETE FROM routing_rules")
        for c in clean:
            tx.execute(
                "INSERT INTO routing_rules (priority, tree, zone, road_class, category, grade, "
                "responsible, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*c, t, actor),
            )
    return list_rules(ledger)


def list_rules(ledger: Ledger, tx: Tx | None = None) -> list[dict[str, Any]]:
    """The routing rules in the order they are tried."""
    ensure_tables(ledger)
    sql = "SELECT * FROM routing_rules ORDER BY priority, pk"
    if tx is not None:
        rows = tx.all(sql)
    else:
        with ledger.db.transaction() as t:
            rows = t.all(sql)
    return [{k: r[k] for k in _RULE_FIELDS} for r in rows]


def route_unit(
    rules: Sequence[dict[str, Any]],
    *,
    category: str,
    grade: str | None,
    road_class: str | None,
    zones: dict[str, str],
) -> dict[str, Any] | None:
    """The first rule matching a report (``zones``: ``zone_<tree>_<level> -> code``)."""
    for r in rules:
        if r["road_class"] and r["road_class"] != road_class:
            continue
        if r["grade"] and r["grade"] != grade:
            continue
        cat = r["category"]
        if cat and cat != category and category.split(".", 1)[0] != cat:
            continue
        if r["zone"]:
            codes = {v for k, v in zones.items() if k.startswith(f"zone_{r['tree']}_")}
            if r["zone"] not in codes:
                continue
        return r
    return None


def router(
    ledger: Ledger,
    context: Callable[[], tuple[pd.DataFrame | None, pd.DataFrame | None]],
) -> Callable[[Tx, int, str, str | None, list[str]], dict[str, Any] | None]:
    """A :attr:`Ledger.report_hooks` hook routing each new report.

    Parameters
    ----------
    context
        Returns ``(units, unit_zones)`` as of now: the units indexed by ``unit_id`` (``name``,
        ``ref``, ``road_class``) and their zone codes (:func:`trafficunit.zones.assign_units`).
    """
    ensure_tables(ledger)

    def hook(
        tx: Tx, pk: int, category: str, grade: str | None, unit_ids: list[str]
    ) -> dict[str, Any] | None:
        units, unit_zones = context()
        out: dict[str, Any] = {}
        uid = unit_ids[0] if unit_ids else None
        zones: dict[str, str] = {}
        road_class = None
        if uid is not None and unit_zones is not None and uid in unit_zones.index:
            row = unit_zones.loc[uid]
            zones = {str(k): str(v) for k, v in row.items() if v is not None and not pd.isna(v)}
        if uid is not None and units is not None and uid in units.index:
            rcl: Any = units.at[uid, "road_class"] if "road_class" in units.columns else None
            if rcl is not None and not pd.isna(rcl):
                road_class = str(rcl)
            now = _now(None)
            chiefs = [
                _chief(r)
                for r in tx.all(
                    "SELECT * FROM road_chiefs WHERE valid_from <= ? AND (valid_to IS NULL OR "
                    "valid_to > ?) ORDER BY pk",
                    (iso(now), iso(now)),
                )
            ]
            if chiefs:
                one = units.loc[[uid]]
                ch = chiefs_for_units(
                    chiefs,
                    one,
                    unit_zones=None if unit_zones is None else unit_zones.loc[[uid]],
                    at=now,
                )
                if not pd.isna(ch["road_chief"].iloc[0]):
                    out["road_chief"] = str(ch["road_chief"].iloc[0])
                    out["road_chief_id"] = str(ch["road_chief_id"].iloc[0])
                    body = ch["road_chief_body"].iloc[0]
                    if not pd.isna(body):
                        out["chief_body"] = str(body)
        rule = route_unit(
            list_rules(ledger, tx),
            category=category,
            grade=grade,
            road_class=road_class,
            zones=zones,
        )
        if rule is not None:
            out["responsible"] = rule["responsible"]
            out["rule_priority"] = rule["priority"]
        elif out.get("chief_body"):
            out["responsible"] = out["chief_body"]
        if not out:
            return None
        if uid is not None:
            out["unit_id"] = uid
        return out

    return hook
