"""Accidents posted to the server and the units' level history, in the ledger's database.

Accidents are stored once per ``event_id`` (a repeated post is a duplicate, not a second
accident) with the unit they were joined to and a change sequence number, so every server
process sharing the database replays exactly the accidents it has not seen
(:func:`accidents_since`). The level history records each unit's level changes (from, to,
when, why); a change computed by several server processes at the same change sequence is
recorded once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import pandas as pd

from ._db import Database

__all__ = [
    "StoredBatch",
    "store_accidents",
    "accidents_since",
    "known_event_ids",
    "record_levels",
    "level_history",
    "hazard_seq",
]

_CHUNK = 500  # ids per IN (...) query


def _opt(value: Any, kind: Any) -> Any:
    """``kind(value)``, or None for a missing value."""
    return None if value is None or pd.isna(value) else kind(value)


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class StoredBatch:
    """What :func:`store_accidents` did: which rows were new, at which change sequence."""

    stored: np.ndarray  # bool per row
    change_seq: int


def known_event_ids(db: Database, event_ids: Sequence[str]) -> set[str]:
    """The ids among ``event_ids`` already stored."""
    found: set[str] = set()
    ids = list(dict.fromkeys(str(e) for e in event_ids))
    with db.transaction() as tx:
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = tx.all(f"SELECT event_id FROM accidents WHERE event_id IN ({marks})", chunk)
            found.update(str(r["event_id"]) for r in rows)
    return found


def store_accidents(db: Database, rows: pd.DataFrame, *, actor: str) -> StoredBatch:
    """Insert the accidents of ``rows`` whose ``event_id`` is not stored yet, in one
    transaction (durable when it returns).

    ``rows`` columns: ``event_id``, ``unit_id``, ``severity``, ``time`` (ISO text or None),
    ``t_ns``, ``hour``, ``lon``, ``lat``, ``distance_m``, ``properties`` (JSON text).
    """
    n = len(rows)
    stored = np.zeros(n, dtype=bool)
    if n == 0:
        return StoredBatch(stored, 0)
    ids = rows["event_id"].astype(str).to_numpy()
    with db.transaction(write=True) as tx:
        existing: set[str] = set()
        uniq = list(dict.fromkeys(ids.tolist()))
        for i in range(0, len(uniq), _CHUNK):
            chunk = uniq[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found = tx.all(f"SELECT event_id FROM accidents WHERE event_id IN ({marks})", chunk)
            existing.update(str(r["event_id"]) for r in found)
        first = ~pd.Series(ids).duplicated().to_numpy()
        stored = first & ~np.isin(ids, list(existing))
        if not stored.any():
            return StoredBatch(stored, 0)
        seq = tx.next_change()
        now = _now_iso()
        sub = rows.loc[stored]
        params = [
            (
                str(r["event_id"]),
                _opt(r["unit_id"], str),
                _opt(r["severity"], str),
                r["time"],
                _opt(r["t_ns"], int),
                _opt(r["hour"], int),
                float(r["lon"]),
                float(r["lat"]),
                _opt(r["distance_m"], float),
                r["properties"],
                now,
                actor,
                seq,
            )
            for r in cast(list[dict[str, Any]], sub.to_dict("records"))
        ]
        tx.executemany(
            "INSERT INTO accidents (event_id, unit_id, severity, time, t_ns, hour, lon, lat, "
            "distance_m, properties, received_at, actor, change_seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params,
        )
    return StoredBatch(stored, seq)


def accidents_since(db: Database, seq: int) -> pd.DataFrame:
    """Stored accidents with a change sequence above ``seq``, in the order they were stored."""
    with db.transaction() as tx:
        rows = tx.all(
            "SELECT event_id, unit_id, severity, time, t_ns, hour, lon, lat, distance_m, "
            "properties, received_at, change_seq FROM accidents WHERE change_seq > ? "
            "ORDER BY change_seq, pk",
            (int(seq),),
        )
    cols = [
        "event_id",
        "unit_id",
        "severity",
        "time",
        "t_ns",
        "hour",
        "lon",
        "lat",
        "distance_m",
        "properties",
        "received_at",
        "change_seq",
    ]
    return pd.DataFrame(rows, columns=cols)


def hazard_seq(db: Database) -> int:
    """The latest change sequence of any hazard (moves on every hazard write)."""
    with db.transaction() as tx:
        return int(tx.scalar("SELECT COALESCE(MAX(change_seq), 0) AS s FROM hazards") or 0)


def record_levels(db: Database, changes: Sequence[Any], seq: int, at: str | None = None) -> int:
    """Record level changes (objects with ``unit_id``, ``from_level``, ``to_level``,
    ``reason``) at change sequence ``seq``; how many rows were new."""
    if not changes:
        return 0
    at = at or _now_iso()
    with db.transaction(write=True) as tx:
        n = 0
        for c in changes:
            n += tx.execute(
                "INSERT INTO level_history (unit_id, from_level, to_level, at, reason, "
                "change_seq) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (unit_id, change_seq) "
                "DO NOTHING",
                (c.unit_id, c.from_level, c.to_level, at, c.reason, int(seq)),
            )
    return n


def level_history(
    db: Database, unit_id: str | None = None, *, limit: int = 1000
) -> list[dict[str, Any]]:
    """Level changes, newest first (of one unit when ``unit_id`` is given)."""
    where = "WHERE unit_id = ?" if unit_id is not None else ""
    params: tuple[Any, ...] = (unit_id,) if unit_id is not None else ()
    with db.transaction() as tx:
        rows = tx.all(
            "SELECT unit_id, from_level, to_level, at, reason, change_seq FROM level_history "
            f"{where} ORDER BY pk DESC LIMIT {int(limit)}",
            params,
        )
    return [
        {
            "unit_id": r["unit_id"],
            "from": r["from_level"],
            "to": r["to_level"],
            "at": r["at"],
            "reason": r["reason"],
            "change_seq": int(r["change_seq"]),
        }
        for r in rows
    ]


def properties_json(record: dict[str, Any]) -> str:
    """A JSON text of an accident's properties (NaN/NA as null)."""

    def clean(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, float) and not np.isfinite(v):
            return None
        try:
            if pd.isna(v):
                return None
        except (TypeError, ValueError):
            pass
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, pd.Timestamp):
            return v.isoformat()
        return v

    return json.dumps({k: clean(v) for k, v in record.items()}, ensure_ascii=False, default=str)
