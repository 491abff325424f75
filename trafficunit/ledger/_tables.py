"""Idempotent DDL for the ledger's operational tables (investigations, supervision levels,
road chiefs, routing rules), kept apart from the versioned core schema (:mod:`._db`).

Each module lists its ``CREATE TABLE IF NOT EXISTS`` statements with ``{PK}``, ``{REAL}``,
``{BLOB}`` placeholders; :func:`ensure` runs them once per open database, in one write
transaction, and :func:`create_tables` every time it is called (the permits' and site files'
``ensure_schema``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import Any

from ._db import Database

_done: weakref.WeakKeyDictionary[Database, set[str]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


#: The placeholders' column types by dialect.
_TYPES = {
    "postgresql": {"PK": "BIGSERIAL PRIMARY KEY", "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA"},
    "sqlite": {"PK": "INTEGER PRIMARY KEY AUTOINCREMENT", "REAL": "REAL", "BLOB": "BLOB"},
}


def create_tables(db: Any, ddl: Sequence[str]) -> None:
    """Run ``ddl`` (its placeholders filled for ``db``'s dialect) in one write transaction."""
    with db.transaction(write=True) as tx:
        types = _TYPES["postgresql" if tx.dialect == "postgresql" else "sqlite"]
        for stmt in ddl:
            tx.execute(stmt.format(**types))


def ensure(db: Database, key: str, ddl: Sequence[str]) -> None:
    """Create the tables of ``key`` in ``db`` if they do not exist yet."""
    if key in _done.get(db, ()):
        return
    with _lock:
        if key in _done.get(db, ()):
            return
        create_tables(db, ddl)
        _done.setdefault(db, set()).add(key)
