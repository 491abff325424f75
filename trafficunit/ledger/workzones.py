"""The road-works registry: sites by code with their permitted period and units, and one QR
code per site linking to the site's page.

Sites are stored by :meth:`trafficunit.ledger.Ledger.register_workzone` (one code per
permitted site, docs/domain.md); inspectors scan the QR code on the site's board to open its page.

>>> png = qr_png("https://example.org/workzones/KT-2018-0001/page")
>>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import Any, TypedDict, Unpack

import numpy as np
import shapely

from .._errors import clip
from . import lifecycle as lc
from ._core import LedgerCore
from ._values import iso, json_time, now_utc, parse_time, text
from .errors import ConflictError, NotFoundError, ValidationError
from .geometry import parse_geometry
from .records import WZ_COLS, WorkZone, workzone_from_row

__all__ = ["WorkZoneFacts", "WorkZones", "qr_png", "works_columns"]


class WorkZoneFacts(TypedDict, total=False):
    """Facts of the works that registering a site and changing it both take (None: not given).

    Attributes
    ----------
    lanes_taken
        Lanes the works close, 0 to 20.
    night_works
        Whether the works go on at night.
    contractor
        Who does the works.
    description
        What the works are.
    """

    lanes_taken: int | None
    night_works: bool | None
    contractor: str | None
    description: str | None


def works_columns(facts: WorkZoneFacts) -> dict[str, int]:
    """The ``lanes_taken`` and ``night_works`` columns of the ``facts`` given (lanes checked to
    be 0..20, night works stored as 0 or 1); TypeError for a keyword that is no such fact."""
    unknown = sorted(set(facts) - WorkZoneFacts.__optional_keys__)
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
    out: dict[str, int] = {}
    lanes_taken = facts.get("lanes_taken")
    if lanes_taken is not None:
        if not 0 <= int(lanes_taken) <= 20:
            raise ValidationError(f"lanes_taken must be 0..20, got {lanes_taken}")
        out["lanes_taken"] = int(lanes_taken)
    night_works = facts.get("night_works")
    if night_works is not None:
        out["night_works"] = int(bool(night_works))
    return out


def qr_png(url: str, *, box_size: int = 8, border: int = 4) -> bytes:
    """A PNG image of a QR code encoding ``url`` (error correction level M).

    Parameters
    ----------
    url
        What the code encodes (the site's page).
    box_size
        Pixels per module.
    border
        Quiet zone, modules (the QR specification asks for at least 4).
    """
    from .._optional import require

    qrcode = require("qrcode", "drawing a QR code")
    ERROR_CORRECT_M = require("qrcode.constants", "drawing a QR code").ERROR_CORRECT_M

    if not url or len(url) > 2000:
        raise ValidationError("a QR code needs a URL of 1 to 2000 characters")
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box_size, border=border)
    qr.add_data(url)
    qr.make(fit=True)
    img = qr.make_image(fill_color="black", back_color="white")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class WorkZones(LedgerCore):
    """The ledger's road-works registry (a mixin of :class:`~trafficunit.ledger.Ledger`)."""

    def register_workzone(
        self,
        site_code: str,
        geometry: Any,
        *,
        start: Any,
        end: Any = None,
        actor: str,
        role: str,
        permit: str | None = None,
        now: datetime | None = None,
        **facts: Unpack[WorkZoneFacts],
    ) -> WorkZone:
        """Register a road-works site (one code per site); ConflictError if the code exists.

        The site is assigned to the units it occupies at once. ``facts`` are those of
        :class:`WorkZoneFacts` (``lanes_taken``, ``night_works``, ``contractor``,
        ``description``); ``permit`` names the works' permit.
        """
        lc.require(role, "workzone")
        code = text(site_code, "site_code", required=True, limit=64)
        assert code is not None
        if not all(c.isalnum() or c in "-_." for c in code):
            raise ValidationError(
                f"site_code {clip(code)} may hold only letters, digits, '-', '_' and '.'"
            )
        geom = parse_geometry(
            json.loads(shapely.to_geojson(geometry))
            if isinstance(geometry, shapely.Geometry)
            else geometry,
            max_vertices=self.settings.max_vertices,
        )
        self._check_plausible(geom, "workzone")
        t0 = parse_time(start, "start")
        t1 = None if end is None else parse_time(end, "end")
        if t1 is not None and t1 < t0:
            raise ValidationError(f"end {json_time(t1)} is before start {json_time(t0)}")
        works = works_columns(facts)
        contractor = text(facts.get("contractor"), "contractor", limit=200)
        permit = text(permit, "permit", limit=200)
        description = text(facts.get("description"), "description")
        units = self._assign(geom, "workzone", None)
        t = now_utc(now)
        with self.db.transaction(write=True) as tx:
            if tx.one("SELECT pk FROM workzones WHERE site_code = ?", (code,)) is not None:
                raise ConflictError(
                    f"a work zone with site code {clip(code)} is registered already"
                )
            seq = tx.next_change()
            pk = int(
                tx.scalar(
                    "INSERT INTO workzones (site_code, version, start_at, end_at, lanes_taken, "
                    "night_works, contractor, permit, description, unit_ids, geom, geom_type, "
                    "minx, miny, maxx, maxy, created_at, created_by, updated_at, change_seq) "
                    "VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, "
                    f"{tx.geom_in}, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "RETURNING pk",
                    (
                        code,
                        iso(t0),
                        iso(t1),
                        works.get("lanes_taken"),
                        works.get("night_works"),
                        contractor,
                        permit,
                        description,
                        ";".join(units.unit_ids),
                        shapely.to_wkb(geom),
                        geom.geom_type,
                        *geom.bounds,
                        iso(t),
                        actor,
                        iso(t),
                        seq,
                    ),
                )
            )
            self._insert_units(tx, "workzone", pk, units)
            row = tx.one(f"SELECT {WZ_COLS}, {tx.geom_out()} FROM workzones WHERE pk = ?", (pk,))
        assert row is not None
        return workzone_from_row(row)

    def get_workzone(self, site_code: str) -> WorkZone:
        """The work zone ``site_code``; NotFoundError if there is none."""
        with self.db.transaction() as tx:
            row = tx.one(
                f"SELECT {WZ_COLS}, {tx.geom_out()} FROM workzones WHERE site_code = ?",
                (str(site_code),),
            )
        if row is None:
            raise NotFoundError(f"no work zone with site code {clip(site_code)}")
        return workzone_from_row(row)

    def list_workzones(
        self,
        *,
        active_at: Any = None,
        bbox: tuple[float, float, float, float] | None = None,
        unit_id: str | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> tuple[int, list[WorkZone]]:
        """Work zones (active at ``active_at`` when given, meeting ``bbox``), by site code."""
        where: list[str] = []
        params: list[Any] = []
        if active_at is not None:
            t = iso(parse_time(active_at, "active"))
            where.append("start_at <= ? AND (end_at IS NULL OR end_at >= ?)")
            params += [t, t]
        if unit_id:
            where.append("pk IN (SELECT workzone_pk FROM workzone_units WHERE unit_id = ?)")
            params.append(unit_id)
        with self.db.transaction() as tx:
            sw, sp, shape = self._spatial_where(tx, bbox, None)
            cond = " AND ".join(where + sw) or "1 = 1"
            rows = tx.all(
                f"SELECT {WZ_COLS}, {tx.geom_out()} FROM workzones WHERE {cond} ORDER BY site_code",
                params + sp,
            )
        zones = [workzone_from_row(r) for r in rows]
        if shape is not None and zones:
            keep = shapely.intersects(np.array([z.geometry for z in zones], dtype=object), shape)
            zones = [z for z, k in zip(zones, keep, strict=True) if k]
        return len(zones), zones[int(offset) : int(offset) + int(limit)]
