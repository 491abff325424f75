"""Citizen reports without a token: a ``reported`` hazard and a private receipt.

A public report goes through :meth:`Ledger.report <trafficunit.ledger.Ledger.report>` with
role ``reporter``, source ``public_report`` and actor ``public``; an engineer triages it like
any other. The reporter gets a **receipt**: a random token shown once (only its hash is
stored) that reads back the coarse status of that one report — never the hazard's id, other
reports, or whether it repeated someone else's report — so the endpoint cannot be used to
enumerate the ledger. Rate and size limits are the server's (:class:`RateLimiter`).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import deque
from datetime import datetime
from typing import Any

from ._tables import ensure
from .errors import NotFoundError
from .store import Ledger, _now, iso

__all__ = ["RateLimiter", "public_report", "receipt_status"]

_DDL = [
    """CREATE TABLE IF NOT EXISTS public_receipts (
        receipt_hash TEXT PRIMARY KEY,
        hazard_pk BIGINT NOT NULL REFERENCES hazards (pk),
        received_at TEXT NOT NULL
    )""",
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
