"""Citizen reports without a token: a ``reported`` hazard and a private receipt.

A public report goes through :meth:`Ledger.report <trafficunit.ledger.Ledger.report>` with
role ``reporter``, source ``public_report`` and actor ``public``; an engineer triages it like
any other. The reporter gets a **receipt**: a random token shown once (only its hash is
stored) that reads back the coarse status of that one report — never the hazard's id, other
reports, or whether it repeated someone else's report — so the endpoint cannot be used to
enumerate the ledger. Rate and size limits are the server's: :class:`LedgerRateLimiter` counts
in the ledger's database, so the limit holds across every server process (Granian workers,
several machines on one PostgreSQL); :class:`RateLimiter` is the in-memory one of a single
process.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import deque
from datetime import datetime
from typing import Any

from ._db import Database
from ._tables import ensure
from .errors import NotFoundError
from .store import Ledger, _now, iso

__all__ = ["LedgerRateLimiter", "RateLimiter", "public_report", "receipt_status"]

_DDL = [
    """CREATE TABLE IF NOT EXISTS public_receipts (
        receipt_hash TEXT PRIMARY KEY,
        hazard_pk BIGINT NOT NULL REFERENCES hazards (pk),
        received_at TEXT NOT NULL
    )""",
]
_RATE_DDL = [
    """CREATE TABLE IF NOT EXISTS public_rate_hits (
        pk {PK},
        client_hash TEXT NOT NULL,
        at {REAL} NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS public_rate_hits_client ON public_rate_hits (client_hash, at)",
    "CREATE INDEX IF NOT EXISTS public_rate_hits_at ON public_rate_hits (at)",
]
#: What a receipt shows of the hazard's state.
_COARSE = {
    "reported": "received",
    "registered": "accepted for work",
    "assigned": "being fixed",
    "rectifying": "being fixed",
    "accepted": "fixed",
    "closed": "fixed",
}


def _hash(receipt: str) -> str:
    return hashlib.sha256(b"trafficunit-receipt-v1:" + receipt.encode()).hexdigest()


def public_report(
    ledger: Ledger,
    geometry: Any,
    *,
    category: str,
    description: str | None = None,
    road_name: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Store a citizen's report; ``{"receipt": ..., "status": "received", ...}``."""
    ensure(ledger.db, "public", _DDL)
    res = ledger.report(
        geometry,
        category=category,
        actor="public",
        role="reporter",
        description=description,
        road_name=road_name,
        source="public_report",
        now=now,
    )
    receipt = secrets.token_urlsafe(24)
    t = iso(_now(now))
    with ledger.db.transaction(write=True) as tx:
        tx.execute(
            "INSERT INTO public_receipts (receipt_hash, hazard_pk, received_at) VALUES (?, ?, ?)",
            (_hash(receipt), res.hazard.pk, t),
        )
    return {"receipt": receipt, "status": _COARSE["reported"], "received_at": t}


def receipt_status(ledger: Ledger, receipt: str) -> dict[str, Any]:
    """The coarse status of the report a receipt was given for (NotFoundError otherwise)."""
    ensure(ledger.db, "public", _DDL)
    if not receipt or len(receipt) > 100:
        raise NotFoundError("no report with this receipt")
    with ledger.db.transaction() as tx:
        row = tx.one(
            "SELECT r.received_at, h.state FROM public_receipts r JOIN hazards h "
            "ON h.pk = r.hazard_pk WHERE r.receipt_hash = ?",
            (_hash(receipt),),
        )
    if row is None:
        raise NotFoundError("no report with this receipt")
    return {"status": _COARSE.get(row["state"], "received"), "received_at": row["received_at"]}


class RateLimiter:
    """At most ``limit`` events per ``window_s`` seconds per key (a sliding window, in memory).

    Per process: several server processes each allow ``limit``. Keys beyond ``max_keys`` evict
    the stalest first, so a flood of addresses cannot exhaust memory.
    """

    def __init__(self, limit: int, window_s: float, *, max_keys: int = 100_000) -> None:
        self.limit = int(limit)
        self.window_s = float(window_s)
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, *, now: float | None = None) -> tuple[bool, float]:
        """Whether ``key`` may go on now, and else the seconds until it may."""
        t = time.monotonic() if now is None else now
        with self._lock:
            q = self._hits.get(key)
            if q is None:
                if len(self._hits) >= self.max_keys:
                    stalest = min(self._hits, key=lambda k: self._hits[k][-1])
                    del self._hits[stalest]
                q = self._hits[key] = deque()
            while q and q[0] <= t - self.window_s:
                q.popleft()
            if len(q) >= self.limit:
                return False, max(0.0, q[0] + self.window_s - t)
            q.append(t)
            return True, 0.0


class LedgerRateLimiter:
    """At most ``limit`` events per ``window_s`` seconds per key, counted in the ledger's
    database (a sliding window shared by every process using the ledger).

    Each call is one write transaction (serialised across processes: SQLite ``BEGIN
    IMMEDIATE``, PostgreSQL an advisory lock): it forgets hits older than the window, counts
    the key's, and records this one when allowed. Keys are stored hashed (a client's address
    is not kept), and the table holds at most the hits of one window. Times are the wall
    clock (``time.time()``), the one clock the processes share.
    """

    def __init__(self, db: Database, limit: int, window_s: float) -> None:
        self.db = db
        self.limit = int(limit)
        self.window_s = float(window_s)
        ensure(db, "public_rate", _RATE_DDL)

    def allow(self, key: str, *, now: float | None = None) -> tuple[bool, float]:
        """Whether ``key`` may go on now, and else the seconds until it may."""
        t = time.time() if now is None else float(now)
        h = hashlib.sha256(b"trafficunit-rate-v1:" + key.encode()).hexdigest()
        with self.db.transaction(write=True) as tx:
            tx.execute("DELETE FROM public_rate_hits WHERE at <= ?", (t - self.window_s,))
            row = tx.one(
                "SELECT COUNT(*) AS n, MIN(at) AS first FROM public_rate_hits "
                "WHERE client_hash = ?",
                (h,),
            )
            n = int(row["n"]) if row else 0
            if n >= self.limit:
                first = float(row["first"]) if row and row["first"] is not None else t
                return False, max(0.0, first + self.window_s - t)
            tx.execute("INSERT INTO public_rate_hits (client_hash, at) VALUES (?, ?)", (h, t))
        return True, 0.0
