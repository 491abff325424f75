"""Idempotent DDL for the ledger's operational tables (investigations, supervision levels,
road chiefs, routing rules), kept apart from the versioned core schema (:mod:`._db`).

Each module lists its ``CREATE TABLE IF NOT EXISTS`` statements with ``{PK}``, ``{REAL}``
placeholders; :func:`ensure` runs them once per open database, in one write transaction.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

from ._db import Database

_done: weakref.WeakKeyDictionary[Database, set[str]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def ensure(db: Database, key: str, ddl: Sequence[str]) -> None:
    """Create the tables of ``key`` in ``db`` if they do not exist yet."""
    if key in _done.get(db, ()):
        return
    with _lock:
        if key in _done.get(db, ()):
            return
        if db.dialect == "postgresql":
            subst = {"PK": "BIGSERIAL PRIMARY KEY", "REAL": "DOUBLE PRECISION"}
        else:
            subst = {"PK": "INTEGER PRIMARY KEY AUTOINCREMENT", "REAL": "REAL"}
        with db.transaction(write=True) as tx:
            for stmt in ddl:
                tx.execute(stmt.format(**subst))
        _done.setdefault(db, set()).add(key)
