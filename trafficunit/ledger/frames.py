"""Whole-ledger reads: every hazard as a frame (KPIs, exports, live tiles), counts for health
checks and a consistency check of the stored history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from . import lifecycle as lc
from ._core import LedgerCore
from ._values import now_utc
from .records import HAZARD_COLS, wkb

__all__ = ["Frames"]


class Frames(LedgerCore):
    """Bulk reads of the ledger (a mixin of :class:`~trafficunit.ledger.Ledger`)."""

    def frame(self, *, now: datetime | None = None) -> gpd.GeoDataFrame:
        """Every hazard as a GeoDataFrame (EPSG:4326), for KPIs, exports and live tiles.

        Columns: ``event_id`` (the hazard id), the :meth:`Hazard.properties` fields (times as
        tz-aware UTC datetimes, ``unit_id`` the ``;``-joined unit ids, ``overdue`` as of
        ``now``) and ``geometry``.
        """
        t = now_utc(now)
        with self.db.transaction() as tx:
            rows = tx.all(f"SELECT {HAZARD_COLS}, {tx.geom_out()} FROM hazards ORDER BY pk")
        times = (
            "deadline",
            "listed_at",
            "reported_at",
            "last_reported_at",
            "registered_at",
            "assigned_at",
            "rectifying_at",
            "accepted_at",
            "closed_at",
            "updated_at",
        )
        cols = [c.strip() for c in HAZARD_COLS.split(",")]
        df = pd.DataFrame(rows, columns=[*cols, "geom"])
        geoms = shapely.from_wkb([wkb(g) for g in df["geom"]]) if len(df) else []
        out = pd.DataFrame(
            {
                "event_id": "H" + df["pk"].astype("int64").astype(str),
                "kind": "hazard",
            }
        )
        for c in cols:
            if c in ("pk", "unit_ids"):
                continue
            out[c] = df[c]
        for c in times:
            out[c] = pd.to_datetime(df[c], utc=True, format="ISO8601")
        for c in ("version", "report_count", "reopen_count"):
            out[c] = df[c].astype("int64")
        out["unit_id"] = df["unit_ids"].replace("", None)
        out["status"] = out["state"]
        out["overdue"] = (
            out["state"].isin(lc.OVERDUE_STATES)
            & out["deadline"].notna()
            & (out["deadline"] < pd.Timestamp(t))
        ).astype(bool)
        return gpd.GeoDataFrame(out, geometry=np.asarray(geoms, dtype=object), crs=4326)

    def counts(self) -> dict[str, Any]:
        """Hazards by state, reports, history events, work zones (for health checks)."""
        with self.db.transaction() as tx:
            by_state = {
                r["state"]: int(r["n"])
                for r in tx.all("SELECT state, COUNT(*) AS n FROM hazards GROUP BY state")
            }
            reports = int(tx.scalar("SELECT COUNT(*) AS n FROM hazard_reports"))
            events = int(tx.scalar("SELECT COUNT(*) AS n FROM hazard_events"))
            zones = int(tx.scalar("SELECT COUNT(*) AS n FROM workzones"))
        return {
            "hazards": sum(by_state.values()),
            "by_state": by_state,
            "reports": reports,
            "events": events,
            "workzones": zones,
        }

    def check_consistency(self) -> list[str]:
        """Problems found in the stored data (empty when consistent).

        Checks that every hazard's history has one event per version from 1 to its current
        version, that its report count matches its stored reports, and that every hazard has
        a report and a valid state.
        """
        problems = []
        with self.db.transaction() as tx:
            rows = tx.all(
                "SELECT h.pk, h.version, h.report_count, "
                "(SELECT COUNT(*) FROM hazard_events e WHERE e.hazard_pk = h.pk) AS n_events, "
                "(SELECT MAX(version) FROM hazard_events e WHERE e.hazard_pk = h.pk) AS max_v, "
                "(SELECT COUNT(*) FROM hazard_reports r WHERE r.hazard_pk = h.pk) AS n_reports "
                "FROM hazards h"
            )
        for r in rows:
            if int(r["n_events"]) != int(r["version"]) or int(r["max_v"] or 0) != int(r["version"]):
                problems.append(
                    f"H{r['pk']}: version {r['version']} but {r['n_events']} history events"
                )
            if int(r["n_reports"]) != int(r["report_count"]):
                problems.append(
                    f"H{r['pk']}: report_count {r['report_count']} but {r['n_reports']} reports"
                )
        return problems
