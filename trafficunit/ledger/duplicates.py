"""Duplicate reports: a report near an open hazard of the same category is linked to it.

A report within ``settings.duplicate_distance_m`` of an open hazard of the same category
reported within ``settings.duplicate_window_days`` repeats it: the report is stored under that
hazard, whose ``report_count`` and version go up, instead of opening another hazard. Candidates
come from the in-memory index of open hazards (:mod:`.live`), kept in step with the database.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import shapely

from ._core import LedgerCore
from ._db import Tx
from ._values import iso
from .geometry import distances_m, expand_bbox
from .records import CheckedReport, Hazard

__all__ = ["Duplicates"]


class Duplicates(LedgerCore):
    """Finding and linking duplicate reports (a mixin of :class:`~trafficunit.ledger.Ledger`)."""

    def _duplicate_of(
        self, geom: shapely.Geometry, category: str, t: datetime
    ) -> tuple[int, float] | None:
        d = self.settings.duplicate_distance_m
        if d <= 0:
            return None
        window = timedelta(days=self.settings.duplicate_window_days)
        cands = [
            h
            for h in self.index.near(expand_bbox(geom.bounds, d), category)
            if h.reported_at - window <= t <= h.last_reported_at + window
        ]
        if not cands:
            return None
        dist = distances_m(geom, np.array([h.geometry for h in cands], dtype=object))
        best = int(np.argmin(dist))  # ties: the first, i.e. the oldest hazard (lowest pk)
        if dist[best] > d:
            return None
        return cands[best].pk, float(dist[best])

    def _link_duplicate(
        self,
        tx: Tx,
        pk: int,
        dist: float,
        report: CheckedReport,
        wkb: bytes,
    ) -> Hazard:
        """Store ``report`` under the open hazard ``pk`` it repeats; the hazard after."""
        t, t_now = report.t, report.t_now
        seq = tx.next_change()
        old = self._get(tx, pk)
        version = old.version + 1
        tx.execute(
            "UPDATE hazards SET report_count = report_count + 1, version = ?, "
            "last_reported_at = ?, reported_at = ?, updated_at = ?, change_seq = ? "
            "WHERE pk = ?",
            (
                version,
                iso(max(old.last_reported_at, t)),
                iso(min(old.reported_at, t)),
                iso(t_now),
                seq,
                pk,
            ),
        )
        rpk = self._insert_report(tx, pk, report, dist, wkb)
        details = {
            "report": rpk,
            "distance_m": round(dist, 2),
            "report_count": old.report_count + 1,
        }
        self._event(
            tx,
            pk,
            version,
            t_now,
            report.actor,
            report.role,
            "report_linked",
            old.state,
            old.state,
            report.description,
            details,
        )
        return self._get(tx, pk)
