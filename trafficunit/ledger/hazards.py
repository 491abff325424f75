"""Reading hazards: one by id, its history and reports, and filtered pages of them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import shapely

from .._errors import clip
from . import lifecycle as lc
from ._core import LedgerCore
from ._values import dt, iso, json_time, now_utc, parse_hazard_id
from .errors import NotFoundError, ValidationError
from .records import HAZARD_COLS, Hazard, hazard_from_row, wkb

__all__ = ["HazardReads"]


class HazardReads(LedgerCore):
    """The ledger's hazard reads (a mixin of :class:`~trafficunit.ledger.Ledger`)."""

    def get(self, hazard_id: str | int) -> Hazard:
        """The hazard ``hazard_id`` (``"H12"``); NotFoundError if there is none."""
        pk = parse_hazard_id(hazard_id)
        with self.db.transaction() as tx:
            return self._get(tx, pk)

    def history(self, hazard_id: str | int) -> list[dict[str, Any]]:
        """Every recorded event of a hazard, oldest first: version, at, actor, role, action,
        from, to, comment, details."""
        pk = parse_hazard_id(hazard_id)
        with self.db.transaction() as tx:
            if tx.one("SELECT pk FROM hazards WHERE pk = ?", (pk,)) is None:
                raise NotFoundError(f"no hazard H{pk}")
            rows = tx.all(
                "SELECT version, at, actor, role, action, from_state, to_state, comment, details "
                "FROM hazard_events WHERE hazard_pk = ? ORDER BY version",
                (pk,),
            )
        return [
            {
                "version": int(r["version"]),
                "at": json_time(dt(r["at"])),
                "actor": r["actor"],
                "role": r["role"],
                "action": r["action"],
                "from": r["from_state"],
                "to": r["to_state"],
                "comment": r["comment"],
                "details": json.loads(r["details"]) if r["details"] else None,
            }
            for r in rows
        ]

    def reports(self, hazard_id: str | int) -> list[dict[str, Any]]:
        """The citizen/patrol reports of a hazard (the first and every linked duplicate)."""
        pk = parse_hazard_id(hazard_id)
        with self.db.transaction() as tx:
            rows = tx.all(
                "SELECT pk, reported_at, received_at, reported_by, source, description, "
                f"external_id, distance_m, {tx.geom_out()} FROM hazard_reports "
                "WHERE hazard_pk = ? ORDER BY pk",
                (pk,),
            )
        return [
            {
                "report": int(r["pk"]),
                "reported_at": json_time(dt(r["reported_at"])),
                "received_at": json_time(dt(r["received_at"])),
                "reported_by": r["reported_by"],
                "source": r["source"],
                "description": r["description"],
                "external_id": r["external_id"],
                "distance_m": r["distance_m"],
                "geometry": json.loads(shapely.to_geojson(shapely.from_wkb(wkb(r["geom"])))),
            }
            for r in rows
        ]

    def list_hazards(
        self,
        *,
        bbox: tuple[float, float, float, float] | None = None,
        within: shapely.Geometry | None = None,
        unit_id: str | None = None,
        states: Sequence[str] | None = None,
        grades: Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
        overdue: bool | None = None,
        supervision: str | None = None,
        limit: int = 1000,
        offset: int = 0,
        now: datetime | None = None,
    ) -> tuple[int, list[Hazard]]:
        """Hazards matching every filter given, oldest first: ``(count before paging, page)``.

        Parameters
        ----------
        bbox
            ``(minlon, minlat, maxlon, maxlat)``: hazards whose geometry meets it.
        within
            A WGS84 area (a jurisdiction, a grid cell): hazards whose geometry meets it.
        unit_id
            Hazards assigned to this unit.
        states, grades, categories
            Allowed values (unknown states or grades raise ValidationError).
        overdue
            True: only overdue hazards; False: none of them.
        supervision
            ``"listed"``: only hazards under listed supervision.
        """
        t = now_utc(now)
        where: list[str] = []
        params: list[Any] = []
        for col, values, allowed in (
            ("state", states, lc.STATES),
            ("grade", [lc.normalise_grade(g) for g in grades] if grades else None, lc.GRADES),
            ("category", categories, None),
        ):
            if values:
                bad = [v for v in values if allowed is not None and v not in allowed]
                if bad:
                    raise ValidationError(f"unknown {col} {clip(bad[0])}; use {', '.join(allowed)}")  # type: ignore[arg-type]
                where.append(f"{col} IN ({', '.join('?' * len(values))})")
                params += list(values)
        if unit_id:
            where.append("pk IN (SELECT hazard_pk FROM hazard_units WHERE unit_id = ?)")
            params.append(unit_id)
        if overdue is not None:
            cond = lc.overdue_sql()
            where.append(cond if overdue else f"NOT {cond}")
            params.append(iso(t))
        if supervision:
            where.append("supervision = ?")
            params.append(supervision)
        with self.db.transaction() as tx:
            sw, sp, shape = self._spatial_where(tx, bbox, within)
            where += sw
            params += sp
            cond = " AND ".join(where) or "1 = 1"
            if shape is None:
                total = int(tx.scalar(f"SELECT COUNT(*) AS n FROM hazards WHERE {cond}", params))
                rows = tx.all(
                    f"SELECT {HAZARD_COLS}, {tx.geom_out()} FROM hazards WHERE {cond} "
                    "ORDER BY pk LIMIT ? OFFSET ?",
                    [*params, int(limit), int(offset)],
                )
                return total, [hazard_from_row(r) for r in rows]
            cands = tx.all(f"SELECT pk, geom FROM hazards WHERE {cond} ORDER BY pk", params)
            if not cands:
                return 0, []
            geoms = shapely.from_wkb([wkb(r["geom"]) for r in cands])
            pks = np.array([r["pk"] for r in cands], dtype=np.int64)
            pks = pks[shapely.intersects(geoms, shape)]
            page = pks[int(offset) : int(offset) + int(limit)].tolist()
            rows = []
            for i in range(0, len(page), 500):
                chunk = page[i : i + 500]
                rows += tx.all(
                    f"SELECT {HAZARD_COLS}, {tx.geom_out()} FROM hazards "
                    f"WHERE pk IN ({', '.join('?' * len(chunk))}) ORDER BY pk",
                    chunk,
                )
            return len(pks), [hazard_from_row(r) for r in rows]
